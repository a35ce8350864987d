//! Planning (pure): a request becomes whole-page pieces, each inside one VMA of the snapshot,
//! whole 2 MiB huge pages for `Collapse` and `Split`, none above the per-call byte cap; what cannot be
//! advised is reported by kind. See the actuator's module doc, step 1.

use super::apply::add_error;
use crate::advice::Advice;
use crate::kernel::host::{align_down, align_up};
use crate::region::AddrRange;
use crate::report::ApplyErrorKind;

/// PMD-mapped huge page size that `MADV_COLLAPSE` works in (`HPAGE_PMD_SIZE` on x86-64 and
/// arm64 with 4 KiB pages).
pub const HPAGE_PMD_SIZE: u64 = 2 << 20;

/// Plan one request: emit the pieces to advise (page-aligned, inside one VMA each, 2 MiB
/// aligned for `Collapse`, each at most `cap` bytes) through `emit`, and return the bytes not
/// planned, by kind (`Unaligned`, `Unmapped`). `Split` is planned as `Collapse` is: whole
/// 2 MiB-aligned blocks only (a huge page is split whole or not at all). Emitted bytes + returned bytes == `range.len()`.
/// `vmas` must be sorted and disjoint; `page` and `cap` powers-of-two multiples of the page.
pub fn plan_range(
    range: AddrRange,
    vmas: &[AddrRange],
    advice: Advice,
    page: u64,
    cap: u64,
    mut emit: impl FnMut(AddrRange),
) -> Vec<(ApplyErrorKind, u64)> {
    let mut losses = Vec::new();
    if range.is_empty() {
        return losses;
    }
    let s = align_up(range.start, page);
    let e = align_down(range.end, page);
    if e <= s {
        add_error(&mut losses, ApplyErrorKind::Unaligned, range.len());
        return losses;
    }
    add_error(
        &mut losses,
        ApplyErrorKind::Unaligned,
        (s - range.start) + (range.end - e),
    );
    let huge = matches!(advice, Advice::Collapse | Advice::Split);
    let unit = if huge { HPAGE_PMD_SIZE.max(page) } else { page };
    let cap = align_down(cap, unit).max(unit);
    let mut cursor = s;
    let first = vmas.partition_point(|v| v.end <= s);
    for v in &vmas[first..] {
        if v.start >= e {
            break;
        }
        let part = AddrRange::new(v.start.max(cursor), v.end.min(e));
        add_error(
            &mut losses,
            ApplyErrorKind::Unmapped,
            part.start.saturating_sub(cursor),
        );
        cursor = part.end;
        let (ps, pe) = if huge {
            let hs = align_up(part.start, unit);
            let he = align_down(part.end, unit);
            if he <= hs {
                add_error(&mut losses, ApplyErrorKind::Unaligned, part.len());
                continue;
            }
            add_error(
                &mut losses,
                ApplyErrorKind::Unaligned,
                (hs - part.start) + (part.end - he),
            );
            (hs, he)
        } else {
            (part.start, part.end)
        };
        let mut a = ps;
        while a < pe {
            let b = if pe - a > cap { a + cap } else { pe };
            emit(AddrRange::new(a, b));
            a = b;
        }
    }
    add_error(
        &mut losses,
        ApplyErrorKind::Unmapped,
        e.saturating_sub(cursor),
    );
    losses
}

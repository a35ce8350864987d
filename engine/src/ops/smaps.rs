//! smaps `Referenced` after `clear_refs` 1: an access check that works on every kernel
//! with `CONFIG_PROC_PAGE_MONITOR`, with no swap and no root (for one's own processes) —
//! but at **VMA granularity only**: a sample is Accessed when the VMA holding it had any
//! page referenced since the last clear, so every region inside one VMA gets the same answer.
//! Use it to tell hot mappings from cold ones, not hot pages inside one mapping.
//!
//! Each sampling interval: `clear_refs` 1 on the target at prepare (clears the PTE Accessed
//! bits and `PG_referenced` of all its pages: fs/proc/task_mmu.c `clear_refs_write`, 6.12),
//! then read smaps at check. Both walk the target's page tables: the cost grows with its
//! mapped size, hence the slow defaults. Clearing Accessed bits also hides recent use from
//! the kernel's own reclaim for a moment (kernel DAMON's vaddr checks do the same).

use crate::access::{Access, AccessError, SampleReq};
use crate::attrs::Attrs;
use crate::kernel::clear_refs::ClearRefs;
use crate::kernel::smaps::SmapsVma;
use crate::ops::common::{RefsCheck, RefsReader};
use crate::process::Process;
use crate::region::AddrRange;
use crate::sysroot::SysRoot;

/// The smaps access check over live targets.
pub type SmapsCheck = RefsCheck<Smaps>;

/// The smaps reader of [`SmapsCheck`]: one smaps read per target and interval.
pub struct Smaps;

/// 500 ms sampling, 5 s aggregation: each sample walks the target's page tables twice.
pub fn default_attrs() -> Attrs {
    Attrs {
        sample_us: 500_000,
        aggr_us: 5_000_000,
        ops_update_us: 10_000_000,
        ..Attrs::default()
    }
}

/// Why the check is not usable here, if it is not: it needs `clear_refs` and smaps.
pub fn why_not(root: &SysRoot) -> Option<String> {
    if !root.proc_file("self/clear_refs").exists() || !root.proc_file("self/smaps").exists() {
        Some(
            "no /proc/PID/clear_refs or smaps (kernel without CONFIG_PROC_PAGE_MONITOR)".to_owned(),
        )
    } else {
        None
    }
}

/// Answer for `addr` from the VMAs of one smaps read (sorted). Pure.
pub fn answer(vmas: &[SmapsVma], addr: u64) -> Access {
    let i = vmas.partition_point(|v| v.vma.range.end <= addr);
    match vmas.get(i) {
        Some(v) if v.vma.range.contains(addr) => {
            if v.referenced > 0 {
                Access::Accessed
            } else {
                Access::NotAccessed
            }
        }
        _ => Access::Unknown,
    }
}

impl RefsReader for Smaps {
    const NAME: &'static str = "smaps";
    const OWNER: &'static str = "the smaps check";
    const CLEAR: ClearRefs = ClearRefs::All;

    fn default_attrs() -> Attrs {
        default_attrs()
    }

    fn read(
        proc: &mut Process,
        samples: &[SampleReq],
        out: &mut [Access],
    ) -> Result<u64, AccessError> {
        let vmas = proc.smaps()?;
        for (s, o) in samples.iter().zip(out.iter_mut()) {
            *o = answer(&vmas, s.addr);
        }
        Ok(1)
    }

    /// A VMA-granular check sees a whole mapping referenced when one advised huge page in
    /// it was mapped young. So a VMA an advised range overlaps counts as accessed only when
    /// more of it is referenced than was advised; else its samples are NotAccessed. (Without
    /// this, a `collapse` of a region straddling a hot and a cold mapping makes the cold
    /// mapping look hot, and the policy collapses all of it, one interval after another.)
    fn after_advice(
        proc: &mut Process,
        samples: &[SampleReq],
        advised: &[AddrRange],
        out: &mut [Access],
    ) -> Result<u64, AccessError> {
        let vmas = proc.smaps()?;
        discount_advised(&vmas, samples, advised, out);
        Ok(1)
    }
}

/// For each VMA of `vmas` (sorted) that an advised range overlaps: when its `Referenced`
/// bytes are no more than the advised bytes inside it, its samples answered Accessed become
/// NotAccessed (the advice alone may have set those bits). Pure.
pub fn discount_advised(
    vmas: &[SmapsVma],
    samples: &[SampleReq],
    advised: &[AddrRange],
    out: &mut [Access],
) {
    let only_advice: Vec<AddrRange> = vmas
        .iter()
        .filter_map(|v| {
            let r = v.vma.range;
            let adv: u64 = advised
                .iter()
                .map(|a| a.end.min(r.end).saturating_sub(a.start.max(r.start)))
                .sum();
            (adv > 0 && v.referenced <= adv).then_some(r)
        })
        .collect();
    for (s, o) in samples.iter().zip(out.iter_mut()) {
        if *o == Access::Accessed && only_advice.iter().any(|v| v.contains(s.addr)) {
            *o = Access::NotAccessed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::smaps::parse_smaps;
    use std::path::Path;

    #[test]
    fn answers_per_vma() {
        let t = "1000-3000 rw-p 00000000 00:00 0\nReferenced: 4 kB\n5000-8000 rw-p 00000000 00:00 0\nReferenced: 0 kB\n";
        let v = parse_smaps(t.as_bytes(), Path::new("smaps")).unwrap();
        assert_eq!(answer(&v, 0x1000), Access::Accessed);
        assert_eq!(answer(&v, 0x2fff), Access::Accessed);
        assert_eq!(answer(&v, 0x3000), Access::Unknown);
        assert_eq!(answer(&v, 0x7000), Access::NotAccessed);
        assert_eq!(answer(&v, 0x9000), Access::Unknown);
        assert_eq!(answer(&[], 0x1000), Access::Unknown);
    }

    #[test]
    fn advice_alone_does_not_make_its_vma_accessed() {
        // VMA 1: 8 KiB referenced; VMA 2: 4 KiB referenced.
        let t = "1000-3000 rw-p 00000000 00:00 0\nReferenced: 8 kB\n5000-8000 rw-p 00000000 00:00 0\nReferenced: 4 kB\n";
        let vmas = parse_smaps(t.as_bytes(), Path::new("smaps")).unwrap();
        let samples: Vec<SampleReq> = [0x1000, 0x2000, 0x5000, 0x7000]
            .iter()
            .map(|&a| SampleReq {
                region: AddrRange::new(a, a + 0x1000),
                addr: a,
            })
            .collect();
        let answers = || {
            samples
                .iter()
                .map(|s| answer(&vmas, s.addr))
                .collect::<Vec<_>>()
        };
        // One page advised in each: VMA 2's one referenced page may be the advice's own.
        let mut out = answers();
        let advised = [
            AddrRange::new(0x1000, 0x2000),
            AddrRange::new(0x6000, 0x7000),
        ];
        discount_advised(&vmas, &samples, &advised, &mut out);
        assert_eq!(
            out,
            [
                Access::Accessed,
                Access::Accessed,
                Access::NotAccessed,
                Access::NotAccessed
            ]
        );
        // Advice in a gap changes nothing.
        let mut out = answers();
        discount_advised(&vmas, &samples, &[AddrRange::new(0x3000, 0x5000)], &mut out);
        assert_eq!(out, answers());
    }

    #[test]
    fn needs_clear_refs_and_smaps() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("proc/self");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("smaps"), "").unwrap();
        let root = SysRoot::under(d.path());
        let why = why_not(&root).unwrap();
        assert!(why.contains("CONFIG_PROC_PAGE_MONITOR"), "{why}");
        std::fs::write(p.join("clear_refs"), "").unwrap();
        assert_eq!(why_not(&root), None);
    }
}

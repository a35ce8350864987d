//! Filters with the kernel's 6.14+ semantics (mm/damon/core.c 6.14/6.15): each filter has
//! `matching` and `allow`; walking the filters of one layer in order, the first filter whose
//! match result equals `matching` decides (allow → keep, reject → drop); when none decides,
//! the default is to reject iff the last filter of that layer is an allow filter
//! (`damos_filters_default_reject()`), and the region layer passes by default whenever page
//! filters exist (`damos_set_filters_default_reject()`).
//!
//! Two layers, as in the kernel's "core" and "ops" filters:
//! - **region layer** (evaluated by [`crate::Schemes::plan`]): `addr`, `target`, and
//!   madvd's per-target `cgroup` (the target's cgroups come from `/proc/PID/cgroup` through
//!   the metric source, or from the driver's map);
//! - **page layer**: `anon`, `young`, evaluated per page by whoever can look at pages (the
//!   driver, with pagemap / page_idle) through [`PageFilter`].

use crate::policy::{FilterKind, FilterSpec};
use engine::kernel::host::align_down;
use engine::{AddrRange, TargetId};

/// The last filter of a layer decides the default (`damos_filters_default_reject()`).
pub fn default_reject(filters: &[&FilterSpec]) -> bool {
    filters.last().is_some_and(|f| f.allow)
}

/// The region-layer filters of a scheme.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionFilter {
    filters: Vec<FilterSpec>,
    default_reject: bool,
}

impl RegionFilter {
    pub fn new(all: &[FilterSpec]) -> Self {
        let core: Vec<&FilterSpec> = all.iter().filter(|f| !f.kind.is_page_level()).collect();
        let has_page = all.iter().any(|f| f.kind.is_page_level());
        // damos_set_filters_default_reject(): core passes by default when ops filters exist.
        let default_reject = if has_page {
            false
        } else {
            default_reject(&core)
        };
        Self {
            filters: core.into_iter().cloned().collect(),
            default_reject,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// True when a filter needs the target's cgroup.
    pub fn needs_cgroups(&self) -> bool {
        self.filters
            .iter()
            .any(|f| matches!(f.kind, FilterKind::Cgroup(_)))
    }

    /// `damos_filter_out()` for the piece `*piece` of a region. An address filter that
    /// straddles the piece shortens it to the part on one side of the boundary (as
    /// `damos_filter_match()` splits the region) and the remainder is returned for the
    /// caller to process next. Returns (filtered out?, remainder).
    pub fn filter_out(
        &self,
        target: TargetId,
        cgroups: Option<&[String]>,
        piece: &mut AddrRange,
        min_region_sz: u64,
    ) -> (bool, Option<AddrRange>) {
        let mut rest = None;
        for f in &self.filters {
            let (matched, split) = filter_match(f, target, cgroups, *piece, min_region_sz);
            if let Some(at) = split {
                // A later split can only shorten the piece further: the remainder runs from
                // the newest split point to the end of the original piece.
                let end = rest.map_or(piece.end, |r: AddrRange| r.end);
                rest = Some(AddrRange::new(at, end));
                piece.end = at;
            }
            if matched {
                return (!f.allow, rest);
            }
        }
        (self.default_reject, rest)
    }
}

/// `damos_filter_match()` for a region-layer filter: whether `piece` matches (already
/// compared with `matching`), and where the piece had to be split, if it had to.
fn filter_match(
    f: &FilterSpec,
    target: TargetId,
    cgroups: Option<&[String]>,
    piece: AddrRange,
    min_region_sz: u64,
) -> (bool, Option<u64>) {
    let (matched, split) = match &f.kind {
        FilterKind::Target(t) => (TargetId(*t) == target, None),
        FilterKind::Cgroup(c) => (
            cgroups.is_some_and(|gs| gs.iter().any(|g| engine::kernel::cgroup::is_under(g, c))),
            None,
        ),
        FilterKind::Addr { start, end } => {
            let a = align_down(*start, min_region_sz);
            let b = align_down(*end, min_region_sz);
            if a <= piece.start && piece.end <= b {
                (true, None) // inside the range
            } else if piece.end <= a || b <= piece.start {
                (false, None) // outside of the range
            } else if piece.start < a {
                (false, Some(a)) // starts before the range and overlaps
            } else {
                (true, Some(b)) // starts inside the range
            }
        }
        FilterKind::Anon | FilterKind::Young => (false, None),
    };
    (matched == f.matching, split)
}

/// What the driver could tell about one page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageInfo {
    /// Anonymous (true) or file-backed (false); `None` when unknown (not present).
    pub anon: Option<bool>,
    /// Accessed since the last check; `None` when the access check cannot tell.
    pub young: Option<bool>,
}

/// The page-layer filters of a scheme, for the driver to evaluate on each page of a request
/// before applying it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageFilter {
    filters: Vec<FilterSpec>,
    default_reject: bool,
}

impl PageFilter {
    /// `None` when the scheme has no page-layer filter.
    pub fn new(all: &[FilterSpec]) -> Option<Self> {
        let ops: Vec<&FilterSpec> = all.iter().filter(|f| f.kind.is_page_level()).collect();
        if ops.is_empty() {
            return None;
        }
        Some(Self {
            default_reject: default_reject(&ops),
            filters: ops.into_iter().cloned().collect(),
        })
    }

    /// Whether advice may be applied to a page. A page whose status a filter needs is
    /// unknown is not advised: madvd errs on the side of doing nothing.
    pub fn admits(&self, page: &PageInfo) -> bool {
        for f in &self.filters {
            let status = match f.kind {
                FilterKind::Anon => page.anon,
                FilterKind::Young => page.young,
                _ => continue,
            };
            let Some(status) = status else { return false };
            if status == f.matching {
                return f.allow;
            }
        }
        !self.default_reject
    }

    /// Whether this filter needs to know if pages are young (needs an access check that can
    /// answer per page without side effects, e.g. page_idle).
    pub fn needs_young(&self) -> bool {
        self.filters.iter().any(|f| f.kind == FilterKind::Young)
    }

    /// The sub-ranges of `range` whose pages are admitted, coalesced, asking `page` about the
    /// page at each `page_size` step.
    pub fn admitted(
        &self,
        range: AddrRange,
        page_size: u64,
        mut page: impl FnMut(u64) -> PageInfo,
    ) -> Vec<AddrRange> {
        let step = page_size.max(1);
        let mut out: Vec<AddrRange> = Vec::new();
        let mut addr = range.start;
        while addr < range.end {
            let end = addr.saturating_add(step).min(range.end);
            if self.admits(&page(addr)) {
                match out.last_mut() {
                    Some(last) if last.end == addr => last.end = end,
                    _ => out.push(AddrRange::new(addr, end)),
                }
            }
            addr = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(kind: FilterKind, matching: bool, allow: bool) -> FilterSpec {
        FilterSpec {
            kind,
            matching,
            allow,
        }
    }

    /// Port of `damos_test_filter_out` (mm/damon/tests/core-kunit.h): an address filter
    /// `[2, 6)` with `matching = true`, checked against regions, min region size 1.
    #[test]
    fn kunit_filter_out() {
        let flt = f(FilterKind::Addr { start: 2, end: 6 }, true, false);
        let t = TargetId(1);
        let m = |r: AddrRange| filter_match(&flt, t, None, r, 1);
        // region in the range
        assert_eq!(m(AddrRange::new(3, 5)), (true, None));
        // region before the range
        assert_eq!(m(AddrRange::new(1, 2)), (false, None));
        // region after the range
        assert_eq!(m(AddrRange::new(6, 8)), (false, None));
        // region started before the range: split into [1, 2) and [2, 4)
        assert_eq!(m(AddrRange::new(1, 4)), (false, Some(2)));
        // region started in the range: split into [2, 6) and [6, 8)
        assert_eq!(m(AddrRange::new(2, 8)), (true, Some(6)));

        // Through RegionFilter: the reject filter drops the inside part and returns the rest.
        let rf = RegionFilter::new(std::slice::from_ref(&flt));
        let mut piece = AddrRange::new(2, 8);
        assert_eq!(
            rf.filter_out(t, None, &mut piece, 1),
            (true, Some(AddrRange::new(6, 8)))
        );
        assert_eq!(piece, AddrRange::new(2, 6));
        let mut piece = AddrRange::new(6, 8);
        assert_eq!(rf.filter_out(t, None, &mut piece, 1), (false, None));
    }

    /// Port of `damon_test_set_filters_default_reject` (mm/damon/tests/core-kunit.h).
    #[test]
    fn kunit_set_filters_default_reject() {
        // No filter: allow by default on both layers.
        assert!(!RegionFilter::new(&[]).default_reject);
        assert!(PageFilter::new(&[]).is_none());
        // A core allow filter: core rejects by default, ops has none.
        let target_allow = f(FilterKind::Target(0), true, true);
        assert!(RegionFilter::new(std::slice::from_ref(&target_allow)).default_reject);
        // A core reject filter: core allows by default.
        let target_reject = f(FilterKind::Target(0), true, false);
        assert!(!RegionFilter::new(std::slice::from_ref(&target_reject)).default_reject);
        // A core reject filter and an ops allow filter: core allows (ops filters exist),
        // ops rejects by default (its last filter allows).
        let anon_allow = f(FilterKind::Anon, true, true);
        let both = [target_reject, anon_allow.clone()];
        assert!(!RegionFilter::new(&both).default_reject);
        assert!(PageFilter::new(&both).unwrap().default_reject);
        // Core allow + ops allow: same.
        let both = [target_allow, anon_allow];
        assert!(!RegionFilter::new(&both).default_reject);
        assert!(PageFilter::new(&both).unwrap().default_reject);
    }

    #[test]
    fn first_match_decides() {
        // Reject anon, then allow young: a young anon page is rejected (first match), a young
        // file page allowed, an old file page rejected by default (last filter allows).
        let pf = PageFilter::new(&[
            f(FilterKind::Anon, true, false),
            f(FilterKind::Young, true, true),
        ])
        .unwrap();
        assert!(!pf.admits(&PageInfo {
            anon: Some(true),
            young: Some(true)
        }));
        assert!(pf.admits(&PageInfo {
            anon: Some(false),
            young: Some(true)
        }));
        assert!(!pf.admits(&PageInfo {
            anon: Some(false),
            young: Some(false)
        }));
        // Unknown status: not advised.
        assert!(!pf.admits(&PageInfo {
            anon: None,
            young: Some(true)
        }));
        // matching = false: "not anon" matches file pages.
        let pf = PageFilter::new(&[f(FilterKind::Anon, false, false)]).unwrap();
        assert!(!pf.admits(&PageInfo {
            anon: Some(false),
            young: None
        }));
        assert!(pf.admits(&PageInfo {
            anon: Some(true),
            young: None
        }));
    }

    #[test]
    fn admitted_ranges_coalesce() {
        let pf = PageFilter::new(&[f(FilterKind::Anon, true, false)]).unwrap();
        let r = pf.admitted(AddrRange::new(0, 6 * 4096), 4096, |a| PageInfo {
            anon: Some(a / 4096 == 2),
            young: None,
        });
        assert_eq!(
            r,
            vec![
                AddrRange::new(0, 2 * 4096),
                AddrRange::new(3 * 4096, 6 * 4096)
            ]
        );
    }

    #[test]
    fn cgroup_filter_uses_the_targets_group() {
        let rf = RegionFilter::new(&[f(FilterKind::Cgroup("/app".into()), true, true)]);
        let mut p = AddrRange::new(0, 4096);
        // Either of a target's cgroups (v2 path, v1 memory path) may match.
        let app = ["/".to_string(), "/app/worker".to_string()];
        let other = ["/other".to_string()];
        assert!(!rf.filter_out(TargetId(1), Some(&app), &mut p, 4096).0);
        assert!(rf.filter_out(TargetId(1), Some(&other), &mut p, 4096).0);
        // Unknown cgroup: does not match the allow filter, so the default (reject) applies.
        assert!(rf.filter_out(TargetId(1), None, &mut p, 4096).0);
    }
}

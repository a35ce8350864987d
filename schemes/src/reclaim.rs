//! Planning `reclaim_cgroup`: physical memory cannot be advised through `process_madvise`
//! (no process, no virtual address), so a scheme over physical memory (`madvd run --paddr`)
//! acts through the memory cgroups that own its cold bytes.
//!
//! [`crate::Schemes::plan`] walks the regions exactly as for any other action (pattern,
//! quota with its goals and scores, filters, apply interval, watermarks) and hands the
//! ranges it selected to [`crate::Schemes::take_selected`]. [`plan`] shares each scheme's
//! selected bytes among their owning cgroups (the `owners` function: in madvd, sampled
//! through `/proc/kpagecgroup`, engine `ops::paddr::reclaim`) and asks each cgroup for
//! that many bytes. The driver writes each amount to the cgroup's v2 `memory.reclaim`
//! (Documentation/admin-guide/cgroup-v2.rst) and charges the scheme with
//! [`crate::Schemes::charge`].
//!
//! What it can promise: the *amount* per cgroup is the cold bytes the scheme selected
//! there, so quotas and goals bound it as they bound `pageout`. What it cannot: *which*
//! pages go. `memory.reclaim` reclaims by the kernel's LRU order within the cgroup (the
//! inactive lists first), not the physical pages the monitor found cold; in a cgroup whose
//! LRU order disagrees with the monitor some of the bytes can be hot ones.
//!
//! Bytes with no cgroup to ask (uncharged pages, the root cgroup, unreadable entries) are
//! left alone: reclaiming them would mean reclaiming from the whole machine.

use crate::policy::{FilterKind, Policy, PolicyError};
use engine::AddrRange;
use std::collections::BTreeMap;

/// A range one scheme selected for a physical action, quotas and filters applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selected {
    pub scheme: usize,
    pub range: AddrRange,
}

/// Bytes of some ranges owned by one cgroup; `cgroup` is `None` for bytes no cgroup can be
/// asked to reclaim (uncharged, root, unreadable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedBytes {
    pub cgroup: Option<String>,
    pub bytes: u64,
}

/// One write to a cgroup's `memory.reclaim`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReclaimRequest {
    pub scheme: usize,
    /// As `/proc/PID/cgroup` writes it (`/a/b`), relative to the v2 root.
    pub cgroup: String,
    /// Page multiple, at least one page.
    pub bytes: u64,
}

/// What [`plan`] decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReclaimPlan {
    pub requests: Vec<ReclaimRequest>,
    /// Selected bytes with no cgroup to ask, or below a page in their cgroup.
    pub unowned_bytes: u64,
}

/// Turn the selection of each scheme into one request per owning cgroup, the amount
/// rounded down to whole pages (`page`). `owners` attributes a scheme's ranges. Requests
/// come per scheme, in scheme order, the largest amount first. Pure but for `owners`.
pub fn plan(
    selected: &[Selected],
    page: u64,
    mut owners: impl FnMut(&[AddrRange]) -> Vec<OwnedBytes>,
) -> ReclaimPlan {
    let page = page.max(1);
    let mut by_scheme: BTreeMap<usize, Vec<AddrRange>> = BTreeMap::new();
    for s in selected {
        by_scheme.entry(s.scheme).or_default().push(s.range);
    }
    let mut out = ReclaimPlan::default();
    for (scheme, ranges) in by_scheme {
        let mut per: BTreeMap<String, u64> = BTreeMap::new();
        for o in owners(&ranges) {
            match o.cgroup {
                Some(c) if c != "/" => *per.entry(c).or_default() += o.bytes,
                _ => out.unowned_bytes += o.bytes,
            }
        }
        let mut reqs: Vec<ReclaimRequest> = Vec::new();
        for (cgroup, bytes) in per {
            let whole = bytes / page * page;
            out.unowned_bytes += bytes - whole;
            if whole > 0 {
                reqs.push(ReclaimRequest {
                    scheme,
                    cgroup,
                    bytes: whole,
                });
            }
        }
        reqs.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.cgroup.cmp(&b.cgroup)));
        out.requests.extend(reqs);
    }
    out
}

impl Policy {
    /// Check the actions against where the policy runs: over physical memory
    /// (`physical`: `madvd run --paddr`) only `reclaim_cgroup` and `stat`, without a
    /// `target` or `cgroup` filter (there is no process; the owners are cgroups); over
    /// processes everything but `reclaim_cgroup`. The error points at the scheme.
    pub fn check_space(&self, physical: bool) -> Result<(), PolicyError> {
        for s in &self.schemes {
            let at = |msg: String| PolicyError::at(&self.origin, s.pos, msg);
            if physical {
                if s.action.advice().is_some() {
                    return Err(at(format!(
                        "scheme {:?}: `{}` advises a process's virtual addresses (process_madvise); over physical memory (--paddr) use `reclaim_cgroup` or `stat`",
                        s.name, s.action
                    )));
                }
                if let Some(f) = s
                    .filters
                    .iter()
                    .find(|f| matches!(f.kind, FilterKind::Target(_) | FilterKind::Cgroup(_)))
                {
                    let kind = match f.kind {
                        FilterKind::Target(_) => "target",
                        _ => "cgroup",
                    };
                    return Err(at(format!(
                        "scheme {:?}: filter `{kind}` selects processes, and physical memory (--paddr) has none; the owning cgroups are found per page",
                        s.name
                    )));
                }
            } else if s.action.is_physical() {
                return Err(at(format!(
                    "scheme {:?}: `{}` acts on physical memory: run it with `madvd run --paddr`",
                    s.name, s.action
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(scheme: usize, a: u64, b: u64) -> Selected {
        Selected {
            scheme,
            range: AddrRange::new(a, b),
        }
    }

    fn owned(c: Option<&str>, bytes: u64) -> OwnedBytes {
        OwnedBytes {
            cgroup: c.map(str::to_string),
            bytes,
        }
    }

    #[test]
    fn amounts_are_the_selected_bytes_per_owner_in_whole_pages() {
        let selected = [
            sel(0, 0, 0x10000),
            sel(1, 0x20000, 0x30000),
            sel(0, 0x40000, 0x50000),
        ];
        let mut asked: Vec<(usize, Vec<AddrRange>)> = Vec::new();
        let mut scheme = 0;
        let p = plan(&selected, 4096, |ranges| {
            asked.push((scheme, ranges.to_vec()));
            scheme += 1;
            if ranges.len() == 2 {
                vec![
                    owned(Some("/idle"), 0x18000 + 100),
                    owned(Some("/hot"), 0x8000 - 100),
                    owned(Some("/idle"), 0),
                ]
            } else {
                vec![
                    owned(Some("/"), 0x4000),
                    owned(None, 0x4000),
                    owned(Some("/hot"), 0x8000),
                ]
            }
        });
        // One call per scheme, with that scheme's ranges only.
        assert_eq!(
            asked[0].1,
            vec![AddrRange::new(0, 0x10000), AddrRange::new(0x40000, 0x50000)]
        );
        assert_eq!(asked[1].1, vec![AddrRange::new(0x20000, 0x30000)]);
        let r = |scheme, c: &str, bytes| ReclaimRequest {
            scheme,
            cgroup: c.into(),
            bytes,
        };
        assert_eq!(
            p.requests,
            vec![
                r(0, "/idle", 0x18000),
                r(0, "/hot", 0x7000),
                r(1, "/hot", 0x8000)
            ]
        );
        // Rounding (100 + 0xf9c) and the root and uncharged bytes are not asked for.
        assert_eq!(p.unowned_bytes, 100 + (0x1000 - 100) + 0x8000);
    }

    #[test]
    fn nothing_selected_asks_nothing() {
        let p = plan(&[], 4096, |_| panic!("no owners to look up"));
        assert_eq!(p, ReclaimPlan::default());
    }

    fn policy(action: &str, filter: &str) -> Policy {
        let text = format!(
            "(schemes: [(name: \"s\", pattern: (), action: {action}, filters: [{filter}])])"
        );
        Policy::from_str(&text, std::path::Path::new("p.ron")).unwrap()
    }

    #[test]
    fn each_action_runs_only_in_its_space() {
        assert!(policy("reclaim_cgroup", "").check_space(true).is_ok());
        assert!(policy("stat", "").check_space(true).is_ok());
        assert!(policy("pageout", "").check_space(false).is_ok());
        let e = policy("pageout", "")
            .check_space(true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`pageout` advises a process's virtual addresses"),
            "{e}"
        );
        let e = policy("reclaim_cgroup", "")
            .check_space(false)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("p.ron:1:") && e.contains("run it with `madvd run --paddr`"),
            "{e}"
        );
        let e = policy("reclaim_cgroup", "(kind: cgroup(\"/a\"), allow: false)")
            .check_space(true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("filter `cgroup` selects processes"), "{e}");
    }
}

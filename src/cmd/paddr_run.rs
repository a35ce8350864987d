//! `madvd run --paddr`: a policy over physical memory. madvd's monitor over the `paddr`
//! check ([`super::paddr::Session`]) feeds each aggregated snapshot to the schemes; the
//! ranges a `reclaim_cgroup` scheme selects (pattern, quotas, goals, watermarks, apply
//! interval, as for any action) are attributed to their memory cgroups through
//! `/proc/kpagecgroup` (engine `ops::paddr::reclaim`), and each owning cgroup is asked to
//! reclaim that many bytes through its cgroup v2 `memory.reclaim` (`schemes::reclaim` plans
//! the amounts; `engine::kernel::cgroup_reclaim` writes them). The kernel picks the pages
//! by its LRU order inside the cgroup: the amount is the monitor's, the choice is not.
//!
//! Schemes are applied at aggregation boundaries (an `apply_interval` shorter than the
//! aggregation interval acts at the next one). The scheme's quota is charged with the
//! selected bytes, as for `pageout`; `sz_applied` counts the bytes the kernel reclaimed.

use crate::cli::RunArgs;
use crate::cmd::paddr::Session;
use crate::exit::{err, Code};
use crate::pipeline::SchemeLine;
use crate::signals;
use crate::units::{fmt_bytes, fmt_duration_us};
use anyhow::Result;
use engine::ops::paddr::reclaim::PaddrReclaim;
use engine::{AddrRange, SysRoot};
use schemes::reclaim::{self, OwnedBytes};
use schemes::{Schemes, SysMetrics};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// What one cgroup was asked for and gave, over the run.
#[derive(Clone, Debug, Default, Serialize)]
struct PerCgroup {
    requests: u64,
    asked_bytes: u64,
    reclaimed_bytes: u64,
    /// Writes the kernel answered EAGAIN (reclaimed less than asked).
    incomplete: u64,
}

#[derive(Default)]
struct Tally {
    snapshots: u64,
    regions: usize,
    asked: u64,
    reclaimed: u64,
    unowned: u64,
    young: u64,
    cgroups: BTreeMap<String, PerCgroup>,
    errors: BTreeMap<String, u64>,
    first_error: Option<String>,
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(rename = "final")]
    is_final: bool,
    t_s: f64,
    ops: &'static str,
    dry_run: bool,
    ranges: &'a [AddrRange],
    regions: usize,
    snapshots: u64,
    asked_bytes: u64,
    reclaimed_bytes: u64,
    unowned_bytes: u64,
    /// Selected bytes kept out because their pages were used since last checked (part of
    /// `unowned_bytes`).
    young_bytes: u64,
    cgroups: &'a BTreeMap<String, PerCgroup>,
    schemes: &'a [SchemeLine],
    errors: &'a BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

fn human(l: &Line<'_>) -> String {
    let mut by: Vec<(&String, &PerCgroup)> = l.cgroups.iter().collect();
    by.sort_by_key(|c| std::cmp::Reverse(c.1.asked_bytes));
    let groups: Vec<String> = by
        .iter()
        .take(6)
        .map(|(g, c)| {
            format!(
                "{g} {} of {}",
                fmt_bytes(c.reclaimed_bytes),
                fmt_bytes(c.asked_bytes)
            )
        })
        .collect();
    let mut s = format!(
        "[{:>7.1}s] paddr{} | {} regions | reclaim_cgroup: asked {}, reclaimed {}{}",
        l.t_s,
        if l.dry_run { " (dry run)" } else { "" },
        l.regions,
        fmt_bytes(l.asked_bytes),
        fmt_bytes(l.reclaimed_bytes),
        if groups.is_empty() {
            String::new()
        } else {
            format!(" ({})", groups.join(", "))
        }
    );
    if l.unowned_bytes > 0 {
        s += &format!(
            " | no cgroup to ask: {} (young {})",
            fmt_bytes(l.unowned_bytes),
            fmt_bytes(l.young_bytes)
        );
    }
    let inactive = super::run::inactive_schemes(l.schemes);
    if !inactive.is_empty() {
        s += &format!(" | inactive: {}", inactive.join(", "));
    }
    if !l.errors.is_empty() {
        let e: Vec<String> = l
            .errors
            .iter()
            .map(|(k, b)| format!("{k} {}", fmt_bytes(*b)))
            .collect();
        s += &format!(" | not reclaimed: {}", e.join(", "));
    }
    if let Some(r) = l.reason {
        s = format!("final ({r}): {s}");
    }
    s
}

/// `madvd run --paddr RANGES --policy FILE`.
pub fn run(root: &SysRoot, a: RunArgs, spec: &str) -> Result<()> {
    let policy = crate::policy::load(&a.policy)?;
    policy
        .check_space(true)
        .map_err(|e| err(Code::Usage, e.to_string()))?;
    policy
        .check_runnable()
        .map_err(|e| err(Code::Usage, e.to_string()))?;
    if a.children {
        return Err(err(
            Code::Usage,
            "--children: physical memory (--paddr) has no processes to follow",
        ));
    }
    let mut session = Session::open_for(root, spec, &a.attrs, Some(&policy))?;
    let page = session.page_size();
    let wants_reclaim = policy.schemes.iter().any(|s| s.action.is_physical());
    let mut reclaimer = if wants_reclaim {
        Some(
            PaddrReclaim::open(root, page)
                .map_err(|e| err(Code::Failure, format!("reclaim_cgroup: {e}")))?,
        )
    } else {
        None
    };
    let mut schemes = Schemes::new(&policy, Box::new(SysMetrics::new(root.clone())))
        .map_err(|e| err(Code::Failure, e.to_string()))?;
    let ranges = session.ranges().to_vec();
    let attrs = session.attrs();
    if !a.json {
        eprintln!(
            "madvd run: {} over physical memory {} with paddr{}; {} sampling, {} aggregation; Ctrl-C stops",
            a.policy.display(),
            ranges.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", "),
            if a.dry_run { " (dry run: no cgroup is asked to reclaim)" } else { "" },
            fmt_duration_us(attrs.sample_us),
            fmt_duration_us(attrs.aggr_us)
        );
    }
    let t0 = Instant::now();
    let until = a.for_.map(|d| t0 + d);
    let mut next_print = t0 + a.every;
    let mut t = Tally::default();
    while let Some(o) = session.next(until) {
        let snap = o.snapshot;
        t.snapshots += 1;
        t.regions = snap.nr_regions();
        let advice = schemes.plan(&snap, snap.now_us);
        debug_assert!(advice.is_empty(), "check_space leaves no advising scheme");
        let selected = schemes.take_selected();
        if let Some(r) = reclaimer.as_mut() {
            let plan = reclaim::plan(&selected, page, |ranges| {
                r.owners_of(ranges)
                    .into_iter()
                    .map(|(cgroup, bytes)| OwnedBytes { cgroup, bytes })
                    .collect()
            });
            t.unowned += plan.unowned_bytes;
            t.young = r.young_bytes();
            for req in plan.requests {
                let c = t.cgroups.entry(req.cgroup.clone()).or_default();
                c.requests += 1;
                c.asked_bytes += req.bytes;
                t.asked += req.bytes;
                if a.dry_run {
                    continue;
                }
                match r.reclaim(&req.cgroup, req.bytes) {
                    Ok(done) => {
                        let got = done.bytes();
                        c.reclaimed_bytes += got;
                        c.incomplete += u64::from(!done.complete);
                        t.reclaimed += got;
                        schemes.charge(req.scheme, done.elapsed_ns, got);
                    }
                    Err(e) => {
                        let label = match &e {
                            engine::kernel::cgroup_reclaim::CgroupReclaimError::NoReclaimFile(
                                _,
                            ) => "gone",
                            _ => "error",
                        };
                        *t.errors.entry(label.into()).or_default() += req.bytes;
                        if t.first_error.is_none() {
                            eprintln!("madvd: warning: {e}");
                            t.first_error = Some(e.to_string());
                        }
                    }
                }
            }
        }
        if Instant::now() >= next_print {
            next_print += a.every;
            print(&a, &ranges, &t, &schemes.stats(), t0, None);
        }
    }
    let reason = match signals::signal_name() {
        Some(s) if signals::stop_requested() => s,
        _ => "duration",
    };
    print(&a, &ranges, &t, &schemes.stats(), t0, Some(reason));
    match t.first_error {
        Some(e) if !a.dry_run && t.reclaimed == 0 => {
            Err(err(Code::Failure, format!("nothing was reclaimed: {e}")))
        }
        _ => Ok(()),
    }
}

fn print(
    a: &RunArgs,
    ranges: &[AddrRange],
    t: &Tally,
    stats: &[SchemeLine],
    t0: Instant,
    reason: Option<&str>,
) {
    let line = Line {
        is_final: reason.is_some(),
        t_s: t0.elapsed().as_secs_f64(),
        ops: "paddr",
        dry_run: a.dry_run,
        ranges,
        regions: t.regions,
        snapshots: t.snapshots,
        asked_bytes: t.asked,
        reclaimed_bytes: t.reclaimed,
        unowned_bytes: t.unowned,
        young_bytes: t.young,
        cgroups: &t.cgroups,
        schemes: stats,
        errors: &t.errors,
        reason,
    };
    if a.json {
        println!("{}", serde_json::to_string(&line).expect("serializes"));
    } else {
        println!("{}", human(&line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_names_each_cgroup_and_what_was_not_reclaimed() {
        let mut cgroups = BTreeMap::new();
        cgroups.insert(
            "/idle".to_string(),
            PerCgroup {
                requests: 3,
                asked_bytes: 60 << 20,
                reclaimed_bytes: 58 << 20,
                incomplete: 1,
            },
        );
        let mut errors = BTreeMap::new();
        errors.insert("gone".to_string(), 1 << 20);
        let l = Line {
            is_final: true,
            t_s: 12.0,
            ops: "paddr",
            dry_run: false,
            ranges: &[AddrRange::new(0x100000, 0x200000)],
            regions: 120,
            snapshots: 30,
            asked_bytes: 61 << 20,
            reclaimed_bytes: 58 << 20,
            unowned_bytes: 4096,
            young_bytes: 0,
            cgroups: &cgroups,
            schemes: &[],
            errors: &errors,
            reason: Some("duration"),
        };
        let h = human(&l);
        assert!(h.starts_with("final (duration): [   12.0s] paddr | 120 regions | reclaim_cgroup: asked 61.0 MiB, reclaimed 58.0 MiB (/idle 58.0 MiB of 60.0 MiB)"), "{h}");
        assert!(
            h.contains("no cgroup to ask: 4.0 KiB") && h.contains("not reclaimed: gone 1.0 MiB"),
            "{h}"
        );
        let j = serde_json::to_value(&l).unwrap();
        assert_eq!(j["cgroups"]["/idle"]["incomplete"], 1);
        assert_eq!(j["final"], true);
    }
}

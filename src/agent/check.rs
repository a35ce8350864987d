//! `madvd agent --check`: what would run.

use super::config;
use super::discover;
use super::reload::Prepared;
use engine::SysRoot;

/// Print what `--check` found (and which selected cgroups do not exist on this host yet).
pub(super) fn print_check(root: &SysRoot, p: &Prepared) {
    println!(
        "{}: ok: {} group(s), rescan every {}, metrics on {}{}",
        p.config.origin.display(),
        p.groups.len(),
        crate::units::fmt_duration_us(p.config.rescan_us),
        p.config
            .listen
            .map(|a| a.to_string())
            .unwrap_or_else(|| "(off)".into()),
        if p.config.dry_run { ", dry run" } else { "" }
    );
    for g in &p.groups {
        println!(
            "  {}: {}{} -> {} ({} scheme(s)) with {}, {} sampling, {} aggregation, at most {} processes{}",
            g.spec.name,
            g.spec.select,
            if g.spec.children { " and descendants" } else { "" },
            g.spec.policy.display(),
            g.policy.schemes.len(),
            g.ops,
            crate::units::fmt_duration_us(g.attrs.sample_us),
            crate::units::fmt_duration_us(g.attrs.aggr_us),
            g.spec.max_targets,
            if g.dry_run { ", dry run" } else { "" }
        );
        if let config::Selector::Cgroup(c) = &g.spec.select {
            if !discover::reroot_cgroup(root, c).is_dir() {
                println!(
                    "    note: {} does not exist here (yet): the group waits for it",
                    c.display()
                );
            }
        }
    }
}

//! `madvd ops`: the access primitives, whether each is usable here, and why not.

use crate::cli::OpsArgs;
use anyhow::Result;
use engine::ops::{detect, pick_auto, OpsStatus};
use engine::SysRoot;

pub fn run(root: &SysRoot, a: OpsArgs) -> Result<()> {
    let all = detect(root);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print!("{}", table(&all));
    }
    Ok(())
}

/// The table for people: one row per primitive in auto order, then which one auto picks.
pub fn table(all: &[OpsStatus]) -> String {
    let mut s = format!(
        "{:<11} {:<7} {:<40} {}\n",
        "PRIMITIVE", "USABLE", "SEES", "WHY NOT / WHAT IT IS"
    );
    for o in all {
        let why = o
            .why_not
            .clone()
            .unwrap_or_else(|| o.description.to_string());
        let g = if o.granularity.chars().count() > 40 {
            format!("{}…", o.granularity.chars().take(39).collect::<String>())
        } else {
            o.granularity.to_string()
        };
        s += &format!(
            "{:<11} {:<7} {:<40} {}\n",
            o.kind,
            if o.usable { "yes" } else { "no" },
            g,
            why
        );
    }
    s += &match pick_auto(all) {
        Ok(p) => format!("\nauto picks: {} (override with --ops NAME)\n", p.kind),
        Err(e) => format!("\nauto picks nothing: {e}\n"),
    };
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::ops::OpsKind;

    fn st(kind: OpsKind, usable: bool) -> OpsStatus {
        OpsStatus {
            kind,
            usable,
            why_not: (!usable).then(|| format!("{kind} needs X")),
            granularity: "page",
            description: "desc",
            rank: kind.rank(),
        }
    }

    #[test]
    fn table_lists_every_primitive_and_the_pick() {
        let t = table(&[
            st(OpsKind::PageIdle, false),
            st(OpsKind::Probe, true),
            st(OpsKind::Smaps, true),
        ]);
        assert!(t.contains("page_idle   no"), "{t}");
        assert!(t.contains("page_idle needs X"), "{t}");
        assert!(t.contains("probe       yes"), "{t}");
        assert!(t.contains("auto picks: probe"), "{t}");
        let t = table(&[st(OpsKind::Probe, false)]);
        assert!(t.contains("auto picks nothing"), "{t}");
    }
}

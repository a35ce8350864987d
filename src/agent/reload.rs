//! Loading and hot reload. A config is [`prepare`]d — the file parsed, every group's policy
//! loaded and checked, its access primitive chosen, its stages built once (the primitive,
//! its schemes' goal and watermark sources, its monitoring attributes) — before anything running
//! is touched. [`ConfigState::offer`] then either takes the new config whole (and says which
//! groups to stop, start or keep) or refuses it and keeps the old one: a new config is
//! never half applied.
//!
//! Triggers: SIGHUP ([`install_sighup`]), and a changed config or policy file ([`Watch`]:
//! mtime, size, inode — a Kubernetes ConfigMap update swaps a symlink, changing the inode).

use super::config::{self, AgentConfig, GroupSpec};
use crate::cli::AttrFlags;
use crate::pipeline::{self, SchemesConfig, StageConfig, Stages, Watched};
use anyhow::{anyhow, Result};
use engine::ops::OpsKind;
use engine::{Attrs, SysRoot};
use schemes::Policy;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

static HUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hup(_: libc::c_int) {
    HUP.store(true, Ordering::SeqCst);
}

/// SIGHUP → reload (the handler only stores to an atomic: async-signal-safe).
pub fn install_sighup() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_hup),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe; nothing
    // else in the program handles SIGHUP.
    unsafe { sigaction(Signal::SIGHUP, &act) }.map_err(|e| anyhow!("sigaction(SIGHUP): {e}"))?;
    Ok(())
}

/// True once per SIGHUP received.
pub fn take_sighup() -> bool {
    HUP.swap(false, Ordering::SeqCst)
}

/// One group, checked and ready to start.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupPlan {
    pub spec: GroupSpec,
    pub policy: Policy,
    /// The access primitive chosen (`auto` resolved).
    pub ops: OpsKind,
    pub attrs: Attrs,
    pub dry_run: bool,
}

/// A checked config with its groups.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    pub config: AgentConfig,
    pub groups: Vec<GroupPlan>,
}

impl Prepared {
    /// The files whose change triggers a reload: the config and every policy.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.config.origin.clone()];
        for g in &self.groups {
            if !v.contains(&g.spec.policy) {
                v.push(g.spec.policy.clone());
            }
        }
        v
    }
}

/// Read and check everything the config at `path` names. Errors name the file, line and
/// column (config or policy), or the group and its position.
pub fn prepare(root: &SysRoot, path: &Path) -> Result<Prepared> {
    let cfg = config::load(path)?;
    prepare_groups(
        cfg,
        crate::policy::load,
        |name| crate::targets::choose(root, name),
        // Built once (then dropped): a primitive that cannot take live targets, schemes
        // whose sources are missing here and bad monitoring attributes are refused here.
        |g, ops, policy| Ok(stages(root, &g.name, ops, policy, false)?.attrs()),
    )
}

/// A group's stages: no targets yet (they come through [`Running::add_target`]), the
/// group's policy with the primitive's defaults under its `monitor` section.
pub fn stages(
    root: &SysRoot,
    name: &str,
    ops: OpsKind,
    policy: &Policy,
    dry_run: bool,
) -> Result<Stages> {
    let schemes = SchemesConfig {
        policy: policy.clone(),
        procs: Vec::new(),
        dry_run,
    };
    let watch = Watched::Procs(Vec::new());
    let mut cfg = StageConfig::new(root, ops, watch, &AttrFlags::default(), Some(schemes));
    cfg.live = true;
    cfg.seed = std::process::id() as u64 ^ name.len() as u64;
    pipeline::build(cfg)
}

/// [`prepare`] with its I/O as functions (tests give fixtures).
pub fn prepare_groups(
    cfg: AgentConfig,
    mut load_policy: impl FnMut(&Path) -> Result<Policy>,
    mut choose_ops: impl FnMut(&str) -> Result<OpsKind>,
    mut settle: impl FnMut(&GroupSpec, OpsKind, &Policy) -> Result<Attrs>,
) -> Result<Prepared> {
    let mut policies: BTreeMap<PathBuf, Policy> = BTreeMap::new();
    let mut groups = Vec::with_capacity(cfg.targets.len());
    for g in &cfg.targets {
        let at = format!(
            "{}:{}:{}: group `{}`",
            cfg.origin.display(),
            g.pos.line,
            g.pos.column,
            g.name
        );
        let policy = match policies.get(&g.policy) {
            Some(p) => p.clone(),
            None => {
                let p = load_policy(&g.policy).map_err(|e| cfg.policy_error(g, e))?;
                policies.insert(g.policy.clone(), p.clone());
                p
            }
        };
        let ops = choose_ops(g.ops.as_arg()).map_err(|e| crate::exit::in_file(e, at.clone()))?;
        let attrs = settle(g, ops, &policy)
            .map_err(|e| crate::exit::in_file(e, format!("{at}: policy {}", g.policy.display())))?;
        groups.push(GroupPlan {
            spec: g.clone(),
            policy,
            ops,
            attrs,
            dry_run: cfg.dry_run_of(g),
        });
    }
    Ok(Prepared {
        config: cfg,
        groups,
    })
}

/// What a reload changes, by group name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Groups to stop (removed, or changed: then also in `start`).
    pub stop: Vec<String>,
    /// Groups to start (new, or changed).
    pub start: Vec<String>,
    /// Groups that keep running untouched (same selector, policy, primitive, settings).
    pub keep: Vec<String>,
}

/// Compare two configs group by group.
pub fn diff(old: &Prepared, new: &Prepared) -> Diff {
    let mut d = Diff::default();
    for o in &old.groups {
        match new.groups.iter().find(|n| n.spec.name == o.spec.name) {
            Some(n) if same(o, n) => d.keep.push(o.spec.name.clone()),
            _ => d.stop.push(o.spec.name.clone()),
        }
    }
    for n in &new.groups {
        if !d.keep.contains(&n.spec.name) {
            d.start.push(n.spec.name.clone());
        }
    }
    d
}

fn same(a: &GroupPlan, b: &GroupPlan) -> bool {
    // The position in the file is no change of substance.
    let mut bs = b.spec.clone();
    bs.pos = a.spec.pos;
    bs.policy_pos = a.spec.policy_pos;
    a.spec == bs
        && a.policy == b.policy
        && a.ops == b.ops
        && a.attrs == b.attrs
        && a.dry_run == b.dry_run
}

/// The config in force and the reload counters. Pure: the agent feeds it candidates.
pub struct ConfigState {
    pub active: Prepared,
    pub reloads: u64,
    pub errors: u64,
    pub last_ok: bool,
    pub last_error: Option<String>,
}

impl ConfigState {
    pub fn new(active: Prepared) -> Self {
        Self {
            active,
            reloads: 0,
            errors: 0,
            last_ok: true,
            last_error: None,
        }
    }

    /// Take a reloaded config: `Ok` replaces the active one whole and returns what changes;
    /// `Err` keeps the active one, counts the error and returns `None`.
    pub fn offer(&mut self, candidate: Result<Prepared, String>) -> Option<Diff> {
        match candidate {
            Ok(p) => {
                let d = diff(&self.active, &p);
                self.active = p;
                self.reloads += 1;
                self.last_ok = true;
                self.last_error = None;
                Some(d)
            }
            Err(e) => {
                self.errors += 1;
                self.last_ok = false;
                self.last_error = Some(e);
                None
            }
        }
    }
}

/// What identifies a file's version: (mtime ns, size, inode, device); `None` if missing.
type Stamp = Option<(i128, u64, u64, u64)>;

fn stamp(p: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        m.size(),
        m.ino(),
        m.dev(),
    ))
}

/// Watches files for changes (polled; a reload is cheap and rare).
pub struct Watch {
    files: Vec<(PathBuf, Stamp)>,
}

impl Watch {
    pub fn new(files: Vec<PathBuf>) -> Self {
        Self {
            files: files.into_iter().map(|f| (f.clone(), stamp(&f))).collect(),
        }
    }

    /// True when any file changed (or appeared, or vanished) since the last call.
    pub fn changed(&mut self) -> bool {
        let mut any = false;
        for (p, s) in &mut self.files {
            let now = stamp(p);
            if now != *s {
                *s = now;
                any = true;
            }
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const POLICY: &str = r#"(schemes: [(name: "cold", pattern: (accesses: (min: 0, max: 0), age: (min: "30 s")), action: cold)])"#;

    fn load_cfg(text: &str) -> Result<AgentConfig> {
        config::parse(text, Path::new("/etc/madvd/agent.ron")).map_err(anyhow::Error::new)
    }

    /// `prepare` over in-memory policy texts.
    fn prep(cfg: &str, policies: &[(&str, &str)]) -> Result<Prepared> {
        let cfg = load_cfg(cfg)?;
        prepare_groups(
            cfg,
            |p| {
                let text = policies
                    .iter()
                    .find(|(n, _)| Path::new("/etc/madvd").join(n) == p)
                    .map(|(_, t)| *t)
                    .ok_or_else(|| anyhow!("{}: no such file", p.display()))?;
                Policy::from_str(text, p).map_err(anyhow::Error::new)
            },
            |name| match name {
                "auto" | "smaps" => Ok(OpsKind::Smaps),
                "probe" => Ok(OpsKind::Probe),
                other => Err(anyhow!("unknown access primitive `{other}`")),
            },
            |_, _, _| Ok(Attrs::default()),
        )
    }

    const CFG: &str = r#"(targets: [
    (name: "web", select: Comm("nginx"), policy: "cold.ron"),
    (name: "db", select: Comm("postgres"), policy: "cold.ron", ops: Named("probe")),
])"#;

    #[test]
    fn bad_new_config_keeps_the_old_one() {
        let good = prep(CFG, &[("cold.ron", POLICY)]).unwrap();
        let mut st = ConfigState::new(good.clone());
        // A syntax error in the config.
        let bad = prep(
            "(targets: [(name: \"web\", select: Comm(\"nginx\"), policy: \"cold.ron\")",
            &[("cold.ron", POLICY)],
        )
        .map_err(|e| format!("{e:#}"));
        assert!(
            bad.as_ref()
                .unwrap_err()
                .starts_with("/etc/madvd/agent.ron:1:"),
            "{bad:?}"
        );
        assert_eq!(st.offer(bad), None);
        assert_eq!(st.active, good);
        assert_eq!((st.reloads, st.errors, st.last_ok), (0, 1, false));
        // A good config whose policy has a mistake: refused whole, the old config stays.
        let bad_policy = POLICY.replace("\"30 s\"", "\"30 parsecs\"");
        let e = prep(CFG, &[("cold.ron", &bad_policy)]).map_err(|e| format!("{e:#}"));
        let msg = e.as_ref().unwrap_err().clone();
        assert!(msg.starts_with("/etc/madvd/cold.ron:1:"), "{msg}");
        assert!(msg.contains("parsecs"), "{msg}");
        assert_eq!(st.offer(e), None);
        assert_eq!(st.active, good);
        assert_eq!(st.errors, 2);
        assert_eq!(st.last_error.as_deref(), Some(msg.as_str()));
        // An unusable primitive for one group: refused whole, naming the group and where.
        let e = prep(
            &CFG.replace("Named(\"probe\")", "Named(\"damon\")"),
            &[("cold.ron", POLICY)],
        )
        .map_err(|e| format!("{e:#}"));
        let msg = e.as_ref().unwrap_err().clone();
        assert!(
            msg.starts_with("/etc/madvd/agent.ron:3:5: group `db`: unknown access primitive"),
            "{msg}"
        );
        assert_eq!(st.offer(e), None);
        assert_eq!(st.active, good);
        // Then a good one is taken.
        let new = prep(
            &CFG.replace("Comm(\"postgres\")", "Comm(\"postgres\"), max_targets: 4"),
            &[("cold.ron", POLICY)],
        )
        .unwrap();
        let d = st.offer(Ok(new.clone())).unwrap();
        assert_eq!(st.active, new);
        assert_eq!(
            (st.reloads, st.last_ok, st.last_error.clone()),
            (1, true, None)
        );
        assert_eq!(
            d,
            Diff {
                stop: vec!["db".into()],
                start: vec!["db".into()],
                keep: vec!["web".into()]
            }
        );
    }

    #[test]
    fn diff_keeps_unchanged_groups_running() {
        let a = prep(CFG, &[("cold.ron", POLICY)]).unwrap();
        // Moving a group in the file (position) changes nothing.
        let moved = format!("\n\n{CFG}");
        let b = prep(&moved, &[("cold.ron", POLICY)]).unwrap();
        assert_eq!(
            diff(&a, &b),
            Diff {
                stop: vec![],
                start: vec![],
                keep: vec!["web".into(), "db".into()]
            }
        );
        // A policy change restarts every group using it; a removed group stops, a new one starts.
        let p2 = POLICY.replace("30 s", "60 s");
        let c = prep(
            r#"(targets: [(name: "web", select: Comm("nginx"), policy: "cold.ron"),
                          (name: "redis", select: Comm("redis-server"), policy: "cold.ron")])"#,
            &[("cold.ron", &p2)],
        )
        .unwrap();
        let d = diff(&a, &c);
        assert_eq!(d.stop, vec!["web".to_string(), "db".into()]);
        assert_eq!(d.start, vec!["web".to_string(), "redis".into()]);
        assert!(d.keep.is_empty());
    }

    #[test]
    fn files_lists_config_and_policies_once() {
        let a = prep(CFG, &[("cold.ron", POLICY)]).unwrap();
        assert_eq!(
            a.files(),
            vec![
                PathBuf::from("/etc/madvd/agent.ron"),
                PathBuf::from("/etc/madvd/cold.ron")
            ]
        );
    }

    #[test]
    fn watch_sees_rewrites_and_replacements() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("agent.ron");
        std::fs::write(&f, "a").unwrap();
        let mut w = Watch::new(vec![f.clone()]);
        assert!(!w.changed());
        // Same size, new content: mtime (ns) or, for a rename over it, the inode changes.
        let tmp = d.path().join("agent.ron.new");
        std::fs::File::create(&tmp)
            .unwrap()
            .write_all(b"b")
            .unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        assert!(w.changed());
        assert!(!w.changed());
        std::fs::remove_file(&f).unwrap();
        assert!(w.changed());
    }
}

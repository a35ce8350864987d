//! The agent's config file: RON, in the style and units of policy files, read into raw
//! structures with `ron` + `serde` and then checked field by field. Every mistake is
//! `path:line:column: message` (the same [`PolicyError`] as policy files: `ron`'s span for
//! structure errors, [`Locator`] positions for value errors). Pure: text in, value out; the
//! policies the groups name are loaded by [`crate::agent::reload::prepare`].
//!
//! ```ron
//! (
//!     targets: [
//!         (name: "web", select: Cgroup("/sys/fs/cgroup/unified/system.slice/nginx.service"),
//!          policy: "policies/reclaim-cold.ron"),
//!         (name: "db", select: Comm("postgres"), policy: "policies/stat.ron", ops: Named("smaps")),
//!         (name: "build", select: Comm("make"), children: true, policy: "policies/stat.ron"),
//!     ],
//!     rescan: "10 s",
//!     listen: "127.0.0.1:9464",
//!     dry_run: false,
//!     cpu_budget: "2%",
//! )
//! ```

use crate::exit::{err, with_source, Code};
use schemes::locate::{Locator, Pos};
use schemes::policy::ron_error;
use schemes::units::{self, Quantity};
use schemes::PolicyError;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Default metrics address: loopback only; a DaemonSet or a scraper on another host needs
/// it set explicitly.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// Default rescan interval, µs.
pub const DEFAULT_RESCAN_US: u64 = 10_000_000;
/// Shortest rescan interval accepted, µs (a rescan reads every /proc/PID/comm).
pub const MIN_RESCAN_US: u64 = 100_000;
/// Default cap on the processes one group watches.
pub const DEFAULT_MAX_TARGETS: usize = 64;
/// Most processes of one group with per-pid metric series (`pid_metrics`).
pub const MAX_PID_METRICS: usize = 1000;
/// `TASK_COMM_LEN - 1` (include/linux/sched.h): /proc/PID/comm holds at most 15 bytes.
pub const COMM_MAX: usize = 15;
/// Largest config file accepted.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// How a group finds its processes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Selector {
    /// Every process in this cgroup directory and the cgroups below it (`cgroup.procs`;
    /// on a v1 hierarchy without it, the thread-group leaders of `tasks`).
    Cgroup(PathBuf),
    /// Every process whose `/proc/PID/comm` is this name.
    Comm(String),
    /// Every process whose `/proc/PID/exe` is this path.
    Exe(PathBuf),
    /// One process.
    Pid(u32),
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Cgroup(p) => write!(f, "Cgroup({:?})", p.display().to_string()),
            Selector::Comm(c) => write!(f, "Comm({c:?})"),
            Selector::Exe(p) => write!(f, "Exe({:?})", p.display().to_string()),
            Selector::Pid(p) => write!(f, "Pid({p})"),
        }
    }
}

/// Which access primitive a group's monitor uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OpsChoice {
    /// The finest usable here (`madvd ops`).
    Auto,
    /// A name from `madvd ops`.
    Named(String),
}

impl OpsChoice {
    /// As `targets::choose` takes it.
    pub fn as_arg(&self) -> &str {
        match self {
            OpsChoice::Auto => "auto",
            OpsChoice::Named(n) => n,
        }
    }
}

/// One target group: a selector and the policy its processes get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSpec {
    pub name: String,
    pub select: Selector,
    /// The selected processes' descendants too, followed as they fork and exit (walked every
    /// second; a pid is taken only with the start time it was found with).
    pub children: bool,
    /// The policy file, relative paths resolved against the config file's directory.
    pub policy: PathBuf,
    pub ops: OpsChoice,
    /// Most processes this group watches at once (more are logged once and not added).
    pub max_targets: usize,
    /// Most of the group's processes exported with per-pid metric series (0: none, the
    /// default: group-level series only).
    pub pid_metrics: usize,
    /// Per-group dry run (`None`: the file's `dry_run`).
    pub dry_run: Option<bool>,
    /// Where the group starts in the file.
    pub pos: Pos,
    /// Where its `policy` value is.
    pub policy_pos: Pos,
}

/// A checked config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    pub targets: Vec<GroupSpec>,
    pub rescan_us: u64,
    /// Metrics address; `None`: no metrics server (`listen: "off"`).
    pub listen: Option<SocketAddr>,
    pub dry_run: bool,
    /// The agent's CPU budget in basis points of one CPU (`cpu_budget: "2%"` → 200); `None`:
    /// no budget (every group runs at its policy's attributes). See [`crate::agent::budget`].
    pub cpu_budget_bp: Option<u64>,
    /// The file it came from.
    pub origin: PathBuf,
}

impl AgentConfig {
    /// The CPU budget as a share of one CPU (0.02 for `"2%"`).
    pub fn cpu_budget(&self) -> Option<f64> {
        self.cpu_budget_bp.map(|bp| bp as f64 / 10_000.0)
    }

    /// A group's effective dry-run setting.
    pub fn dry_run_of(&self, g: &GroupSpec) -> bool {
        g.dry_run.unwrap_or(self.dry_run)
    }

    /// An error loading `g`'s policy. A policy that cannot be read is placed at the
    /// config's `policy:` value (`config.ron:L:C: cannot read policy PATH: …`); a mistake
    /// inside a policy already names the policy's own line and column.
    pub fn policy_error(&self, g: &GroupSpec, e: anyhow::Error) -> anyhow::Error {
        if !e.chain().any(|c| c.is::<std::io::Error>()) {
            return e;
        }
        let at = format!(
            "{}:{}:{}",
            self.origin.display(),
            g.policy_pos.line,
            g.policy_pos.column
        );
        crate::exit::in_file(e, at)
    }
}

// ---------------------------------------------------------------------------------------
// Raw structures, as `ron` reads them.

#[derive(Deserialize)]
#[serde(rename = "Agent", deny_unknown_fields)]
struct RawConfig {
    targets: Vec<RawGroup>,
    #[serde(default)]
    rescan: Option<Quantity>,
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(default)]
    cpu_budget: Option<Quantity>,
}

#[derive(Deserialize)]
#[serde(rename = "Target", deny_unknown_fields)]
struct RawGroup {
    name: String,
    select: RawSelector,
    #[serde(default)]
    children: Option<bool>,
    policy: String,
    #[serde(default)]
    ops: Option<RawOps>,
    #[serde(default)]
    max_targets: Option<Quantity>,
    #[serde(default)]
    pid_metrics: Option<Quantity>,
    #[serde(default)]
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename = "Selector")]
enum RawSelector {
    Cgroup(String),
    Comm(String),
    Exe(String),
    Pid(Quantity),
}

#[derive(Deserialize)]
#[serde(rename = "Ops")]
enum RawOps {
    Auto,
    Named(String),
}

/// Parse and check config text. `origin` names the file in errors and anchors relative
/// policy paths. Pure: no I/O.
pub fn parse(text: &str, origin: &Path) -> Result<AgentConfig, PolicyError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(PolicyError::at(
            origin,
            Pos { line: 1, column: 1 },
            format!(
                "file is {} bytes, larger than the {MAX_CONFIG_BYTES} bytes a config may have",
                text.len()
            ),
        ));
    }
    let opts = ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .with_recursion_limit(32);
    let raw: RawConfig = opts.from_str(text).map_err(|e| ron_error(e, origin))?;
    let loc = Locator::new(text);
    let err = |path: &str, msg: String| {
        let field = path.rsplit('.').next().unwrap_or(path);
        PolicyError::at(origin, loc.value_pos(path), format!("{field}: {msg}"))
    };
    let base = origin.parent().unwrap_or(Path::new("."));

    let rescan_us = match &raw.rescan {
        None => DEFAULT_RESCAN_US,
        Some(q) => {
            let v = units::time_us(q).map_err(|m| err("rescan", m))?;
            if v < MIN_RESCAN_US {
                return Err(err(
                    "rescan",
                    format!("{q} is shorter than the 100 ms minimum (a rescan reads /proc)"),
                ));
            }
            v
        }
    };
    let listen = match raw.listen.as_deref().map(str::trim) {
        None => Some(DEFAULT_LISTEN.parse().expect("valid default")),
        Some("off") | Some("") => None,
        Some(s) => Some(parse_listen(s).map_err(|m| err("listen", m))?),
    };
    let cpu_budget_bp = match &raw.cpu_budget {
        None => None,
        Some(q) => Some(super::budget::parse_share(q).map_err(|m| err("cpu_budget", m))?),
    };
    if raw.targets.is_empty() {
        return Err(err(
            "targets",
            "no target groups: give at least one (name: ..., select: ..., policy: ...)".into(),
        ));
    }
    let mut names = BTreeSet::new();
    let mut selectors = BTreeSet::new();
    let mut targets = Vec::with_capacity(raw.targets.len());
    for (i, g) in raw.targets.into_iter().enumerate() {
        let at = |f: &str| format!("targets[{i}].{f}");
        check_name(&g.name).map_err(|m| err(&at("name"), m))?;
        if !names.insert(g.name.clone()) {
            return Err(err(
                &at("name"),
                format!("`{}` names two groups: group names must be unique", g.name),
            ));
        }
        let select = match g.select {
            RawSelector::Cgroup(p) => {
                if !p.starts_with('/') {
                    return Err(err(
                        &at("select"),
                        format!("cgroup path `{p}` is not absolute (e.g. /sys/fs/cgroup/...)"),
                    ));
                }
                Selector::Cgroup(PathBuf::from(p.trim_end_matches('/')))
            }
            RawSelector::Comm(c) => {
                if c.is_empty() {
                    return Err(err(&at("select"), "empty command name".into()));
                }
                if c.len() > COMM_MAX {
                    let cut = truncate_comm(&c);
                    return Err(err(
                        &at("select"),
                        format!(
                            "`{c}` is {} bytes; /proc/PID/comm holds at most {COMM_MAX}: write Comm(\"{cut}\"), or select by Exe(...)",
                            c.len()
                        ),
                    ));
                }
                Selector::Comm(c)
            }
            RawSelector::Exe(p) => {
                if !p.starts_with('/') {
                    return Err(err(
                        &at("select"),
                        format!("executable path `{p}` is not absolute"),
                    ));
                }
                Selector::Exe(PathBuf::from(p))
            }
            RawSelector::Pid(q) => {
                let pid = match q {
                    Quantity::Int(v) if v > 0 && v <= i32::MAX as i128 => v as u32,
                    other => {
                        return Err(err(
                            &at("select"),
                            format!("{other} is not a process id (1 to 2147483647)"),
                        ))
                    }
                };
                if pid == 1 {
                    return Err(err(
                        &at("select"),
                        "pid 1 (init) is never a target of the agent".into(),
                    ));
                }
                Selector::Pid(pid)
            }
        };
        if !selectors.insert(select.clone()) {
            return Err(err(
                &at("select"),
                format!("{select} is selected by an earlier group too"),
            ));
        }
        if g.policy.trim().is_empty() {
            return Err(err(&at("policy"), "empty policy path".into()));
        }
        let policy = base.join(&g.policy);
        let ops = match g.ops {
            None | Some(RawOps::Auto) => OpsChoice::Auto,
            Some(RawOps::Named(n)) if n == "auto" => OpsChoice::Auto,
            Some(RawOps::Named(n)) => {
                if n.is_empty() {
                    return Err(err(&at("ops"), "empty primitive name".into()));
                }
                OpsChoice::Named(n)
            }
        };
        let max_targets = match &g.max_targets {
            None => DEFAULT_MAX_TARGETS,
            Some(Quantity::Int(v)) if *v >= 1 && *v <= 100_000 => *v as usize,
            Some(q) => {
                return Err(err(
                    &at("max_targets"),
                    format!("{q} is not a process count from 1 to 100000"),
                ))
            }
        };
        let pid_metrics = match &g.pid_metrics {
            None => 0,
            Some(Quantity::Int(v)) if *v >= 0 && *v <= MAX_PID_METRICS as i128 => *v as usize,
            Some(q) => {
                return Err(err(
                    &at("pid_metrics"),
                    format!("{q} is not a process count from 0 to {MAX_PID_METRICS}"),
                ))
            }
        };
        let pos = loc
            .find(&format!("targets[{i}]"))
            .map(|l| l.value)
            .unwrap_or_default();
        let policy_pos = loc.value_pos(&at("policy"));
        targets.push(GroupSpec {
            name: g.name,
            select,
            children: g.children.unwrap_or(false),
            policy,
            ops,
            max_targets,
            pid_metrics,
            dry_run: g.dry_run,
            pos,
            policy_pos,
        });
    }
    Ok(AgentConfig {
        targets,
        rescan_us,
        listen,
        dry_run: raw.dry_run.unwrap_or(false),
        cpu_budget_bp,
        origin: origin.to_path_buf(),
    })
}

/// Read and parse a config file: `cannot read agent config PATH: …`, or
/// `path:line:column: message`; 1 either way (src/exit.rs).
pub fn load(path: &Path) -> anyhow::Result<AgentConfig> {
    let text = schemes::policy::read_ron_file(path).map_err(|e| match e {
        PolicyError::Io { source, .. } => with_source(
            Code::Failure,
            format!("cannot read agent config {}", path.display()),
            source,
        ),
        e => err(Code::Failure, e.to_string()),
    })?;
    parse(&text, path).map_err(|e| err(Code::Failure, e.to_string()))
}

/// Bind `addr` and release it at once: what `--check` does to prove the metrics address is
/// usable here (not in use, an address of this host). Never connects anywhere.
pub fn try_bind(addr: SocketAddr) -> anyhow::Result<()> {
    std::net::TcpListener::bind(addr).map(drop).map_err(|e| {
        // `--check` next to the running agent (before a SIGHUP) meets that agent's socket:
        // a reload keeps the running address, so say so.
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (if a madvd agent already runs there, a reload keeps its address)"
        } else {
            ""
        };
        with_source(
            Code::Failure,
            format!("metrics: cannot listen on {addr}{hint}"),
            e,
        )
    })
}

/// A metrics address: `IP:PORT` (IPv6 in brackets). No host names: the agent resolves
/// nothing at start-up.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!("`{s}` is not an address: write IP:PORT, e.g. 127.0.0.1:9464 or [::1]:9464 (or \"off\")")
    })
}

/// Group names become Prometheus label values and log prefixes: keep them short and plain.
fn check_name(n: &str) -> Result<(), String> {
    if n.is_empty() || n.len() > 64 {
        return Err(format!("`{n}`: a group name has 1 to 64 characters"));
    }
    if let Some(c) = n
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "`{n}`: character {c:?} not allowed (letters, digits, '-', '_', '.')"
        ));
    }
    Ok(())
}

fn truncate_comm(c: &str) -> &str {
    let mut end = COMM_MAX;
    while !c.is_char_boundary(end) {
        end -= 1;
    }
    &c[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<AgentConfig, PolicyError> {
        parse(text, Path::new("/etc/madvd/agent.ron"))
    }

    fn e(text: &str) -> String {
        p(text).unwrap_err().to_string()
    }

    #[test]
    fn full_config_parses_with_units_and_defaults() {
        let c = p(r#"(
    targets: [
        (name: "web", select: Cgroup("/sys/fs/cgroup/unified/system.slice/nginx.service/"),
         policy: "policies/reclaim-cold.ron"),
        (name: "db", select: Comm("postgres"), policy: "/srv/stat.ron", ops: Named("smaps"),
         max_targets: 8, dry_run: true),
        (name: "one", select: Pid(1234), policy: "p.ron", ops: Auto),
        (name: "bin", select: Exe("/usr/bin/redis-server"), policy: "p.ron", children: true),
    ],
    rescan: "2.5 s",
    listen: "[::1]:9100",
)"#)
        .unwrap();
        assert_eq!(c.rescan_us, 2_500_000);
        assert_eq!(c.listen, Some("[::1]:9100".parse().unwrap()));
        assert!(!c.dry_run);
        let t = &c.targets;
        assert_eq!(
            t[0].select,
            Selector::Cgroup("/sys/fs/cgroup/unified/system.slice/nginx.service".into())
        );
        assert_eq!(
            t[0].policy,
            PathBuf::from("/etc/madvd/policies/reclaim-cold.ron")
        );
        assert_eq!(t[0].ops, OpsChoice::Auto);
        assert_eq!(t[0].max_targets, DEFAULT_MAX_TARGETS);
        assert_eq!(t[0].pos, Pos { line: 3, column: 9 });
        assert_eq!(t[1].policy, PathBuf::from("/srv/stat.ron"));
        assert_eq!(t[1].ops, OpsChoice::Named("smaps".into()));
        assert_eq!((t[1].max_targets, c.dry_run_of(&t[1])), (8, true));
        assert_eq!(t[2].select, Selector::Pid(1234));
        assert_eq!(t[3].select, Selector::Exe("/usr/bin/redis-server".into()));
        assert_eq!((t[0].children, t[3].children), (false, true));
    }

    #[test]
    fn defaults_and_listen_off() {
        let c = p(r#"(targets: [(name: "a", select: Pid(5), policy: "x.ron")])"#).unwrap();
        assert_eq!(c.rescan_us, DEFAULT_RESCAN_US);
        assert_eq!(c.listen, Some(DEFAULT_LISTEN.parse().unwrap()));
        let c = p(r#"(targets: [(name: "a", select: Pid(5), policy: "x.ron")], listen: "off")"#)
            .unwrap();
        assert_eq!(c.listen, None);
    }

    #[test]
    fn structure_errors_carry_line_and_column() {
        // Unknown field, from ron's span.
        let m = e("(\n  targets: [],\n  rescann: \"1 s\",\n)");
        assert!(
            m.starts_with("/etc/madvd/agent.ron:3:3: unknown field `rescann`"),
            "{m}"
        );
        // Unknown selector.
        let m = e("(targets: [\n (name: \"a\", select: Cmd(\"x\"), policy: \"p\")])");
        assert!(m.starts_with("/etc/madvd/agent.ron:2:"), "{m}");
        assert!(m.contains("`Cmd`") && m.contains("Cgroup"), "{m}");
        // Missing field.
        let m = e("(targets: [(name: \"a\", select: Pid(3))])");
        assert!(m.contains("missing field `policy`"), "{m}");
        // Syntax.
        let m = e("(targets: [(name: \"a\", select: Pid(3), policy: \"p\")]");
        assert!(m.starts_with("/etc/madvd/agent.ron:1:"), "{m}");
    }

    #[test]
    fn cpu_budget_is_a_percentage_of_one_cpu() {
        let with = |b: &str| {
            p(&format!(
                "(targets: [(name: \"a\", select: Pid(3), policy: \"p\")],\n  cpu_budget: {b})"
            ))
        };
        assert_eq!(with("\"2%\"").unwrap().cpu_budget(), Some(0.02));
        assert_eq!(with("\"0.5%\"").unwrap().cpu_budget(), Some(0.005));
        let none = p("(targets: [(name: \"a\", select: Pid(3), policy: \"p\")])").unwrap();
        assert_eq!(none.cpu_budget(), None);
        for (bad, says) in [
            ("0.02", "0.02 is not a percentage of one CPU"),
            ("\"200%\"", "\"200%\" is outside 0.1% to 100%"),
        ] {
            let m = with(bad).unwrap_err().to_string();
            let want = format!("/etc/madvd/agent.ron:2:15: cpu_budget: {says}");
            assert!(m.starts_with(&want), "{m}");
        }
    }

    #[test]
    fn value_errors_point_at_the_value() {
        let m = e("(\n  targets: [(name: \"a\", select: Pid(3), policy: \"p\")],\n  rescan: \"10 parsecs\",\n)");
        assert!(m.starts_with("/etc/madvd/agent.ron:3:11: rescan: "), "{m}");
        let m = e("(targets: [(name: \"a\", select: Pid(3), policy: \"p\")], rescan: \"10 ms\")");
        assert!(
            m.contains("rescan: \"10 ms\" is shorter than the 100 ms"),
            "{m}"
        );
        let m = e("(targets: [(name: \"a\", select: Pid(3), policy: \"p\")],\n listen: \"localhost:9464\")");
        assert!(
            m.starts_with("/etc/madvd/agent.ron:2:10: listen: `localhost:9464` is not an address"),
            "{m}"
        );
        let m = e(
            "(targets: [\n  (name: \"a\", select: Comm(\"a-very-long-daemon\"), policy: \"p\")])",
        );
        assert!(m.starts_with("/etc/madvd/agent.ron:2:"), "{m}");
        assert!(m.contains("Comm(\"a-very-long-dae\")"), "{m}");
        let m = e("(targets: [(name: \"a\", select: Pid(1), policy: \"p\")])");
        assert!(m.contains("pid 1 (init) is never a target"), "{m}");
        let m = e("(targets: [(name: \"a\", select: Pid(-4), policy: \"p\")])");
        assert!(m.contains("-4 is not a process id"), "{m}");
        let m = e("(targets: [(name: \"a\", select: Cgroup(\"system.slice\"), policy: \"p\")])");
        assert!(m.contains("not absolute"), "{m}");
        let m = e("(targets: [(name: \"a b\", select: Pid(3), policy: \"p\")])");
        assert!(
            m.starts_with("/etc/madvd/agent.ron:1:19: name: `a b`"),
            "{m}"
        );
        let m = e("(targets: [(name: \"a\", select: Pid(3), policy: \"p\"),\n (name: \"a\", select: Pid(4), policy: \"p\")])");
        assert!(
            m.starts_with("/etc/madvd/agent.ron:2:9: name: `a` names two groups"),
            "{m}"
        );
        let m = e("(targets: [(name: \"a\", select: Pid(3), policy: \"p\"),\n (name: \"b\", select: Pid(3), policy: \"p\")])");
        assert!(m.contains("Pid(3) is selected by an earlier group"), "{m}");
        let m = e("(targets: [(name: \"a\", select: Pid(3), policy: \"p\", pid_metrics: 1001)])");
        assert!(
            m.contains("pid_metrics: 1001 is not a process count from 0 to 1000"),
            "{m}"
        );
        let c =
            p("(targets: [(name: \"a\", select: Pid(3), policy: \"p\", pid_metrics: 5)])").unwrap();
        assert_eq!(c.targets[0].pid_metrics, 5);
        let m = e("(targets: [(name: \"a\", select: Pid(3), policy: \"p\", max_targets: 0)])");
        assert!(m.contains("max_targets: 0 is not a process count"), "{m}");
        let m = e("(targets: [])");
        assert!(m.contains("no target groups"), "{m}");
    }

    proptest::proptest! {
        /// Any text: a value or a positioned error, never a panic.
        #[test]
        fn parse_never_panics(text in "\\PC{0,200}") {
            if let Err(e) = p(&text) {
                proptest::prop_assert!(e.line() >= 1 && e.column() >= 1, "{e}");
            }
        }
    }

    #[test]
    fn policy_position_and_unreadable_files() {
        let c = p("(targets: [\n  (name: \"a\", select: Pid(3), policy: \"p.ron\")])").unwrap();
        assert_eq!(
            c.targets[0].policy_pos,
            Pos {
                line: 2,
                column: 39
            }
        );
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = crate::exit::with_source(Code::Failure, "cannot read policy /etc/madvd/p.ron", io);
        let e = c.policy_error(&c.targets[0], e);
        assert_eq!(
            crate::exit::one_line(&e),
            "/etc/madvd/agent.ron:2:39: cannot read policy /etc/madvd/p.ron: entity not found"
        );
        // A mistake inside the policy keeps its own position.
        let e = c.policy_error(
            &c.targets[0],
            err(Code::Failure, "/etc/madvd/p.ron:1:2: bad"),
        );
        assert_eq!(crate::exit::one_line(&e), "/etc/madvd/p.ron:1:2: bad");
        let d = tempfile::tempdir().unwrap();
        let m = crate::exit::one_line(&load(&d.path().join("nope.ron")).unwrap_err());
        assert!(
            m.starts_with(&format!(
                "cannot read agent config {}/nope.ron: ",
                d.path().display()
            )),
            "{m}"
        );
    }

    #[test]
    fn try_bind_refuses_an_address_in_use_and_releases_a_free_one() {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = busy.local_addr().unwrap();
        let m = crate::exit::one_line(&try_bind(addr).unwrap_err());
        assert!(
            m.starts_with(&format!("metrics: cannot listen on {addr} (")) && m.contains("in use"),
            "{m}"
        );
        drop(busy);
        try_bind(addr).unwrap();
        std::net::TcpListener::bind(addr).expect("released");
    }

    #[test]
    fn never_panics_on_garbage() {
        for s in ["", "(", "((((((", "\u{0}", "(targets: [(", "(targets: 5)"] {
            assert!(p(s).is_err(), "{s:?}");
        }
    }
}

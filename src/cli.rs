//! The command line, as plain values (clap derive). Parsing the flags and doing the work are
//! separate steps: `main` turns these into a command's config and calls it.

use crate::units::{parse_nonzero_duration, parse_size};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

const ABOUT: &str =
    "Watch how processes touch their memory and act on it, DAMON/DAMOS-style, from user space.";

const LONG_ABOUT: &str = "\
madvd measures each memory region's access frequency and age (a DAMON-style monitoring core \
driven by an access primitive that works on this kernel), matches the regions against the \
schemes of a policy file, and applies non-destructive advice (cold, pageout, willneed, \
collapse) with process_madvise(2), under quotas.

Start here:
  sudo madvd demo                 one-command demo: a 1 GiB workload, zram swap, reclaim.ron
  madvd ops                       which access primitives work here, and why not
  madvd check policies/*.ron      validate policy files
  sudo madvd monitor --pid 1234   live view of a process's regions
  sudo madvd run --policy policies/reclaim-cold.ron --pid 1234

Exit codes: 0 ok, 1 failure (or invalid files for `check`), 2 bad usage, 3 target not found \
or refused, 4 permission denied, 130 interrupted (see docs/cli.md).";

#[derive(Debug, Parser)]
#[command(name = "madvd", version, about = ABOUT, long_about = LONG_ABOUT, propagate_version = true)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). MADVD_LOG / RUST_LOG override.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Read /proc, /sys and /dev under this directory instead of / (fixture trees in tests).
    #[arg(long, global = true, hide = true, value_name = "DIR")]
    pub sysroot: Option<PathBuf>,

    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply a policy to live processes: monitor → schemes → actuator, until stopped.
    #[command(long_about = RUN_LONG, after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Top-like live view of a process's regions (range, size, access rate, age) and WSS.
    #[command(after_help = MONITOR_EXAMPLES)]
    Monitor(MonitorArgs),
    /// Record the monitor's snapshots (one per aggregation) to a file for `madvd report`.
    #[command(after_help = RECORD_EXAMPLES)]
    Record(RecordArgs),
    /// Render a record file: access heatmap (PNG/SVG), WSS percentiles, summary.
    #[command(subcommand)]
    Report(ReportCmd),
    /// What-if: run a policy offline against a record; bytes it would advise, refault risk.
    #[command(long_about = REPLAY_LONG, after_help = REPLAY_EXAMPLES)]
    Replay(ReplayArgs),
    /// One-command demo (root): workload child + temporary zram swap + the default reclaim policy.
    #[command(long_about = DEMO_LONG, after_help = DEMO_EXAMPLES)]
    Demo(DemoArgs),
    /// List the access primitives, whether each is usable here, and why not.
    #[command(
        after_help = "Examples:\n  madvd ops\n  madvd ops --json | jq '.[] | select(.usable)'"
    )]
    Ops(OpsArgs),
    /// Validate policy files: prints path:line:column: message for the first mistake in each.
    #[command(
        after_help = "Exit status: 0 when every file is valid, 1 otherwise.\n\nExample:\n  madvd check policies/*.ron"
    )]
    Check(CheckArgs),
    /// Node agent: many target groups from a config file, hot reload, Prometheus metrics.
    #[command(long_about = AGENT_LONG, after_help = AGENT_EXAMPLES)]
    Agent(AgentArgs),
    /// The test/demo workload child (internal; spawned by the demo and the tests).
    #[command(hide = true)]
    Workload(WorkloadArgs),
}

const AGENT_LONG: &str = "\
Run madvd as a node daemon. The config file (RON, see docs/agent.md and deploy/agent.ron) \
names target groups: a selector (Cgroup, Comm, Exe or Pid) and the policy its processes get. \
Processes are added as they appear and dropped when they exit (one log line each; madvd \
itself, pid 1 and kernel threads are never targets). SIGHUP, or a change to the config or a \
policy file, reloads everything: a new config that is invalid anywhere is refused whole and \
the running one kept. Prometheus metrics on GET /metrics (and GET /healthz).";

const AGENT_EXAMPLES: &str = "\
Examples:
  sudo madvd agent --config /etc/madvd/agent.ron
  madvd agent --config deploy/agent.ron --check          (validate config and policies)
  sudo madvd agent --config agent.ron --once --dry-run   (one round, metrics on stdout)
  curl -s 127.0.0.1:9464/metrics | grep madvd_scheme_applied_bytes_total";

const RUN_LONG: &str = "\
Apply a policy file's schemes to live processes. The monitor samples the targets' memory with \
an access primitive (--ops; `madvd ops` lists them), each aggregation interval the schemes pick \
regions, and the actuator advises them with process_madvise(2) through a pidfd (a reused pid is \
never advised). Every few seconds one summary line is printed (bytes advised per scheme, memory \
saved, probe cost, primitive, inactive schemes and why); a final summary at the end.

Stops on Ctrl-C/SIGTERM at a batch boundary (nothing half applied), after --for, or when every \
target has exited. Needs root (CAP_SYS_NICE and ptrace access for process_madvise; \
the refault probe needs swap).";

const RUN_EXAMPLES: &str = "\
Examples:
  sudo madvd run --policy policies/reclaim-cold.ron --pid 1234
  sudo madvd run --policy policies/stat.ron --comm postgres --for 10min --json
  sudo madvd run --policy my.ron --pid 1234 --pid 5678 --dry-run --aggr 1s";

const MONITOR_EXAMPLES: &str = "\
Examples:
  sudo madvd monitor --pid 1234
  sudo madvd monitor --pid 1234 --once --json | jq .wss_bytes
  sudo madvd monitor --paddr                   (physical memory: the biggest System RAM range, per cgroup)
  sudo madvd monitor --paddr 0x100000000-0x140000000 --once";

const RECORD_EXAMPLES: &str = "\
Examples:
  sudo madvd record --pid 1234 -o app.rec --for 2min
  madvd record --sim stairs -o stairs.rec --for 60s      (simulated; runs as fast as it can)
  sudo madvd record --paddr -o ram.rec --for 1min        (physical memory, bytes per cgroup)
  madvd report heatmap app.rec -o app.png";

const DEMO_LONG: &str = "\
One command that shows what madvd does, on a fresh machine, as root, in under two minutes. \
It starts a workload child (1 GiB in one mapping, 10% hot, 90% cold; later the hot set moves), \
creates a temporary zram swap if the machine has none (removed at the end, also on Ctrl-C), \
measures the workload's throughput alone, then runs policies/reclaim.ron with the best access \
primitive here, and prints: memory saved (VmSwap, RSS, MemAvailable), the oracle (bytes the \
workload did not touch during the measured window, from its own ground truth), saved/oracle, \
throughput before vs during (slowdown), the primitive used, and a heatmap PNG.

Not root: says what is missing and runs in dry-run (nothing advised, no swap made).";

const DEMO_EXAMPLES: &str = "\
Examples:
  sudo madvd demo
  sudo madvd demo --short --json        (about 55 s, JSON summary on stdout)";

/// How to pick targets for `run`.
#[derive(Debug, Args, Clone)]
#[group(required = true, multiple = false)]
pub struct Targets {
    /// Target process id (repeat, or list several after one --pid).
    #[arg(long, value_name = "PID", num_args = 1.., action = clap::ArgAction::Append)]
    pub pid: Vec<u32>,
    /// Every process in this cgroup (its cgroup.procs), read once at start.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// Every process whose command name (/proc/PID/comm) is NAME, read once at start.
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
    /// Physical memory instead of processes (the `paddr` primitive; RANGES as `monitor
    /// --paddr` takes them, default the biggest System RAM range). Runs `reclaim_cgroup` and
    /// `stat` schemes: each cgroup owning selected cold bytes is asked to reclaim that much
    /// through its cgroup v2 memory.reclaim.
    #[arg(long, value_name = "RANGES", num_args = 0..=1, default_missing_value = "auto")]
    pub paddr: Option<String>,
}

/// The monitoring-attribute flags (beat the policy file's `monitor` section and the
/// primitive's defaults; `pipeline::StageConfig::new` turns them into the one
/// `engine::AttrsOverride`).
#[derive(Debug, Args, Clone, Default)]
pub struct AttrFlags {
    /// Sampling interval (e.g. 100ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_nonzero_duration)]
    pub sample: Option<Duration>,
    /// Aggregation interval (e.g. 2s).
    #[arg(long, value_name = "DURATION", value_parser = parse_nonzero_duration)]
    pub aggr: Option<Duration>,
    /// Ops update interval: how often the target's mappings are re-read (e.g. 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_nonzero_duration)]
    pub update: Option<Duration>,
    /// Minimum number of regions per target (at least 3).
    #[arg(long, value_name = "N")]
    pub min_regions: Option<u32>,
    /// Maximum number of regions per target.
    #[arg(long, value_name = "N")]
    pub max_regions: Option<u32>,
    /// Auto-tune the sampling interval toward this observed access ratio (e.g. 4%, 400bp),
    /// as the kernel does from 6.15. Any --tune-* flag turns tuning on; the others default
    /// to the policy's `intervals_goal`, then to 4%, every 3 aggregations, 5ms..10s.
    #[arg(long, value_name = "RATIO", value_parser = parse_access_ratio)]
    pub tune_access: Option<u32>,
    /// Tune every N aggregation intervals (at least 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub tune_aggrs: Option<u32>,
    /// Shortest sampling interval tuning may choose (e.g. 5ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_nonzero_duration)]
    pub tune_min_sample: Option<Duration>,
    /// Longest sampling interval tuning may choose (e.g. 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_nonzero_duration)]
    pub tune_max_sample: Option<Duration>,
}

/// An access ratio for `--tune-access`: a percentage (`4%`) or basis points (`400bp`), above
/// 0 and at most 100%. A bare number is refused (percent or basis points?).
fn parse_access_ratio(s: &str) -> Result<u32, String> {
    let t = s.trim();
    if !(t.ends_with('%') || t.ends_with("bp")) {
        return Err(format!(
            "'{s}' needs a unit: a percentage (4%) or basis points (400bp)"
        ));
    }
    let bp = schemes::units::basis_points(&schemes::units::Quantity::Str(t.to_string()))?;
    match bp {
        1..=10_000 => Ok(bp as u32),
        _ => Err(format!(
            "'{s}' is {bp} bp: the ratio must be above 0 and at most 100%"
        )),
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Policy file (RON; see docs/policy-format.md, `madvd check FILE` validates it).
    #[arg(long, short = 'p', value_name = "FILE")]
    pub policy: PathBuf,
    #[command(flatten)]
    pub targets: Targets,
    /// Access primitive: `auto` picks the finest usable one (see `madvd ops`).
    #[arg(long, value_name = "auto|NAME", default_value = "auto")]
    pub ops: String,
    /// Decide and report, but apply no advice (a probing primitive still probes).
    #[arg(long)]
    pub dry_run: bool,
    /// Stop after this long (e.g. 90s, 10min). Default: until Ctrl-C or all targets exit.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_nonzero_duration)]
    pub for_: Option<Duration>,
    /// How often to print the summary line.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_nonzero_duration)]
    pub every: Duration,
    #[command(flatten)]
    pub attrs: AttrFlags,
    /// Machine-readable output: one JSON object per summary line, then the final summary.
    #[arg(long)]
    pub json: bool,
    /// Allow targeting pid 1 (refused otherwise).
    #[arg(long)]
    pub allow_pid1: bool,
    /// Follow the targets' descendants as they fork and exit (each ops update interval;
    /// a pid is taken only with the start time it was found with).
    #[arg(long)]
    pub children: bool,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Process to watch.
    #[arg(
        long,
        value_name = "PID",
        required_unless_present = "paddr",
        conflicts_with = "paddr"
    )]
    pub pid: Option<u32>,
    /// Watch physical memory instead (the `paddr` primitive): RANGES is `START-END[,…]` (hex
    /// `0x…` or decimal byte addresses, page-aligned, inside System RAM); without RANGES the
    /// biggest System RAM range of /proc/iomem. Shows hot and cold bytes per memory cgroup.
    #[arg(long, value_name = "RANGES", num_args = 0..=1, default_missing_value = "auto")]
    pub paddr: Option<String>,
    /// Access primitive: `auto` or a name from `madvd ops`.
    #[arg(long, value_name = "auto|NAME", default_value = "auto")]
    pub ops: String,
    /// Print one aggregation's regions and exit.
    #[arg(long)]
    pub once: bool,
    /// JSON instead of the table (with --once: one object; else one per aggregation).
    #[arg(long)]
    pub json: bool,
    /// Stop after this long.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_nonzero_duration)]
    pub for_: Option<Duration>,
    /// Show at most this many regions (the largest/hottest first are kept in address order).
    #[arg(long, default_value_t = 40)]
    pub rows: usize,
    #[command(flatten)]
    pub attrs: AttrFlags,
    /// Allow targeting pid 1.
    #[arg(long)]
    pub allow_pid1: bool,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Process(es) to record.
    #[arg(long, value_name = "PID", num_args = 1.., action = clap::ArgAction::Append, required_unless_present_any = ["sim", "paddr"], conflicts_with_all = ["sim", "paddr"])]
    pub pid: Vec<u32>,
    /// Record physical memory instead (`paddr`): RANGES as `madvd monitor --paddr`; each
    /// snapshot also holds hot and cold bytes per memory cgroup.
    #[arg(long, value_name = "RANGES", num_args = 0..=1, default_missing_value = "auto", conflicts_with = "sim")]
    pub paddr: Option<String>,
    /// Record the simulator instead: a scenario name (hotcold, stairs, moving, ...).
    #[arg(long, value_name = "SCENARIO")]
    pub sim: Option<String>,
    /// Output file (see docs/record-format.md).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Stop after this long (simulated time with --sim; default 60s there, Ctrl-C live).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_nonzero_duration)]
    pub for_: Option<Duration>,
    /// Access primitive (live targets): `auto` or a name from `madvd ops`.
    #[arg(long, value_name = "auto|NAME", default_value = "auto")]
    pub ops: String,
    /// Simulated address-space size (with --sim).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub sim_size: u64,
    #[command(flatten)]
    pub attrs: AttrFlags,
    /// Allow targeting pid 1.
    #[arg(long)]
    pub allow_pid1: bool,
}

const REPLAY_LONG: &str = "\
Run a policy offline against a record made by `madvd record`: the recorded snapshots go \
through the same schemes code as `madvd run` (apply intervals, quotas and their windows, \
prioritization, the refault guard) on the record's own clock, and madvd's own actuator runs \
over a simulated system: a virtual clock advanced by a per-page cost model, and a residency \
model (what the record lists absent and what the replay paged out is out until the record's \
accesses bring it back: all of it under an accessed region, or the share the region's \
access frequency stands for where resident memory beside it was accessed the frame before) \
that pagemap reads answer from, so the residency cut, the pace, quota \
charging and the age reset of advised regions work as in `run`. Nothing is advised. Reports \
the bytes each scheme would advise over time and the refault risk: advised bytes the record \
shows accessed again within --refault-window. Inputs a record lacks (watermarks' free-memory \
rate, PSI and memory goals, filters it cannot decide, how a live monitor sees advised \
memory) are named once each as notes; the replay goes on without them. A record with a \
damaged tail is replayed up to its first bad line, which is named (path:line:column and \
byte offset); the exit status is then 1.";

const REPLAY_EXAMPLES: &str = "\
Examples:
  madvd replay --policy policies/reclaim-cold.ron app.rec
  madvd replay --policy my.ron app.rec --refault-window 30s --json | jq .schemes
  madvd replay --policy my.ron app.rec --json-lines --plot app-replay.png";

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Policy file (RON) to replay.
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Record file written by `madvd record`.
    pub record: PathBuf,
    /// Advised bytes accessed again within this long count as refault risk.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_nonzero_duration)]
    pub refault_window: Duration,
    /// Time charged per resident 4 KiB page paged out, for time quotas (what-if cost model;
    /// pages out in the replay's residency model are cut out before, at the cost of a
    /// pagemap read, 10 ns a page). The default is the median measured on the development
    /// host (docs/cli.md, `madvd replay`).
    #[arg(long, value_name = "NS", default_value_t = crate::replay::whatif::DEFAULT_PAGEOUT_NS_PER_PAGE)]
    pub pageout_ns_per_page: u64,
    /// One JSON object (schema in docs/cli.md) instead of text.
    #[arg(long, conflicts_with = "json_lines")]
    pub json: bool,
    /// JSON lines: one `step` object per snapshot, then one `summary` object.
    #[arg(long)]
    pub json_lines: bool,
    /// Also draw the record's heatmap with the advised and refaulted bytes under it (.png or .svg).
    #[arg(long, value_name = "OUT")]
    pub plot: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ReportCmd {
    /// Access heatmap: time × address (gaps between mappings collapsed), access rate as colour.
    #[command(
        after_help = "Examples:\n  madvd report heatmap app.rec -o app.png\n  madvd report heatmap app.rec -o app.svg --target 1234"
    )]
    Heatmap(HeatmapArgs),
    /// Working-set size (bytes in regions accessed at all) percentiles over the recording.
    #[command(after_help = "Example:\n  madvd report wss app.rec --json")]
    Wss(WssArgs),
    /// What was recorded: source, primitive, intervals, duration, regions, WSS, hottest ranges.
    Summary(SummaryArgs),
}

#[derive(Debug, Args)]
pub struct HeatmapArgs {
    /// Record file written by `madvd record`.
    pub file: PathBuf,
    /// Output image: .png or .svg (default: FILE with .png).
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Target (pid) to draw; default: the first in the file.
    #[arg(long, value_name = "PID")]
    pub target: Option<u32>,
    /// Only this address range, e.g. 0x7f0000000000-0x7f0040000000 (default: everything
    /// monitored, gaps between mappings collapsed).
    #[arg(long, value_name = "START-END", value_parser = parse_range)]
    pub range: Option<(u64, u64)>,
    /// Time bins (columns).
    #[arg(long, default_value_t = 300)]
    pub cols: usize,
    /// Address bins (rows).
    #[arg(long, default_value_t = 150)]
    pub rows: usize,
}

/// `START-END`, each hex (0x…) or decimal.
pub fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("'{s}' is not START-END"))?;
    let num = |x: &str| {
        let x = x.trim();
        match x.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16),
            None => x.parse(),
        }
        .map_err(|_| format!("'{x}' is not an address"))
    };
    let (a, b) = (num(a)?, num(b)?);
    if a >= b {
        return Err(format!("'{s}': start is not below end"));
    }
    Ok((a, b))
}

#[derive(Debug, Args)]
pub struct WssArgs {
    /// Record file written by `madvd record`.
    pub file: PathBuf,
    /// Target (pid); default: all targets summed.
    #[arg(long, value_name = "PID")]
    pub target: Option<u32>,
    /// JSON: {"file", "snapshots", "percentiles": [[p, bytes], …]}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// Record file written by `madvd record`.
    pub file: PathBuf,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Short mode for tests and CI (about 55 s, 128 MiB workload).
    #[arg(long)]
    pub short: bool,
    /// Length of the monitored phase (default 75s; 40s with --short).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_nonzero_duration)]
    pub for_: Option<Duration>,
    /// Workload size (one mapping). Default 1GiB (128MiB with --short).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub size: Option<u64>,
    /// Policy file (default: the built-in copy of policies/reclaim.ron).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Access primitive: `auto` or a name from `madvd ops`.
    #[arg(long, value_name = "auto|NAME", default_value = "auto")]
    pub ops: String,
    /// Apply no advice (automatic when not root).
    #[arg(long)]
    pub dry_run: bool,
    /// Where to write the heatmap PNG (default: madvd-demo-heatmap.png in the temp dir).
    #[arg(long, value_name = "PNG")]
    pub heatmap: Option<PathBuf>,
    /// Also keep the record file here.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Print the final summary as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OpsArgs {
    /// JSON array instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Agent config file (RON; see docs/agent.md).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Validate the config and every policy it names, print the groups, exit.
    #[arg(long, conflicts_with_all = ["once", "for_"])]
    pub check: bool,
    /// One rescan and one actuation round per group, print the metrics to stdout, exit.
    #[arg(long)]
    pub once: bool,
    /// Stop after this long (default: until SIGINT/SIGTERM).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_nonzero_duration)]
    pub for_: Option<Duration>,
    /// Metrics address IP:PORT (overrides the config's `listen`).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Apply no advice in any group (overrides the config).
    #[arg(long)]
    pub dry_run: bool,
    /// Log lines on stderr: json (one object per line) or text. Default: json when stderr
    /// is not a terminal.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<crate::logging::LogFormat>,
}

#[derive(Debug, Args)]
pub struct WorkloadArgs {
    /// The workload spec as JSON (madvd_workload::WorkloadSpec::to_args).
    #[arg(long)]
    pub spec: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn for_garbage_is_refused() {
        let e = Cli::try_parse_from([
            "madvd", "run", "--policy", "p.ron", "--pid", "1", "--for", "garbage",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("garbage"), "{e}");
    }

    #[test]
    fn run_needs_one_kind_of_target() {
        assert!(Cli::try_parse_from(["madvd", "run", "--policy", "p.ron"]).is_err());
        assert!(Cli::try_parse_from([
            "madvd", "run", "--policy", "p.ron", "--pid", "1", "--comm", "x"
        ])
        .is_err());
        let c = Cli::try_parse_from([
            "madvd", "run", "--policy", "p.ron", "--pid", "1", "2", "--pid", "3",
        ])
        .unwrap();
        match c.cmd {
            Command::Run(r) => assert_eq!(r.targets.pid, vec![1, 2, 3]),
            _ => unreachable!(),
        }
    }
}

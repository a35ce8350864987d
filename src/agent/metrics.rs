//! Prometheus metrics: plain structs filled from the stages' events (the schemes' stats and
//! the actuator's reports), serialized in one place ([`render`], text exposition format
//! 0.0.4), and a tiny HTTP server thread (`GET /metrics`, `GET /healthz`) on std::net.
//!
//! Labels are the target group, scheme and action, never a pid: a group's processes come
//! and go, a per-pid series would grow without bound.
//!
//! Counters stay monotonic across reloads: when a group is restarted (its policy changed),
//! its counters so far are folded into [`GroupMetrics::carried`] and keep being added.

use engine::access::MonitorCost;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One scheme's counters (from `schemes::SchemeStats`, via the pipeline's `SchemeLine`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchemeMetrics {
    pub nr_tried: u64,
    pub sz_tried: u64,
    pub nr_applied: u64,
    pub sz_applied: u64,
    pub qt_exceeds: u64,
    pub active: bool,
}

/// Counters of one target group.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// Aggregated snapshots.
    pub snapshots: u64,
    pub cost: MonitorCost,
    pub rounds: u64,
    pub bytes_advised: u64,
    pub actuation_ns: u64,
    /// Bytes not applied, by reason (the actuator's `ApplyErrorKind`, snake case).
    pub apply_errors: BTreeMap<String, u64>,
    /// By (scheme, action).
    pub schemes: BTreeMap<(String, String), SchemeMetrics>,
    pub targets_added: u64,
    pub targets_dropped: u64,
    /// `Process::open` refusals by reason (`myself`, `init`, `kernel_thread`, ...).
    pub refusals: BTreeMap<String, u64>,
    /// Processes matched but not added because the group is at `max_targets`.
    pub over_limit: u64,
    /// Stage failures (logged).
    pub failures: u64,
}

impl Counters {
    /// `self + other` for every counter; gauges (`active`) from `other`.
    pub fn plus(&self, other: &Counters) -> Counters {
        let mut c = self.clone();
        c.snapshots += other.snapshots;
        c.cost.probe_pageouts += other.cost.probe_pageouts;
        c.cost.samples += other.cost.samples;
        c.cost.syscalls += other.cost.syscalls;
        c.rounds += other.rounds;
        c.bytes_advised += other.bytes_advised;
        c.actuation_ns += other.actuation_ns;
        for (k, v) in &other.apply_errors {
            *c.apply_errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.schemes {
            let e = c.schemes.entry(k.clone()).or_default();
            e.nr_tried += v.nr_tried;
            e.sz_tried += v.sz_tried;
            e.nr_applied += v.nr_applied;
            e.sz_applied += v.sz_applied;
            e.qt_exceeds += v.qt_exceeds;
            e.active = v.active;
        }
        c.targets_added += other.targets_added;
        c.targets_dropped += other.targets_dropped;
        for (k, v) in &other.refusals {
            *c.refusals.entry(k.clone()).or_default() += v;
        }
        c.over_limit += other.over_limit;
        c.failures += other.failures;
        c
    }
}

/// One target group.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupMetrics {
    pub name: String,
    pub policy: String,
    pub ops: String,
    pub dry_run: bool,
    /// Gauges.
    pub targets: u64,
    pub regions: u64,
    pub rss_bytes: u64,
    pub swap_bytes: u64,
    /// Counters of the running pipeline.
    pub current: Counters,
    /// Counters of earlier pipelines of this group (before reloads).
    pub carried: Counters,
}

/// Everything `/metrics` shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentMetrics {
    pub version: String,
    pub uptime_s: f64,
    pub reloads: u64,
    pub reload_errors: u64,
    pub last_reload_success: bool,
    pub last_reload_unix_s: f64,
    /// Groups by name.
    pub groups: BTreeMap<String, GroupMetrics>,
    /// Groups removed by a reload keep their final counters here (monotonic series).
    pub retired: BTreeMap<String, GroupMetrics>,
}

/// Escape a label value (exposition format: backslash, double quote, newline).
pub fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(val));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", fmt_value(v));
    }
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn b(x: bool) -> f64 {
    if x {
        1.0
    } else {
        0.0
    }
}

/// The exposition text (format 0.0.4): every family once, HELP and TYPE first.
pub fn render(m: &AgentMetrics) -> String {
    let mut o = Out {
        text: String::with_capacity(8192),
    };
    o.family(
        "madvd_agent_info",
        "gauge",
        "madvd agent build information.",
    );
    o.sample("madvd_agent_info", &[("version", &m.version)], 1.0);
    o.family(
        "madvd_agent_uptime_seconds",
        "gauge",
        "Seconds since the agent started.",
    );
    o.sample("madvd_agent_uptime_seconds", &[], m.uptime_s);
    o.family(
        "madvd_config_reloads_total",
        "counter",
        "Config reloads applied (SIGHUP or a changed config/policy file).",
    );
    o.sample("madvd_config_reloads_total", &[], m.reloads as f64);
    o.family(
        "madvd_config_reload_errors_total",
        "counter",
        "Config reloads refused because the new config or a policy was invalid (the running config was kept).",
    );
    o.sample(
        "madvd_config_reload_errors_total",
        &[],
        m.reload_errors as f64,
    );
    o.family(
        "madvd_config_last_reload_success",
        "gauge",
        "1 if the last config load or reload succeeded, 0 if it was refused.",
    );
    o.sample(
        "madvd_config_last_reload_success",
        &[],
        b(m.last_reload_success),
    );
    o.family(
        "madvd_config_last_reload_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful config load.",
    );
    o.sample(
        "madvd_config_last_reload_success_timestamp_seconds",
        &[],
        m.last_reload_unix_s,
    );

    // Every group, live or retired, with its counters summed over its pipelines.
    let all: Vec<(&GroupMetrics, Counters, bool)> = m
        .groups
        .values()
        .map(|g| (g, g.carried.plus(&g.current), true))
        .chain(
            m.retired
                .values()
                .filter(|g| !m.groups.contains_key(&g.name))
                .map(|g| (g, g.carried.plus(&g.current), false)),
        )
        .collect();

    o.family(
        "madvd_group_info",
        "gauge",
        "A configured target group: its policy file, access primitive and dry-run setting.",
    );
    for (g, _, live) in &all {
        if *live {
            let dry = if g.dry_run { "true" } else { "false" };
            o.sample(
                "madvd_group_info",
                &[
                    ("group", &g.name),
                    ("policy", &g.policy),
                    ("ops", &g.ops),
                    ("dry_run", dry),
                ],
                1.0,
            );
        }
    }
    type Gauge = fn(&GroupMetrics) -> u64;
    let gauges: [(&str, &str, Gauge); 4] = [
        (
            "madvd_group_targets",
            "Processes the group watches now.",
            |g| g.targets,
        ),
        (
            "madvd_group_regions",
            "Monitoring regions over the group's processes (last aggregation).",
            |g| g.regions,
        ),
        (
            "madvd_group_rss_bytes",
            "Sum of VmRSS of the group's processes (at the last rescan).",
            |g| g.rss_bytes,
        ),
        (
            "madvd_group_swap_bytes",
            "Sum of VmSwap of the group's processes (at the last rescan).",
            |g| g.swap_bytes,
        ),
    ];
    for (name, help, f) in gauges {
        o.family(name, "gauge", help);
        for (g, _, live) in &all {
            if *live {
                o.sample(name, &[("group", &g.name)], f(g) as f64);
            }
        }
    }
    type Counter = fn(&Counters) -> f64;
    let counters: [(&str, &str, Counter); 10] = [
        (
            "madvd_group_snapshots_total",
            "Aggregation intervals completed (snapshots the schemes saw).",
            |c| c.snapshots as f64,
        ),
        (
            "madvd_group_samples_total",
            "Access-check sample answers (monitoring cost).",
            |c| c.cost.samples as f64,
        ),
        (
            "madvd_group_probe_pageouts_total",
            "Pages the refault probe paged out to observe them (monitoring cost, never savings).",
            |c| c.cost.probe_pageouts as f64,
        ),
        (
            "madvd_group_monitor_syscalls_total",
            "System calls made by the access check (monitoring cost).",
            |c| c.cost.syscalls as f64,
        ),
        (
            "madvd_group_actuation_rounds_total",
            "Actuation rounds (one per snapshot the schemes acted on).",
            |c| c.rounds as f64,
        ),
        (
            "madvd_group_advised_bytes_total",
            "Bytes process_madvise reported advised.",
            |c| c.bytes_advised as f64,
        ),
        (
            "madvd_group_actuation_seconds_total",
            "Wall time spent in process_madvise.",
            |c| c.actuation_ns as f64 / 1e9,
        ),
        (
            "madvd_group_targets_added_total",
            "Processes added to the group as they appeared.",
            |c| c.targets_added as f64,
        ),
        (
            "madvd_group_targets_dropped_total",
            "Processes dropped from the group (exited or no longer selected).",
            |c| c.targets_dropped as f64,
        ),
        (
            "madvd_group_targets_over_limit_total",
            "Matching processes not added because the group was at max_targets.",
            |c| c.over_limit as f64,
        ),
    ];
    for (name, help, f) in counters {
        o.family(name, "counter", help);
        for (g, c, _) in &all {
            o.sample(name, &[("group", &g.name)], f(c));
        }
    }
    o.family(
        "madvd_group_failures_total",
        "counter",
        "Stage failures (access check or maps reads that failed for a reason other than exit).",
    );
    for (g, c, _) in &all {
        o.sample(
            "madvd_group_failures_total",
            &[("group", &g.name)],
            c.failures as f64,
        );
    }
    o.family(
        "madvd_group_apply_errors_bytes_total",
        "counter",
        "Bytes advice was requested for but not applied, by reason (unmapped, invalid, permission, target_gone, dry_run, ...).",
    );
    for (g, c, _) in &all {
        for (k, v) in &c.apply_errors {
            o.sample(
                "madvd_group_apply_errors_bytes_total",
                &[("group", &g.name), ("kind", k)],
                *v as f64,
            );
        }
    }
    o.family(
        "madvd_group_target_refusals_total",
        "counter",
        "Matching processes that cannot be targets (madvd itself, pid 1, kernel threads, permission), counted once per process.",
    );
    for (g, c, _) in &all {
        for (k, v) in &c.refusals {
            o.sample(
                "madvd_group_target_refusals_total",
                &[("group", &g.name), ("reason", k)],
                *v as f64,
            );
        }
    }

    type SchemeF = fn(&SchemeMetrics) -> f64;
    let schemes: [(&str, &str, &str, SchemeF); 6] = [
        (
            "madvd_scheme_tried_regions_total",
            "counter",
            "Regions (pieces) the scheme tried to apply its action to (damos_stat nr_tried).",
            |s| s.nr_tried as f64,
        ),
        (
            "madvd_scheme_tried_bytes_total",
            "counter",
            "Bytes of them (damos_stat sz_tried).",
            |s| s.sz_tried as f64,
        ),
        (
            "madvd_scheme_applied_regions_total",
            "counter",
            "Regions with at least one byte applied (damos_stat nr_applied).",
            |s| s.nr_applied as f64,
        ),
        (
            "madvd_scheme_applied_bytes_total",
            "counter",
            "Bytes the actuator reported applied (damos_stat sz_applied).",
            |s| s.sz_applied as f64,
        ),
        (
            "madvd_scheme_quota_exceeds_total",
            "counter",
            "Charge windows that ended with the quota exhausted (damos_stat qt_exceeds).",
            |s| s.qt_exceeds as f64,
        ),
        (
            "madvd_scheme_active",
            "gauge",
            "1 while the scheme is active, 0 while watermarks (or a missing page filter driver) hold it inactive.",
            |s| b(s.active),
        ),
    ];
    for (name, kind, help, f) in schemes {
        o.family(name, kind, help);
        for (g, c, live) in &all {
            if kind == "gauge" && !*live {
                continue;
            }
            for ((scheme, action), s) in &c.schemes {
                o.sample(
                    name,
                    &[("group", &g.name), ("scheme", scheme), ("action", action)],
                    f(s),
                );
            }
        }
    }
    o.text
}

// ---------------------------------------------------------------------------------------
// The HTTP server.

/// Largest request head read.
pub const MAX_REQUEST_BYTES: usize = 8192;
/// Read/write timeout per connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The response to a request head (pure, for tests): (status line, content type, body).
pub fn respond(head: &[u8], m: &Mutex<AgentMetrics>) -> (&'static str, &'static str, String) {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".into(),
        );
    }
    match path {
        "/metrics" => {
            let snap = m.lock().map(|g| g.clone()).unwrap_or_default();
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                render(&snap),
            )
        }
        "/healthz" => ("200 OK", "text/plain; charset=utf-8", "ok\n".into()),
        "/" => (
            "200 OK",
            "text/plain; charset=utf-8",
            "madvd agent: /metrics, /healthz\n".into(),
        ),
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found\n".into(),
        ),
    }
}

fn serve_one(mut s: TcpStream, m: &Mutex<AgentMetrics>) {
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
                {
                    break;
                }
                if buf.len() > MAX_REQUEST_BYTES {
                    let _ = s.write_all(
                        b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                    );
                    return;
                }
            }
            Err(_) => return,
        }
    }
    let head_only = buf.starts_with(b"HEAD ");
    let (status, ctype, body) = respond(&buf, m);
    let hdr = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(hdr.as_bytes());
    if !head_only {
        let _ = s.write_all(body.as_bytes());
    }
    let _ = s.flush();
}

/// The metrics server: one thread, one connection at a time (each bounded by
/// [`IO_TIMEOUT`] and [`MAX_REQUEST_BYTES`]), stopped and joined on drop.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Bind `addr` and serve `metrics`.
    pub fn start(addr: SocketAddr, metrics: Arc<Mutex<AgentMetrics>>) -> std::io::Result<Server> {
        let l = TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("madvd-metrics".into())
            .spawn(move || {
                while !st.load(Ordering::SeqCst) {
                    match l.accept() {
                        Ok((s, _)) => {
                            let _ = s.set_nonblocking(false);
                            serve_one(s, &metrics);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })?;
        Ok(Server {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::expo;
    use super::*;

    fn sample() -> AgentMetrics {
        let mut m = AgentMetrics {
            version: "0.1.0".into(),
            uptime_s: 12.5,
            reloads: 2,
            reload_errors: 1,
            last_reload_success: false,
            last_reload_unix_s: 1.7e9,
            ..Default::default()
        };
        let mut cur = Counters {
            snapshots: 7,
            cost: MonitorCost {
                probe_pageouts: 40,
                samples: 900,
                syscalls: 55,
            },
            rounds: 7,
            bytes_advised: 1 << 20,
            actuation_ns: 1_500_000,
            targets_added: 2,
            ..Default::default()
        };
        cur.apply_errors.insert("unmapped".into(), 4096);
        cur.refusals.insert("kernel_thread".into(), 3);
        cur.schemes.insert(
            ("reclaim \"cold\"".into(), "pageout".into()),
            SchemeMetrics {
                nr_tried: 3,
                sz_tried: 3 << 20,
                nr_applied: 2,
                sz_applied: 1 << 20,
                qt_exceeds: 1,
                active: true,
            },
        );
        let mut carried = Counters {
            snapshots: 3,
            ..Default::default()
        };
        carried.schemes.insert(
            ("reclaim \"cold\"".into(), "pageout".into()),
            SchemeMetrics {
                nr_tried: 10,
                ..Default::default()
            },
        );
        m.groups.insert(
            "web".into(),
            GroupMetrics {
                name: "web".into(),
                policy: "/etc/madvd/p\\x.ron".into(),
                ops: "probe".into(),
                targets: 2,
                regions: 31,
                current: cur,
                carried,
                ..Default::default()
            },
        );
        m.retired.insert(
            "old".into(),
            GroupMetrics {
                name: "old".into(),
                current: Counters {
                    snapshots: 9,
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        m
    }

    #[test]
    fn exposition_parses_back() {
        let text = render(&sample());
        let fams = expo::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let v = |name: &str, labels: &[(&str, &str)]| expo::value(&fams, name, labels);
        assert_eq!(v("madvd_config_reload_errors_total", &[]), Some(1.0));
        assert_eq!(v("madvd_config_last_reload_success", &[]), Some(0.0));
        assert_eq!(v("madvd_group_targets", &[("group", "web")]), Some(2.0));
        // carried + current
        assert_eq!(
            v("madvd_group_snapshots_total", &[("group", "web")]),
            Some(10.0)
        );
        assert_eq!(
            v("madvd_group_snapshots_total", &[("group", "old")]),
            Some(9.0)
        );
        assert_eq!(v("madvd_group_targets", &[("group", "old")]), None);
        assert_eq!(
            v("madvd_group_samples_total", &[("group", "web")]),
            Some(900.0)
        );
        assert_eq!(
            v("madvd_group_actuation_seconds_total", &[("group", "web")]),
            Some(0.0015)
        );
        let lbl = [
            ("group", "web"),
            ("scheme", "reclaim \"cold\""),
            ("action", "pageout"),
        ];
        assert_eq!(v("madvd_scheme_tried_regions_total", &lbl), Some(13.0));
        assert_eq!(v("madvd_scheme_applied_bytes_total", &lbl), Some(1048576.0));
        assert_eq!(v("madvd_scheme_active", &lbl), Some(1.0));
        assert_eq!(
            v(
                "madvd_group_apply_errors_bytes_total",
                &[("group", "web"), ("kind", "unmapped")]
            ),
            Some(4096.0)
        );
        assert_eq!(
            v(
                "madvd_group_target_refusals_total",
                &[("group", "web"), ("reason", "kernel_thread")]
            ),
            Some(3.0)
        );
        assert_eq!(
            v(
                "madvd_group_info",
                &[("group", "web"), ("policy", "/etc/madvd/p\\x.ron")]
            ),
            Some(1.0)
        );
        // Every family has HELP and TYPE, and counters end in _total.
        for f in fams.values() {
            assert!(f.help.is_some() && f.kind.is_some(), "{}", f.name);
            if f.kind.as_deref() == Some("counter") {
                assert!(f.name.ends_with("_total"), "{}", f.name);
            }
        }
    }

    proptest::proptest! {
        /// Whatever a group or scheme is called, the text parses back to the same labels.
        #[test]
        fn any_label_value_round_trips(scheme in "\\PC{0,40}", action in "[a-z\"\\\\\n]{0,10}", n in 0u64..u64::MAX / 2) {
            let mut m = AgentMetrics::default();
            let mut c = Counters::default();
            c.schemes.insert((scheme.clone(), action.clone()), SchemeMetrics { nr_tried: n, ..Default::default() });
            m.groups.insert("g".into(), GroupMetrics { name: "g".into(), current: c, ..Default::default() });
            let text = render(&m);
            let fams = expo::parse(&text).map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e}\n{text}")))?;
            let got = expo::value(&fams, "madvd_scheme_tried_regions_total", &[("scheme", &scheme), ("action", &action)]);
            proptest::prop_assert_eq!(got, Some(n as f64));
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(fmt_value(3.0), "3");
        assert_eq!(fmt_value(0.25), "0.25");
        assert_eq!(fmt_value(f64::NAN), "NaN");
    }

    #[test]
    fn http_routes() {
        let m = Mutex::new(sample());
        let (s, ct, body) = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &m);
        assert_eq!(s, "200 OK");
        assert!(ct.contains("version=0.0.4"));
        assert!(body.contains("madvd_group_targets{group=\"web\"} 2"));
        assert_eq!(respond(b"GET /healthz HTTP/1.0\r\n\r\n", &m).2, "ok\n");
        assert_eq!(
            respond(b"GET /nope HTTP/1.1\r\n\r\n", &m).0,
            "404 Not Found"
        );
        assert_eq!(
            respond(b"POST /metrics HTTP/1.1\r\n\r\n", &m).0,
            "405 Method Not Allowed"
        );
        assert_eq!(respond(b"", &m).0, "405 Method Not Allowed");
    }

    #[test]
    fn server_over_loopback() {
        let m = Arc::new(Mutex::new(sample()));
        let srv = Server::start("127.0.0.1:0".parse().unwrap(), m.clone()).unwrap();
        let get = |path: &str| {
            let mut s = TcpStream::connect(srv.addr()).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let r = get("/metrics");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        let body = r.split("\r\n\r\n").nth(1).unwrap();
        expo::parse(body).unwrap();
        m.lock().unwrap().reloads = 5;
        assert!(get("/metrics").contains("madvd_config_reloads_total 5\n"));
        assert!(get("/healthz").ends_with("ok\n"));
        // A client that sends an endless head is cut off.
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        let junk = vec![b'a'; MAX_REQUEST_BYTES + 2048];
        let _ = s.write_all(&junk);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");
        drop(srv);
    }
}

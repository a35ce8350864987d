use super::encode::{encode, Format};
use super::http::{route, CONNECTION_DEADLINE, HEADER_READ_TIMEOUT};
use super::parsed::{self, Parsed};
use super::*;
use engine::access::MonitorCost;
use hyper::{Method, StatusCode};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
            probe_refaults: 12,
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
            sz_resident: 3 << 18,
            sz_not_resident: 2 << 20,
            qt_exceeds: 1,
            active: true,
            ..Default::default()
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

/// Both formats, parsed back.
fn both(m: &AgentMetrics) -> [(Format, Parsed); 2] {
    [Format::OpenMetrics, Format::Text].map(|f| {
        let text = encode(m, f);
        let p = match f {
            Format::OpenMetrics => parsed::openmetrics(&text),
            Format::Text => parsed::text(&text),
        };
        (f, p.unwrap_or_else(|e| panic!("{f:?}: {e}\n{text}")))
    })
}

#[test]
fn exposition_parses_back_in_both_formats() {
    for (f, p) in both(&sample()) {
        let v = |name: &str, labels: &[(&str, &str)]| p.value(name, labels);
        assert_eq!(
            v("madvd_config_reload_errors_total", &[]),
            Some(1.0),
            "{f:?}"
        );
        assert_eq!(v("madvd_config_last_reload_success", &[]), Some(0.0));
        assert_eq!(v("madvd_agent_info", &[("version", "0.1.0")]), Some(1.0));
        assert_eq!(v("madvd_agent_uptime_seconds", &[]), Some(12.5));
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
        assert_eq!(
            v("madvd_scheme_applied_resident_bytes_total", &lbl),
            Some(786432.0)
        );
        assert_eq!(
            v("madvd_scheme_not_resident_bytes_total", &lbl),
            Some(2097152.0)
        );
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
        // Every family has help, and exactly the counters end in _total.
        for (name, kind) in &p.kinds {
            assert!(!p.help[name].is_empty(), "{f:?}: {name} has no help");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{f:?}: {name}");
        }
        // No per-pid series unless a group asks for them.
        assert!(!p.kinds.keys().any(|k| k.starts_with("madvd_target_")));
    }
}

#[test]
fn format_specifics() {
    let om = encode(&sample(), Format::OpenMetrics);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        om.contains("# TYPE madvd_group_snapshots counter\n"),
        "{om}"
    );
    assert!(
        om.contains("madvd_group_snapshots_total{group=\"web\"} 10\n"),
        "{om}"
    );
    let text = render(&sample());
    assert!(!text.contains("# EOF"), "{text}");
    assert!(
        text.contains("# TYPE madvd_group_snapshots_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("madvd_group_targets{group=\"web\"} 2"),
        "{text}"
    );
}

#[test]
fn negotiation() {
    let n = |a: &str| Format::negotiate(Some(a));
    // What Prometheus 2.x sends.
    assert_eq!(
        n("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
        Format::OpenMetrics
    );
    assert_eq!(n("*/*"), Format::Text);
    assert_eq!(n("text/plain"), Format::Text);
    assert_eq!(n("application/openmetrics-text; q=0"), Format::Text);
    assert_eq!(Format::negotiate(None), Format::Text);
}

#[test]
fn per_pid_series_are_opt_in_and_capped() {
    let mut m = sample();
    let g = m.groups.get_mut("web").unwrap();
    g.pid_series = 2;
    for pid in [30u32, 10, 20] {
        g.pids.insert(
            pid,
            PidMetrics {
                comm: format!("w{pid}"),
                rss_bytes: u64::from(pid) << 20,
                advised_bytes: u64::from(pid),
                ..Default::default()
            },
        );
    }
    for (f, p) in both(&m) {
        let lbl = |pid: &'static str| [("group", "web"), ("pid", pid)];
        assert_eq!(
            p.value("madvd_target_rss_bytes", &lbl("10")),
            Some(10485760.0),
            "{f:?}"
        );
        assert_eq!(
            p.value("madvd_target_advised_bytes_total", &lbl("20")),
            Some(20.0)
        );
        assert_eq!(p.value("madvd_target_rss_bytes", &lbl("30")), None);
        assert_eq!(p.samples["madvd_target_swap_bytes"].len(), 2);
        assert_eq!(
            p.value("madvd_group_pid_series_omitted", &[("group", "web")]),
            Some(1.0)
        );
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
        for (_, p) in both(&m) {
            let got = p.value("madvd_scheme_tried_regions_total", &[("scheme", &scheme), ("action", &action)]);
            proptest::prop_assert_eq!(got, Some(n as f64));
        }
    }
}

#[test]
fn http_routes() {
    let m = Mutex::new(sample());
    let (s, ct, body) = route(&Method::GET, "/metrics", None, &m);
    assert_eq!(s, StatusCode::OK);
    assert!(ct.contains("version=0.0.4"), "{ct}");
    assert!(body.contains("madvd_group_targets{group=\"web\"} 2"));
    let (_, ct, body) = route(
        &Method::GET,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
        &m,
    );
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(body.ends_with("# EOF\n"));
    assert_eq!(route(&Method::GET, "/healthz", None, &m).2, "ok\n");
    assert_eq!(route(&Method::HEAD, "/healthz", None, &m).0, StatusCode::OK);
    assert_eq!(
        route(&Method::GET, "/nope", None, &m).0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        route(&Method::POST, "/metrics", None, &m).0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn server_over_loopback() {
    let m = Arc::new(Mutex::new(sample()));
    let srv = Server::start("127.0.0.1:0".parse().unwrap(), m.clone()).unwrap();
    let r = get(srv.addr(), "/metrics");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    let body = r.split_once("\r\n\r\n").unwrap().1;
    parsed::text(body).unwrap();
    m.lock().unwrap().reloads = 5;
    assert!(get(srv.addr(), "/metrics").contains("madvd_config_reloads_total 5\n"));
    assert!(get(srv.addr(), "/healthz").ends_with("ok\n"));
    // A client that sends an endless head is cut off.
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(&vec![b'a'; 64 << 10]);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 4"), "{out}");
    drop(srv);
}

/// Clients that never finish their request hold nobody up, are cut off by the deadlines,
/// and do not delay the server's stop.
#[test]
fn stalled_clients_block_nothing() {
    let m = Arc::new(Mutex::new(sample()));
    let srv = Server::start("127.0.0.1:0".parse().unwrap(), m).unwrap();
    let mut stalled = Vec::new();
    for i in 0..30 {
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /metr").unwrap();
        }
        stalled.push(s);
    }
    let t0 = Instant::now();
    assert!(get(srv.addr(), "/healthz").ends_with("ok\n"));
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    // The stalled ones are closed by the server once their head deadline passes.
    let s = &mut stalled[0];
    s.set_read_timeout(Some(CONNECTION_DEADLINE + Duration::from_secs(2)))
        .unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let took = t0.elapsed();
    assert!(
        took >= HEADER_READ_TIMEOUT - Duration::from_millis(500)
            && took <= CONNECTION_DEADLINE + Duration::from_secs(1),
        "{took:?}"
    );
    let t0 = Instant::now();
    drop(srv);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

#[test]
fn cpu_share_budget_and_intervals_are_shown() {
    let mut m = sample();
    m.cpu = CpuMetrics {
        seconds: 3.25,
        share: 0.018,
        budget: None,
        scale: 1.0,
    };
    if let Some(g) = m.groups.get_mut("web") {
        g.show_attrs(&engine::Attrs {
            sample_us: 1_500_000,
            aggr_us: 15_000_000,
            max_nr_regions: 250,
            ..engine::Attrs::default()
        });
    }
    for (f, p) in both(&m) {
        let v = |name: &str, labels: &[(&str, &str)]| p.value(name, labels);
        assert_eq!(v("madvd_agent_cpu_seconds_total", &[]), Some(3.25), "{f:?}");
        assert_eq!(v("madvd_agent_cpu_share", &[]), Some(0.018));
        // No budget: no budget series.
        assert_eq!(v("madvd_agent_cpu_budget", &[]), None);
        assert_eq!(v("madvd_agent_cpu_budget_scale", &[]), Some(1.0));
        let web = [("group", "web")];
        assert_eq!(v("madvd_group_sample_interval_seconds", &web), Some(1.5));
        assert_eq!(
            v("madvd_group_aggregation_interval_seconds", &web),
            Some(15.0)
        );
        assert_eq!(v("madvd_group_max_regions", &web), Some(250.0));
        // A retired group has no interval gauges.
        let old = [("group", "old")];
        assert_eq!(v("madvd_group_sample_interval_seconds", &old), None);
    }
    m.cpu.budget = Some(0.02);
    m.cpu.scale = 2.83;
    for (_, p) in both(&m) {
        assert_eq!(p.value("madvd_agent_cpu_budget", &[]), Some(0.02));
        assert_eq!(p.value("madvd_agent_cpu_budget_scale", &[]), Some(2.83));
    }
}

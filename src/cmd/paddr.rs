//! Physical memory (`madvd monitor --paddr`, `madvd record --paddr`): madvd's monitor over
//! the `paddr` access check (engine `ops::paddr`), stepped here on the wall clock, and each
//! aggregated snapshot's hot and cold bytes attributed to memory cgroups
//! (`/proc/kpagecgroup`, engine `ops::paddr::owners`).

use crate::cli::{AttrFlags, MonitorArgs, RecordArgs};
use crate::cmd::monitor::{render, view};
use crate::exit::{err, Code};
use crate::pipeline::{StageConfig, Watched};
use crate::record::{Frame, Header, RecordWriter, Source, FORMAT, VERSION};
use crate::signals;
use crate::units::{fmt_bytes, fmt_duration_us};
use anyhow::Result;
use engine::monitor::Monitor;
use engine::ops::paddr::owners::{CgroupBytes, Owners, Sampling};
use engine::ops::paddr::{PAddr, PaddrError, PADDR_TARGET};
use engine::ops::OpsKind;
use engine::{AccessCheck, AddrRange, Attrs, Snapshot, SysRoot};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// `--paddr` RANGES: `auto` (the biggest System RAM range) or `START-END[,START-END…]`,
/// each as `report heatmap --range` takes it (`cli::parse_range`).
pub fn parse_ranges(s: &str) -> Result<Option<Vec<AddrRange>>> {
    if s == "auto" {
        return Ok(None);
    }
    s.split(',')
        .map(|r| {
            crate::cli::parse_range(r.trim())
                .map(|(a, b)| AddrRange::new(a, b))
                .map_err(|e| err(Code::Usage, format!("--paddr {s}: {e}")))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn paddr_error(e: PaddrError) -> anyhow::Error {
    let code = match &e {
        PaddrError::NotRoot | PaddrError::Iomem(engine::kernel::iomem::IomemError::Hidden(_)) => {
            Code::Permission
        }
        PaddrError::NotAligned { .. }
        | PaddrError::Empty { .. }
        | PaddrError::OutsideRam { .. }
        | PaddrError::Overlap { .. } => Code::Usage,
        _ => Code::Failure,
    };
    err(code, format!("paddr: {e}"))
}

/// A check that failed to open its files: say why paddr is not usable here instead (the
/// kernel option, not only the missing path).
fn open_error(root: &SysRoot, e: PaddrError) -> anyhow::Error {
    match (&e, engine::ops::paddr::why_not(root)) {
        (PaddrError::Open { .. }, Some(why)) => {
            err(Code::Failure, format!("paddr is not usable here: {why}"))
        }
        _ => paddr_error(e),
    }
}

/// One aggregated snapshot of physical memory, with its bytes per cgroup.
pub struct Observed {
    pub snapshot: Snapshot,
    pub cgroups: Vec<CgroupBytes>,
}

/// The monitor over the paddr check, on the wall clock.
pub struct Session {
    monitor: Monitor,
    check: PAddr,
    owners: Option<Owners>,
    t0: Instant,
}

impl Session {
    /// Check the ranges (`spec` as [`parse_ranges`]) and set up; `flags` over the kernel's
    /// default attributes.
    pub fn open(root: &SysRoot, spec: &str, flags: &AttrFlags) -> Result<Self> {
        Self::open_for(root, spec, flags, None)
    }

    /// As [`Self::open`], `flags` over `policy`'s `monitor` section (`madvd run --paddr`).
    pub fn open_for(
        root: &SysRoot,
        spec: &str,
        flags: &AttrFlags,
        policy: Option<&schemes::Policy>,
    ) -> Result<Self> {
        let want = parse_ranges(spec)?;
        let check = PAddr::new(root, want.as_deref()).map_err(|e| open_error(root, e))?;
        let schemes = policy.map(|p| crate::pipeline::SchemesConfig {
            policy: p.clone(),
            procs: Vec::new(),
            dry_run: true,
        });
        let over = StageConfig::new(
            root,
            OpsKind::PAddr,
            Watched::Procs(Vec::new()),
            flags,
            schemes,
        )
        .attrs;
        let attrs = over.apply(check.default_attrs());
        let mut monitor = Monitor::new(attrs, std::process::id() as u64)
            .map_err(|e| err(Code::Usage, format!("monitoring attributes: {e}")))?;
        monitor.set_age_rule(engine::monitor::AgeRule::ZeroRun);
        monitor.add_target(PADDR_TARGET);
        let owners = match Owners::open(root) {
            Ok(o) => Some(o),
            Err(e) => {
                eprintln!(
                    "madvd: warning: no bytes per cgroup: {}: {e}",
                    root.proc_file("kpagecgroup").display()
                );
                None
            }
        };
        Ok(Self {
            monitor,
            check,
            owners,
            t0: Instant::now(),
        })
    }

    pub fn attrs(&self) -> Attrs {
        *self.monitor.attrs()
    }

    pub fn ranges(&self) -> &[AddrRange] {
        self.check.ranges()
    }

    pub fn page_size(&self) -> u64 {
        self.check.page_size()
    }

    /// Step until the next aggregation; `None` when stopped (signal) or at `until`.
    pub fn next(&mut self, until: Option<Instant>) -> Option<Observed> {
        loop {
            if signals::stop_requested() || until.is_some_and(|u| Instant::now() >= u) {
                return None;
            }
            let now = self.t0.elapsed().as_micros() as u64;
            if let Some(snapshot) = self.monitor.step(now, &mut self.check).snapshot {
                let cgroups = self.cgroups(&snapshot);
                return Some(Observed { snapshot, cgroups });
            }
            let due = self.monitor.next_step_at_us();
            let now = self.t0.elapsed().as_micros() as u64;
            std::thread::sleep(Duration::from_micros(due.saturating_sub(now)));
        }
    }

    fn cgroups(&self, s: &Snapshot) -> Vec<CgroupBytes> {
        let Some(o) = &self.owners else {
            return Vec::new();
        };
        let regions: Vec<_> = s.targets.iter().flat_map(|t| t.regions.clone()).collect();
        o.of(&regions, Sampling::default(), self.check.page_size())
    }
}

/// The per-cgroup table.
pub fn render_cgroups(v: &[CgroupBytes]) -> String {
    let mut s = format!("{:<40} {:>11} {:>11}\n", "CGROUP", "COLD", "HOT");
    for c in v {
        s += &format!(
            "{:<40} {:>11} {:>11}\n",
            c.cgroup,
            fmt_bytes(c.cold_bytes),
            fmt_bytes(c.hot_bytes)
        );
    }
    s
}

#[derive(Serialize)]
struct PaddrView {
    ranges: Vec<AddrRange>,
    cold_bytes: u64,
    cgroups: Vec<CgroupBytes>,
    #[serde(flatten)]
    view: crate::cmd::monitor::View,
}

/// `madvd monitor --paddr`.
pub fn monitor(root: &SysRoot, a: MonitorArgs, spec: &str) -> Result<()> {
    let mut session = Session::open(root, spec, &a.attrs)?;
    let ranges = session.ranges().to_vec();
    let names: Vec<String> = ranges.iter().map(|r| r.to_string()).collect();
    let attrs = session.attrs();
    if !a.json {
        eprintln!(
            "monitoring physical memory {} with paddr ({} sampling, {} aggregation); Ctrl-C stops",
            names.join(", "),
            fmt_duration_us(attrs.sample_us),
            fmt_duration_us(attrs.aggr_us)
        );
    }
    let tty = std::io::stdout().is_terminal() && !a.json;
    let until = a.for_.map(|d| Instant::now() + d);
    while let Some(o) = session.next(until) {
        let v = view(&o.snapshot, PADDR_TARGET.0, "paddr");
        let mut out = std::io::stdout().lock();
        if a.json {
            let pv = PaddrView {
                ranges: ranges.clone(),
                cold_bytes: v.total_bytes - v.wss_bytes,
                cgroups: o.cgroups,
                view: v,
            };
            writeln!(out, "{}", serde_json::to_string(&pv)?)?;
        } else {
            if tty {
                write!(out, "\x1b[H\x1b[2J")?;
            }
            let table = render(&v, a.rows);
            let regions = table.split_once('\n').map_or("", |x| x.1);
            write!(
                out,
                "madvd monitor  paddr {}  t {}  aggregation {}\n{}\n{}",
                names.join(","),
                fmt_duration_us(v.t_us),
                v.aggregation,
                render_cgroups(&o.cgroups),
                regions
            )?;
        }
        out.flush()?;
        if a.once {
            break;
        }
    }
    Ok(())
}

/// `madvd record --paddr`.
pub fn record(root: &SysRoot, a: RecordArgs, spec: &str) -> Result<()> {
    let mut session = Session::open(root, spec, &a.attrs)?;
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        source: Source::Paddr {
            ranges: session.ranges().to_vec(),
        },
        ops: OpsKind::PAddr.name().into(),
        attrs: session.attrs(),
        started_unix_ms: crate::cmd::record::unix_ms(),
        kernel: crate::sysinfo::kernel_release(),
    };
    let mut w = RecordWriter::create(&a.output, &header)?;
    let until = a.for_.map(|d| Instant::now() + d);
    while let Some(o) = session.next(until) {
        let mut f = Frame::from_snapshot(&o.snapshot, 0);
        f.cgroups = o.cgroups;
        w.write_frame(&f)?;
    }
    let reason = if signals::stop_requested() {
        "signal"
    } else {
        "duration"
    };
    let n = w.snapshots();
    w.finish(reason)?;
    eprintln!(
        "recorded {n} snapshots of physical memory to {} ({reason})",
        a.output.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_bad_ones_are_named() {
        assert_eq!(parse_ranges("auto").unwrap(), None);
        assert_eq!(
            parse_ranges("0x100000-0x200000,8192-12288").unwrap(),
            Some(vec![
                AddrRange::new(0x100000, 0x200000),
                AddrRange::new(8192, 12288)
            ])
        );
        let e = parse_ranges("0x10-zz").unwrap_err().to_string();
        assert_eq!(e, "--paddr 0x10-zz: 'zz' is not an address");
        let e = parse_ranges("0x10").unwrap_err().to_string();
        assert_eq!(e, "--paddr 0x10: '0x10' is not START-END");
    }

    #[test]
    fn cgroup_table_lists_cold_and_hot() {
        let t = render_cgroups(&[CgroupBytes {
            cgroup: "/idle".into(),
            hot_bytes: 1 << 20,
            cold_bytes: 64 << 20,
        }]);
        assert!(t.starts_with("CGROUP"), "{t}");
        assert!(
            t.contains("/idle") && t.contains("64.0 MiB") && t.contains("1.0 MiB"),
            "{t}"
        );
    }

    /// A paddr record: its source and per-cgroup bytes survive the file, `report summary`
    /// averages them, and `report heatmap` draws physical memory.
    #[test]
    fn a_paddr_record_reports_cgroups_and_a_heatmap() {
        use crate::cli::{HeatmapArgs, ReportCmd};
        use crate::cmd::report::{cgroups_mean, cgroups_median, summarize};
        use crate::record::FrameTarget;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ram.rec");
        let ram = AddrRange::new(0x100000, 0x8100000);
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            source: Source::Paddr { ranges: vec![ram] },
            ops: "paddr".into(),
            attrs: Attrs::default(),
            started_unix_ms: 0,
            kernel: None,
        };
        let mut w = RecordWriter::create(&path, &header).unwrap();
        for i in 0..4u64 {
            let mid = ram.start + ram.len() / 2;
            let f = Frame {
                t_us: i * 100_000,
                aggr: i,
                targets: vec![FrameTarget {
                    id: PADDR_TARGET.0,
                    regions: vec![[ram.start, mid, 10, i], [mid, ram.end, 0, i]],
                    mappings: Vec::new(),
                    absent: Vec::new(),
                    seen: Vec::new(),
                }],
                cgroups: vec![
                    CgroupBytes {
                        cgroup: "/idle".into(),
                        hot_bytes: 0,
                        cold_bytes: (60 + 2 * i) << 20,
                    },
                    CgroupBytes {
                        cgroup: "/hot".into(),
                        hot_bytes: 64 << 20,
                        cold_bytes: i << 20,
                    },
                ],
            };
            w.write_frame(&f).unwrap();
        }
        w.finish("duration").unwrap();
        let rec = crate::record::read(&path).unwrap();
        assert_eq!(rec.header.source, Source::Paddr { ranges: vec![ram] });
        let mean = cgroups_mean(&rec);
        assert_eq!(mean[0].cgroup, "/idle");
        assert_eq!(mean[0].cold_bytes, 63 << 20);
        assert_eq!((mean[1].hot_bytes, mean[1].cold_bytes), (64 << 20, 3 << 19));
        let median = cgroups_median(&rec);
        assert_eq!(median[0].cgroup, "/idle");
        assert_eq!(median[0].cold_bytes, 63 << 20);
        assert_eq!(
            (median[1].hot_bytes, median[1].cold_bytes),
            (64 << 20, 3 << 19)
        );
        let s = serde_json::to_value(summarize(&rec)).unwrap();
        assert_eq!(s["source"]["kind"], "paddr");
        assert_eq!(s["cgroups_mean"][0]["cgroup"], "/idle");
        assert_eq!(s["cgroups_median"][0]["cold_bytes"], 63u64 << 20);
        let png = dir.path().join("ram.png");
        crate::cmd::report::run(ReportCmd::Heatmap(HeatmapArgs {
            file: path,
            output: Some(png.clone()),
            target: None,
            range: None,
            cols: 40,
            rows: 20,
        }))
        .unwrap();
        assert!(std::fs::metadata(&png).unwrap().len() > 0);
    }
}

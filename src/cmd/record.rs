//! `madvd record`: write the monitor's aggregated snapshots to a record file
//! (docs/record-format.md), from live processes or from the simulator.

use crate::cli::RecordArgs;
use crate::exit::{err, Code};
use crate::pipeline::{self, Event, StageConfig, Watched};
use crate::record::{Frame, Header, RecordWriter, Source, FORMAT, VERSION};
use crate::signals;
use crate::targets;
use crate::units::fmt_duration_us;
use anyhow::Result;
use engine::ops::sim::{SimSpace, SCENARIOS};
use engine::SysRoot;
use std::time::{Duration, Instant};

pub fn run(root: &SysRoot, a: RecordArgs) -> Result<()> {
    if let Some(spec) = a.paddr.clone() {
        return super::paddr::record(root, a, &spec);
    }
    match a.sim.clone() {
        Some(s) => record_sim(root, &s, a),
        None => record_live(root, a),
    }
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Record the simulator as fast as it runs: simulated time, no sleeping.
pub fn record_sim(root: &SysRoot, scenario: &str, a: RecordArgs) -> Result<()> {
    let space = SimSpace::scenario(scenario, a.sim_size).map_err(|e| {
        err(
            Code::Usage,
            format!(
                "--sim {scenario}: {e} (scenarios: {})",
                SCENARIOS.join(", ")
            ),
        )
    })?;
    let mut cfg = StageConfig::new(
        root,
        engine::ops::OpsKind::Sim,
        Watched::Sim(space),
        &a.attrs,
        None,
    );
    cfg.seed = 42;
    let mut source = pipeline::build(cfg)?.source;
    let attrs = source.attrs();
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        source: Source::Sim {
            scenario: scenario.into(),
            size: a.sim_size,
        },
        ops: "sim".into(),
        attrs,
        started_unix_ms: unix_ms(),
        kernel: None,
    };
    let mut w = RecordWriter::create(&a.output, &header)?;
    let end_us = a.for_.unwrap_or(Duration::from_secs(60)).as_micros() as u64;
    let mut now = 0u64;
    while now < end_us {
        // The source's interval, not the header's: interval tuning changes it.
        now += source.interval_us();
        let pulled = source.pull(now, false).map_err(|e| err(Code::Failure, e))?;
        if let Some(s) = pulled.snapshot {
            w.write_frame(&Frame::from_snapshot(&s, 0))?;
        }
        if signals::stop_requested() {
            let n = w.snapshots();
            w.finish("signal")?;
            eprintln!("interrupted: {} snapshots in {}", n, a.output.display());
            return Ok(());
        }
    }
    let n = w.snapshots();
    w.finish("duration")?;
    eprintln!(
        "recorded {n} snapshots ({} simulated) of sim '{scenario}' to {}",
        fmt_duration_us(end_us),
        a.output.display()
    );
    Ok(())
}

fn record_live(root: &SysRoot, a: RecordArgs) -> Result<()> {
    let kind = targets::choose(root, &a.ops)?;
    let procs = targets::open_all(root, &a.pid, a.allow_pid1)?;
    let comms: Vec<String> = procs.iter().map(|p| p.comm().to_string()).collect();
    let pids: Vec<u32> = procs.iter().map(|p| p.pid()).collect();
    let cfg = StageConfig::new(root, kind, Watched::Procs(procs), &a.attrs, None);
    let stages = pipeline::build(cfg)?;
    let attrs = stages.attrs();
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        source: Source::Pid {
            pids: pids.clone(),
            comms,
        },
        ops: kind.name().into(),
        attrs,
        started_unix_ms: unix_ms(),
        kernel: crate::sysinfo::kernel_release(),
    };
    let mut w = RecordWriter::create(&a.output, &header)?;
    let running = stages.start()?;
    let t0 = Instant::now();
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    pb.enable_steady_tick(Duration::from_millis(250));
    let mut reason = "duration";
    let mut absent_seen = Vec::new();
    loop {
        if signals::stop_requested() {
            reason = "signal";
            break;
        }
        if a.for_.is_some_and(|d| t0.elapsed() >= d) {
            break;
        }
        match running.events.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Snapshot(s, _)) if s.aggregated => {
                let mut f = Frame::from_snapshot(&s, 0);
                crate::record::add_mappings(&mut f, root);
                crate::record::add_absent(&mut f, root, &mut absent_seen);
                w.write_frame(&f)?;
                pb.set_message(format!(
                    "recording {} with {}: {} snapshots, {} regions, {:.0} s",
                    a.output.display(),
                    kind,
                    w.snapshots(),
                    s.nr_regions(),
                    t0.elapsed().as_secs_f64()
                ));
            }
            Ok(Event::Gone(t)) => pb.println(format!("pid {t} exited: dropped")),
            Ok(Event::AllGone) => {
                reason = "targets_gone";
                break;
            }
            Ok(Event::Failed(m)) => pb.println(format!("madvd: warning: {m}")),
            Ok(_) => {}
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                if signals::stop_requested() {
                    reason = "signal";
                }
                break;
            }
        }
    }
    running.stop_and_join();
    pb.finish_and_clear();
    let n = w.snapshots();
    w.finish(reason)?;
    eprintln!(
        "recorded {n} snapshots to {} ({reason})",
        a.output.display()
    );
    Ok(())
}

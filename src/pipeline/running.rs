//! Started stages ([`Running`]), what they tell the caller ([`Event`]), the target changes a
//! live front end sends them ([`Control`]), and the clock they share.

use super::actuate::SchemeLine;
use crate::signals::Stop;
use crossbeam_channel::{Receiver, Sender};
use engine::access::MonitorCost;
use engine::process::Process;
use engine::{ApplyReport, Attrs, Snapshot, TargetId};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// What the stages tell the caller.
pub enum Event {
    /// A snapshot (aggregated or mid-aggregation) and the access check's cost so far.
    Snapshot(Arc<Snapshot>, MonitorCost),
    /// One actuation round: the report, then the schemes' stats after accounting it.
    Applied(ApplyReport, Vec<SchemeLine>),
    /// A target exited and was dropped.
    Gone(TargetId),
    /// Every target is gone (or the source ended): the run ends.
    AllGone,
    /// A stage failed (the message names the pid or path).
    Failed(String),
}

/// The µs clock the stages share.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Self {
        Clock(Instant::now())
    }
    pub fn now_us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

/// A change to the target set of live stages (the agent's discovery).
pub(crate) enum Control {
    /// Watch a process: the access check's handle and the actuator's (each its own pidfd).
    Add {
        check: Box<Process>,
        act: Box<Process>,
    },
    /// Stop watching it (it left its cgroup, or no longer matches its selector).
    Remove(TargetId),
    /// New monitoring attributes (the agent's CPU budget), the next pull `first_in` µs from
    /// now (the caller spreads its groups' phases this way).
    SetAttrs { attrs: Attrs, first_in_us: u64 },
}

/// Started stages.
pub struct Running {
    pub events: Receiver<Event>,
    pub(super) monitor: Option<JoinHandle<()>>,
    pub(super) actuation: Option<JoinHandle<()>>,
    pub(super) stop: Stop,
    /// Target changes (live stages only).
    pub(super) control: Option<Sender<Control>>,
}

impl Running {
    /// Watch one more process (live stages): `check` is the access check's handle, `act`
    /// the actuator's, on the same process. False when the stages are gone or not live.
    pub fn add_target(&self, check: Process, act: Process) -> bool {
        self.control.as_ref().is_some_and(|c| {
            c.send(Control::Add {
                check: Box::new(check),
                act: Box::new(act),
            })
            .is_ok()
        })
    }

    /// Stop watching `id` (live stages).
    pub fn remove_target(&self, id: TargetId) {
        if let Some(c) = &self.control {
            let _ = c.send(Control::Remove(id));
        }
    }

    /// Change the monitoring attributes of live stages (`Monitor::set_attrs`), the next
    /// sample `first_in` from now. False when the stages are gone or not live; a source that
    /// cannot change them reports `Failed`.
    pub fn set_attrs(&self, attrs: Attrs, first_in: std::time::Duration) -> bool {
        let first_in_us = first_in.as_micros().min(u64::MAX as u128) as u64;
        self.control
            .as_ref()
            .is_some_and(|c| c.send(Control::SetAttrs { attrs, first_in_us }).is_ok())
    }

    /// Stop both stages (at a batch boundary) and wait for them.
    pub fn stop_and_join(mut self) {
        self.stop.set();
        self.join_inner();
    }

    fn join_inner(&mut self) {
        if let Some(h) = self.monitor.take() {
            let _ = h.join();
        }
        if let Some(h) = self.actuation.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.set();
        self.join_inner();
    }
}

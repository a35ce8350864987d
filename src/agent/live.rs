//! The access check of one target group, whose targets change while the stages run.
//!
//! The pipeline's monitor thread owns the check as a `Box<dyn AccessCheck>`, which has no
//! way to take a new process. [`LiveOps`] wraps the checks that can drive live targets
//! (those `targets::build_ops` builds: the refault probe and smaps) with an [`Inbox`]: the
//! agent puts the monitor-side handle of a new process there *before* it sends
//! `pipeline::Control::Add`, and the check drains the inbox at the top of every call, so it
//! always knows a target before the monitor asks about it. A target the check reports gone
//! is dropped from the check too (its pidfd and pagemap are closed at once; a busy cgroup's
//! short-lived processes must not pile up open files).

use anyhow::Result;
use engine::access::{Access, AccessCheck, AccessError, MonitorCost, SampleReq};
use engine::ops::probe::{Probe, ProbeConfig};
use engine::ops::smaps::SmapsCheck;
use engine::process::Process;
use engine::{AddrRange, Attrs, SysRoot, TargetId};
use std::sync::{Arc, Mutex};

/// A change for the check, applied at its next call.
pub enum Change {
    Add(Process),
    Remove(TargetId),
}

/// The agent's side of the inbox.
#[derive(Clone, Default)]
pub struct Inbox(Arc<Mutex<Vec<Change>>>);

impl Inbox {
    pub fn push(&self, c: Change) {
        if let Ok(mut v) = self.0.lock() {
            v.push(c);
        }
    }
    fn take(&self) -> Vec<Change> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

enum Inner {
    Probe(Box<Probe>),
    Smaps(SmapsCheck),
}

/// See the module documentation.
pub struct LiveOps {
    inner: Inner,
    inbox: Inbox,
}

impl LiveOps {
    /// The check `name` with no targets yet. Only the checks that drive live processes.
    pub fn new(name: &str, root: &SysRoot, inbox: Inbox) -> Result<LiveOps> {
        let inner = match name {
            "probe" => Inner::Probe(Box::new(Probe::new(root.clone(), ProbeConfig::default()))),
            "smaps" => Inner::Smaps(SmapsCheck::new()),
            other => anyhow::bail!(
                "access primitive `{other}` cannot drive the agent's live targets (use probe or smaps)"
            ),
        };
        Ok(LiveOps { inner, inbox })
    }

    fn dyn_check(&mut self) -> &mut dyn AccessCheck {
        match &mut self.inner {
            Inner::Probe(p) => p.as_mut(),
            Inner::Smaps(s) => s,
        }
    }

    fn remove(&mut self, id: TargetId) {
        match &mut self.inner {
            Inner::Probe(p) => drop(p.remove_target(id)),
            Inner::Smaps(s) => drop(s.remove_target(id)),
        }
    }

    fn drain(&mut self) {
        for c in self.inbox.take() {
            match c {
                Change::Add(p) => match &mut self.inner {
                    Inner::Probe(x) => drop(x.add_target(p)),
                    Inner::Smaps(x) => drop(x.add_target(p)),
                },
                Change::Remove(id) => self.remove(id),
            }
        }
    }

    fn gone<T>(&mut self, r: Result<T, AccessError>) -> Result<T, AccessError> {
        if let Err(AccessError::TargetGone(id)) = &r {
            self.remove(*id);
        }
        r
    }
}

impl AccessCheck for LiveOps {
    fn name(&self) -> &'static str {
        match &self.inner {
            Inner::Probe(p) => p.name(),
            Inner::Smaps(s) => s.name(),
        }
    }
    fn default_attrs(&self) -> Attrs {
        match &self.inner {
            Inner::Probe(p) => p.default_attrs(),
            Inner::Smaps(s) => s.default_attrs(),
        }
    }
    fn max_samples_per_sec(&self) -> Option<f64> {
        match &self.inner {
            Inner::Probe(p) => p.max_samples_per_sec(),
            Inner::Smaps(s) => s.max_samples_per_sec(),
        }
    }
    fn target_ranges(&mut self, target: TargetId) -> Result<Vec<AddrRange>, AccessError> {
        self.drain();
        let r = self.dyn_check().target_ranges(target);
        self.gone(r)
    }
    fn prepare(&mut self, target: TargetId, samples: &mut [SampleReq]) -> Result<(), AccessError> {
        self.drain();
        let r = self.dyn_check().prepare(target, samples);
        self.gone(r)
    }
    fn check(
        &mut self,
        target: TargetId,
        samples: &[SampleReq],
        out: &mut [Access],
    ) -> Result<(), AccessError> {
        self.drain();
        let r = self.dyn_check().check(target, samples, out);
        self.gone(r)
    }
    fn note_advised(&mut self, target: TargetId, ranges: &[AddrRange]) {
        self.drain();
        self.dyn_check().note_advised(target, ranges)
    }
    fn cost(&self) -> MonitorCost {
        match &self.inner {
            Inner::Probe(p) => p.cost(),
            Inner::Smaps(s) => s.cost(),
        }
    }
}

//! SIGINT/SIGTERM → a stop flag. The handler only stores to an atomic (async-signal-safe);
//! the stages check the flag at batch boundaries, so nothing is left half applied, and
//! whatever the command set up (zram swap, a workload child) is torn down by its owner's
//! `Drop` on the normal return path.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

static STOP: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
    STOP.store(true, Ordering::SeqCst);
}

/// Install the handlers (idempotent).
pub fn install() -> anyhow::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to two atomics, which is async-signal-safe; no
        // other handler for these signals is relied on elsewhere in the program.
        unsafe { sigaction(sig, &act) }.map_err(|e| anyhow::anyhow!("sigaction({sig}): {e}"))?;
    }
    Ok(())
}

/// True once SIGINT or SIGTERM arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The signal that asked to stop, if any (for messages).
pub fn signal_name() -> Option<&'static str> {
    match SIGNAL.load(Ordering::SeqCst) {
        libc::SIGINT => Some("SIGINT"),
        libc::SIGTERM => Some("SIGTERM"),
        _ => None,
    }
}

/// A stop flag for the stages: set by a signal, by `--for`, or when every target is gone.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// True when this flag was set or a signal arrived.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst) || stop_requested()
    }
    /// The shared atomic (for an actuator that checks between batches).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

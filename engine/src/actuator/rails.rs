//! The safety rails: who is never advised ([`Refusal`]), and the swap headroom page-out stops
//! at. (Dry runs and the cancel flag are checked between calls in `apply.rs`.)

use super::{Actuator, ActuatorSys};
use crate::kernel::host::align_down;

/// Why a target is never advised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The target is madvd itself.
    SelfProcess,
    /// The target is pid 1 (init) of madvd's pid namespace.
    Init,
    /// The target is a kernel thread (`PF_KTHREAD`).
    KernelThread,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::SelfProcess => "it is madvd itself",
            Refusal::Init => "it is pid 1",
            Refusal::KernelThread => "it is a kernel thread",
        })
    }
}

impl<S: ActuatorSys> Actuator<S> {
    /// Page-out budget before the headroom: None = unlimited (no swap configured: page-out
    /// then only drops clean file pages and cannot exhaust swap), Some(bytes) otherwise.
    pub(super) fn pageout_budget(&mut self) -> Result<Option<u64>, String> {
        match self.sys.swap() {
            Ok(s) if s.total == 0 => Ok(None),
            Ok(s) => {
                let headroom =
                    (s.total as f64 * self.config.swap_headroom.clamp(0.0, 1.0)).ceil() as u64;
                let budget = align_down(s.free.saturating_sub(headroom), self.page);
                if budget == 0 {
                    Err(format!(
                        "free swap {} KiB is under the headroom {} KiB ({:.0}% of SwapTotal {} KiB)",
                        s.free >> 10,
                        headroom >> 10,
                        self.config.swap_headroom * 100.0,
                        s.total >> 10
                    ))
                } else {
                    Ok(Some(budget))
                }
            }
            Err(e) => Err(format!(
                "cannot read swap figures ({e}): not paging out blind"
            )),
        }
    }
}

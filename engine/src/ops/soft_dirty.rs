//! The soft-dirty access check: **sees writes only**. Reads leave no trace, so a page that
//! is only read answers `NotAccessed`; use it where nothing better is usable, and read its
//! "hot" as "written".
//!
//! Per sampling interval and target (Documentation/admin-guide/mm/soft-dirty.rst, Linux
//! 6.12; `CONFIG_MEM_SOFT_DIRTY`):
//! - **prepare**: write `4` to `/proc/PID/clear_refs` — clears the soft-dirty bit of every
//!   PTE of the process and write-protects them, so the next write to each page faults
//!   once (a cost the target pays) and sets the bit again;
//! - **check**: `/proc/PID/pagemap` bit 55 of each sample page: set ⇒ `Accessed` (written
//!   since prepare), clear ⇒ `NotAccessed`. Swap entries carry the bit too.
//!
//! One `clear_refs` write per target per interval walks all its page tables: the cost grows
//! with the target's mapped memory, not with the number of samples. A VMA created after
//! the clear is soft-dirty as a whole (`VM_SOFTDIRTY`) until the next one.

use crate::access::{Access, AccessCheck, AccessError, MonitorCost, SampleReq};
use crate::kernel::clear_refs::ClearRefs;
use crate::kernel::pagemap::{Pagemap, PM_SOFT_DIRTY};
use crate::ops::probe::access_error;
use crate::ops::OpsStatus;
use crate::process::Process;
use crate::region::{AddrRange, TargetId};
use crate::sysroot::SysRoot;
use std::collections::BTreeMap;

/// The description `madvd ops` prints; says that only writes are seen.
pub const DESCRIPTION: &str =
    "soft-dirty bits (clear_refs 4 + pagemap bit 55): sees WRITES ONLY, reads look idle";

/// Usable here? Found out by trying it on a page of our own: write, clear, check the bit is
/// clear, write, check it is set (`CONFIG_MEM_SOFT_DIRTY` off leaves bit 55 always clear).
pub fn status(root: &SysRoot) -> OpsStatus {
    let why_not = self_test(root).err();
    OpsStatus {
        name: "soft_dirty",
        usable: why_not.is_none(),
        why_not,
        granularity: "page (writes only)",
        description: DESCRIPTION,
        rank: crate::ops::detect::RANK_SOFT_DIRTY,
    }
}

/// An anonymous private page of our own, unmapped on drop.
struct OwnPage {
    ptr: *mut u8,
    len: usize,
}

impl OwnPage {
    fn new(len: usize) -> Result<Self, String> {
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        Ok(Self { ptr: p.cast(), len })
    }
    fn touch(&self, v: u8) {
        // SAFETY: `ptr` points at `len >= 1` writable bytes we mapped and own.
        unsafe { std::ptr::write_volatile(self.ptr, v) }
    }
}

impl Drop for OwnPage {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`, which nothing else uses.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn self_test(root: &SysRoot) -> Result<(), String> {
    let me = std::process::id();
    let clear = root.pid_file(me, "clear_refs");
    let pm_path = root.pid_file(me, "pagemap");
    if !clear.exists() || !pm_path.exists() {
        return Err(format!(
            "cannot test: {} or {} missing",
            clear.display(),
            pm_path.display()
        ));
    }
    let page = crate::process::page_size();
    let own = OwnPage::new(page as usize)?;
    own.touch(1);
    let mut pm =
        Pagemap::open(&pm_path, page).map_err(|e| format!("{}: {e}", pm_path.display()))?;
    let clear_now = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&clear)
            .and_then(|f| crate::kernel::clear_refs::write(f, ClearRefs::SoftDirty))
            .map_err(|e| format!("writing 4 to {}: {e}", clear.display()))
    };
    let mut bit = || -> Result<bool, String> {
        let e = pm
            .entry(own.ptr as u64)
            .map_err(|e| format!("{}: {e}", pm_path.display()))?;
        Ok(e.is_some_and(|e| e.0 & PM_SOFT_DIRTY != 0))
    };
    clear_now()?;
    if bit()? {
        return Err("clear_refs 4 did not clear the soft-dirty bit (pagemap bit 55)".into());
    }
    own.touch(2);
    if !bit()? {
        return Err(
            "CONFIG_MEM_SOFT_DIRTY is off in this kernel: pagemap bit 55 stays clear after a write"
                .into(),
        );
    }
    Ok(())
}

/// The soft-dirty check over live targets.
pub struct SoftDirty {
    targets: BTreeMap<TargetId, Process>,
    cost: MonitorCost,
}

impl Default for SoftDirty {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftDirty {
    pub fn new() -> Self {
        Self {
            targets: BTreeMap::new(),
            cost: MonitorCost::default(),
        }
    }

    pub fn add_target(&mut self, proc: Process) -> TargetId {
        let id = proc.id();
        self.targets.insert(id, proc);
        id
    }

    pub fn remove_target(&mut self, id: TargetId) -> Option<Process> {
        self.targets.remove(&id)
    }

    fn proc(&mut self, id: TargetId) -> Result<&mut Process, AccessError> {
        self.targets.get_mut(&id).ok_or_else(|| AccessError::Other {
            target: id,
            msg: "not a target of the soft-dirty check".into(),
        })
    }
}

/// Pure: the answer for one pagemap entry read at check time.
pub fn classify(entry: Option<crate::kernel::pagemap::PagemapEntry>) -> Access {
    match entry {
        Some(e) if e.soft_dirty() => Access::Accessed,
        Some(_) => Access::NotAccessed,
        None => Access::Unknown,
    }
}

impl AccessCheck for SoftDirty {
    fn name(&self) -> &'static str {
        "soft_dirty"
    }

    fn target_ranges(&mut self, id: TargetId) -> Result<Vec<AddrRange>, AccessError> {
        let ranges = self
            .proc(id)?
            .target_ranges()
            .map_err(|e| access_error(id, e))?;
        self.cost.syscalls += 1;
        Ok(ranges)
    }

    fn prepare(&mut self, id: TargetId, _samples: &mut [SampleReq]) -> Result<(), AccessError> {
        self.proc(id)?
            .clear_refs(ClearRefs::SoftDirty)
            .map_err(|e| access_error(id, e))?;
        self.cost.syscalls += 1;
        Ok(())
    }

    fn check(
        &mut self,
        id: TargetId,
        samples: &[SampleReq],
        out: &mut [Access],
    ) -> Result<(), AccessError> {
        let p = self.proc(id)?;
        for (s, o) in samples.iter().zip(out.iter_mut()) {
            let e = match p.pagemap().entry(s.addr) {
                Ok(e) => e,
                Err(_) if !p.is_alive() => return Err(AccessError::TargetGone(id)),
                Err(source) => {
                    return Err(AccessError::Io {
                        path: p.pagemap().path().to_owned(),
                        source,
                    })
                }
            };
            *o = classify(e);
        }
        if !p.is_alive() {
            return Err(AccessError::TargetGone(id));
        }
        self.cost.syscalls += samples.len() as u64;
        self.cost.samples += samples.len() as u64;
        Ok(())
    }

    fn cost(&self) -> MonitorCost {
        self.cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::pagemap::{PagemapEntry, PM_PRESENT, PM_SWAP};

    #[test]
    fn bit_55_is_a_write() {
        assert_eq!(
            classify(Some(PagemapEntry(PM_PRESENT | PM_SOFT_DIRTY))),
            Access::Accessed
        );
        assert_eq!(
            classify(Some(PagemapEntry(PM_SWAP | PM_SOFT_DIRTY))),
            Access::Accessed
        );
        assert_eq!(
            classify(Some(PagemapEntry(PM_PRESENT))),
            Access::NotAccessed
        );
        assert_eq!(classify(Some(PagemapEntry(0))), Access::NotAccessed);
        assert_eq!(classify(None), Access::Unknown);
    }

    #[test]
    fn status_says_writes_only_and_why_not_on_a_fixture() {
        let dir = tempfile::tempdir().unwrap();
        let s = status(&SysRoot::under(dir.path()));
        assert!(s.description.contains("WRITES ONLY"));
        assert_eq!(s.granularity, "page (writes only)");
        assert!(!s.usable);
        assert!(
            s.why_not.unwrap().contains("clear_refs"),
            "names the missing file"
        );
    }

    /// On the running kernel: the self-test either passes or names CONFIG_MEM_SOFT_DIRTY
    /// (this host's 6.18 has it off; the lab kernels have it on: tests/lab_ops.rs).
    #[test]
    fn status_on_this_kernel_is_decided_by_the_self_test() {
        let s = status(&SysRoot::host());
        if !s.usable {
            let why = s.why_not.unwrap();
            assert!(
                why.contains("CONFIG_MEM_SOFT_DIRTY") || why.contains("did not clear"),
                "{why}"
            );
        }
    }
}

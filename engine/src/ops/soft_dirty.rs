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

use crate::access::{Access, AccessError, SampleReq};
use crate::kernel::clear_refs::ClearRefs;
use crate::kernel::pagemap::{Pagemap, PagemapEntry, PM_SOFT_DIRTY};
use crate::ops::common::{pagemap_entry, RefsCheck, RefsReader};
use crate::process::Process;
use crate::sysroot::SysRoot;

/// Why the check is not usable here, if it is not. Found out by trying it on a page of our
/// own: write, clear, check the bit is clear, write, check it is set
/// (`CONFIG_MEM_SOFT_DIRTY` off leaves bit 55 always clear).
pub fn why_not(root: &SysRoot) -> Option<String> {
    self_test(root).err()
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
    let page = crate::kernel::host::page_size();
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
pub type SoftDirty = RefsCheck<SoftDirtyBits>;

/// The reader of [`SoftDirty`]: bit 55 of each sample page's pagemap entry.
pub struct SoftDirtyBits;

/// Pure: the answer for one pagemap entry read at check time.
pub fn classify(entry: Option<PagemapEntry>) -> Access {
    match entry {
        Some(e) if e.soft_dirty() => Access::Accessed,
        Some(_) => Access::NotAccessed,
        None => Access::Unknown,
    }
}

impl RefsReader for SoftDirtyBits {
    const NAME: &'static str = "soft_dirty";
    const OWNER: &'static str = "the soft-dirty check";
    const CLEAR: ClearRefs = ClearRefs::SoftDirty;
    type State = ();

    fn read(
        proc: &mut Process,
        _: &mut (),
        samples: &[SampleReq],
        out: &mut [Access],
    ) -> Result<u64, AccessError> {
        for (s, o) in samples.iter().zip(out.iter_mut()) {
            *o = classify(pagemap_entry(proc, s.addr)?);
        }
        if !proc.is_alive() {
            return Err(AccessError::TargetGone(proc.id()));
        }
        Ok(samples.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::pagemap::{PM_PRESENT, PM_SWAP};

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
    fn why_not_names_the_missing_file_on_a_fixture() {
        let dir = tempfile::tempdir().unwrap();
        let why = why_not(&SysRoot::under(dir.path())).unwrap();
        assert!(why.contains("clear_refs"), "names the missing file: {why}");
    }

    /// On the running kernel: the self-test either passes or names CONFIG_MEM_SOFT_DIRTY
    /// (this host's 6.18 has it off; the lab kernels have it on: tests/lab_ops.rs).
    #[test]
    fn usable_on_this_kernel_is_decided_by_the_self_test() {
        if let Some(why) = why_not(&SysRoot::host()) {
            assert!(
                why.contains("CONFIG_MEM_SOFT_DIRTY") || why.contains("did not clear"),
                "{why}"
            );
        }
    }
}

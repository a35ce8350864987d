//! `/proc/PID/clear_refs` (fs/proc/task_mmu.c `clear_refs_write`, Linux 6.12): writing
//! `1` clears the Accessed bits and `PG_referenced` of all the process's pages (what smaps'
//! `Referenced` reports), `2` anonymous pages only, `3` file pages only, `4` the soft-dirty
//! bits, `5` resets the peak RSS. Needs write access to the file (the process's owner, or root).
//!
//! Note: clearing Accessed bits also hides recent use from the kernel's own reclaim for a
//! while (the same side effect kernel DAMON's vaddr checks have).

use std::io::Write;

/// What to clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClearRefs {
    /// `1`: Accessed / referenced bits of every page.
    All,
    /// `2`: of anonymous pages.
    Anon,
    /// `3`: of file pages.
    File,
    /// `4`: soft-dirty bits.
    SoftDirty,
    /// `5`: peak RSS (VmHWM).
    PeakRss,
}

impl ClearRefs {
    /// The value written (`enum clear_refs_types`, fs/proc/task_mmu.c 6.12).
    pub const fn value(self) -> &'static [u8] {
        match self {
            ClearRefs::All => b"1",
            ClearRefs::Anon => b"2",
            ClearRefs::File => b"3",
            ClearRefs::SoftDirty => b"4",
            ClearRefs::PeakRss => b"5",
        }
    }
}

/// Write `what` to an open `clear_refs` file (one write; the kernel takes the whole value).
pub fn write(mut f: impl Write, what: ClearRefs) -> std::io::Result<()> {
    f.write_all(what.value())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_kernels_values() {
        let mut buf = Vec::new();
        write(&mut buf, ClearRefs::All).unwrap();
        write(&mut buf, ClearRefs::SoftDirty).unwrap();
        assert_eq!(buf, b"14");
        assert_eq!(ClearRefs::Anon.value(), b"2");
        assert_eq!(ClearRefs::File.value(), b"3");
        assert_eq!(ClearRefs::PeakRss.value(), b"5");
    }
}

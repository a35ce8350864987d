//! The one place madvd calls `process_madvise(2)`. Used by the refault probe (single-page
//! page-outs, counted as monitoring cost) and by the actuator (scheme advice).
//!
//! Kernel facts (mm/madvise.c `vector_madvise`, lib/iov_iter.c `__import_iovec`, Linux 6.12):
//! at most `UIO_MAXIOV` (1024) iovecs per call; the total length is silently truncated to
//! `MAX_RW_COUNT` (`INT_MAX & PAGE_MASK`); iovecs are processed in order and the call stops at
//! the first failing one, returning the bytes of the iovecs fully done before it if any, else
//! the error. `flags` must be 0. Remote advice allowed: COLD, PAGEOUT, WILLNEED, COLLAPSE.

use crate::advice::Advice;
use crate::region::AddrRange;
use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `UIO_MAXIOV` (include/uapi/linux/uio.h).
pub const IOV_MAX: usize = 1024;

/// `MAX_RW_COUNT` = `INT_MAX & PAGE_MASK` (include/linux/fs.h) for 4 KiB pages.
pub const MAX_RW_COUNT: u64 = (i32::MAX as u64) & !4095;

/// `process_madvise(pidfd, iov, vlen, advice, 0)` over `ranges` (at most [`IOV_MAX`]; each
/// page-aligned). Returns the bytes the kernel reports done; see the module doc for what a
/// short count means. The caller batches, resumes and classifies errors.
pub fn process_madvise(
    pidfd: BorrowedFd<'_>,
    ranges: &[AddrRange],
    advice: Advice,
) -> Result<u64, Errno> {
    assert!(
        ranges.len() <= IOV_MAX,
        "process_madvise: {} iovecs > IOV_MAX",
        ranges.len()
    );
    if ranges.is_empty() {
        return Ok(0);
    }
    let iov: Vec<libc::iovec> = ranges
        .iter()
        .map(|r| libc::iovec {
            iov_base: r.start as *mut libc::c_void,
            iov_len: r.len() as usize,
        })
        .collect();
    loop {
        // SAFETY: `iov` is a valid array of `iov.len()` iovecs that lives across the call; the
        // kernel only reads it (the addresses in it name the *target's* memory and are never
        // dereferenced here). pidfd is a valid borrowed fd; flags are 0 as required.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_process_madvise,
                pidfd.as_raw_fd(),
                iov.as_ptr(),
                iov.len(),
                advice.madv(),
                0 as libc::c_uint,
            )
        };
        if ret >= 0 {
            return Ok(ret as u64);
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// `madvise(2)` on the caller's own memory, for baselines (benches compare the actuator's
/// remote throughput with this).
pub fn madvise_self(range: AddrRange, advice: Advice) -> Result<(), Errno> {
    // SAFETY: madvise with a non-destructive advice (Advice has no destructive variant) does
    // not change the contents of the range; an invalid range only yields an error.
    let ret = unsafe {
        libc::madvise(
            range.start as *mut libc::c_void,
            range.len() as usize,
            advice.madv(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::pidfd::Pidfd;
    use std::os::fd::AsFd;

    #[test]
    fn advising_own_memory_through_a_pidfd_reports_the_bytes() {
        let len = 16 * 4096;
        // SAFETY: an anonymous private mapping owned by this test; unmapped below.
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
        assert_ne!(p, libc::MAP_FAILED);
        let base = p as u64;
        let me = Pidfd::open(std::process::id()).unwrap();
        let r = [
            AddrRange::new(base, base + 8 * 4096),
            AddrRange::new(base + 8 * 4096, base + 16 * 4096),
        ];
        assert_eq!(
            process_madvise(me.as_fd(), &r, Advice::Cold).unwrap(),
            len as u64
        );
        assert_eq!(process_madvise(me.as_fd(), &[], Advice::Cold).unwrap(), 0);
        // SAFETY: unmapping the mapping made above.
        unsafe { libc::munmap(p, len) };
        // Now unmapped: the kernel reports ENOMEM for the first iovec.
        assert_eq!(
            process_madvise(me.as_fd(), &r[..1], Advice::Cold),
            Err(Errno::ENOMEM)
        );
    }
}

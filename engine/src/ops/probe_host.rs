//! The refault probe's requirements of the host (syscalls, a capability, swap): whether
//! [`crate::ops::probe`] is usable here and why not. Reads only.

use crate::kernel::swap::read_swap_mem;
use crate::sysroot::SysRoot;
use nix::errno::Errno;

/// `CAP_SYS_NICE` (include/uapi/linux/capability.h): remote `process_madvise` needs it
/// (mm/madvise.c `SYSCALL_DEFINE5(process_madvise)`, 6.12).
const CAP_SYS_NICE: u32 = 23;

/// Effective capabilities of madvd (`CapEff:` of `<proc>/self/status`), if readable.
pub fn cap_eff(root: &SysRoot) -> Option<u64> {
    crate::kernel::status::read_status(&root.proc_file("self/status"))
        .ok()?
        .cap_eff
}

/// Whether a syscall exists: called with arguments that can only fail, ENOSYS means no.
fn syscall_exists(nr: libc::c_long) -> bool {
    // SAFETY: fd -1, null pointer, zero length: the kernel validates and fails (EBADF /
    // EINVAL) without touching memory; ENOSYS when the syscall does not exist.
    let ret = unsafe {
        libc::syscall(
            nr,
            -1 as libc::c_int,
            std::ptr::null::<libc::c_void>(),
            0usize,
            0 as libc::c_int,
            0 as libc::c_uint,
        )
    };
    !(ret < 0 && Errno::last() == Errno::ENOSYS)
}

/// Why the refault probe is not usable here, if it is not: it needs `pidfd_open` (5.3),
/// `process_madvise` (5.10), CAP_SYS_NICE, and swap with room in it.
pub fn why_not(root: &SysRoot) -> Option<String> {
    (|| {
        if !syscall_exists(libc::SYS_pidfd_open) {
            return Some("no pidfd_open (needs Linux 5.3+)".to_owned());
        }
        if !syscall_exists(libc::SYS_process_madvise) {
            return Some("no process_madvise (needs Linux 5.10+)".to_owned());
        }
        match cap_eff(root) {
            Some(c) if c & (1 << CAP_SYS_NICE) == 0 => {
                return Some(
                    "needs CAP_SYS_NICE to page out another process's memory (run as root)"
                        .to_owned(),
                )
            }
            None => {
                return Some(format!(
                    "cannot read capabilities from {}",
                    root.proc_file("self/status").display()
                ))
            }
            _ => {}
        }
        match read_swap_mem(root) {
            Err(e) => Some(format!("cannot read swap totals: {e}")),
            Ok(s) if s.total == 0 => Some(
                "no swap (a page-out needs somewhere to go: add a swap or zram device)".to_owned(),
            ),
            Ok(s) if s.free < (16 << 20) => {
                Some(format!("swap is full ({} KiB free)", s.free >> 10))
            }
            Ok(_) => None,
        }
    })()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(caps: &str, swap_kb: u64) -> (tempfile::TempDir, SysRoot) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("proc/self");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("status"), format!("Name:\tmadvd\nCapEff:\t{caps}\n")).unwrap();
        std::fs::write(
            d.path().join("proc/meminfo"),
            format!("SwapTotal: {swap_kb} kB\nSwapFree: {swap_kb} kB\n"),
        )
        .unwrap();
        let root = SysRoot::under(d.path());
        (d, root)
    }

    #[test]
    fn probe_reasons_from_a_fixture_tree() {
        let (_d, root) = fixture("000001ffffffffff", 1 << 20);
        assert_eq!(why_not(&root), None);
        let (_d, root) = fixture("000001ffffffffff", 0);
        assert!(why_not(&root).unwrap().starts_with("no swap"));
        let (_d, root) = fixture("0000000000000000", 1 << 20);
        assert!(why_not(&root).unwrap().contains("CAP_SYS_NICE"));
        let (_d, root) = fixture("000001ffffffffff", 1024);
        assert!(why_not(&root).unwrap().starts_with("swap is full"));
    }
}

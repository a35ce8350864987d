//! Thin readers and pure parsers, one module per kernel interface. Parsers take bytes or a
//! `BufRead` and return values; readers open the file under a [`crate::SysRoot`] and call them.

pub mod cgroup;
pub mod cgroup_reclaim;
pub mod children;
pub mod clear_refs;
pub mod coexist;
pub mod damon_sysfs;
pub mod error;
pub mod host;
pub mod iomem;
pub mod kpagecgroup;
pub mod kpageflags;
pub mod madvise;
pub mod maps;
pub mod meminfo;
pub mod page_idle;
pub mod pagemap;
pub mod pidfd;
pub mod psi;
pub mod smaps;
pub mod stat;
pub mod status;
pub mod swap;
pub mod thp;
pub mod zram;

/// `pread` into all of `buf` from `off`, retrying on `EINTR`; stops early at end of file.
/// Returns the number of bytes read.
pub(crate) fn read_full_at(
    file: &std::fs::File,
    buf: &mut [u8],
    off: u64,
) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

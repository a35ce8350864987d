//! zram devices used as temporary swap, and the machine-wide swap lock.
//!
//! zram sysfs (Documentation/admin-guide/blockdev/zram.rst, Linux 6.12): reading
//! `class/zram-control/hot_add` makes a device and returns its id; `block/zramN/comp_algorithm`
//! and `disksize` set it up; `mm_stat` reports what it holds; `reset` frees it and writing the
//! id to `hot_remove` deletes it. The swap header is written here (`union swap_header`,
//! include/linux/swap.h): version 1, `last_page`, no bad pages, magic `SWAPSPACE2` at the end
//! of the first page — so no `mkswap` binary is needed.
//!
//! [`TempSwap`] is what the demo and the tests' swap fixture use: it takes the machine-wide
//! lock (swap is machine-wide, so users take turns), uses the machine's own swap untouched
//! if it has one, and otherwise makes a zram swap that its `Drop` removes. A device left by a
//! process killed before its `Drop` ran is removed by the next [`TempSwap::ensure`].

use crate::kernel::swap::{read_swap_mem, read_swaps};
use crate::sysroot::SysRoot;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

/// The machine-wide swap lock every madvd test, demo and bench takes before it relies on swap.
pub const LOCK_PATH: &str = "/run/madvd-test-swap.lock";
/// Who made the current temporary device: `PID ID` (for removing a device whose owner died).
pub const OWNER_PATH: &str = "/run/madvd-test-swap.owner";
/// Set by a parent that already holds [`LOCK_PATH`] and runs madvd under it (the CLI tests
/// do, to compare the machine's swaps before and after): the child then does not lock.
pub const LOCK_HELD_ENV: &str = "MADVD_SWAP_LOCK_HELD_BY_PARENT";

#[derive(Debug, Error)]
pub enum ZramError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}: cannot add a zram device (is zram in this kernel? CONFIG_ZRAM): {1}")]
    NoZram(PathBuf, io::Error),
    #[error("{0}: unexpected content {1:?}")]
    Parse(PathBuf, String),
    #[error("{path}: swap is in use by another madvd test, bench or demo (waited {waited_s} s)")]
    LockBusy { path: PathBuf, waited_s: u64 },
    #[error("interrupted while waiting for {0}")]
    Interrupted(PathBuf),
    #[error("{dev}: swapon: {source}")]
    Swapon {
        dev: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ZramError + '_ {
    move |source| ZramError::Io {
        path: path.to_owned(),
        source,
    }
}

/// zram's `mm_stat`: the first three of its columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmStat {
    pub orig_data_size: u64,
    pub compr_data_size: u64,
    pub mem_used_total: u64,
}

pub fn parse_mm_stat(text: &str) -> Option<MmStat> {
    let mut it = text.split_whitespace().map(|w| w.parse::<u64>().ok());
    Some(MmStat {
        orig_data_size: it.next()??,
        compr_data_size: it.next()??,
        mem_used_total: it.next()??,
    })
}

/// The first page of a swap area of `size` bytes with 4 KiB pages (`mkswap`).
pub fn swap_header(size: u64, uuid: [u8; 16]) -> Vec<u8> {
    const PAGE: usize = 4096;
    let mut page = vec![0u8; PAGE];
    let last_page = (size / PAGE as u64).saturating_sub(1) as u32;
    page[1024..1028].copy_from_slice(&1u32.to_ne_bytes()); // version
    page[1028..1032].copy_from_slice(&last_page.to_ne_bytes());
    page[1032..1036].copy_from_slice(&0u32.to_ne_bytes()); // nr_badpages
    page[1036..1052].copy_from_slice(&uuid);
    page[1052..1063].copy_from_slice(b"madvd-temp\0"); // volume name
    page[PAGE - 10..].copy_from_slice(b"SWAPSPACE2");
    page
}

/// One zram device we made and turned into swap; `Drop` swaps it off and removes it.
#[derive(Debug)]
pub struct ZramSwap {
    root: SysRoot,
    id: u32,
}

impl ZramSwap {
    /// Make a zram device of `size` bytes (lz4 if the kernel has it) and swap on it.
    pub fn create(root: &SysRoot, size: u64) -> Result<ZramSwap, ZramError> {
        let ctl = root.sys_file("class/zram-control/hot_add");
        if !ctl.exists() {
            // Load the module without devices of its own; hot_add then makes ours.
            let _ = std::process::Command::new("modprobe")
                .args(["zram", "num_devices=0"])
                .status();
        }
        let text = std::fs::read_to_string(&ctl).map_err(|e| ZramError::NoZram(ctl.clone(), e))?;
        let id: u32 = text
            .trim()
            .parse()
            .map_err(|_| ZramError::Parse(ctl.clone(), text.clone()))?;
        // From here on Drop removes the device, whatever fails next.
        let z = ZramSwap {
            root: root.clone(),
            id,
        };
        let dir = z.sys_dir();
        let algos = std::fs::read_to_string(dir.join("comp_algorithm")).unwrap_or_default();
        if algos
            .split_whitespace()
            .any(|a| a.trim_matches(['[', ']']) == "lz4")
        {
            let _ = std::fs::write(dir.join("comp_algorithm"), "lz4");
        }
        let disksize = dir.join("disksize");
        std::fs::write(&disksize, size.to_string()).map_err(io_err(&disksize))?;
        let dev = z.dev_path();
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let mut f = OpenOptions::new()
            .write(true)
            .open(&dev)
            .map_err(io_err(&dev))?;
        f.write_all(&swap_header(size, t.to_le_bytes()))
            .and_then(|()| f.sync_all())
            .map_err(io_err(&dev))?;
        drop(f);
        let c = CString::new(dev.as_os_str().as_encoded_bytes()).expect("no NUL in a device path");
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call; flags 0.
        if unsafe { libc::swapon(c.as_ptr(), 0) } != 0 {
            return Err(ZramError::Swapon {
                dev,
                source: io::Error::last_os_error(),
            });
        }
        Ok(z)
    }

    pub fn id(&self) -> u32 {
        self.id
    }
    /// `/dev/zramN`.
    pub fn dev_path(&self) -> PathBuf {
        self.root.dev.join(format!("zram{}", self.id))
    }
    fn sys_dir(&self) -> PathBuf {
        self.root.sys_file(&format!("block/zram{}", self.id))
    }
    pub fn mm_stat(&self) -> Option<MmStat> {
        parse_mm_stat(&std::fs::read_to_string(self.sys_dir().join("mm_stat")).ok()?)
    }

    /// Swap off and remove device `id` (also one left by a dead process). Best effort: what
    /// fails is reported on stderr, the rest still runs.
    fn remove(root: &SysRoot, id: u32) {
        let dev = root.dev.join(format!("zram{id}"));
        let c = CString::new(dev.as_os_str().as_encoded_bytes()).expect("no NUL in a device path");
        // SAFETY: valid NUL-terminated path for the duration of the call.
        if unsafe { libc::swapoff(c.as_ptr()) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                // EINVAL: it never got swapped on. Anything else: say so, go on.
                eprintln!("madvd: warning: swapoff {}: {e}", dev.display());
            }
        }
        let reset = root.sys_file(&format!("block/zram{id}/reset"));
        if let Err(e) = std::fs::write(&reset, "1") {
            eprintln!("madvd: warning: {}: {e}", reset.display());
        }
        let rm = root.sys_file("class/zram-control/hot_remove");
        if let Err(e) = std::fs::write(&rm, id.to_string()) {
            eprintln!(
                "madvd: warning: {}: cannot remove zram{id}: {e}",
                rm.display()
            );
        }
    }
}

impl Drop for ZramSwap {
    fn drop(&mut self) {
        ZramSwap::remove(&self.root, self.id);
    }
}

/// Take an exclusive `flock` on `path`: block (`wait == None`) or poll until `wait` passed,
/// giving up early when `stop()` says so.
pub fn lock(
    path: &Path,
    wait: Option<Duration>,
    stop: &dyn Fn() -> bool,
) -> Result<File, ZramError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    let Some(wait) = wait else {
        // SAFETY: flock on an fd we own; blocks until the lock is ours.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(ZramError::Io {
                path: path.to_owned(),
                source: io::Error::last_os_error(),
            });
        }
        return Ok(f);
    };
    let end = Instant::now() + wait;
    loop {
        // SAFETY: flock on an fd we own; no pointers.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(f);
        }
        if Instant::now() >= end {
            return Err(ZramError::LockBusy {
                path: path.to_owned(),
                waited_s: wait.as_secs(),
            });
        }
        if stop() {
            return Err(ZramError::Interrupted(path.to_owned()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Swap for as long as this lives: the machine's own (untouched), or a temporary zram swap.
#[derive(Debug)]
pub struct TempSwap {
    zram: Option<ZramSwap>,
    root: SysRoot,
    _lock: Option<File>,
}

impl TempSwap {
    /// Take the swap lock ([`LOCK_PATH`], unless [`LOCK_HELD_ENV`] says the parent holds it),
    /// remove a temporary device whose owner died, then use the machine's swap if it has
    /// `size` bytes free, else make a zram swap of `size` bytes (beside any it has). `wait`: see [`lock`].
    pub fn ensure(
        root: &SysRoot,
        size: u64,
        wait: Option<Duration>,
        stop: &dyn Fn() -> bool,
    ) -> Result<TempSwap, ZramError> {
        let lock = if std::env::var_os(LOCK_HELD_ENV).is_some() {
            None
        } else {
            Some(lock(Path::new(LOCK_PATH), wait, stop)?)
        };
        reap_stale(root);
        let swaps = root.proc_file("swaps");
        let have = read_swaps(root).map_err(|e| ZramError::Io {
            path: swaps,
            source: io::Error::other(e.to_string()),
        })?;
        // The machine's own swap serves when it has `size` bytes free; else a zram swap of
        // `size` is added beside it (a full or tiny swap would make every page-out fail).
        let free = read_swap_mem(root).map_or(0, |m| m.free);
        if !have.is_empty() && free >= size {
            return Ok(TempSwap {
                zram: None,
                root: root.clone(),
                _lock: lock,
            });
        }
        let zram = ZramSwap::create(root, size)?;
        let _ = std::fs::write(OWNER_PATH, format!("{} {}", std::process::id(), zram.id()));
        Ok(TempSwap {
            zram: Some(zram),
            root: root.clone(),
            _lock: lock,
        })
    }

    /// `/dev/zramN` when this made one.
    pub fn zram_device(&self) -> Option<PathBuf> {
        self.zram.as_ref().map(ZramSwap::dev_path)
    }
    pub fn zram_mm_stat(&self) -> Option<MmStat> {
        self.zram.as_ref()?.mm_stat()
    }
    /// For people: what swap this is.
    pub fn describe(&self) -> String {
        match self.zram_device() {
            Some(p) => format!("temporary zram swap {} (removed at the end)", p.display()),
            None => "the machine's existing swap (left as it is)".into(),
        }
    }
    pub fn root(&self) -> &SysRoot {
        &self.root
    }
}

impl Drop for TempSwap {
    fn drop(&mut self) {
        if self.zram.take().is_some() {
            let _ = std::fs::remove_file(OWNER_PATH);
        }
    }
}

/// Remove a temporary zram swap whose owner died before its `Drop` ran.
fn reap_stale(root: &SysRoot) {
    let Ok(owner) = std::fs::read_to_string(OWNER_PATH) else {
        return;
    };
    let mut it = owner.split_whitespace().map(str::parse::<u32>);
    if let (Some(Ok(pid)), Some(Ok(id))) = (it.next(), it.next()) {
        if !root.proc.join(pid.to_string()).exists() {
            ZramSwap::remove(root, id);
            let _ = std::fs::remove_file(OWNER_PATH);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_header_layout() {
        let b = swap_header(1 << 20, [7; 16]);
        assert_eq!(b.len(), 4096);
        assert_eq!(&b[4086..4096], b"SWAPSPACE2");
        assert_eq!(u32::from_ne_bytes(b[1024..1028].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(b[1028..1032].try_into().unwrap()), 255);
        assert_eq!(&b[1036..1052], &[7; 16]);
    }

    #[test]
    fn parses_mm_stat() {
        let s = parse_mm_stat(
            "  4096  74  12288        0    12288        0        0        0        0\n",
        )
        .unwrap();
        assert_eq!(
            (s.orig_data_size, s.compr_data_size, s.mem_used_total),
            (4096, 74, 12288)
        );
        assert!(parse_mm_stat("1 2").is_none());
        assert!(parse_mm_stat("1 x 3").is_none());
    }

    #[test]
    fn busy_lock_times_out_and_stop_interrupts() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let held = lock(&p, None, &|| false).unwrap();
        assert!(matches!(
            lock(&p, Some(Duration::ZERO), &|| false),
            Err(ZramError::LockBusy { .. })
        ));
        assert!(matches!(
            lock(&p, Some(Duration::from_secs(60)), &|| true),
            Err(ZramError::Interrupted(_))
        ));
        drop(held);
        lock(&p, Some(Duration::ZERO), &|| false).unwrap();
    }
}

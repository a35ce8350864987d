//! A temporary zram swap for the demo: made only when the machine has no swap, removed by
//! `Drop` (normal end, error, Ctrl-C — the demo returns through here), never touching a swap
//! the machine already had.
//!
//! It takes the same machine-wide lock as the tests' swap fixture (`engine::testkit::swap`,
//! `/run/madvd-test-swap.lock`), so a demo and a swap test never pull each other's swap away.
//!
//! zram sysfs (Documentation/admin-guide/blockdev/zram.rst): `hot_add` returns a new device
//! id; `comp_algorithm`, `disksize` set it up; `reset` frees it; `hot_remove` deletes it.
//! The swap header is written here (`union swap_header`, include/linux/swap.h): version 1,
//! `last_page`, no bad pages, magic `SWAPSPACE2` at the end of the first page.

use anyhow::{bail, Context, Result};
use engine::SysRoot;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const LOCK_PATH: &str = "/run/madvd-test-swap.lock";

/// Set by a parent process that already holds [`LOCK_PATH`] and runs madvd under it (the CLI
/// tests do, to compare the machine's swaps before and after without a race); madvd then does
/// not take the lock itself.
pub const LOCK_HELD_ENV: &str = "MADVD_SWAP_LOCK_HELD_BY_PARENT";

/// Swap while the demo runs.
pub struct TempSwap {
    root: SysRoot,
    /// The zram device we made (`None`: the machine's own swap is used, untouched).
    made: Option<u32>,
    _lock: Option<File>,
}

/// What `/proc/swaps` lists, without the header.
pub fn active_swaps(root: &SysRoot) -> Result<Vec<String>> {
    let p = root.proc_file("swaps");
    let s = std::fs::read_to_string(&p).with_context(|| format!("{}", p.display()))?;
    Ok(s.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect())
}

impl TempSwap {
    /// Lock, then use the machine's swap if it has one, else make a zram swap of `size`
    /// bytes (lz4 if the kernel has it). Waits up to `wait` for the lock.
    pub fn ensure(root: &SysRoot, size: u64, wait: Duration) -> Result<TempSwap> {
        let lock = if std::env::var_os(LOCK_HELD_ENV).is_some() {
            // The parent (a test) holds the lock for us and checks the machine before/after.
            None
        } else {
            Some(lock(Path::new(LOCK_PATH), wait)?)
        };
        if !active_swaps(root)?.is_empty() {
            return Ok(TempSwap {
                root: root.clone(),
                made: None,
                _lock: lock,
            });
        }
        let ctl = root.sys_file("class/zram-control/hot_add");
        if !ctl.exists() {
            // Load the module without devices of its own; hot_add then makes ours.
            let _ = std::process::Command::new("modprobe")
                .args(["zram", "num_devices=0"])
                .status();
        }
        let id: u32 = std::fs::read_to_string(&ctl)
            .with_context(|| {
                format!(
                    "{}: cannot add a zram device (is zram in this kernel? CONFIG_ZRAM)",
                    ctl.display()
                )
            })?
            .trim()
            .parse()
            .with_context(|| format!("{}: unexpected content", ctl.display()))?;
        // From here on Drop removes the device, whatever fails next.
        let swap = TempSwap {
            root: root.clone(),
            made: Some(id),
            _lock: lock,
        };
        let dir = root.sys_file(&format!("block/zram{id}"));
        let algos = std::fs::read_to_string(dir.join("comp_algorithm")).unwrap_or_default();
        if algos
            .split_whitespace()
            .any(|a| a.trim_matches(|c| c == '[' || c == ']') == "lz4")
        {
            let _ = std::fs::write(dir.join("comp_algorithm"), "lz4");
        }
        std::fs::write(dir.join("disksize"), size.to_string())
            .with_context(|| format!("{}: cannot set disksize", dir.join("disksize").display()))?;
        let dev = swap.dev_path().expect("made");
        write_swap_header(&dev, size)
            .with_context(|| format!("{}: cannot write the swap header", dev.display()))?;
        let c = CString::new(dev.as_os_str().as_encoded_bytes()).expect("no NUL in a device path");
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call; flags 0.
        if unsafe { libc::swapon(c.as_ptr(), 0) } != 0 {
            bail!(
                "{}: swapon: {}",
                dev.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(swap)
    }

    /// `/dev/zramN` when we made one.
    pub fn dev_path(&self) -> Option<PathBuf> {
        self.made.map(|id| self.root.dev.join(format!("zram{id}")))
    }

    /// Human description for the demo's output.
    pub fn describe(&self) -> String {
        match self.dev_path() {
            Some(p) => format!("temporary zram swap {} (removed at the end)", p.display()),
            None => "the machine's existing swap (left as it is)".into(),
        }
    }

    /// zram's `mm_stat` for our device: (orig_data_size, compr_data_size, mem_used_total).
    pub fn zram_mm_stat(&self) -> Option<(u64, u64, u64)> {
        let id = self.made?;
        let s =
            std::fs::read_to_string(self.root.sys_file(&format!("block/zram{id}/mm_stat"))).ok()?;
        let v: Vec<u64> = s
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        Some((*v.first()?, *v.get(1)?, *v.get(2)?))
    }
}

impl Drop for TempSwap {
    fn drop(&mut self) {
        let Some(id) = self.made else { return };
        let dev = self.dev_path().expect("made");
        let c = CString::new(dev.as_os_str().as_encoded_bytes()).expect("no NUL in a device path");
        // SAFETY: valid NUL-terminated path for the duration of the call.
        if unsafe { libc::swapoff(c.as_ptr()) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                // EINVAL: it never got swapped on. Anything else: say so, try to go on.
                eprintln!("madvd: warning: swapoff {}: {e}", dev.display());
            }
        }
        let dir = self.root.sys_file(&format!("block/zram{id}"));
        if let Err(e) = std::fs::write(dir.join("reset"), "1") {
            eprintln!("madvd: warning: {}: {e}", dir.join("reset").display());
        }
        let rm = self.root.sys_file("class/zram-control/hot_remove");
        if let Err(e) = std::fs::write(&rm, id.to_string()) {
            eprintln!(
                "madvd: warning: {}: cannot remove zram{id}: {e}",
                rm.display()
            );
        }
    }
}

/// Take an exclusive flock, polling until `wait` has passed.
fn lock(path: &Path, wait: Duration) -> Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("{}: cannot open the swap lock", path.display()))?;
    let end = Instant::now() + wait;
    loop {
        // SAFETY: flock on an fd we own; no pointers.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(f);
        }
        if Instant::now() >= end {
            bail!(
                "{}: swap is in use by a madvd test or another demo (lock held for {} s)",
                path.display(),
                wait.as_secs()
            );
        }
        if crate::signals::stop_requested() {
            bail!("interrupted while waiting for {}", path.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `mkswap` for a device of `size` bytes with 4 KiB pages.
fn write_swap_header(dev: &Path, size: u64) -> std::io::Result<()> {
    const PAGE: usize = 4096;
    let mut page = vec![0u8; PAGE];
    let last_page = (size / PAGE as u64).saturating_sub(1) as u32;
    page[1024..1028].copy_from_slice(&1u32.to_ne_bytes()); // version
    page[1028..1032].copy_from_slice(&last_page.to_ne_bytes());
    page[1032..1036].copy_from_slice(&0u32.to_ne_bytes()); // nr_badpages
                                                           // uuid: any 16 bytes; derive from the time so two devices differ.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    page[1036..1052].copy_from_slice(&t.to_le_bytes());
    page[1052..1063].copy_from_slice(b"madvd-demo\0");
    page[PAGE - 10..].copy_from_slice(b"SWAPSPACE2");
    let mut f = OpenOptions::new().write(true).open(dev)?;
    f.write_all(&page)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_header_layout() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dev");
        std::fs::write(&p, vec![0xffu8; 8192]).unwrap();
        write_swap_header(&p, 1 << 20).unwrap();
        let b = std::fs::read(&p).unwrap();
        assert_eq!(&b[4086..4096], b"SWAPSPACE2");
        assert_eq!(u32::from_ne_bytes(b[1024..1028].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(b[1028..1032].try_into().unwrap()), 255);
        assert_eq!(&b[4096..4100], &[0xff; 4]);
    }

    #[test]
    fn proc_swaps_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        std::fs::create_dir_all(&root.proc).unwrap();
        std::fs::write(
            root.proc_file("swaps"),
            "Filename\tType\tSize\tUsed\tPriority\n",
        )
        .unwrap();
        assert!(active_swaps(&root).unwrap().is_empty());
        std::fs::write(
            root.proc_file("swaps"),
            "Filename\tType\tSize\tUsed\tPriority\n/dev/zram3 partition 1048572 0 100\n",
        )
        .unwrap();
        assert_eq!(active_swaps(&root).unwrap(), vec!["/dev/zram3".to_string()]);
    }
}

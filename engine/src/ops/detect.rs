//! Detection: for every access primitive, whether it is usable here and why not; and the
//! choice among them — `--ops NAME` forces one, auto picks the finest usable one in the
//! order page_idle > damon > probe > soft_dirty > smaps. `sim` is never picked automatically
//! (it watches no real process).

use super::OpsStatus;
use crate::kernel::swap::read_swap_mem;
use crate::sysroot::SysRoot;
use nix::errno::Errno;
use thiserror::Error;

/// Auto-detection ranks (lower wins).
pub const RANK_PAGE_IDLE: u32 = 10;
pub const RANK_DAMON: u32 = 20;
pub const RANK_PROBE: u32 = 30;
pub const RANK_SOFT_DIRTY: u32 = 40;
pub const RANK_SMAPS: u32 = 50;
/// Never picked automatically.
pub const RANK_SIM: u32 = u32::MAX;

/// `CAP_SYS_NICE` (include/uapi/linux/capability.h): remote `process_madvise` needs it
/// (mm/madvise.c `SYSCALL_DEFINE5(process_madvise)`, 6.12).
const CAP_SYS_NICE: u32 = 23;

/// The status of every primitive, in auto order.
pub fn detect(root: &SysRoot) -> Vec<OpsStatus> {
    let mut v = vec![
        crate::ops::page_idle::status(root),
        crate::ops::damon::status(root),
        probe_status(root),
        crate::ops::soft_dirty::status(root),
        smaps_status(root),
        sim_status(),
    ];
    v.sort_by_key(|s| s.rank);
    v
}

/// Why `pick` found nothing to use.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PickError {
    #[error("unknown access primitive `{name}` (known: {known})")]
    Unknown { name: String, known: String },
    #[error("access primitive `{name}` is not usable here: {why}")]
    NotUsable { name: String, why: String },
    #[error("no access primitive is usable here: {0}")]
    NoneUsable(String),
}

/// The primitive to use: `forced` by name (must be usable), else the usable one with the
/// lowest rank, `sim` excluded.
pub fn pick<'a>(
    statuses: &'a [OpsStatus],
    forced: Option<&str>,
) -> Result<&'a OpsStatus, PickError> {
    if let Some(name) = forced {
        let s = statuses
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| PickError::Unknown {
                name: name.to_owned(),
                known: statuses
                    .iter()
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        return if s.usable {
            Ok(s)
        } else {
            Err(PickError::NotUsable {
                name: name.to_owned(),
                why: s.why_not.clone().unwrap_or_default(),
            })
        };
    }
    statuses
        .iter()
        .filter(|s| s.usable && s.rank != RANK_SIM)
        .min_by_key(|s| s.rank)
        .ok_or_else(|| {
            PickError::NoneUsable(
                statuses
                    .iter()
                    .filter(|s| s.rank != RANK_SIM)
                    .map(|s| format!("{}: {}", s.name, s.why_not.as_deref().unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
}

fn status(
    name: &'static str,
    why_not: Option<String>,
    granularity: &'static str,
    description: &'static str,
    rank: u32,
) -> OpsStatus {
    OpsStatus {
        name,
        usable: why_not.is_none(),
        why_not,
        granularity,
        description,
        rank,
    }
}

/// Effective capabilities of madvd (`CapEff:` of `<proc>/self/status`), if readable.
pub fn cap_eff(root: &SysRoot) -> Option<u64> {
    let s = std::fs::read_to_string(root.proc_file("self/status")).ok()?;
    let line = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
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

/// The refault probe: needs `pidfd_open` (5.3), `process_madvise` (5.10), CAP_SYS_NICE,
/// and swap with room in it.
pub fn probe_status(root: &SysRoot) -> OpsStatus {
    let why = (|| {
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
    })();
    status(
        "probe",
        why,
        "page (one sampled page per region, paged out and watched for refault)",
        "refault probe: MADV_PAGEOUT a sample page, then pagemap says whether it came back",
        RANK_PROBE,
    )
}

/// smaps `Referenced` after `clear_refs` 1.
pub fn smaps_status(root: &SysRoot) -> OpsStatus {
    let why = if !root.proc_file("self/clear_refs").exists()
        || !root.proc_file("self/smaps").exists()
    {
        Some(
            "no /proc/PID/clear_refs or smaps (kernel without CONFIG_PROC_PAGE_MONITOR)".to_owned(),
        )
    } else {
        None
    };
    status(
        "smaps",
        why,
        crate::ops::smaps::GRANULARITY,
        "smaps Referenced after clear_refs 1: which mappings were touched, on any kernel, no swap needed",
        RANK_SMAPS,
    )
}

/// The simulated address space: always usable, never for live targets.
pub fn sim_status() -> OpsStatus {
    status("sim", None, "page (simulated)", "simulated address space with ground truth (tests, benches, demos); never picked automatically", RANK_SIM)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(name: &'static str, usable: bool, rank: u32) -> OpsStatus {
        OpsStatus {
            name,
            usable,
            why_not: (!usable).then(|| format!("{name} off")),
            granularity: "",
            description: "",
            rank,
        }
    }

    #[test]
    fn auto_picks_the_lowest_usable_rank_never_sim() {
        let v = [
            st("page_idle", false, 0),
            st("damon", false, 1),
            st("probe", true, 2),
            st("smaps", true, 4),
            st("sim", true, RANK_SIM),
        ];
        assert_eq!(pick(&v, None).unwrap().name, "probe");
        let v = [st("page_idle", true, 0), st("probe", true, 2)];
        assert_eq!(pick(&v, None).unwrap().name, "page_idle");
        let v = [st("probe", false, 2), st("sim", true, RANK_SIM)];
        assert_eq!(
            pick(&v, None).unwrap_err(),
            PickError::NoneUsable("probe: probe off".into())
        );
    }

    #[test]
    fn forced_must_exist_and_be_usable() {
        let v = [
            st("probe", false, 2),
            st("smaps", true, 4),
            st("sim", true, RANK_SIM),
        ];
        assert_eq!(pick(&v, Some("sim")).unwrap().name, "sim");
        assert_eq!(pick(&v, Some("smaps")).unwrap().name, "smaps");
        let e = pick(&v, Some("probe")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "access primitive `probe` is not usable here: probe off"
        );
        let e = pick(&v, Some("nope")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown access primitive `nope` (known: probe, smaps, sim)"
        );
    }

    fn fixture(caps: &str, swap_kb: u64, clear_refs: bool) -> (tempfile::TempDir, SysRoot) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("proc/self");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("status"), format!("Name:\tmadvd\nCapEff:\t{caps}\n")).unwrap();
        std::fs::write(
            d.path().join("proc/meminfo"),
            format!("SwapTotal: {swap_kb} kB\nSwapFree: {swap_kb} kB\n"),
        )
        .unwrap();
        std::fs::write(p.join("smaps"), "").unwrap();
        if clear_refs {
            std::fs::write(p.join("clear_refs"), "").unwrap();
        }
        let root = SysRoot::under(d.path());
        (d, root)
    }

    #[test]
    fn probe_reasons_from_a_fixture_tree() {
        let (_d, root) = fixture("000001ffffffffff", 1 << 20, true);
        assert_eq!(probe_status(&root).why_not, None);
        let (_d, root) = fixture("000001ffffffffff", 0, true);
        assert!(probe_status(&root).why_not.unwrap().starts_with("no swap"));
        let (_d, root) = fixture("0000000000000000", 1 << 20, true);
        assert!(probe_status(&root)
            .why_not
            .unwrap()
            .contains("CAP_SYS_NICE"));
        let (_d, root) = fixture("000001ffffffffff", 1024, true);
        assert!(probe_status(&root)
            .why_not
            .unwrap()
            .starts_with("swap is full"));
    }

    #[test]
    fn smaps_needs_clear_refs() {
        let (_d, root) = fixture("0", 0, true);
        assert!(smaps_status(&root).usable);
        let (_d, root) = fixture("0", 0, false);
        assert!(smaps_status(&root)
            .why_not
            .unwrap()
            .contains("CONFIG_PROC_PAGE_MONITOR"));
    }

    #[test]
    fn detect_lists_every_primitive_in_auto_order() {
        let v = detect(&SysRoot::host());
        let names: Vec<_> = v.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            ["page_idle", "damon", "probe", "soft_dirty", "smaps", "sim"]
        );
        assert!(v.iter().all(|s| s.usable == s.why_not.is_none()));
    }
}

//! `/proc/PID/status` (fs/proc/array.c `proc_pid_status`, Linux 6.12): `Key:\tvalue` lines.
//! madvd reads the name, state, ids, and the memory lines — `VmSize` is printed only for
//! a task with an mm, so its absence marks a kernel thread (or a zombie); `Kthread:` (6.x)
//! says so directly where printed.

use std::io::BufRead;
use std::path::Path;

pub type StatusError = super::error::ReadError;

/// The parts of `status` madvd uses. Sizes in bytes; `None` when the line is absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub name: String,
    /// The state letter (`R`, `S`, `D`, `Z`, `T`, ...).
    pub state: char,
    pub tgid: u32,
    pub pid: u32,
    pub ppid: u32,
    /// Real and effective uid.
    pub uid: (u32, u32),
    /// `Kthread:` where the kernel prints it.
    pub kthread: Option<bool>,
    pub vm_size: Option<u64>,
    pub vm_rss: Option<u64>,
    pub vm_lck: Option<u64>,
    pub vm_swap: Option<u64>,
    pub rss_anon: Option<u64>,
    /// `CapEff:`, the effective capability mask (hex).
    pub cap_eff: Option<u64>,
}

impl Status {
    /// Has an mm (a user process, alive): not a kernel thread, not a zombie.
    pub fn has_mm(&self) -> bool {
        self.vm_size.is_some() && self.kthread != Some(true)
    }
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

/// Parse a status file (`path` only labels errors).
pub fn parse_status(r: impl BufRead, path: &Path) -> Result<Status, StatusError> {
    let mut s = Status::default();
    for (i, line) in r.lines().enumerate() {
        let line = line.map_err(|source| StatusError::Io {
            path: path.to_owned(),
            source,
        })?;
        let lineno = i + 1;
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let val = val.trim();
        let err = |what: &str| StatusError::Parse {
            path: path.to_owned(),
            line: lineno,
            msg: format!("bad {what}: {val:?}"),
        };
        let num = |v: &str| v.parse::<u32>().map_err(|_| err(key));
        let kb = || -> Result<Option<u64>, StatusError> {
            let n = val.trim_end_matches("kB").trim();
            Ok(Some(n.parse::<u64>().map_err(|_| err(key))? * 1024))
        };
        match key {
            "Name" => s.name = val.to_owned(),
            "State" => s.state = val.chars().next().ok_or_else(|| err("State"))?,
            "Tgid" => s.tgid = num(val)?,
            "Pid" => s.pid = num(val)?,
            "PPid" => s.ppid = num(val)?,
            "Uid" => {
                let mut it = val.split_whitespace();
                let r = num(it.next().unwrap_or(""))?;
                let e = num(it.next().unwrap_or(""))?;
                s.uid = (r, e);
            }
            "Kthread" => s.kthread = Some(num(val)? != 0),
            "VmSize" => s.vm_size = kb()?,
            "VmRSS" => s.vm_rss = kb()?,
            "VmLck" => s.vm_lck = kb()?,
            "VmSwap" => s.vm_swap = kb()?,
            "RssAnon" => s.rss_anon = kb()?,
            "CapEff" => {
                s.cap_eff = Some(u64::from_str_radix(val, 16).map_err(|_| err(key))?);
            }
            _ => {}
        }
    }
    Ok(s)
}

/// Read and parse a status file.
pub fn read_status(path: &Path) -> Result<Status, StatusError> {
    let f = std::fs::File::open(path).map_err(|source| StatusError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_status(std::io::BufReader::new(f), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_user_process() {
        let t = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nTgid:\t3390\nPid:\t3390\nPPid:\t3386\nUid:\t1000\t1001\t0\t0\nCapEff:\t000001ffffffffff\nKthread:\t0\nVmSize:\t    3060 kB\nVmLck:\t       0 kB\nVmRSS:\t    1696 kB\nRssAnon:\t     112 kB\nVmSwap:\t       8 kB\n";
        let s = parse_status(t.as_bytes(), Path::new("status")).unwrap();
        assert_eq!(
            (s.name.as_str(), s.state, s.tgid, s.pid, s.ppid, s.uid),
            ("cat", 'R', 3390, 3390, 3386, (1000, 1001))
        );
        assert_eq!(
            (s.vm_size, s.vm_rss, s.vm_swap, s.vm_lck),
            (Some(3060 << 10), Some(1696 << 10), Some(8 << 10), Some(0))
        );
        assert!(s.has_mm() && !s.is_zombie());
        assert_eq!(s.cap_eff, Some(0x1ff_ffff_ffff));
    }

    #[test]
    fn kernel_thread_and_zombie_have_no_mm() {
        let k = parse_status(
            "Name:\tkthreadd\nState:\tS (sleeping)\nTgid:\t2\nPid:\t2\nPPid:\t0\nKthread:\t1\n"
                .as_bytes(),
            Path::new("s"),
        )
        .unwrap();
        assert!(!k.has_mm());
        // Older kernels print no Kthread line: no VmSize is the sign.
        let k = parse_status(
            "Name:\tkworker/0:1\nState:\tI (idle)\nTgid:\t9\nPid:\t9\n".as_bytes(),
            Path::new("s"),
        )
        .unwrap();
        assert!(!k.has_mm() && k.kthread.is_none());
        let z = parse_status(
            "Name:\tx\nState:\tZ (zombie)\nTgid:\t5\nPid:\t5\n".as_bytes(),
            Path::new("s"),
        )
        .unwrap();
        assert!(z.is_zombie() && !z.has_mm());
    }

    #[test]
    fn bad_numbers_name_the_line() {
        let e = parse_status("Name:\tx\nTgid:\tabc\n".as_bytes(), Path::new("st")).unwrap_err();
        assert_eq!(e.to_string(), "st:2: bad Tgid: \"abc\"");
    }
}

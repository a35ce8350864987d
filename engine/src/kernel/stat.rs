//! `/proc/PID/stat`: one line, `pid (comm) state ppid ...` (fs/proc/array.c `do_task_stat`,
//! Linux 6.12; field numbers as in proc(5)). The comm may hold spaces and parentheses, so the
//! fields are counted after the *last* `)`. madvd reads the parent (field 4), the flags
//! (field 9: `PF_KTHREAD`), the CPU time (fields 14 and 15, clock ticks) and the start time
//! (field 22: with the pid, a process's identity — a reused pid has another start time).
//!
//! [`parse_stat`] is pure; [`read_stat`] opens a file (live targets open it through their
//! pidfd and call the parser).

use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StatError {
    #[error("{path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `PF_KTHREAD` (include/linux/sched.h): the process flag of kernel threads.
pub const PF_KTHREAD: u32 = 0x0020_0000;

/// The parts of `stat` madvd uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub comm: String,
    /// Field 3, the state letter.
    pub state: char,
    /// Field 4, the parent's process id (its thread-group id).
    pub ppid: u32,
    /// Field 9, the `PF_*` flags.
    pub flags: u32,
    /// Fields 14 and 15: user and system time, clock ticks (all threads).
    pub utime: u64,
    pub stime: u64,
    /// Field 22: when the process started, clock ticks after boot.
    pub start_time: u64,
}

impl Stat {
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
    /// utime + stime, clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        self.utime.saturating_add(self.stime)
    }
}

/// Parse a stat line (`path` only labels errors). Never panics on bad input.
pub fn parse_stat(text: &[u8], path: &Path) -> Result<Stat, StatError> {
    let err = |msg: String| StatError::Parse {
        path: path.to_owned(),
        msg,
    };
    let text = String::from_utf8_lossy(text);
    let line = text.trim_end();
    let (open, close) = match (line.find('('), line.rfind(')')) {
        (Some(o), Some(c)) if o < c => (o, c),
        _ => return Err(err("no `(comm)` in the line".into())),
    };
    let pid = line[..open]
        .trim()
        .parse::<u32>()
        .map_err(|_| err(format!("bad pid {:?}", line[..open].trim())))?;
    let comm = line[open + 1..close].to_owned();
    // After the comm: field 3 (state) is f[0], so field N is f[N - 3].
    let f: Vec<&str> = line[close + 1..].split_whitespace().collect();
    let field = |n: usize| {
        f.get(n - 3)
            .copied()
            .ok_or_else(|| err(format!("field {n} missing ({} after the comm)", f.len())))
    };
    let num = |n: usize, what: &str| -> Result<u64, StatError> {
        let v = field(n)?;
        v.parse()
            .map_err(|_| err(format!("bad {what} (field {n}): {v:?}")))
    };
    let state = field(3)?
        .chars()
        .next()
        .ok_or_else(|| err("empty state".into()))?;
    let ppid = num(4, "ppid")?;
    let ppid = u32::try_from(ppid).map_err(|_| err(format!("ppid {ppid} too large")))?;
    let flags = num(9, "flags")?;
    let flags = u32::try_from(flags).map_err(|_| err(format!("flags {flags} too large")))?;
    Ok(Stat {
        pid,
        comm,
        state,
        ppid,
        flags,
        utime: num(14, "utime")?,
        stime: num(15, "stime")?,
        start_time: num(22, "start time")?,
    })
}

/// Read and parse a stat file.
pub fn read_stat(path: &Path) -> Result<Stat, StatError> {
    let b = std::fs::read(path).map_err(|source| StatError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_stat(&b, path)
}

/// CPU time a process used so far (user + system, all threads), µs, from `/proc/PID/stat`
/// fields 14 and 15 (clock ticks; proc(5)). `None` when it cannot be read (gone).
pub fn proc_cpu_us(root: &crate::SysRoot, pid: u32) -> Option<u64> {
    let st = read_stat(&root.pid_file(pid, "stat")).ok()?;
    Some(st.cpu_ticks().saturating_mul(1_000_000) / clk_tck())
}

/// `sysconf(_SC_CLK_TCK)`, the unit of `stat`'s times (100 where it cannot be read).
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str =
        "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 2 0 100 0 0\n";

    #[test]
    fn fields_are_counted_after_the_last_paren() {
        let s = parse_stat(LINE.as_bytes(), Path::new("stat")).unwrap();
        assert_eq!(
            (s.pid, s.comm.as_str(), s.state, s.flags),
            (1234, "a (weird) name", 'S', 4194560)
        );
        assert_eq!((s.utime, s.stime, s.cpu_ticks()), (250, 30, 280));
        assert_eq!((s.ppid, s.start_time), (1, 100));
        assert!(!s.is_kernel_thread());
        let k = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 1 0 0 20 0 1 0 1 0 0\n";
        assert!(parse_stat(k.as_bytes(), Path::new("s"))
            .unwrap()
            .is_kernel_thread());
    }

    #[test]
    fn bad_input_is_an_error_naming_the_path_never_a_panic() {
        for bad in [
            "garbage",
            "x)",
            "(a)",
            ")(",
            "1 (a)",
            "1 (a) S 1 2",
            "",
            "1 (a) S 1 1 1 0 -1 zz 0 0 0 0 1 2",
            "1 (a) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0",
            "1 (a) S -1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5",
        ] {
            let e = parse_stat(bad.as_bytes(), Path::new("/p/1/stat")).unwrap_err();
            assert!(e.to_string().starts_with("/p/1/stat: "), "{bad:?}: {e}");
        }
        let e = parse_stat(b"1 (a) S 1 1 1 0 -1 zz 0 0 0 0 1 2", Path::new("st")).unwrap_err();
        assert_eq!(e.to_string(), "st: bad flags (field 9): \"zz\"");
        let e = parse_stat(
            b"1 (a) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0",
            Path::new("st"),
        );
        assert_eq!(
            e.unwrap_err().to_string(),
            "st: field 22 missing (19 after the comm)"
        );
        assert!(matches!(
            read_stat(Path::new("/nonexistent/stat")),
            Err(StatError::Io { .. })
        ));
    }
}

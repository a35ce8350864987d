//! A live target process: opened once through a pidfd; every later `/proc/PID/*` read is
//! opened and then checked against that pidfd (see [`crate::kernel::pidfd`]), and every
//! advice goes through it, so a reused pid is never read or advised by mistake. The pagemap
//! is opened once: its file holds the target's mm, so it can never show another process.
//!
//! `Process::open` refuses madvd itself, pid 1 unless explicitly allowed, threads that are
//! not a process (name the process), kernel threads (no mm) and zombies, each with the reason.

use crate::kernel::clear_refs::{self, ClearRefs};
use crate::kernel::host::page_size;
use crate::kernel::maps::{parse_maps, MapsError, Vma};
use crate::kernel::pagemap::Pagemap;
use crate::kernel::pidfd::{Pidfd, PidfdError};
use crate::kernel::smaps::{parse_smaps, SmapsVma};
use crate::kernel::stat::{parse_stat, StatError};
use crate::kernel::status::{parse_status, Status, StatusError};
use crate::region::TargetId;
use crate::sysroot::SysRoot;
use nix::errno::Errno;
use std::io::BufReader;
use std::path::PathBuf;
use thiserror::Error;

/// Why a process cannot be (or can no longer be) a target. Every variant names the pid.
#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("pid {pid}: refusing to target madvd itself")]
    Myself { pid: u32 },
    #[error("pid 1: refusing to target init unless it is named explicitly")]
    Init,
    #[error("pid {pid} ({comm}): a kernel thread has no user memory to monitor")]
    KernelThread { pid: u32, comm: String },
    #[error(
        "pid {pid} is a thread of process {tgid}: name the process (its thread-group id) instead"
    )]
    Thread { pid: u32, tgid: u32 },
    #[error("pid {pid}: no such process")]
    NoSuchProcess { pid: u32 },
    #[error("pid {pid} has exited")]
    Gone { pid: u32 },
    /// The pid names another process than the one found (its start time differs).
    #[error("pid {pid} was reused: it started at tick {found}, the process found there at tick {expected}")]
    Reused { pid: u32, expected: u64, found: u64 },
    #[error("pid {pid}: permission denied on {path}: needs root, or the same user and ptrace read access (PTRACE_MODE_READ: see /proc/sys/kernel/yama/ptrace_scope)")]
    Permission { pid: u32, path: PathBuf },
    /// (The pidfd error names the pid itself.)
    #[error("{source}")]
    Pidfd {
        pid: u32,
        #[source]
        source: PidfdError,
    },
    #[error("pid {pid}: {source}")]
    Maps {
        pid: u32,
        #[source]
        source: MapsError,
    },
    #[error("pid {pid}: {source}")]
    Status {
        pid: u32,
        #[source]
        source: StatusError,
    },
    #[error("pid {pid}: {source}")]
    Stat {
        pid: u32,
        #[source]
        source: StatError,
    },
    #[error("pid {pid}: {path}: {source}")]
    Io {
        pid: u32,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ProcessError {
    /// The process is simply gone (exited or reaped): drop it, it is no failure of madvd's.
    pub fn is_gone(&self) -> bool {
        match self {
            // A reused pid: the process found there is gone too.
            ProcessError::Gone { .. }
            | ProcessError::NoSuchProcess { .. }
            | ProcessError::Reused { .. } => true,
            ProcessError::Pidfd { source, .. } => source.is_gone(),
            _ => false,
        }
    }
    pub fn is_permission(&self) -> bool {
        matches!(self, ProcessError::Permission { .. })
    }
}

/// A live target.
#[derive(Debug)]
pub struct Process {
    pid: u32,
    comm: String,
    root: SysRoot,
    pidfd: Pidfd,
    pagemap: Pagemap,
    page_size: u64,
}

impl Process {
    /// Open `pid` as a target. `allow_pid1`: the user named pid 1 explicitly.
    pub fn open(root: &SysRoot, pid: u32, allow_pid1: bool) -> Result<Process, ProcessError> {
        let me = std::process::id();
        if pid == me {
            return Err(ProcessError::Myself { pid });
        }
        if pid == 1 && !allow_pid1 {
            return Err(ProcessError::Init);
        }
        let pidfd = match Pidfd::open(pid) {
            Ok(p) => p,
            Err(PidfdError::NoSuchProcess(_)) => return Err(ProcessError::NoSuchProcess { pid }),
            // pidfd_open refuses a thread that is not a thread-group leader: EINVAL before
            // Linux 6.9, ENOENT since (kernel/pid.c `pidfd_open`, 6.9 added PIDFD_THREAD).
            Err(PidfdError::Open {
                errno: Errno::EINVAL | Errno::ENOENT,
                ..
            }) => {
                let st = read_status_unchecked(root, pid)?;
                return Err(ProcessError::Thread { pid, tgid: st.tgid });
            }
            Err(source) => return Err(ProcessError::Pidfd { pid, source }),
        };
        let status = status_via(&pidfd, root)?;
        if status.tgid == me {
            return Err(ProcessError::Myself { pid });
        }
        if status.is_zombie() {
            return Err(ProcessError::Gone { pid });
        }
        if !status.has_mm() {
            return Err(ProcessError::KernelThread {
                pid,
                comm: status.name,
            });
        }
        let page_size = page_size();
        let pm_file = pidfd
            .open_proc_file(root, "pagemap")
            .map_err(|e| map_pidfd_err(pid, e))?;
        let pagemap = Pagemap::from_file(pm_file, root.pid_file(pid, "pagemap"), page_size);
        Ok(Process {
            pid,
            comm: status.name,
            root: root.clone(),
            pidfd,
            pagemap,
            page_size,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// The target id the monitor knows this process by (its pid).
    pub fn id(&self) -> TargetId {
        TargetId(self.pid)
    }
    /// The command name at open time.
    pub fn comm(&self) -> &str {
        &self.comm
    }
    pub fn root(&self) -> &SysRoot {
        &self.root
    }
    pub fn pidfd(&self) -> &Pidfd {
        &self.pidfd
    }
    pub fn page_size(&self) -> u64 {
        self.page_size
    }
    /// The pagemap opened at [`Process::open`] (bound to this process's mm).
    pub fn pagemap(&mut self) -> &mut Pagemap {
        &mut self.pagemap
    }
    /// True while the process has not exited. A zombie (exited, not yet reaped: its mm is
    /// gone) counts as exited: a pidfd polls readable once the process has exited
    /// (`pidfd_poll`, kernel/fork.c, Linux 5.3+).
    pub fn is_alive(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&self.pidfd)),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call; timeout 0 never blocks.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        if n < 0 {
            return self.pidfd.is_alive();
        }
        pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 && self.pidfd.is_alive()
    }

    /// The current VMAs (re-read; opened, then checked against the pidfd). A process that
    /// exited after the open but before the read shows empty maps: reported as `Gone`.
    pub fn maps(&self) -> Result<Vec<Vma>, ProcessError> {
        let f = self
            .pidfd
            .open_proc_file(&self.root, "maps")
            .map_err(|e| map_pidfd_err(self.pid, e))?;
        let path = self.root.pid_file(self.pid, "maps");
        let v = parse_maps(BufReader::new(f), &path).map_err(|e| self.io_or_parse(e))?;
        if v.is_empty() && !self.is_alive() {
            return Err(ProcessError::Gone { pid: self.pid });
        }
        Ok(v)
    }

    /// The monitorable address ranges from the maps (`kernel::maps::target_ranges`: the VMAs
    /// without `[vsyscall]`, adjacent ones joined), for the three-region init. Streamed
    /// (`kernel::maps::parse_target_ranges`): a target of 100 000 mappings costs the memory
    /// of its joined ranges, not of its VMAs.
    pub fn target_ranges(&self) -> Result<Vec<crate::region::AddrRange>, ProcessError> {
        let f = self
            .pidfd
            .open_proc_file(&self.root, "maps")
            .map_err(|e| map_pidfd_err(self.pid, e))?;
        let path = self.root.pid_file(self.pid, "maps");
        let v = crate::kernel::maps::parse_target_ranges(BufReader::new(f), &path)
            .map_err(|e| self.io_or_parse(e))?;
        if v.is_empty() && !self.is_alive() {
            return Err(ProcessError::Gone { pid: self.pid });
        }
        Ok(v)
    }

    /// The ranges of the current VMAs, in address order: [`Self::maps`] without keeping
    /// each VMA's fields (streamed; what the actuator cuts advice at).
    pub fn vma_ranges(&self) -> Result<Vec<crate::region::AddrRange>, ProcessError> {
        let f = self
            .pidfd
            .open_proc_file(&self.root, "maps")
            .map_err(|e| map_pidfd_err(self.pid, e))?;
        let path = self.root.pid_file(self.pid, "maps");
        let mut v = Vec::new();
        crate::kernel::maps::for_each_vma(BufReader::new(f), &path, |m| v.push(m.range))
            .map_err(|e| self.io_or_parse(e))?;
        if v.is_empty() && !self.is_alive() {
            return Err(ProcessError::Gone { pid: self.pid });
        }
        Ok(v)
    }

    /// The smaps file, opened and checked against the pidfd, for a reader that reads it in
    /// slices (the smaps access check): the open file holds this process's mm, so it never
    /// shows another process however long it is kept. Read errors: [`Self::read_error`].
    pub fn open_smaps(&self) -> Result<std::fs::File, ProcessError> {
        self.pidfd
            .open_proc_file(&self.root, "smaps")
            .map_err(|e| map_pidfd_err(self.pid, e))
    }

    /// A failed read of this process's `file` (e.g. `"smaps"`): `Gone` if it exited (ESRCH,
    /// or no longer alive), else the I/O error naming the path.
    pub fn read_error(&self, file: &str, source: std::io::Error) -> ProcessError {
        if source.raw_os_error() == Some(libc::ESRCH) || !self.is_alive() {
            return ProcessError::Gone { pid: self.pid };
        }
        ProcessError::Io {
            pid: self.pid,
            path: self.root.pid_file(self.pid, file),
            source,
        }
    }

    /// A parse error of this process's `file` (`Gone` if it exited meanwhile).
    pub fn parse_error(&self, e: MapsError) -> ProcessError {
        self.io_or_parse(e)
    }

    /// The current smaps (walks the page tables: costs in proportion to the mapped size).
    pub fn smaps(&self) -> Result<Vec<SmapsVma>, ProcessError> {
        let f = self
            .pidfd
            .open_proc_file(&self.root, "smaps")
            .map_err(|e| map_pidfd_err(self.pid, e))?;
        let path = self.root.pid_file(self.pid, "smaps");
        let v = parse_smaps(BufReader::new(f), &path).map_err(|e| self.io_or_parse(e))?;
        if v.is_empty() && !self.is_alive() {
            return Err(ProcessError::Gone { pid: self.pid });
        }
        Ok(v)
    }

    /// When the process started (field 22 of `stat`, clock ticks after boot), read through
    /// the pidfd: with the pid, its identity.
    pub fn start_time(&self) -> Result<u64, ProcessError> {
        use std::io::Read;
        let path = self.root.pid_file(self.pid, "stat");
        let mut b = Vec::with_capacity(512);
        self.pidfd
            .open_proc_file(&self.root, "stat")
            .map_err(|e| map_pidfd_err(self.pid, e))?
            .read_to_end(&mut b)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::ESRCH) => ProcessError::Gone { pid: self.pid },
                _ => ProcessError::Io {
                    pid: self.pid,
                    path: path.clone(),
                    source,
                },
            })?;
        let st = parse_stat(&b, &path).map_err(|source| ProcessError::Stat {
            pid: self.pid,
            source,
        })?;
        if !self.is_alive() {
            return Err(ProcessError::Gone { pid: self.pid });
        }
        Ok(st.start_time)
    }

    /// The current status.
    pub fn status(&self) -> Result<Status, ProcessError> {
        status_via(&self.pidfd, &self.root)
    }

    /// Write `what` to the process's `clear_refs` (opened, then checked against the pidfd).
    pub fn clear_refs(&self, what: ClearRefs) -> Result<(), ProcessError> {
        let f = self
            .pidfd
            .open_proc_file_with(
                &self.root,
                "clear_refs",
                std::fs::OpenOptions::new().write(true),
            )
            .map_err(|e| map_pidfd_err(self.pid, e))?;
        clear_refs::write(f, what).map_err(|source| {
            if source.raw_os_error() == Some(libc::ESRCH) {
                ProcessError::Gone { pid: self.pid }
            } else {
                ProcessError::Io {
                    pid: self.pid,
                    path: self.root.pid_file(self.pid, "clear_refs"),
                    source,
                }
            }
        })
    }

    fn io_or_parse(&self, e: MapsError) -> ProcessError {
        match e {
            // Reading a file of a process that exited mid-read: ESRCH (or EIO/0 bytes).
            MapsError::Io { ref source, .. }
                if source.raw_os_error() == Some(libc::ESRCH) || !self.is_alive() =>
            {
                ProcessError::Gone { pid: self.pid }
            }
            e => ProcessError::Maps {
                pid: self.pid,
                source: e,
            },
        }
    }
}

fn map_pidfd_err(pid: u32, e: PidfdError) -> ProcessError {
    match e {
        PidfdError::Exited { .. } | PidfdError::NoSuchProcess(_) => ProcessError::Gone { pid },
        PidfdError::Io { path, source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            ProcessError::Permission { pid, path }
        }
        e if e.is_gone() => ProcessError::Gone { pid },
        source => ProcessError::Pidfd { pid, source },
    }
}

fn status_via(pidfd: &Pidfd, root: &SysRoot) -> Result<Status, ProcessError> {
    let pid = pidfd.pid();
    let f = pidfd
        .open_proc_file(root, "status")
        .map_err(|e| map_pidfd_err(pid, e))?;
    parse_status(BufReader::new(f), &root.pid_file(pid, "status"))
        .map_err(|source| ProcessError::Status { pid, source })
}

/// Only to name the thread group of a pid we refuse (nothing else is read from it).
fn read_status_unchecked(root: &SysRoot, pid: u32) -> Result<Status, ProcessError> {
    let path = root.pid_file(pid, "status");
    let f = std::fs::File::open(&path).map_err(|_| ProcessError::NoSuchProcess { pid })?;
    parse_status(BufReader::new(f), &path).map_err(|source| ProcessError::Status { pid, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::maps::VmaName;

    #[test]
    fn refuses_itself_and_pid1() {
        let root = SysRoot::host();
        let me = std::process::id();
        let e = Process::open(&root, me, true).unwrap_err();
        assert!(
            matches!(e, ProcessError::Myself { pid } if pid == me),
            "{e}"
        );
        assert!(e.to_string().contains(&me.to_string()));
        assert!(matches!(
            Process::open(&root, 1, false).unwrap_err(),
            ProcessError::Init
        ));
    }

    #[test]
    fn refuses_a_kernel_thread_with_the_reason() {
        // Any kernel thread visible here (kthreadd is pid 2 in the initial pid namespace).
        let kthread = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .map(|s| {
                        s.contains("Kthread:\t1")
                            || (!s.contains("VmSize") && !s.contains("State:\tZ"))
                    })
                    .unwrap_or(false)
            });
        let Some(pid) = kthread else {
            panic!("no kernel thread visible in /proc: this test needs the initial pid namespace");
        };
        let e = Process::open(&SysRoot::host(), pid, false).unwrap_err();
        assert!(
            matches!(&e, ProcessError::KernelThread { pid: p, .. } if *p == pid),
            "{e}"
        );
        assert!(e.to_string().contains("kernel thread"));
    }

    #[test]
    fn refuses_a_thread_naming_its_process() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() } as u32).unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        let e = Process::open(&SysRoot::host(), tid, false).unwrap_err();
        // A thread of madvd itself: refused either as a thread or as madvd.
        assert!(
            matches!(e, ProcessError::Thread { tgid, .. } if tgid == std::process::id())
                || matches!(e, ProcessError::Myself { .. }),
            "{e}"
        );
        done_tx.send(()).unwrap();
        h.join().unwrap();
    }

    #[test]
    fn opens_a_child_reads_maps_and_sees_it_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        // spawn() returns once the child's exec released our mm (vfork semantics), which
        // is a moment before the kernel sets the new comm: wait for exec to finish.
        let comm_path = format!("/proc/{}/comm", child.id());
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_secs(5) {
            if std::fs::read_to_string(&comm_path).is_ok_and(|c| c.trim() == "sleep") {
                break;
            }
            std::thread::yield_now();
        }
        let p = Process::open(&SysRoot::host(), child.id(), false).unwrap();
        assert_eq!(p.comm(), "sleep");
        assert!(p.is_alive());
        let maps = p.maps().unwrap();
        assert!(maps.iter().any(|v| v.name == VmaName::Stack));
        // (Not compared with `maps`: the child may still be mapping its program.)
        let ranges = p.vma_ranges().unwrap();
        assert!(!ranges.is_empty() && ranges.windows(2).all(|w| w[0].end <= w[1].start));
        assert!(p.status().unwrap().has_mm());
        assert!(!p.smaps().unwrap().is_empty());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!p.is_alive());
        let e = p.maps().unwrap_err();
        assert!(e.is_gone(), "{e}");
        assert!(p.vma_ranges().unwrap_err().is_gone());
        assert!(p.target_ranges().unwrap_err().is_gone());
        assert!(p.clear_refs(ClearRefs::All).unwrap_err().is_gone());
    }

    #[test]
    fn missing_pid_is_no_such_process() {
        let e = Process::open(&SysRoot::host(), 0x3fff_fff0, false).unwrap_err();
        assert!(
            e.is_gone() || matches!(e, ProcessError::Pidfd { .. }),
            "{e}"
        );
        assert!(e.to_string().contains(&0x3fff_fff0u32.to_string()));
    }
}

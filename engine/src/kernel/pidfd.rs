//! Process handles through a pidfd (`pidfd_open(2)`, Linux 5.3+), so a reused pid is never
//! read from or advised by mistake: every `/proc/PID/*` file is opened and *then* checked
//! against the pidfd — if the process is still alive after the open, the pid could not have
//! been reused, so the file belongs to our process.

use crate::sysroot::SysRoot;
use nix::errno::Errno;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PidfdError {
    #[error("pid {0}: no such process")]
    NoSuchProcess(u32),
    #[error("pid {0}: pidfd_open is not supported by this kernel (needs Linux 5.3+)")]
    Unsupported(u32),
    #[error("pid {pid}: pidfd_open: {errno}")]
    Open { pid: u32, errno: Errno },
    #[error("pid {pid} has exited")]
    Exited { pid: u32 },
    #[error("pid {pid}: {path}: {source}")]
    Io {
        pid: u32,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl PidfdError {
    /// True when the process is simply gone (not an error of madvd's).
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            PidfdError::NoSuchProcess(_) | PidfdError::Exited { .. }
        ) || matches!(self, PidfdError::Io { source, .. } if source.raw_os_error() == Some(libc::ESRCH) || source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// True while the process of the pidfd `fd` has not exited (see [`Pidfd::is_alive`]); for
/// holders of a borrowed pidfd (the actuator's targets).
pub fn fd_is_alive(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: pidfd_send_signal(fd, 0, NULL, 0) only checks deliverability; the fd is
    // borrowed and valid for the call; a null siginfo is allowed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            0 as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    ret == 0 || Errno::last() == Errno::EPERM
}

/// A process opened once through a pidfd.
#[derive(Debug)]
pub struct Pidfd {
    pid: u32,
    fd: OwnedFd,
}

impl Pidfd {
    pub fn open(pid: u32) -> Result<Self, PidfdError> {
        // SAFETY: pidfd_open takes (pid_t, unsigned int flags) and returns a new fd or -1;
        // no pointers are passed.
        let ret =
            unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
        if ret < 0 {
            return Err(match Errno::last() {
                Errno::ESRCH => PidfdError::NoSuchProcess(pid),
                Errno::ENOSYS => PidfdError::Unsupported(pid),
                errno => PidfdError::Open { pid, errno },
            });
        }
        // SAFETY: `ret` is a fresh file descriptor returned by pidfd_open that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(ret as i32) };
        Ok(Self { pid, fd })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// True while the process has not exited (it may be a zombie not yet reaped: its mm is
    /// gone then, which reads of its files will show).
    pub fn is_alive(&self) -> bool {
        fd_is_alive(self.fd.as_fd())
    }

    /// Fails with `Exited` unless the process is alive now.
    pub fn check_alive(&self) -> Result<(), PidfdError> {
        if self.is_alive() {
            Ok(())
        } else {
            Err(PidfdError::Exited { pid: self.pid })
        }
    }

    /// Open `<proc>/<pid>/<name>` and make sure it belongs to this process (see module doc).
    pub fn open_proc_file(&self, root: &SysRoot, name: &str) -> Result<File, PidfdError> {
        self.open_proc_file_with(root, name, std::fs::OpenOptions::new().read(true))
    }

    /// As [`Self::open_proc_file`] with explicit options (e.g. write for `clear_refs`).
    pub fn open_proc_file_with(
        &self,
        root: &SysRoot,
        name: &str,
        opts: &std::fs::OpenOptions,
    ) -> Result<File, PidfdError> {
        let path = root.pid_file(self.pid, name);
        let f = opts.open(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound
                || source.raw_os_error() == Some(libc::ESRCH)
            {
                PidfdError::Exited { pid: self.pid }
            } else {
                PidfdError::Io {
                    pid: self.pid,
                    path: path.clone(),
                    source,
                }
            }
        })?;
        self.check_alive()?;
        Ok(f)
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive_and_reaped_child_is_not() {
        let me = Pidfd::open(std::process::id()).unwrap();
        assert!(me.is_alive());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pfd = Pidfd::open(child.id()).unwrap();
        child.wait().unwrap();
        assert!(!pfd.is_alive());
        assert!(matches!(pfd.check_alive(), Err(PidfdError::Exited { .. })));
        assert!(pfd
            .open_proc_file(&SysRoot::host(), "maps")
            .unwrap_err()
            .is_gone());
    }

    #[test]
    fn missing_pid_is_no_such_process() {
        // pid_max is at most 4M (PID_MAX_LIMIT): this pid cannot exist.
        assert!(matches!(
            Pidfd::open(0x7fff_fff0),
            Err(PidfdError::NoSuchProcess(_)) | Err(PidfdError::Open { .. })
        ));
    }
}

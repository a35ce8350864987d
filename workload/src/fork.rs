//! The forking workload (`fork_children` in a spec): a parent that forks a child on each
//! `fork` command and ends one on `end PID`, for tests that follow process trees
//! (`madvd run --children`). Each child maps its own private anonymous memory
//! (`ForkChildren::size`), first-touches it and keeps touching it until it is killed; the
//! parent stays single-threaded and holds no memory of the children's.
//!
//! | command | answer |
//! |---|---|
//! | `fork` | `{"event":"forked","pid":P,"mapping":{...}}` once the child has touched its memory |
//! | `end PID` | kills (SIGKILL) and reaps child PID: `{"event":"reaped","pid":P}` |
//! | `quit` (or EOF) | kills and reaps every child, exits |

use crate::spec::{Event, PAGE};
use engine::AddrRange;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::{self, BufRead, Write};

/// What the forking workload's children do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkChildren {
    /// Bytes each child maps and touches (rounded up to pages).
    pub size: u64,
}

/// Run the forking parent: answer `fork` / `end PID` / `quit` until `quit` or EOF.
pub fn run_forker(f: &ForkChildren, control: impl BufRead, mut out: impl Write) -> io::Result<()> {
    let mut say = |ev: &Event| crate::spec::write_event(&mut out, ev);
    say(&Event::Ready {
        pid: std::process::id(),
        mappings: vec![],
        hot: AddrRange::new(0, 0),
        page_size: PAGE,
    })?;
    let mut kids = BTreeSet::new();
    let mut result = Ok(());
    for line in control.lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let mut words = line.split_whitespace();
        let ev = match (words.next(), words.next().map(str::parse::<u32>)) {
            (Some("fork"), None) => match fork_child(f.size) {
                Ok((pid, mapping)) => {
                    kids.insert(pid);
                    Event::Forked { pid, mapping }
                }
                Err(e) => Event::Error {
                    message: format!("fork: {e}"),
                },
            },
            (Some("end"), Some(Ok(pid))) if kids.remove(&pid) => {
                end_child(pid);
                Event::Reaped { pid }
            }
            (Some("end"), _) => Event::Error {
                message: format!("usage: end PID (one of {kids:?})"),
            },
            (Some("quit"), _) => break,
            (Some(other), _) => Event::Error {
                message: format!("unknown command `{other}` (fork, end PID, quit)"),
            },
            (None, _) => continue,
        };
        say(&ev)?;
    }
    for pid in kids {
        end_child(pid);
    }
    result
}

/// Fork one child that maps `size` bytes, touches them, says so through a pipe and keeps
/// touching them until killed (or until its parent is gone).
fn fork_child(size: u64) -> io::Result<(u32, AddrRange)> {
    let len = size.div_ceil(PAGE).max(1) * PAGE;
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the forking parent is single-threaded (no other thread holds a lock the child
    // could need); the child calls only async-signal-safe functions (mmap, write, nanosleep,
    // getppid, _exit) and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = io::Error::last_os_error();
        close(fds);
        return Err(e);
    }
    if pid == 0 {
        child_main(len, fds[1], parent);
    }
    // SAFETY: our own write end, closed once.
    unsafe { libc::close(fds[1]) };
    let mut msg = [0u8; 16];
    // SAFETY: reads at most 16 bytes into `msg`, which holds 16.
    let n = unsafe { libc::read(fds[0], msg.as_mut_ptr().cast(), msg.len()) };
    // SAFETY: our own read end, closed once.
    unsafe { libc::close(fds[0]) };
    if n != 16 {
        end_child(pid as u32);
        return Err(io::Error::other(
            "the child died before touching its memory",
        ));
    }
    let start = u64::from_ne_bytes(msg[..8].try_into().expect("8 bytes"));
    let end = u64::from_ne_bytes(msg[8..].try_into().expect("8 bytes"));
    Ok((pid as u32, AddrRange::new(start, end)))
}

fn child_main(len: u64, w: i32, parent: libc::pid_t) -> ! {
    let (prot, flags) = (
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
    );
    // SAFETY: a fresh private anonymous mapping of `len` bytes; no address hint.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len as usize, prot, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        // SAFETY: _exit never returns and is async-signal-safe.
        unsafe { libc::_exit(1) };
    }
    let base = p as *mut u8;
    let touch = |round: u8| {
        for off in (0..len).step_by(PAGE as usize) {
            // SAFETY: `off < len`: inside the mapping made above, readable and writable.
            unsafe { base.add(off as usize).write_volatile(round | 1) };
        }
    };
    touch(0);
    let mut msg = [0u8; 16];
    msg[..8].copy_from_slice(&(base as u64).to_ne_bytes());
    msg[8..].copy_from_slice(&(base as u64 + len).to_ne_bytes());
    // SAFETY: writes 16 bytes from `msg` to our pipe end, then closes it.
    unsafe {
        libc::write(w, msg.as_ptr().cast(), msg.len());
        libc::close(w);
    }
    let mut round = 0u8;
    loop {
        round = round.wrapping_add(2);
        touch(round);
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 20_000_000,
        };
        // SAFETY: getppid has no preconditions; nanosleep reads `ts` and may write nothing.
        unsafe {
            if libc::getppid() != parent {
                libc::_exit(0);
            }
            libc::nanosleep(&ts, std::ptr::null_mut());
        }
    }
}

fn close(fds: [i32; 2]) {
    for fd in fds {
        // SAFETY: our own pipe ends, each closed once.
        unsafe { libc::close(fd) };
    }
}

/// SIGKILL and reap one child.
fn end_child(pid: u32) {
    // SAFETY: signals and waits for our own child only; a null status pointer is allowed.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
        libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
    }
}

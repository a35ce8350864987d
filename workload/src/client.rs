//! The parent's side of a workload child (`madvd workload --spec JSON`): the JSON-lines
//! protocol of the crate documentation. Tests, benches and `madvd demo` use it.

use crate::spec::{Event, Truth, Verify, WorkloadSpec};
use engine::AddrRange;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use thiserror::Error;

/// What went wrong talking to a workload child.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot start the workload child: {0}")]
    Spawn(#[source] io::Error),
    #[error("workload child (pid {pid}): {source}")]
    Io {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("workload child (pid {pid}) exited ({status})")]
    Exited { pid: u32, status: ExitStatus },
    #[error("workload child (pid {pid}) said {line:?}: {source}")]
    BadLine {
        pid: u32,
        line: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("workload child (pid {pid}) {cmd}: {message}")]
    Refused {
        pid: u32,
        cmd: String,
        message: String,
    },
    #[error("workload child (pid {pid}) {cmd}: unexpected answer {got:?}")]
    Unexpected { pid: u32, cmd: String, got: Event },
}

/// A workload child, killed and reaped on drop.
pub struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
    mappings: Vec<AddrRange>,
    hot: AddrRange,
}

impl Client {
    /// Spawn `exe workload --spec ...` and wait until it has first-touched its memory.
    pub fn spawn(exe: &Path, spec: &WorkloadSpec) -> Result<Client, ClientError> {
        let mut cmd = Command::new(exe);
        cmd.arg("workload").args(spec.to_args());
        Client::spawn_with(cmd)
    }

    /// As [`Client::spawn`] with a prepared command (`workload --spec ...` already added;
    /// e.g. with its own process group): stdin and stdout are piped here.
    pub fn spawn_with(mut cmd: Command) -> Result<Client, ClientError> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(ClientError::Spawn)?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut w = Client {
            pid: child.id(),
            child,
            stdin,
            stdout,
            mappings: vec![],
            hot: AddrRange::new(0, 0),
        };
        match w.read_event()? {
            Event::Ready {
                pid, mappings, hot, ..
            } => {
                w.pid = pid;
                w.mappings = mappings;
                w.hot = hot;
                Ok(w)
            }
            got => Err(w.unexpected("start", got)),
        }
    }

    fn io(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            pid: self.pid,
            source,
        }
    }

    fn unexpected(&self, cmd: &str, got: Event) -> ClientError {
        ClientError::Unexpected {
            pid: self.pid,
            cmd: cmd.into(),
            got,
        }
    }

    fn read_event(&mut self) -> Result<Event, ClientError> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line).map_err(|e| self.io(e))? == 0 {
            let status = self.child.wait().map_err(|e| self.io(e))?;
            return Err(ClientError::Exited {
                pid: self.pid,
                status,
            });
        }
        serde_json::from_str(&line).map_err(|source| ClientError::BadLine {
            pid: self.pid,
            line,
            source,
        })
    }

    fn command(&mut self, cmd: &str) -> Result<Event, ClientError> {
        writeln!(self.stdin, "{cmd}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| self.io(e))?;
        match self.read_event()? {
            Event::Error { message } => Err(ClientError::Refused {
                pid: self.pid,
                cmd: cmd.into(),
                message,
            }),
            ev => Ok(ev),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// The first (or only) mapping.
    pub fn mapping(&self) -> AddrRange {
        self.mappings[0]
    }
    pub fn mappings(&self) -> &[AddrRange] {
        &self.mappings
    }
    /// The hot range at start.
    pub fn hot(&self) -> AddrRange {
        self.hot
    }
    pub fn mark(&mut self) -> Result<(), ClientError> {
        self.command("mark").map(drop)
    }
    pub fn truth(&mut self) -> Result<Truth, ClientError> {
        match self.command("truth")? {
            Event::Truth(t) => Ok(t),
            got => Err(self.unexpected("truth", got)),
        }
    }
    pub fn verify(&mut self) -> Result<Verify, ClientError> {
        match self.command("verify")? {
            Event::Verify(v) => Ok(v),
            got => Err(self.unexpected("verify", got)),
        }
    }
    pub fn pause(&mut self) -> Result<(), ClientError> {
        self.command("pause").map(drop)
    }
    pub fn resume(&mut self) -> Result<(), ClientError> {
        self.command("resume").map(drop)
    }
    /// munmap `[mapping.start + off, + len)` inside the child.
    pub fn unmap(&mut self, off: u64, len: u64) -> Result<AddrRange, ClientError> {
        match self.command(&format!("unmap {off} {len}"))? {
            Event::Unmapped { range } => Ok(range),
            got => Err(self.unexpected("unmap", got)),
        }
    }
    /// The forking workload: fork a child; its pid and mapping once it touched its memory.
    pub fn fork_child(&mut self) -> Result<(u32, AddrRange), ClientError> {
        match self.command("fork")? {
            Event::Forked { pid, mapping } => Ok((pid, mapping)),
            got => Err(self.unexpected("fork", got)),
        }
    }
    /// The forking workload: kill and reap child `pid`.
    pub fn end_child(&mut self, pid: u32) -> Result<(), ClientError> {
        match self.command(&format!("end {pid}"))? {
            Event::Reaped { .. } => Ok(()),
            got => Err(self.unexpected("end", got)),
        }
    }
    /// Kill and reap now.
    pub fn kill(mut self) {
        self.reap();
    }
    fn reap(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reap();
    }
}

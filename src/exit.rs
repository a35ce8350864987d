//! Exit codes (the table in docs/cli.md) and the one-line error form.
//!
//! Commands return `anyhow::Result`; an error that should map to a specific exit code carries
//! an [`Exit`] somewhere in its chain (as the root or as context). Everything else is 1.

use std::fmt;

/// Exit codes. Keep in sync with docs/cli.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// 1: the work failed (I/O, kernel refusal, a record file with bad lines), or `check`
    /// found invalid files.
    Failure = 1,
    /// 2: bad usage: unknown flag, bad value (`--for garbage`), missing argument.
    Usage = 2,
    /// 3: a target was not found, exited before it could be opened, or is refused (madvd
    /// itself, pid 1 without --allow-pid1, a kernel thread).
    Target = 3,
    /// 4: permission denied (not root, no CAP_SYS_NICE / ptrace access, unreadable file).
    Permission = 4,
    /// 130: interrupted (SIGINT/SIGTERM) before the work was complete (`demo`, `record`
    /// end cleanly with 0; only a command that could not produce its result uses 130).
    Interrupted = 130,
}

/// An error with an exit code. Its message is the one line the user sees.
#[derive(Debug)]
pub struct Exit {
    pub code: Code,
    pub msg: String,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Exit {}

/// An `anyhow::Error` with an exit code.
pub fn err(code: Code, msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code,
        msg: msg.into(),
    })
}

/// The exit code for an error: the first [`Exit`] in its chain; else permission-denied I/O
/// errors are 4; else 1.
pub fn code_of(e: &anyhow::Error) -> Code {
    for c in e.chain() {
        if let Some(x) = c.downcast_ref::<Exit>() {
            return x.code;
        }
    }
    for c in e.chain() {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::PermissionDenied {
                return Code::Permission;
            }
        }
    }
    Code::Failure
}

/// The error as one line: the context chain joined by ": ", newlines folded.
pub fn one_line(e: &anyhow::Error) -> String {
    let s = format!("{e:#}");
    fold(&s)
}

/// Fold a multi-line message into one line.
pub fn fold(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// clap's error text as one line: the "error:" part and its detail lines, without the usage
/// block and the "For more information" hint.
pub fn clap_one_line(rendered: &str) -> String {
    let mut parts = Vec::new();
    for l in rendered.lines() {
        let t = l.trim();
        if t.starts_with("Usage:") || t.starts_with("For more information") {
            break;
        }
        if t.is_empty() {
            continue;
        }
        parts.push(t.strip_prefix("error: ").unwrap_or(t).to_string());
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn codes_survive_context() {
        let e = err(Code::Target, "pid 99999: no such process");
        let e = Err::<(), _>(e).context("run").unwrap_err();
        assert_eq!(code_of(&e), Code::Target);
        assert_eq!(one_line(&e), "run: pid 99999: no such process");
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = Err::<(), _>(io).context("/etc/shadow").unwrap_err();
        assert_eq!(code_of(&e), Code::Permission);
    }

    #[test]
    fn clap_errors_fold_to_one_line() {
        let r = "error: the following required arguments were not provided:\n  --policy <FILE>\n\nUsage: madvd run --policy <FILE>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            clap_one_line(r),
            "the following required arguments were not provided: --policy <FILE>"
        );
    }
}

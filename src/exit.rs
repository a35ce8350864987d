//! Exit codes (the table in docs/cli.md) and the one-line error form.
//!
//! One rule decides the code: **it says what the user has to fix.**
//! - 1, a file or the work: a file named to madvd (policy, agent config, record, output)
//!   cannot be read or written, or something in it is wrong, even a value only this machine
//!   cannot use (an agent group's `ops`): `path:line:column: …`. An unreadable file is 1
//!   whatever the cause, its mode included: the file is what to fix. Also: the work itself
//!   failed (a kernel refusal, a port already in use, a data check).
//! - 2, the command line: unknown flag, malformed or missing value, or a flag value this
//!   machine cannot use (`--ops NAME`).
//! - 3, the target: not found, exited, or refused (madvd itself, pid 1 without
//!   `--allow-pid1`, a kernel thread, a thread id).
//! - 4, madvd's privileges over its targets: not root, no CAP_SYS_NICE, no ptrace read
//!   access (a target it may not open, advice the kernel refused for lack of them).
//! - 130: interrupted before the result was complete.
//!
//! Commands return `anyhow::Result`; an error that should map to a specific exit code carries
//! an [`Exit`] somewhere in its chain (as the root or as context); the outermost one wins.
//! Everything else is 1: no code is guessed from an I/O error's kind.

use engine::ops::probe_host::cap_eff;
use engine::{ApplyErrorKind, SysRoot};
use schemes::Policy;
use std::collections::BTreeMap;
use std::fmt;

/// Exit codes. Keep in sync with docs/cli.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// 1: the work failed, or a file (policy, agent config, record, output) is unreadable or
    /// wrong, or `check` found invalid files.
    Failure = 1,
    /// 2: bad usage: unknown flag, bad value (`--for garbage`), missing argument, a flag's
    /// value not usable here (`--ops NAME`).
    Usage = 2,
    /// 3: a target was not found, exited before it could be opened, or is refused (madvd
    /// itself, pid 1 without --allow-pid1, a kernel thread).
    Target = 3,
    /// 4: madvd lacks a privilege over its targets (not root, no CAP_SYS_NICE / ptrace
    /// access).
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

/// An error with an exit code whose cause is another error: one line reads `msg: source`.
pub fn with_source(
    code: Code,
    msg: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> anyhow::Error {
    anyhow::Error::new(source).context(Exit {
        code,
        msg: msg.into(),
    })
}

/// `e`, met while using what a file says at `at` (`path:line:column…`): a mistake in the
/// file, so 1 whatever code `e` had (an `--ops` value is 2 on the command line, 1 in a file).
pub fn in_file(e: anyhow::Error, at: impl Into<String>) -> anyhow::Error {
    e.context(Exit {
        code: Code::Failure,
        msg: at.into(),
    })
}

/// The exit code for an error: the outermost [`Exit`] in its chain, else 1.
pub fn code_of(e: &anyhow::Error) -> Code {
    // `anyhow::Error::downcast_ref` sees context layers (outermost first); `chain()` yields
    // them as opaque context errors, so it only finds an `Exit` that is a root.
    e.downcast_ref::<Exit>()
        .or_else(|| e.chain().find_map(|c| c.downcast_ref::<Exit>()))
        .map_or(Code::Failure, |x| x.code)
}

/// `CAP_SYS_NICE` (include/uapi/linux/capability.h): `process_madvise()` on another process
/// needs it (mm/madvise.c, Linux 6.12).
const CAP_SYS_NICE: u32 = 23;

const RUN_AS_ROOT: &str = "run as root, or pass --dry-run to decide without applying";

/// Before `run` starts: a policy that advises, not a dry run, and madvd without CAP_SYS_NICE
/// could apply nothing: 4, naming the capability. (Unknown capabilities: not refused here;
/// [`require_applied`] answers at the end.)
pub fn require_cap_sys_nice(root: &SysRoot, policy: &Policy, dry_run: bool) -> anyhow::Result<()> {
    let Some(s) = policy.schemes.iter().find(|s| s.action.advice().is_some()) else {
        return Ok(());
    };
    match cap_eff(root) {
        Some(caps) if !dry_run && caps & (1 << CAP_SYS_NICE) == 0 => Err(err(
            Code::Permission,
            format!(
                "scheme `{}` ({}) would apply nothing: advising another process (process_madvise) needs CAP_SYS_NICE, which madvd lacks: {RUN_AS_ROOT}",
                s.name,
                s.action.name()
            ),
        )),
        _ => Ok(()),
    }
}

/// At the end of `run`: nothing applied and the kernel refused advice for lack of privilege
/// (`errors` by [`ApplyErrorKind::label`]): 4, naming what is missing.
pub fn require_applied(
    dry_run: bool,
    bytes_applied: u64,
    errors: &BTreeMap<String, u64>,
) -> anyhow::Result<()> {
    let denied = errors
        .get(ApplyErrorKind::Permission.label().as_ref())
        .copied()
        .unwrap_or(0);
    if dry_run || bytes_applied > 0 || denied == 0 {
        return Ok(());
    }
    Err(err(
        Code::Permission,
        format!(
            "nothing was applied: the kernel refused process_madvise for {denied} bytes (EPERM/EACCES): madvd needs CAP_SYS_NICE and ptrace read access to the targets: {RUN_AS_ROOT}"
        ),
    ))
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
        // No code is guessed from an I/O error: an unreadable file is 1.
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = Err::<(), _>(io).context("/etc/shadow").unwrap_err();
        assert_eq!(code_of(&e), Code::Failure);
        // The outermost code wins: an `--ops` usage error met in a file is 1.
        let e = in_file(
            err(Code::Usage, "unknown access primitive `x`"),
            "a.ron:3:5",
        );
        assert_eq!(code_of(&e), Code::Failure);
        assert_eq!(one_line(&e), "a.ron:3:5: unknown access primitive `x`");
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = with_source(Code::Failure, "cannot read policy p.ron", io);
        assert_eq!(one_line(&e), "cannot read policy p.ron: entity not found");
    }

    #[test]
    fn nothing_applied_for_lack_of_privilege_is_4() {
        let mut errors = BTreeMap::new();
        assert!(require_applied(false, 0, &errors).is_ok(), "nothing asked");
        errors.insert("unmapped".to_string(), 4096);
        assert!(require_applied(false, 0, &errors).is_ok());
        errors.insert("permission".to_string(), 8192);
        let e = require_applied(false, 0, &errors).unwrap_err();
        assert_eq!(code_of(&e), Code::Permission);
        assert!(one_line(&e).contains("CAP_SYS_NICE and ptrace read access"));
        assert!(
            require_applied(false, 4096, &errors).is_ok(),
            "some applied"
        );
        assert!(require_applied(true, 0, &errors).is_ok(), "dry run");
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

//! Pressure stall information: `/proc/pressure/<resource>` and a cgroup v2 group's
//! `<resource>.pressure` (Documentation/accounting/psi.rst). Both have the same format:
//!
//! ```text
//! some avg10=0.00 avg60=0.00 avg300=0.00 total=0
//! full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//! ```
//!
//! `total` is the cumulated stall time in µs. DAMOS' `some_mem_psi_us` quota goal uses the
//! growth of the `some` total of memory between two evaluations (mm/damon/core.c 6.9+).

use crate::sysroot::SysRoot;
use std::path::{Path, PathBuf};
use thiserror::Error;

use super::error::ReadError;

#[derive(Debug, Error)]
pub enum PsiError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{path}: no `some` line")]
    NoSome { path: PathBuf },
}

/// One PSI line.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PsiLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Cumulated stall time, µs.
    pub total_us: u64,
}

/// A pressure file: `some` always, `full` when the resource has it (not for system CPU on
/// older kernels).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Psi {
    pub some: PsiLine,
    pub full: Option<PsiLine>,
}

/// Parse a pressure file. `path` only names the source in errors.
pub fn parse(text: &[u8], path: &Path) -> Result<Psi, PsiError> {
    let text = String::from_utf8_lossy(text);
    let mut some = None;
    let mut full = None;
    for (i, raw) in text.lines().enumerate() {
        let err = |msg: String| {
            PsiError::from(ReadError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                msg,
            })
        };
        let mut words = raw.split_whitespace();
        let Some(kind) = words.next() else { continue };
        let mut line = PsiLine::default();
        let mut seen = 0u8;
        for w in words {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| err(format!("expected key=value, got {w:?}")))?;
            let bad = || err(format!("bad value {v:?} for {k}"));
            match k {
                "avg10" => line.avg10 = v.parse().map_err(|_| bad())?,
                "avg60" => line.avg60 = v.parse().map_err(|_| bad())?,
                "avg300" => line.avg300 = v.parse().map_err(|_| bad())?,
                "total" => {
                    line.total_us = v.parse().map_err(|_| bad())?;
                    seen |= 1;
                }
                _ => {} // newer kernels may add fields
            }
        }
        if seen == 0 {
            return Err(err(format!("no total= in {kind} line")));
        }
        match kind {
            "some" => some = Some(line),
            "full" => full = Some(line),
            other => return Err(err(format!("unknown line kind {other:?}"))),
        }
    }
    let some = some.ok_or_else(|| PsiError::NoSome {
        path: path.to_path_buf(),
    })?;
    Ok(Psi { some, full })
}

/// Read and parse a pressure file at `path` (a cgroup's `memory.pressure`, for instance).
pub fn read_path(path: &Path) -> Result<Psi, PsiError> {
    let bytes = std::fs::read(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes, path)
}

/// `<proc>/pressure/<resource>` (`memory`, `io`, `cpu`).
pub fn system_path(root: &SysRoot, resource: &str) -> PathBuf {
    root.proc_file(&format!("pressure/{resource}"))
}

/// The system-wide pressure of `resource`.
pub fn read_system(root: &SysRoot, resource: &str) -> Result<Psi, PsiError> {
    read_path(&system_path(root, resource))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_some_and_full() {
        let t = b"some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=789\n";
        let p = parse(t, Path::new("memory")).unwrap();
        assert_eq!(p.some.total_us, 123_456);
        assert_eq!(p.some.avg10, 1.5);
        assert_eq!(p.some.avg60, 0.25);
        assert_eq!(p.full.unwrap().total_us, 789);
    }

    #[test]
    fn some_only_is_fine_missing_some_is_not() {
        let p = parse(
            b"some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n",
            Path::new("cpu"),
        )
        .unwrap();
        assert_eq!((p.some.total_us, p.full), (5, None));
        let e = parse(
            b"full avg10=0.00 avg60=0.00 avg300=0.00 total=5\n",
            Path::new("x"),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "x: no `some` line");
    }

    #[test]
    fn errors_name_path_and_line() {
        let e = parse(
            b"some avg10=0.00 total=1\nfull total=abc\n",
            Path::new("/p"),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "/p:2: bad value \"abc\" for total");
        let e = parse(b"some avg10=0.00\n", Path::new("/p")).unwrap_err();
        assert_eq!(e.to_string(), "/p:1: no total= in some line");
    }

    #[test]
    fn reads_under_sysroot() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        std::fs::create_dir_all(root.proc_file("pressure")).unwrap();
        std::fs::write(
            system_path(&root, "memory"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=42\n",
        )
        .unwrap();
        assert_eq!(read_system(&root, "memory").unwrap().some.total_us, 42);
        assert!(matches!(
            read_system(&root, "io"),
            Err(PsiError::Read(ReadError::Io { .. }))
        ));
    }
}

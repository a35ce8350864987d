//! Swap as the kernel reports it: `/proc/swaps` (mm/swapfile.c `swap_show`, Linux 6.12) and
//! `SwapTotal` / `SwapFree` of `/proc/meminfo` (fs/proc/meminfo.c). Used by detection (the
//! refault probe needs swap), by the probe (it stops when free swap runs short) and by the
//! actuator's swap headroom rail. Not the test fixture (that is `testkit::swap`).

use crate::kernel::meminfo::{self, MeminfoError};
use crate::sysroot::SysRoot;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use thiserror::Error;

use super::error::ReadError;

#[derive(Debug, Error)]
pub enum SwapError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Meminfo(#[from] MeminfoError),
}

/// One active swap area. Sizes in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapArea {
    /// Path (octal-escaped by the kernel for spaces: `\040`, kept as written).
    pub filename: String,
    /// `partition` or `file`.
    pub kind: String,
    pub size: u64,
    pub used: u64,
    pub priority: i32,
}

/// Swap totals from meminfo, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwapMem {
    pub total: u64,
    pub free: u64,
}

impl SwapMem {
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.free)
    }
}

/// Parse `/proc/swaps`: a header line, then `Filename Type Size Used Priority` (sizes in KiB).
pub fn parse_swaps(r: impl BufRead, path: &Path) -> Result<Vec<SwapArea>, SwapError> {
    let mut out = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line.map_err(|source| ReadError::Io {
            path: path.to_owned(),
            source,
        })?;
        if i == 0 || line.trim().is_empty() {
            continue;
        }
        let err = |msg: String| {
            SwapError::from(ReadError::Parse {
                path: path.to_owned(),
                line: i + 1,
                msg,
            })
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 5 {
            return Err(err(format!("expected 5 columns, found {}", f.len())));
        }
        let kib = |v: &str, what: &str| {
            v.parse::<u64>()
                .map(|k| k * 1024)
                .map_err(|_| err(format!("bad {what} {v:?}")))
        };
        out.push(SwapArea {
            filename: f[0].to_owned(),
            kind: f[1].to_owned(),
            size: kib(f[2], "size")?,
            used: kib(f[3], "used")?,
            priority: f[4]
                .parse()
                .map_err(|_| err(format!("bad priority {:?}", f[4])))?,
        });
    }
    Ok(out)
}

/// `SwapTotal` / `SwapFree` out of meminfo text (parsed by [`meminfo::parse`]; other lines
/// ignored). Missing lines: an error naming them (every kernel with `CONFIG_SWAP` prints both).
pub fn parse_meminfo_swap(text: &[u8], path: &Path) -> Result<SwapMem, SwapError> {
    let info = meminfo::parse(text, path)?;
    match (info.swap_total(), info.swap_free()) {
        (Some(total), Some(free)) => Ok(SwapMem { total, free }),
        _ => Err(ReadError::Parse {
            path: path.to_owned(),
            line: 0,
            msg: "no SwapTotal/SwapFree lines".into(),
        }
        .into()),
    }
}

fn open(path: PathBuf) -> Result<(std::io::BufReader<std::fs::File>, PathBuf), SwapError> {
    match std::fs::File::open(&path) {
        Ok(f) => Ok((std::io::BufReader::new(f), path)),
        Err(source) => Err(ReadError::Io { path, source }.into()),
    }
}

/// `<proc>/swaps`.
pub fn read_swaps(root: &SysRoot) -> Result<Vec<SwapArea>, SwapError> {
    let (r, p) = open(root.proc_file("swaps"))?;
    parse_swaps(r, &p)
}

/// `SwapTotal` / `SwapFree` of `<proc>/meminfo`.
pub fn read_swap_mem(root: &SysRoot) -> Result<SwapMem, SwapError> {
    let path = root.proc_file("meminfo");
    let text = std::fs::read(&path).map_err(|source| ReadError::Io {
        path: path.clone(),
        source,
    })?;
    parse_meminfo_swap(&text, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_swaps() {
        let t = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/zram0                              partition\t1048572\t\t2048\t\t100\n/swap\\040file                            file\t\t4096\t\t0\t\t-2\n";
        let v = parse_swaps(t.as_bytes(), Path::new("swaps")).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[0],
            SwapArea {
                filename: "/dev/zram0".into(),
                kind: "partition".into(),
                size: 1048572 * 1024,
                used: 2048 * 1024,
                priority: 100
            }
        );
        assert_eq!(
            (v[1].filename.as_str(), v[1].priority),
            ("/swap\\040file", -2)
        );
        assert!(parse_swaps(
            "Filename Type Size Used Priority\n".as_bytes(),
            Path::new("s")
        )
        .unwrap()
        .is_empty());
        let e =
            parse_swaps("h\n/dev/x partition 1 2\n".as_bytes(), Path::new("swaps")).unwrap_err();
        assert_eq!(e.to_string(), "swaps:2: expected 5 columns, found 4");
    }

    #[test]
    fn parses_meminfo_swap() {
        let t = "MemTotal:       24000000 kB\nSwapCached:            0 kB\nSwapTotal:       1048572 kB\nSwapFree:         1000000 kB\n";
        let m = parse_meminfo_swap(t.as_bytes(), Path::new("meminfo")).unwrap();
        assert_eq!(
            m,
            SwapMem {
                total: 1048572 * 1024,
                free: 1000000 * 1024
            }
        );
        assert_eq!(m.used(), 48572 * 1024);
        assert!(parse_meminfo_swap(b"MemTotal: 1 kB\n", Path::new("m")).is_err());
    }

    #[test]
    fn reads_under_a_fixture_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("proc")).unwrap();
        std::fs::write(
            d.path().join("proc/meminfo"),
            "SwapTotal: 0 kB\nSwapFree: 0 kB\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("proc/swaps"),
            "Filename Type Size Used Priority\n",
        )
        .unwrap();
        let root = SysRoot::under(d.path());
        assert_eq!(read_swap_mem(&root).unwrap(), SwapMem::default());
        assert!(read_swaps(&root).unwrap().is_empty());
    }
}

//! `/proc/iomem`: the physical address map, one resource per line, `START-END : NAME` with
//! `END` inclusive and two spaces of indentation per nesting level (`r_show`,
//! kernel/resource.c 6.12). Non-root readers see every address as zero (`r_show` hides them
//! without `CAP_SYS_ADMIN`), which [`read`] refuses instead of answering "no RAM".
//!
//! [`parse`] and [`biggest_system_ram`] are pure; [`read`] is the thin reader under a
//! [`SysRoot`].

use super::error::{numbered_lines, ReadError};
use crate::region::AddrRange;
use crate::sysroot::SysRoot;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The name of a RAM resource (`IORESOURCE_SYSTEM_RAM`, "System RAM").
pub const SYSTEM_RAM: &str = "System RAM";

/// One line of `/proc/iomem`, its end made exclusive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IomemEntry {
    /// Nesting level: 0 for a top-level resource.
    pub depth: usize,
    pub range: AddrRange,
    pub name: String,
}

#[derive(Debug, Error)]
pub enum IomemError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{0}: every address reads as zero: physical addresses in /proc/iomem need root (CAP_SYS_ADMIN)")]
    Hidden(PathBuf),
    #[error("{0}: no \"System RAM\" range")]
    NoRam(PathBuf),
}

/// Parse `/proc/iomem`. `path` only names the source in errors.
pub fn parse(text: &[u8], path: &Path) -> Result<Vec<IomemEntry>, ReadError> {
    let mut out = Vec::new();
    for line in numbered_lines(text, path) {
        let (no, line) = line?;
        let err = |msg: String| ReadError::Parse {
            path: path.to_owned(),
            line: no,
            msg,
        };
        let body = line.trim_start_matches(' ');
        let depth = (line.len() - body.len()) / 2;
        let (range, name) = body
            .split_once(" : ")
            .ok_or_else(|| err(format!("expected START-END : NAME, got {line:?}")))?;
        let (s, e) = range
            .split_once('-')
            .ok_or_else(|| err(format!("expected START-END, got {range:?}")))?;
        let hex =
            |v: &str| u64::from_str_radix(v, 16).map_err(|_| err(format!("bad hex address {v:?}")));
        let (start, end) = (hex(s)?, hex(e)?);
        if end < start {
            return Err(err(format!("end {end:#x} before start {start:#x}")));
        }
        out.push(IomemEntry {
            depth,
            // An all-zero line (hidden addresses) stays empty rather than one byte long.
            range: AddrRange::new(start, if end == 0 { 0 } else { end.saturating_add(1) }),
            name: name.to_owned(),
        });
    }
    Ok(out)
}

/// The top-level "System RAM" ranges, in address order (what `walk_system_ram_res` visits).
pub fn system_ram(entries: &[IomemEntry]) -> Vec<AddrRange> {
    let mut v: Vec<AddrRange> = entries
        .iter()
        .filter(|e| e.depth == 0 && e.name == SYSTEM_RAM && !e.range.is_empty())
        .map(|e| e.range)
        .collect();
    v.sort();
    v
}

/// The biggest "System RAM" range, as DAMON_RECLAIM's default target:
/// `damon_find_biggest_system_ram()` and its `walk_system_ram()` callback (mm/damon/core.c,
/// Linux 6.12) keep a range only when strictly bigger than the one kept, so among equal
/// sizes the lowest-addressed wins. The kernel keeps the resource's inclusive end and
/// `damon_set_regions()` aligns it up to `DAMON_MIN_REGION`; the exclusive end here is the
/// same range.
pub fn biggest_system_ram(ram: &[AddrRange]) -> Option<AddrRange> {
    let mut best: Option<AddrRange> = None;
    for r in ram {
        if best.is_none_or(|b| r.len() > b.len()) {
            best = Some(*r);
        }
    }
    best
}

/// `<proc>/iomem`.
pub fn path_in(root: &SysRoot) -> PathBuf {
    root.proc_file("iomem")
}

/// The top-level "System RAM" ranges of `root`'s `/proc/iomem`; an error when it cannot be
/// read, hides its addresses (not root), or lists no RAM.
pub fn read_system_ram(root: &SysRoot) -> Result<Vec<AddrRange>, IomemError> {
    let path = path_in(root);
    let text = std::fs::read(&path).map_err(|source| ReadError::Io {
        path: path.clone(),
        source,
    })?;
    let entries = parse(&text, &path)?;
    if !entries.is_empty() && entries.iter().all(|e| e.range.is_empty()) {
        return Err(IomemError::Hidden(path));
    }
    let ram = system_ram(&entries);
    if ram.is_empty() {
        return Err(IomemError::NoRam(path));
    }
    Ok(ram)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A QEMU guest's map (2 GiB), shortened.
    pub const QEMU: &str = "\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-7ffdffff : System RAM
  1b000000-1c001fff : Kernel code
  1c200000-1c9fffff : Kernel data
7ffe0000-7fffffff : Reserved
fd000000-fdffffff : 0000:00:02.0
";

    #[test]
    fn parses_depth_inclusive_ends_and_names() {
        let p = Path::new("iomem");
        let e = parse(QEMU.as_bytes(), p).unwrap();
        assert_eq!(e.len(), 10);
        assert_eq!(
            e[1],
            IomemEntry {
                depth: 0,
                range: AddrRange::new(0x1000, 0x9fc00),
                name: "System RAM".into()
            }
        );
        assert_eq!((e[4].depth, e[4].name.as_str()), (1, "System ROM"));
        assert_eq!(
            system_ram(&e),
            vec![
                AddrRange::new(0x1000, 0x9fc00),
                AddrRange::new(0x100000, 0x7ffe0000)
            ]
        );
    }

    #[test]
    fn biggest_is_the_first_of_the_largest() {
        let a = AddrRange::new(0, 0x1000);
        let b = AddrRange::new(0x10000, 0x12000);
        let c = AddrRange::new(0x20000, 0x22000);
        assert_eq!(biggest_system_ram(&[a, b, c]), Some(b));
        assert_eq!(biggest_system_ram(&[]), None);
    }

    #[test]
    fn bad_lines_name_path_and_line() {
        let p = Path::new("/proc/iomem");
        let e = parse(b"00000000-00000fff : Reserved\nzz-10 : x\n", p).unwrap_err();
        assert_eq!(e.to_string(), "/proc/iomem:2: bad hex address \"zz\"");
        let e = parse(b"100-1 : x\n", p).unwrap_err();
        assert_eq!(e.to_string(), "/proc/iomem:1: end 0x1 before start 0x100");
        let e = parse(b"garbage\n", p).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("/proc/iomem:1: expected START-END : NAME"));
    }

    #[test]
    fn reader_refuses_hidden_addresses_and_no_ram() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        std::fs::create_dir_all(&root.proc).unwrap();
        let e = read_system_ram(&root).unwrap_err().to_string();
        assert!(e.contains("proc/iomem: No such file"), "{e}");
        std::fs::write(
            path_in(&root),
            "00000000-00000000 : Reserved\n00000000-00000000 : System RAM\n",
        )
        .unwrap();
        let e = read_system_ram(&root).unwrap_err().to_string();
        assert!(e.contains("need root"), "{e}");
        std::fs::write(path_in(&root), "00000000-00000fff : Reserved\n").unwrap();
        let e = read_system_ram(&root).unwrap_err().to_string();
        assert!(e.ends_with("iomem: no \"System RAM\" range"), "{e}");
        std::fs::write(path_in(&root), QEMU).unwrap();
        assert_eq!(read_system_ram(&root).unwrap().len(), 2);
    }
}

//! `/proc/PID/maps`: one line per VMA.
//!
//! Format (fs/proc/task_mmu.c `show_map_vma`, Linux 6.12):
//! `start-end perms offset major:minor inode` then, padded with spaces, the name: a path
//! (may contain spaces; a path whose file was removed ends with ` (deleted)`; a newline in a
//! path is escaped as `\012`), or `[heap]`, `[stack]`, `[vdso]`, `[vvar]`, `[vsyscall]`,
//! `[anon:NAME]` (prctl PR_SET_VMA_ANON_NAME), `[anon_shmem:NAME]`, or nothing (anonymous).
//!
//! [`parse_maps`] is pure (any `BufRead`); [`read_maps`] opens a file. Live targets read their
//! maps through [`crate::process::Process::maps`], which checks the pidfd after opening.

use crate::region::AddrRange;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// A parse error, naming the line (1-based) and what was wrong.
pub type MapsError = super::error::ReadError;

/// The permission column: `rwxp` / `rwxs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// `s` (VM_MAYSHARE) rather than `p` (private, copy-on-write).
    pub shared: bool,
}

/// What a VMA maps, from the last column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmaName {
    /// No name: anonymous memory (mmap MAP_ANONYMOUS, or a brk area without `[heap]`).
    Anonymous,
    /// A file; `deleted` when the name ended with ` (deleted)` (stripped from `path`).
    File { path: PathBuf, deleted: bool },
    /// `[heap]`.
    Heap,
    /// `[stack]` (also the old per-thread `[stack:TID]`).
    Stack,
    /// `[anon:NAME]`: anonymous memory named with PR_SET_VMA_ANON_NAME.
    AnonNamed(String),
    /// Any other bracketed name: `[vdso]`, `[vvar]`, `[vsyscall]`, `[anon_shmem:NAME]`, `[uprobes]`...
    Special(String),
}

/// One VMA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    pub range: AddrRange,
    pub perms: Perms,
    pub offset: u64,
    pub dev: (u32, u32),
    pub inode: u64,
    pub name: VmaName,
}

impl Vma {
    /// Anonymous memory: no file behind it (`[heap]`, `[stack]`, `[anon:…]`, unnamed).
    pub fn is_anonymous(&self) -> bool {
        matches!(
            self.name,
            VmaName::Anonymous | VmaName::Heap | VmaName::Stack | VmaName::AnonNamed(_)
        )
    }

    /// Private (copy-on-write) anonymous memory: the only memory the refault probe can page
    /// out one page at a time (shared anonymous memory is shmem; file pages are dropped, not
    /// swapped, so they would look "never left" or "refaulted" for reasons of the page cache).
    pub fn is_private_anonymous(&self) -> bool {
        !self.perms.shared && self.is_anonymous()
    }

    /// `[vsyscall]`: the legacy gate page, not a VMA of the mm (it is not in the mm's VMA
    /// tree, so the kernel's `__damon_va_three_regions` never sees it). Excluded from target ranges.
    pub fn is_gate(&self) -> bool {
        matches!(&self.name, VmaName::Special(s) if s == "[vsyscall]")
    }
}

fn perr(path: &Path, line: usize, msg: impl Into<String>) -> MapsError {
    MapsError::Parse {
        path: path.to_owned(),
        line,
        msg: msg.into(),
    }
}

/// Parse one maps line. `path`/`lineno` only label errors.
pub fn parse_line(line: &str, path: &Path, lineno: usize) -> Result<Vma, MapsError> {
    // Five whitespace-separated fields, then the name (which may contain spaces).
    let mut rest = line;
    let mut fields = [""; 5];
    for (i, f) in fields.iter_mut().enumerate() {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ').unwrap_or(rest.len());
        if end == 0 {
            return Err(perr(path, lineno, format!("expected 6 columns, found {i}")));
        }
        *f = &rest[..end];
        rest = &rest[end..];
    }
    let [range, perms, offset, dev, inode] = fields;
    let (s, e) = range
        .split_once('-')
        .ok_or_else(|| perr(path, lineno, format!("bad address range {range:?}")))?;
    let hex = |v: &str, what: &str| {
        u64::from_str_radix(v, 16).map_err(|_| perr(path, lineno, format!("bad {what} {v:?}")))
    };
    let start = hex(s, "start address")?;
    let end = hex(e, "end address")?;
    if end < start {
        return Err(perr(
            path,
            lineno,
            format!("end {end:#x} below start {start:#x}"),
        ));
    }
    let pb = perms.as_bytes();
    if pb.len() != 4 {
        return Err(perr(path, lineno, format!("bad perms {perms:?}")));
    }
    let flag = |i: usize, yes: u8| -> Result<bool, MapsError> {
        match pb[i] {
            b'-' => Ok(false),
            c if c == yes => Ok(true),
            _ => Err(perr(path, lineno, format!("bad perms {perms:?}"))),
        }
    };
    let shared = match pb[3] {
        b's' => true,
        b'p' => false,
        _ => return Err(perr(path, lineno, format!("bad perms {perms:?}"))),
    };
    let perms = Perms {
        read: flag(0, b'r')?,
        write: flag(1, b'w')?,
        exec: flag(2, b'x')?,
        shared,
    };
    let offset = hex(offset, "offset")?;
    let (ma, mi) = dev
        .split_once(':')
        .ok_or_else(|| perr(path, lineno, format!("bad device {dev:?}")))?;
    let dev = (
        u32::from_str_radix(ma, 16)
            .map_err(|_| perr(path, lineno, format!("bad device {dev:?}")))?,
        u32::from_str_radix(mi, 16)
            .map_err(|_| perr(path, lineno, format!("bad device {dev:?}")))?,
    );
    let inode = inode
        .parse::<u64>()
        .map_err(|_| perr(path, lineno, format!("bad inode {inode:?}")))?;
    let name = parse_name(rest.trim_start_matches(' '));
    Ok(Vma {
        range: AddrRange::new(start, end),
        perms,
        offset,
        dev,
        inode,
        name,
    })
}

fn parse_name(n: &str) -> VmaName {
    if n.is_empty() {
        return VmaName::Anonymous;
    }
    if n.starts_with('[') && n.ends_with(']') {
        return match n {
            "[heap]" => VmaName::Heap,
            "[stack]" => VmaName::Stack,
            _ if n.starts_with("[stack:") => VmaName::Stack,
            _ if n.starts_with("[anon:") => VmaName::AnonNamed(n[6..n.len() - 1].to_owned()),
            _ => VmaName::Special(n.to_owned()),
        };
    }
    match n.strip_suffix(" (deleted)") {
        Some(p) => VmaName::File {
            path: p.into(),
            deleted: true,
        },
        None => VmaName::File {
            path: n.into(),
            deleted: false,
        },
    }
}

/// Parse a whole maps file. Lines must be sorted by address (the kernel writes them so);
/// `path` labels errors. Empty input (a kernel thread or a zombie) gives no VMAs.
pub fn parse_maps(r: impl BufRead, path: &Path) -> Result<Vec<Vma>, MapsError> {
    let mut out: Vec<Vma> = Vec::new();
    for_each_vma(r, path, |v| out.push(v))?;
    Ok(out)
}

/// Parse a maps file one VMA at a time, streamed (`f` gets each VMA in address order; no
/// line is kept after it is parsed). The same checks as [`parse_maps`].
pub fn for_each_vma(r: impl BufRead, path: &Path, mut f: impl FnMut(Vma)) -> Result<(), MapsError> {
    let mut prev: Option<AddrRange> = None;
    // Names are bytes; non-UTF-8 file names are kept lossily (they only label VMAs).
    for item in super::error::numbered_lines(r, path) {
        let (lineno, line) = item?;
        let vma = parse_line(&line, path, lineno)?;
        if let Some(prev) = prev {
            if vma.range.start < prev.end {
                return Err(perr(
                    path,
                    lineno,
                    format!("VMA {} overlaps or precedes {}", vma.range, prev),
                ));
            }
        }
        prev = Some(vma.range);
        f(vma);
    }
    Ok(())
}

/// [`target_ranges`] of a maps file, streamed: memory in proportion to the ranges (adjacent
/// VMAs joined), not to the VMAs or the text.
pub fn parse_target_ranges(r: impl BufRead, path: &Path) -> Result<Vec<AddrRange>, MapsError> {
    let mut out = Vec::new();
    for_each_vma(r, path, |v| push_range(&mut out, &v))?;
    Ok(out)
}

fn push_range(out: &mut Vec<AddrRange>, v: &Vma) {
    if v.is_gate() || v.range.is_empty() {
        return;
    }
    match out.last_mut() {
        Some(last) if last.end == v.range.start => last.end = v.range.end,
        _ => out.push(v.range),
    }
}

/// Read and parse `path` (a fixture or a live file; live targets use `Process::maps`).
pub fn read_maps(path: &Path) -> Result<Vec<Vma>, MapsError> {
    let f = std::fs::File::open(path).map_err(|source| MapsError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_maps(std::io::BufReader::new(f), path)
}

/// The ranges the monitor's three-region init feeds on: every VMA but the `[vsyscall]` gate
/// page, sorted, adjacent VMAs coalesced (only the gaps between them matter to
/// `__damon_va_three_regions`, mm/damon/vaddr.c 6.12).
pub fn target_ranges(vmas: &[Vma]) -> Vec<AddrRange> {
    let mut out: Vec<AddrRange> = Vec::new();
    for v in vmas {
        push_range(&mut out, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Vec<Vma>, MapsError> {
        parse_maps(s.as_bytes(), Path::new("fixture/maps"))
    }

    #[test]
    fn parses_a_typical_line() {
        let v = p("55d0c3a00000-55d0c3a21000 r-xp 00002000 fd:01 1837042                    /usr/bin/sleep\n").unwrap();
        assert_eq!(v.len(), 1);
        let v = &v[0];
        assert_eq!(v.range, AddrRange::new(0x55d0c3a00000, 0x55d0c3a21000));
        assert_eq!(
            v.perms,
            Perms {
                read: true,
                write: false,
                exec: true,
                shared: false
            }
        );
        assert_eq!((v.offset, v.dev, v.inode), (0x2000, (0xfd, 1), 1837042));
        assert_eq!(
            v.name,
            VmaName::File {
                path: "/usr/bin/sleep".into(),
                deleted: false
            }
        );
        assert!(!v.is_anonymous());
    }

    #[test]
    fn errors_name_the_line() {
        let e = p("1000-2000 rw-p 00000000 00:00 0\nzz-3000 rw-p 00000000 00:00 0\n").unwrap_err();
        assert_eq!(e.to_string(), "fixture/maps:2: bad start address \"zz\"");
        let e = p("1000-2000 rw-q 00000000 00:00 0\n").unwrap_err();
        assert!(e.to_string().contains(":1: bad perms"), "{e}");
        let e = p("1000-2000 rw-p 00000000\n").unwrap_err();
        assert!(e.to_string().contains("expected 6 columns, found 3"), "{e}");
        let e =
            p("3000-4000 rw-p 00000000 00:00 0\n1000-2000 rw-p 00000000 00:00 0\n").unwrap_err();
        assert!(e.to_string().contains(":2: VMA"), "{e}");
    }

    #[test]
    fn target_ranges_coalesce_adjacent_and_drop_vsyscall() {
        let text = "1000-2000 r--p 00000000 00:00 0\n2000-3000 rw-p 00000000 00:00 0\n5000-6000 rw-p 00000000 00:00 0\nffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n";
        let v = p(text).unwrap();
        let want = vec![
            AddrRange::new(0x1000, 0x3000),
            AddrRange::new(0x5000, 0x6000),
        ];
        assert_eq!(target_ranges(&v), want);
        // Streamed, the same ranges, and the same errors.
        let path = Path::new("fixture/maps");
        assert_eq!(parse_target_ranges(text.as_bytes(), path).unwrap(), want);
        let e = parse_target_ranges(
            &b"3000-4000 rw-p 00000000 00:00 0\n1000-2000 rw-p 00000000 00:00 0\n"[..],
            path,
        )
        .unwrap_err();
        assert!(e.to_string().contains(":2: VMA"), "{e}");
    }
}

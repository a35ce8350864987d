//! `/proc/PID/smaps`: per VMA, the maps line then `Key: value kB` lines and `VmFlags:`.
//!
//! Format: fs/proc/task_mmu.c `show_smap` / `__show_smap` / `show_smap_vma_flags` (Linux 6.12).
//! `Referenced` counts the VMA's pages whose PTE Accessed bit or `PG_referenced` is set: after
//! `clear_refs` 1 (see [`super::clear_refs`]) it tells which VMAs were touched since — at VMA
//! granularity only. Reading smaps walks the VMA's page tables: it costs in proportion to
//! the mapped size.
//!
//! [`parse_smaps`] is pure; live targets read through `Process::smaps` (pidfd-checked).
//! [`RefsScan`] is the lean, incremental half the smaps access check needs: each VMA's range
//! and `Referenced`, from text fed in slices, keeping nothing else.

use super::maps::{parse_line, MapsError, Vma};
use crate::region::AddrRange;
use std::io::BufRead;
use std::path::Path;

/// One VMA of smaps. Sizes in bytes (the file says kB). Fields a kernel does not print stay 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmapsVma {
    pub vma: Vma,
    pub size: u64,
    pub rss: u64,
    pub pss: u64,
    pub referenced: u64,
    pub anonymous: u64,
    pub anon_huge_pages: u64,
    pub swap: u64,
    pub locked: u64,
    /// Two-letter flags (`rd wr mr mw me ac sd lo hg nh ...`, `show_smap_vma_flags`).
    pub vm_flags: Vec<String>,
}

impl SmapsVma {
    pub fn has_flag(&self, f: &str) -> bool {
        self.vm_flags.iter().any(|x| x == f)
    }
    /// VM_LOCKED (`lo`) or anything locked: its pages cannot be paged out.
    pub fn is_locked(&self) -> bool {
        self.has_flag("lo") || self.locked > 0
    }
}

fn is_header(line: &str) -> bool {
    is_header_bytes(line.as_bytes())
}

fn is_header_bytes(line: &[u8]) -> bool {
    // "start-end perms ..." — the first token is hex-hex; "Key:" lines have a colon in it.
    let tok = line.split(|&b| b == b' ').next().unwrap_or(&[]);
    !tok.contains(&b':')
        && tok.contains(&b'-')
        && tok.iter().all(|&b| b == b'-' || b.is_ascii_hexdigit())
}

/// One VMA as [`RefsScan`] sees it: its range and its `Referenced` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmaRefs {
    pub range: AddrRange,
    pub referenced: u64,
}

/// An incremental scan of smaps text for each VMA's range and `Referenced` line only, fed
/// in any number of slices of whole lines. Pure. It keeps the VMA in progress, the line
/// number (for errors) and the end of the last VMA (the kernel prints them in address
/// order); nothing grows with the number of VMAs, so a target with 100 000 mappings costs
/// no more memory than one with ten.
#[derive(Debug, Default)]
pub struct RefsScan {
    cur: Option<AddrRange>,
    last_end: u64,
    line: usize,
    record_end: bool,
}

impl RefsScan {
    /// A scan that starts at a VMA's header (the start of a file, or where a read of a
    /// kept-open smaps file resumes).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the text fed so far ends a VMA's record: its `VmFlags:` line, the last the
    /// kernel prints for a VMA (fs/proc/task_mmu.c `show_smap`, Linux 3.8 to 6.12).
    pub fn at_record_end(&self) -> bool {
        self.record_end
    }

    /// The end of the last VMA seen (0 before any).
    pub fn last_end(&self) -> u64 {
        self.last_end
    }

    /// Feed `text`: whole lines (a final line without its newline counts as whole). `f`
    /// gets each VMA at its `Referenced:` line. `path` labels errors, with the line number
    /// counted over everything fed.
    pub fn feed(
        &mut self,
        text: &[u8],
        path: &Path,
        mut f: impl FnMut(VmaRefs),
    ) -> Result<(), MapsError> {
        let perr = |line: usize, msg: String| MapsError::Parse {
            path: path.to_owned(),
            line,
            msg,
        };
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            self.line += 1;
            let n = self.line;
            if is_header_bytes(line) {
                let tok = line.split(|&b| b == b' ').next().unwrap_or(&[]);
                let lossy = || String::from_utf8_lossy(tok).into_owned();
                let (s, e) = std::str::from_utf8(tok)
                    .ok()
                    .and_then(|t| t.split_once('-'))
                    .ok_or_else(|| perr(n, format!("bad address range {:?}", lossy())))?;
                let hex = |v: &str| u64::from_str_radix(v, 16).ok();
                let (Some(start), Some(end)) = (hex(s), hex(e)) else {
                    return Err(perr(n, format!("bad address range {:?}", lossy())));
                };
                if end < start {
                    return Err(perr(n, format!("end {end:#x} below start {start:#x}")));
                }
                if start < self.last_end {
                    return Err(perr(
                        n,
                        format!(
                            "VMA {:#x}-{end:#x} overlaps or precedes the one ending at {:#x}",
                            start, self.last_end
                        ),
                    ));
                }
                self.cur = Some(AddrRange::new(start, end));
                self.last_end = end;
                self.record_end = false;
                continue;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(perr(
                    n,
                    format!(
                        "expected `Key: value`, got {:?}",
                        String::from_utf8_lossy(line)
                    ),
                ));
            };
            let (key, val) = (&line[..colon], &line[colon + 1..]);
            if key == b"VmFlags" {
                self.record_end = true;
                continue;
            }
            if key != b"Referenced" {
                continue;
            }
            let Some(range) = self.cur else {
                return Err(perr(n, "field before the first VMA line".into()));
            };
            let v = String::from_utf8_lossy(val);
            let num = v.trim().trim_end_matches("kB").trim();
            let kb: u64 = num
                .parse()
                .map_err(|_| perr(n, format!("bad value for Referenced: {:?}", v.trim())))?;
            f(VmaRefs {
                range,
                referenced: kb * 1024,
            });
        }
        Ok(())
    }
}

/// Parse a whole smaps file (`path` only labels errors). Unknown keys are ignored.
pub fn parse_smaps(r: impl BufRead, path: &Path) -> Result<Vec<SmapsVma>, MapsError> {
    let mut out: Vec<SmapsVma> = Vec::new();
    for item in super::error::numbered_lines(r, path) {
        let (lineno, line) = item?;
        if is_header(&line) {
            let vma = parse_line(&line, path, lineno)?;
            out.push(SmapsVma {
                vma,
                size: 0,
                rss: 0,
                pss: 0,
                referenced: 0,
                anonymous: 0,
                anon_huge_pages: 0,
                swap: 0,
                locked: 0,
                vm_flags: Vec::new(),
            });
            continue;
        }
        let Some(cur) = out.last_mut() else {
            return Err(MapsError::Parse {
                path: path.to_owned(),
                line: lineno,
                msg: "field before the first VMA line".into(),
            });
        };
        let Some((key, val)) = line.split_once(':') else {
            return Err(MapsError::Parse {
                path: path.to_owned(),
                line: lineno,
                msg: format!("expected `Key: value`, got {line:?}"),
            });
        };
        if key == "VmFlags" {
            cur.vm_flags = val.split_whitespace().map(str::to_owned).collect();
            continue;
        }
        let slot = match key {
            "Size" => &mut cur.size,
            "Rss" => &mut cur.rss,
            "Pss" => &mut cur.pss,
            "Referenced" => &mut cur.referenced,
            "Anonymous" => &mut cur.anonymous,
            "AnonHugePages" => &mut cur.anon_huge_pages,
            "Swap" => &mut cur.swap,
            "Locked" => &mut cur.locked,
            _ => continue,
        };
        let num = val.trim().trim_end_matches("kB").trim();
        let kb: u64 = num.parse().map_err(|_| MapsError::Parse {
            path: path.to_owned(),
            line: lineno,
            msg: format!("bad value for {key}: {:?}", val.trim()),
        })?;
        *slot = kb * 1024;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "\
5596d7a9d000-5596d7a9f000 r--p 00000000 fe:00 247030                     /usr/bin/cat
Size:                  8 kB
Rss:                   8 kB
Referenced:            8 kB
Anonymous:             0 kB
AnonHugePages:         0 kB
Swap:                  0 kB
Locked:                0 kB
THPeligible:           0
VmFlags: rd mr mw me 
7f0000000000-7f0000400000 rw-p 00000000 00:00 0 
Size:               4096 kB
Rss:                2048 kB
Referenced:          512 kB
Anonymous:          2048 kB
AnonHugePages:      2048 kB
Swap:                 16 kB
Locked:                0 kB
VmFlags: rd wr mr mw me ac hg lo
";

    #[test]
    fn parses_fields_and_flags() {
        let v = parse_smaps(FIXTURE.as_bytes(), Path::new("smaps")).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].size, v[0].referenced, v[0].anonymous),
            (8192, 8192, 0)
        );
        assert_eq!(v[0].vm_flags, ["rd", "mr", "mw", "me"]);
        assert!(!v[0].is_locked());
        assert_eq!(
            (v[1].rss, v[1].referenced, v[1].anon_huge_pages, v[1].swap),
            (2 << 20, 512 << 10, 2 << 20, 16 << 10)
        );
        assert!(v[1].has_flag("hg") && v[1].is_locked() && v[1].vma.is_private_anonymous());
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_smaps("Size: 8 kB\n".as_bytes(), Path::new("smaps")).unwrap_err();
        assert!(e.to_string().starts_with("smaps:1: field before"), "{e}");
        let bad = FIXTURE.replace("Rss:                2048 kB", "Rss:                lots kB");
        let e = parse_smaps(bad.as_bytes(), Path::new("smaps")).unwrap_err();
        assert!(
            e.to_string().starts_with("smaps:13: bad value for Rss"),
            "{e}"
        );
    }

    fn scan(chunks: &[&str]) -> Result<Vec<VmaRefs>, MapsError> {
        let mut s = RefsScan::new();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c.as_bytes(), Path::new("smaps"), |v| out.push(v))?;
        }
        Ok(out)
    }

    #[test]
    fn the_refs_scan_agrees_with_the_whole_parse_in_any_slices() {
        let whole: Vec<VmaRefs> = parse_smaps(FIXTURE.as_bytes(), Path::new("smaps"))
            .unwrap()
            .iter()
            .map(|v| VmaRefs {
                range: v.vma.range,
                referenced: v.referenced,
            })
            .collect();
        assert_eq!(whole.len(), 2);
        assert_eq!(scan(&[FIXTURE]).unwrap(), whole);
        // Cut between any two lines.
        let lines: Vec<&str> = FIXTURE.split_inclusive('\n').collect();
        for cut in 0..=lines.len() {
            let (a, b) = (lines[..cut].concat(), lines[cut..].concat());
            assert_eq!(scan(&[&a, &b]).unwrap(), whole, "cut at line {cut}");
        }
        let mut s = RefsScan::new();
        assert!(!s.at_record_end());
        s.feed(lines[..3].concat().as_bytes(), Path::new("smaps"), |_| {})
            .unwrap();
        assert!(!s.at_record_end());
        assert_eq!(s.last_end(), 0x5596d7a9f000);
        s.feed(lines[3..10].concat().as_bytes(), Path::new("smaps"), |_| {})
            .unwrap();
        assert!(s.at_record_end());
    }

    #[test]
    fn the_refs_scan_names_bad_lines() {
        let e = scan(&["Referenced: 8 kB\n"]).unwrap_err();
        assert!(e.to_string().starts_with("smaps:1: field before"), "{e}");
        let bad = FIXTURE.replace("Referenced:          512 kB", "Referenced:          x kB");
        let e = scan(&[&bad]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("smaps:14: bad value for Referenced"),
            "{e}"
        );
        // Line numbers count across slices.
        let (a, b) = bad.split_at(bad.find("7f00").unwrap());
        let e = scan(&[a, b]).unwrap_err();
        assert!(e.to_string().starts_with("smaps:14:"), "{e}");
        let e = scan(&["3000-2000 rw-p 0 00:00 0\n"]).unwrap_err();
        assert!(e.to_string().contains("below start"), "{e}");
        let e = scan(&["1000-3000 rw-p 0 00:00 0\n2000-4000 rw-p 0 00:00 0\n"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("smaps:2: VMA 0x2000-0x4000 overlaps"),
            "{e}"
        );
        let e = scan(&["1000-3000 rw-p 0 00:00 0\nnonsense\n"]).unwrap_err();
        assert!(
            e.to_string().contains("smaps:2: expected `Key: value`"),
            "{e}"
        );
        assert!(scan(&[""]).unwrap().is_empty());
    }

    #[test]
    fn empty_is_no_vmas() {
        assert!(parse_smaps(&b""[..], Path::new("smaps"))
            .unwrap()
            .is_empty());
    }
}

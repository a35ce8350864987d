//! `/proc/PID/smaps`: per VMA, the maps line then `Key: value kB` lines and `VmFlags:`.
//!
//! Format: fs/proc/task_mmu.c `show_smap` / `__show_smap` / `show_smap_vma_flags` (Linux 6.12).
//! `Referenced` counts the VMA's pages whose PTE Accessed bit or `PG_referenced` is set: after
//! `clear_refs` 1 (see [`super::clear_refs`]) it tells which VMAs were touched since — at VMA
//! granularity only. Reading smaps walks the VMA's page tables: it costs in proportion to
//! the mapped size.
//!
//! [`parse_smaps`] is pure; live targets read through `Process::smaps` (pidfd-checked).

use super::maps::{parse_line, MapsError, Vma};
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
    // "start-end perms ..." — the first token is hex-hex; "Key:" lines have a colon in it.
    let tok = line.split(' ').next().unwrap_or("");
    !tok.contains(':')
        && tok.contains('-')
        && tok.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
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

    #[test]
    fn empty_is_no_vmas() {
        assert!(parse_smaps(&b""[..], Path::new("smaps"))
            .unwrap()
            .is_empty());
    }
}

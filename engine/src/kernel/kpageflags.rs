//! `/proc/kpageflags`: one native-endian u64 of page flags per PFN, at offset `pfn * 8`
//! (Documentation/admin-guide/mm/pagemap.rst; bits in include/uapi/linux/kernel-page-flags.h,
//! Linux 6.12). Readable by root only; PFNs come from the pagemap (bits 0–54, root only too).
//!
//! [`parse_entry`] and [`is_huge`] are pure; [`KpageFlags`] is the thin reader under a
//! [`SysRoot`].

use crate::sysroot::SysRoot;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const KPF_LRU: u64 = 1 << 5;
pub const KPF_SLAB: u64 = 1 << 7;
pub const KPF_BUDDY: u64 = 1 << 10;
pub const KPF_COMPOUND_HEAD: u64 = 1 << 15;
pub const KPF_COMPOUND_TAIL: u64 = 1 << 16;
pub const KPF_HUGE: u64 = 1 << 17;
pub const KPF_NOPAGE: u64 = 1 << 20;
pub const KPF_THP: u64 = 1 << 22;
pub const KPF_OFFLINE: u64 = 1 << 23;
pub const KPF_ZERO_PAGE: u64 = 1 << 24;
/// A kernel-hacking bit (`KPF_RESERVED`, fs/proc/page.c 6.12).
pub const KPF_RESERVED: u64 = 1 << 32;

/// Part of a huge or large folio (THP, mTHP, any compound page). Pure.
pub fn is_huge(flags: u64) -> bool {
    flags & (KPF_THP | KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL) != 0
}

/// The flags of one entry (8 bytes, native-endian); `None` for a short read. Pure.
pub fn parse_entry(b: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(..8)?.try_into().ok()?))
}

/// A file of one native-endian u64 per PFN (`/proc/kpageflags`, `/proc/kpagecgroup`),
/// opened once.
#[derive(Debug)]
pub struct PerPfnFile {
    file: File,
    path: PathBuf,
}

/// `<proc>/kpageflags`.
pub type KpageFlags = PerPfnFile;

impl PerPfnFile {
    /// `<proc>/kpageflags`.
    pub fn open(root: &SysRoot) -> std::io::Result<Self> {
        Self::open_path(root.proc_file("kpageflags"))
    }
    pub fn open_path(path: PathBuf) -> std::io::Result<Self> {
        Ok(Self {
            file: File::open(&path)?,
            path,
        })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The entry of `pfn`; `None` past the end of memory or when the read fails.
    pub fn read(&self, pfn: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        match self.file.read_at(&mut b, pfn.checked_mul(8)?) {
            Ok(8) => parse_entry(&b),
            _ => None,
        }
    }
}

impl PerPfnFile {
    /// The entries of PFNs `first..first + n`, in order; `None` when any is missing.
    pub fn read_run(&self, first: u64, n: usize) -> Option<Vec<u64>> {
        let mut buf = vec![0u8; n.checked_mul(8)?];
        let done = super::read_full_at(&self.file, &mut buf, first.checked_mul(8)?).ok()?;
        (done == buf.len()).then(|| buf.chunks_exact(8).filter_map(parse_entry).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_and_compound_pages_are_not_probed() {
        assert!(is_huge(KPF_THP | KPF_COMPOUND_HEAD));
        assert!(is_huge(KPF_COMPOUND_TAIL));
        assert!(!is_huge(1 << 5 | 1 << 11)); // LRU | ANON
        assert!(!is_huge(0));
    }

    #[test]
    fn reads_entries_under_a_sysroot() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        std::fs::create_dir_all(&root.proc).unwrap();
        let mut bytes = Vec::new();
        for f in [0u64, KPF_THP, 1 << 5] {
            bytes.extend_from_slice(&f.to_ne_bytes());
        }
        bytes.extend_from_slice(&[1, 2, 3]); // a torn last entry
        std::fs::write(root.proc_file("kpageflags"), bytes).unwrap();
        let k = KpageFlags::open(&root).unwrap();
        assert_eq!(
            (k.read(0), k.read(1), k.read(2)),
            (Some(0), Some(KPF_THP), Some(1 << 5))
        );
        assert_eq!((k.read(3), k.read(u64::MAX)), (None, None));
        assert_eq!(k.read_run(1, 2), Some(vec![KPF_THP, 1 << 5]));
        assert_eq!(k.read_run(1, 3), None);
        assert_eq!(parse_entry(&[0; 7]), None);
        assert!(k.path().ends_with("proc/kpageflags"));
    }
}

//! `/sys/kernel/mm/page_idle/bitmap` (idle page tracking, `CONFIG_IDLE_PAGE_TRACKING`).
//!
//! From mm/page_idle.c and Documentation/admin-guide/mm/idle_page_tracking.rst (Linux 6.12):
//! - the file is a bitmap indexed by PFN, read and written only in whole 8-byte words
//!   (`BITMAP_CHUNK_SIZE`): PFN `p` is bit `p % 64` of the u64 at byte offset
//!   `p / 64 * 8`; offsets or lengths not a multiple of 8 are EINVAL;
//! - writing a 1 bit marks that page idle (and clears its PTE Accessed bits through rmap);
//!   0 bits are ignored; reading gives 1 for a page still idle, after checking (and
//!   clearing) its PTE Accessed bits, so a page touched since it was marked reads 0;
//! - only user pages on an LRU list count (`page_idle_get_folio`): other pages, pages still
//!   in a per-CPU LRU batch, and THP *tail* pages read 0 and ignore writes — a huge page is
//!   tracked through its head page;
//! - reads stop at `max_pfn`, and the loop only advances its output at the end of a full
//!   word, so the last, partial word reads as 0 bytes (a short read); a write there
//!   processes the pages but returns 0; a write at or past `max_pfn` is ENXIO.
//!
//! The pure helpers here do the word/bit math; [`IdleBitmap`] does the `pread`/`pwrite`,
//! batching consecutive words into one call.

use crate::sysroot::SysRoot;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Under `/sys`.
pub const BITMAP_REL: &str = "kernel/mm/page_idle/bitmap";
/// Pages per bitmap word (`BITMAP_CHUNK_BITS`, mm/page_idle.c 6.12).
pub const WORD_BITS: u64 = 64;
/// Bytes per bitmap word (`BITMAP_CHUNK_SIZE`).
pub const WORD_BYTES: u64 = 8;

/// The word holding `pfn`'s bit.
pub const fn word_index(pfn: u64) -> u64 {
    pfn / WORD_BITS
}

/// Byte offset of the word holding `pfn`'s bit: `pfn / 64 * 8`.
pub const fn word_offset(pfn: u64) -> u64 {
    word_index(pfn) * WORD_BYTES
}

/// `pfn`'s bit inside its word.
pub const fn bit_mask(pfn: u64) -> u64 {
    1 << (pfn % WORD_BITS)
}

/// Group PFNs into `(word index, mask of their bits)`, sorted by word, one entry per word.
pub fn words_for(pfns: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = pfns
        .into_iter()
        .map(|p| (word_index(p), bit_mask(p)))
        .collect();
    v.sort_unstable_by_key(|w| w.0);
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (w, m) in v {
        match out.last_mut() {
            Some(last) if last.0 == w => last.1 |= m,
            _ => out.push((w, m)),
        }
    }
    out
}

/// Split sorted, distinct word indexes into runs of consecutive words: `(first, len)`.
pub fn runs(words: &[u64]) -> Vec<(u64, usize)> {
    let mut out: Vec<(u64, usize)> = Vec::new();
    for &w in words {
        match out.last_mut() {
            Some((first, len)) if *first + *len as u64 == w => *len += 1,
            _ => out.push((w, 1)),
        }
    }
    out
}

/// Whether `pfn` reads idle in a word read back (`None`: the word could not be read).
pub fn is_idle(word: Option<u64>, pfn: u64) -> Option<bool> {
    word.map(|w| w & bit_mask(pfn) != 0)
}

/// The open bitmap (read and write; root only).
#[derive(Debug)]
pub struct IdleBitmap {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
}

impl IdleBitmap {
    /// `<sys>/kernel/mm/page_idle/bitmap`.
    pub fn path_in(root: &SysRoot) -> PathBuf {
        root.sys_file(BITMAP_REL)
    }

    pub fn open(root: &SysRoot) -> io::Result<Self> {
        Self::open_path(&Self::path_in(root))
    }

    pub fn open_path(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Self {
            file,
            path: path.to_owned(),
            buf: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why `root`'s bitmap cannot be opened for reading and writing, if it cannot.
    pub fn why_not_open(root: &SysRoot) -> Option<String> {
        let path = Self::path_in(root);
        Self::open_path(&path)
            .err()
            .map(|e| format!("cannot open {}: {e}", path.display()))
    }

    /// Mark the pages of `words` (`(word index, mask)`, sorted, from [`words_for`]) idle,
    /// one `pwrite` per run of consecutive words. A short write (the partial last word)
    /// is not an error: the kernel processed those pages but reports 0 bytes for them.
    pub fn set_idle(&mut self, words: &[(u64, u64)]) -> io::Result<()> {
        let idx: Vec<u64> = words.iter().map(|w| w.0).collect();
        let mut i = 0;
        for (first, len) in runs(&idx) {
            self.buf.clear();
            for &(_, mask) in &words[i..i + len] {
                self.buf.extend_from_slice(&mask.to_ne_bytes());
            }
            i += len;
            let off = first * WORD_BYTES;
            let mut done = 0;
            while done < self.buf.len() {
                match self.file.write_at(&self.buf[done..], off + done as u64) {
                    Ok(0) => break, // the partial last word: see the module doc
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Read the words `words` (sorted, distinct indexes), one `pread` per run; `None` for a
    /// word the kernel did not return (past `max_pfn`, or the partial last word).
    pub fn read_words(&mut self, words: &[u64]) -> io::Result<Vec<Option<u64>>> {
        let mut out = Vec::with_capacity(words.len());
        for (first, len) in runs(words) {
            self.buf.clear();
            self.buf.resize(len * WORD_BYTES as usize, 0);
            let off = first * WORD_BYTES;
            let done = super::read_full_at(&self.file, &mut self.buf, off)?;
            let full = done / WORD_BYTES as usize;
            for k in 0..len {
                out.push((k < full).then(|| {
                    let b = &self.buf[k * 8..k * 8 + 8];
                    u64::from_ne_bytes(b.try_into().expect("8 bytes"))
                }));
            }
        }
        Ok(out)
    }
}

impl IdleBitmap {
    /// Whether each of `pfns` reads idle (`None`: its word was not returned), one `pread`
    /// per run of consecutive words.
    pub fn idle_of(&mut self, pfns: &[u64]) -> io::Result<Vec<Option<bool>>> {
        idle_of_with(pfns, |words| self.read_words(words))
    }
}

/// Whether each of `pfns` reads idle, given `read` of the bitmap's words (sorted, distinct
/// indexes; one answer each, `None`: not returned): the word math of [`IdleBitmap::idle_of`]
/// for any reader (the actuator's goes through its system seam). No read for no PFN.
pub fn idle_of_with(
    pfns: &[u64],
    read: impl FnOnce(&[u64]) -> io::Result<Vec<Option<u64>>>,
) -> io::Result<Vec<Option<bool>>> {
    if pfns.is_empty() {
        return Ok(Vec::new());
    }
    let words: Vec<u64> = words_for(pfns.iter().copied())
        .iter()
        .map(|w| w.0)
        .collect();
    let got = read(&words)?;
    Ok(pfns
        .iter()
        .map(|&p| {
            let k = words.binary_search(&word_index(p)).ok()?;
            is_idle(got.get(k).copied().flatten(), p)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn word_and_bit_math() {
        assert_eq!((word_index(0), word_offset(0), bit_mask(0)), (0, 0, 1));
        assert_eq!(
            (word_index(63), word_offset(63), bit_mask(63)),
            (0, 0, 1 << 63)
        );
        assert_eq!((word_index(64), word_offset(64), bit_mask(64)), (1, 8, 1));
        assert_eq!(word_offset(0x12345), 0x12345 / 64 * 8);
    }

    #[test]
    fn groups_pfns_per_word_and_runs() {
        let w = words_for([130, 1, 0, 64, 129, 1]);
        assert_eq!(w, vec![(0, 0b11), (1, 1), (2, 0b110)]);
        assert_eq!(runs(&[0, 1, 2, 5, 6, 9]), vec![(0, 3), (5, 2), (9, 1)]);
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(is_idle(Some(0b100), 2), Some(true));
        assert_eq!(is_idle(Some(0b100), 66), Some(true));
        assert_eq!(is_idle(Some(0b100), 3), Some(false));
        assert_eq!(is_idle(None, 3), None);
    }

    proptest! {
        #[test]
        fn words_for_covers_exactly_the_pfns(pfns in proptest::collection::vec(0u64..10_000, 0..200)) {
            let w = words_for(pfns.iter().copied());
            prop_assert!(w.windows(2).all(|p| p[0].0 < p[1].0));
            let mut back: Vec<u64> = w.iter()
                .flat_map(|&(i, m)| (0..64).filter(move |b| m & (1 << b) != 0).map(move |b| i * 64 + b))
                .collect();
            back.sort_unstable();
            let mut want = pfns.clone();
            want.sort_unstable();
            want.dedup();
            prop_assert_eq!(back, want);
        }
    }

    /// A regular file stands in for the bitmap: writes land at `pfn/64*8`, and a file
    /// ending in the middle of a word reads short, as the kernel's partial last word does.
    #[test]
    fn writes_and_reads_words_at_their_offsets_with_a_short_last_word() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bitmap");
        std::fs::write(&p, vec![0u8; 8 * 4 + 3]).unwrap(); // 4 full words + a partial one
        let mut bm = IdleBitmap::open_path(&p).unwrap();
        let w = words_for([3, 64 + 5, 3 * 64 + 63]);
        bm.set_idle(&w).unwrap();
        let raw = std::fs::read(&p).unwrap();
        assert_eq!(&raw[0..8], &(1u64 << 3).to_ne_bytes());
        assert_eq!(&raw[8..16], &(1u64 << 5).to_ne_bytes());
        assert_eq!(&raw[16..24], &[0; 8]);
        assert_eq!(&raw[24..32], &(1u64 << 63).to_ne_bytes());
        let got = bm.read_words(&[0, 1, 3, 4, 9]).unwrap();
        assert_eq!(
            got,
            vec![Some(1 << 3), Some(1 << 5), Some(1 << 63), None, None]
        );
        assert_eq!(is_idle(got[0], 3), Some(true));
        assert_eq!(is_idle(got[0], 4), Some(false));
        let idle = bm.idle_of(&[64 + 5, 3, 4, 4 * 64]).unwrap();
        assert_eq!(idle, vec![Some(true), Some(true), Some(false), None]);
    }
}

//! `/proc/PID/pagemap`: one little-endian u64 per virtual page.
//!
//! Bit layout from Documentation/admin-guide/mm/pagemap.rst (Linux 6.12):
//! - bits 0-54: page frame number (PFN) if present — zero unless CAP_SYS_ADMIN;
//! - bits 0-4 swap type, 5-54 swap offset if swapped;
//! - bit 55: PTE is soft-dirty; bit 56: page exclusively mapped; bit 57: uffd-wp;
//! - bit 58: guard region (6.14+); bit 61: file-page or shared-anon;
//! - bit 62: page swapped; bit 63: page present.
//!
//! Bit 62 is set for every non-present swap-format PTE, not only swap areas: migration,
//! device, hwpoison and PTE-marker entries too (fs/proc/task_mmu.c 6.12,
//! `pte_to_pagemap_entry`). [`PagemapEntry::residency`] tells them apart.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const PM_PFN_MASK: u64 = (1 << 55) - 1;
pub const PM_SOFT_DIRTY: u64 = 1 << 55;
pub const PM_MMAP_EXCLUSIVE: u64 = 1 << 56;
pub const PM_UFFD_WP: u64 = 1 << 57;
/// Guard region (`MADV_GUARD_INSTALL`), Linux 6.14+: a PTE marker, never a page.
pub const PM_GUARD_REGION: u64 = 1 << 58;
pub const PM_FILE: u64 = 1 << 61;
pub const PM_SWAP: u64 = 1 << 62;
pub const PM_PRESENT: u64 = 1 << 63;

/// Swap types at or above this are not swap areas but the kernel's special swap entries:
/// include/linux/swap.h (Linux 6.12) carves them from the top of the 5-bit type
/// (`MAX_SWAPFILES = 32 - SWP_DEVICE_NUM - SWP_MIGRATION_NUM - SWP_HWPOISON_NUM -
/// SWP_PTE_MARKER_NUM`): device-private/exclusive (up to 4), migration (3), hwpoison (1),
/// PTE markers (1; uffd-wp, poison, guard). 32 − 9 = 23 covers every configuration; a real
/// swap area of type ≥ 23 (24 swap areas at once) only loses evidence, never gains it.
pub const FIRST_SPECIAL_SWAP_TYPE: u64 = 23;

/// What a pagemap entry says about where the page is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residency {
    /// Mapped to a page in memory (bit 63).
    Present,
    /// In a swap area (bit 62, a swap area's type). `slot`: type and offset (bits 0-54;
    /// zero when the reader lacks CAP_SYS_ADMIN, fs/proc/task_mmu.c `pte_to_pagemap_entry`).
    Swapped { slot: u64 },
    /// No page and no swap entry: never touched, discarded, or no VMA there at all.
    None,
    /// Not present, but not a swap area's entry either: a migration entry (the page is in
    /// memory, being moved: the PTE comes back present without any access), a device-private
    /// or exclusive entry, hwpoison, or a PTE marker (uffd-wp, guard region). Told apart
    /// by the swap type (root only), the uffd-wp bit (57) and the guard bit (58, 6.14+).
    Special,
}

/// One decoded pagemap entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PagemapEntry(pub u64);

impl PagemapEntry {
    pub const fn present(self) -> bool {
        self.0 & PM_PRESENT != 0
    }
    pub const fn swapped(self) -> bool {
        self.0 & PM_SWAP != 0
    }
    pub const fn soft_dirty(self) -> bool {
        self.0 & PM_SOFT_DIRTY != 0
    }
    /// Mapped by exactly one process (bit 56).
    pub const fn exclusive(self) -> bool {
        self.0 & PM_MMAP_EXCLUSIVE != 0
    }
    /// File-backed or shared anonymous (bit 61).
    pub const fn file_or_shared(self) -> bool {
        self.0 & PM_FILE != 0
    }
    /// Swap type (bits 0-4) of a swap entry; zero unless the reader has CAP_SYS_ADMIN.
    pub const fn swap_type(self) -> u64 {
        self.0 & 0x1f
    }

    /// Where the page is (see [`Residency`]).
    pub const fn residency(self) -> Residency {
        if self.present() {
            Residency::Present
        } else if self.0 & PM_GUARD_REGION != 0 {
            Residency::Special
        } else if self.swapped() {
            if self.swap_type() >= FIRST_SPECIAL_SWAP_TYPE || self.0 & PM_UFFD_WP != 0 {
                Residency::Special
            } else {
                Residency::Swapped {
                    slot: self.0 & PM_PFN_MASK,
                }
            }
        } else {
            Residency::None
        }
    }

    /// The PFN when present and readable (root), else `None`.
    pub const fn pfn(self) -> Option<u64> {
        if self.present() && self.0 & PM_PFN_MASK != 0 {
            Some(self.0 & PM_PFN_MASK)
        } else {
            None
        }
    }
}

/// Decode a buffer of raw pagemap bytes (native = little endian on every Linux madvd runs
/// on). A trailing partial entry is ignored.
pub fn parse_entries(bytes: &[u8], out: &mut Vec<PagemapEntry>) {
    out.extend(
        bytes
            .chunks_exact(8)
            .map(|c| PagemapEntry(u64::from_ne_bytes(c.try_into().expect("8-byte chunk")))),
    );
}

/// An open `/proc/PID/pagemap`, read with `pread` at `vaddr / page_size * 8`.
#[derive(Debug)]
pub struct Pagemap {
    file: File,
    path: PathBuf,
    page_size: u64,
    buf: Vec<u8>,
}

impl Pagemap {
    pub fn open(path: &Path, page_size: u64) -> io::Result<Self> {
        Ok(Self {
            file: File::open(path)?,
            path: path.to_owned(),
            page_size,
            buf: Vec::new(),
        })
    }

    /// Wrap a pagemap file already opened (e.g. through a pidfd check).
    pub fn from_file(file: File, path: PathBuf, page_size: u64) -> Self {
        Self {
            file,
            path,
            page_size,
            buf: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries for `nr_pages` pages starting at the page containing `vaddr`.
    /// Fewer may come back when the read is short (end of the address space).
    pub fn read(
        &mut self,
        vaddr: u64,
        nr_pages: usize,
        out: &mut Vec<PagemapEntry>,
    ) -> io::Result<()> {
        out.clear();
        self.buf.resize(nr_pages * 8, 0);
        let off = vaddr / self.page_size * 8;
        let done = super::read_full_at(&self.file, &mut self.buf, off)?;
        parse_entries(&self.buf[..done], out);
        Ok(())
    }

    /// One entry (a single 8-byte pread).
    pub fn entry(&mut self, vaddr: u64) -> io::Result<Option<PagemapEntry>> {
        let mut b = [0u8; 8];
        let off = vaddr / self.page_size * 8;
        match self.file.read_at(&mut b, off)? {
            8 => Ok(Some(PagemapEntry(u64::from_ne_bytes(b)))),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_documented_bits() {
        let raw: Vec<u8> = [
            PM_PRESENT | 0x1234,
            PM_SWAP | (7 << 5),
            PM_PRESENT | PM_SOFT_DIRTY | PM_MMAP_EXCLUSIVE,
            0,
        ]
        .iter()
        .flat_map(|v: &u64| v.to_ne_bytes())
        .chain([1, 2, 3]) // a partial trailing entry is ignored
        .collect();
        let mut out = Vec::new();
        parse_entries(&raw, &mut out);
        assert_eq!(out.len(), 4);
        assert!(out[0].present() && !out[0].swapped() && out[0].pfn() == Some(0x1234));
        assert!(out[1].swapped() && !out[1].present() && out[1].pfn().is_none());
        assert!(out[2].soft_dirty() && out[2].exclusive() && out[2].pfn().is_none());
        assert_eq!(out[3], PagemapEntry(0));
    }

    #[test]
    fn residency_tells_swap_areas_from_special_entries() {
        let e = |v: u64| PagemapEntry(v).residency();
        assert_eq!(e(PM_PRESENT | 0x1234), Residency::Present);
        assert_eq!(e(PM_PRESENT | PM_SOFT_DIRTY), Residency::Present);
        assert_eq!(e(0), Residency::None);
        assert_eq!(e(PM_SOFT_DIRTY), Residency::None);
        // Swap area 1, offset 7 (root view); without CAP_SYS_ADMIN type and offset read 0.
        assert_eq!(
            e(PM_SWAP | 1 | (7 << 5)),
            Residency::Swapped { slot: 1 | (7 << 5) }
        );
        assert_eq!(e(PM_SWAP), Residency::Swapped { slot: 0 });
        assert_eq!(
            e(PM_SWAP | PM_SOFT_DIRTY | PM_MMAP_EXCLUSIVE | 2),
            Residency::Swapped { slot: 2 }
        );
        // A migration entry (x86-64 6.12, all options: MAX_SWAPFILES 24, migration 25..27;
        // with fewer options they move up, never below 23), hwpoison, a PTE marker (31).
        for ty in [23, 24, 25, 27, 31] {
            assert_eq!(e(PM_SWAP | ty | (9 << 5)), Residency::Special, "type {ty}");
        }
        assert_eq!(e(PM_SWAP | 22), Residency::Swapped { slot: 22 });
        // uffd-wp markers and swap entries, guard regions (6.14+).
        assert_eq!(e(PM_SWAP | PM_UFFD_WP), Residency::Special);
        assert_eq!(e(PM_GUARD_REGION), Residency::Special);
    }

    #[test]
    fn reads_entries_at_page_offsets_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pagemap");
        let vals: Vec<u64> = (0..16)
            .map(|i| if i % 2 == 0 { PM_PRESENT | i } else { PM_SWAP })
            .collect();
        std::fs::write(
            &p,
            vals.iter()
                .flat_map(|v| v.to_ne_bytes())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let mut pm = Pagemap::open(&p, 4096).unwrap();
        let mut out = Vec::new();
        pm.read(4 * 4096 + 17, 4, &mut out).unwrap();
        assert_eq!(
            out.iter().map(|e| e.present()).collect::<Vec<_>>(),
            [true, false, true, false]
        );
        pm.read(14 * 4096, 8, &mut out).unwrap(); // short read at the end
        assert_eq!(out.len(), 2);
        assert_eq!(
            pm.entry(2 * 4096).unwrap(),
            Some(PagemapEntry(PM_PRESENT | 2))
        );
        assert_eq!(pm.entry(100 * 4096).unwrap(), None);
    }
}

//! The child's memory: one or two private anonymous mappings viewed as one page array, and
//! the content every page must hold at each generation.

use crate::spec::{Fill, Sparse, WorkloadSpec, PAGE};
use engine::AddrRange;
use std::io;

pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Content of word `j` of page `page` at generation `gen`.
pub(crate) fn word(fill: Fill, seed: u64, page: u64, gen: u32, j: usize) -> u64 {
    let h = splitmix(seed ^ (page << 20) ^ ((gen as u64) << 52));
    match fill {
        Fill::Random => splitmix(h ^ j as u64),
        Fill::Pattern => {
            if j == 0 {
                h
            } else {
                // A 16-byte motif repeated: compresses well but is not a same-filled page.
                (h >> (j % 2 * 32)) & 0xffff_ffff
            }
        }
    }
}

/// The child's memory: one or two mappings viewed as one page array.
pub(crate) struct Memory {
    /// (base address, pages) of each mapping, in page-index order.
    maps: Vec<(u64, u64)>,
    pub(crate) pages: u64,
}

impl Memory {
    pub(crate) fn map(spec: &WorkloadSpec) -> io::Result<Self> {
        let pages = spec.size.div_ceil(PAGE);
        let sizes: Vec<u64> = if spec.two_mappings {
            let hot = ((pages as f64 * spec.hot_fraction).ceil() as u64).clamp(1, pages - 1);
            vec![hot, pages - hot]
        } else {
            vec![pages]
        };
        // One reservation with a PROT_NONE guard page between the mappings keeps them
        // separate VMAs (the kernel would merge adjacent anonymous mappings).
        let total = sizes.iter().sum::<u64>() + sizes.len() as u64 - 1;
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                (total * PAGE) as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut maps = Vec::new();
        let mut at = base as u64;
        for (i, &n) in sizes.iter().enumerate() {
            maps.push((at, n));
            at += n * PAGE;
            if i + 1 < sizes.len() {
                // SAFETY: the guard page lies inside the mapping made above.
                if unsafe {
                    libc::mprotect(at as *mut libc::c_void, PAGE as usize, libc::PROT_NONE)
                } != 0
                {
                    return Err(io::Error::last_os_error());
                }
                at += PAGE;
            }
        }
        for &(b, n) in &maps {
            let advice = if spec.nohugepage {
                libc::MADV_NOHUGEPAGE
            } else {
                libc::MADV_HUGEPAGE
            };
            // SAFETY: advising our own mapping; neither advice changes its contents.
            unsafe { libc::madvise(b as *mut libc::c_void, (n * PAGE) as usize, advice) };
        }
        if let Some(sp) = spec.sparse {
            map_sparse(sp)?;
        }
        Ok(Self { maps, pages })
    }

    pub(crate) fn addr(&self, page: u64) -> u64 {
        let mut p = page;
        for &(b, n) in &self.maps {
            if p < n {
                return b + p * PAGE;
            }
            p -= n;
        }
        unreachable!("page {page} beyond {} pages", self.pages)
    }

    pub(crate) fn ranges(&self) -> Vec<AddrRange> {
        self.maps
            .iter()
            .map(|&(b, n)| AddrRange::new(b, b + n * PAGE))
            .collect()
    }

    pub(crate) fn write_page(&self, spec: &WorkloadSpec, page: u64, gen: u32) {
        let p = self.addr(page) as *mut u64;
        for j in 0..(PAGE as usize / 8) {
            // SAFETY: `p` points at a mapped, writable page of ours (never unmapped while
            // the loop may touch it: unmap is refused inside the hot set and the loop is
            // paused around it); j < 512 stays inside the page.
            unsafe {
                p.add(j)
                    .write_volatile(word(spec.fill, spec.seed, page, gen, j))
            };
        }
    }

    pub(crate) fn check_page(&self, spec: &WorkloadSpec, page: u64, gen: u32) -> bool {
        let p = self.addr(page) as *const u64;
        // SAFETY: as in write_page; reads only.
        (0..(PAGE as usize / 8)).all(
            |j| unsafe { p.add(j).read_volatile() } == word(spec.fill, spec.seed, page, gen, j),
        )
    }
}

/// The spec's sparse address space ([`Sparse`]): one `MAP_NORESERVE` reservation, every other
/// piece made read-only so no two neighbours merge. Never touched, never unmapped (it lives
/// as long as the child).
pub(crate) fn map_sparse(sp: Sparse) -> io::Result<AddrRange> {
    let piece = sp.bytes / PAGE / sp.vmas * PAGE;
    let len = (piece * sp.vmas) as usize;
    // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    for i in (1..sp.vmas).step_by(2) {
        let at = base as u64 + i * piece;
        // SAFETY: the piece lies inside the mapping made above, which nothing else uses.
        if unsafe { libc::mprotect(at as *mut libc::c_void, piece as usize, libc::PROT_READ) } != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(AddrRange::new(base as u64, base as u64 + len as u64))
}

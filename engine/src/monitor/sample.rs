//! Which regions are sampled in an interval, where, and how their answers feed the access
//! rates (`damon_va_prepare_access_checks`, `damon_va_check_accesses`, mm/damon/vaddr.c
//! 6.12.117, plus madvd's sample budget and `Unknown` answers).

use super::rules::Departures;
use super::{update_access_rate, update_access_unknown, TargetState};
use crate::access::{Access, SampleReq};
use crate::region::{AddrRange, Region};
use rand::rngs::SmallRng;
use rand::RngCore;

/// Pick `quota` regions of `t` to sample (all when `quota >= n`), round-robin by address
/// from the target's cursor, and a random page in each (`damon_va_prepare_access_checks`:
/// `sampling_addr = damon_rand(start, end)`, here aligned down to `min_region`).
pub(super) fn choose_samples(
    t: &mut TargetState,
    quota: usize,
    min_region: u64,
    rng: &mut SmallRng,
) {
    let n = t.regions.len();
    t.samples.clear();
    t.sample_region.clear();
    let shift = min_region.trailing_zeros();
    if quota >= n {
        t.samples.reserve(n);
        for r in t.regions.iter_mut() {
            r.sampling_addr = random_page(rng, &r.ar, shift);
            t.samples.push(SampleReq {
                region: r.ar,
                addr: r.sampling_addr,
            });
        }
        return;
    }
    if quota == 0 {
        return;
    }
    let start = t.regions.partition_point(|r| r.start() < t.cursor);
    let start = if start >= n { 0 } else { start };
    let mut last_end = 0;
    for k in 0..quota {
        let i = (start + k) % n;
        let r = &mut t.regions[i];
        r.sampling_addr = random_page(rng, &r.ar, shift);
        t.samples.push(SampleReq {
            region: r.ar,
            addr: r.sampling_addr,
        });
        t.sample_region.push(i as u32);
        last_end = r.end();
    }
    t.cursor = last_end;
}

/// A uniformly random page of `ar` (bounds aligned to `1 << shift`), by one multiply
/// (Lemire's method without the rejection step: its bias, pages / 2^64, is far below
/// anything observable, and unlike a rejection loop it costs the same for every region
/// size — rand 0.8's `gen_range` rejects up to half of its draws for power-of-two ranges).
#[inline]
fn random_page(rng: &mut SmallRng, ar: &AddrRange, shift: u32) -> u64 {
    let pages = (ar.len() >> shift).max(1);
    let page = ((rng.next_u64() as u128 * pages as u128) >> 64) as u64;
    ar.start + (page << shift)
}

/// Feed the answers of the last check into the regions' access rates.
pub(super) fn apply_answers(t: &mut TargetState, len_window: u32, departures: Departures) {
    let n = t.regions.len();
    let full = t.samples.len() == n && t.prepared_gen == t.layout_gen;
    if full {
        for (r, a) in t.regions.iter_mut().zip(t.answers.iter()) {
            apply_one(r, *a, len_window, departures);
        }
        return;
    }
    t.per_region.clear();
    t.per_region.resize(n, Access::Unknown);
    if t.prepared_gen == t.layout_gen {
        for (&i, a) in t.sample_region.iter().zip(t.answers.iter()) {
            t.per_region[i as usize] = *a;
        }
    } else {
        // Regions changed between prepare and check (an apply report split some): give
        // each answer to the region now holding the sampled address.
        for (s, a) in t.samples.iter().zip(t.answers.iter()) {
            let i = t.regions.partition_point(|r| r.end() <= s.addr);
            if i < n && t.regions[i].ar.contains(s.addr) {
                t.per_region[i] = *a;
            }
        }
    }
    for (r, a) in t.regions.iter_mut().zip(t.per_region.iter()) {
        apply_one(r, *a, len_window, departures);
    }
}

/// One answer into one region's rates. With [`Departures::Kernel`] an `Unknown` answer
/// counts as not accessed, as `damon_va_young()` (mm/damon/vaddr.c 6.12.117) answers false
/// for a page it cannot find.
#[inline]
fn apply_one(r: &mut Region, a: Access, len_window: u32, departures: Departures) {
    match (a, departures) {
        (Access::Accessed, _) => update_access_rate(r, true, len_window),
        (Access::NotAccessed, _) | (Access::Unknown, Departures::Kernel) => {
            update_access_rate(r, false, len_window)
        }
        (Access::Unknown, Departures::Madvd) => update_access_unknown(r, len_window),
    }
}

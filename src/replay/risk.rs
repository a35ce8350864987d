//! Refault risk: bytes advised that the record shows accessed again within a window.
//!
//! Each target keeps its advised, not-yet-accessed ranges with the time they were advised.
//! A later frame's accessed regions (`nr_accesses > 0`) take the bytes they cover out of
//! that set: within the window they count as refaulted, after it as not. A range advised
//! again before any access restarts its clock (the pages are out either way, one fault
//! brings each back), so no byte is counted twice for one fault.

use crate::record::Frame;
use engine::AddrRange;

/// One pending piece: range, scheme, advised at µs.
type Pending = (AddrRange, usize, u64);

#[derive(Debug)]
pub struct Refaults {
    window_us: u64,
    pending: Vec<(u32, Vec<Pending>)>,
    /// Refaulted bytes per scheme.
    pub bytes: Vec<u64>,
}

impl Refaults {
    pub fn new(window_us: u64, schemes: usize) -> Self {
        Self {
            window_us,
            pending: Vec::new(),
            bytes: vec![0; schemes],
        }
    }

    fn target(&mut self, id: u32) -> &mut Vec<Pending> {
        let i = match self.pending.iter().position(|(t, _)| *t == id) {
            Some(i) => i,
            None => {
                self.pending.push((id, Vec::new()));
                self.pending.len() - 1
            }
        };
        &mut self.pending[i].1
    }

    /// `range` of target `id` advised by `scheme` at `t_us`.
    pub fn advised(&mut self, id: u32, range: AddrRange, scheme: usize, t_us: u64) {
        let p = self.target(id);
        let mut out = Vec::with_capacity(p.len() + 2);
        for &(x, s, t) in p.iter() {
            cut_out(&mut out, (x, s, t), range);
        }
        out.push((range, scheme, t_us));
        out.sort_by_key(|(x, _, _)| x.start);
        *p = out;
    }

    /// The pieces of `range` of target `id` advised and not accessed since, in address order.
    pub fn pieces(&self, id: u32, range: AddrRange) -> Vec<AddrRange> {
        self.pending
            .iter()
            .find(|(t, _)| *t == id)
            .map_or_else(Vec::new, |(_, p)| {
                let from = p.partition_point(|(x, _, _)| x.end <= range.start);
                p[from..]
                    .iter()
                    .take_while(|(x, _, _)| x.start < range.end)
                    .filter_map(|(x, _, _)| x.intersection(&range))
                    .collect()
            })
    }

    /// A frame as recorded: its accessed regions fault back what they cover. Returns the
    /// bytes refaulted by this frame.
    pub fn frame(&mut self, f: &Frame) -> u64 {
        let mut got = 0;
        let window = self.window_us;
        for t in &f.targets {
            let Some(i) = self.pending.iter().position(|(id, _)| *id == t.id) else {
                continue;
            };
            let p = &mut self.pending[i].1;
            // Expired pieces can no longer count.
            p.retain(|(_, _, at)| f.t_us.saturating_sub(*at) <= window);
            if p.is_empty() {
                continue;
            }
            for r in t.regions.iter().filter(|r| r[2] > 0) {
                let hit = AddrRange::new(r[0], r[1]);
                let mut out = Vec::with_capacity(p.len() + 1);
                for &(x, s, at) in p.iter() {
                    if let Some(i) = x.intersection(&hit) {
                        if at < f.t_us {
                            self.bytes[s] += i.len();
                            got += i.len();
                            cut_out(&mut out, (x, s, at), hit);
                            continue;
                        }
                    }
                    out.push((x, s, at));
                }
                *p = out;
            }
        }
        got
    }
}

/// `piece` minus `hole`, pushed to `out`.
fn cut_out(out: &mut Vec<Pending>, (x, s, t): Pending, hole: AddrRange) {
    if !x.intersects(&hole) {
        out.push((x, s, t));
        return;
    }
    if x.start < hole.start {
        out.push((AddrRange::new(x.start, hole.start), s, t));
    }
    if hole.end < x.end {
        out.push((AddrRange::new(hole.end, x.end), s, t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FrameTarget;

    fn frame(t_us: u64, regions: Vec<[u64; 4]>) -> Frame {
        Frame {
            t_us,
            aggr: t_us / 100_000,
            targets: vec![FrameTarget {
                id: 7,
                regions,
                mappings: Vec::new(),
                absent: Vec::new(),
            }],
            cgroups: Vec::new(),
        }
    }

    #[test]
    fn accessed_within_the_window_counts_once() {
        let mut r = Refaults::new(1_000_000, 2);
        r.advised(7, AddrRange::new(0, 0x4000), 1, 0);
        // Same frame time as the advice: not a refault yet.
        assert_eq!(r.frame(&frame(0, vec![[0, 0x4000, 3, 0]])), 0);
        assert_eq!(
            r.frame(&frame(500_000, vec![[0x1000, 0x2000, 1, 0]])),
            0x1000
        );
        // Again: already faulted back.
        assert_eq!(r.frame(&frame(600_000, vec![[0x1000, 0x2000, 1, 0]])), 0);
        assert_eq!(r.bytes, vec![0, 0x1000]);
    }

    #[test]
    fn after_the_window_does_not_count_and_readvice_restarts_the_clock() {
        let mut r = Refaults::new(1_000_000, 1);
        r.advised(7, AddrRange::new(0, 0x2000), 0, 0);
        r.advised(7, AddrRange::new(0x1000, 0x2000), 0, 900_000);
        assert_eq!(r.frame(&frame(1_500_000, vec![[0, 0x2000, 1, 0]])), 0x1000);
        assert_eq!(r.bytes, vec![0x1000]);
        // Unknown targets and cold regions do nothing.
        assert_eq!(r.frame(&frame(1_600_000, vec![[0, 0x2000, 0, 0]])), 0);
    }
}

//! smaps `Referenced` after `clear_refs` 1: an access check that works on every kernel
//! with `CONFIG_PROC_PAGE_MONITOR`, with no swap and no root (for one's own processes) —
//! but at **VMA granularity only**: a sample is Accessed when the VMA holding it had any
//! page referenced since the last clear, so every region inside one VMA gets the same answer.
//! Use it to tell hot mappings from cold ones, not hot pages inside one mapping.
//!
//! Each sampling interval: `clear_refs` 1 on the target at prepare (clears the PTE Accessed
//! bits and `PG_referenced` of all its pages: fs/proc/task_mmu.c `clear_refs_write`, 6.12),
//! then read smaps at check. Both walk the target's page tables: the cost grows with its
//! mapped size, hence the slow defaults. Clearing Accessed bits also hides recent use from
//! the kernel's own reclaim for a moment (kernel DAMON's vaddr checks do the same).
//!
//! **Sliced reads.** The smaps text of a target grows with its mappings (~720 bytes a VMA:
//! 72 MB for 100 000 of them, ~0.3 s of kernel time to generate), so one check reads at
//! most [`SLICE_BYTES`] of it and keeps the file open ([`Cursor`]); the next check goes on
//! from the next VMA. A *pass* runs from the lowest address up, over as many checks as it
//! takes, and ends at the end of the file or once no sample of the check lies further up;
//! the next check starts a new one. Samples below where a check's slice starts answer
//! `Unknown` (the monitor estimates them from their known samples, `finalize_unknown`).
//! Resuming costs nothing: smaps is a `seq_file` whose position is the next VMA's start
//! address (`m_start` / `proc_get_vma`, fs/proc/task_mmu.c 6.12), so a read of a kept-open
//! file starts there (a seek, in contrast, would regenerate all the text before it:
//! `traverse`, fs/seq_file.c). Every answer comes from text the kernel generated during
//! this check: each read asks for [`READ_BYTES`], more than the kernel's `seq_file` buffer
//! holds (one page, grown only for a record that does not fit it), so a read returns whole
//! records and leaves nothing generated-but-unread behind (`seq_read_iter`), and a slice
//! ends only between two records. A target of ordinary size (a few hundred VMAs) is read
//! whole at every check, as before.

use crate::access::{Access, AccessError, SampleReq};
use crate::attrs::Attrs;
use crate::kernel::clear_refs::ClearRefs;
use crate::kernel::maps::MapsError;
use crate::kernel::smaps::{RefsScan, SmapsVma, VmaRefs};
use crate::ops::common::{RefsCheck, RefsReader};
use crate::process::Process;
use crate::region::AddrRange;
use crate::sysroot::SysRoot;
use std::io::Read;
use std::path::Path;

/// The smaps access check over live targets.
pub type SmapsCheck = RefsCheck<Smaps>;

/// The smaps reader of [`SmapsCheck`]: one slice of smaps per target and interval.
pub struct Smaps;

/// The most smaps text one check reads of one target (then it stops at the next record's
/// end): ~5 800 VMAs, ~25 ms of CPU on the bench host (docs/performance.md, "Agent CPU
/// budget"), against ~0.5 s for the whole smaps of 100 000 VMAs.
pub const SLICE_BYTES: usize = 4 << 20;

/// One `read` of smaps: more than the kernel's `seq_file` buffer (module doc).
pub const READ_BYTES: usize = 64 << 10;

/// Where a target's sliced smaps read stands between checks.
#[derive(Debug, Default)]
pub struct Cursor {
    /// The smaps file of the pass in progress (`None`: the next check starts a pass).
    file: Option<std::fs::File>,
    /// The pass's scan: where it resumes ([`RefsScan::last_end`]), its line count.
    scan: RefsScan,
}

/// 500 ms sampling, 5 s aggregation: each sample walks the target's page tables twice.
pub fn default_attrs() -> Attrs {
    Attrs {
        sample_us: 500_000,
        aggr_us: 5_000_000,
        ops_update_us: 10_000_000,
        ..Attrs::default()
    }
}

/// Why the check is not usable here, if it is not: it needs `clear_refs` and smaps.
pub fn why_not(root: &SysRoot) -> Option<String> {
    if !root.proc_file("self/clear_refs").exists() || !root.proc_file("self/smaps").exists() {
        Some(
            "no /proc/PID/clear_refs or smaps (kernel without CONFIG_PROC_PAGE_MONITOR)".to_owned(),
        )
    } else {
        None
    }
}

/// The answer of a sample inside VMA `v`. Pure.
pub fn answer(v: &VmaRefs) -> Access {
    if v.referenced > 0 {
        Access::Accessed
    } else {
        Access::NotAccessed
    }
}

/// How a slice ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SliceEnd {
    /// The pass is over (end of the file, or no sample further up): the next check starts a
    /// new one from the lowest address.
    PassDone,
    /// The slice's byte bound was reached between two records: the next check resumes.
    More,
}

/// What went wrong reading a slice.
#[derive(Debug)]
pub enum SliceError {
    Io(std::io::Error),
    Parse(MapsError),
}

/// What one slice read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    pub end: SliceEnd,
    /// `read` calls made.
    pub reads: u64,
    /// VMAs answered from.
    pub vmas: u64,
}

/// Read one slice of smaps text from `r` (a pass's file, positioned where `scan` stands)
/// and answer the samples inside its VMAs; every other sample answers `Unknown`. Reads of
/// [`READ_BYTES`]; stops at the end of the file, between two records once `max_bytes` are
/// read, or between two records once no sample lies above. Pure but for `r`.
pub fn read_slice(
    r: &mut impl Read,
    scan: &mut RefsScan,
    path: &Path,
    samples: &[SampleReq],
    out: &mut [Access],
    max_bytes: usize,
) -> Result<Slice, SliceError> {
    out.iter_mut().for_each(|o| *o = Access::Unknown);
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.sort_unstable_by_key(|&i| samples[i].addr);
    // Samples below where this slice starts stay Unknown.
    let from = scan.last_end();
    let mut next = order.partition_point(|&i| samples[i].addr < from);
    let mut buf = vec![0u8; READ_BYTES];
    let (mut tail, mut total, mut reads, mut vmas) = (0usize, 0usize, 0u64, 0u64);
    let end = loop {
        if tail == buf.len() {
            // One line longer than the buffer (a path of several KiB and more): grow.
            buf.resize(buf.len() * 2, 0);
        }
        let n = match r.read(&mut buf[tail..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SliceError::Io(e)),
        };
        reads += 1;
        let filled = tail + n;
        // Whole lines only; at the end of the file, what is left is the last line.
        // (The tail carried over holds no newline: look in the new bytes only.)
        let cut = if n == 0 {
            filled
        } else {
            buf[tail..filled]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| tail + i + 1)
        };
        scan.feed(&buf[..cut], path, |v| {
            vmas += 1;
            while let Some(&i) = order.get(next) {
                let a = samples[i].addr;
                if a >= v.range.end {
                    break;
                }
                if a >= v.range.start {
                    out[i] = answer(&v);
                }
                next += 1;
            }
        })
        .map_err(SliceError::Parse)?;
        if n == 0 {
            break SliceEnd::PassDone;
        }
        buf.copy_within(cut..filled, 0);
        tail = filled - cut;
        total += n;
        if tail == 0 && scan.at_record_end() {
            if next == order.len() {
                break SliceEnd::PassDone;
            }
            if total >= max_bytes {
                break SliceEnd::More;
            }
        }
    };
    Ok(Slice { end, reads, vmas })
}

impl RefsReader for Smaps {
    const NAME: &'static str = "smaps";
    const OWNER: &'static str = "the smaps check";
    const CLEAR: ClearRefs = ClearRefs::All;
    type State = Cursor;

    fn default_attrs() -> Attrs {
        default_attrs()
    }

    fn read(
        proc: &mut Process,
        cur: &mut Cursor,
        samples: &[SampleReq],
        out: &mut [Access],
    ) -> Result<u64, AccessError> {
        let max_addr = samples.iter().map(|s| s.addr).max().unwrap_or(0);
        if cur.file.is_some() && cur.scan.last_end() > max_addr {
            // Every sample lies below where the pass stands: start a new one now.
            cur.file = None;
        }
        let mut calls = 0;
        let mut file = match cur.file.take() {
            Some(f) => f,
            None => {
                cur.scan = RefsScan::new();
                calls += 1;
                proc.open_smaps()?
            }
        };
        let path = proc.root().pid_file(proc.pid(), "smaps");
        let slice = match read_slice(&mut file, &mut cur.scan, &path, samples, out, SLICE_BYTES) {
            Ok(s) => s,
            Err(e) => {
                cur.scan = RefsScan::new();
                return Err(match e {
                    SliceError::Io(e) => proc.read_error("smaps", e),
                    SliceError::Parse(e) => proc.parse_error(e),
                }
                .into());
            }
        };
        calls += slice.reads;
        if slice.vmas == 0 && !proc.is_alive() {
            // An exited process shows empty smaps.
            return Err(AccessError::TargetGone(proc.id()));
        }
        if slice.end == SliceEnd::More {
            cur.file = Some(file);
        }
        Ok(calls)
    }

    /// A VMA-granular check sees a whole mapping referenced when one advised huge page in
    /// it was mapped young. So a VMA an advised range overlaps counts as accessed only when
    /// more of it is referenced than was advised; else its samples are NotAccessed. (Without
    /// this, a `collapse` of a region straddling a hot and a cold mapping makes the cold
    /// mapping look hot, and the policy collapses all of it, one interval after another.)
    fn after_advice(
        proc: &mut Process,
        samples: &[SampleReq],
        advised: &[AddrRange],
        out: &mut [Access],
    ) -> Result<u64, AccessError> {
        let vmas = proc.smaps()?;
        discount_advised(&vmas, samples, advised, out);
        Ok(1)
    }
}

/// For each VMA of `vmas` (sorted) that an advised range overlaps: when its `Referenced`
/// bytes are no more than the advised bytes inside it, its samples answered Accessed become
/// NotAccessed (the advice alone may have set those bits). Pure.
pub fn discount_advised(
    vmas: &[SmapsVma],
    samples: &[SampleReq],
    advised: &[AddrRange],
    out: &mut [Access],
) {
    let only_advice: Vec<AddrRange> = vmas
        .iter()
        .filter_map(|v| {
            let r = v.vma.range;
            let adv: u64 = advised
                .iter()
                .map(|a| a.end.min(r.end).saturating_sub(a.start.max(r.start)))
                .sum();
            (adv > 0 && v.referenced <= adv).then_some(r)
        })
        .collect();
    for (s, o) in samples.iter().zip(out.iter_mut()) {
        if *o == Access::Accessed && only_advice.iter().any(|v| v.contains(s.addr)) {
            *o = Access::NotAccessed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::AddrRange;

    fn vma(start: u64, end: u64, refd_kb: u64) -> String {
        format!(
            "{start:x}-{end:x} rw-p 00000000 00:00 0 \nSize: {} kB\nRss: 4 kB\nReferenced: {refd_kb} kB\nAnonymous: 4 kB\nVmFlags: rd wr mr mw me ac \n",
            (end - start) >> 10
        )
    }

    /// A file that hands out at most `per_read` whole records a read, as the kernel's
    /// `seq_file` does; counts its reads.
    struct Records {
        recs: Vec<String>,
        at: usize,
        per_read: usize,
    }
    impl Read for Records {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let mut n = 0;
            for r in self.recs[self.at..].iter().take(self.per_read) {
                if n + r.len() > buf.len() {
                    break;
                }
                buf[n..n + r.len()].copy_from_slice(r.as_bytes());
                n += r.len();
                self.at += 1;
            }
            Ok(n)
        }
    }

    fn s(addr: u64) -> SampleReq {
        SampleReq {
            region: AddrRange::new(addr, addr + 1),
            addr,
        }
    }

    /// VMAs of 16 KiB at 0x10000 × i, every third one referenced.
    fn records(n: u64) -> Vec<String> {
        (1..=n)
            .map(|i| vma(i << 16, (i << 16) + 0x4000, if i % 3 == 0 { 4 } else { 0 }))
            .collect()
    }

    fn want(addr: u64) -> Access {
        let i = addr >> 16;
        if addr & 0xffff >= 0x4000 || i == 0 {
            Access::Unknown
        } else if i % 3 == 0 {
            Access::Accessed
        } else {
            Access::NotAccessed
        }
    }

    #[test]
    fn one_slice_answers_per_vma_as_the_whole_read_did() {
        let mut f = Records {
            recs: records(10),
            at: 0,
            per_read: 1,
        };
        let samples: Vec<SampleReq> = [
            0x32000, 0x10000, 0x30000, 0x13fff, 0x14000, 0x100, 0xa0000, 0xfffff0,
        ]
        .map(s)
        .to_vec();
        let mut out = vec![Access::Accessed; samples.len()];
        let mut scan = RefsScan::new();
        let sl = read_slice(
            &mut f,
            &mut scan,
            Path::new("smaps"),
            &samples,
            &mut out,
            1 << 20,
        )
        .unwrap();
        assert_eq!(sl.end, SliceEnd::PassDone);
        for (smp, o) in samples.iter().zip(&out) {
            assert_eq!(*o, want(smp.addr), "{:#x}", smp.addr);
        }
        // The last sample lies above every VMA: the whole file was read, to its end.
        assert_eq!((sl.vmas, sl.reads), (10, 11));
    }

    #[test]
    fn a_pass_stops_past_the_last_sample() {
        let mut f = Records {
            recs: records(100),
            at: 0,
            per_read: 4,
        };
        let samples = [s(0x30000), s(0x50000)];
        let mut out = [Access::Unknown; 2];
        let mut scan = RefsScan::new();
        let sl = read_slice(
            &mut f,
            &mut scan,
            Path::new("smaps"),
            &samples,
            &mut out,
            1 << 20,
        )
        .unwrap();
        assert_eq!(sl.end, SliceEnd::PassDone);
        assert_eq!(out, [Access::Accessed, Access::NotAccessed]);
        // Two reads of four records reach VMA 8, past the sample at VMA 5.
        assert_eq!((sl.reads, sl.vmas), (2, 8));
    }

    #[test]
    fn slices_resume_where_the_last_stopped_and_cover_every_vma() {
        let n = 1000;
        let mut f = Records {
            recs: records(n),
            at: 0,
            per_read: 5,
        };
        let rec = f.recs[0].len();
        // Samples in every VMA, and above the last one (so a pass reads to the end).
        let mut samples: Vec<SampleReq> = (1..=n).map(|i| s((i << 16) + 0x100)).collect();
        samples.push(s(u64::MAX - 1));
        let mut scan = RefsScan::new();
        let mut answered = vec![false; samples.len()];
        let mut slices = 0;
        loop {
            let mut out = vec![Access::Unknown; samples.len()];
            let sl = read_slice(
                &mut f,
                &mut scan,
                Path::new("smaps"),
                &samples,
                &mut out,
                50 * rec,
            )
            .unwrap();
            slices += 1;
            // Each slice is bounded: the byte bound rounded up to a read of whole records.
            assert!(sl.vmas <= 55, "{sl:?}");
            for (i, o) in out.iter().enumerate() {
                if *o != Access::Unknown {
                    assert_eq!(*o, want(samples[i].addr));
                    assert!(!answered[i], "sample {i} answered twice in one pass");
                    answered[i] = true;
                }
            }
            if sl.end == SliceEnd::PassDone {
                break;
            }
        }
        // 20 slices of 50 VMAs, then the end of the file (the sample above every VMA keeps
        // the 20th from ending the pass).
        assert_eq!(slices, 21);
        assert_eq!(answered.iter().filter(|a| **a).count(), n as usize);
    }

    #[test]
    fn records_cut_between_reads_and_long_lines_are_read_whole() {
        // A reader that cuts anywhere (a line longer than a read, a pipe): the answers hold.
        struct Cut(Vec<u8>, usize, usize);
        impl Read for Cut {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.2.min(buf.len()).min(self.0.len() - self.1);
                buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let long = format!(
            "30000-34000 rw-p 00000000 00:00 0    /{}\nReferenced: 4 kB\nVmFlags: rd\n",
            "x".repeat(200_000)
        );
        let text = format!(
            "{}{long}{}",
            vma(0x10000, 0x14000, 0),
            vma(0x50000, 0x54000, 8)
        );
        for step in [7, 4096, 70_000] {
            let mut f = Cut(text.clone().into_bytes(), 0, step);
            let samples = [s(0x10000), s(0x30000), s(0x50000), s(0x60000)];
            let mut out = [Access::Unknown; 4];
            let mut scan = RefsScan::new();
            read_slice(
                &mut f,
                &mut scan,
                Path::new("smaps"),
                &samples,
                &mut out,
                1 << 30,
            )
            .unwrap();
            assert_eq!(
                out,
                [
                    Access::NotAccessed,
                    Access::Accessed,
                    Access::Accessed,
                    Access::Unknown
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn bad_text_is_an_error_naming_the_line() {
        let mut f = Records {
            recs: vec![vma(0x1000, 0x2000, 0), "oops\n".into()],
            at: 0,
            per_read: 10,
        };
        let mut out = [Access::Unknown];
        let e = read_slice(
            &mut f,
            &mut RefsScan::new(),
            Path::new("/proc/7/smaps"),
            &[s(0x9000)],
            &mut out,
            1 << 20,
        )
        .unwrap_err();
        match e {
            SliceError::Parse(e) => assert!(
                e.to_string().starts_with("/proc/7/smaps:7: expected"),
                "{e}"
            ),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn a_live_target_is_read_in_slices_and_answers_its_touched_mapping() {
        use crate::access::AccessCheck;
        let (c, p) = crate::ops::common::tests::sleeper();
        let id = p.id();
        let mut check = SmapsCheck::new();
        check.add_target(p).unwrap();
        let ranges = check.target_ranges(id).unwrap();
        let samples: Vec<SampleReq> = ranges.iter().map(|r| s(r.start)).collect();
        check.prepare(id, &mut samples.clone()).unwrap();
        let mut out = vec![Access::Unknown; samples.len()];
        check.check(id, &samples, &mut out).unwrap();
        // Every range starts at a VMA: every sample is answered in one slice (a small target).
        assert!(out.iter().all(|o| *o != Access::Unknown), "{out:?}");
        drop(c); // killed and reaped
        let e = check.check(id, &samples, &mut out).unwrap_err();
        assert!(matches!(e, AccessError::TargetGone(t) if t == id), "{e}");
    }

    #[test]
    fn advice_alone_does_not_make_its_vma_accessed() {
        // VMA 1: 8 KiB referenced; VMA 2: 4 KiB referenced.
        let t = "1000-3000 rw-p 00000000 00:00 0\nReferenced: 8 kB\n5000-8000 rw-p 00000000 00:00 0\nReferenced: 4 kB\n";
        let vmas = crate::kernel::smaps::parse_smaps(t.as_bytes(), Path::new("smaps")).unwrap();
        let samples: Vec<SampleReq> = [0x1000, 0x2000, 0x5000, 0x7000]
            .iter()
            .map(|&a| SampleReq {
                region: AddrRange::new(a, a + 0x1000),
                addr: a,
            })
            .collect();
        let answers = || {
            samples
                .iter()
                .map(|s| {
                    vmas.iter().find(|v| v.vma.range.contains(s.addr)).map_or(
                        Access::Unknown,
                        |v| {
                            if v.referenced > 0 {
                                Access::Accessed
                            } else {
                                Access::NotAccessed
                            }
                        },
                    )
                })
                .collect::<Vec<_>>()
        };
        // One page advised in each: VMA 2's one referenced page may be the advice's own.
        let mut out = answers();
        let advised = [
            AddrRange::new(0x1000, 0x2000),
            AddrRange::new(0x6000, 0x7000),
        ];
        discount_advised(&vmas, &samples, &advised, &mut out);
        assert_eq!(
            out,
            [
                Access::Accessed,
                Access::Accessed,
                Access::NotAccessed,
                Access::NotAccessed
            ]
        );
        // Advice in a gap changes nothing.
        let mut out = answers();
        discount_advised(&vmas, &samples, &[AddrRange::new(0x3000, 0x5000)], &mut out);
        assert_eq!(out, answers());
    }

    #[test]
    fn needs_clear_refs_and_smaps() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("proc/self");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("smaps"), "").unwrap();
        let root = SysRoot::under(d.path());
        let why = why_not(&root).unwrap();
        assert!(why.contains("CONFIG_PROC_PAGE_MONITOR"), "{why}");
        std::fs::write(p.join("clear_refs"), "").unwrap();
        assert_eq!(why_not(&root), None);
    }
}

//! `split`'s huge-page check: the pure rule, and the actuator on a fixture tree (a
//! `<root>/proc/PID/pagemap` and a `<root>/proc/kpageflags` written by the test; kpageflags
//! read by [`HostSys`] under that root).

use super::*;
use crate::actuator::{ActuatorConfig, ApplyOpts, HostSys, SwapStat};
use crate::advice::{Advice, AdviceRequest};
use crate::kernel::kpageflags::{KPF_LRU, KPF_ZERO_PAGE};
use crate::kernel::pagemap::{Pagemap, PM_PRESENT};
use crate::region::TargetId;
use crate::sysroot::SysRoot;
use nix::errno::Errno;
use std::io::{Seek, SeekFrom, Write};

const P: u64 = 4096;
const N: usize = 512;
const PID: u32 = 4_000_002;
/// 1 GiB: a 2 MiB-aligned address whose pagemap entries sit 2 MiB into the file.
const BASE: u64 = 1 << 30;
const BLOCK: u64 = 2 << 20;

fn present(pfn: u64) -> PagemapEntry {
    PagemapEntry(PM_PRESENT | pfn)
}

fn thp_flags(head: bool) -> u64 {
    KPF_LRU
        | KPF_THP
        | if head {
            KPF_COMPOUND_HEAD
        } else {
            KPF_COMPOUND_TAIL
        }
}

/// A PMD-sized THP at PFN `head`.
fn huge_entries(head: u64) -> Vec<PagemapEntry> {
    (0..N as u64).map(|i| present(head + i)).collect()
}

#[test]
fn one_pmd_sized_thp_is_huge_and_nothing_else_is() {
    let flags: Vec<u64> = (0..N).map(|i| thp_flags(i == 0)).collect();
    assert_eq!(block_head(&huge_entries(1024), N), Ok(1024));
    assert_eq!(classify_flags(&flags, N), Block::Huge);

    // Small pages: PFNs not one run, or not starting at a multiple of 512.
    let mut scattered = huge_entries(1024);
    scattered[7] = present(99);
    assert_eq!(block_head(&scattered, N), Err(Block::NotHuge));
    assert_eq!(block_head(&huge_entries(1000), N), Err(Block::NotHuge));
    // Nothing there, or a page of it missing.
    assert_eq!(block_head(&[PagemapEntry(0); N], N), Err(Block::NotHuge));
    let mut holed = huge_entries(1024);
    holed[300] = PagemapEntry(0);
    assert_eq!(block_head(&holed, N), Err(Block::NotHuge));
    // PFNs hidden (not root), or a short read: cannot tell.
    assert_eq!(
        block_head(&[PagemapEntry(PM_PRESENT); N], N),
        Err(Block::Unknown)
    );
    assert_eq!(
        block_head(&huge_entries(1024)[..N - 1], N),
        Err(Block::Unknown)
    );
    assert_eq!(classify_flags(&flags[..N - 1], N), Block::Unknown);

    // The huge zero page (`KPF_ZERO_PAGE | KPF_THP`, fs/proc/page.c 6.12).
    let mut zero = flags.clone();
    zero[0] |= KPF_ZERO_PAGE;
    assert_eq!(classify_flags(&zero, N), Block::NotHuge);
    // 32 mTHPs of 16 pages, one PFN run: KPF_THP on all, a head every 16 pages.
    let mthp: Vec<u64> = (0..N).map(|i| thp_flags(i % 16 == 0)).collect();
    assert_eq!(classify_flags(&mthp, N), Block::NotHuge);
    // Small pages that happen to be one aligned run.
    assert_eq!(classify_flags(&[KPF_LRU; N], N), Block::NotHuge);
    // A tail without KPF_THP (some other compound page).
    let mut other = flags.clone();
    other[5] = KPF_COMPOUND_TAIL;
    assert_eq!(classify_flags(&other, N), Block::NotHuge);
}

/// A kernel made of files: pagemap and kpageflags from the fixture tree, `process_madvise`
/// recorded.
struct Fixture {
    root: SysRoot,
    host: HostSys,
    calls: Vec<(Advice, Vec<AddrRange>)>,
    pagemap_reads: usize,
}

impl ActuatorSys for Fixture {
    fn process_madvise(
        &mut self,
        _t: &Target<'_>,
        iov: &[AddrRange],
        advice: Advice,
    ) -> Result<u64, Errno> {
        self.calls.push((advice, iov.to_vec()));
        Ok(iov.iter().map(|r| r.len()).sum())
    }
    fn swap(&mut self) -> std::io::Result<SwapStat> {
        Ok(SwapStat::default())
    }
    fn now_ns(&mut self) -> u64 {
        0
    }
    fn pagemap(
        &mut self,
        t: &Target<'_>,
        start: u64,
        nr_pages: usize,
        out: &mut Vec<PagemapEntry>,
    ) -> std::io::Result<()> {
        self.pagemap_reads += 1;
        Pagemap::open(&self.root.pid_file(t.pid(), "pagemap"), P)?.read(start, nr_pages, out)
    }
    fn kpageflags(&mut self, first: u64, n: usize, out: &mut Vec<u64>) -> std::io::Result<()> {
        self.host.kpageflags(first, n, out)
    }
}

/// Four blocks at BASE: a THP (PFNs 1024..), small pages, the huge zero page (PFNs 2048..),
/// nothing. `kpageflags`: whether to write the file.
fn tree(kpageflags: bool) -> (tempfile::TempDir, SysRoot) {
    let dir = tempfile::tempdir().unwrap();
    let root = SysRoot::under(dir.path());
    std::fs::create_dir_all(root.pid_file(PID, "x").parent().unwrap()).unwrap();
    let mut entries = huge_entries(1024);
    entries.extend((0..N as u64).map(|i| present(3000 + 2 * i)));
    entries.extend(huge_entries(2048));
    entries.extend([PagemapEntry(0); N]);
    let mut f = std::fs::File::create(root.pid_file(PID, "pagemap")).unwrap();
    f.seek(SeekFrom::Start(BASE / P * 8)).unwrap();
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.0.to_ne_bytes()).collect();
    f.write_all(&bytes).unwrap();
    if kpageflags {
        let mut flags = vec![KPF_LRU; 4096];
        for i in 0..N {
            flags[1024 + i] = thp_flags(i == 0);
            flags[2048 + i] = thp_flags(i == 0);
        }
        // The huge zero page.
        flags[2048] |= KPF_ZERO_PAGE;
        let bytes: Vec<u8> = flags.iter().flat_map(|v| v.to_ne_bytes()).collect();
        std::fs::write(root.proc_file("kpageflags"), bytes).unwrap();
    }
    (dir, root)
}

fn split_of(root: &SysRoot, opts: ApplyOpts<'_>) -> (Actuator<Fixture>, crate::ApplyReport) {
    apply_of(root, Advice::Split, opts)
}

fn apply_of(
    root: &SysRoot,
    advice: Advice,
    opts: ApplyOpts<'_>,
) -> (Actuator<Fixture>, crate::ApplyReport) {
    let sys = Fixture {
        root: root.clone(),
        host: HostSys::new(root.clone()),
        calls: Vec::new(),
        pagemap_reads: 0,
    };
    let mut a = Actuator::with_sys(sys, ActuatorConfig::default());
    a.page = P;
    let vma = AddrRange::new(BASE, BASE + 4 * BLOCK);
    // A request reaching 4 KiB past both ends: cut to the whole blocks (`Unaligned`).
    let req = AdviceRequest {
        target: TargetId(PID),
        range: AddrRange::new(BASE - P, BASE + 4 * BLOCK + P),
        advice,
        scheme: 0,
    };
    let t = Target::simulated(
        TargetId(PID),
        PID,
        [AddrRange::new(BASE - BLOCK, vma.end + BLOCK)],
    );
    let r = a.apply(&[t], &[req], opts);
    for o in &r.outcomes {
        let e: u64 = o.errors.iter().map(|(_, b)| b).sum();
        assert_eq!(o.bytes_applied + e, o.bytes_requested, "{o:?}");
    }
    (a, r)
}

/// Only the THP is split (a page-out of its first page, then a cold of it); the small pages,
/// the huge zero page and the empty block are reported `NotHuge`, and the range is not
/// wholly skipped (it held one).
#[test]
fn split_advises_only_the_blocks_that_are_huge_pages() {
    let (_d, root) = tree(true);
    let (a, r) = split_of(&root, ApplyOpts::default());
    let o = &r.outcomes[0];
    assert_eq!(o.advice, Advice::Split);
    assert_eq!(
        (o.bytes_applied, o.bytes_resident, o.not_huge()),
        (BLOCK, BLOCK, 3 * BLOCK)
    );
    assert_eq!(o.error_bytes(crate::ApplyErrorKind::Unaligned), 2 * P);
    assert!(!o.wholly_nothing_there() && !o.wholly_skipped());
    assert_eq!(
        a.sys().calls,
        [
            (Advice::Pageout, vec![AddrRange::new(BASE, BASE + P)]),
            (Advice::Cold, vec![AddrRange::new(BASE, BASE + BLOCK)]),
        ]
    );
    assert_eq!(a.stats().not_huge, 3 * BLOCK);
    assert_eq!(a.sys().pagemap_reads, 1, "one batched pagemap read");
}

/// After the split nothing there is huge: the same request advises nothing, is refunded
/// whole and keeps its age (wholly skipped).
#[test]
fn a_split_block_is_not_split_again() {
    let (_d, root) = tree(true);
    // The THP's PFNs are small pages now.
    let flags = vec![KPF_LRU; 4096];
    let bytes: Vec<u8> = flags.iter().flat_map(|v| v.to_ne_bytes()).collect();
    std::fs::write(root.proc_file("kpageflags"), bytes).unwrap();
    let (a, r) = split_of(&root, ApplyOpts::default());
    let o = &r.outcomes[0];
    assert_eq!((o.bytes_applied, o.not_huge()), (0, 4 * BLOCK));
    assert!(o.wholly_nothing_there() && o.wholly_skipped());
    assert_eq!(o.refund(), 4 * BLOCK);
    assert!(a.sys().calls.is_empty(), "{:?}", a.sys().calls);
}

/// No kpageflags (not root, or no such file): the blocks whose pagemap looks like a THP are
/// advised as before (not counted checked); those pagemap alone rules out are still cut.
/// A dry run reads nothing.
#[test]
fn unknown_answers_advise_as_before_and_dry_runs_read_nothing() {
    let (_d, root) = tree(false);
    let (a, r) = split_of(&root, ApplyOpts::default());
    let o = &r.outcomes[0];
    assert_eq!(
        (o.bytes_applied, o.bytes_resident, o.not_huge()),
        (2 * BLOCK, 0, 2 * BLOCK)
    );
    let pageouts: Vec<&AddrRange> = a
        .sys()
        .calls
        .iter()
        .filter(|(adv, _)| *adv == Advice::Pageout)
        .flat_map(|(_, v)| v)
        .collect();
    assert_eq!(
        pageouts,
        [
            &AddrRange::new(BASE, BASE + P),
            &AddrRange::new(BASE + 2 * BLOCK, BASE + 2 * BLOCK + P)
        ]
    );

    let (_d, root) = tree(true);
    let (a, r) = split_of(
        &root,
        ApplyOpts {
            dry_run: true,
            ..Default::default()
        },
    );
    assert_eq!(a.sys().pagemap_reads, 0);
    assert!(a.sys().calls.is_empty());
    assert_eq!(
        r.outcomes[0].error_bytes(crate::ApplyErrorKind::DryRun),
        4 * BLOCK
    );
}

/// `collapse` leaves out the block that is one huge page already (`AlreadyHuge`, refunded)
/// and collapses the others: small pages, the huge zero page (a collapse allocates a real
/// one) and the block with nothing present (the kernel decides by `max_ptes_none`), in one
/// call, with one pagemap read.
#[test]
fn collapse_leaves_out_the_blocks_already_huge() {
    let (_d, root) = tree(true);
    let (a, r) = apply_of(&root, Advice::Collapse, ApplyOpts::default());
    let o = &r.outcomes[0];
    assert_eq!(o.advice, Advice::Collapse);
    assert_eq!(
        (
            o.bytes_applied,
            o.bytes_resident,
            o.already_huge(),
            o.not_huge()
        ),
        (3 * BLOCK, 0, BLOCK, 0)
    );
    assert_eq!(o.refund(), BLOCK);
    assert!(!o.wholly_nothing_there() && !o.wholly_skipped());
    assert_eq!(
        a.sys().calls,
        [(
            Advice::Collapse,
            vec![AddrRange::new(BASE + BLOCK, BASE + 4 * BLOCK)]
        )]
    );
    assert_eq!((a.stats().already_huge, a.stats().not_huge), (BLOCK, 0));
    assert_eq!(a.sys().pagemap_reads, 1);
}

/// All of it huge: no call, refunded whole, wholly skipped (age kept, learned by the
/// schemes). Without kpageflags nothing can be told: all of it collapsed, as before.
#[test]
fn a_range_wholly_huge_is_not_collapsed_and_unknown_answers_collapse_as_before() {
    let (_d, root) = tree(true);
    let mut flags = vec![KPF_LRU; 4096];
    for head in [1024, 2048, 2560, 3072] {
        for i in 0..N {
            flags[head + i] = thp_flags(i == 0);
        }
    }
    let bytes: Vec<u8> = flags.iter().flat_map(|v| v.to_ne_bytes()).collect();
    std::fs::write(root.proc_file("kpageflags"), bytes).unwrap();
    // Four THPs: rewrite the pagemap's last three blocks.
    let mut entries = huge_entries(1024);
    for head in [2048, 2560, 3072] {
        entries.extend(huge_entries(head));
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(root.pid_file(PID, "pagemap"))
        .unwrap();
    f.seek(SeekFrom::Start(BASE / P * 8)).unwrap();
    let raw: Vec<u8> = entries.iter().flat_map(|e| e.0.to_ne_bytes()).collect();
    f.write_all(&raw).unwrap();
    let (a, r) = apply_of(&root, Advice::Collapse, ApplyOpts::default());
    let o = &r.outcomes[0];
    assert_eq!((o.bytes_applied, o.already_huge()), (0, 4 * BLOCK));
    assert!(o.wholly_nothing_there() && o.wholly_skipped());
    assert!(a.sys().calls.is_empty(), "{:?}", a.sys().calls);

    let (_d, root) = tree(false);
    let (a, r) = apply_of(&root, Advice::Collapse, ApplyOpts::default());
    let o = &r.outcomes[0];
    assert_eq!((o.bytes_applied, o.already_huge()), (4 * BLOCK, 0));
    assert_eq!(
        a.sys().calls,
        [(
            Advice::Collapse,
            vec![AddrRange::new(BASE, BASE + 4 * BLOCK)]
        )]
    );
}

/// The kernel calls refuse `Split` (it has no madvise number): EINVAL, nothing advised.
#[test]
fn the_syscalls_refuse_split() {
    let r = crate::kernel::madvise::madvise_self(AddrRange::new(BASE, BASE + P), Advice::Split);
    assert_eq!(r, Err(Errno::EINVAL));
}

//! The paddr check on a fixture tree: a fake `/proc/iomem`, `kpageflags`, `kpagecgroup`,
//! page_idle bitmap (a regular file: bits written stay set — "idle" — until the test clears
//! them, as an access would) and cgroup v2 tree.

use super::owners::{self, attribute, sample_pfns, HotCold, Owners, Sampling, UNREADABLE};
use super::*;
use crate::kernel::kpageflags::*;
use crate::monitor::Monitor;
use crate::region::Region;
use crate::Attrs;
use std::os::unix::fs::MetadataExt;

const PAGE: u64 = 4096;
/// PFNs of the fixture's kpageflags / kpagecgroup files.
const NR_PFNS: u64 = 1024;
const IOMEM: &str = "\
00000000-00000fff : Reserved
00001000-0009ffff : System RAM
000a0000-000fffff : Reserved
00100000-003fffff : System RAM
  00200000-00201fff : Kernel code
00400000-00400fff : Reserved
";

struct Fixture {
    _dir: tempfile::TempDir,
    root: SysRoot,
    flags: Vec<u64>,
}

impl Fixture {
    /// Every page an LRU page charged to no cgroup, unless changed with [`Self::flag`].
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        std::fs::create_dir_all(&root.proc).unwrap();
        std::fs::write(root.proc_file("iomem"), IOMEM).unwrap();
        let bm = IdleBitmap::path_in(&root);
        std::fs::create_dir_all(bm.parent().unwrap()).unwrap();
        std::fs::write(&bm, vec![0u8; (NR_PFNS / 8) as usize]).unwrap();
        let f = Fixture {
            _dir: dir,
            root,
            flags: vec![KPF_LRU; NR_PFNS as usize],
        };
        f.write_flags();
        f.write_cgroups(&[]);
        f
    }
    fn flag(&mut self, pfn: u64, flags: u64) {
        self.flags[pfn as usize] = flags;
        self.write_flags();
    }
    fn write_flags(&self) {
        let b: Vec<u8> = self.flags.iter().flat_map(|f| f.to_ne_bytes()).collect();
        std::fs::write(self.root.proc_file("kpageflags"), b).unwrap();
    }
    /// PFN ranges charged to inodes; the rest to none.
    fn write_cgroups(&self, owned: &[(std::ops::Range<u64>, u64)]) {
        let mut v = vec![0u64; NR_PFNS as usize];
        for (r, ino) in owned {
            for p in r.clone() {
                v[p as usize] = *ino;
            }
        }
        let b: Vec<u8> = v.iter().flat_map(|f| f.to_ne_bytes()).collect();
        std::fs::write(self.root.proc_file("kpagecgroup"), b).unwrap();
    }
    /// An access to every page: clear the whole bitmap.
    fn touch_all(&self) {
        std::fs::write(
            IdleBitmap::path_in(&self.root),
            vec![0u8; (NR_PFNS / 8) as usize],
        )
        .unwrap();
    }
    fn check(&self) -> PAddr {
        PAddr::over(&self.root, vec![AddrRange::new(0x100000, 0x400000)], PAGE).unwrap()
    }
}

fn ar(s: u64, e: u64) -> AddrRange {
    AddrRange::new(s, e)
}

fn req(pfn: u64) -> SampleReq {
    SampleReq {
        region: ar(pfn * PAGE, (pfn + 1) * PAGE),
        addr: pfn * PAGE,
    }
}

#[test]
fn default_range_is_the_biggest_system_ram() {
    let ram = iomem::system_ram(&iomem::parse(IOMEM.as_bytes(), Path::new("iomem")).unwrap());
    let p = Path::new("/proc/iomem");
    assert_eq!(
        settle_ranges(None, &ram, PAGE, p).unwrap(),
        vec![ar(0x100000, 0x400000)]
    );
    let two = [ar(0x300000, 0x400000), ar(0x1000, 0x2000)];
    assert_eq!(
        settle_ranges(Some(&two), &ram, PAGE, p).unwrap(),
        vec![ar(0x1000, 0x2000), ar(0x300000, 0x400000)]
    );
    assert!(settle_ranges(None, &[], PAGE, p)
        .unwrap_err()
        .to_string()
        .contains("no \"System RAM\""));
}

use std::path::Path;

#[test]
fn bad_ranges_are_named() {
    let ram = [ar(0x1000, 0xa0000), ar(0x100000, 0x400000)];
    let p = Path::new("/proc/iomem");
    let e = |want: &[AddrRange]| {
        settle_ranges(Some(want), &ram, PAGE, p)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        e(&[ar(0x100800, 0x200000)]),
        "physical range 0x100800-0x200000 is not page-aligned (page size 4096 bytes)"
    );
    assert_eq!(
        e(&[ar(0x300000, 0x500000)]),
        "physical range 0x300000-0x500000 is not inside one \"System RAM\" range of /proc/iomem (RAM: 0x1000-0xa0000, 0x100000-0x400000)"
    );
    // Spanning a hole between two RAM ranges is outside RAM too.
    assert!(e(&[ar(0x1000, 0x200000)]).contains("not inside one"));
    assert_eq!(
        e(&[ar(0x200000, 0x200000)]),
        "physical range 0x200000-0x200000 is empty"
    );
    assert_eq!(
        e(&[ar(0x200000, 0x300000), ar(0x100000, 0x201000)]),
        "physical ranges 0x100000-0x201000 and 0x200000-0x300000 overlap"
    );
}

#[test]
fn classify_follows_damon_get_folio() {
    use Untracked::*;
    assert_eq!(classify(KPF_LRU), Class::Track);
    assert_eq!(
        classify(KPF_LRU | KPF_COMPOUND_HEAD | KPF_THP),
        Class::Track
    );
    assert_eq!(classify(KPF_LRU | KPF_COMPOUND_TAIL | KPF_THP), Class::Tail);
    assert_eq!(classify(KPF_NOPAGE), Class::Skip(NoPage));
    assert_eq!(classify(KPF_OFFLINE), Class::Skip(NoPage));
    assert_eq!(classify(KPF_BUDDY), Class::Skip(Free));
    assert_eq!(classify(KPF_SLAB), Class::Skip(Slab));
    assert_eq!(classify(KPF_RESERVED), Class::Skip(Reserved));
    assert_eq!(classify(KPF_HUGE | KPF_COMPOUND_TAIL), Class::Skip(Hugetlb));
    assert_eq!(classify(0), Class::Skip(NotLru));
}

/// Every kind of page once: the trackable ones answer, the others are Unknown with their
/// reason counted; a THP tail answers through its head.
#[test]
fn answers_lru_pages_and_says_why_not_the_others() {
    let mut f = Fixture::new();
    let base = 0x100;
    f.flag(base + 1, KPF_BUDDY);
    f.flag(base + 2, KPF_SLAB);
    f.flag(base + 3, KPF_RESERVED);
    f.flag(base + 4, KPF_NOPAGE);
    f.flag(base + 5, 0); // page table, kernel allocation
    f.flag(base + 8, KPF_LRU | KPF_COMPOUND_HEAD | KPF_THP);
    for p in base + 9..base + 16 {
        f.flag(p, KPF_LRU | KPF_COMPOUND_TAIL | KPF_THP);
    }
    f.flag(base + 16, KPF_HUGE | KPF_COMPOUND_HEAD);
    let mut c = f.check();
    let pfns = [
        base,
        base + 1,
        base + 2,
        base + 3,
        base + 4,
        base + 5,
        base + 12,
        base + 16,
    ];
    let mut samples: Vec<SampleReq> = pfns.iter().map(|&p| req(p)).collect();
    let mut out = vec![Access::Unknown; samples.len()];
    c.prepare(PADDR_TARGET, &mut samples).unwrap();
    c.check(PADDR_TARGET, &samples, &mut out).unwrap();
    use Access::*;
    let want_idle = [
        NotAccessed,
        Unknown,
        Unknown,
        Unknown,
        Unknown,
        Unknown,
        NotAccessed,
        Unknown,
    ];
    assert_eq!(out, want_idle);
    let s = c.stats();
    assert_eq!(
        (s.tracked, s.thp_tail, s.free, s.slab, s.reserved, s.no_page, s.not_lru, s.hugetlb),
        (2, 1, 1, 1, 1, 1, 1, 1),
        "{s:?}"
    );
    // The tail was marked through its head: the head's bit is set, the tail's is not.
    let bm = std::fs::read(IdleBitmap::path_in(&f.root)).unwrap();
    let word = u64::from_ne_bytes(bm[(base / 64 * 8) as usize..][..8].try_into().unwrap());
    assert_ne!(word & (1 << ((base + 8) % 64)), 0);
    assert_eq!(word & (1 << ((base + 12) % 64)), 0);

    // Touched between prepare and check: Accessed.
    c.prepare(PADDR_TARGET, &mut samples).unwrap();
    f.touch_all();
    c.check(PADDR_TARGET, &samples, &mut out).unwrap();
    assert_eq!((out[0], out[6]), (Accessed, Accessed));

    // Freed between prepare and check: Unknown, not a false access.
    c.prepare(PADDR_TARGET, &mut samples).unwrap();
    f.flag(base, KPF_BUDDY);
    f.touch_all();
    c.check(PADDR_TARGET, &samples, &mut out).unwrap();
    assert_eq!((out[0], out[6]), (Unknown, Accessed));
    assert_eq!(c.stats().left_lru, 1);
    assert!(c.cost().syscalls > 0 && c.cost().samples == 3 * pfns.len() as u64);
}

/// A page that does not read idle right after being marked (page_idle ignored the write:
/// a per-CPU LRU batch, a page it does not take) is Unknown, not a false access. Here the
/// "bitmap" is /dev/zero: writes vanish, every word reads 0.
#[test]
fn a_page_the_bitmap_does_not_keep_is_unknown() {
    let f = Fixture::new();
    let bm = IdleBitmap::path_in(&f.root);
    std::fs::remove_file(&bm).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &bm).unwrap();
    let mut c = f.check();
    let mut samples = vec![req(0x100), req(0x3c1)];
    let mut out = vec![Access::Accessed; 2];
    c.prepare(PADDR_TARGET, &mut samples).unwrap();
    c.check(PADDR_TARGET, &samples, &mut out).unwrap();
    assert_eq!(out, [Access::Unknown, Access::Unknown]);
    assert_eq!((c.stats().not_idle_after_mark, c.stats().tracked), (2, 0));
}

#[test]
fn the_monitor_takes_the_ranges_as_given() {
    let f = Fixture::new();
    let ranges = vec![ar(0x100000, 0x180000), ar(0x300000, 0x400000)];
    let mut c = PAddr::over(&f.root, ranges.clone(), PAGE).unwrap();
    assert!(c.ranges_are_user_set());
    let mut m = Monitor::new(Attrs::default(), 1).unwrap();
    m.add_target(PADDR_TARGET);
    m.step(0, &mut c);
    assert_eq!(m.ranges(PADDR_TARGET).unwrap(), ranges.as_slice());
    let covered: u64 = m
        .regions(PADDR_TARGET)
        .unwrap()
        .iter()
        .map(|r| r.size())
        .sum();
    assert_eq!(covered, 0x180000);
    // Nothing touched the fake bitmap: after an aggregation every region is cold.
    let mut snap = None;
    for i in 1..=20 {
        if let Some(s) = m.step(i * 5_000, &mut c).snapshot {
            snap = Some(s);
        }
    }
    let s = snap.expect("one aggregation");
    assert!(s.targets[0].regions.iter().all(|r| r.nr_accesses == 0));
    // One target only; processes are refused.
    let e = c.target_ranges(TargetId(7)).unwrap_err().to_string();
    assert_eq!(e, "target 7: the paddr check has one target, 0");
}

#[test]
fn building_checks_root_kernel_damon_and_the_ranges() {
    let f = Fixture::new();
    if !is_root() {
        let e = PAddr::new(&f.root, None).err().unwrap().to_string();
        assert!(e.starts_with("needs root"), "{e}");
        return;
    }
    let c = PAddr::new(&f.root, None).unwrap();
    assert_eq!(c.ranges(), [ar(0x100000, 0x400000)]);
    let e = PAddr::new(&f.root, Some(&[ar(0x500000, 0x600000)]))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("0x500000-0x600000 is not inside"), "{e}");
    // A kdamond on: refused; off: fine. Only read, never written.
    let kd = f.root.sys_file(ADMIN_REL).join("kdamonds");
    std::fs::create_dir_all(kd.join("0")).unwrap();
    std::fs::write(kd.join("nr_kdamonds"), "1\n").unwrap();
    std::fs::write(kd.join("0/state"), "on\n").unwrap();
    let e = PAddr::new(&f.root, None).err().unwrap().to_string();
    assert_eq!(
        e,
        "kernel DAMON is running (kdamond 0 on): paddr would clear the Accessed bits it reads"
    );
    assert!(why_not(&f.root).unwrap().contains("kdamond 0 on"));
    std::fs::write(kd.join("0/state"), "off\n").unwrap();
    assert!(PAddr::new(&f.root, None).is_ok());
    assert_eq!(why_not(&f.root), None);
}

#[test]
fn errors_name_what_is_needed() {
    assert_eq!(
        PaddrError::NotRoot.to_string(),
        "needs root: physical addresses in /proc/iomem, /proc/kpageflags and the page_idle bitmap are root-only"
    );
    let e = PaddrError::Open {
        path: "/sys/kernel/mm/page_idle/bitmap".into(),
        source: std::io::Error::from_raw_os_error(libc::EACCES),
    };
    assert!(
        e.to_string()
            .starts_with("/sys/kernel/mm/page_idle/bitmap: "),
        "{e}"
    );
}

#[test]
fn why_not_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let root = SysRoot::under(dir.path());
    let why = why_not(&root).unwrap();
    assert!(
        why.contains("CONFIG_IDLE_PAGE_TRACKING is off") && why.contains("page_idle/bitmap"),
        "{why}"
    );
    let bm = IdleBitmap::path_in(&root);
    std::fs::create_dir_all(bm.parent().unwrap()).unwrap();
    std::fs::write(&bm, [0u8; 8]).unwrap();
    let why = why_not(&root).unwrap();
    assert!(why.contains("kpageflags missing"), "{why}");
}

#[test]
fn samples_spread_evenly_and_bytes_add_up() {
    let r = Region::new(0x100000, 0x108000); // 8 pages
    assert_eq!(
        sample_pfns(&r, Sampling::fixed(4), PAGE),
        vec![0x101, 0x103, 0x105, 0x107]
    );
    assert_eq!(sample_pfns(&r, Sampling::fixed(100), PAGE).len(), 8);
    // By default one sample per 256 KiB, 8 to 4096 per region.
    let d = Sampling::default();
    assert_eq!(
        (d.count(4096), d.count(4 << 20), d.count(1 << 40)),
        (8, 16, 4096)
    );
    let mut hot = Region::new(0x100000, 0x108000);
    hot.nr_accesses = 3;
    let cold = Region::new(0x108000, 0x10b000); // 3 pages, odd split
                                                // Hot region: half cgroup 10, half 20; cold region: one page each of 10, 20, none.
    let owner = |pfn: u64| match pfn {
        0x100..=0x103 => Some(10),
        0x104..=0x107 => Some(20),
        0x108 => Some(10),
        0x109 => Some(20),
        _ => Some(0),
    };
    let got = attribute(&[hot, cold], Sampling::fixed(8), PAGE, owner);
    assert_eq!(
        got[&10],
        HotCold {
            hot: 0x4000,
            cold: 0x1000
        }
    );
    assert_eq!(
        got[&20],
        HotCold {
            hot: 0x4000,
            cold: 0x1000
        }
    );
    assert_eq!(
        got[&0],
        HotCold {
            hot: 0,
            cold: 0x1000
        }
    );
    let total: u64 = got.values().map(|h| h.hot + h.cold).sum();
    assert_eq!(total, 0xb000);
    // An unreadable entry has its own owner.
    let got = attribute(&[Region::new(0, 0x2000)], Sampling::fixed(2), PAGE, |_| {
        None
    });
    assert_eq!(got[&UNREADABLE].cold, 0x2000);
}

#[test]
fn owners_are_named_by_the_cgroup_tree() {
    let f = Fixture::new();
    let cg = f.root.sys_file("fs/cgroup");
    std::fs::create_dir_all(cg.join("hot")).unwrap();
    std::fs::create_dir_all(cg.join("idle")).unwrap();
    std::fs::write(cg.join("cgroup.controllers"), "memory\n").unwrap();
    let ino = |p: &str| std::fs::metadata(cg.join(p)).unwrap().ino();
    f.write_cgroups(&[(0x100..0x140, ino("hot")), (0x140..0x200, ino("idle"))]);
    let o = Owners::open(&f.root).unwrap();
    let mut hot = Region::new(0x100000, 0x140000);
    hot.nr_accesses = 5;
    let idle = Region::new(0x140000, 0x200000);
    let free = Region::new(0x200000, 0x400000);
    let v = o.of(&[hot, idle, free], Sampling::fixed(16), PAGE);
    let names: Vec<&str> = v.iter().map(|c| c.cgroup.as_str()).collect();
    assert_eq!(names, ["(no cgroup)", "/idle", "/hot"]);
    assert_eq!((v[1].cold_bytes, v[1].hot_bytes), (0xc0000, 0));
    assert_eq!((v[2].cold_bytes, v[2].hot_bytes), (0, 0x40000));
    assert_eq!(v[0].cold_bytes, 0x200000);
    let named = owners::named(&[(42, HotCold::default())].into(), o.inodes());
    assert_eq!(named[0].cgroup, "(cgroup inode 42)");
}

fn cg(name: &str, hot_mib: u64, cold_mib: u64) -> owners::CgroupBytes {
    owners::CgroupBytes {
        cgroup: name.into(),
        hot_bytes: hot_mib << 20,
        cold_bytes: cold_mib << 20,
    }
}

/// One snapshot of five where the idle group's idle pages ride in hot regions (its hot
/// bytes 24 MiB instead of 3, as in the lab run of docs/performance.md): the estimate keeps
/// 3 MiB hot and 61 MiB cold. The mean of the window would say 7.2 and 56.8 MiB.
#[test]
fn median_per_cgroup_ignores_one_excursion() {
    let snaps: Vec<Vec<_>> = [3, 3, 24, 3, 3]
        .iter()
        .map(|&hot| vec![cg("/idle", hot, 64 - hot), cg("/hot", 24, 24)])
        .collect();
    let got = owners::median_per_cgroup(snaps.iter().map(Vec::as_slice));
    assert_eq!(got, [cg("/idle", 3, 61), cg("/hot", 24, 24)]);
}

/// The estimate per cgroup for a table of windows: the middle value, the mean of the middle
/// two for an even count, a cgroup missing from a snapshot counted at 0 there, a name twice
/// in one snapshot added up, most cold first.
#[test]
fn median_per_cgroup_table() {
    type Snap = Vec<owners::CgroupBytes>;
    let cases: Vec<(&str, Vec<Snap>, Vec<owners::CgroupBytes>)> = vec![
        ("no snapshots", vec![], vec![]),
        ("empty snapshots", vec![vec![], vec![]], vec![]),
        (
            "odd count: the middle one",
            vec![
                vec![cg("/a", 1, 9)],
                vec![cg("/a", 5, 2)],
                vec![cg("/a", 3, 4)],
            ],
            vec![cg("/a", 3, 4)],
        ),
        (
            "even count: the mean of the middle two",
            vec![
                vec![cg("/a", 1, 10)],
                vec![cg("/a", 2, 20)],
                vec![cg("/a", 4, 40)],
                vec![cg("/a", 100, 80)],
            ],
            vec![cg("/a", 3, 30)],
        ),
        (
            "missing from two of three: 0",
            vec![
                vec![cg("/a", 1, 1)],
                vec![cg("/b", 2, 2)],
                vec![cg("/b", 2, 2)],
            ],
            vec![cg("/b", 2, 2), cg("/a", 0, 0)],
        ),
        (
            "listed twice in one snapshot: added",
            vec![vec![cg("/a", 1, 2), cg("/a", 1, 2)]],
            vec![cg("/a", 2, 4)],
        ),
    ];
    for (what, snaps, want) in cases {
        let got = owners::median_per_cgroup(snaps.iter().map(Vec::as_slice));
        assert_eq!(got, want, "{what}");
    }
}

use super::fake::FakeDamonSysfs;
use super::*;

const ATTRS: SysfsAttrs = SysfsAttrs {
    sample_us: 5000,
    aggr_us: 100_000,
    update_us: 1_000_000,
    min_nr_regions: 10,
    max_nr_regions: 1000,
};

fn w(p: &str, v: &str) -> (String, String) {
    (p.to_owned(), v.to_owned())
}

/// The exact writes for two targets, in order.
fn expected_start_writes(pids: &[u32]) -> Vec<(String, String)> {
    let c = "kdamonds/0/contexts/0";
    let mut v = vec![
        w("kdamonds/nr_kdamonds", "1"),
        w("kdamonds/0/contexts/nr_contexts", "1"),
        w(&format!("{c}/operations"), "vaddr"),
        w(&format!("{c}/monitoring_attrs/intervals/sample_us"), "5000"),
        w(&format!("{c}/monitoring_attrs/intervals/aggr_us"), "100000"),
        w(
            &format!("{c}/monitoring_attrs/intervals/update_us"),
            "1000000",
        ),
        w(&format!("{c}/monitoring_attrs/nr_regions/min"), "10"),
        w(&format!("{c}/monitoring_attrs/nr_regions/max"), "1000"),
        w(&format!("{c}/targets/nr_targets"), &pids.len().to_string()),
    ];
    for (i, p) in pids.iter().enumerate() {
        v.push(w(&format!("{c}/targets/{i}/pid_target"), &p.to_string()));
    }
    v.push(w(
        &format!("{c}/schemes/nr_schemes"),
        &pids.len().to_string(),
    ));
    for i in 0..pids.len() {
        let s = format!("{c}/schemes/{i}");
        v.extend([
            w(&format!("{s}/action"), "stat"),
            w(&format!("{s}/access_pattern/sz/min"), "0"),
            w(
                &format!("{s}/access_pattern/sz/max"),
                "18446744073709551615",
            ),
            w(&format!("{s}/access_pattern/nr_accesses/min"), "0"),
            w(&format!("{s}/access_pattern/nr_accesses/max"), "4294967295"),
            w(&format!("{s}/access_pattern/age/min"), "0"),
            w(&format!("{s}/access_pattern/age/max"), "4294967295"),
            w(&format!("{s}/filters/nr_filters"), "1"),
            w(&format!("{s}/filters/0/type"), "target"),
            w(&format!("{s}/filters/0/damon_target_idx"), &i.to_string()),
            w(&format!("{s}/filters/0/matching"), "N"),
        ]);
    }
    v.push(w("kdamonds/0/state", "on"));
    v
}

fn start(fake: &FakeDamonSysfs, pids: &[u32]) -> Result<DamonSysfs, DamonSysfsError> {
    DamonSysfs::start(Box::new(fake.clone()), fake.admin(), pids, ATTRS)
}

#[test]
fn writes_the_exact_files_in_order_and_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDamonSysfs::new(dir.path()).unwrap();
    let before = fake.files();
    let mut d = start(&fake, &[100, 200]).unwrap();
    assert_eq!(fake.writes(), expected_start_writes(&[100, 200]));
    assert_eq!(d.state().unwrap(), KdamondState::On);
    assert_eq!(d.kdamond_pid().unwrap(), Some(4242));
    d.stop().unwrap();
    let mut all = expected_start_writes(&[100, 200]);
    all.extend([w("kdamonds/0/state", "off"), w("kdamonds/nr_kdamonds", "0")]);
    assert_eq!(fake.writes(), all);
    assert_eq!(fake.files(), before, "everything created is removed");
}

#[test]
fn reads_tried_regions_back_per_target_across_the_shared_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDamonSysfs::new(dir.path()).unwrap();
    let r = |s: u64, e: u64, n: u32, a: u32| TriedRegion {
        start: s,
        end: e,
        nr_accesses: n,
        age: a,
    };
    // 11 regions for target 0 so target 1's directories are numbered from 11 on, and
    // "10" sorts before "2" as a string: the driver must sort numerically.
    let t0: Vec<_> = (0..11u64)
        .map(|i| r(0x1000 * (i + 1), 0x1000 * (i + 2), i as u32, 1))
        .collect();
    fake.set_regions(0, t0.clone());
    fake.set_regions(1, vec![r(0x7000_0000, 0x7000_4000, 20, 3)]);
    let mut d = start(&fake, &[100, 200]).unwrap();
    let got = d.tried_regions().unwrap().unwrap();
    assert_eq!(got, vec![t0, vec![r(0x7000_0000, 0x7000_4000, 20, 3)]]);
    assert!(dir
        .path()
        .join("sys")
        .join(ADMIN_REL)
        .join("kdamonds/0/contexts/0/schemes/1/tried_regions/11")
        .is_dir());
    assert_eq!(
        fake.writes().last().unwrap(),
        &w("kdamonds/0/state", "update_schemes_tried_regions")
    );
}

#[test]
fn kdamond_that_stopped_by_itself_gives_none_and_still_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDamonSysfs::new(dir.path()).unwrap();
    let before = fake.files();
    let mut d = start(&fake, &[100]).unwrap();
    fake.kdamond_exits().unwrap();
    assert_eq!(d.tried_regions().unwrap(), None);
    drop(d);
    assert_eq!(
        fake.writes().last().unwrap(),
        &w("kdamonds/nr_kdamonds", "0")
    );
    assert_eq!(fake.files(), before);
}

#[test]
fn busy_kdamonds_are_another_owners_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDamonSysfs::new(dir.path()).unwrap();
    fake.occupy(1).unwrap();
    let before = fake.files();
    let e = start(&fake, &[100]).unwrap_err();
    assert!(
        matches!(e, DamonSysfsError::InUse { ref nr, .. } if nr == "1"),
        "{e}"
    );
    assert!(e.to_string().contains("in use by another owner"), "{e}");
    assert!(
        fake.writes().is_empty(),
        "nothing written: {:?}",
        fake.writes()
    );
    assert_eq!(fake.files(), before);
}

#[test]
fn missing_admin_and_missing_file_are_reported_and_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let e =
        DamonSysfs::start(Box::new(RealSysfs), dir.path().join("nope"), &[1], ATTRS).unwrap_err();
    assert!(matches!(e, DamonSysfsError::AdminMissing(_)), "{e}");

    let fake = FakeDamonSysfs::new(dir.path()).unwrap();
    let before = fake.files();
    // An older kernel without the filters' damon_target_idx file, say.
    fake.fail_next_write(
        "kdamonds/0/contexts/0/schemes/0/filters/0/damon_target_idx",
        libc::ENOENT,
    );
    let e = start(&fake, &[100]).unwrap_err();
    match &e {
        DamonSysfsError::MissingFile(p) => {
            assert!(p.ends_with("filters/0/damon_target_idx"), "{e}")
        }
        other => panic!("wrong error {other}"),
    }
    assert_eq!(
        fake.writes().last().unwrap(),
        &w("kdamonds/nr_kdamonds", "0")
    );
    assert_eq!(fake.files(), before, "everything created is removed");
}

#[test]
fn ebusy_on_state_is_reported_and_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDamonSysfs::new(dir.path()).unwrap();
    let before = fake.files();
    fake.fail_next_write("kdamonds/0/state", libc::EBUSY);
    let e = start(&fake, &[100]).unwrap_err();
    assert!(
        matches!(&e, DamonSysfsError::Busy { path, value } if path.ends_with("kdamonds/0/state") && value == "on"),
        "{e}"
    );
    assert!(e.to_string().contains("EBUSY"), "{e}");
    let writes = fake.writes();
    // The failed `on` was not taken as running: no `off`, straight to removal.
    assert_eq!(
        &writes[writes.len() - 2..],
        &[w("kdamonds/0/state", "on"), w("kdamonds/nr_kdamonds", "0")]
    );
    assert_eq!(fake.files(), before);
}

#[test]
fn ebusy_on_nr_kdamonds_at_start_writes_nothing_more() {
    // A kdamond turned on by someone else between our read and our write.
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDamonSysfs::new(dir.path()).unwrap();
    fake.fail_next_write("kdamonds/nr_kdamonds", libc::EBUSY);
    let e = start(&fake, &[100]).unwrap_err();
    assert!(e.is_busy(), "{e}");
    assert_eq!(fake.writes(), vec![w("kdamonds/nr_kdamonds", "1")]);
}

#[test]
fn no_vaddr_ops_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDamonSysfs::new(dir.path()).unwrap();
    let before = fake.files();
    struct PaddrOnly(FakeDamonSysfs);
    impl SysfsIo for PaddrOnly {
        fn read(&mut self, p: &Path) -> io::Result<String> {
            if p.ends_with("avail_operations") {
                return Ok("paddr\n".into());
            }
            self.0.read(p)
        }
        fn write(&mut self, p: &Path, v: &str) -> io::Result<()> {
            self.0.write(p, v)
        }
        fn list(&mut self, p: &Path) -> io::Result<Vec<String>> {
            self.0.list(p)
        }
    }
    let e = DamonSysfs::start(Box::new(PaddrOnly(fake.clone())), fake.admin(), &[1], ATTRS)
        .unwrap_err();
    assert!(matches!(e, DamonSysfsError::NoVaddr { .. }), "{e}");
    assert_eq!(fake.files(), before);
}

#[test]
fn logged_wrapper_records_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDamonSysfs::new(dir.path()).unwrap();
    let logged = Logged::new(fake.clone(), fake.admin());
    let log = logged.log();
    let d = DamonSysfs::start(Box::new(logged), fake.admin(), &[7], ATTRS).unwrap();
    drop(d);
    assert_eq!(*log.lock().unwrap(), fake.writes());
}

#[test]
fn the_fake_tree_has_the_6_12_layout() {
    // Listing taken in the lab (6.12.117) after nr_kdamonds=1, nr_contexts=1,
    // nr_targets=1, nr_schemes=1, nr_filters=1 (see tests/lab_ops.rs for the live check).
    let dir = tempfile::tempdir().unwrap();
    let mut fake = FakeDamonSysfs::new(dir.path()).unwrap();
    let a = fake.admin();
    for (f, v) in [
        ("kdamonds/nr_kdamonds", "1"),
        ("kdamonds/0/contexts/nr_contexts", "1"),
        ("kdamonds/0/contexts/0/targets/nr_targets", "1"),
        ("kdamonds/0/contexts/0/schemes/nr_schemes", "1"),
        ("kdamonds/0/contexts/0/schemes/0/filters/nr_filters", "1"),
    ] {
        fake.write(&a.join(f), v).unwrap();
    }
    assert_eq!(
        fake.files(),
        LAYOUT_6_12
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    );
}

/// Physical ranges (the lab's comparison with madvd's paddr): `paddr` operations, one target
/// with its regions, one stat scheme; read back and removed as for processes.
#[test]
fn paddr_writes_the_regions_of_one_target() {
    use crate::region::AddrRange;
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDamonSysfs::new(dir.path()).unwrap();
    let before = fake.files();
    let ranges = [
        AddrRange::new(0x1000, 0x9f000),
        AddrRange::new(0x100000, 0x800000),
    ];
    let mut d = DamonSysfs::start_targets(
        Box::new(fake.clone()),
        fake.admin(),
        DamonTargets::Phys(&ranges),
        ATTRS,
    )
    .unwrap();
    let writes = fake.writes();
    let c = "kdamonds/0/contexts/0";
    let rg = format!("{c}/targets/0/regions");
    for want in [
        w(&format!("{c}/operations"), "paddr"),
        w(&format!("{c}/targets/nr_targets"), "1"),
        w(&format!("{rg}/nr_regions"), "2"),
        w(&format!("{rg}/0/start"), "4096"),
        w(&format!("{rg}/0/end"), "651264"),
        w(&format!("{rg}/1/start"), "1048576"),
        w(&format!("{rg}/1/end"), "8388608"),
        w(&format!("{c}/schemes/nr_schemes"), "1"),
    ] {
        assert!(writes.contains(&want), "{want:?} not in {writes:?}");
    }
    assert!(!writes.iter().any(|(p, _)| p.ends_with("pid_target")));
    assert_eq!(d.tried_regions().unwrap().unwrap().len(), 1);
    d.stop().unwrap();
    assert_eq!(fake.files(), before, "everything created is removed");
    let e = DamonSysfs::start_targets(
        Box::new(fake.clone()),
        fake.admin(),
        DamonTargets::Phys(&[]),
        ATTRS,
    )
    .unwrap_err();
    assert!(matches!(e, DamonSysfsError::NoTargets), "{e}");
}

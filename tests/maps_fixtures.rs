//! The maps parser on a fixture tree (a fake `/proc` under a temp dir, read through a
//! `SysRoot`), with the awkward cases real maps files have.

use engine::kernel::maps::{read_maps, target_ranges, Perms, VmaName};
use engine::kernel::smaps::parse_smaps;
use engine::{AddrRange, SysRoot};

/// A maps file as a 6.x kernel writes it for a process with a deleted file, a path with
/// spaces, a named anonymous area, a 1 GiB hugetlb mapping, a 64 GiB reservation, heap,
/// stack, vdso/vvar and the vsyscall gate page.
const MAPS: &str = "\
55d0c3a00000-55d0c3a02000 r--p 00000000 fd:01 1837042                    /usr/bin/my app
55d0c3a02000-55d0c3a21000 r-xp 00002000 fd:01 1837042                    /usr/bin/my app
55d0c3c21000-55d0c3c22000 rw-p 00021000 fd:01 1837042                    /usr/bin/my app
55d0c4e3f000-55d0c4e60000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f1000000000 ---p 00000000 00:00 0 
7f1000000000-7f1040000000 rw-s 00000000 00:0f 4096                       /anon_hugepage (deleted)
7f2000000000-7f2000200000 rw-p 00000000 00:00 0                          [anon:jit cache]
7f3000000000-7f3000001000 rw-s 00000000 00:05 77                         /memfd:shm (deleted)
7f4000000000-7f4000010000 r--p 00000000 fd:01 999                        /tmp/with  two  spaces (deleted)
7ffd5b3a0000-7ffd5b3c1000 rw-p 00000000 00:00 0                          [stack]
7ffd5b3d6000-7ffd5b3da000 r--p 00000000 00:00 0                          [vvar]
7ffd5b3da000-7ffd5b3dc000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, SysRoot) {
    let d = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let p = d.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let root = SysRoot::under(d.path());
    (d, root)
}

#[test]
fn every_kind_of_vma_parses() {
    let (_d, root) = tree(&[("proc/4242/maps", MAPS)]);
    let v = read_maps(&root.pid_file(4242, "maps")).unwrap();
    assert_eq!(v.len(), 13);
    // A path with a space.
    assert_eq!(
        v[0].name,
        VmaName::File {
            path: "/usr/bin/my app".into(),
            deleted: false
        }
    );
    assert_eq!(
        (v[1].offset, v[1].dev, v[1].inode),
        (0x2000, (0xfd, 1), 1837042)
    );
    assert_eq!(v[3].name, VmaName::Heap);
    assert!(v[3].is_private_anonymous());
    // A 64 GiB PROT_NONE reservation: anonymous, no permissions.
    assert_eq!(v[4].range.len(), 64 << 30);
    assert_eq!(
        v[4].perms,
        Perms {
            read: false,
            write: false,
            exec: false,
            shared: false
        }
    );
    assert_eq!(v[4].name, VmaName::Anonymous);
    // A 1 GiB shared hugetlb mapping: a deleted file, shared: never private anonymous.
    assert_eq!(v[5].range, AddrRange::new(0x7f1000000000, 0x7f1040000000));
    assert_eq!(
        v[5].name,
        VmaName::File {
            path: "/anon_hugepage".into(),
            deleted: true
        }
    );
    assert!(v[5].perms.shared && !v[5].is_private_anonymous());
    assert_eq!(v[6].name, VmaName::AnonNamed("jit cache".into()));
    assert!(v[6].is_private_anonymous());
    assert_eq!(
        v[7].name,
        VmaName::File {
            path: "/memfd:shm".into(),
            deleted: true
        }
    );
    // Runs of spaces inside a deleted path are kept.
    assert_eq!(
        v[8].name,
        VmaName::File {
            path: "/tmp/with  two  spaces".into(),
            deleted: true
        }
    );
    assert_eq!(v[9].name, VmaName::Stack);
    assert_eq!(v[10].name, VmaName::Special("[vvar]".into()));
    assert_eq!(v[11].name, VmaName::Special("[vdso]".into()));
    assert!(v[12].is_gate() && !v[11].is_gate());
}

#[test]
fn target_ranges_skip_the_gate_page_and_coalesce() {
    let (_d, root) = tree(&[("proc/4242/maps", MAPS)]);
    let r = target_ranges(&read_maps(&root.pid_file(4242, "maps")).unwrap());
    assert_eq!(
        r.first().unwrap(),
        &AddrRange::new(0x55d0c3a00000, 0x55d0c3a21000)
    ); // two adjacent VMAs
    assert_eq!(
        r.last().unwrap(),
        &AddrRange::new(0x7ffd5b3d6000, 0x7ffd5b3dc000)
    ); // vvar + vdso, no vsyscall
    assert!(r.windows(2).all(|w| w[0].end < w[1].start));
}

#[test]
fn empty_maps_is_no_vmas() {
    // A kernel thread or a zombie: the file exists and is empty.
    let (_d, root) = tree(&[("proc/2/maps", "")]);
    let v = read_maps(&root.pid_file(2, "maps")).unwrap();
    assert!(v.is_empty());
    assert!(target_ranges(&v).is_empty());
}

#[test]
fn missing_file_and_garbage_name_the_path_and_line() {
    let (_d, root) = tree(&[(
        "proc/7/maps",
        "1000-2000 rw-p 00000000 00:00 0\n1000-zz rw-p 0 00:00 0\n",
    )]);
    let e = read_maps(&root.pid_file(7, "maps"))
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("proc/7/maps:2: bad end address \"zz\""), "{e}");
    let e = read_maps(&root.pid_file(8, "maps"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("proc/8/maps") && e.contains("No such file"),
        "{e}"
    );
}

#[test]
fn smaps_of_a_huge_mapping_parses() {
    let smaps = "\
7f2000000000-7f2040000000 rw-p 00000000 00:00 0 
Size:            1048576 kB
KernelPageSize:        4 kB
Rss:             1048576 kB
Referenced:       524288 kB
Anonymous:       1048576 kB
AnonHugePages:   1040384 kB
Swap:                  0 kB
Locked:                0 kB
THPeligible:           1
VmFlags: rd wr mr mw me ac sd hg 
";
    let (_d, root) = tree(&[("proc/9/smaps", smaps)]);
    let p = root.pid_file(9, "smaps");
    let v = parse_smaps(
        std::io::BufReader::new(std::fs::File::open(&p).unwrap()),
        &p,
    )
    .unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(
        (v[0].size, v[0].anon_huge_pages, v[0].referenced),
        (1 << 30, 1040384 << 10, 512 << 20)
    );
    assert!(v[0].has_flag("hg"));
}

#[test]
fn the_live_maps_of_this_process_parse() {
    let v = read_maps(&SysRoot::host().pid_file(std::process::id(), "maps")).unwrap();
    assert!(v.iter().any(|x| x.name == VmaName::Stack));
    assert!(v.windows(2).all(|w| w[0].range.end <= w[1].range.start));
}

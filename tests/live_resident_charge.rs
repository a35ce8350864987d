//! The residency cut on this host, under the machine-wide swap fixture: a second page-out
//! pass over memory that is already out advises nothing that is not resident, and the size
//! quota keeps (after the refund) only what was advised — about nothing.

use engine::actuator::{Actuator, ActuatorConfig, ApplyOpts, Target};
use engine::kernel::pagemap::Residency;
use engine::{AddrRange, Advice, AdviceRequest, ApplyReport, SysRoot, TargetId};
use madvd_workload::WorkloadSpec;
use schemes::quota::QuotaState;

mod common;
use common::{open, spawn, MIB, PAGE};

const SWAP: u64 = 256 << 20;

/// Charge `range` to a fresh quota as planning does, apply it, refund what the report gives
/// back; the quota's charge is what stays.
fn pass(act: &mut Actuator, target: &Target<'_>, range: AddrRange) -> (ApplyReport, QuotaState) {
    let mut q = QuotaState {
        esz: 1 << 40,
        ..QuotaState::default()
    };
    q.charge(target.id(), range.end, range.len());
    let req = AdviceRequest {
        target: target.id(),
        range,
        advice: Advice::Pageout,
        scheme: 0,
    };
    let r = act.apply(std::slice::from_ref(target), &[req], ApplyOpts::default());
    q.refund(r.outcomes[0].refund(), None);
    (r, q)
}

fn resident_bytes(p: &mut engine::process::Process, r: AddrRange) -> u64 {
    let mut e = Vec::new();
    p.pagemap()
        .read(r.start, (r.len() / PAGE) as usize, &mut e)
        .unwrap();
    e.iter()
        .filter(|e| !matches!(e.residency(), Residency::Swapped { .. } | Residency::None))
        .count() as u64
        * PAGE
}

#[test]
fn a_second_pageout_pass_charges_nothing_and_advises_nothing_out() {
    let _swap = engine::need_swap!(SWAP);
    let mut w = spawn(&WorkloadSpec {
        size: 64 * MIB,
        hot_fraction: 0.10,
        nohugepage: true,
        ..WorkloadSpec::default()
    });
    let hot = w.hot();
    let cold = AddrRange::new(hot.end, w.mapping().end);
    let mut proc = open(w.pid());
    let vmas: Vec<AddrRange> = proc.maps().unwrap().iter().map(|v| v.range).collect();
    let target = Target::from_process(&proc, vmas).with_id(TargetId(w.pid()));
    let mut act = Actuator::new(SysRoot::host(), ActuatorConfig::default());

    // First pass: everything advised was read resident, every byte accounted for.
    let (r1, q1) = pass(&mut act, &target, cold);
    let o1 = &r1.outcomes[0];
    eprintln!("first pass: {o1:?}; charged {}", q1.charged_sz);
    assert!(o1.bytes_applied > cold.len() / 2, "{o1:?}");
    assert_eq!(o1.bytes_resident, o1.bytes_applied, "{o1:?}");
    assert_eq!(o1.bytes_applied + o1.not_resident(), cold.len(), "{o1:?}");
    assert_eq!(q1.charged_sz, o1.bytes_applied);
    drop(target);
    let left = resident_bytes(&mut proc, cold);
    assert!(
        left <= cold.len() / 10,
        "{left} bytes of {cold} still resident after page-out"
    );

    // Second pass: only what is resident again (at most what pagemap showed, plus the few
    // pages reclaim may have left) is advised; the rest is cut and refunded.
    let vmas: Vec<AddrRange> = proc.maps().unwrap().iter().map(|v| v.range).collect();
    let target = Target::from_process(&proc, vmas).with_id(TargetId(w.pid()));
    let (r2, q2) = pass(&mut act, &target, cold);
    let o2 = &r2.outcomes[0];
    eprintln!(
        "second pass: {o2:?}; charged {}; resident before {left}",
        q2.charged_sz
    );
    assert_eq!(o2.bytes_resident, o2.bytes_applied, "{o2:?}");
    assert!(
        o2.bytes_applied <= left + 64 * PAGE,
        "{o2:?}, {left} resident before"
    );
    assert!(o2.not_resident() >= cold.len() - left - 64 * PAGE, "{o2:?}");
    assert_eq!(q2.charged_sz, o2.bytes_applied);
    assert!(
        q2.charged_sz <= cold.len() / 10,
        "charged {} of {}",
        q2.charged_sz,
        cold.len()
    );
    // A wholly cut range keeps its age (no reset) — unless something was resident again.
    assert_eq!(o2.wholly_skipped(), o2.bytes_applied == 0);
    // Nothing lost by paging out (the child checks every page's contents).
    drop(target);
    let v = w.verify().expect("verify");
    assert_eq!(v.bad_pages, 0, "{v:?}");
}

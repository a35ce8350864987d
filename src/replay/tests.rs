use super::*;
use crate::record::read_from;
use crate::record::tests::{stairs, write_lines};
use std::path::Path;

const MIB: u64 = 1 << 20;

fn policy(scheme_tail: &str) -> Policy {
    let text = format!(
        r#"( schemes: [ ( name: "cold", pattern: (size: (min: "4 KiB"), accesses: (min: 0, max: 0), age: (min: "500 ms")), action: pageout, {scheme_tail} ) ] )"#
    );
    Policy::from_str(&text, Path::new("p.ron")).unwrap()
}

fn loaded(n: usize, cut: usize) -> Loaded {
    let (h, frames) = stairs(n);
    let s = write_lines(&h, &frames, cut == 0);
    read_from(Path::new("s.rec"), &s.as_bytes()[..s.len() - cut]).unwrap()
}

fn cfg() -> ReplayConfig {
    ReplayConfig {
        refault_window_us: 2_000_000,
        cost: whatif::CostModel::default(),
    }
}

/// `policy(tail)` replayed on a clean stairs record of `n` frames.
fn replayed(tail: &str, n: usize) -> Replay {
    replay(&policy(tail), &loaded(n, 0), &cfg()).unwrap()
}

/// No recorded second (10 frames) advises more than `max` bytes.
fn per_second_at_most(r: &Replay, max: u64) {
    for w in r.steps.chunks(10) {
        let b: u64 = w.iter().map(|s| s.advised_bytes[0]).sum();
        assert!(b <= max, "{:?}", advised_by_step(r));
    }
}

fn advised_by_step(r: &Replay) -> Vec<u64> {
    r.steps.iter().map(|s| s.advised_bytes[0]).collect()
}

#[test]
fn age_reset_keeps_a_range_from_being_advised_every_aggregation() {
    let r = replayed("", 40);
    let by = advised_by_step(&r);
    // The 56 cold MiB of the stairs are eligible from aggregation 5 on; once advised, a
    // range waits 5 aggregations (its reset age) before it is eligible again.
    assert_eq!(by[..5].iter().sum::<u64>(), 0, "{by:?}");
    assert!(by[5] >= 56 * MIB, "{by:?}");
    assert_eq!(by[6..10].iter().sum::<u64>(), 0, "{by:?}");
    // Without the age reset every frame from 5 on would advise ≥ 56 MiB (35 × 56 MiB).
    assert!(r.advised_bytes() < 10 * 57 * MIB, "{}", r.advised_bytes());
    assert_eq!(r.schemes[0].advised_bytes, by.iter().sum::<u64>());
}

/// The residency cut, as live: what the replay paged out and the record has not shown
/// accessed since is cut out of later advice and refunded, so each byte is advised again only
/// after an access brought it back; memory the record says was out at its start (`absent`)
/// is never advised while it stays unaccessed.
#[test]
fn residency_cut_advises_again_only_what_came_back() {
    let all = ReplayConfig {
        refault_window_us: u64::MAX,
        ..cfg()
    };
    let r = replay(&policy(""), &loaded(40, 0), &all).unwrap();
    let by = advised_by_step(&r);
    assert!(by[5] >= 56 * MIB, "{by:?}");
    assert!(r.schemes[0].not_resident_bytes > 0, "{:?}", r.schemes[0]);
    // Each byte of the 64 MiB span is advised once, and again only after an access
    // brought it back.
    assert!(
        r.advised_bytes() <= 64 * MIB + r.refaulted_bytes(),
        "{by:?} refaulted {}",
        r.refaulted_bytes()
    );
    // 32 MiB of the cold range out of memory when the recording started.
    let (h, mut frames) = stairs(40);
    let base = 0x7f00_0000_0000u64;
    frames[0].targets[0].absent = vec![[base + 8 * MIB, base + 40 * MIB]];
    let s = write_lines(&h, &frames, true);
    let rec = read_from(Path::new("a.rec"), s.as_bytes()).unwrap();
    let r = replay(&policy(""), &rec, &all).unwrap();
    let by = advised_by_step(&r);
    // By aggregation 5 the hot eighth has moved onto 8..16 MiB; 0..8 and 40..64 MiB are
    // advised; 16..40 MiB stay out, cut out and refunded.
    assert_eq!(by[5], 32 * MIB, "{by:?}");
    // The hot eighth moved onto 8..16 MiB, out since the start, with nothing accessed beside it that
    // its accesses could be (risk.rs, module doc): all of it came back (not the 18/20 share
    // its regions read), and all of it is advised again once it is cold.
    assert_eq!(by[10], 8 * MIB, "{by:?}");
    assert!(
        r.schemes[0].not_resident_bytes >= 24 * MIB,
        "{:?}",
        r.schemes[0]
    );
}

/// A `refault_rate` goal is replayed (its page states come from the residency model), and
/// said so once.
#[test]
fn refault_guard_replays_on_the_residency_model() {
    let p = policy(
        r#"quota: (size: "1 GiB", reset_interval: "1 s", goals: [(metric: refault_rate, target: "2%", window: "1 min")])"#,
    );
    let r = replay(&p, &loaded(40, 0), &cfg()).unwrap();
    assert_eq!(
        r.notes
            .iter()
            .filter(|n| n.contains("refault guard: measured"))
            .count(),
        1,
        "{:?}",
        r.notes
    );
    // The stairs' hot eighth walks onto what was paged out: the guard shrinks the quota, so
    // less is advised than without it.
    let free = replayed(r#"quota: (size: "1 GiB", reset_interval: "1 s")"#, 40);
    assert!(r.refaulted_bytes() > 0);
    assert!(
        r.advised_bytes() < free.advised_bytes(),
        "{} vs {}",
        r.advised_bytes(),
        free.advised_bytes()
    );
}

#[test]
fn size_quota_windows_reset_on_recorded_time() {
    let r = replayed(r#"quota: (size: "4 MiB", reset_interval: "1 s")"#, 40);
    // 4 s recorded, eligible from 0.5 s: at most one 4 MiB window per recorded second (a
    // second of frames can straddle two windows).
    per_second_at_most(&r, 8 * MIB);
    assert!(
        r.advised_bytes() >= 12 * MIB && r.advised_bytes() <= 16 * MIB,
        "{}",
        r.advised_bytes()
    );
    assert!(r.schemes[0].qt_exceeds >= 3, "{:?}", r.schemes[0]);
}

#[test]
fn time_quota_is_charged_from_the_cost_model() {
    // 1 ms per reset interval at the default 17 µs per resident page: ~59 pages, ~240 KiB
    // per second.
    let r = replayed(r#"quota: (time: "1 ms", reset_interval: "1 s")"#, 40);
    assert!(r.advised_bytes() > 0);
    // The kernel lets the round that crosses the quota finish: one region over.
    per_second_at_most(&r, 4 * MIB);
}

#[test]
fn moving_hot_window_shows_refault_risk() {
    // The stairs' hot eighth moves up every 5 frames onto ranges advised before.
    let r = replayed("", 40);
    assert!(r.refaulted_bytes() > 0);
    assert!(r.refaulted_bytes() < r.advised_bytes());
    // A zero window counts nothing.
    let none = replay(
        &policy(""),
        &loaded(40, 0),
        &ReplayConfig {
            refault_window_us: 0,
            ..cfg()
        },
    )
    .unwrap();
    assert_eq!(none.refaulted_bytes(), 0);
}

#[test]
fn missing_inputs_are_said_once_each_and_the_replay_goes_on() {
    let p = policy(
        r#"quota: (size: "8 MiB", reset_interval: "1 s", goals: [(metric: some_mem_psi_us, target: "1 ms")]), watermarks: (metric: free_mem_rate, interval: "1 s", high: 500, mid: 400, low: 200)"#,
    );
    let r = replay(&p, &loaded(20, 0), &cfg()).unwrap();
    assert!(r.advised_bytes() > 0);
    for what in [
        "watermarks not replayed",
        "quota goals not replayed",
        "residency",
        "swap",
    ] {
        assert_eq!(
            r.notes.iter().filter(|n| n.contains(what)).count(),
            1,
            "{what}: {:?}",
            r.notes
        );
    }
}

#[test]
fn damaged_tail_replays_the_intact_frames_and_says_where_it_stopped() {
    let whole = loaded(20, 0);
    let cut = loaded(20, 40);
    let r = replay(&policy(""), &cut, &cfg()).unwrap();
    assert_eq!(r.snapshots, 19);
    let s = r.stopped.as_ref().unwrap();
    assert_eq!(s.line, 21);
    // The offset is where line 21 starts: the header and 19 frames before it.
    let (h, frames) = stairs(20);
    let text = write_lines(&h, &frames[..19], false);
    assert_eq!(s.offset, text.len() as u64);
    // What it replayed is what the whole record gives over the same frames.
    let full = replay(&policy(""), &whole, &cfg()).unwrap();
    assert_eq!(advised_by_step(&r)[..], advised_by_step(&full)[..19]);
}

#[test]
fn corrupt_middle_line_stops_the_replay_there() {
    let (h, frames) = stairs(10);
    let s = write_lines(&h, &frames, true);
    let mut lines: Vec<String> = s.lines().map(String::from).collect();
    lines[4] = "{\"t_us\": garbage".into();
    let rec = read_from(Path::new("x.rec"), lines.join("\n").as_bytes()).unwrap();
    let r = replay(&policy(""), &rec, &cfg()).unwrap();
    assert_eq!(r.snapshots, 3);
    let st = r.stopped.unwrap();
    assert_eq!((st.line, st.column), (5, 10));
}

#[test]
fn recorded_mappings_cut_the_advice_as_live() {
    let (h, mut frames) = stairs(20);
    let base = 0x7f00_0000_0000u64;
    // Only the top half of the 64 MiB span is mapped (its hot eighth starts at the bottom).
    for f in &mut frames {
        f.targets[0].mappings = vec![[base + 32 * MIB, base + 64 * MIB]];
    }
    let s = write_lines(&h, &frames, true);
    let rec = read_from(Path::new("m.rec"), s.as_bytes()).unwrap();
    let r = replay(&policy(""), &rec, &cfg()).unwrap();
    assert!(
        !r.notes.iter().any(|n| n.contains("mappings")),
        "{:?}",
        r.notes
    );
    // Eligible from aggregation 5: only the mapped, cold 32 MiB, not the other spans.
    assert_eq!(
        r.steps[5].advised_bytes[0],
        32 * MIB,
        "{:?}",
        advised_by_step(&r)
    );
    let unmapped = replay(&policy(""), &loaded(20, 0), &cfg()).unwrap();
    assert!(unmapped.steps[5].advised_bytes[0] > 32 * MIB);
}

/// A scheme whose apply interval is shorter than the record's aggregation applies at its own
/// interval between frames, as `run` does on mid-aggregation snapshots: with a 1 MiB size
/// quota per 25 ms window it takes ~4 windows' worth per 100 ms frame, not one.
#[test]
fn short_apply_intervals_apply_between_frames() {
    let short = replayed(
        r#"apply_interval: "25 ms", quota: (size: "1 MiB", reset_interval: "25 ms")"#,
        40,
    );
    let once = replayed(
        r#"apply_interval: "100 ms", quota: (size: "1 MiB", reset_interval: "25 ms")"#,
        40,
    );
    let (s, o) = (advised_by_step(&short), advised_by_step(&once));
    // Frame 6: cold memory eligible since frame 5, the quota binding in both.
    assert!(s[6] >= 4 * MIB, "short: {s:?}");
    assert!(o[6] <= 2 * MIB, "once per frame: {o:?}");
    // Each apply took its window's quota (one region over at most), at its own time.
    assert!(s[6] <= 8 * MIB, "short: {s:?}");
    assert!(short.advised_bytes() > once.advised_bytes());
}

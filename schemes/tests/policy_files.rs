//! Every shipped policy loads; every kind of mistake is reported at its line and column,
//! with a message naming the field.

use schemes::{FakeMetrics, Policy, PolicyError, Schemes, SchemesError};
use std::path::{Path, PathBuf};

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

#[test]
fn every_shipped_policy_loads() {
    let mut n = 0;
    for e in std::fs::read_dir(policies_dir()).unwrap() {
        let path = e.unwrap().path();
        if path.extension().and_then(|x| x.to_str()) != Some("ron") {
            continue;
        }
        let p = Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!p.schemes.is_empty(), "{}", path.display());
        n += 1;
    }
    assert!(n >= 5, "expected the five shipped policies, found {n}");
}

#[test]
fn shipped_policies_say_what_the_issue_asks() {
    use schemes::policy::{GoalMetric, WmarkSpec};
    use schemes::units::{Age, Freq};
    let load = |f: &str| Policy::load(&policies_dir().join(f)).unwrap();

    let p = load("reclaim-cold.ron");
    let s = &p.schemes[0];
    assert_eq!(s.action, schemes::Action::Pageout);
    assert_eq!(
        (s.pattern.min_freq, s.pattern.max_freq),
        (Freq::Count(0), Freq::Count(0))
    );
    assert_eq!(s.pattern.min_age, Age::TimeUs(120_000_000));
    assert_eq!(
        (s.quota.time_us, s.quota.size, s.quota.reset_interval_us),
        (10_000, 128 << 20, 1_000_000)
    );
    let w: WmarkSpec = s.watermarks.unwrap();
    assert_eq!(
        (w.interval_us, w.high, w.mid, w.low),
        (5_000_000, 500, 400, 200)
    );
    let mut attrs = engine::Attrs {
        sample_us: 1,
        aggr_us: 2,
        ..engine::Attrs::default()
    };
    p.apply_monitor_overrides(&mut attrs);
    assert_eq!(
        (attrs.sample_us, attrs.aggr_us, attrs.ops_update_us),
        (5_000, 100_000, 60_000_000)
    );

    let p = load("reclaim-psi.ron");
    assert_eq!(
        p.schemes[0].quota.goals[0].metric,
        GoalMetric::SomeMemPsiUs { cgroup: None }
    );
    assert_eq!(p.schemes[0].quota.goals[0].target, 1_000);

    assert_eq!(
        load("cold-deprioritize.ron").schemes[0].action,
        schemes::Action::Cold
    );
    let p = load("thp-hot.ron");
    assert_eq!(p.schemes[0].action, schemes::Action::Collapse);
    assert_eq!(p.schemes[0].pattern.min_sz, 2 << 20);
    // thp.ron: both sides, each on whole huge pages; collapse only densely hot regions (half
    // the samples, so one young sample after a collapse never matches), give-back (a split)
    // only idle ones.
    let p = load("thp.ron");
    let acts: Vec<_> = p.schemes.iter().map(|s| s.action).collect();
    assert_eq!(acts, [schemes::Action::Collapse, schemes::Action::Split]);
    assert!(p.schemes.iter().all(|s| s.pattern.min_sz == 2 << 20));
    assert_eq!(p.schemes[0].pattern.min_freq, Freq::MaxBp(3_000));
    assert_eq!(p.schemes[0].pattern.min_age, Age::TimeUs(4_000_000));
    assert_eq!(p.schemes[1].pattern.max_freq, Freq::Count(0));
    assert!(load("stat.ron")
        .schemes
        .iter()
        .all(|s| s.action == schemes::Action::Stat));
}

fn err(text: &str) -> PolicyError {
    match Policy::from_str(text, Path::new("policies/x.ron")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

/// A scheme list with one scheme whose body is `body` (lines 4.., 12 spaces of indent).
fn scheme(body: &str) -> String {
    format!("(\n    schemes: [\n        (\n{body}        ),\n    ],\n)\n")
}

#[test]
fn unknown_action() {
    let e = err(&scheme(
        "            name: \"x\",\n            pattern: (),\n            action: dontneed,\n",
    ));
    assert_eq!((e.line(), e.column()), (6, 21), "{e}");
    assert!(e.to_string().starts_with(
        "policies/x.ron:6:21: unknown action `dontneed`, expected one of pageout, cold, willneed, collapse, stat"
    ), "{e}");
}

#[test]
fn min_above_max() {
    let e = err(&scheme(
        "            name: \"x\",\n            pattern: (size: (min: \"8 KiB\", max: \"4 KiB\")),\n            action: pageout,\n",
    ));
    // Points at the value of `max`.
    assert_eq!((e.line(), e.column()), (5, 49), "{e}");
    assert_eq!(
        e.to_string(),
        "policies/x.ron:5:49: max: max (4096 bytes) is smaller than min (8192 bytes)"
    );

    let e = err(&scheme(
        "            name: \"x\",\n            pattern: (age: (min: 30, max: 3)),\n            action: pageout,\n",
    ));
    assert_eq!((e.line(), e.column()), (5, 43), "{e}");
    assert!(e.message().contains("max is smaller than min"), "{e}");
}

#[test]
fn unknown_unit() {
    let e = err(&scheme(
        "            name: \"x\",\n            pattern: (size: (min: \"4 QiB\")),\n            action: pageout,\n",
    ));
    assert_eq!((e.line(), e.column()), (5, 35), "{e}");
    assert!(
        e.message().starts_with("min: unknown size unit `QiB`"),
        "{e}"
    );

    let e = err(&scheme(
        "            name: \"x\",\n            pattern: (),\n            action: pageout,\n            apply_interval: \"3 fortnights\",\n",
    ));
    assert_eq!((e.line(), e.column()), (7, 29), "{e}");
    assert!(
        e.message()
            .starts_with("apply_interval: unknown time unit `fortnights`"),
        "{e}"
    );
}

#[test]
fn negative_size() {
    let e = err(&scheme(
        "            name: \"x\",\n            pattern: (size: (min: -4096)),\n            action: pageout,\n",
    ));
    assert_eq!((e.line(), e.column()), (5, 35), "{e}");
    assert_eq!(e.message(), "min: negative size -4096");

    let e = err(&scheme(
        "            name: \"x\",\n            pattern: (),\n            action: pageout,\n            quota: (size: \"-1 MiB\"),\n",
    ));
    assert_eq!((e.line(), e.column()), (7, 27), "{e}");
    assert!(e.message().starts_with("size: negative size"), "{e}");
}

#[test]
fn missing_field() {
    let e = err(&scheme(
        "            name: \"x\",\n            pattern: (),\n",
    ));
    // Reported where the scheme ends without it.
    assert_eq!((e.line(), e.column()), (6, 9), "{e}");
    assert_eq!(e.message(), "missing field `action` in Scheme");
}

#[test]
fn unknown_field() {
    let e = err(&scheme(
        "            name: \"x\",\n            pattern: (),\n            actoin: pageout,\n",
    ));
    assert_eq!((e.line(), e.column()), (6, 13), "{e}");
    assert!(
        e.message()
            .starts_with("unknown field `actoin` in Scheme, expected one of name, pattern, action"),
        "{e}"
    );
}

#[test]
fn goal_source_missing() {
    let text = scheme(concat!(
        "            name: \"x\",\n",
        "            pattern: (),\n",
        "            action: pageout,\n",
        "            quota: (goals: [\n",
        "                (metric: some_mem_psi_us, target: \"1 ms\", cgroup: \"/nope\"),\n",
        "            ]),\n",
    ));
    let policy = Policy::from_str(&text, Path::new("policies/x.ron")).unwrap();
    let env = FakeMetrics::new();
    env.set_psi_total_us(None, 0); // the system has PSI, the group does not
    let e = match Schemes::new(&policy, Box::new(env.clone())) {
        Err(SchemesError::Source(e)) => e,
        other => panic!("expected a source error, got {other:?}"),
    };
    assert_eq!((e.line(), e.column()), (8, 67), "{e}");
    assert!(
        e.to_string().starts_with(
            "policies/x.ron:8:67: some_mem_psi_us goal: memory PSI of /nope is not available"
        ),
        "{e}"
    );
    // The same check, without building the schemes (for `madvd check`).
    assert_eq!(
        policy.check_sources(&env).unwrap_err().to_string(),
        e.to_string()
    );

    // A node goal without a node meminfo points at `node`.
    let text = scheme(concat!(
        "            name: \"x\",\n",
        "            pattern: (),\n",
        "            action: pageout,\n",
        "            quota: (goals: [(metric: node_mem_free_bp, target: \"20%\", node: 7)]),\n",
    ));
    let policy = Policy::from_str(&text, Path::new("p.ron")).unwrap();
    let e = policy.check_sources(&env).unwrap_err();
    assert_eq!((e.line(), e.column()), (7, 77), "{e}");
    assert!(e.message().contains("meminfo of node 7"), "{e}");
}

#[test]
fn other_mistakes_are_positioned_too() {
    // Syntax error.
    let e = err("(\n    schemes: [\n        (name: \"x\" pattern: ()),\n    ],\n)\n");
    assert_eq!(e.line(), 3, "{e}");
    // Watermarks out of order.
    let e = err(&scheme(
        "            name: \"x\",\n            pattern: (),\n            action: pageout,\n            watermarks: (interval: \"5 s\", high: 300, mid: 400, low: 200),\n",
    ));
    assert_eq!((e.line(), e.column()), (7, 59), "{e}");
    assert!(
        e.message()
            .starts_with("mid: mid (400‰) is above high (300‰)"),
        "{e}"
    );
    // Time without unit.
    let e = err("(\n    monitor: (sample: 5),\n    schemes: [],\n)\n");
    assert_eq!((e.line(), e.column()), (2, 23), "{e}");
    assert!(e.message().contains("needs a unit"), "{e}");
    // Duplicate names.
    let e = err("(schemes: [(name: \"a\", pattern: (), action: stat), (name: \"a\", pattern: (), action: stat)])");
    assert_eq!((e.line(), e.column()), (1, 59), "{e}");
    // Destructive advice gets a hint.
    let e = err("(schemes: [(name: \"a\", pattern: (), action: free)])");
    assert!(e.message().contains("non-destructive"), "{e}");
    // Not UTF-8.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.ron");
    std::fs::write(&p, b"(\n  schemes: [\xff]\n)").unwrap();
    let e = Policy::load(&p).unwrap_err();
    assert_eq!((e.line(), e.column()), (2, 13), "{e}");
    // Missing file.
    assert!(matches!(
        Policy::load(&dir.path().join("none.ron")),
        Err(PolicyError::Io { .. })
    ));
}

#[test]
fn optional_values_may_be_written_bare_or_with_some_and_struct_names() {
    let p = Policy::from_str(
        "Policy(schemes: [Scheme(name: \"a\", pattern: Pattern(size: Range(min: Some(\"4 KiB\"))), action: pageout, apply_interval: Some(\"50 ms\"))])",
        Path::new("p"),
    )
    .unwrap();
    assert_eq!(p.schemes[0].pattern.min_sz, 4096);
    assert_eq!(p.schemes[0].apply_interval_us, Some(50_000));
}

/// The complete example of docs/policy-format.md is a valid policy.
#[test]
fn format_doc_example_loads() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/policy-format.md"),
    )
    .unwrap();
    let start = doc.find("```ron\n").expect("a ron block") + "```ron\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let p = Policy::from_str(&doc[start..end], Path::new("docs/policy-format.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.schemes.len(), 1);
    assert_eq!(p.schemes[0].filters.len(), 2);
    assert_eq!(p.schemes[0].quota.goals.len(), 1);
}

/// A policy with no schemes can do nothing: refused, pointing at the empty list.
#[test]
fn empty_scheme_list_is_refused() {
    let e = err("(\n    schemes: [],\n)\n");
    assert_eq!((e.line(), e.column()), (2, 14), "{e}");
    assert_eq!(
        e.to_string(),
        "policies/x.ron:2:14: schemes: no schemes: a policy needs at least one (a `stat` scheme only counts)"
    );
    let e = err("(monitor: (sample: \"5 ms\"), schemes: [ /* none yet */ ])");
    assert!(e.message().starts_with("schemes: no schemes"), "{e}");
}

/// A UTF-8 byte order mark at the start is skipped (`ron` refused it with "Expected opening
/// `(`"); positions are counted after it, as editors show them.
#[test]
fn byte_order_mark_is_skipped() {
    let text = "\u{feff}(schemes: [(name: \"x\", pattern: (), action: pageout)])";
    let p = Policy::from_str(text, Path::new("bom.ron")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.schemes.len(), 1);
    let e = err("\u{feff}(schemes: [(name: \"x\", pattern: (), action: dontneed)])");
    assert_eq!((e.line(), e.column()), (1, 45), "{e}");
    // Through the file, too; a bad byte after it is placed after it.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bom.ron");
    std::fs::write(&f, text.as_bytes()).unwrap();
    assert_eq!(Policy::load(&f).unwrap().schemes[0].name, "x");
    std::fs::write(&f, b"\xef\xbb\xbf(\xff").unwrap();
    let e = Policy::load(&f).unwrap_err();
    assert_eq!((e.line(), e.column()), (1, 2), "{e}");
}

/// `m` is refused in policies too (minutes or MiB?), with the spelling to use, at the value.
#[test]
fn m_unit_is_refused_with_a_hint() {
    let e = err(&scheme(
        "            name: \"x\",\n            pattern: (age: (min: \"2m\")),\n            action: pageout,\n",
    ));
    assert_eq!((e.line(), e.column()), (5, 34), "{e}");
    assert!(
        e.message()
            .starts_with("min: unit `m` in \"2m\" is ambiguous (minutes or MiB?): write \"2min\""),
        "{e}"
    );
    let e = err(&scheme(
        "            name: \"x\",\n            pattern: (),\n            action: pageout,\n            quota: (size: \"128 m\"),\n",
    ));
    assert_eq!((e.line(), e.column()), (7, 27), "{e}");
    assert!(e.message().contains("write \"128MiB\""), "{e}");
}

/// Huge sizes are "too large" with the largest size, not "needs a unit" or unit `e30`.
#[test]
fn huge_sizes_are_too_large() {
    for (v, col) in [
        ("1e30", 35),
        ("99999999999999999999999", 35),
        ("\"1e30\"", 35),
        ("\"1e30 KiB\"", 35),
        ("\"99999999999999999999999 B\"", 35),
    ] {
        let e = err(&scheme(&format!(
            "            name: \"x\",\n            pattern: (size: (min: {v})),\n            action: pageout,\n"
        )));
        assert_eq!((e.line(), e.column()), (5, col), "{v}: {e}");
        assert!(
            e.message().starts_with("min: size")
                && e.message().contains("is too large (the largest is ")
                && !e.message().contains("unit"),
            "{v}: {e}"
        );
    }
    let e =
        err("(monitor: (min_regions: 1e30), schemes: [(name: \"x\", pattern: (), action: stat)])");
    assert!(
        e.message()
            .contains("too large (the largest is 4294967295)"),
        "{e}"
    );
}

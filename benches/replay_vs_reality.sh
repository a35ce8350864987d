#!/usr/bin/env bash
# Replay vs reality (issue 16): does `madvd replay` predict what a policy does live?
# Runs tests/replay.rs's four `replay_vs_reality_*` tests (kernel-style pageout scheme and
# policies/reclaim.ron, on a static and on a moving hot set; each records a workload, replays
# the policy against the record, then runs the policy live on the same workload and seed)
# MADVD_RVR_RUNS times, interleaved, keeping each run's record, live lines and comparison in
# DIR, then writes the table: every run's replay / live figures, the per-run verdict (the
# test's own bars), the medians of the runs with the verdict on them, and the live side's own
# run-to-run spread (the same workload and seed run live N times: how far a live run falls
# from the live median, and how many live/live pairs differ by more than the 10 % bar).
#
#   benches/replay_vs_reality.sh                 # 5 runs x 4 tests, ~22 min; root and swap
#   MADVD_RVR_SUMMARY_ONLY=1 benches/replay_vs_reality.sh DIR   # the table of a kept DIR
#
# DIR defaults to target/rvr-<commit>. The table goes to target/replay_vs_reality.md and,
# unless NO_DOCS=1, into docs/performance.md, section "Replay vs reality", between
# `<!-- replay_vs_reality:begin -->` and `<!-- replay_vs_reality:end -->`.
set -euo pipefail

top="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
cd "$top"
commit="$(git rev-parse --short HEAD)"
dir="${1:-target/rvr-$commit}"
runs="${MADVD_RVR_RUNS:-5}"
mkdir -p "$dir" target
dir="$(cd "$dir" && pwd)"

if [ "${MADVD_RVR_SUMMARY_ONLY:-0}" != 1 ]; then
  cargo test --test replay --no-run
  start="$(date -u +%Y-%m-%dT%H:%MZ)"
  load0="$(cut -d' ' -f1-3 /proc/loadavg)"
  for i in $(seq 1 "$runs"); do
    for t in kernel_style_static kernel_style_moving reclaim_static reclaim_moving; do
      echo "=== run $i $t $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
      # A missed bar fails the test; the table below gives every run's verdict.
      MADVD_REPLAY_RUN=$i MADVD_REPLAY_KEEP="$dir" cargo test --test replay \
        "replay_vs_reality_${t}_hot_set" -- --exact --ignored --nocapture --test-threads 1 \
        2>&1 | grep -E '^(replay vs reality|test |thread)' || true
    done
  done
  end="$(date -u +%H:%MZ)"
  load1="$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "Run of $start–$end at $commit (\`benches/replay_vs_reality.sh\`, $runs runs of each test interleaved, debug build); load average $load0 before, $load1 after." > "$dir/when"
fi

python3 - "$dir" > target/replay_vs_reality.md <<'EOF'
import glob, json, os, statistics as st, sys
d = sys.argv[1]
MIB = 2 ** 20
# The test's bars (tests/replay.rs `check`): advised within 10 % of live; refaulted within
# 20 %, or both under 2 % of the workload (256 MiB): the probe's own sample page-outs.
FLOOR = 0.02 * 256 * MIB
def within(a, b, frac):
    return abs(a - b) <= b * frac
def met(ra, la, rr, lr):
    return within(ra, la, 0.10) and ((rr < FLOOR and lr < FLOOR) or within(rr, lr, 0.20))
cells = [("kernel-style", "static", "kernel-style-HotCold"),
         ("kernel-style", "moving", "kernel-style-Movingperiod_ms5000"),
         ("`reclaim.ron`", "static", "reclaim-HotCold"),
         ("`reclaim.ron`", "moving", "reclaim-Movingperiod_ms5000")]
when = os.path.join(d, "when")
print("<!-- replay_vs_reality:begin -->")
if os.path.exists(when):
    print(open(when).read().strip())
    print()
print("MiB, replay / live; ✗ where a run misses the test's bars (advised within 10 %, refaulted within 20 % or both under the 5.1 MiB floor).")
print()
print("| policy | hot set | advised, each run | refaulted, each run | runs met | medians: advised (replay / live) | medians: refaulted | met on the medians | live's own spread: runs from the live median; live/live pairs > 10 % apart |")
print("|---|---|---|---|---|---|---|---|---|")
tot = [0, 0]
for pol, hot, stem in cells:
    files = sorted(glob.glob(f"{d}/{stem}-*.cmp.json"), key=lambda f: int(f.rsplit("-", 1)[1].split(".")[0]))
    cs = [json.load(open(f)) for f in files]
    if not cs:
        continue
    ra = [c["replay_advised"] for c in cs]; la = [c["live_advised"] for c in cs]
    rr = [c["replay_refaulted"] for c in cs]; lr = [c["live_refaulted"] for c in cs]
    ok = [met(*x) for x in zip(ra, la, rr, lr)]
    tot[0] += sum(ok); tot[1] += len(ok)
    adv = ", ".join(f"{a/MIB:.1f}/{b/MIB:.1f}" + ("" if within(a, b, 0.10) else " ✗") for a, b in zip(ra, la))
    ref = ", ".join(f"{a/MIB:.1f}/{b/MIB:.1f}" + ("" if (a < FLOOR and b < FLOOR) or within(a, b, 0.20) else " ✗") for a, b in zip(rr, lr))
    mra, mla, mrr, mlr = (st.median(x) for x in (ra, la, rr, lr))
    mmet = met(mra, mla, mrr, mlr)
    dev = [b / mla - 1 for b in la]
    pairs = [(a, b) for i, a in enumerate(la) for j, b in enumerate(la) if i != j]
    far = sum(not within(a, b, 0.10) for a, b in pairs)
    print(f"| {pol} | {hot} | {adv} | {ref} | {sum(ok)} of {len(ok)} | {mra/MIB:.1f} / {mla/MIB:.1f} ({mra/mla:.2f}) | {mrr/MIB:.1f} / {mlr/MIB:.1f} | {'**yes**' if mmet else '**no**'} | {100*min(dev):+.1f} … {100*max(dev):+.1f} %; {far} of {len(pairs)} |")
print()
print(f"Runs met: {tot[0]} of {tot[1]}. Records, live lines and comparisons: `{d}`.")
print("<!-- replay_vs_reality:end -->")
EOF
cat target/replay_vs_reality.md

if [ "${NO_DOCS:-0}" != 1 ]; then
  python3 - docs/performance.md target/replay_vs_reality.md <<'EOF'
import re, sys
doc, new = open(sys.argv[1]).read(), open(sys.argv[2]).read().rstrip('\n')
head = '## Replay vs reality'
if head not in doc:
    sys.exit(f"docs/performance.md has no section '{head}'")
pat = re.compile(r'<!-- replay_vs_reality:begin -->.*?<!-- replay_vs_reality:end -->', re.S)
if pat.search(doc):
    doc = pat.sub(lambda m: new, doc, count=1)
else:
    # A new block right after the section's question paragraph.
    at = doc.index(head)
    para = doc.index('\n\n', doc.index('\n\n', at) + 2)
    doc = doc[:para] + '\n\n' + new + doc[para:]
open(sys.argv[1], 'w').write(doc)
print("replay_vs_reality.sh: table written into docs/performance.md")
EOF
fi

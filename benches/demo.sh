#!/usr/bin/env bash
# The demo's figures over N runs (default 5): saved/oracle and slowdown (wall clock and per
# CPU-second of the workload), each run a fresh `madvd demo --json`. As root.
#   benches/demo.sh [N] [extra demo args...]      e.g. benches/demo.sh 5 --short
# Prints one line per run, then the median and range of each figure; the raw JSON goes to
# target/demo-bench/run-K.json. Written up in docs/performance.md, "Demo".
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}; shift || true
cargo build --release -q
out=target/demo-bench; mkdir -p "$out"
# A copy, so rebuilding meanwhile does not change the binary under test.
cp target/release/madvd "$out/madvd"
echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg); demo args: $*"
for k in $(seq 1 "$n"); do
  # The demo waits up to 90 s for the machine-wide swap lock; if a test or another bench holds
  # it longer, wait and try again.
  for try in 1 2 3 4 5 6 7 8 9 10; do
    if "$out/madvd" demo --json --record "$out/run-$k.rec" --heatmap "$out/run-$k.png" "$@" > "$out/run-$k.json" 2> "$out/run-$k.err"; then break; fi
    grep -q "swap is in use" "$out/run-$k.err" || { cat "$out/run-$k.err"; exit 1; }
    echo "run $k: swap lock busy, retrying ($try)"; sleep 20
  done
  python3 - "$out/run-$k.json" "$k" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); t = d["throughput"]
print(f"run {sys.argv[2]}: ops={d['ops']} saved={d['saved']['vm_swap_bytes']>>20} MiB oracle={d['oracle_bytes']>>20} MiB "
      f"saved/oracle={d['saved_over_oracle']:.3f} slowdown={t['slowdown_pct']:.1f}% cpu_slowdown={t['cpu_slowdown_pct']:.1f}% "
      f"before={t['before_ops_per_s']/1e6:.2f}M after={t['after_ops_per_s']/1e6:.2f}M during={t['during_ops_per_s']/1e6:.2f}M ops/s "
      f"advised={d['advised_bytes']>>20} MiB probe_pageouts={d['probe_pageouts']} bad_pages={d['bad_pages']} load={open('/proc/loadavg').read().split()[0]}")
PY
done
python3 - "$out" "$n" <<'PY'
import json, sys, statistics as st
runs = [json.load(open(f"{sys.argv[1]}/run-{k}.json")) for k in range(1, int(sys.argv[2]) + 1)]
def row(name, xs, fmt):
    print(f"{name:<22} median {fmt(st.median(xs))}  min {fmt(min(xs))}  max {fmt(max(xs))}")
row("saved/oracle", [r["saved_over_oracle"] for r in runs], lambda v: f"{v:.3f}")
row("slowdown % (wall)", [r["throughput"]["slowdown_pct"] for r in runs], lambda v: f"{v:.1f}")
row("slowdown % (per CPU-s)", [r["throughput"]["cpu_slowdown_pct"] for r in runs], lambda v: f"{v:.1f}")
row("saved MiB", [r["saved"]["vm_swap_bytes"] / 2**20 for r in runs], lambda v: f"{v:.0f}")
PY

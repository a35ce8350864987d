#!/usr/bin/env bash
# Reclaim side by side with the kernel, in the kernel lab (issue 14): runs tests/lab_reclaim.rs's
# full measurement (MADVD_VS_KERNEL_FULL=1) on the `lab` kernel (6.12 with page_idle) with a
# release madvd, under the lab lock, and writes its table into docs/performance.md, section
# "Reclaim side by side with the kernel (lab, issue 14)", between `<!-- lab_reclaim-W:begin -->`
# and `<!-- lab_reclaim-W:end -->` (W: the workloads, e.g. `band`, `scattered`; a block that is
# not there yet goes at the end of the section).
#
#   benches/lab_reclaim.sh                       # 5 rounds x 60 s, 128 MiB, band
#   MADVD_VS_KERNEL_REPS=3 MADVD_VS_KERNEL_WORKLOADS=band,scattered benches/lab_reclaim.sh
#
# Knobs (passed into the guest): MADVD_VS_KERNEL_REPS (5), MADVD_VS_KERNEL_SECS (60),
# MADVD_VS_KERNEL_SIZE_MIB (128), MADVD_VS_KERNEL_WORKLOADS (band; band,scattered),
# MADVD_VS_KERNEL_SIDES (control,a,b,c,d; add e, reclaim.ron without the idle cut, by naming it). LAB_TIMEOUT (s) overrides the guess from
# them. NO_DOCS=1 prints the table without touching the docs. The log goes to
# target/lab_reclaim.log, the table to target/lab_reclaim.md.
set -euo pipefail

top="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
cd "$top"
lab="${MADVD_LAB_DIR:-$top/../shared/lab}"
if [ -z "${MADVD_LAB_DIR:-}" ] && [ ! -x "$lab/run" ]; then
  common="$(cd "$(git rev-parse --git-common-dir)" && pwd)"
  [ -x "$common/../../shared/lab/run" ] && lab="$(cd "$common/../../shared/lab" && pwd)"
fi
[ -x "$lab/run" ] || { echo "lab_reclaim.sh: no kernel lab at $lab" >&2; exit 125; }

export MADVD_VS_KERNEL_FULL=1
reps="${MADVD_VS_KERNEL_REPS:-5}"
secs="${MADVD_VS_KERNEL_SECS:-60}"
nwl=$(tr ',' '\n' <<<"${MADVD_VS_KERNEL_WORKLOADS:-band}" | wc -l)
timeout="${LAB_TIMEOUT:-$(( nwl * reps * 5 * (secs + 25) + 120 ))}"

echo "lab_reclaim.sh: building the test binary and a release madvd"
cargo build --release --bin madvd
json="$(cargo test --test lab_reclaim --no-run --message-format=json)"
bin="$(printf '%s\n' "$json" | grep '"name":"lab_reclaim"' | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -n1)"
[ -x "$bin" ] || { echo "lab_reclaim.sh: no lab_reclaim test binary" >&2; exit 1; }
madvd_dbg="$top/target/debug/madvd"
cargo build --bin madvd   # the workload child (the test's own CARGO_BIN_EXE_madvd)
madvd_rel="$top/target/release/madvd"

mkdir -p target
log=target/lab_reclaim.log
echo "lab_reclaim.sh: host load before: $(uptime)"
load0="$(cut -d' ' -f1-3 /proc/loadavg)"
start="$(date -u +%Y-%m-%dT%H:%MZ)"
set +e
flock /run/madvd-lab.lock "$lab/run" --kernel lab --swap-zram 512M --mem 2G --cpus 2 \
  --timeout "$timeout" --file "$madvd_dbg" --file "$madvd_rel" \
  --env "MADVD_VS_KERNEL_MADVD=$madvd_rel" \
  -- "$bin" --test-threads=1 --nocapture 2>&1 | tr -d '\r' | tee "$log"
rc=${PIPESTATUS[0]}
set -e
load1="$(cut -d' ' -f1-3 /proc/loadavg)"
end="$(date -u +%H:%MZ)"

table="$(sed -n '/<!-- lab_reclaim:begin -->/,/<!-- lab_reclaim:end -->/p' "$log")"
if [ -z "$table" ]; then
  echo "lab_reclaim.sh: the run printed no table (exit $rc): see $log" >&2
  exit 1
fi
wls="${MADVD_VS_KERNEL_WORKLOADS:-band}"
block="lab_reclaim-${wls//,/-}"
{
  echo "<!-- $block:begin -->"
  echo "Run of $start–$end (the script's start to its end, the wait for the lab lock included; \`benches/lab_reclaim.sh\`, test exit status $rc); host load average $load0 before, $load1 after (2 cores shared with other sessions)."
  echo
  sed '1d;$d' <<<"$table"
  echo "<!-- $block:end -->"
} > target/lab_reclaim.md
cat target/lab_reclaim.md

if [ "${NO_DOCS:-0}" != 1 ]; then
  python3 - docs/performance.md target/lab_reclaim.md "$block" <<'EOF'
import sys, re
doc, new, block = open(sys.argv[1]).read(), open(sys.argv[2]).read().rstrip('\n'), sys.argv[3]
head = '## Reclaim side by side with the kernel (lab, issue 14)'
if head not in doc:
    sys.exit(f"docs/performance.md has no section '{head}'")
pat = re.compile(r'<!-- %s:begin -->.*?<!-- %s:end -->' % (re.escape(block), re.escape(block)), re.S)
if pat.search(doc):
    doc = pat.sub(lambda m: new, doc, count=1)
else:
    # A new block at the end of the section (the next '## ' heading, or the end of the file).
    at = doc.index(head) + len(head)
    nxt = doc.find('\n## ', at)
    at = len(doc.rstrip('\n')) if nxt < 0 else nxt
    doc = doc[:at].rstrip('\n') + '\n\n' + new + '\n' + doc[at:]
    doc = doc.rstrip('\n') + '\n'
open(sys.argv[1], 'w').write(doc)
print(f"lab_reclaim.sh: table written into docs/performance.md (block {block})")
EOF
fi
exit "$rc"

#!/usr/bin/env bash
# Fuzz the policy parser for a bounded time: fuzz/run.sh SECONDS (default 60).
#
# Uses `cargo fuzz` (installed with `cargo install cargo-fuzz` when missing). With a nightly
# toolchain it runs with AddressSanitizer; without one it runs on stable with `-s none`
# (coverage-guided libFuzzer, no sanitizer). The corpus is seeded from policies/. Exits
# non-zero when the fuzzer finds a crash (the input is left in fuzz/artifacts/policy_parser/).
set -euo pipefail

secs="${1:-60}"
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 SECONDS" >&2; exit 2 ;;
esac
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

target=policy_parser
corpus="corpus/$target"
mkdir -p "$corpus"
cp ../policies/*.ron "$corpus/"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# -max_total_time bounds the run; -timeout flags a single slow input; -rss_limit_mb a leak.
fuzz_args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1)

# MADVD_FUZZ_STABLE=1 forces the stable path (to test it where nightly exists).
if [ "${MADVD_FUZZ_STABLE:-0}" != 1 ] && rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: nightly, AddressSanitizer, ${secs}s" >&2
    exec cargo +nightly fuzz run "$target" "$corpus" -- "${fuzz_args[@]}"
else
    echo "fuzz/run.sh: stable toolchain, no sanitizer (-s none), ${secs}s" >&2
    exec cargo fuzz run -s none "$target" "$corpus" -- "${fuzz_args[@]}"
fi

#!/usr/bin/env bash
# Fuzz the loader (fuzz/fuzz_targets/loader.rs) with cargo fuzz (libFuzzer)
# for a bounded time, seeded with the bad-input corpus and the shared Istio
# manifests; print the executions and what it found, and write them to
# target/fuzz-report.txt (scripts/reliability.sh reads it).
#
#   scripts/fuzz.sh [SECONDS]      default 300 (GITOPS_FUZZ_SECONDS)
#
# Needs a nightly toolchain (libFuzzer's instrumentation); installs
# cargo-fuzz from crates.io when it is missing. Not part of CI, which has
# only the stable toolchain. A crash leaves its input in fuzz/artifacts/
# and exits 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-${GITOPS_FUZZ_SECONDS:-300}}

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: no nightly toolchain (rustup toolchain list); cargo fuzz needs one" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install --locked -q cargo-fuzz
fi

corpus=fuzz/corpus/loader
mkdir -p "$corpus" fuzz/artifacts/loader
# seeds: every bad input (but the huge generated ones) and real manifests
find tests/testdata/bad -type f -size -256k -exec cp -f {} "$corpus/" \; 2>/dev/null || true
if [[ -d ../shared/testdata ]]; then
    find ../shared/testdata -name '*.yaml' -size -256k | head -400 |
        while read -r f; do cp -f "$f" "$corpus/$(echo "$f" | tr '/' '_')"; done
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo +nightly fuzz run loader "$corpus" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix=fuzz/artifacts/loader/ 2>&1 | tee "$log" | grep -E '^(#[0-9]+.*(DONE|pulse)|==|SUMMARY|thread)' 
status=${PIPESTATUS[0]}
set -e
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
coverage=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
crashes=$(find fuzz/artifacts/loader -type f | wc -l)
mkdir -p target
{
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "seconds: $seconds"
    echo "executions: ${execs:-0}"
    echo "coverage: ${coverage:-0}"
    echo "corpus: $(find "$corpus" -type f | wc -l)"
    echo "findings: $crashes"
    echo "status: $status"
} | tee target/fuzz-report.txt
[[ $status -eq 0 && $crashes -eq 0 ]]

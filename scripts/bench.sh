#!/usr/bin/env bash
# Benchmarks: figures printed, never asserted (these machines are shared and
# noisy). Release builds.
#
#   1. validate of 1,000 objects in 20 namespaces: the library, then the real
#      `kubectl gitops -A validate` on the same generated repo;
#   2. the text diff of one 20,000- and 30,000-line object: time, peak RSS;
#   3. the agent against the real test API server: idle RSS, and the time from
#      a git-sync link swap to Synced for the Bookinfo set and for one weight
#      change (sync-agent/tests/bench.rs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() { printf '\n==> %s\n' "$*"; }

section "building (release)"
cargo build -q --release --bins
cargo build -q --release -p gitops-shared --example bench_validate
cargo build -q --release -p kubectl-gitops --example bench_textdiff

section "diff of one huge object (kubectl gitops diff's text diff)"
target/release/examples/bench_textdiff

section "validate: library (load + policy + analysis)"
target/release/examples/bench_validate

section "validate: kubectl gitops -A validate, real binary"
WORK=$(mktemp -d -t kubectl-gitops-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
target/release/examples/bench_validate --write "$WORK/repo"
git -C "$WORK/repo" init -q -b main
times=()
for _ in $(seq 1 10); do
    t0=$(date +%s%N)
    target/release/kubectl-gitops --repo "$WORK/repo" -A validate >/dev/null
    t1=$(date +%s%N)
    times+=($(((t1 - t0) / 1000000)))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
printf 'kubectl-gitops -A validate, 1000 objects: runs (ms, sorted): %s\n' "$sorted"
printf 'median: %s ms\n' "$(printf '%s\n' "${times[@]}" | sort -n | sed -n 5p)"

section "sync-agent against the real test API server"
bash scripts/test-cluster.sh build >/dev/null
cargo test -q --release -p sync-agent --test bench -- --ignored --nocapture 2>&1 |
    grep -v -E '^(running|test result|$)'

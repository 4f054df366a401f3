#!/usr/bin/env bash
# What CI runs (.ci/run), and what to run before pushing: formatting, lints,
# the test API server's build (cached; scripts/test-cluster.sh), then every
# test of the workspace, the ones against a real API server included.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() { printf '\n==> %s\n' "$*" >&2; }
die() {
    printf 'test.sh: error: %s\n' "$*" >&2
    exit 1
}
as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

section "tools"
command -v cargo >/dev/null || die "cargo is missing (install Rust with rustup)"
# The test cluster's certificates are made with openssl; a fresh Debian
# machine may lack it.
if ! command -v openssl >/dev/null; then
    if ! { as_root apt-get update -q && as_root apt-get install -y -q openssl; }; then
        die "openssl is missing and could not be installed (apt-get install openssl)"
    fi
fi
command -v kubectl >/dev/null ||
    die "kubectl is missing: the cluster tests run the real kubectl (1.32 is known to work)"
for tool in apt-get dpkg flock diff; do
    command -v "$tool" >/dev/null || die "$tool is missing (needed by scripts/test-cluster.sh or kubectl diff)"
done
printf 'cargo: %s\nkubectl: %s\nopenssl: %s\n' "$(cargo --version)" \
    "$(kubectl version --client 2>/dev/null | head -n1)" "$(openssl version)"

section "cargo fmt --check"
cargo fmt --all -- --check

section "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

section "test API server (scripts/test-cluster.sh build)"
bash scripts/test-cluster.sh build

section "tests"
# Every test cluster appends what its agents used to this log; rbac-check
# judges the shipped Role against it below, so it starts empty.
rm -f target/reliability/agent-permissions.log
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi

section "the agent's Role against what the agents used (rbac-check)"
cargo run -q -p gitops-tests --bin rbac-check

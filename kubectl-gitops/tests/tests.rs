//! Tests of the real `kubectl-gitops` binary in temporary repos (and, for the
//! cluster commands, against the real test API server of `gitops-tests`).

// The helpers outside `#[test]` functions panic on failure by design: a
// failed setup step is a failed test (clippy's allow-unwrap-in-tests does
// not see them as test code).
#![allow(clippy::unwrap_used)]

mod util;

mod agent;
mod bad_input;
mod canary;
mod cluster;
mod git_flow;
mod plugin;
mod push;
mod race;
mod stage;

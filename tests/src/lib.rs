//! Test support for kubectl-gitops: a real Kubernetes API server per test
//! ([`cluster::TestCluster`], built by `scripts/test-cluster.sh`) and a TCP
//! proxy that injects network faults ([`proxy::FaultProxy`]).
#![forbid(unsafe_code)]

pub mod cluster;
pub mod gitsync;
pub mod proxy;

pub use cluster::{AuditEvent, AuditObjectRef, TestCluster};
pub use proxy::FaultProxy;

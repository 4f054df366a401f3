//! Test support for kubectl-gitops: a real Kubernetes API server per test
//! ([`cluster::TestCluster`], built by `scripts/test-cluster.sh`) and a TCP
//! proxy that injects network faults ([`proxy::FaultProxy`]), a real
//! Prometheus ([`prometheus::TestPrometheus`]) and a mesh-traffic simulator
//! for it to scrape ([`mesh::MeshSim`]); and the rules of what our programs
//! may request ([`scope`]), which every cluster checks its audit log against.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod corpus;
pub mod gitsync;
pub mod mesh;
pub mod prometheus;
pub mod proxy;
pub mod rbac;
pub mod scope;

pub use cluster::{AuditEvent, AuditObjectRef, TestCluster};
pub use proxy::FaultProxy;

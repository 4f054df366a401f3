//! Reporting: the `GitOpsSync` status (server-side apply on its status
//! subresource) and the Prometheus metrics.

pub mod metrics;
pub mod status;

pub use metrics::Metrics;
pub use status::{Phase, Reporter, SyncStatus};

//! Reporting: the `GitOpsSync` status (server-side apply on its status
//! subresource), the next status computed from the last ([`next`]), and the
//! Prometheus metrics.

pub mod metrics;
pub mod next;
pub mod status;

pub use metrics::Metrics;
pub use status::{Phase, Reporter, SyncStatus};

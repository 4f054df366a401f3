//! `sync-agent`: the per-namespace sidecar of kubectl-gitops (DESIGN.md,
//! "sync-agent (contract)").
//!
//! A pipeline, one module per stage: [`watch`] (what wakes the loop),
//! [`load`] (one consistent revision), [`plan`] (desired against live, with
//! the shared core), [`decide`] (what to do, without the cluster), [`apply`]
//! (server-side apply, prune: it returns what it wrote), [`report`]
//! (`GitOpsSync` status and metrics), [`memory`] (the freed heap back
//! to the system after each pass), [`server`] (`/metrics`, `/healthz`,
//! `/readyz`); [`agent`] runs them in a loop, [`error`] names every way a
//! pass fails, [`lease`] elects the one writer among replicas, and
//! [`config`] holds the flags.
// One call outside Rust's safety, in `memory`; nothing else may add one.
#![deny(unsafe_code)]

pub mod agent;
pub mod apply;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod decide;
pub mod error;
pub mod lease;
pub mod load;
pub mod memory;
pub mod plan;
pub mod report;
pub mod server;
pub mod watch;

pub use agent::run;
pub use config::{Args, Config, LogFormat};

/// Log to stderr (stdout carries `--dry-run` plans), filtered by `RUST_LOG`
/// (default `info`), as plain text or JSON lines.
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // notify says at INFO that it could not remove the watch of a folder
    // that is gone, which is every old tree git-sync removes: debug news.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,notify=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // colours only for a person at a terminal, never in a log file
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

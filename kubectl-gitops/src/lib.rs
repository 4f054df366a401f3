//! kubectl gitops: the human side of GitOps for Istio (DESIGN.md). It turns
//! intents into validated, normalized manifests, stages and commits them to
//! the config repo, pushes, and shows how the cluster differs from Git.
//!
//! Modules: [`cli`] (the command line), [`context`] (repo, base folder and
//! namespace resolution), [`git`] (all git2 access), [`cluster`] (all kube
//! access), [`output`] (table, YAML, JSON), [`yaml`] (how objects are
//! written), [`textdiff`] (unified diffs), and one module per subcommand in
//! [`cmd`].
#![forbid(unsafe_code)]

pub mod canary;
pub mod cli;
pub mod cluster;
pub mod cmd;
pub mod context;
pub mod git;
pub mod objects;
pub mod output;
pub mod textdiff;
pub mod yaml;

use std::{ffi::OsString, process::ExitCode};

use clap::Parser;

/// How a command ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0.
    Ok,
    /// Exit 1: differences (diff, status) or findings (validate).
    Differences,
}

impl Status {
    pub fn exit_code(self) -> ExitCode {
        match self {
            Status::Ok => ExitCode::SUCCESS,
            Status::Differences => ExitCode::from(1),
        }
    }
}

/// Parse `args` (the program name first) and run the command. Usage errors
/// are reported by clap, which exits with 2 itself.
pub fn run<I, T>(args: I) -> anyhow::Result<Status>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = cli::Cli::parse_from(args);
    init_logging(cli.global.verbose);
    let ctx = context::Context::new(cli.global);
    cmd::run(&ctx, cli.command)
}

/// Whether the error is a closed stdout (`kubectl gitops log | head`): that
/// is success, as for every Unix filter.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let kind = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            // `-o json` writes through serde_json, which wraps the io error
            .or_else(|| cause.downcast_ref::<serde_json::Error>()?.io_error_kind());
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// Diagnostics go to stderr; `-v` raises the level, `RUST_LOG` overrides.
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,kubectl_gitops={level},gitops_shared={level}{}",
            if verbose >= 3 { ",kube=debug" } else { "" }
        ))
    });
    // A second initialization (tests calling `run` twice) is harmless.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

//! `kubectl-gitops`: parse the command line, run, and turn the outcome into
//! an exit code (0 ok, 1 differences or findings, 2 error). Everything else
//! lives in the library so tests can reach it.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    match kubectl_gitops::run(std::env::args_os()) {
        Ok(status) => status.exit_code(),
        Err(error) if kubectl_gitops::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

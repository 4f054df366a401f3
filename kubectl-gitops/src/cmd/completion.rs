//! `completion SHELL`: a completion script for the binary `kubectl-gitops`.

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::{Status, cli::Cli, context::Context};

/// Print a completion script.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(_ctx: &Context, args: Args) -> Result<Status> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "kubectl-gitops", &mut out);
    crate::output::print(&String::from_utf8_lossy(&out))?;
    Ok(Status::Ok)
}

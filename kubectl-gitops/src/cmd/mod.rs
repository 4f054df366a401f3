//! One module per subcommand, each with its `Args` and a `run`.

pub mod canary;
pub mod commit;
pub mod completion;
pub mod diff;
pub mod import;
pub mod init;
pub mod log;
pub mod push;
pub mod revert;
pub mod rm;
pub mod stage;
pub mod status;
pub mod suspend;
pub mod validate;
pub mod version;

use anyhow::Result;
use gitops_shared::manifest::ManifestError;

use crate::{Status, cli::Command, context::Context};

/// Run one subcommand.
pub fn run(ctx: &Context, command: Command) -> Result<Status> {
    match command {
        Command::Init(args) => init::run(ctx, args),
        Command::Stage(args) => stage::run(ctx, args),
        Command::Import(args) => import::run(ctx, args),
        Command::Rm(args) => rm::run(ctx, args),
        Command::Commit(args) => commit::run(ctx, args),
        Command::Push(args) => push::run(ctx, args),
        Command::Diff(args) => diff::run(ctx, args),
        Command::Status(args) => status::run(ctx, args),
        Command::Log(args) => log::run(ctx, args),
        Command::Revert(args) => revert::run(ctx, args),
        Command::Validate(args) => validate::run(ctx, args),
        Command::Suspend(args) => suspend::run(ctx, args, true),
        Command::Resume(args) => suspend::run(ctx, args, false),
        Command::Canary(args) => canary::run(ctx, args),
        Command::Completion(args) => completion::run(ctx, args),
        Command::Version(args) => version::run(ctx, args),
    }
}

/// An error listing every load or policy problem, one per line, each with
/// file, document and line.
pub(crate) fn problems(what: &str, errors: &[ManifestError]) -> anyhow::Error {
    let mut text = format!("{what}:");
    for e in errors {
        text.push_str("\n  ");
        text.push_str(&e.to_string());
    }
    anyhow::anyhow!(text)
}

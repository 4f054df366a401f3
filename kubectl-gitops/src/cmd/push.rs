//! `push`: push the branch to its remote; when the remote moved on, fetch,
//! rebase the local commits onto it and try again, a bounded number of
//! times. A real conflict stops with the repository as it was.

use anyhow::Result;

use crate::{Status, context::Context, git::PushOutcome, output};

/// Push the current branch (remote from the branch's config, else origin).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The remote to push to (default: the branch's upstream remote, else origin)
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// How many times to fetch, rebase and push again when the remote moved on
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub retries: usize,
}

pub fn run(ctx: &Context, args: Args) -> Result<Status> {
    let repo = ctx.repo()?;
    let outcome = repo.push(args.remote.as_deref(), args.retries)?;
    output::print(&report(&outcome))?;
    Ok(Status::Ok)
}

/// What a push did, in the words `push` prints.
pub fn report(outcome: &PushOutcome) -> String {
    let mut text = String::new();
    if outcome.rebases > 0 {
        text.push_str(&format!(
            "the remote had new commits: rebased onto them {} time(s)\n",
            outcome.rebases
        ));
    }
    let (remote_branch, head) = (
        outcome.remote_ref.trim_start_matches("refs/heads/"),
        &outcome.head[..outcome.head.len().min(12)],
    );
    if outcome.up_to_date {
        text.push_str(&format!(
            "{} is up to date with {} {remote_branch} ({head}): nothing to push\n",
            outcome.branch, outcome.remote
        ));
    } else {
        text.push_str(&format!(
            "pushed {} to {} {remote_branch} ({head})\n",
            outcome.branch, outcome.remote
        ));
    }
    text
}

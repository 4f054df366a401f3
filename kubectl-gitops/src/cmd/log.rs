//! `log`: the history of a namespace folder (or with -A, of the whole base
//! folder), newest first, with each commit's trailers.

use anyhow::Result;

use crate::{Status, context::Context, output, output::Format};

/// Show the commits that changed the namespace folder.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Start from this revision instead of HEAD
    #[arg(value_name = "REV")]
    pub rev: Option<String>,
    /// Show at most N commits
    #[arg(long, value_name = "N")]
    pub max_count: Option<usize>,
    /// One line per commit: hash, subject and the objects changed
    #[arg(long)]
    pub oneline: bool,
}

pub fn run(ctx: &Context, args: Args) -> Result<Status> {
    let repo = ctx.repo()?;
    let base = ctx.base(&repo)?;
    let prefix = if ctx.global.all_namespaces {
        base
    } else {
        format!("{base}/{}", ctx.namespace("log")?)
    };
    let commits = repo.history(&prefix, args.rev.as_deref(), args.max_count)?;
    if ctx.format() != Format::Table {
        output::print_data(ctx.format(), &commits)?;
        return Ok(Status::Ok);
    }
    let mut text = String::new();
    for c in &commits {
        if args.oneline {
            let objects = if c.objects.is_empty() {
                String::new()
            } else {
                format!(" [{}]", c.objects.join(", "))
            };
            text.push_str(&format!("{} {}{objects}\n", c.short(), c.subject));
            continue;
        }
        text.push_str(&format!("commit {}\n", c.commit));
        text.push_str(&format!("Author: {} <{}>\n", c.author, c.email));
        text.push_str(&format!("Date:   {}\n\n", c.date));
        for line in c.message.trim_end().lines() {
            if line.is_empty() {
                text.push('\n');
            } else {
                text.push_str(&format!("    {line}\n"));
            }
        }
        text.push('\n');
    }
    output::print(&text)?;
    Ok(Status::Ok)
}

//! `revert REV`: a new commit that undoes REV's changes inside the namespace
//! folder only. Changes REV made elsewhere stay; later changes to the folder
//! survive where they do not conflict (a three-way revert, as git does).

use anyhow::{Result, bail};
use gitops_shared::{layout::load_namespace, manifest::LoadOptions};

use crate::{
    Status,
    cli::PolicyArgs,
    context::{Context, policy},
    objects::{changed_objects, folder_objects},
    output,
};

/// Undo a commit's changes in the namespace folder, as a new commit.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The commit to undo (a hash, HEAD~1, ...)
    #[arg(value_name = "REV")]
    pub rev: String,
    /// The commit message (default: Revert "<subject>")
    #[arg(short = 'm', long, value_name = "MSG")]
    pub message: Option<String>,
    /// Skip loading the reverted folder with the agent's rules
    #[arg(long)]
    pub no_verify: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

pub fn run(ctx: &Context, args: Args) -> Result<Status> {
    let repo = ctx.repo()?;
    let base = ctx.base(&repo)?;
    // Without -n, the namespace the commit says it changed (its
    // Gitops-Namespace trailer), else the context's.
    let namespace = if ctx.global.namespace.is_none() && !ctx.global.all_namespaces {
        let info = repo.commit_info(repo.resolve(&args.rev)?.0)?;
        match info.namespaces.as_slice() {
            [one] => one.clone(),
            [] => ctx.namespace("revert")?,
            many => bail!(
                "{} changed {} namespaces ({}); name the one to revert with -n",
                info.short(),
                many.len(),
                many.join(", ")
            ),
        }
    } else {
        ctx.namespace("revert")?
    };
    let prefix = format!("{base}/{namespace}");

    let mut lock = repo.lock_index()?;
    let dirty = repo.dirty_paths(&prefix)?;
    if !dirty.is_empty() {
        bail!(
            "{prefix} has uncommitted changes ({}); commit or discard them first",
            dirty.join(", ")
        );
    }
    let plan = repo.plan_revert(&args.rev, &prefix)?;
    if plan.tree == plan.head_tree {
        bail!(
            "nothing to revert: {prefix} already has none of {}'s changes",
            plan.reverted.short()
        );
    }
    let (before, after) = (repo.scratch()?, repo.scratch()?);
    repo.materialize(plan.head_tree, &prefix, before.path())?;
    let exists = repo.materialize(plan.tree, &prefix, after.path())?;
    if exists && !args.no_verify {
        let policy = policy(ctx, &namespace, &args.policy)?;
        if let Err(e) = load_namespace(after.path(), &base, &policy, &LoadOptions::default()) {
            return Err(super::problems(
                "refusing to revert: the reverted folder would not load (use --no-verify to commit it anyway)",
                &e.errors,
            ));
        }
    }
    let objects = changed_objects(
        &folder_objects(&before.path().join(&prefix), &namespace),
        &folder_objects(&after.path().join(&prefix), &namespace),
    );
    let message = match &args.message {
        Some(m) => m.trim().to_string(),
        None => format!(
            "Revert \"{}\"\n\nThis reverts commit {} in {prefix}/.",
            plan.reverted.subject, plan.reverted.commit
        ),
    };
    let full = super::commit::with_trailers(&message, [&namespace], &objects);

    lock.checkout_folder(plan.tree, &prefix)?;
    let id = match repo.commit_tree(plan.tree, Some(plan.head), &full) {
        Ok(id) => id,
        Err(e) => {
            // Put the folder back as HEAD has it.
            let _ = lock.checkout_folder(plan.head_tree, &prefix);
            return Err(e);
        }
    };
    lock.write()?;

    let branch = repo.branch().unwrap_or_else(|| "HEAD".into());
    let subject = message.lines().next().unwrap_or_default();
    let mut text = format!("[{branch} {}] {subject}\n", &id.to_string()[..12]);
    for line in super::commit::trailers([&namespace], &objects) {
        text.push_str(&format!("  {line}\n"));
    }
    output::print(&text)?;
    Ok(Status::Ok)
}

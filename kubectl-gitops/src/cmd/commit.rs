//! `commit -m MSG`: commit what is staged under the base folder, and only
//! that (anything staged elsewhere is refused), as the user, with the
//! trailers `Gitops-Namespace:` (one per namespace touched) and
//! `Gitops-Object: <Kind>/<name>` (one per object changed).
//!
//! Before it commits, it checks each namespace folder it touches as the
//! sync agent will: the folder must load, the offline analysis must find no
//! Error (the agent's `--strict` refuses those), and a folder left without
//! objects must hold `.allow-empty` (the agent refuses to prune everything
//! otherwise). `--no-verify` skips the checks, as git's hooks are skipped.
//!
//! The whole read-check-commit runs under the index lock, and the branch only
//! moves if HEAD is still the commit that was read: two racing commits never
//! mix, and the loser says so.

use std::collections::BTreeSet;

use anyhow::{Result, bail};
use gitops_shared::{
    ALLOW_EMPTY_FILE, ObjectKey,
    analyze::{Level, analyze_namespace},
    layout::load_namespace,
    manifest::LoadOptions,
};

use crate::{
    Status,
    cli::PolicyArgs,
    context::{Context, policy},
    git::is_under,
    objects::{changed_objects, folder_objects},
    output,
};

/// Commit the staged changes of the base folder.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The commit message; several -m make several paragraphs, as in git
    #[arg(short = 'm', long, required = true, value_name = "MSG")]
    pub message: Vec<String>,
    /// Skip the checks of the staged namespace folders (they load with the
    /// agent's rules, the offline analysis finds no Error, a folder left
    /// empty holds .allow-empty), as `git commit --no-verify` skips hooks
    #[arg(long)]
    pub no_verify: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

pub fn run(ctx: &Context, args: Args) -> Result<Status> {
    let repo = ctx.repo()?;
    let base = ctx.base(&repo)?;
    let message = args
        .message
        .iter()
        .map(|m| m.trim())
        .filter(|m| !m.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    if message.is_empty() {
        bail!("empty commit message: say what the change does with -m");
    }

    let mut lock = repo.lock_index()?;
    let changes = lock.staged_changes()?;
    if changes.is_empty() {
        bail!("nothing staged to commit; stage changes with `kubectl gitops stage` or `rm` first");
    }
    let outside: Vec<&str> = changes
        .iter()
        .map(|c| c.path.as_str())
        .filter(|p| !is_under(p, &base))
        .collect();
    if !outside.is_empty() {
        bail!(
            "refusing to commit: changes outside the base folder {base}/ are staged ({}); commit them with git, or unstage them with `git restore --staged <path>`",
            outside.join(", ")
        );
    }
    let namespaces: BTreeSet<String> = changes
        .iter()
        .filter_map(|c| {
            let rest = c.path.strip_prefix(&base)?.strip_prefix('/')?;
            let (ns, _) = rest.split_once('/')?;
            Some(ns.to_string())
        })
        .collect();

    let head = repo.head_id()?;
    let head_tree = repo.head_tree_id()?;
    let tree = lock.write_tree()?;
    let mut objects: Vec<ObjectKey> = Vec::new();
    let mut errors = Vec::new();
    let mut findings = Vec::new();
    let mut emptied = Vec::new();
    for ns in &namespaces {
        let prefix = format!("{base}/{ns}");
        let (before, after) = (repo.scratch()?, repo.scratch()?);
        if let Some(t) = head_tree {
            repo.materialize(t, &prefix, before.path())?;
        }
        let exists = repo.materialize(tree, &prefix, after.path())?;
        let had = folder_objects(&before.path().join(&prefix), ns);
        if !args.no_verify {
            let policy = policy(ctx, ns, &args.policy)?;
            let set = if exists {
                match load_namespace(after.path(), &base, &policy, &LoadOptions::default()) {
                    Ok(set) => Some(set),
                    Err(e) => {
                        errors.extend(e.errors);
                        None
                    }
                }
            } else {
                None
            };
            if let Some(set) = &set {
                findings.extend(
                    analyze_namespace(set)
                        .into_iter()
                        .filter(|f| f.level == Level::Error),
                );
            }
            let empty = match &set {
                Some(s) => s.manifests.is_empty() && !s.allow_empty,
                None => !exists,
            };
            if empty && !had.is_empty() {
                emptied.push(prefix.clone());
            }
        }
        objects.extend(changed_objects(
            &had,
            &folder_objects(&after.path().join(&prefix), ns),
        ));
    }
    if !errors.is_empty() {
        return Err(super::problems(
            "refusing to commit: the staged folder would not load, and the sync agent would reject this revision (fix and stage again, or commit with --no-verify)",
            &errors,
        ));
    }
    if !findings.is_empty() || !emptied.is_empty() {
        let mut text = String::new();
        if !findings.is_empty() {
            text.push_str(&format!(
                "refusing to commit: the offline analysis finds {} error(s) in what is staged (what `kubectl gitops validate` reports; fix and stage again, or commit with --no-verify):\n",
                findings.len()
            ));
            for f in &findings {
                text.push_str(&format!("  {f}\n"));
            }
        }
        for prefix in &emptied {
            text.push_str(&format!(
                "refusing to commit: {prefix}/ would hold no objects, and its sync agent refuses to prune every object of a namespace without a file named {ALLOW_EMPTY_FILE} in the folder; to empty it on purpose: touch {prefix}/{ALLOW_EMPTY_FILE} && git add {prefix}/{ALLOW_EMPTY_FILE}\n"
            ));
        }
        eprint!("{text}");
        return Ok(Status::Differences);
    }

    let full = with_trailers(&message, &namespaces, &objects);
    let id = repo.commit_tree(tree, head, &full)?;
    drop(lock);

    let branch = repo.branch().unwrap_or_else(|| "HEAD".into());
    let subject = message.lines().next().unwrap_or_default();
    let mut text = format!("[{branch} {}] {subject}\n", &id.to_string()[..12]);
    for line in trailers(&namespaces, &objects) {
        text.push_str(&format!("  {line}\n"));
    }
    output::print(&text)?;
    Ok(Status::Ok)
}

/// The trailer lines, namespaces first.
pub fn trailers<'a>(
    namespaces: impl IntoIterator<Item = &'a String>,
    objects: &[ObjectKey],
) -> Vec<String> {
    let mut lines: Vec<String> = namespaces
        .into_iter()
        .map(|ns| format!("Gitops-Namespace: {ns}"))
        .collect();
    let mut seen = BTreeSet::new();
    for key in objects {
        let line = format!("Gitops-Object: {}/{}", key.kind, key.name);
        if seen.insert(line.clone()) {
            lines.push(line);
        }
    }
    lines
}

/// `message`, a blank line, and the trailers.
pub fn with_trailers<'a>(
    message: &str,
    namespaces: impl IntoIterator<Item = &'a String>,
    objects: &[ObjectKey],
) -> String {
    let mut full = message.trim_end().to_string();
    full.push_str("\n\n");
    for line in trailers(namespaces, objects) {
        full.push_str(&line);
        full.push('\n');
    }
    full
}

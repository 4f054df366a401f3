//! `init`: the config repo's scaffolding (`.gitops/config.yaml`, the base
//! folder) in a new or existing repo, committed so the next `commit` starts
//! clean. Running it again changes nothing.

use std::fs;

use anyhow::{Context as _, Result, bail};
use gitops_shared::{RepoConfig, layout::CONFIG_FILE};

use crate::{Status, context::Context, git::Repo, output};

/// Create the config repo in --repo DIR (default: the current directory).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Commit message of the scaffolding commit
    #[arg(
        short = 'm',
        long,
        default_value = "Initialize the kubectl-gitops config repo"
    )]
    pub message: String,
}

pub fn run(ctx: &Context, args: Args) -> Result<Status> {
    let dir = match &ctx.global.repo {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().context("reading the current directory")?,
    };
    let (repo, created) = Repo::init_or_open(&dir)?;
    let root = repo.workdir().to_path_buf();
    let config_path = root.join(CONFIG_FILE);
    let existing = RepoConfig::load(&root).map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = ctx.base(&repo)?;
    if ctx.global.path.is_some() && config_path.exists() && existing.path != base {
        bail!(
            "{CONFIG_FILE} already sets the base folder to {:?}; edit it to change the base folder",
            existing.path
        );
    }

    let mut paths = vec![CONFIG_FILE.to_string()];
    if !config_path.exists() {
        let config = RepoConfig {
            path: base.clone(),
            ..RepoConfig::default()
        };
        crate::objects::write_atomic(&config_path, &config.to_yaml())?;
    }
    let base_dir = root.join(&base);
    fs::create_dir_all(&base_dir).with_context(|| format!("creating {}", base_dir.display()))?;
    let keep = base_dir.join(".gitkeep");
    let empty = fs::read_dir(&base_dir)?.next().is_none();
    if empty || keep.exists() {
        if !keep.exists() {
            fs::write(&keep, "")?;
        }
        paths.push(format!("{base}/.gitkeep"));
    }

    let mut lock = repo.lock_index()?;
    for path in &paths {
        lock.add(path)?;
    }
    let path_refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let tree = lock.tree_with(&path_refs)?;
    let head = repo.head_id()?;
    let committed = if repo.head_tree_id()? == Some(tree) {
        None
    } else {
        Some(repo.commit_tree(tree, head, &format!("{}\n", args.message.trim_end()))?)
    };
    lock.write()?;

    let verb = if created { "Initialized" } else { "Using" };
    let mut text = format!(
        "{verb} config repo {} (base folder {base}/)\n",
        root.display()
    );
    match committed {
        Some(id) => text.push_str(&format!(
            "committed the scaffolding as {}\n",
            &id.to_string()[..12]
        )),
        None => text.push_str("already initialized; nothing to commit\n"),
    }
    output::print(&text)?;
    Ok(Status::Ok)
}

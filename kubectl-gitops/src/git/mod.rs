//! All access to the config repo through git2: opening, the index (under
//! git's own `index.lock`, see [`IndexLock`]), commits with the user's
//! identity, reading trees and history, push with rebase, and revert.
//!
//! Commands never touch git2 themselves; they get paths, bytes, ids and
//! [`CommitInfo`]s from here.

mod history;
mod lock;
mod remote;
mod revert;

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use git2::{ErrorCode, ObjectType, Oid, Repository, Signature};

pub use history::{CommitInfo, Relation};
pub use lock::IndexLock;
pub use remote::{PushOutcome, credential_fill};
pub use revert::RevertPlan;

/// File mode of a symlink in a git tree.
const MODE_LINK: i32 = 0o120000;

/// One config repo with a working tree.
pub struct Repo {
    repo: Repository,
    workdir: PathBuf,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("workdir", &self.workdir)
            .finish()
    }
}

/// A path staged for the next commit: its blob in HEAD and in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedChange {
    pub path: String,
    pub old: Option<Oid>,
    pub new: Option<Oid>,
}

impl Repo {
    /// The repository around `start` (like git, searching upwards).
    pub fn discover(start: &Path) -> Result<Self> {
        let repo = Repository::discover(start).map_err(|e| {
            if e.code() == ErrorCode::NotFound {
                anyhow::anyhow!(
                    "{} is not inside a git repository; run `kubectl gitops init` or pass --repo DIR",
                    start.display()
                )
            } else {
                anyhow::Error::new(e).context(format!("opening the repository at {}", start.display()))
            }
        })?;
        Self::from_repository(repo)
    }

    /// The repository whose root is `dir`, or a new one created there (as
    /// `git init` does). Returns whether it was created.
    pub fn init_or_open(dir: &Path) -> Result<(Self, bool)> {
        match Repository::open(dir) {
            Ok(repo) => Ok((Self::from_repository(repo)?, false)),
            Err(e) if e.code() == ErrorCode::NotFound => {
                fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                let repo = Repository::init(dir)
                    .with_context(|| format!("creating a git repository in {}", dir.display()))?;
                Ok((Self::from_repository(repo)?, true))
            }
            Err(e) => {
                Err(e).with_context(|| format!("opening the repository at {}", dir.display()))
            }
        }
    }

    fn from_repository(repo: Repository) -> Result<Self> {
        let Some(workdir) = repo.workdir() else {
            bail!(
                "{} is a bare repository; kubectl gitops needs a working tree (clone it first)",
                repo.path().display()
            );
        };
        let workdir = workdir.to_path_buf();
        Ok(Self { repo, workdir })
    }

    /// The root of the working tree.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// `path` (absolute or relative to the current directory) relative to
    /// the working tree root, with `/` separators; `None` when outside.
    pub fn relative(&self, path: &Path) -> Option<String> {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().ok()?.join(path)
        };
        let join = |rel: &Path| {
            rel.components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/")
        };
        if let Ok(rel) = abs.strip_prefix(&self.workdir) {
            return Some(join(rel));
        }
        // Through symlinks (a temp dir, a checkout reached by a link): compare
        // real paths, of the nearest existing ancestor for a new file.
        let root = fs::canonicalize(&self.workdir).ok()?;
        let mut existing = abs.as_path();
        let mut rest = Vec::new();
        while !existing.exists() {
            rest.push(existing.file_name()?.to_os_string());
            existing = existing.parent()?;
        }
        let mut real = fs::canonicalize(existing).ok()?;
        for part in rest.iter().rev() {
            real.push(part);
        }
        Some(join(real.strip_prefix(&root).ok()?))
    }

    /// The author and committer of new commits: the user's git identity from
    /// git config, overridden by `GIT_AUTHOR_*`/`GIT_COMMITTER_*` as git does.
    pub fn signatures(&self) -> Result<(Signature<'static>, Signature<'static>)> {
        let config = self.repo.config().context("reading git config")?;
        let name = config.get_string("user.name").ok();
        let email = config.get_string("user.email").ok();
        let sig = |name_var: &str, email_var: &str| -> Result<Signature<'static>> {
            let n = std::env::var(name_var).ok().or_else(|| name.clone());
            let e = std::env::var(email_var).ok().or_else(|| email.clone());
            match (n, e) {
                (Some(n), Some(e)) if !n.is_empty() && !e.is_empty() => {
                    Signature::now(&n, &e).context("invalid git identity")
                }
                _ => bail!(
                    "no git identity: tell git who you are with `git config --global user.name \"Your Name\"` and `git config --global user.email you@example.com`"
                ),
            }
        };
        Ok((
            sig("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL")?,
            sig("GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")?,
        ))
    }

    /// The commit HEAD points at; `None` in a repository without commits.
    pub fn head_id(&self) -> Result<Option<Oid>> {
        match self.repo.head() {
            Ok(head) => Ok(head.target()),
            Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => Ok(None),
            Err(e) => Err(e).context("reading HEAD"),
        }
    }

    /// The name of the branch HEAD is on (`main`), `None` when detached.
    pub fn branch(&self) -> Option<String> {
        let head = self.repo.find_reference("HEAD").ok()?;
        let target = head.symbolic_target().ok().flatten()?;
        target.strip_prefix("refs/heads/").map(str::to_string)
    }

    /// The remote branch HEAD's branch tracks (`branch.<b>.remote`), as
    /// `remote/branch`; `None` without one.
    pub fn upstream(&self) -> Option<String> {
        let branch = self.branch()?;
        let config = self.repo.config().ok()?;
        let remote = config.get_string(&format!("branch.{branch}.remote")).ok()?;
        let merge = config
            .get_string(&format!("branch.{branch}.merge"))
            .unwrap_or_else(|_| format!("refs/heads/{branch}"));
        Some(format!(
            "{remote}/{}",
            merge.trim_start_matches("refs/heads/")
        ))
    }

    /// Whether HEAD is the commit the remote-tracking branch of the upstream
    /// last showed (nothing of ours to push, as far as this repo knows).
    pub fn upstream_has_head(&self) -> bool {
        let (Some(upstream), Ok(Some(head))) = (self.upstream(), self.head_id()) else {
            return false;
        };
        self.repo
            .refname_to_id(&format!("refs/remotes/{upstream}"))
            .is_ok_and(|id| id == head)
    }

    /// The tree of HEAD, `None` in a repository without commits.
    pub fn head_tree_id(&self) -> Result<Option<Oid>> {
        match self.head_id()? {
            Some(id) => Ok(Some(self.repo.find_commit(id)?.tree_id())),
            None => Ok(None),
        }
    }

    /// The commit and tree a revision names (`HEAD~2`, a hash, a branch).
    pub fn resolve(&self, rev: &str) -> Result<(Oid, Oid)> {
        let object = match self.repo.revparse_single(rev) {
            Ok(object) => object,
            Err(e) if matches!(e.code(), ErrorCode::NotFound | ErrorCode::InvalidSpec) => {
                bail!("unknown revision {rev:?}: not a commit, branch or tag of this repository")
            }
            Err(e) => return Err(e).with_context(|| format!("reading revision {rev:?}")),
        };
        let commit = object
            .peel_to_commit()
            .with_context(|| format!("{rev:?} does not name a commit"))?;
        Ok((commit.id(), commit.tree_id()))
    }

    /// Whether the commit `revision` names has `commit` in its history
    /// (itself included); `None` when this repository does not know
    /// `revision` (not fetched yet).
    pub fn contains(&self, revision: &str, commit: Oid) -> Result<Option<bool>> {
        let Ok(rev) = self
            .repo
            .revparse_single(revision)
            .and_then(|o| o.peel_to_commit())
        else {
            return Ok(None);
        };
        if rev.id() == commit {
            return Ok(Some(true));
        }
        Ok(Some(
            self.repo
                .graph_descendant_of(rev.id(), commit)
                .context("walking history")?,
        ))
    }

    /// A blob's content.
    pub fn blob(&self, id: Oid) -> Result<Vec<u8>> {
        Ok(self.repo.find_blob(id)?.content().to_vec())
    }

    /// The id of the entry at `path` in a tree, `None` when absent.
    pub fn entry_id(&self, tree: Oid, path: &str) -> Result<Option<Oid>> {
        let tree = self.repo.find_tree(tree)?;
        entry_in(&tree, path)
    }

    /// Write the folder `prefix` of `tree` to `dest/prefix` (files, folders
    /// and symlinks). Returns false when the tree has no such folder.
    pub fn materialize(&self, tree: Oid, prefix: &str, dest: &Path) -> Result<bool> {
        let tree = self.repo.find_tree(tree)?;
        let entry = match tree.get_path(Path::new(prefix)) {
            Ok(e) => e,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if entry.kind() != Some(ObjectType::Tree) {
            bail!("{prefix} is not a folder in the tree");
        }
        let sub = self.repo.find_tree(entry.id())?;
        let target = dest.join(prefix);
        fs::create_dir_all(&target)?;
        self.write_tree(&sub, &target)?;
        Ok(true)
    }

    fn write_tree(&self, tree: &git2::Tree<'_>, dir: &Path) -> Result<()> {
        for entry in tree.iter() {
            let Ok(name) = entry.name() else {
                tracing::warn!(dir = %dir.display(), "skipping a file whose name is not UTF-8");
                continue;
            };
            let path = dir.join(name);
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    fs::create_dir_all(&path)?;
                    self.write_tree(&self.repo.find_tree(entry.id())?, &path)?;
                }
                Some(ObjectType::Blob) => {
                    let blob = self.repo.find_blob(entry.id())?;
                    if entry.filemode() == MODE_LINK {
                        let target = String::from_utf8_lossy(blob.content()).into_owned();
                        #[cfg(unix)]
                        std::os::unix::fs::symlink(&target, &path)?;
                        #[cfg(not(unix))]
                        fs::write(&path, target)?;
                    } else {
                        fs::write(&path, blob.content())?;
                    }
                }
                _ => {} // submodules have no content here
            }
        }
        Ok(())
    }

    /// Commit `tree` on top of HEAD and move HEAD's branch to it. Fails
    /// (without a partial result) when HEAD moved since `parent` was read.
    pub fn commit_tree(&self, tree: Oid, parent: Option<Oid>, message: &str) -> Result<Oid> {
        let (author, committer) = self.signatures()?;
        let tree = self.repo.find_tree(tree)?;
        let parents = match parent {
            Some(id) => vec![self.repo.find_commit(id)?],
            None => Vec::new(),
        };
        let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        self.repo
            .commit(Some("HEAD"), &author, &committer, message, &tree, &parent_refs)
            .map_err(|e| {
                if e.code() == ErrorCode::Modified {
                    anyhow::anyhow!(
                        "another commit landed on this branch at the same time; nothing was committed, run the command again"
                    )
                } else {
                    anyhow::Error::new(e).context("creating the commit")
                }
            })
    }

    /// Paths with changes in the working tree or the index under `prefix`
    /// (untracked files included, ignored files not).
    pub fn dirty_paths(&self, prefix: &str) -> Result<Vec<String>> {
        let mut opts = git2::StatusOptions::new();
        opts.pathspec(prefix)
            .include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false);
        let statuses = self.repo.statuses(Some(&mut opts))?;
        Ok(statuses
            .iter()
            .filter(|s| s.status() != git2::Status::CURRENT)
            .filter_map(|s| s.path().ok().map(str::to_string))
            .collect())
    }
}

fn entry_in(tree: &git2::Tree<'_>, path: &str) -> Result<Option<Oid>> {
    if path.is_empty() {
        return Ok(Some(tree.id()));
    }
    match tree.get_path(Path::new(path)) {
        Ok(e) => Ok(Some(e.id())),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A private scratch folder inside `.git`, removed when dropped: for
/// writing out trees to load them with the shared loader.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

impl Repo {
    /// A new, empty scratch folder.
    pub fn scratch(&self) -> Result<Scratch> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = self
            .repo
            .path()
            .join(format!("gitops-scratch.{}.{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch { path })
    }
}

/// Whether `path` is `prefix` or inside it (`/`-separated, relative paths).
pub fn is_under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

//! Changing the index the way git does: take `.git/index.lock` exclusively
//! for the whole read-modify-write, so two commands (ours, or git's) never
//! lose each other's changes or leave a half-written index.
//!
//! libgit2 takes `index.lock` only around its own write, not around the
//! read before it, and cannot write an index while someone else holds the
//! lock. So we hold the lock, work on a private copy of the index that the
//! repository uses meanwhile (`git_repository_set_index`), and publish it
//! with an atomic rename over `.git/index` before releasing the lock.

use std::{
    fs,
    path::{Path, PathBuf},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use git2::{DiffOptions, Index, Oid};

use super::{Repo, StagedChange};

/// How long to wait for another process to release the index lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);
const LOCK_POLL: Duration = Duration::from_millis(25);

/// The index, locked for this process until dropped or written.
pub struct IndexLock<'r> {
    repo: &'r Repo,
    index: Index,
    index_path: PathBuf,
    lock_path: PathBuf,
    tmp_path: PathBuf,
}

impl std::fmt::Debug for IndexLock<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexLock")
            .field("lock_path", &self.lock_path)
            .finish()
    }
}

impl Repo {
    /// Lock the index, waiting a while for another git process to finish.
    pub fn lock_index(&self) -> Result<IndexLock<'_>> {
        let git_dir = self.repo.path();
        let index_path = git_dir.join("index");
        let lock_path = git_dir.join("index.lock");
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock_path)
            {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if Instant::now() >= deadline {
                        bail!(
                            "{} exists: another git process is changing this repository (waited {}s); if none is running, remove the file and try again",
                            lock_path.display(),
                            LOCK_WAIT.as_secs()
                        );
                    }
                    sleep(LOCK_POLL);
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("creating {}", lock_path.display()));
                }
            }
        }
        // From here on, Drop releases the lock whatever happens.
        let tmp_path = git_dir.join(format!("gitops-index.{}.tmp", std::process::id()));
        let mut guard = IndexLock {
            repo: self,
            index: Index::new()?,
            index_path,
            lock_path,
            tmp_path,
        };
        match fs::copy(&guard.index_path, &guard.tmp_path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("copying the index"),
        }
        guard.index = Index::open(&guard.tmp_path).context("reading the index")?;
        self.repo.set_index(&mut guard.index)?;
        Ok(guard)
    }
}

impl IndexLock<'_> {
    /// Stage the working-tree file at `path` (relative to the root).
    pub fn add(&mut self, path: &str) -> Result<()> {
        self.index
            .add_path(Path::new(path))
            .with_context(|| format!("staging {path}"))
    }

    /// Stage the removal of `path`.
    pub fn remove(&mut self, path: &str) -> Result<()> {
        self.index
            .remove_path(Path::new(path))
            .with_context(|| format!("staging the removal of {path}"))
    }

    /// The staged blob of `path`, if any.
    pub fn staged_blob(&self, path: &str) -> Option<Oid> {
        self.index.get_path(Path::new(path), 0).map(|e| e.id)
    }

    /// What the index has that HEAD has not, path by path.
    pub fn staged_changes(&self) -> Result<Vec<StagedChange>> {
        let repo = &self.repo.repo;
        let head_tree = match self.repo.head_tree_id()? {
            Some(id) => Some(repo.find_tree(id)?),
            None => None,
        };
        let mut opts = DiffOptions::new();
        opts.include_typechange(true);
        let diff =
            repo.diff_tree_to_index(head_tree.as_ref(), Some(&self.index), Some(&mut opts))?;
        let mut changes = Vec::new();
        for delta in diff.deltas() {
            let path = delta
                .new_file()
                .path()
                .or_else(|| delta.old_file().path())
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            let id = |f: git2::DiffFile<'_>| (!f.id().is_zero()).then(|| f.id());
            changes.push(StagedChange {
                path,
                old: id(delta.old_file()),
                new: id(delta.new_file()),
            });
        }
        Ok(changes)
    }

    /// The tree of the index, written to the object database.
    pub fn write_tree(&mut self) -> Result<Oid> {
        self.index.write_tree().context("writing the index tree")
    }

    /// A tree that is HEAD's (or empty) with `paths` as they are in the index:
    /// for committing some staged paths and not others.
    pub fn tree_with(&self, paths: &[&str]) -> Result<Oid> {
        let repo = &self.repo.repo;
        let mut index = Index::new()?;
        if let Some(tree) = self.repo.head_tree_id()? {
            index.read_tree(&repo.find_tree(tree)?)?;
        }
        for path in paths {
            match self.index.get_path(Path::new(path), 0) {
                Some(entry) => index.add(&entry)?,
                None => {
                    let _ = index.remove_path(Path::new(path));
                }
            }
        }
        Ok(index.write_tree_to(repo)?)
    }

    /// Make the working tree and index match `tree` under `prefix`, leaving
    /// everything else alone.
    pub fn checkout_folder(&mut self, tree: Oid, prefix: &str) -> Result<()> {
        let repo = &self.repo.repo;
        let tree = repo.find_tree(tree)?;
        let mut opts = git2::build::CheckoutBuilder::new();
        opts.force().path(prefix);
        repo.checkout_tree(tree.as_object(), Some(&mut opts))
            .with_context(|| format!("updating {prefix} in the working tree"))
    }

    /// Make the working tree and index go from `from` (what they held) to
    /// `to`, refusing to overwrite local changes made on top of `from`.
    ///
    /// HEAD already points at `to` (so libgit2's baseline is no help): the
    /// paths that differ between the trees are checked for local changes
    /// against `from` first, then written from `to`, and nothing else.
    pub fn checkout_from(&mut self, from: Oid, to: Oid) -> Result<()> {
        let repo = &self.repo.repo;
        let (from, to) = (repo.find_tree(from)?, repo.find_tree(to)?);
        let diff = repo.diff_tree_to_tree(Some(&from), Some(&to), None)?;
        let mut paths = Vec::new();
        for delta in diff.deltas() {
            for file in [delta.old_file(), delta.new_file()] {
                if let Some(p) = file.path() {
                    paths.push(p.to_path_buf());
                }
            }
        }
        paths.sort();
        paths.dedup();
        if paths.is_empty() {
            return Ok(());
        }
        // Local edits of those paths since `from`: refuse, never overwrite.
        let mut changed = Vec::new();
        for path in &paths {
            let in_from = from.get_path(path).ok().map(|e| e.id());
            let on_disk = std::fs::symlink_metadata(self.repo.workdir().join(path))
                .ok()
                .map(|_| {
                    git2::Oid::hash_file(git2::ObjectType::Blob, self.repo.workdir().join(path))
                });
            let same = match (in_from, on_disk) {
                (None, None) => true,
                (Some(a), Some(Ok(b))) => a == b,
                _ => false,
            };
            if !same {
                changed.push(path.display().to_string());
            }
        }
        if !changed.is_empty() {
            bail!(
                "local changes to {} would be overwritten",
                changed.join(", ")
            );
        }
        let (kept, gone): (Vec<_>, Vec<_>) = paths.iter().partition(|p| to.get_path(p).is_ok());
        if !kept.is_empty() {
            let mut opts = git2::build::CheckoutBuilder::new();
            opts.force();
            for path in &kept {
                opts.path(path);
            }
            repo.checkout_tree(to.as_object(), Some(&mut opts))
                .context("updating the working tree")?;
        }
        // Deleted upstream: gone from the working tree and the index too.
        for path in gone {
            let file = self.repo.workdir().join(path);
            if file.symlink_metadata().is_ok() {
                std::fs::remove_file(&file)
                    .with_context(|| format!("removing {}", file.display()))?;
            }
            let _ = self.index.remove_path(path);
        }
        Ok(())
    }

    /// Publish the changed index and release the lock.
    pub fn write(self) -> Result<()> {
        let mut this = self;
        this.index.write().context("writing the index")?;
        fs::rename(&this.tmp_path, &this.index_path).context("replacing the index")?;
        Ok(())
    }
}

impl Drop for IndexLock<'_> {
    fn drop(&mut self) {
        // Point the repository back at the real index before it goes away.
        if let Ok(mut real) = Index::open(&self.index_path) {
            let _ = self.repo.repo.set_index(&mut real);
        }
        let _ = fs::remove_file(&self.tmp_path);
        let _ = fs::remove_file(&self.lock_path);
    }
}

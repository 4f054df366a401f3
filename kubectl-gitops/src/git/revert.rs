//! Undo one commit's changes inside one folder: libgit2 computes the revert
//! against HEAD (a three-way merge, so later unrelated changes survive), and
//! only the folder's part of the result is kept.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use git2::Index;

use super::{CommitInfo, Repo, entry_in, is_under};

/// The tree a revert would commit, before anything is written.
#[derive(Debug, Clone)]
pub struct RevertPlan {
    /// The commit being reverted.
    pub reverted: CommitInfo,
    /// HEAD when the plan was made: the parent of the revert commit.
    pub head: git2::Oid,
    pub head_tree: git2::Oid,
    /// HEAD's tree with the folder reverted.
    pub tree: git2::Oid,
}

impl Repo {
    /// Plan reverting `rev`'s changes under `prefix` on top of HEAD.
    pub fn plan_revert(&self, rev: &str, prefix: &str) -> Result<RevertPlan> {
        let (id, _) = self.resolve(rev)?;
        let commit = self.repo.find_commit(id)?;
        let Some(head) = self.head_id()? else {
            bail!("the repository has no commits");
        };
        let head_commit = self.repo.find_commit(head)?;
        if commit.parent_count() > 1 {
            bail!("{rev} is a merge commit; revert the commit that made the change instead");
        }
        let before = match commit.parent_count() {
            0 => None,
            _ => entry_in(&commit.parent(0)?.tree()?, prefix)?,
        };
        if entry_in(&commit.tree()?, prefix)? == before {
            bail!("{rev} changed nothing in {prefix}");
        }
        let merged = self
            .repo
            .revert_commit(&commit, &head_commit, 0, None)
            .with_context(|| format!("reverting {rev}"))?;
        let mut conflicts: Vec<String> = merged
            .conflicts()?
            .filter_map(|c| c.ok())
            .filter_map(|c| c.our.or(c.their).or(c.ancestor))
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .filter(|p| is_under(p, prefix))
            .collect();
        conflicts.dedup();
        if !conflicts.is_empty() {
            bail!(
                "{rev} cannot be reverted cleanly: {} changed since; edit the file(s) by hand and stage them",
                conflicts.join(", ")
            );
        }
        // HEAD's tree, with the folder as the revert left it.
        let mut index = Index::new()?;
        index.read_tree(&head_commit.tree()?)?;
        index.remove_dir(Path::new(prefix), 0)?;
        for entry in merged.iter() {
            let stage = (entry.flags >> 12) & 0x3;
            let path = String::from_utf8_lossy(&entry.path).into_owned();
            if stage == 0 && is_under(&path, prefix) {
                index.add(&entry)?;
            }
        }
        let tree = index.write_tree_to(&self.repo)?;
        Ok(RevertPlan {
            reverted: self.commit_info(id)?,
            head,
            head_tree: head_commit.tree_id(),
            tree,
        })
    }
}

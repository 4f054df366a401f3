//! A git-sync v4 simulator: real commits in a source repo, published into a
//! volume exactly the way git-sync lays it out.
//!
//! git-sync v4 keeps a git repo in its `--root`, checks each new commit out
//! as a detached worktree `<root>/.worktrees/<sha>`, points a fresh relative
//! symlink `<root>/tmp-link -> .worktrees/<sha>` at it, renames that over
//! `<root>/<link>` (atomic), and then removes the previous worktree and
//! prunes it from git. [`GitSync::publish`] does the same steps in the same
//! order; [`GitSync::prepare`] and [`GitSync::swap`] split them so a test can
//! publish a burst of revisions faster than a checkout takes, or interfere
//! between the swap and the cleanup.
//!
//! It uses the `git` command line (the same tool git-sync drives).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::{Context, Result, bail};

/// git-sync's default link name is the repo's name; ours is `repo`.
pub const DEFAULT_LINK: &str = "repo";

/// A source repo and a git-sync volume fed from it.
#[derive(Debug)]
pub struct GitSync {
    dir: tempfile::TempDir,
    link: String,
}

impl GitSync {
    /// An empty source repo (branch `main`) and an empty volume with its own git repo.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("gitsync-")
            .tempdir()
            .context("creating the git-sync folder")?;
        let this = Self {
            dir,
            link: DEFAULT_LINK.to_string(),
        };
        fs::create_dir_all(this.source()).context("creating the source repo")?;
        fs::create_dir_all(this.root()).context("creating the git-sync root")?;
        git(&this.source(), &["init", "-q", "-b", "main"])?;
        git(&this.root(), &["init", "-q", "-b", "main"])?;
        Ok(this)
    }

    /// The source repo's work tree: write files here, then [`GitSync::commit`].
    pub fn source(&self) -> PathBuf {
        self.dir.path().join("source")
    }

    /// git-sync's `--root` (the agent's `--repo`).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("volume")
    }

    /// git-sync's `--link` (the agent's `--link`).
    pub fn link_name(&self) -> &str {
        &self.link
    }

    pub fn link_path(&self) -> PathBuf {
        self.root().join(&self.link)
    }

    /// Write `content` to `rel` in the source work tree (folders created).
    pub fn write(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) -> Result<()> {
        let path = self.source().join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, content).with_context(|| format!("writing {}", path.display()))
    }

    /// Read `rel` from the source work tree.
    pub fn read(&self, rel: impl AsRef<Path>) -> Result<String> {
        let path = self.source().join(rel);
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Copy a file into the source work tree at `rel`.
    pub fn copy_in(&self, from: impl AsRef<Path>, rel: impl AsRef<Path>) -> Result<()> {
        let content = fs::read(from.as_ref())
            .with_context(|| format!("reading {}", from.as_ref().display()))?;
        self.write(rel, content)
    }

    /// Remove a file or folder from the source work tree.
    pub fn remove(&self, rel: impl AsRef<Path>) -> Result<()> {
        let path = self.source().join(rel);
        if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        }
        .with_context(|| format!("removing {}", path.display()))
    }

    /// Commit everything in the source work tree; returns the commit hash.
    pub fn commit(&self, message: &str) -> Result<String> {
        git(&self.source(), &["add", "-A"])?;
        git(
            &self.source(),
            &["commit", "-q", "--allow-empty", "-m", message],
        )?;
        self.head()
    }

    /// The source repo's HEAD commit.
    pub fn head(&self) -> Result<String> {
        Ok(git(&self.source(), &["rev-parse", "HEAD"])?
            .trim()
            .to_string())
    }

    /// Fetch `sha` into the volume's repo and check it out as
    /// `.worktrees/<sha>` (git-sync's fetch and `worktree add`); returns the
    /// worktree. Nothing is published yet.
    pub fn prepare(&self, sha: &str) -> Result<PathBuf> {
        prepare_from(&self.root(), &self.source(), sha)
    }

    /// Follow `repo` as git-sync follows a remote: poll its HEAD every
    /// 200 ms and publish each new commit. Stops when the [`Follower`] is
    /// dropped.
    pub fn follow(&self, repo: &Path) -> Follower {
        let stop = Arc::new(AtomicBool::new(false));
        let (root, link, repo) = (self.root(), self.link_path(), repo.to_path_buf());
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut published = String::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok(head) = git(&repo, &["rev-parse", "HEAD"]) {
                    let head = head.trim().to_string();
                    if head != published && publish_from(&root, &link, &repo, &head).is_ok() {
                        published = head;
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        });
        Follower {
            stop,
            thread: Some(thread),
        }
    }
}

/// A running [`GitSync::follow`].
#[derive(Debug)]
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fetch `sha` from `source` into the volume at `root` and check it out as
/// `.worktrees/<sha>`.
fn prepare_from(root: &Path, source: &Path, sha: &str) -> Result<PathBuf> {
    let source = source.to_str().context("source path is not UTF-8")?;
    git(root, &["fetch", "-q", source, sha])?;
    let rel = format!(".worktrees/{sha}");
    if !root.join(&rel).exists() {
        git(
            root,
            &["worktree", "add", "-q", "--force", "--detach", &rel, sha],
        )?;
    }
    Ok(root.join(rel))
}

/// git-sync's publish: prepare, swap the link, remove the old worktree.
fn publish_from(root: &Path, link: &Path, source: &Path, sha: &str) -> Result<()> {
    prepare_from(root, source, sha)?;
    if let Some(old) = swap_link(root, link, sha)? {
        cleanup_worktree(root, &old)?;
    }
    Ok(())
}

/// A relative `tmp-link` to `.worktrees/<sha>` renamed over `link`; the
/// worktree published before, if another.
fn swap_link(root: &Path, link: &Path, sha: &str) -> Result<Option<PathBuf>> {
    let previous = fs::read_link(link).ok().map(|t| root.join(t));
    let tmp = root.join("tmp-link");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!(".worktrees/{sha}"), &tmp).context("creating tmp-link")?;
    fs::rename(&tmp, link).context("renaming tmp-link over the link")?;
    Ok(previous.filter(|p| !p.ends_with(sha)))
}

fn cleanup_worktree(root: &Path, worktree: &Path) -> Result<()> {
    if worktree.exists() {
        fs::remove_dir_all(worktree).with_context(|| format!("removing {}", worktree.display()))?;
    }
    git(root, &["worktree", "prune"])?;
    Ok(())
}

impl GitSync {
    /// Point the link at `.worktrees/<sha>` the way git-sync does: a relative
    /// `tmp-link` renamed over the link. Returns the previous worktree.
    pub fn swap(&self, sha: &str) -> Result<Option<PathBuf>> {
        swap_link(&self.root(), &self.link_path(), sha)
    }

    /// Remove a worktree that is no longer published (git-sync's cleanup).
    pub fn cleanup(&self, worktree: &Path) -> Result<()> {
        cleanup_worktree(&self.root(), worktree)
    }

    /// Publish the source's HEAD: prepare, swap, remove the old worktree.
    /// Returns the published commit.
    pub fn publish(&self) -> Result<String> {
        let sha = self.head()?;
        self.publish_sha(&sha)?;
        Ok(sha)
    }

    /// Publish a given (already committed) revision.
    pub fn publish_sha(&self, sha: &str) -> Result<()> {
        publish_from(&self.root(), &self.link_path(), &self.source(), sha)
    }

    /// Commit and publish; returns the commit.
    pub fn commit_and_publish(&self, message: &str) -> Result<String> {
        self.commit(message)?;
        self.publish()
    }

    /// The worktree the link points at now.
    pub fn published_worktree(&self) -> Option<PathBuf> {
        let target = fs::read_link(self.link_path()).ok()?;
        Some(self.root().join(target))
    }

    /// The commit the link points at now.
    pub fn published(&self) -> Option<String> {
        self.published_worktree()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    }

    /// The worktrees present in the volume.
    pub fn worktrees(&self) -> Result<Vec<String>> {
        let dir = self.root().join(".worktrees");
        let mut names = Vec::new();
        if dir.exists() {
            for entry in fs::read_dir(&dir)? {
                names.push(entry?.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Run `git` in `dir` with a fixed identity and no user or system config;
/// returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=gitsync-sim",
            "-c",
            "user.email=gitsync-sim@example.invalid",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running git {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "git {} in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_like_git_sync_v4() {
        let gs = GitSync::new().unwrap();
        assert_eq!(gs.published(), None);
        gs.write("namespaces/team-a/a.yaml", "x: 1\n").unwrap();
        let first = gs.commit_and_publish("one").unwrap();
        assert_eq!(first.len(), 40);
        // a relative link to .worktrees/<sha>, with the files checked out
        assert_eq!(
            fs::read_link(gs.link_path()).unwrap(),
            PathBuf::from(format!(".worktrees/{first}"))
        );
        assert_eq!(
            fs::read_to_string(gs.link_path().join("namespaces/team-a/a.yaml")).unwrap(),
            "x: 1\n"
        );
        assert!(!gs.root().join("tmp-link").exists());

        gs.write("namespaces/team-a/a.yaml", "x: 2\n").unwrap();
        let second = gs.commit_and_publish("two").unwrap();
        assert_ne!(first, second);
        assert_eq!(gs.published().as_deref(), Some(second.as_str()));
        // the old worktree is gone, from disk and from git
        assert_eq!(gs.worktrees().unwrap(), [second.as_str()]);
        let list = git(&gs.root(), &["worktree", "list"]).unwrap();
        assert!(!list.contains(&first), "{list}");
        assert_eq!(
            fs::read_to_string(gs.link_path().join("namespaces/team-a/a.yaml")).unwrap(),
            "x: 2\n"
        );
    }

    #[test]
    fn prepared_revisions_swap_without_a_checkout() {
        let gs = GitSync::new().unwrap();
        let mut shas = Vec::new();
        for i in 0..3 {
            gs.write("f.yaml", format!("i: {i}\n")).unwrap();
            shas.push(gs.commit(&format!("c{i}")).unwrap());
        }
        for sha in &shas {
            gs.prepare(sha).unwrap();
        }
        assert_eq!(gs.worktrees().unwrap().len(), 3);
        assert_eq!(gs.swap(&shas[0]).unwrap(), None);
        let old = gs.swap(&shas[2]).unwrap().unwrap();
        assert!(old.ends_with(&shas[0]));
        gs.cleanup(&old).unwrap();
        assert_eq!(gs.published().as_deref(), Some(shas[2].as_str()));
        assert_eq!(
            fs::read_to_string(gs.link_path().join("f.yaml")).unwrap(),
            "i: 2\n"
        );
    }
}

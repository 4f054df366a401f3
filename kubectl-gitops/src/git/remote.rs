//! Push, and when the remote moved on: fetch, rebase the local commits onto
//! it (in memory, so a conflict leaves nothing behind), and push again.
//!
//! Credentials come the way git finds them: the ssh-agent for SSH remotes,
//! git's credential helpers (`git credential fill`, which runs whatever
//! `credential.helper` names) for user and password.

use std::{
    cell::RefCell,
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, anyhow, bail};
use git2::{
    Cred, CredentialType, ErrorCode, FetchOptions, Oid, PushOptions, RebaseOptions, RemoteCallbacks,
};

use super::Repo;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    pub remote: String,
    pub branch: String,
    /// The remote's branch, `refs/heads/...`.
    pub remote_ref: String,
    /// How many times the local commits were rebased onto the remote's.
    pub rebases: usize,
    /// The commit the remote branch now points at.
    pub head: String,
    /// The remote already had it: nothing was pushed.
    pub up_to_date: bool,
}

enum PushError {
    /// The remote has commits we lack.
    Rejected(String),
    Other(anyhow::Error),
}

impl Repo {
    /// Push HEAD's branch to its upstream (`branch.<b>.remote`/`merge`, else
    /// `origin` and the same name); on a rejection, fetch, rebase and retry
    /// up to `retries` times. `remote` overrides the configured remote.
    pub fn push(&self, remote: Option<&str>, retries: usize) -> Result<PushOutcome> {
        let Some(branch) = self.branch() else {
            bail!("HEAD is detached; check out a branch to push");
        };
        if self.head_id()?.is_none() {
            bail!("nothing to push: the branch {branch} has no commits yet");
        }
        let config = self.repo.config()?;
        let remote_name = match remote {
            Some(r) => r.to_string(),
            None => config
                .get_string(&format!("branch.{branch}.remote"))
                .unwrap_or_else(|_| "origin".to_string()),
        };
        let remote_ref = config
            .get_string(&format!("branch.{branch}.merge"))
            .unwrap_or_else(|_| format!("refs/heads/{branch}"));
        let tracking = format!(
            "refs/remotes/{remote_name}/{}",
            remote_ref.trim_start_matches("refs/heads/")
        );
        self.repo.find_remote(&remote_name).map_err(|_| {
            anyhow!("no remote {remote_name:?}: add one with `git remote add {remote_name} URL`")
        })?;
        let known = self.repo.refname_to_id(&tracking).ok();
        let mut rebases = 0;
        loop {
            match self.try_push(&remote_name, &branch, &remote_ref) {
                Ok(()) => {
                    let head = self.head_id()?;
                    // As `git push -u` does: the branch tracks what it was
                    // pushed to, so `git pull --rebase` and `status` know it.
                    if config
                        .get_string(&format!("branch.{branch}.remote"))
                        .is_err()
                    {
                        let mut config = self.repo.config()?;
                        config.set_str(&format!("branch.{branch}.remote"), &remote_name)?;
                        config.set_str(&format!("branch.{branch}.merge"), &remote_ref)?;
                    }
                    let up_to_date = rebases == 0 && head.is_some() && known == head;
                    return Ok(PushOutcome {
                        remote: remote_name,
                        branch,
                        remote_ref,
                        rebases,
                        head: head.map(|id| id.to_string()).unwrap_or_default(),
                        up_to_date,
                    });
                }
                Err(PushError::Other(e)) => return Err(e),
                Err(PushError::Rejected(why)) if rebases >= retries => bail!(
                    "push to {remote_name} rejected ({why}) after {rebases} rebase(s); the remote is busy, try again"
                ),
                Err(PushError::Rejected(why)) => {
                    tracing::info!(%why, attempt = rebases + 1, "push rejected; fetching and rebasing");
                    self.fetch(&remote_name, &remote_ref, &tracking)?;
                    self.rebase_onto(&tracking, &remote_name)?;
                    rebases += 1;
                }
            }
        }
    }

    fn callbacks(&self) -> RemoteCallbacks<'static> {
        let mut callbacks = RemoteCallbacks::new();
        let workdir = self.workdir.clone();
        let mut tried = Tried::default();
        callbacks.credentials(move |url, username, allowed| {
            credentials(&workdir, url, username, allowed, &mut tried)
        });
        callbacks
    }

    fn try_push(&self, remote_name: &str, branch: &str, remote_ref: &str) -> Result<(), PushError> {
        let mut remote = self
            .repo
            .find_remote(remote_name)
            .map_err(|e| PushError::Other(e.into()))?;
        if remote.url().is_ok_and(is_local) {
            return self.push_with_git(remote_name, branch, remote_ref);
        }
        let rejected: RefCell<Option<String>> = RefCell::new(None);
        let mut callbacks = self.callbacks();
        callbacks.push_update_reference(|refname, status| {
            if let Some(status) = status {
                *rejected.borrow_mut() = Some(format!("{refname}: {status}"));
            }
            Ok(())
        });
        let mut opts = PushOptions::new();
        opts.remote_callbacks(callbacks);
        let spec = format!("refs/heads/{branch}:{remote_ref}");
        let result = remote.push(&[spec.as_str()], Some(&mut opts));
        drop(opts);
        match result {
            Err(e) if e.code() == ErrorCode::NotFastForward => {
                Err(PushError::Rejected("non-fast-forward".into()))
            }
            Err(e) => Err(PushError::Other(transport_error(e, remote_name))),
            Ok(()) => match rejected.into_inner() {
                Some(why) if is_behind(&why) => Err(PushError::Rejected(why)),
                // A protected branch, a declined hook, a full disk: fetching
                // and rebasing would not help. Say the server's reason now.
                Some(why) => Err(PushError::Other(anyhow!(
                    "{remote_name} refused the push: {why}; nothing was pushed"
                ))),
                None => Ok(()),
            },
        }
    }

    /// Push to a remote on this machine with git itself: libgit2's local
    /// transport moves the remote's branch without checking that it is
    /// still where the push found it, so two pushes at once could each
    /// succeed and the first commit be lost. git's receive-pack updates
    /// the branch only from the value it read, under its lock.
    fn push_with_git(
        &self,
        remote_name: &str,
        branch: &str,
        remote_ref: &str,
    ) -> Result<(), PushError> {
        let output = Command::new("git")
            .arg("-C")
            .arg(&self.workdir)
            .args(["push", "--porcelain", "--quiet", remote_name])
            .arg(format!("refs/heads/{branch}:{remote_ref}"))
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| PushError::Other(anyhow!("running git push: {e}")))?;
        if output.status.success() {
            return Ok(());
        }
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let why = said
            .lines()
            .find(|l| l.starts_with('!'))
            .map(|l| l.rsplit('\t').next().unwrap_or(l).trim().to_string())
            .unwrap_or_else(|| said.trim().to_string());
        let why = redact(&why);
        if is_behind(&said) {
            Err(PushError::Rejected(why))
        } else {
            // What the server's hooks said (`remote: ...`) is the reason a
            // person needs.
            let server: Vec<&str> = said
                .lines()
                .filter_map(|l| l.strip_prefix("remote:"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let server = if server.is_empty() {
                String::new()
            } else {
                format!(" (the server said: {})", redact(&server.join("; ")))
            };
            Err(PushError::Other(anyhow!(
                "{remote_name} refused the push: {why}{server}; nothing was pushed"
            )))
        }
    }

    fn fetch(&self, remote_name: &str, remote_ref: &str, tracking: &str) -> Result<()> {
        let mut remote = self.repo.find_remote(remote_name)?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(self.callbacks());
        let spec = format!("+{remote_ref}:{tracking}");
        remote
            .fetch(&[spec.as_str()], Some(&mut opts), None)
            .map_err(|e| transport_error(e, remote_name))
            .with_context(|| format!("fetching {remote_ref} from {remote_name}"))
    }

    /// Rebase HEAD's local commits onto `tracking`, in memory; on a conflict
    /// abort and leave the repository as it was.
    fn rebase_onto(&self, tracking: &str, remote_name: &str) -> Result<()> {
        let dirty = self.dirty_paths("")?;
        let dirty: Vec<_> = dirty
            .into_iter()
            .filter(|p| !self.is_untracked(p))
            .collect();
        if !dirty.is_empty() {
            bail!(
                "the remote has new commits, and local changes ({}) prevent rebasing onto them; commit or discard them, then push again",
                dirty.join(", ")
            );
        }
        let branch_ref = self.repo.head()?;
        let branch_name = branch_ref
            .name()
            .context("HEAD's branch name is not UTF-8")?
            .to_string();
        let old_head = branch_ref.target().context("HEAD has no commit")?;
        let local = self.repo.reference_to_annotated_commit(&branch_ref)?;
        let upstream_ref = self.repo.find_reference(tracking)?;
        let upstream = self.repo.reference_to_annotated_commit(&upstream_ref)?;
        let mut opts = RebaseOptions::new();
        opts.inmemory(true);
        let mut rebase = self
            .repo
            .rebase(Some(&local), Some(&upstream), None, Some(&mut opts))
            .context("starting the rebase")?;
        let (_, committer) = self.signatures()?;
        let mut tip = upstream.id();
        let mut conflict: Option<String> = None;
        let mut failure: Option<anyhow::Error> = None;
        while let Some(op) = rebase.next() {
            let op = match op {
                Ok(op) => op,
                Err(e) => {
                    failure = Some(anyhow::Error::new(e).context("rebasing"));
                    break;
                }
            };
            let index = rebase.inmemory_index()?;
            if index.has_conflicts() {
                let mut paths: Vec<String> = index
                    .conflicts()?
                    .filter_map(|c| c.ok())
                    .filter_map(|c| c.our.or(c.their).or(c.ancestor))
                    .map(|e| String::from_utf8_lossy(&e.path).into_owned())
                    .collect();
                paths.dedup();
                let subject = self
                    .repo
                    .find_commit(op.id())
                    .ok()
                    .and_then(|c| {
                        c.summary_bytes()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                    })
                    .unwrap_or_default();
                conflict = Some(format!(
                    "your commit {} ({subject:?}) conflicts with the remote's changes to {}",
                    &op.id().to_string()[..12],
                    paths.join(", ")
                ));
                break;
            }
            match rebase.commit(None, &committer, None) {
                Ok(id) => tip = id,
                // The remote already has the same change: nothing to replay.
                Err(e) if e.code() == ErrorCode::Applied => {}
                Err(e) => {
                    failure = Some(anyhow::Error::new(e).context("rebasing"));
                    break;
                }
            }
        }
        if let Some(why) = conflict {
            rebase.abort().context("aborting the rebase")?;
            bail!(
                "push rejected: {why}; nothing was changed locally or on {remote_name}. Resolve it by hand: `git pull --rebase`, fix the files, `git rebase --continue`, then push again"
            );
        }
        if let Some(e) = failure {
            let _ = rebase.abort();
            return Err(e);
        }
        rebase.finish(None).context("finishing the rebase")?;
        self.land_rebased(&branch_name, old_head, tip, tracking)
    }

    /// Move `branch_name` from `old_head` to the rebased `tip` by
    /// compare-and-swap, and only then the working tree and the index, from
    /// the old tip's tree to the new one: a lost race (someone committed
    /// meanwhile) changes nothing at all.
    fn land_rebased(
        &self,
        branch_name: &str,
        old_head: Oid,
        tip: Oid,
        tracking: &str,
    ) -> Result<()> {
        let old_tree = self.repo.find_commit(old_head)?.tree_id();
        let new_tree = self.repo.find_commit(tip)?.tree_id();
        let mut lock = self.lock_index()?;
        self.repo
            .reference_matching(
                branch_name,
                tip,
                true,
                old_head,
                &format!("kubectl-gitops push: rebase onto {tracking}"),
            )
            .map_err(|e| {
                if e.code() == ErrorCode::Modified {
                    anyhow!(
                        "{branch_name} moved while rebasing onto {tracking} (another commit landed); nothing was changed, push again"
                    )
                } else {
                    anyhow::Error::new(e).context("moving the branch to the rebased commits")
                }
            })?;
        if let Err(e) = lock.checkout_from(old_tree, new_tree) {
            return Err(e.context(format!(
                "{branch_name} now points at the rebased commits, but the working tree was not updated; run `git checkout -f` to update it"
            )));
        }
        lock.write()?;
        Ok(())
    }

    fn is_untracked(&self, path: &str) -> bool {
        self.repo
            .status_file(Path::new(path))
            .is_ok_and(|s| s.contains(git2::Status::WT_NEW))
    }
}

/// Whether a refused ref update means "the remote has commits you lack"
/// (fetch, rebase, retry), as git's own words for it go, or that another
/// push held the branch's lock at that moment (git: "cannot lock ref";
/// libgit2 on a local remote: "failed to lock file"), which the same retry
/// resolves.
fn is_behind(status: &str) -> bool {
    let s = status.to_ascii_lowercase();
    [
        "non-fast-forward",
        "non-fastforward",
        "fetch first",
        "stale info",
        "already exists",
        "cannot lock ref",
        "failed to lock",
    ]
    .iter()
    .any(|w| s.contains(w))
}

/// A transport error, with what to do when this build cannot speak the
/// remote's protocol at all.
fn transport_error(e: git2::Error, remote_name: &str) -> anyhow::Error {
    let unsupported =
        e.class() == git2::ErrorClass::Net && e.message().contains("unsupported URL protocol");
    // libgit2's message may quote the remote's URL, with a token in it.
    let error =
        anyhow!("{}", redact(e.message())).context(format!("talking to the remote {remote_name}"));
    if unsupported {
        // libgit2 speaks local paths, file://, git://, http(s):// and ssh://;
        // anything else (a custom remote helper, say) needs git itself.
        error.context(format!(
            "kubectl-gitops cannot reach {remote_name}: libgit2 does not speak its protocol; push with `git push` instead"
        ))
    } else {
        error
    }
}

/// Whether a remote URL names a repository on this machine (a path or
/// `file://`), which libgit2 reaches with its local transport.
fn is_local(url: &str) -> bool {
    url.starts_with("file://") || !(url.contains("://") || is_scp_like(url))
}

/// `user@host:path` or `host:path`, git's short form of an SSH URL (a colon
/// before any slash).
fn is_scp_like(url: &str) -> bool {
    match (url.find(':'), url.find('/')) {
        (Some(colon), Some(slash)) => colon < slash,
        (Some(_), None) => true,
        _ => false,
    }
}

/// `text` with the secret of every URL in it masked: the password of
/// `scheme://user:password@`, and the whole user part of an HTTP(S) URL
/// without one (`https://<token>@host/...` is how tokens are often given).
/// Remote URLs reach errors and logs; their credentials never do.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let scheme = before[..at]
            .rsplit(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        // the authority ends at the path, or at anything a URL cannot hold
        let end = after
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || "\"'<>`".contains(c)
            })
            .unwrap_or(after.len());
        let (authority, tail) = after.split_at(end);
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                let masked = match userinfo.split_once(':') {
                    Some((user, _)) => format!("{user}:***"),
                    None if scheme.starts_with("http") => "***".to_string(),
                    None => userinfo.to_string(),
                };
                out.push_str(&masked);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// What one connection has offered so far.
#[derive(Debug, Default)]
struct Tried {
    types: CredentialType,
    /// The user and password a credential helper gave, once offered.
    filled: Option<(String, String)>,
}

/// Answer libgit2's request for credentials, trying each way once. Asked
/// again after a helper's user and password were offered, the server
/// rejected them: they are erased from the helpers (`git credential
/// reject`, as git does), so a wrong stored password is not offered again
/// and again.
fn credentials(
    workdir: &Path,
    url: &str,
    username: Option<&str>,
    allowed: CredentialType,
    tried: &mut Tried,
) -> Result<Cred, git2::Error> {
    let user = username.unwrap_or("git");
    if let Some((user, password)) = tried.filled.take() {
        credential_reject(workdir, url, &user, &password);
        return Err(git2::Error::from_str(&format!(
            "{} rejected the user and password from git's credential helper ({user}); they were erased from it (git credential reject): run again to give new ones",
            redact(url)
        )));
    }
    let tried_types = &mut tried.types;
    if allowed.contains(CredentialType::USERNAME) && !tried_types.contains(CredentialType::USERNAME)
    {
        tried_types.insert(CredentialType::USERNAME);
        return Cred::username(user);
    }
    if allowed.contains(CredentialType::SSH_KEY) && !tried_types.contains(CredentialType::SSH_KEY) {
        tried_types.insert(CredentialType::SSH_KEY);
        return Cred::ssh_key_from_agent(user);
    }
    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
        && !tried_types.contains(CredentialType::USER_PASS_PLAINTEXT)
    {
        tried_types.insert(CredentialType::USER_PASS_PLAINTEXT);
        if let Some((user, password)) = credential_fill(workdir, url, username) {
            let cred = Cred::userpass_plaintext(&user, &password);
            tried.filled = Some((user, password));
            return cred;
        }
    }
    let tried = tried_types;
    if allowed.contains(CredentialType::DEFAULT) && !tried.contains(CredentialType::DEFAULT) {
        tried.insert(CredentialType::DEFAULT);
        return Cred::default();
    }
    Err(git2::Error::from_str(&format!(
        "no usable credentials for {}: tried the ssh-agent and git's credential helpers (see `git config credential.helper`)",
        redact(url)
    )))
}

/// Tell git's credential helpers that a user and password were rejected
/// (`git credential reject`): a helper that stored them erases them.
fn credential_reject(workdir: &Path, url: &str, user: &str, password: &str) {
    let child = Command::new("git")
        .arg("-C")
        .arg(workdir)
        .args(["credential", "reject"])
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        tracing::warn!("could not run `git credential reject`");
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = write!(stdin, "url={url}\nusername={user}\npassword={password}\n\n");
    }
    let _ = child.wait();
}

/// Ask git's credential helpers for a user and password (`git credential
/// fill`, with prompts off): the helpers, their order and their config are
/// exactly git's.
pub fn credential_fill(
    workdir: &Path,
    url: &str,
    username: Option<&str>,
) -> Option<(String, String)> {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(workdir)
        .args(["credential", "fill"])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut request = format!("url={url}\n");
    if let Some(u) = username {
        request.push_str(&format!("username={u}\n"));
    }
    request.push('\n');
    child.stdin.take()?.write_all(request.as_bytes()).ok()?;
    let output = child.wait_with_output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .map(str::to_string)
    };
    Some((field("username")?, field("password")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_remotes_are_told_from_network_ones() {
        for url in [
            "/srv/git/config.git",
            "../config.git",
            "file:///srv/config.git",
            "C",
        ] {
            assert!(is_local(url), "{url}");
        }
        for url in [
            "https://git.example.com/config.git",
            "ssh://git@host/config.git",
            "git@github.com:org/config.git",
            "host:config.git",
            "git://127.0.0.1:9418/config.git",
        ] {
            assert!(!is_local(url), "{url}");
        }
    }

    #[test]
    fn credentials_in_urls_are_masked_wherever_they_are_quoted() {
        for (text, shown) in [
            (
                "https://alice:s3cr3t@git.example.com/config.git",
                "https://alice:***@git.example.com/config.git",
            ),
            (
                "failed to connect to https://ghp_T0KEN@github.com/org/config: refused",
                "failed to connect to https://***@github.com/org/config: refused",
            ),
            ("HTTP://t0ken@h:8080", "HTTP://***@h:8080"),
            (
                "ssh://git@github.com/org/config.git",
                "ssh://git@github.com/org/config.git",
            ),
            (
                "ssh://git:pw@github.com/x and http://u:p@a/b?c=d",
                "ssh://git:***@github.com/x and http://u:***@a/b?c=d",
            ),
            ("'https://a:b@h'", "'https://a:***@h'"),
            ("https://h/path@x", "https://h/path@x"),
            ("no url here: a@b", "no url here: a@b"),
            ("://@", "://@"),
            ("", ""),
        ] {
            assert_eq!(redact(text), shown, "{text}");
        }
    }

    #[test]
    fn asks_the_configured_credential_helper() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        repo.config()
            .unwrap()
            .set_str(
                "credential.helper",
                "!f() { test \"$1\" = get && echo username=alice && echo password=s3cret; }; f",
            )
            .unwrap();
        assert_eq!(
            credential_fill(dir.path(), "https://git.example.com/config.git", None),
            Some(("alice".to_string(), "s3cret".to_string()))
        );
    }

    fn commit_file(repo: &git2::Repository, path: &str, text: &str, parent: Option<Oid>) -> Oid {
        let workdir = repo.workdir().unwrap().to_path_buf();
        std::fs::write(workdir.join(path), text).unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new(path)).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let parents: Vec<git2::Commit> = parent
            .map(|p| repo.find_commit(p).unwrap())
            .into_iter()
            .collect();
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, text, &tree, &parents)
            .unwrap()
    }

    /// Defect 11: a push whose rebase lost the race (another commit moved
    /// the branch after the rebase started) leaves HEAD, the index and the
    /// working tree exactly as they were: the branch is compared-and-swapped
    /// before any file is written.
    #[test]
    fn a_rebase_that_lost_the_race_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, _) = Repo::init_or_open(dir.path()).unwrap();
        let raw = git2::Repository::open(dir.path()).unwrap();
        let base = commit_file(&raw, "vs.yaml", "base\n", None);
        // what the rebase made, on a side line: not checked out
        let rebased = {
            let tree = raw.find_commit(base).unwrap().tree().unwrap();
            let mut builder = raw.treebuilder(Some(&tree)).unwrap();
            let blob = raw.blob(b"rebased\n").unwrap();
            builder.insert("vs.yaml", blob, 0o100644).unwrap();
            let tree = raw.find_tree(builder.write().unwrap()).unwrap();
            let sig = git2::Signature::now("t", "t@example.com").unwrap();
            let parent = raw.find_commit(base).unwrap();
            raw.commit(None, &sig, &sig, "rebased", &tree, &[&parent])
                .unwrap()
        };
        // meanwhile someone commits: the branch is no longer at `base`
        let theirs = commit_file(&raw, "vs.yaml", "theirs\n", Some(base));
        let branch = raw.head().unwrap().name().unwrap().to_string();

        let error = repo
            .land_rebased(&branch, base, rebased, "refs/remotes/origin/main")
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("moved while rebasing"),
            "{error:#}"
        );
        assert_eq!(raw.head().unwrap().target(), Some(theirs));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("vs.yaml")).unwrap(),
            "theirs\n"
        );
        let statuses = raw.statuses(None).unwrap();
        assert!(
            statuses.iter().all(|s| s.status().is_empty()),
            "the index and tree still match HEAD"
        );
    }

    /// A stored password the server rejects is erased from the helper and
    /// not offered again.
    #[test]
    fn a_rejected_password_is_erased_from_the_helper_not_offered_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("helper.log");
        let repo = git2::Repository::init(dir.path().join("repo")).unwrap();
        repo.config()
            .unwrap()
            .set_str(
                "credential.helper",
                &format!(
                    "!f() {{ echo \"$1\" >> '{}'; test \"$1\" = get && echo username=alice && echo password=wrong; true; }}; f",
                    log.display()
                ),
            )
            .unwrap();
        let workdir = dir.path().join("repo");
        let url = "https://git.example.com/config.git";
        let mut tried = Tried::default();
        let allowed = CredentialType::USER_PASS_PLAINTEXT;
        assert!(credentials(&workdir, url, None, allowed, &mut tried).is_ok());
        // libgit2 asks again: the server said no.
        let again = credentials(&workdir, url, None, allowed, &mut tried);
        let message = again
            .err()
            .map(|e| e.message().to_string())
            .unwrap_or_default();
        assert!(message.contains("were erased from it"), "{message}");
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(calls.lines().collect::<Vec<_>>(), ["get", "erase"]);
        // And not a third time.
        assert!(credentials(&workdir, url, None, allowed, &mut tried).is_err());
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);
    }
}

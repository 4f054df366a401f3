//! Read one consistent revision of the namespace folder.
//!
//! git-sync mode: resolve the link, read `<target>/<path>/<namespace>/`, and
//! resolve again. git-sync swaps the link *before* it deletes the old
//! worktree, so a read that raced with a deletion (files missing, or a
//! folder half gone) always sees the link moved afterwards, and is discarded
//! and retried. Plain mode does the same with the folder's revision (HEAD,
//! `-dirty`, or the content digest) before and after the read.
//!
//! Everything here is blocking file I/O: the loop runs it on the blocking pool.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use gitops_shared::{
    DesiredSet, LoadError, RepoConfig,
    analyze::{self, Finding, Level},
    hash::bytes_hash,
    layout::{load_namespace_with, namespace_digest, namespace_dir},
    manifest::{LoadOptions, ManifestError},
    plan::Prepared,
};
use tracing::debug;

use crate::{
    cache::ParseCache,
    config::{Config, Source},
    watch::read_link,
};

/// How often a moving revision is re-read before giving up (until the next wake-up).
const MAX_ATTEMPTS: u32 = 20;

/// One revision, read.
#[derive(Debug)]
pub struct Loaded {
    /// The folder the revision was read from (the link's target, or the
    /// plain folder): where a file is read again ([`ParseCache::reread`]).
    pub tree: PathBuf,
    /// The commit (link target's last component), `<HEAD>[-dirty]`, or `sha256:...`.
    pub revision: String,
    /// The base folder used (flag, or the revision's `.gitops/config.yaml`).
    pub base_path: String,
    /// The namespace's objects, or every error: a revision is all or nothing.
    pub desired: Result<DesiredSet, LoadError>,
    /// With `--strict`: the Error findings of the analysis (refuse when any).
    pub findings: Vec<Finding>,
    /// `desired`'s manifests as they are applied, in the same order (whole
    /// for the files this read parsed, else the hash alone). Their parsed
    /// documents are dropped (`Value::Null`) unless `--strict` analyses
    /// them: plan with these.
    pub prepared: Vec<Prepared>,
    /// Files parsed by this read; the others' content was in the cache.
    pub parsed_files: usize,
}

impl Loaded {
    /// Every reason to refuse this revision, one per line; `None` when it is good.
    pub fn refusal(&self) -> Option<String> {
        match &self.desired {
            Err(e) => Some(e.to_string()),
            Ok(_) if !self.findings.is_empty() => Some(
                self.findings
                    .iter()
                    .map(|f| format!("--strict: {f}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            Ok(_) => None,
        }
    }
}

/// Why no revision could be read at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    #[error("{}: no revision published yet (git-sync has not created the link)", .link.display())]
    NoLink { link: PathBuf },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the revision kept changing while it was read ({attempts} attempts); it is read again on the next change or resync"
    )]
    Unstable { attempts: u32 },
    #[error(
        "{}: the link points at {}, which does not exist; nothing is applied or pruned until git-sync publishes a revision",
        .link.display(), .target.display()
    )]
    MissingTarget { link: PathBuf, target: PathBuf },
    #[error(
        "{}: changed or removed while the revision was applied; it is read again on the next change or resync",
        .0.display()
    )]
    Changed(PathBuf),
}

/// Points in a read where tests may interfere (delete the worktree, move the link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The revision was resolved; nothing read yet.
    Resolved,
    /// The files were read; the revision is about to be resolved again.
    Read,
}

/// Read the current revision.
pub fn load(cfg: &Config) -> Result<Loaded, LoadFailure> {
    load_cached(cfg, &mut ParseCache::default())
}

/// [`load`], parsing only the files that `cache` does not hold (and
/// leaving it with the files of this revision).
pub fn load_cached(cfg: &Config, cache: &mut ParseCache) -> Result<Loaded, LoadFailure> {
    load_with_hook(cfg, cache, &mut |_, _| {})
}

/// [`load_cached`], calling `hook` at each [`Stage`] with the folder being read.
pub fn load_with_hook(
    cfg: &Config,
    cache: &mut ParseCache,
    hook: &mut dyn FnMut(Stage, &Path),
) -> Result<Loaded, LoadFailure> {
    match &cfg.source {
        Source::Link { link, .. } => load_link(cfg, cache, link, hook),
        Source::Plain { dir } => load_plain(cfg, cache, dir, hook),
    }
}

fn load_link(
    cfg: &Config,
    cache: &mut ParseCache,
    link: &Path,
    hook: &mut dyn FnMut(Stage, &Path),
) -> Result<Loaded, LoadFailure> {
    for attempt in 1..=MAX_ATTEMPTS {
        let target = match read_link(link) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LoadFailure::NoLink {
                    link: link.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(LoadFailure::Io {
                    path: link.to_path_buf(),
                    source,
                });
            }
        };
        hook(Stage::Resolved, &target);
        let (base_path, desired, read) = read_tree(cfg, cache, &target);
        hook(Stage::Read, &target);
        let moved = read_link(link).ok().as_ref() != Some(&target);
        let vanished = matches!(&desired, Err(e) if e.is_vanished()) && !target.is_dir();
        if moved || vanished {
            debug!(
                attempt,
                target = %target.display(),
                moved,
                "revision changed while it was read; reading again"
            );
            if !moved && attempt == MAX_ATTEMPTS {
                // Not a swap in progress: the link stays dangling.
                return Err(LoadFailure::MissingTarget {
                    link: link.to_path_buf(),
                    target,
                });
            }
            std::thread::sleep(Duration::from_millis(5 * u64::from(attempt)));
            continue;
        }
        let revision = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| target.display().to_string());
        return Ok(finish(cfg, &target, revision, base_path, desired, read));
    }
    Err(LoadFailure::Unstable {
        attempts: MAX_ATTEMPTS,
    })
}

fn load_plain(
    cfg: &Config,
    cache: &mut ParseCache,
    dir: &Path,
    hook: &mut dyn FnMut(Stage, &Path),
) -> Result<Loaded, LoadFailure> {
    if !dir.is_dir() {
        return Err(LoadFailure::Io {
            path: dir.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotFound, "no such folder"),
        });
    }
    for attempt in 1..=MAX_ATTEMPTS {
        let before = plain_revision(cfg, dir);
        hook(Stage::Resolved, dir);
        let (base_path, desired, read) = read_tree(cfg, cache, dir);
        hook(Stage::Read, dir);
        if plain_revision(cfg, dir) == before {
            return Ok(finish(cfg, dir, before, base_path, desired, read));
        }
        debug!(attempt, "folder changed while it was read; reading again");
        std::thread::sleep(Duration::from_millis(5 * u64::from(attempt)));
    }
    Err(LoadFailure::Unstable {
        attempts: MAX_ATTEMPTS,
    })
}

fn finish(
    cfg: &Config,
    tree: &Path,
    revision: String,
    base_path: String,
    desired: Result<DesiredSet, LoadError>,
    (prepared, parsed_files): (Vec<Prepared>, usize),
) -> Loaded {
    let findings = match &desired {
        Ok(set) if cfg.strict => analyze::analyze_namespace(set)
            .into_iter()
            .filter(|f| f.level >= Level::Error)
            .collect(),
        _ => Vec::new(),
    };
    Loaded {
        tree: tree.to_path_buf(),
        revision,
        base_path,
        desired,
        findings,
        prepared,
        parsed_files,
    }
}

/// The base folder for a tree: `--path`, else its `.gitops/config.yaml`.
fn base_path(cfg: &Config, tree: &Path) -> Result<String, ManifestError> {
    match &cfg.base_path {
        Some(p) => Ok(p.clone()),
        None => RepoConfig::load(tree).map(|c| c.path),
    }
}

/// Load the namespace folder of one tree (a worktree, or the plain
/// folder): the base folder, the desired set, its prepared objects and how
/// many files were parsed.
fn read_tree(
    cfg: &Config,
    cache: &mut ParseCache,
    tree: &Path,
) -> (
    String,
    Result<DesiredSet, LoadError>,
    (Vec<Prepared>, usize),
) {
    let base = match base_path(cfg, tree) {
        Ok(base) => base,
        Err(e) => {
            return (
                cfg.base_path_or_default().to_string(),
                Err(LoadError { errors: vec![e] }),
                (Vec::new(), 0),
            );
        }
    };
    let dir = namespace_dir(tree, &base, &cfg.namespace);
    // A link (even a dangling one) is the loader's to judge, never "absent".
    let absent = dir.symlink_metadata().is_err();
    if absent && tree.is_dir() {
        // Git keeps no empty folders: a namespace folder emptied in Git is
        // gone from the checkout. That is an empty desired set without the
        // `.allow-empty` marker, so the plan's safety rule refuses to prune
        // what the agent owns, and says how to allow it.
        debug!(folder = %dir.display(), "namespace folder absent: no objects");
        return (
            base,
            Ok(DesiredSet {
                namespace: cfg.namespace.clone(),
                manifests: Vec::new(),
                allow_empty: false,
            }),
            (Vec::new(), 0),
        );
    }
    let opts = load_options(cfg);
    let mut reader = cache.reader(&cfg.namespace, &cfg.name, cfg.strict);
    let desired = load_namespace_with(tree, &base, &cfg.policy, &opts, &mut |file, shown| {
        reader.read(file, shown, &opts)
    });
    let parsed = reader.parsed_files;
    let prepared = reader.finish();
    debug!(files = cache.len(), parsed, "revision read");
    (base, desired, (prepared, parsed))
}

/// The limits a revision is read with (`--max-objects`, `--max-bytes`).
pub fn load_options(cfg: &Config) -> LoadOptions {
    LoadOptions {
        max_objects: Some(cfg.max_objects),
        max_total_bytes: Some(cfg.max_bytes),
        ..LoadOptions::default()
    }
}

/// The revision of a plain folder: the HEAD commit of its git work tree
/// (`-dirty` when the namespace folder differs from it), else `sha256:` of
/// the namespace folder's content.
fn plain_revision(cfg: &Config, dir: &Path) -> String {
    let base = base_path(cfg, dir).unwrap_or_else(|_| cfg.base_path_or_default().to_string());
    let ns_dir = namespace_dir(dir, &base, &cfg.namespace);
    if let Some(rev) = git_revision(dir, &ns_dir) {
        return rev;
    }
    namespace_digest(&ns_dir).unwrap_or_else(|_| bytes_hash(&[]))
}

fn git_revision(dir: &Path, ns_dir: &Path) -> Option<String> {
    let repo = git2::Repository::discover(dir).ok()?;
    let workdir = repo.workdir()?.canonicalize().ok()?;
    let head = repo.head().ok()?.peel_to_commit().ok()?.id();
    let ns_real = ns_dir
        .canonicalize()
        .unwrap_or_else(|_| ns_dir.to_path_buf());
    let dirty = match ns_real.strip_prefix(&workdir) {
        Ok(rel) => {
            let mut opts = git2::StatusOptions::new();
            opts.include_untracked(true)
                .recurse_untracked_dirs(true)
                .include_ignored(false)
                .pathspec(rel);
            match repo.statuses(Some(&mut opts)) {
                Ok(statuses) => statuses.iter().any(|e| e.status() != git2::Status::CURRENT),
                Err(_) => true,
            }
        }
        Err(_) => false,
    };
    Some(if dirty {
        format!("{head}-dirty")
    } else {
        head.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Args;
    use clap::Parser;
    use std::fs;

    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: NAME\nspec:\n  hosts: [NAME]\n  http:\n  - route:\n    - destination:\n        host: NAME\n";

    fn vs(name: &str) -> String {
        VS.replace("NAME", name)
    }

    /// A git-sync-like volume: `root/.worktrees/<rev>/namespaces/team-a/*`
    /// and `root/repo -> .worktrees/<rev>`.
    struct Volume {
        root: tempfile::TempDir,
    }

    impl Volume {
        fn new() -> Self {
            Self {
                root: tempfile::tempdir().unwrap(),
            }
        }

        fn worktree(&self, rev: &str, files: &[(&str, String)]) -> PathBuf {
            let tree = self.root.path().join(".worktrees").join(rev);
            for (name, content) in files {
                let p = tree.join("namespaces/team-a").join(name);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(p, content).unwrap();
            }
            tree
        }

        /// Publish `rev` the way git-sync does: a relative `tmp-link` renamed over the link.
        fn publish(&self, rev: &str) {
            let tmp = self.root.path().join("tmp-link");
            let _ = fs::remove_file(&tmp);
            std::os::unix::fs::symlink(format!(".worktrees/{rev}"), &tmp).unwrap();
            fs::rename(&tmp, self.root.path().join("repo")).unwrap();
        }

        fn config(&self) -> Config {
            let args = Args::try_parse_from([
                "sync-agent",
                "-n",
                "team-a",
                "--repo",
                self.root.path().to_str().unwrap(),
                "--link",
                "repo",
            ])
            .unwrap();
            Config::from_args(args, None).unwrap()
        }
    }

    fn names(loaded: &Loaded) -> Vec<String> {
        loaded
            .desired
            .as_ref()
            .unwrap()
            .manifests
            .iter()
            .map(|m| m.name.clone())
            .collect()
    }

    #[test]
    fn reads_the_revision_the_link_points_at() {
        let v = Volume::new();
        v.worktree("aaa", &[("a.yaml", vs("a")), ("b.yaml", vs("b"))]);
        assert!(matches!(load(&v.config()), Err(LoadFailure::NoLink { .. })));
        v.publish("aaa");
        let loaded = load(&v.config()).unwrap();
        assert_eq!(loaded.revision, "aaa");
        assert_eq!(loaded.base_path, "namespaces");
        assert_eq!(names(&loaded), ["a", "b"]);
        assert_eq!(
            loaded.desired.unwrap().manifests[0].source.file,
            PathBuf::from("namespaces/team-a/a.yaml"),
            "files are named relative to the worktree"
        );
    }

    /// git-sync publishes the next revision and deletes the old worktree
    /// while the agent is reading it: the partial read is discarded and the
    /// new revision is read whole.
    #[test]
    fn old_worktree_deleted_mid_read_gives_no_partial_revision() {
        let v = Volume::new();
        let files: Vec<(String, String)> = (0..10)
            .map(|i| (format!("vs-{i}.yaml"), vs(&format!("vs-{i}"))))
            .collect();
        let files: Vec<(&str, String)> =
            files.iter().map(|(n, c)| (n.as_str(), c.clone())).collect();
        let old = v.worktree("old", &files);
        v.worktree("new", &files);
        v.publish("old");
        let mut swapped = false;
        let loaded = load_with_hook(
            &v.config(),
            &mut ParseCache::default(),
            &mut |stage, tree| {
                if stage == Stage::Resolved && tree == old && !swapped {
                    swapped = true;
                    v.publish("new");
                    // git-sync's cleanup, cut short: half the files are gone
                    for i in 0..5 {
                        fs::remove_file(old.join(format!("namespaces/team-a/vs-{i}.yaml")))
                            .unwrap();
                    }
                }
            },
        )
        .unwrap();
        assert!(swapped);
        assert_eq!(loaded.revision, "new");
        assert_eq!(names(&loaded).len(), 10, "never the 5 left in the old tree");
    }

    /// The same race with the deletion complete before the walk starts: the
    /// read fails with vanished files, the link has moved, and the retry reads
    /// the new revision (nothing is reported as a broken revision).
    #[test]
    fn a_vanished_worktree_is_retried_not_reported() {
        let v = Volume::new();
        let old = v.worktree("old", &[("a.yaml", vs("a"))]);
        v.worktree("new", &[("a.yaml", vs("a")), ("b.yaml", vs("b"))]);
        v.publish("old");
        let mut first = true;
        let loaded = load_with_hook(&v.config(), &mut ParseCache::default(), &mut |stage, _| {
            if stage == Stage::Resolved && std::mem::take(&mut first) {
                v.publish("new");
                fs::remove_dir_all(&old).unwrap();
            }
        })
        .unwrap();
        assert_eq!(loaded.revision, "new");
        assert_eq!(names(&loaded), ["a", "b"]);
    }

    /// The link moves after the files were read (they were all read from the
    /// old tree): still discarded, the newest revision wins.
    #[test]
    fn a_link_moved_after_the_read_is_read_again() {
        let v = Volume::new();
        v.worktree("r1", &[("a.yaml", vs("a"))]);
        v.worktree("r2", &[("a.yaml", vs("a")), ("b.yaml", vs("b"))]);
        v.publish("r1");
        let mut first = true;
        let loaded = load_with_hook(&v.config(), &mut ParseCache::default(), &mut |stage, _| {
            if stage == Stage::Read && std::mem::take(&mut first) {
                v.publish("r2");
            }
        })
        .unwrap();
        assert_eq!(loaded.revision, "r2");
        assert_eq!(names(&loaded), ["a", "b"]);
    }

    #[test]
    fn a_link_that_never_settles_is_reported_as_unstable() {
        let v = Volume::new();
        v.worktree("r1", &[("a.yaml", vs("a"))]);
        v.worktree("r2", &[("a.yaml", vs("a"))]);
        v.publish("r1");
        let mut flip = false;
        let err = load_with_hook(&v.config(), &mut ParseCache::default(), &mut |stage, _| {
            if stage == Stage::Read {
                flip = !flip;
                v.publish(if flip { "r2" } else { "r1" });
            }
        })
        .unwrap_err();
        assert!(matches!(err, LoadFailure::Unstable { .. }), "{err}");
    }

    #[test]
    fn a_broken_document_rejects_the_whole_revision_with_file_and_line() {
        let v = Volume::new();
        v.worktree(
            "bad",
            &[
                ("a.yaml", vs("a")),
                ("b.yaml", format!("{}---\nkind: [oops\n", vs("b"))),
            ],
        );
        v.publish("bad");
        let loaded = load(&v.config()).unwrap();
        assert_eq!(loaded.revision, "bad");
        let refusal = loaded.refusal().unwrap();
        assert!(
            refusal.starts_with("namespaces/team-a/b.yaml: document 2, line 1"),
            "{refusal}"
        );
    }

    #[test]
    fn a_namespace_folder_absent_from_git_is_empty_without_allow_empty() {
        let v = Volume::new();
        let tree = v.root.path().join(".worktrees/empty");
        fs::create_dir_all(tree.join("namespaces/team-b")).unwrap();
        v.publish("empty");
        let loaded = load(&v.config()).unwrap();
        assert!(loaded.refusal().is_none());
        let set = loaded.desired.unwrap();
        assert!(set.manifests.is_empty());
        assert!(!set.allow_empty, "so the plan refuses to prune everything");
    }

    #[test]
    fn the_repo_config_names_the_base_folder() {
        let v = Volume::new();
        let tree = v.root.path().join(".worktrees/cfg");
        fs::create_dir_all(tree.join(".gitops")).unwrap();
        fs::write(tree.join(".gitops/config.yaml"), "path: envs/prod\n").unwrap();
        fs::create_dir_all(tree.join("envs/prod/team-a")).unwrap();
        fs::write(tree.join("envs/prod/team-a/a.yaml"), vs("a")).unwrap();
        v.publish("cfg");
        let loaded = load(&v.config()).unwrap();
        assert_eq!(loaded.base_path, "envs/prod");
        assert_eq!(names(&loaded), ["a"]);
    }

    fn plain_config(dir: &Path, strict: bool) -> Config {
        let mut argv = vec![
            "sync-agent",
            "-n",
            "team-a",
            "--repo",
            dir.to_str().unwrap(),
        ];
        if strict {
            argv.push("--strict");
        }
        Config::from_args(Args::try_parse_from(argv).unwrap(), None).unwrap()
    }

    fn git(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }

    #[test]
    fn plain_folder_revision_is_head_then_dirty_then_digest() {
        let dir = tempfile::tempdir().unwrap();
        let ns = dir.path().join("namespaces/team-a");
        fs::create_dir_all(&ns).unwrap();
        fs::write(ns.join("a.yaml"), vs("a")).unwrap();
        // not a git work tree: the content digest
        let digest = load(&plain_config(dir.path(), false)).unwrap().revision;
        assert!(digest.starts_with("sha256:"), "{digest}");

        git(dir.path(), &["init", "-q"]);
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "one"]);
        let head = git2::Repository::open(dir.path())
            .unwrap()
            .head()
            .unwrap()
            .peel_to_commit()
            .unwrap()
            .id()
            .to_string();
        let loaded = load(&plain_config(dir.path(), false)).unwrap();
        assert_eq!(loaded.revision, head);

        // a change elsewhere in the repo does not make the namespace dirty
        fs::write(dir.path().join("README.md"), "x").unwrap();
        assert_eq!(
            load(&plain_config(dir.path(), false)).unwrap().revision,
            head
        );
        fs::write(ns.join("b.yaml"), vs("b")).unwrap();
        let loaded = load(&plain_config(dir.path(), false)).unwrap();
        assert_eq!(loaded.revision, format!("{head}-dirty"));
        assert_eq!(names(&loaded), ["a", "b"]);
    }

    #[test]
    fn strict_refuses_error_findings() {
        let dir = tempfile::tempdir().unwrap();
        let ns = dir.path().join("namespaces/team-a");
        fs::create_dir_all(&ns).unwrap();
        // a route to a subset no DestinationRule defines
        fs::write(
            ns.join("vs.yaml"),
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v9\n",
        )
        .unwrap();
        fs::write(
            ns.join("dr.yaml"),
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\nspec:\n  host: reviews\n  subsets:\n  - name: v1\n    labels: {version: v1}\n",
        )
        .unwrap();
        let lax = load(&plain_config(dir.path(), false)).unwrap();
        assert!(lax.refusal().is_none());
        // The analysis reads the documents: cached, they are kept.
        let mut cache = ParseCache::default();
        for parsed in [2, 0] {
            let strict = load_cached(&plain_config(dir.path(), true), &mut cache).unwrap();
            assert_eq!(strict.parsed_files, parsed);
            let refusal = strict
                .refusal()
                .expect("an Error finding refuses the revision");
            assert!(refusal.contains("--strict: Error [IST0101]"), "{refusal}");
            assert!(refusal.contains("namespaces/team-a/vs.yaml:"), "{refusal}");
        }
    }

    /// The desired set and the hashes of its prepared objects, comparable.
    fn prepared(loaded: &Loaded) -> Vec<(String, PathBuf, String)> {
        let set = loaded.desired.as_ref().unwrap();
        assert_eq!(set.manifests.len(), loaded.prepared.len());
        set.manifests
            .iter()
            .zip(&loaded.prepared)
            .map(|(m, p)| (m.name.clone(), m.source.file.clone(), p.hash.clone()))
            .collect()
    }

    /// The prepared objects of `loaded`, whole: those given as a hash read
    /// again through `cache`.
    fn whole(loaded: &Loaded, cache: &ParseCache, cfg: &Config) -> Vec<Prepared> {
        let set = loaded.desired.as_ref().unwrap();
        set.manifests
            .iter()
            .zip(&loaded.prepared)
            .map(|(m, p)| match p.json {
                Some(_) => p.clone(),
                None => cache
                    .reread(
                        &loaded.tree,
                        m,
                        &cfg.namespace,
                        &cfg.name,
                        &load_options(cfg),
                    )
                    .unwrap(),
            })
            .collect()
    }

    #[test]
    fn a_revision_parses_only_the_files_whose_content_is_new() {
        let v = Volume::new();
        let cfg = v.config();
        let mut cache = ParseCache::default();
        v.worktree("r1", &[("a.yaml", vs("a")), ("b.yaml", vs("b"))]);
        v.publish("r1");
        let first = load_cached(&cfg, &mut cache).unwrap();
        assert_eq!((first.parsed_files, cache.len()), (2, 2));
        assert!(
            first.desired.as_ref().unwrap().manifests[0]
                .object
                .is_null(),
            "the cache keeps no parsed documents"
        );
        assert_eq!(prepared(&first), prepared(&load(&cfg).unwrap()));
        assert!(first.prepared.iter().all(|p| p.json.is_some()));
        // The same content again (a resync): nothing parsed, the objects
        // are hashes, and reading one again gives what the first read did.
        let again = load_cached(&cfg, &mut cache).unwrap();
        assert_eq!(again.parsed_files, 0);
        assert_eq!(prepared(&again), prepared(&first));
        assert!(again.prepared.iter().all(|p| p.json.is_none()));
        assert_eq!(whole(&again, &cache, &cfg), first.prepared);
        // b edited, a moved, c added: those are parsed, and the plan's
        // input is what a fresh read gives.
        v.worktree(
            "r2",
            &[
                ("moved/a.yaml", vs("a")),
                ("b.yaml", vs("b").replace("host: b", "host: b2")),
                ("c.yaml", vs("c")),
            ],
        );
        v.publish("r2");
        let second = load_cached(&cfg, &mut cache).unwrap();
        assert_eq!(second.revision, "r2");
        assert_eq!(second.parsed_files, 3);
        assert_eq!(prepared(&second), prepared(&load(&cfg).unwrap()));
        let a = names(&second).iter().position(|n| n == "a").unwrap();
        assert!(
            second.prepared[a]
                .json
                .as_deref()
                .unwrap()
                .contains("namespaces/team-a/moved/a.yaml")
        );
        // Only this revision's files are held.
        assert_eq!(cache.len(), 3);
        v.worktree("r3", &[("c.yaml", vs("c"))]);
        v.publish("r3");
        let third = load_cached(&cfg, &mut cache).unwrap();
        assert_eq!((third.parsed_files, cache.len()), (0, 1));
        assert_eq!(names(&third), ["c"]);
    }

    #[test]
    fn an_object_is_never_read_again_from_other_bytes_than_were_read() {
        let v = Volume::new();
        let cfg = v.config();
        let mut cache = ParseCache::default();
        let tree = v.worktree("r1", &[("a.yaml", vs("a")), ("b.yaml", vs("b"))]);
        v.publish("r1");
        load_cached(&cfg, &mut cache).unwrap();
        let loaded = load_cached(&cfg, &mut cache).unwrap();
        let set = loaded.desired.as_ref().unwrap();
        let reread = |i: usize| {
            cache.reread(
                &loaded.tree,
                &set.manifests[i],
                "team-a",
                "sync-agent",
                &load_options(&cfg),
            )
        };
        let file = |name: &str| tree.join("namespaces/team-a").join(name);
        let at = |name: &str| names(&loaded).iter().position(|n| n == name).unwrap();
        let (a, b) = (at("a"), at("b"));
        // edited in place after it was read (git-sync never does; a hand
        // does): the revision is read again, not the new bytes applied
        fs::write(file("a.yaml"), vs("a").replace("host: a", "host: evil")).unwrap();
        assert_eq!(reread(a), Err(file("a.yaml")));
        // gone (git-sync removed the old worktree)
        fs::remove_file(file("b.yaml")).unwrap();
        assert_eq!(reread(b), Err(file("b.yaml")));
    }

    #[test]
    fn a_broken_file_is_refused_from_the_cache_too() {
        let v = Volume::new();
        let cfg = v.config();
        let mut cache = ParseCache::default();
        v.worktree("r1", &[("a.yaml", vs("a"))]);
        v.publish("r1");
        load_cached(&cfg, &mut cache).unwrap();
        v.worktree("r2", &[("a.yaml", vs("a")), ("b.yaml", "kind: [".into())]);
        v.publish("r2");
        for _ in 0..2 {
            let loaded = load_cached(&cfg, &mut cache).unwrap();
            let refusal = loaded.refusal().expect("refused");
            assert!(refusal.contains("namespaces/team-a/b.yaml"), "{refusal}");
        }
    }
}

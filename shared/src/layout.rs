//! The config repo's layout (DESIGN.md, "The config repo"): the optional
//! `.gitops/config.yaml`, the base folder, one folder per namespace, the file
//! names the plugin writes, and a safe walk of one namespace folder.
//!
//! [`load_namespace`] gives the whole desired set of a namespace or every
//! error found, never a partial set: that is what makes a revision atomic.

use std::{
    collections::BTreeSet,
    fmt,
    path::{Component, Path, PathBuf},
};

use serde::Deserialize;

use crate::{
    ALLOW_EMPTY_FILE, DEFAULT_BASE_PATH,
    hash::bytes_hash,
    manifest::{LoadOptions, Manifest, ManifestError, Problem, load_file},
    policy::Policy,
};

/// Where the repo's own settings live.
pub const CONFIG_FILE: &str = ".gitops/config.yaml";

/// `.gitops/config.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// The base folder holding one folder per namespace.
    #[serde(default = "default_path")]
    pub path: String,
    /// Kinds that can destabilize the whole mesh (EnvoyFilter, ...) that the
    /// plugin allows in this repo for everyone, as `--allow-kind` does for
    /// one command. The agents keep their own `--allow-kind`.
    #[serde(default, rename = "allowKinds")]
    pub allow_kinds: Vec<String>,
}

fn default_path() -> String {
    DEFAULT_BASE_PATH.to_string()
}

impl Default for RepoConfig {
    fn default() -> Self {
        Self {
            path: default_path(),
            allow_kinds: Vec::new(),
        }
    }
}

impl RepoConfig {
    /// Read `<repo>/.gitops/config.yaml`; the defaults when it does not exist.
    pub fn load(repo: &Path) -> Result<Self, ManifestError> {
        let file = repo.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(ManifestError::in_file(&file, Problem::Io(e))),
        };
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let config: Self = serde_saphyr::from_str(&text).map_err(|e| ManifestError {
            file: PathBuf::from(CONFIG_FILE),
            document: Some(1),
            line: e.location().map(|l| l.line() as usize),
            problem: Problem::Yaml(e.to_string().lines().next().unwrap_or("").to_string()),
        })?;
        check_relative(&config.path).map_err(|msg| ManifestError {
            file: PathBuf::from(CONFIG_FILE),
            document: Some(1),
            line: None,
            problem: Problem::Policy(format!("path: {msg}")),
        })?;
        if let Some(unknown) = config
            .allow_kinds
            .iter()
            .find(|k| crate::kinds::resolve(k).is_none())
        {
            return Err(ManifestError {
                file: PathBuf::from(CONFIG_FILE),
                document: Some(1),
                line: text
                    .lines()
                    .position(|l| l.contains(unknown.as_str()))
                    .map(|i| i + 1),
                problem: Problem::Policy(format!(
                    "allowKinds: {unknown} is not an Istio config kind"
                )),
            });
        }
        Ok(config)
    }

    /// The YAML the plugin writes for this config.
    pub fn to_yaml(&self) -> String {
        format!("path: {}\n", self.path)
    }
}

/// A base path must stay inside the repo: relative, no `..`.
pub fn check_relative(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "{path:?} must be a relative path inside the repo, without '..'"
        ));
    }
    Ok(())
}

/// The file the plugin writes for an object: `<kind lowercase>-<name>.yaml`.
pub fn object_file_name(kind: &str, name: &str) -> String {
    format!("{}-{name}.yaml", kind.to_ascii_lowercase())
}

/// `<repo>/<base>/<namespace>`.
pub fn namespace_dir(repo: &Path, base: &str, namespace: &str) -> PathBuf {
    repo.join(base).join(namespace)
}

/// Refuse a base folder or namespace folder that is (or passes through) a
/// symlink leading out of the repository, or to nothing: `namespaces/team-a
/// -> ../../elsewhere` must never load, or be written to. A folder that does
/// not exist at all is fine (it has no objects).
pub fn check_folders(repo: &Path, base: &str, namespace: &str) -> Result<(), ManifestError> {
    let root =
        std::fs::canonicalize(repo).map_err(|e| ManifestError::in_file(repo, Problem::Io(e)))?;
    for dir in [repo.join(base), namespace_dir(repo, base, namespace)] {
        match std::fs::canonicalize(&dir) {
            Ok(real) if !real.starts_with(&root) => {
                return Err(ManifestError::in_file(&dir, Problem::FolderEscape(real)));
            }
            Ok(_) => {}
            // A dangling link: where it would lead.
            Err(_)
                if dir
                    .symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink()) =>
            {
                let target = std::fs::read_link(&dir).unwrap_or_default();
                return Err(ManifestError::in_file(&dir, Problem::FolderEscape(target)));
            }
            Err(_) => return Ok(()), // absent: nothing below can escape either
        }
    }
    Ok(())
}

/// The namespace folders under `<repo>/<base>`, sorted (dot-folders skipped).
/// A missing base folder has none.
pub fn list_namespaces(repo: &Path, base: &str) -> std::io::Result<Vec<String>> {
    let dir = repo.join(base);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml") | Some("yml")
    )
}

/// The YAML files of a namespace folder, sorted, walked safely: entries whose
/// name starts with `.` are skipped, only `.yaml`/`.yml` files are returned,
/// and a symlink that resolves outside the folder is an error, never followed.
/// Symlinks inside the folder are followed once (no loops).
pub fn walk_namespace(dir: &Path) -> Result<Vec<PathBuf>, Vec<ManifestError>> {
    let root = std::fs::canonicalize(dir)
        .map_err(|e| vec![ManifestError::in_file(dir, Problem::Io(e))])?;
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut visited = BTreeSet::new();
    walk(dir, &root, &mut visited, &mut files, &mut errors);
    files.sort();
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

fn walk(
    dir: &Path,
    root: &Path,
    visited: &mut BTreeSet<PathBuf>,
    files: &mut Vec<PathBuf>,
    errors: &mut Vec<ManifestError>,
) {
    let real = match std::fs::canonicalize(dir) {
        Ok(real) => real,
        Err(e) => return errors.push(ManifestError::in_file(dir, Problem::Io(e))),
    };
    if !visited.insert(real) {
        return; // a symlink loop inside the folder
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return errors.push(ManifestError::in_file(dir, Problem::Io(e))),
    };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let (is_dir, is_file) = if file_type.is_symlink() {
            match std::fs::canonicalize(&path) {
                Ok(target) if !target.starts_with(root) => {
                    errors.push(ManifestError::in_file(
                        &path,
                        Problem::SymlinkEscape(target),
                    ));
                    continue;
                }
                Ok(target) => (target.is_dir(), target.is_file()),
                Err(e) => {
                    errors.push(ManifestError::in_file(&path, Problem::Io(e)));
                    continue;
                }
            }
        } else {
            (file_type.is_dir(), file_type.is_file())
        };
        if is_dir {
            walk(&path, root, visited, files, errors);
        } else if is_file && is_yaml(&path) {
            files.push(path);
        }
    }
}

/// Every object of one namespace, checked against its policy.
#[derive(Debug, Clone)]
pub struct DesiredSet {
    pub namespace: String,
    pub manifests: Vec<Manifest>,
    /// The folder holds `.allow-empty`: an empty set may prune everything.
    pub allow_empty: bool,
}

/// Every error found while loading one namespace.
#[derive(Debug)]
pub struct LoadError {
    pub errors: Vec<ManifestError>,
}

impl LoadError {
    /// Whether a file disappeared while it was read (git-sync removed the old
    /// worktree): the read is to be retried, not reported.
    pub fn is_vanished(&self) -> bool {
        self.errors.iter().any(
            |e| matches!(&e.problem, Problem::Io(io) if io.kind() == std::io::ErrorKind::NotFound),
        )
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// Load `<repo>/<base>/<namespace>/`: walk it, parse every file, check the
/// policy. File names in objects and errors are relative to `repo`.
pub fn load_namespace(
    repo: &Path,
    base: &str,
    policy: &Policy,
    opts: &LoadOptions,
) -> Result<DesiredSet, LoadError> {
    load_namespace_with(repo, base, policy, opts, &mut |file, _| {
        load_file(file, opts)
    })
}

/// How [`load_namespace_with`] reads one file: `read(path, shown)`.
pub type ReadFile<'a> = dyn FnMut(&Path, &Path) -> Result<Vec<Manifest>, Vec<ManifestError>> + 'a;

/// [`load_namespace`], reading each file with `read(path, shown)`, where
/// `shown` is the path relative to `repo` that objects and errors carry
/// (the agent reads through its cache of parsed files). The objects are
/// in the order `read` returned them, file after file.
pub fn load_namespace_with(
    repo: &Path,
    base: &str,
    policy: &Policy,
    opts: &LoadOptions,
    read: &mut ReadFile<'_>,
) -> Result<DesiredSet, LoadError> {
    check_folders(repo, base, &policy.namespace).map_err(|e| LoadError {
        errors: relative(vec![e], repo),
    })?;
    let dir = namespace_dir(repo, base, &policy.namespace);
    let files = walk_namespace(&dir).map_err(|errors| LoadError {
        errors: relative(errors, repo),
    })?;
    let too_large = |what, found: u64, limit| LoadError {
        errors: vec![ManifestError::in_file(
            dir.strip_prefix(repo).unwrap_or(&dir),
            Problem::RevisionTooLarge { what, found, limit },
        )],
    };
    if let Some(limit) = opts.max_total_bytes {
        // Sizes first: nothing is read when the whole is too large.
        let total: u64 = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        if total > limit {
            return Err(too_large("bytes", total, limit));
        }
    }
    let mut manifests = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        let shown = file.strip_prefix(repo).unwrap_or(file);
        match read(file, shown) {
            Ok(ms) => manifests.extend(ms.into_iter().map(|mut m| {
                m.source.file = shown.to_path_buf();
                m
            })),
            Err(es) => errors.extend(es.into_iter().map(|mut e| {
                e.file = shown.to_path_buf();
                e
            })),
        }
        if let Some(limit) = opts.max_objects
            && manifests.len() as u64 > limit
        {
            return Err(too_large("objects", manifests.len() as u64, limit));
        }
    }
    if let Err(es) = policy.check(&manifests) {
        errors.extend(es);
    }
    if !errors.is_empty() {
        return Err(LoadError { errors });
    }
    Ok(DesiredSet {
        namespace: policy.namespace.clone(),
        manifests,
        allow_empty: dir.join(ALLOW_EMPTY_FILE).exists(),
    })
}

fn relative(errors: Vec<ManifestError>, repo: &Path) -> Vec<ManifestError> {
    errors
        .into_iter()
        .map(|mut e| {
            if let Ok(p) = e.file.strip_prefix(repo) {
                e.file = p.to_path_buf();
            }
            e
        })
        .collect()
}

/// `sha256:` over the names and contents of the files a load reads (and the
/// `.allow-empty` marker): the revision of a namespace folder outside git.
pub fn namespace_digest(dir: &Path) -> Result<String, LoadError> {
    let files = walk_namespace(dir).map_err(|errors| LoadError { errors })?;
    let mut buf = Vec::new();
    for file in files.iter().map(PathBuf::as_path).chain(
        Some(dir.join(ALLOW_EMPTY_FILE))
            .filter(|p| p.exists())
            .as_deref(),
    ) {
        let rel = file.strip_prefix(dir).unwrap_or(file);
        buf.extend_from_slice(rel.to_string_lossy().as_bytes());
        buf.push(0);
        let content = std::fs::read(file).map_err(|e| LoadError {
            errors: vec![ManifestError::in_file(file, Problem::Io(e))],
        })?;
        buf.extend_from_slice(&(content.len() as u64).to_le_bytes());
        buf.extend_from_slice(&content);
    }
    Ok(bytes_hash(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn samples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/istio-samples")
    }

    fn repo_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        dir
    }

    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews\n";

    fn load(repo: &Path, ns: &str) -> Result<DesiredSet, LoadError> {
        load_namespace(
            repo,
            "namespaces",
            &Policy::new(ns),
            &LoadOptions::default(),
        )
    }

    #[test]
    fn every_istio_sample_loads_and_passes_policy() {
        let mut count = 0;
        for entry in fs::read_dir(samples()).unwrap() {
            let path = entry.unwrap().path();
            if !is_yaml(&path) {
                continue;
            }
            // Each sample alone: several define the same VirtualService.
            // A sample that names its namespace goes in that folder; the one
            // for istio-system passes only where the mesh root is elsewhere.
            let text = fs::read_to_string(&path).unwrap();
            let ns = if text.contains("namespace: istio-system") {
                "istio-system"
            } else {
                "team-a"
            };
            let repo = tempfile::tempdir().unwrap();
            let dir = repo.path().join("namespaces").join(ns);
            fs::create_dir_all(&dir).unwrap();
            fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
            let policy = Policy::new(ns).with_root_namespace("mesh-root");
            let set = load_namespace(repo.path(), "namespaces", &policy, &LoadOptions::default())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!set.manifests.is_empty(), "{}", path.display());
            if ns == "istio-system" {
                let err = load(repo.path(), ns).unwrap_err().to_string();
                assert!(err.contains("mesh root namespace"), "{err}");
            }
            count += 1;
        }
        assert!(count >= 20, "only {count} samples found");
    }

    #[test]
    fn loads_nested_files_skipping_dotfiles_and_other_extensions() {
        let repo = repo_with(&[
            ("namespaces/team-a/virtualservice-reviews.yaml", VS),
            (
                "namespaces/team-a/more/dr.yml",
                "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\nspec:\n  host: reviews\n",
            ),
            ("namespaces/team-a/.hidden.yaml", "not: [valid"),
            ("namespaces/team-a/.git/x.yaml", "not: [valid"),
            ("namespaces/team-a/README.md", "# notes"),
            ("namespaces/team-b/virtualservice-reviews.yaml", VS),
        ]);
        let set = load(repo.path(), "team-a").unwrap();
        let files: Vec<_> = set
            .manifests
            .iter()
            .map(|m| m.source.file.clone())
            .collect();
        assert_eq!(
            files,
            [
                PathBuf::from("namespaces/team-a/more/dr.yml"),
                PathBuf::from("namespaces/team-a/virtualservice-reviews.yaml")
            ]
        );
        assert!(!set.allow_empty);
        assert_eq!(
            list_namespaces(repo.path(), "namespaces").unwrap(),
            ["team-a", "team-b"]
        );
    }

    #[test]
    fn a_load_is_all_or_nothing_with_every_error() {
        let repo = repo_with(&[
            ("namespaces/team-a/a.yaml", VS),
            (
                "namespaces/team-a/b.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n",
            ),
            (
                "namespaces/team-a/c.yaml",
                &VS.replace("name: reviews", "name: reviews\n  namespace: team-b"),
            ),
            ("namespaces/team-a/d.yaml", VS),
        ]);
        let err = load(repo.path(), "team-a").unwrap_err();
        let text = err.to_string();
        assert_eq!(err.errors.len(), 4, "{text}");
        assert!(
            text.contains("namespaces/team-a/b.yaml: document 1, line 2: Deployment"),
            "{text}"
        );
        assert!(
            text.contains("namespaces/team-a/c.yaml: document 1, line 5: namespace \"team-b\""),
            "{text}"
        );
        assert!(
            text.contains(
                "namespaces/team-a/c.yaml: document 1, line 4: duplicate VirtualService/reviews"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "namespaces/team-a/d.yaml: document 1, line 4: duplicate VirtualService/reviews"
            ),
            "{text}"
        );
        assert!(!err.is_vanished());
    }

    #[cfg(unix)]
    #[test]
    fn symlink_escaping_the_folder_is_an_error() {
        let repo = repo_with(&[
            ("namespaces/team-a/a.yaml", VS),
            ("namespaces/team-b/secret.yaml", VS),
        ]);
        let ns = repo.path().join("namespaces/team-a");
        std::os::unix::fs::symlink("../team-b/secret.yaml", ns.join("link.yaml")).unwrap();
        let err = load(repo.path(), "team-a").unwrap_err();
        assert_eq!(err.errors.len(), 1);
        let text = err.to_string();
        assert!(
            text.starts_with(
                "namespaces/team-a/link.yaml: symlink points outside the namespace folder"
            ),
            "{text}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_inside_the_folder_are_followed_once() {
        let repo = repo_with(&[("namespaces/team-a/sub/a.yaml", VS)]);
        let ns = repo.path().join("namespaces/team-a");
        std::os::unix::fs::symlink(".", ns.join("sub/loop")).unwrap();
        let set = load(repo.path(), "team-a").unwrap();
        assert_eq!(set.manifests.len(), 1);
    }

    #[test]
    fn empty_folder_and_allow_empty_marker() {
        let repo = repo_with(&[("namespaces/team-a/.allow-empty", "")]);
        let set = load(repo.path(), "team-a").unwrap();
        assert!(set.manifests.is_empty());
        assert!(set.allow_empty);
    }

    #[test]
    fn missing_namespace_folder_is_an_error() {
        let repo = repo_with(&[]);
        assert!(load(repo.path(), "team-a").unwrap_err().is_vanished());
    }

    #[test]
    fn a_5mib_file_is_refused() {
        let big = format!("{VS}# {}\n", "x".repeat(5 * 1024 * 1024));
        let repo = repo_with(&[("namespaces/team-a/big.yaml", &big)]);
        let text = load(repo.path(), "team-a").unwrap_err().to_string();
        assert!(text.contains("big.yaml: file is 5243"), "{text}");
        assert!(
            text.contains("more than the limit of 1048576 bytes"),
            "{text}"
        );
    }

    #[test]
    fn repo_config_defaults_and_overrides() {
        let repo = repo_with(&[]);
        assert_eq!(RepoConfig::load(repo.path()).unwrap().path, "namespaces");
        let repo = repo_with(&[(CONFIG_FILE, "path: envs/prod/namespaces\n")]);
        assert_eq!(
            RepoConfig::load(repo.path()).unwrap().path,
            "envs/prod/namespaces"
        );
        let repo = repo_with(&[(CONFIG_FILE, "path: ../outside\n")]);
        assert!(
            RepoConfig::load(repo.path())
                .unwrap_err()
                .to_string()
                .contains("without '..'")
        );
        let repo = repo_with(&[(CONFIG_FILE, "paht: typo\n")]);
        assert!(RepoConfig::load(repo.path()).is_err());
        assert_eq!(RepoConfig::default().to_yaml(), "path: namespaces\n");
    }

    #[test]
    fn file_names_and_digests() {
        assert_eq!(
            object_file_name("VirtualService", "reviews"),
            "virtualservice-reviews.yaml"
        );
        let repo = repo_with(&[("namespaces/team-a/a.yaml", VS)]);
        let dir = namespace_dir(repo.path(), "namespaces", "team-a");
        let d1 = namespace_digest(&dir).unwrap();
        assert!(d1.starts_with("sha256:"));
        fs::write(dir.join(".allow-empty"), "").unwrap();
        let d2 = namespace_digest(&dir).unwrap();
        assert_ne!(d1, d2);
        fs::write(dir.join("a.yaml"), VS.replace("reviews", "ratings")).unwrap();
        assert_ne!(namespace_digest(&dir).unwrap(), d2);
    }
}

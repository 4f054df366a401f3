//! `stage FILE...|-`: validate with the shared policy, normalize, write
//! `<path>/<ns>/<kind>-<name>.yaml` and add it to the index.
//!
//! Everything is checked before anything is written: a failing input leaves
//! the working tree and the index as they were. An object that is already
//! defined in the folder is updated where it is (in its hand-written file,
//! if that is where it lives: only its own document is rewritten), and an
//! object identical to its file leaves the file untouched, comments and
//! formatting included.

use std::{
    collections::BTreeMap,
    io::Read as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use gitops_shared::{
    ObjectKey,
    layout::{check_folders, namespace_dir, object_file_name},
    manifest::{LoadOptions, Manifest, load_file, parse_bytes},
};

use crate::{
    Status,
    cli::PolicyArgs,
    context::{Context, policy},
    git::Repo,
    objects::{Folder, clean, replace_document, same, write_atomic},
    output, yaml,
};

/// Stage manifests into the namespace folder (-n, default: the context's namespace).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifest files (several documents each is fine), or - for stdin
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

pub fn run(ctx: &Context, args: Args) -> Result<Status> {
    let repo = ctx.repo()?;
    let base = ctx.base(&repo)?;
    let namespace = ctx.namespace("stage")?;
    let policy = policy(ctx, &namespace, &args.policy)?;
    let opts = LoadOptions::default();
    let mut manifests = Vec::new();
    let mut errors = Vec::new();
    for file in &args.files {
        let loaded = if file.as_os_str() == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading stdin")?;
            parse_bytes(&bytes, Path::new("<stdin>"), &opts)
        } else {
            load_file(file, &opts)
        };
        match loaded {
            Ok(ms) => manifests.extend(ms),
            Err(es) => errors.extend(es),
        }
    }
    if let Err(es) = policy.check(&manifests) {
        errors.extend(es);
    }
    if !errors.is_empty() {
        return Err(super::problems("nothing was staged", &errors));
    }
    if manifests.is_empty() {
        bail!("nothing to stage: the input holds no objects");
    }
    let staged = stage_manifests(&repo, &base, &namespace, &manifests)?;
    output::print(&report(&staged))?;
    Ok(Status::Ok)
}

/// What staging did to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub key: ObjectKey,
    /// Repo-relative file.
    pub file: String,
    pub action: &'static str,
}

pub fn report(staged: &[Staged]) -> String {
    staged
        .iter()
        .map(|s| format!("{} -> {} ({})\n", s.key, s.file, s.action))
        .collect()
}

/// Write already validated `manifests` into the namespace folder and stage
/// them. Checks every target first; writes only when all are fine.
pub fn stage_manifests(
    repo: &Repo,
    base: &str,
    namespace: &str,
    manifests: &[Manifest],
) -> Result<Vec<Staged>> {
    let root = repo.workdir();
    check_folders(root, base, namespace).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = namespace_dir(root, base, namespace);
    let folder = Folder::scan(&dir)?;
    let rel = |path: &Path| -> Result<String> {
        repo.relative(path)
            .with_context(|| format!("{} is outside the repository", path.display()))
    };

    // Plan: the new text of each file to change, and what happens per object.
    let mut edits: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let mut staged = Vec::new();
    let mut problems = Vec::new();
    for m in manifests {
        let key = m.key();
        let object = clean(&m.object, namespace);
        let text = yaml::to_yaml(&object)?;
        match folder.definitions.get(&key).map(Vec::as_slice) {
            Some([def]) => {
                if same(&clean(&def.object, namespace), &object) {
                    staged.push(Staged {
                        key,
                        file: rel(&def.file)?,
                        action: "unchanged",
                    });
                    continue;
                }
                let chunks = edits
                    .entry(def.file.clone())
                    .or_insert_with(|| folder.files[&def.file].chunks.clone());
                chunks[def.chunk] = replace_document(&chunks[def.chunk], &text);
                staged.push(Staged {
                    key,
                    file: rel(&def.file)?,
                    action: "updated",
                });
            }
            Some(defs) if !defs.is_empty() => {
                let places: Vec<String> = defs
                    .iter()
                    .map(|d| rel(&d.file).unwrap_or_default())
                    .collect();
                problems.push(format!(
                    "{key} is defined more than once in {base}/{namespace} ({}); remove the extra definitions first",
                    places.join(", ")
                ));
            }
            _ => {
                let path = dir.join(object_file_name(&key.kind, &key.name));
                if path.exists() {
                    let holds: Vec<String> = folder
                        .files
                        .get(&path)
                        .map(|f| f.keys.iter().flatten().map(ToString::to_string).collect())
                        .unwrap_or_default();
                    problems.push(format!(
                        "{} exists and does not define {key} (it holds: {}); rename or fix it first",
                        rel(&path)?,
                        if holds.is_empty() { "nothing that loads".to_string() } else { holds.join(", ") }
                    ));
                    continue;
                }
                edits.insert(path.clone(), vec![text]);
                staged.push(Staged {
                    key,
                    file: rel(&path)?,
                    action: "created",
                });
            }
        }
    }
    if !problems.is_empty() {
        bail!("nothing was staged:\n  {}", problems.join("\n  "));
    }

    // Write: the files, then the index, all under the index lock.
    let mut lock = repo.lock_index()?;
    for (path, chunks) in &edits {
        write_atomic(path, &chunks.concat())?;
    }
    let mut files: Vec<&str> = staged.iter().map(|s| s.file.as_str()).collect();
    files.sort();
    files.dedup();
    for file in files {
        lock.add(file)?;
    }
    lock.write()?;
    Ok(staged)
}

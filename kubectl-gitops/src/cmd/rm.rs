//! `rm KIND/NAME...`: stage the deletion of objects from the namespace
//! folder. A file that defines only that object is removed; in a
//! hand-written multi-document file, only that object's document is cut out
//! and every other byte of the file stays as it was.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result, bail};
use gitops_shared::{ObjectKey, layout::namespace_dir};

use crate::{
    Status,
    context::Context,
    objects::{Folder, parse_kind_name, write_atomic},
    output,
};

/// Stage the deletion of objects from the namespace folder.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Objects to delete, as KIND/NAME (vs/reviews, destinationrule/reviews)
    #[arg(value_name = "KIND/NAME", required = true)]
    pub objects: Vec<String>,
}

pub fn run(ctx: &Context, args: Args) -> Result<Status> {
    let repo = ctx.repo()?;
    let base = ctx.base(&repo)?;
    let namespace = ctx.namespace("rm")?;
    let dir = namespace_dir(repo.workdir(), &base, &namespace);
    let folder = Folder::scan(&dir)?;

    let mut cut: BTreeMap<std::path::PathBuf, BTreeSet<usize>> = BTreeMap::new();
    let mut missing = Vec::new();
    for arg in &args.objects {
        let (kind, name) = parse_kind_name(arg)?;
        let key = ObjectKey::new(kind.group, kind.kind, name);
        match folder.definitions.get(&key) {
            Some(defs) => {
                for d in defs {
                    cut.entry(d.file.clone()).or_default().insert(d.chunk);
                }
            }
            None => missing.push(key.to_string()),
        }
    }
    if !missing.is_empty() {
        bail!(
            "not defined in {base}/{namespace}: {}; nothing was removed",
            missing.join(", ")
        );
    }

    let mut lines = String::new();
    let mut lock = repo.lock_index()?;
    for (path, chunks_to_cut) in &cut {
        let file = &folder.files[path];
        let rel = repo
            .relative(path)
            .with_context(|| format!("{} is outside the repository", path.display()))?;
        let keep_objects = file
            .keys
            .iter()
            .enumerate()
            .any(|(i, k)| k.is_some() && !chunks_to_cut.contains(&i));
        let removed: Vec<String> = chunks_to_cut
            .iter()
            .filter_map(|i| file.keys[*i].as_ref().map(ToString::to_string))
            .collect();
        if keep_objects {
            let text: String = file
                .chunks
                .iter()
                .enumerate()
                .filter(|(i, _)| !chunks_to_cut.contains(i))
                .map(|(_, c)| c.as_str())
                .collect();
            write_atomic(path, &text)?;
            lock.add(&rel)?;
            lines.push_str(&format!(
                "removed {} from {rel} (the file's other documents stay)\n",
                removed.join(", ")
            ));
        } else {
            std::fs::remove_file(path).with_context(|| format!("removing {rel}"))?;
            if lock.staged_blob(&rel).is_some() {
                lock.remove(&rel)?;
            }
            lines.push_str(&format!("removed {} (deleted {rel})\n", removed.join(", ")));
        }
    }
    lock.write()?;
    output::print(&lines)?;
    Ok(Status::Ok)
}

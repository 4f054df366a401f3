//! The VirtualService of a release as Git holds it: which file and which
//! document of the namespace folder, and one commit per move that changes
//! exactly that document, with the canary trailers of DESIGN.md.

use std::{fs, path::PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use git2::Oid;
use gitops_shared::{ObjectKey, layout::namespace_dir};
use serde_json::Value;

use super::release::{Release, Split, edit_document};
use crate::{
    cmd::commit::with_trailers,
    git::Repo,
    objects::{Folder, split_documents},
};

pub const GROUP: &str = "networking.istio.io";
pub const KIND: &str = "VirtualService";

/// One VirtualService in a namespace folder.
#[derive(Debug)]
pub struct VsFile {
    pub namespace: String,
    pub name: String,
    /// The namespace folder, relative to the repo root.
    pub prefix: String,
    /// The file, relative to the repo root, `/`-separated.
    pub rel: String,
    pub abs: PathBuf,
    /// The file's documents; `chunk` is the VirtualService's.
    pub chunks: Vec<String>,
    pub chunk: usize,
    /// The object as written.
    pub object: Value,
    /// Every object of the folder, as written (for the DestinationRules).
    pub folder: Folder,
}

impl VsFile {
    /// Find VirtualService `name` in `<base>/<namespace>/` of the working tree.
    pub fn find(repo: &Repo, base: &str, namespace: &str, name: &str) -> Result<VsFile> {
        let prefix = format!("{base}/{namespace}");
        let dir = namespace_dir(repo.workdir(), base, namespace);
        let folder = Folder::scan(&dir)?;
        let key = ObjectKey::new(GROUP, KIND, name);
        let definition = match folder.definitions.get(&key).map(Vec::as_slice) {
            Some([one]) => one.clone(),
            Some(many) if many.len() > 1 => bail!(
                "VirtualService {name} is defined {} times in {prefix}/; `kubectl gitops validate -n {namespace}` shows where",
                many.len()
            ),
            _ => bail!(
                "no VirtualService {name:?} in {prefix}/ (stage it first: `kubectl gitops stage -n {namespace} FILE`, or `import virtualservice/{name}`)"
            ),
        };
        let rel = repo
            .relative(&definition.file)
            .ok_or_else(|| anyhow!("{} is outside the repo", definition.file.display()))?;
        let text =
            fs::read_to_string(&definition.file).with_context(|| format!("reading {rel}"))?;
        let chunks = split_documents(&text);
        Ok(VsFile {
            namespace: namespace.to_string(),
            name: name.to_string(),
            prefix,
            rel,
            abs: definition.file,
            chunks,
            chunk: definition.chunk,
            object: definition.object,
            folder,
        })
    }

    /// Refuse to work on a file with uncommitted changes: the commit of a
    /// move must hold the move and nothing else.
    pub fn check_clean(&self, repo: &Repo) -> Result<()> {
        if !repo.dirty_paths(&self.rel)?.is_empty() {
            bail!(
                "{} has uncommitted changes; commit or discard them first (a canary move commits this file alone)",
                self.rel
            );
        }
        Ok(())
    }

    /// The release recorded on the VirtualService.
    pub fn release(&self) -> Result<Option<Release>> {
        Release::of(&self.object)
            .with_context(|| format!("{}: VirtualService {}", self.rel, self.name))
    }

    /// The last commit that changed the file.
    pub fn last_commit(&self, repo: &Repo) -> Result<Option<Oid>> {
        let history = repo.history(&self.rel, None, Some(1))?;
        history
            .first()
            .map(|c| Oid::from_str(&c.commit).context("a commit id"))
            .transpose()
    }
}

/// What a move commits, besides the file.
#[derive(Debug)]
pub struct Move<'a> {
    pub subject: String,
    /// A paragraph between the subject and the trailers.
    pub body: Option<String>,
    pub release: &'a Release,
    pub split: Split,
    /// `Gitops-Canary-Check:` trailer values.
    pub checks: Vec<String>,
}

/// Edit the document, commit the file alone on top of HEAD, and put the
/// working tree and index in step with it. Returns the new commit.
pub fn commit_move(repo: &Repo, vs: &VsFile, index: usize, m: &Move<'_>) -> Result<Oid> {
    let first_line = 1 + vs.chunks[..vs.chunk]
        .iter()
        .map(|c| c.matches('\n').count())
        .sum::<usize>();
    let edited = edit_document(
        &vs.chunks[vs.chunk],
        std::path::Path::new(&vs.rel),
        first_line,
        index,
        m.release,
        m.split,
    )?;
    let mut text = String::new();
    for (i, chunk) in vs.chunks.iter().enumerate() {
        text.push_str(if i == vs.chunk { &edited } else { chunk });
    }

    let mut lock = repo.lock_index()?;
    vs.check_clean(repo)?;
    let head = repo.head_id()?;
    let original = fs::read(&vs.abs).with_context(|| format!("reading {}", vs.rel))?;
    write_atomic(&vs.abs, text.as_bytes()).with_context(|| format!("writing {}", vs.rel))?;
    let committed = (|| -> Result<Oid> {
        lock.add(&vs.rel)?;
        let tree = lock.tree_with(&[vs.rel.as_str()])?;
        let key = ObjectKey::new(GROUP, KIND, &vs.name);
        let head_text = match &m.body {
            Some(body) => format!("{}\n\n{}", m.subject, body.trim_end()),
            None => m.subject.clone(),
        };
        let mut message = with_trailers(&head_text, [&vs.namespace], &[key]);
        message.push_str(&format!("Gitops-Canary: {}\n", vs.name));
        message.push_str(&format!("Gitops-Canary-Step: {}\n", m.release.step_label()));
        message.push_str(&format!("Gitops-Canary-Weight: {}\n", m.release.weight()));
        for check in &m.checks {
            message.push_str(&format!("Gitops-Canary-Check: {check}\n"));
        }
        repo.commit_tree(tree, head, &message)
    })();
    match committed {
        Ok(id) => {
            lock.write()?;
            Ok(id)
        }
        Err(e) => {
            // Nothing committed: the file goes back to what it was.
            let _ = write_atomic(&vs.abs, &original);
            Err(e)
        }
    }
}

/// Write through a temporary file and a rename, so a reader (or a crash)
/// never sees half a file.
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no folder", path.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    let permissions = fs::metadata(path)?.permissions();
    tmp.as_file().set_permissions(permissions)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

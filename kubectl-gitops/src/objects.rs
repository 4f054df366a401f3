//! Objects as the plugin writes and compares them, and where they live in a
//! namespace folder: which file and which document of it. `stage` and `rm`
//! edit one document of a hand-written multi-document file and leave every
//! other byte of it (comments, formatting, other documents) as it was.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};
use gitops_shared::{
    LABEL_AGENT, LABEL_MANAGED_BY, LABEL_OWNER, MANAGED_BY, ObjectKey,
    layout::{LoadError, walk_namespace},
    manifest::{LoadOptions, Manifest, load_file, parse_str},
    normalize::normalize,
    plan::first_difference,
};
use serde_json::Value;

/// An object as the plugin writes it: normalized for `namespace`
/// (`gitops_shared::normalize`), without the agent's ownership labels (the
/// agent adds them when it applies; they are not intent).
pub fn clean(object: &Value, namespace: &str) -> Value {
    let mut out = normalize(object, namespace);
    let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) else {
        return out;
    };
    let mut empty = false;
    if let Some(Value::Object(labels)) = meta.get_mut("labels") {
        if labels.get(LABEL_MANAGED_BY).and_then(Value::as_str) == Some(MANAGED_BY) {
            labels.remove(LABEL_MANAGED_BY);
        }
        if labels.get(LABEL_OWNER).and_then(Value::as_str) == Some(namespace) {
            labels.remove(LABEL_OWNER);
            // The agent's own label: which agent applied it, not intent.
            labels.remove(LABEL_AGENT);
        }
        empty = labels.is_empty();
    }
    if empty {
        meta.remove("labels");
    }
    out
}

/// Whether two cleaned objects mean the same: same `apiVersion`, and no field
/// differs either way by the shared plan's comparison (so `1` and `1.0`, or a
/// `null` and an absent field, are the same).
pub fn same(a: &Value, b: &Value) -> bool {
    a["apiVersion"] == b["apiVersion"]
        && first_difference(a, b, None).is_none()
        && first_difference(b, a, None).is_none()
}

fn is_marker(line: &str, marker: &str) -> bool {
    let line = line.trim_end_matches(['\n', '\r']);
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#') && !is_marker(line, "---") && !is_marker(line, "...")
}

/// Cut a file's text into documents at the YAML document markers, exactly
/// as the shared loader does; the chunks concatenate to the text.
pub fn split_documents(text: &str) -> Vec<String> {
    gitops_shared::manifest::split_documents(text)
        .into_iter()
        .map(|c| c.text.to_string())
        .collect()
}

/// Replace a chunk's document by `yaml`, keeping what precedes its content
/// (the `---` marker, comments) and a closing `...`.
pub fn replace_document(chunk: &str, yaml: &str) -> String {
    let mut head = String::new();
    for line in chunk.split_inclusive('\n') {
        if is_content(line) {
            break;
        }
        if is_marker(line, "...") {
            break;
        }
        head.push_str(line);
    }
    let tail = chunk
        .split_inclusive('\n')
        .next_back()
        .filter(|l| is_marker(l, "..."))
        .unwrap_or("");
    if !head.is_empty() && !head.ends_with('\n') {
        head.push('\n');
    }
    format!("{head}{yaml}{tail}")
}

/// Where one object is defined.
#[derive(Debug, Clone)]
pub struct Definition {
    /// The file, as found under the namespace folder.
    pub file: PathBuf,
    /// Index of its chunk in [`split_documents`] of the file.
    pub chunk: usize,
    /// The object as written.
    pub object: Value,
}

/// A file of a namespace folder, cut into documents.
#[derive(Debug, Clone)]
pub struct FolderFile {
    pub chunks: Vec<String>,
    /// Per chunk: the key of the object it defines, if it parses.
    pub keys: Vec<Option<ObjectKey>>,
}

/// Every file and object definition in a namespace folder (none when the
/// folder does not exist). Documents that do not parse are skipped here:
/// `validate` is the place that reports them.
#[derive(Debug, Default)]
pub struct Folder {
    pub files: BTreeMap<PathBuf, FolderFile>,
    pub definitions: BTreeMap<ObjectKey, Vec<Definition>>,
}

impl Folder {
    pub fn scan(dir: &Path) -> Result<Self> {
        let mut folder = Folder::default();
        if !dir.is_dir() {
            return Ok(folder);
        }
        let files =
            walk_namespace(dir).map_err(|errors| anyhow::anyhow!("{}", LoadError { errors }))?;
        for file in files {
            let Ok(text) = fs::read_to_string(&file) else {
                tracing::warn!(file = %file.display(), "not UTF-8; skipped");
                continue;
            };
            let chunks = split_documents(&text);
            let mut keys = Vec::new();
            for (i, chunk) in chunks.iter().enumerate() {
                let parsed = parse_str(chunk, &file, &LoadOptions::default());
                let key = match parsed.as_deref() {
                    Ok([m]) => {
                        folder
                            .definitions
                            .entry(m.key())
                            .or_default()
                            .push(Definition {
                                file: file.clone(),
                                chunk: i,
                                object: m.object.clone(),
                            });
                        Some(m.key())
                    }
                    _ => None,
                };
                keys.push(key);
            }
            folder.files.insert(file, FolderFile { chunks, keys });
        }
        Ok(folder)
    }
}

/// The cleaned objects of a namespace folder under `root`, by key, read
/// leniently (what does not parse is left out): for telling which objects a
/// change touched.
pub fn folder_objects(dir: &Path, namespace: &str) -> BTreeMap<ObjectKey, Value> {
    let mut out = BTreeMap::new();
    if !dir.is_dir() {
        return out;
    }
    let files = match walk_namespace(dir) {
        Ok(f) => f,
        Err(_) => return out,
    };
    for file in files {
        if let Ok(ms) = load_file(&file, &LoadOptions::default()) {
            for m in ms {
                out.insert(m.key(), clean(&m.object, namespace));
            }
        }
    }
    out
}

/// The keys whose objects differ between two folder states (added, removed
/// or changed), sorted.
pub fn changed_objects(
    before: &BTreeMap<ObjectKey, Value>,
    after: &BTreeMap<ObjectKey, Value>,
) -> Vec<ObjectKey> {
    let mut keys: Vec<&ObjectKey> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| match (before.get(*k), after.get(*k)) {
            (Some(a), Some(b)) => !same(a, b),
            _ => true,
        })
        .cloned()
        .collect()
}

/// Parse `KIND/NAME` as kubectl does (`vs/reviews`,
/// `virtualservices.networking.istio.io/reviews`).
pub fn parse_kind_name(arg: &str) -> Result<(&'static gitops_shared::IstioKind, String)> {
    let Some((kind, name)) = arg.split_once('/') else {
        bail!("{arg:?}: expected KIND/NAME, e.g. virtualservice/reviews");
    };
    let Some(istio) = gitops_shared::kinds::resolve(kind) else {
        if let Some(near) = gitops_shared::kinds::near_miss(kind) {
            bail!("{arg:?}: {kind:?} is not an Istio config kind: did you mean {near}?");
        }
        bail!(
            "{arg:?}: {kind:?} is not an Istio config kind (VirtualService, DestinationRule, ...)"
        );
    };
    if name.is_empty() || name.contains('/') {
        bail!("{arg:?}: expected KIND/NAME, e.g. virtualservice/reviews");
    }
    Ok((istio, name.to_string()))
}

/// A manifest for an object that did not come from a file (a live object):
/// its YAML, parsed as if read from `origin`.
pub fn manifest_of(object: &Value, origin: &str) -> Result<Manifest> {
    let yaml = crate::yaml::to_yaml(object)?;
    match parse_str(&yaml, Path::new(origin), &LoadOptions::default()) {
        Ok(mut ms) if ms.len() == 1 => Ok(ms.remove(0)),
        Ok(_) => bail!("{origin}: not one object"),
        Err(errors) => bail!("{}", LoadError { errors }),
    }
}

/// Write a file atomically: a temporary file beside it, then a rename.
pub fn write_atomic(path: &Path, content: &str) -> Result<()> {
    use anyhow::Context as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_split_and_join_byte_for_byte() {
        let text = "# header\n---\na: 1\n--- # second\nb: 2\n...\nc: 3\n";
        let chunks = split_documents(text);
        assert_eq!(
            chunks,
            [
                "# header\n",
                "---\na: 1\n",
                "--- # second\nb: 2\n...\n",
                "c: 3\n"
            ]
        );
        assert_eq!(chunks.concat(), text);
        assert_eq!(split_documents("a: 1"), ["a: 1"]);
        assert!(split_documents("").is_empty());
    }

    #[test]
    fn replacing_a_document_keeps_its_marker_and_comments() {
        assert_eq!(
            replace_document("--- # keep\n# about b\nb: 2\n...\n", "b: 3\n"),
            "--- # keep\n# about b\nb: 3\n...\n"
        );
        assert_eq!(replace_document("b: 2\n", "b: 3\n"), "b: 3\n");
    }

    #[test]
    fn clean_drops_server_fields_and_our_labels_only() {
        let live = json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "r", "namespace": "team-a", "uid": "u", "resourceVersion": "1",
                "labels": {"app.kubernetes.io/managed-by": "kubectl-gitops", "kubectl-gitops.io/owner": "team-a", "app": "r"},
                "annotations": {"kubectl-gitops.io/hash": "sha256:x", "kubectl-gitops.io/source": "s"}},
            "spec": {"host": "r"}, "status": {}
        });
        assert_eq!(
            clean(&live, "team-a"),
            json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": {"name": "r", "namespace": "team-a", "labels": {"app": "r"}},
                "spec": {"host": "r"}})
        );
    }

    #[test]
    fn sameness_follows_the_plan_comparison() {
        let a = json!({"apiVersion": "v1", "spec": {"w": 1, "n": null}});
        assert!(same(&a, &json!({"apiVersion": "v1", "spec": {"w": 1.0}})));
        assert!(!same(&a, &json!({"apiVersion": "v1", "spec": {"w": 2}})));
        assert!(!same(
            &a,
            &json!({"apiVersion": "v1beta1", "spec": {"w": 1}})
        ));
        assert!(!same(
            &a,
            &json!({"apiVersion": "v1", "spec": {"w": 1, "x": 0}})
        ));
    }

    #[test]
    fn kind_name_parses_like_kubectl() {
        let (k, n) = parse_kind_name("vs/reviews").unwrap();
        assert_eq!((k.kind, n.as_str()), ("VirtualService", "reviews"));
        assert!(parse_kind_name("deployment/x").is_err());
        assert!(parse_kind_name("reviews").is_err());
    }
}

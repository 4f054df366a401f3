//! Loading YAML into objects that remember where they came from.
//!
//! A file may hold several documents (`---`). Each becomes a [`Manifest`] with
//! its identity (group, version, kind, namespace, name), its file, document
//! index and line. Every error names file, document and line and says what is
//! wrong. Input is hostile until proven otherwise: files have a size limit,
//! nesting has a depth limit, and alias expansion is bounded, so a "billion
//! laughs" document is an error and never a hang.
//!
//! Documents are split on the YAML document markers (`---` and `...` at the
//! start of a line), which the YAML spec forbids inside any content, and each
//! is parsed on its own. That gives each document a fresh parse budget and its
//! own line offset, so an error in the third document names its line in the file.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kinds::split_api_version;

/// Default limit on the size of one file.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Default limit on nesting depth within one document.
pub const DEFAULT_MAX_DEPTH: usize = 64;
/// Limit on events replayed through aliases in one document.
const MAX_ALIAS_REPLAY_EVENTS: usize = 100_000;

/// Limits applied while loading.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub max_file_bytes: u64,
    pub max_depth: usize,
    /// Limits on a whole namespace folder (the agent's `--max-objects` and
    /// `--max-bytes`): above them a revision is refused before it is read
    /// in full, never half-applied and never an out-of-memory kill.
    pub max_objects: Option<u64>,
    pub max_total_bytes: Option<u64>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
            max_objects: None,
            max_total_bytes: None,
        }
    }
}

/// Where something is: file, 1-based document index, 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Source {
    pub file: PathBuf,
    pub document: usize,
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: document {}, line {}",
            self.file.display(),
            self.document,
            self.line
        )
    }
}

/// Identity of an object inside one namespace, as the inventory lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    pub group: String,
    pub kind: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(group: impl Into<String>, kind: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    /// The key of an object as found in the cluster or a file.
    pub fn of(object: &Value) -> Option<Self> {
        let (group, _) = split_api_version(object["apiVersion"].as_str()?);
        Some(Self::new(
            group,
            object["kind"].as_str()?,
            object["metadata"]["name"].as_str()?,
        ))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Lines of the fields errors point at, when they could be found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyLines {
    pub kind: Option<usize>,
    pub name: Option<usize>,
    pub namespace: Option<usize>,
}

/// One object from one YAML document.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub api_version: String,
    pub group: String,
    pub version: String,
    pub kind: String,
    pub name: String,
    /// `metadata.namespace` as written; `None` when absent.
    pub namespace: Option<String>,
    pub source: Source,
    pub lines: KeyLines,
    /// The whole document, as parsed.
    pub object: Value,
}

impl Manifest {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.group, &self.kind, &self.name)
    }

    /// A [`Source`] pointing at `line` (or the document's first line).
    pub fn at(&self, line: Option<usize>) -> Source {
        Source {
            line: line.unwrap_or(self.source.line),
            ..self.source.clone()
        }
    }
}

/// What went wrong, without the where.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("cannot read file: {0}")]
    Io(#[source] std::io::Error),
    #[error("file is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("file is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("document is {0}, not a mapping")]
    NotMapping(&'static str),
    #[error("`{0}` must be a mapping")]
    FieldNotMapping(&'static str),
    #[error("missing or empty `{0}`")]
    Missing(&'static str),
    #[error("`{field}` must be a string")]
    NotString { field: &'static str },
    #[error("{what} {value:?} is not a valid DNS-1123 {rule}")]
    InvalidName {
        what: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error("{0}")]
    Policy(String),
    #[error("symlink points outside the namespace folder (to {0}); it is not followed")]
    SymlinkEscape(PathBuf),
    #[error("the folder is a symlink leading out of the repository (to {0}); it is not followed")]
    FolderEscape(PathBuf),
    #[error(
        "the namespace folder holds {found} {what}, more than the limit of {limit} (--max-{what}); the revision is refused whole"
    )]
    RevisionTooLarge {
        what: &'static str,
        found: u64,
        limit: u64,
    },
}

/// An error with its place: file, and where known, document and line.
#[derive(Debug, thiserror::Error)]
pub struct ManifestError {
    pub file: PathBuf,
    pub document: Option<usize>,
    pub line: Option<usize>,
    #[source]
    pub problem: Problem,
}

impl ManifestError {
    pub fn in_file(file: &Path, problem: Problem) -> Self {
        Self {
            file: file.to_path_buf(),
            document: None,
            line: None,
            problem,
        }
    }

    pub fn at(source: &Source, problem: Problem) -> Self {
        Self {
            file: source.file.clone(),
            document: Some(source.document),
            line: Some(source.line),
            problem,
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        match (self.document, self.line) {
            (Some(d), Some(l)) => write!(f, ": document {d}, line {l}")?,
            (Some(d), None) => write!(f, ": document {d}")?,
            (None, Some(l)) => write!(f, ": line {l}")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.problem)
    }
}

/// Read and parse one file. Returns every object, or every error found.
pub fn load_file(path: &Path, opts: &LoadOptions) -> Result<Vec<Manifest>, Vec<ManifestError>> {
    parse_bytes(&read_file(path, opts)?, path, opts)
}

/// The bytes of one file, refused unread when larger than the limit (and
/// cut off there if it grows while it is read).
pub fn read_file(path: &Path, opts: &LoadOptions) -> Result<Vec<u8>, Vec<ManifestError>> {
    use std::io::Read as _;
    let io = |e| vec![ManifestError::in_file(path, Problem::Io(e))];
    let too_large = |size| {
        vec![ManifestError::in_file(
            path,
            Problem::TooLarge {
                size,
                limit: opts.max_file_bytes,
            },
        )]
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > opts.max_file_bytes {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(opts.max_file_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > opts.max_file_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Parse a byte buffer (a file's content, or stdin) named `file` in errors.
pub fn parse_bytes(
    bytes: &[u8],
    file: &Path,
    opts: &LoadOptions,
) -> Result<Vec<Manifest>, Vec<ManifestError>> {
    let len = bytes.len() as u64;
    if len > opts.max_file_bytes {
        return Err(vec![ManifestError::in_file(
            file,
            Problem::TooLarge {
                size: len,
                limit: opts.max_file_bytes,
            },
        )]);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_str(text, file, opts),
        Err(e) => {
            let offset = e.valid_up_to();
            let line = bytes[..offset].iter().filter(|b| **b == b'\n').count() + 1;
            Err(vec![ManifestError {
                file: file.to_path_buf(),
                document: None,
                line: Some(line),
                problem: Problem::NotUtf8 { offset },
            }])
        }
    }
}

/// Parse YAML text named `file` in errors. Empty documents are skipped.
pub fn parse_str(
    text: &str,
    file: &Path,
    opts: &LoadOptions,
) -> Result<Vec<Manifest>, Vec<ManifestError>> {
    let mut manifests = Vec::new();
    let mut errors = Vec::new();
    for chunk in split_documents(text) {
        let Some(document) = chunk.index else {
            continue; // comments before the first `---`
        };
        let source = Source {
            file: file.to_path_buf(),
            document,
            line: chunk.content_line,
        };
        match parse_document(&chunk, &source, opts) {
            Ok(Some(m)) => manifests.push(m),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(manifests)
    } else {
        Err(errors)
    }
}

/// One document's text and where it sits in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// 1-based document index; `None` for comments and blank lines before
    /// the first `---`, which are no document.
    pub index: Option<usize>,
    /// 1-based line in the file of the chunk's first line.
    pub first_line: usize,
    /// 1-based line of the first line with content (or `first_line`).
    pub content_line: usize,
    pub text: &'a str,
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#') && !is_marker(line, "---") && !is_marker(line, "...")
}

/// Split at document markers. A `---` line starts a new chunk (and belongs to
/// it, since it may carry content such as `--- |`); a `...` line ends one.
/// The chunks concatenate to `text` byte for byte (the plugin rewrites one
/// document of a hand-written file and keeps the rest); a leading chunk with
/// nothing but comments and blank lines is no document (`index` is `None`).
pub fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0usize; // byte offset of the current chunk
    let mut start_line = 1usize;
    let mut offset = 0usize;
    let mut line_no = 0usize;
    for line in text.split_inclusive('\n') {
        line_no += 1;
        let bare = line.trim_end_matches(['\n', '\r']);
        if is_marker(bare, "---") && offset > start {
            push_chunk(text, start, offset, start_line, &mut chunks);
            start = offset;
            start_line = line_no;
        }
        offset += line.len();
        if is_marker(bare, "...") {
            push_chunk(text, start, offset, start_line, &mut chunks);
            start = offset;
            start_line = line_no + 1;
        }
    }
    if offset > start {
        push_chunk(text, start, offset, start_line, &mut chunks);
    }
    chunks
}

fn push_chunk<'a>(
    text: &'a str,
    from: usize,
    to: usize,
    first_line: usize,
    chunks: &mut Vec<Chunk<'a>>,
) {
    let body = &text[from..to];
    let has_content = body.lines().any(is_content);
    let preamble = chunks.is_empty() && !has_content && !body.lines().any(|l| is_marker(l, "---"));
    let content_line = body
        .lines()
        .position(is_content)
        .map_or(first_line, |i| first_line + i);
    let documents = chunks.iter().filter(|c| c.index.is_some()).count();
    chunks.push(Chunk {
        index: (!preamble).then_some(documents + 1),
        first_line,
        content_line,
        text: body,
    });
}

fn yaml_options(opts: &LoadOptions) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = opts.max_depth;
    budget.max_aliases = 10_000;
    let mut o = serde_saphyr::Options::default();
    o.budget = Some(budget);
    o.alias_limits.max_total_replayed_events = MAX_ALIAS_REPLAY_EVENTS;
    o.with_snippet = false;
    // `080` is not a number to Kubernetes' YAML 1.1 parser: keep it a string.
    o.leading_zero_numbers_as_strings = true;
    o
}

fn parse_document(
    chunk: &Chunk<'_>,
    source: &Source,
    opts: &LoadOptions,
) -> Result<Option<Manifest>, ManifestError> {
    if !chunk.text.lines().any(is_content) {
        return Ok(None);
    }
    let value: Value = serde_saphyr::from_str_with_options(chunk.text, yaml_options(opts))
        .map_err(|e| {
            let line = e
                .location()
                .map(|l| l.line() as usize)
                .filter(|l| *l > 0)
                .map_or(source.line, |l| chunk.first_line + l - 1);
            ManifestError {
                file: source.file.clone(),
                document: Some(source.document),
                line: Some(line),
                problem: Problem::Yaml(yaml_message(&e)),
            }
        })?;
    let err = |problem| ManifestError::at(source, problem);
    let map = match &value {
        Value::Null => return Ok(None),
        Value::Object(m) => m,
        Value::Array(_) => return Err(err(Problem::NotMapping("a list"))),
        Value::String(_) => return Err(err(Problem::NotMapping("a string"))),
        Value::Number(_) => return Err(err(Problem::NotMapping("a number"))),
        Value::Bool(_) => return Err(err(Problem::NotMapping("a boolean"))),
    };
    let lines = key_lines(chunk);
    let at = |line: Option<usize>| Source {
        line: line.unwrap_or(source.line),
        ..source.clone()
    };
    let string_field = |v: Option<&Value>, field: &'static str, line: Option<usize>| match v {
        None | Some(Value::Null) => Err(ManifestError::at(&at(line), Problem::Missing(field))),
        Some(Value::String(s)) if s.is_empty() => {
            Err(ManifestError::at(&at(line), Problem::Missing(field)))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ManifestError::at(&at(line), Problem::NotString { field })),
    };
    let api_version = string_field(map.get("apiVersion"), "apiVersion", None)?;
    let kind = string_field(map.get("kind"), "kind", lines.kind)?;
    let metadata = match map.get("metadata") {
        Some(Value::Object(m)) => m,
        Some(Value::Null) | None => return Err(err(Problem::Missing("metadata"))),
        Some(_) => return Err(err(Problem::FieldNotMapping("metadata"))),
    };
    let name = string_field(metadata.get("name"), "metadata.name", lines.name)?;
    if let Err(rule) = check_dns1123_subdomain(&name) {
        return Err(ManifestError::at(
            &at(lines.name),
            Problem::InvalidName {
                what: "name",
                value: name,
                rule,
            },
        ));
    }
    let namespace = match metadata.get("namespace") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let ns = string_field(Some(v), "metadata.namespace", lines.namespace)?;
            if let Err(rule) = check_dns1123_label(&ns) {
                return Err(ManifestError::at(
                    &at(lines.namespace),
                    Problem::InvalidName {
                        what: "namespace",
                        value: ns,
                        rule,
                    },
                ));
            }
            Some(ns)
        }
    };
    let (group, version) = split_api_version(&api_version);
    Ok(Some(Manifest {
        group: group.to_string(),
        version: version.to_string(),
        api_version: api_version.clone(),
        kind,
        name,
        namespace,
        source: source.clone(),
        lines,
        object: value,
    }))
}

/// serde-saphyr's message in our words, without its own location (we add
/// ours, relative to the file rather than to the document).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").trim();
    if first.contains("alias replay limit") || first.contains("Alias") {
        return "too many alias expansions (a \"billion laughs\" document?); expand the aliases by hand".into();
    }
    if first.contains("Depth") {
        return "nested too deeply".into();
    }
    if first.contains("budget breached") {
        return format!(
            "document too large or complex ({})",
            first.trim_start_matches("budget breached: ")
        );
    }
    let first = first
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(first);
    match first.find(" at line ") {
        Some(i) => first[..i].trim_end_matches(',').to_string(),
        None => first.to_string(),
    }
}

/// Find the lines of `kind:`, and of `name:` / `namespace:` directly under a
/// top-level `metadata:`, in block-style YAML. A best effort for pointing at
/// the right line; `None` when the layout is unusual (flow style, say).
fn key_lines(chunk: &Chunk<'_>) -> KeyLines {
    let mut lines = KeyLines::default();
    let mut in_metadata = false;
    let mut child_indent: Option<usize> = None;
    for (i, line) in chunk.text.lines().enumerate() {
        let no = chunk.first_line + i;
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent == 0 {
            in_metadata = trimmed.starts_with("metadata:");
            child_indent = None;
            if trimmed.starts_with("kind:") {
                lines.kind = Some(no);
            }
            continue;
        }
        if in_metadata {
            let ci = *child_indent.get_or_insert(indent);
            if indent == ci {
                if trimmed.starts_with("name:") && lines.name.is_none() {
                    lines.name = Some(no);
                } else if trimmed.starts_with("namespace:") && lines.namespace.is_none() {
                    lines.namespace = Some(no);
                }
            }
        }
    }
    lines
}

/// DNS-1123 subdomain: at most 253 characters, lowercase alphanumerics, `-`
/// and `.`, starting and ending with an alphanumeric. Returns the rule broken.
pub fn check_dns1123_subdomain(name: &str) -> Result<(), &'static str> {
    const RULE: &str = "subdomain (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)";
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name
            .split('.')
            .all(|part| !part.is_empty() && !part.starts_with('-') && !part.ends_with('-'));
    if ok { Ok(()) } else { Err(RULE) }
}

/// DNS-1123 label: at most 63 characters, lowercase alphanumerics and `-`,
/// starting and ending with an alphanumeric. Returns the rule broken.
pub fn check_dns1123_label(name: &str) -> Result<(), &'static str> {
    const RULE: &str = "label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)";
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok { Ok(()) } else { Err(RULE) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Manifest>, Vec<ManifestError>> {
        parse_str(text, Path::new("ns/team-a/f.yaml"), &LoadOptions::default())
    }

    fn one_error(text: &str) -> ManifestError {
        let mut errors = parse(text).expect_err("should fail");
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.remove(0)
    }

    const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\nspec:\n  host: reviews\n";

    #[test]
    fn loads_identity_source_and_line() {
        let text = format!("# leading comment\n---\n{DR}---\n\n---\n# only a comment\n---\n{DR}");
        let text = text.replacen("name: reviews", "name: ratings", 1);
        let ms = parse(&text).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].name, "ratings");
        assert_eq!(ms[0].group, "networking.istio.io");
        assert_eq!(ms[0].version, "v1");
        assert_eq!(ms[0].kind, "DestinationRule");
        assert_eq!(ms[0].namespace, None);
        assert_eq!(ms[0].source.document, 1);
        assert_eq!(ms[0].source.line, 3);
        assert_eq!(ms[0].lines.name, Some(6));
        // the two empty documents in between are skipped but still counted
        assert_eq!(ms[1].source.document, 4);
        assert_eq!(ms[1].source.line, 14);
        assert_eq!(
            ms[1].key(),
            ObjectKey::new("networking.istio.io", "DestinationRule", "reviews")
        );
    }

    #[test]
    fn reports_the_file_line_of_an_error_in_the_third_document() {
        let text =
            format!("{DR}---\n{DR}---\napiVersion: v1\nkind: X\nmetadata:\n  name: [unclosed\n");
        let e = one_error(&text);
        assert_eq!(e.document, Some(3));
        let line = e.line.unwrap();
        assert!((17..=18).contains(&line), "line {line}: {e}");
        assert!(
            e.to_string()
                .starts_with("ns/team-a/f.yaml: document 3, line"),
            "{e}"
        );
    }

    #[test]
    fn names_what_is_missing() {
        let e = one_error("kind: VirtualService\nmetadata:\n  name: a\n");
        assert!(matches!(e.problem, Problem::Missing("apiVersion")), "{e}");
        let e = one_error("apiVersion: v1\nmetadata:\n  name: a\n");
        assert!(matches!(e.problem, Problem::Missing("kind")), "{e}");
        let e = one_error("apiVersion: v1\nkind: X\n");
        assert!(matches!(e.problem, Problem::Missing("metadata")), "{e}");
        let e = one_error("apiVersion: v1\nkind: X\nmetadata:\n  labels: {}\n");
        assert!(
            matches!(e.problem, Problem::Missing("metadata.name")),
            "{e}"
        );
        let e = one_error("- a\n- b\n");
        assert!(matches!(e.problem, Problem::NotMapping("a list")), "{e}");
        assert_eq!(
            e.to_string(),
            "ns/team-a/f.yaml: document 1, line 1: document is a list, not a mapping"
        );
    }

    #[test]
    fn rejects_invalid_names_at_their_line() {
        let e = one_error(
            "apiVersion: v1\nkind: X\nmetadata:\n  labels:\n    a: b\n  name: Reviews_V1\n",
        );
        assert!(
            matches!(e.problem, Problem::InvalidName { what: "name", .. }),
            "{e}"
        );
        assert_eq!(e.line, Some(6));
        let e = one_error("apiVersion: v1\nkind: X\nmetadata:\n  name: ok\n  namespace: team.a\n");
        assert!(
            matches!(
                e.problem,
                Problem::InvalidName {
                    what: "namespace",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.line, Some(5));
    }

    #[test]
    fn invalid_yaml_is_an_error_with_a_line() {
        let e = one_error("apiVersion: v1\nkind: X\nmetadata:\n  name: a\n   bad: indent\n");
        assert_eq!(
            e.to_string(),
            "ns/team-a/f.yaml: document 1, line 5: invalid YAML: mapping values are not allowed in this context"
        );
        let e = one_error("apiVersion: v1\nkind: X\nkind: Y\nmetadata:\n  name: a\n");
        assert_eq!(
            e.to_string(),
            "ns/team-a/f.yaml: document 1, line 3: invalid YAML: duplicate mapping key: kind"
        );
    }

    #[test]
    fn billion_laughs_is_an_error_not_a_hang() {
        let mut text = String::from(
            "apiVersion: v1\nkind: X\nmetadata:\n  name: lol\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
        );
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = one_error(&text);
        assert!(
            e.to_string()
                .contains("line 9: invalid YAML: too many alias expansions"),
            "{e}"
        );
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let text = format!(
            "apiVersion: v1\nkind: X\nmetadata:\n  name: a\nspec: {}{}\n",
            "[".repeat(200),
            "]".repeat(200)
        );
        let e = one_error(&text);
        assert!(
            e.to_string()
                .ends_with("line 5: invalid YAML: nested too deeply"),
            "{e}"
        );
    }

    #[test]
    fn large_and_non_utf8_input_are_errors() {
        let big = vec![b'#'; 5 * 1024 * 1024];
        let e = parse_bytes(&big, Path::new("big.yaml"), &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(
                e[0].problem,
                Problem::TooLarge {
                    size: 5_242_880,
                    limit: 1_048_576
                }
            ),
            "{}",
            e[0]
        );
        let bad = b"apiVersion: v1\nkind: X\nmetadata:\n  name: \xff\xfe\n";
        let e = parse_bytes(bad, Path::new("bad.yaml"), &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(e[0].problem, Problem::NotUtf8 { offset: 41 }),
            "{}",
            e[0]
        );
        assert_eq!(e[0].line, Some(4));
    }

    #[test]
    fn numbers_with_leading_zeros_stay_strings() {
        let ms = parse("apiVersion: v1\nkind: X\nmetadata:\n  name: a\nspec:\n  n: 080\n  w: 80\n")
            .unwrap();
        assert_eq!(ms[0].object["spec"]["n"], "080");
        assert_eq!(ms[0].object["spec"]["w"], 80);
    }

    #[test]
    fn chunks_cover_the_text_byte_for_byte() {
        let text = "# header\n---\na: 1\n--- # second\nb: 2\n...\nc: 3\n";
        let chunks = split_documents(text);
        let texts: Vec<&str> = chunks.iter().map(|c| c.text).collect();
        assert_eq!(
            texts,
            [
                "# header\n",
                "---\na: 1\n",
                "--- # second\nb: 2\n...\n",
                "c: 3\n"
            ]
        );
        let indexes: Vec<Option<usize>> = chunks.iter().map(|c| c.index).collect();
        assert_eq!(indexes, [None, Some(1), Some(2), Some(3)]);
        assert_eq!(texts.concat(), text);
        assert!(split_documents("").is_empty());
    }

    #[test]
    fn every_error_of_a_file_is_reported() {
        let text = "apiVersion: v1\n---\nkind: X\n---\n- 1\n";
        let errors = parse(text).unwrap_err();
        assert_eq!(errors.len(), 3);
        assert_eq!(
            errors
                .iter()
                .map(|e| e.document.unwrap())
                .collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn dns_names() {
        assert!(check_dns1123_subdomain("reviews.v1-a").is_ok());
        assert!(check_dns1123_subdomain("-a").is_err());
        assert!(check_dns1123_subdomain("a..b").is_err());
        assert!(check_dns1123_subdomain(&"a".repeat(254)).is_err());
        assert!(check_dns1123_label("team-a").is_ok());
        assert!(check_dns1123_label("team.a").is_err());
        assert!(check_dns1123_label(&"a".repeat(64)).is_err());
    }
}

//! The bad-input corpus under `tests/testdata/bad/`: one folder per case,
//! each a small repository (`repo/`) with what it must give beside it.
//!
//! * `case`: its first line `# what it shows`, then directives, one a line:
//!   `tools: validate stage agent` (the default: all three),
//!   `namespace: NAME` (default `team-a`), `agent-flags: --flag value ...`,
//!   `symlink: PATH -> TARGET`, `mkdir: PATH`, `generate: PATH RECIPE`
//!   (inputs too large or too odd to keep in Git: `random-bytes`,
//!   `deep-nesting`, `many-documents`, `huge-file`), `dangling-link` (the
//!   git-sync link points at a worktree that does not exist), and
//!   `e2e-only` (only an agent with a cluster shows it).
//! * `expected`: where the error is, as a first line `at: FILE [document N]
//!   [line L]` (when the error has a place), then lines that must each
//!   appear in the error a tool prints. The place matches both forms the
//!   tools print: `FILE: document N, line L: ...` (the loader, `stage`)
//!   and `FILE:L: document N: ...` (`validate`, like `istioctl analyze`).
//!
//! The family of a case is its name up to the first `-` (yaml, schema,
//! name, policy, layout, limits).

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

/// One case of the corpus.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub what: String,
    dir: PathBuf,
    pub namespace: String,
    pub tools: Vec<String>,
    pub agent_flags: Vec<String>,
    /// (file, document, line) the error names.
    pub at: Option<(String, Option<usize>, Option<usize>)>,
    pub expected: Vec<String>,
    /// Only an agent against a cluster shows it (not the loader alone).
    pub e2e_only: bool,
    /// The git-sync link points at a worktree that does not exist.
    pub dangling_link: bool,
    symlinks: Vec<(PathBuf, PathBuf)>,
    mkdirs: Vec<PathBuf>,
    generate: Vec<(PathBuf, String)>,
}

/// The corpus folder.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/bad")
}

/// Every case, by name.
pub fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = fs::read_dir(root())
        .expect("tests/testdata/bad")
        .map(|e| Case::read(&e.unwrap().path()))
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

impl Case {
    fn read(dir: &Path) -> Self {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(dir.join("case"))
            .unwrap_or_else(|e| panic!("{}/case: {e}", dir.display()));
        let mut expected = fs::read_to_string(dir.join("expected"))
            .unwrap_or_else(|e| panic!("{}/expected: {e}", dir.display()))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>();
        assert!(!expected.is_empty(), "{name}: `expected` is empty");
        let at = expected[0].strip_prefix("at: ").map(|place| {
            let words: Vec<&str> = place.split_whitespace().collect();
            let number = |key: &str| {
                let i = words.iter().position(|w| *w == key)?;
                words.get(i + 1)?.parse().ok()
            };
            (words[0].to_string(), number("document"), number("line"))
        });
        if at.is_some() {
            expected.remove(0);
        }
        let mut case = Case {
            name: name.clone(),
            what: String::new(),
            dir: dir.to_path_buf(),
            namespace: "team-a".into(),
            tools: vec!["validate".into(), "stage".into(), "agent".into()],
            agent_flags: Vec::new(),
            at,
            expected,
            e2e_only: false,
            dangling_link: false,
            symlinks: Vec::new(),
            mkdirs: Vec::new(),
            generate: Vec::new(),
        };
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(what) = line.strip_prefix("# ") {
                case.what = what.to_string();
                continue;
            }
            let (key, value) = line
                .split_once(':')
                .map_or((line, ""), |(k, v)| (k, v.trim()));
            let words = || {
                value
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            };
            match key {
                "tools" => case.tools = words(),
                "namespace" => case.namespace = value.to_string(),
                "agent-flags" => case.agent_flags = words(),
                "symlink" => {
                    let (link, target) = value
                        .split_once(" -> ")
                        .unwrap_or_else(|| panic!("{name}: symlink: PATH -> TARGET"));
                    case.symlinks.push((link.into(), target.into()));
                }
                "mkdir" => case.mkdirs.push(value.into()),
                "generate" => {
                    let (path, recipe) = value
                        .split_once(' ')
                        .unwrap_or_else(|| panic!("{name}: generate: PATH RECIPE"));
                    case.generate.push((path.into(), recipe.to_string()));
                }
                "e2e-only" => case.e2e_only = true,
                "dangling-link" => case.dangling_link = true,
                _ => panic!("{name}/case: unknown directive {line:?}"),
            }
        }
        case
    }

    /// yaml, schema, name, policy, layout or limits.
    pub fn family(&self) -> &str {
        self.name.split('-').next().unwrap_or(&self.name)
    }

    pub fn runs(&self, tool: &str) -> bool {
        self.tools.iter().any(|t| t == tool)
    }

    /// The case makes the namespace folder itself (a symlink to it, say), so
    /// nothing else can be written into it.
    pub fn replaces_folder(&self) -> bool {
        self.symlinks.iter().any(|(link, _)| *link == self.folder())
    }

    /// The namespace folder, relative to a repository.
    pub fn folder(&self) -> PathBuf {
        Path::new("namespaces").join(&self.namespace)
    }

    /// Write the case's repository into `root` (which exists): its files,
    /// then its folders, symlinks and generated inputs. Git keeps no empty
    /// folders, so a case's folders are made here.
    pub fn materialize(&self, root: &Path) {
        let repo = self.dir.join("repo");
        if repo.is_dir() {
            copy_tree(&repo, root);
        }
        for dir in &self.mkdirs {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for (link, target) in &self.symlinks {
            let link = root.join(link);
            fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, &link)
                .unwrap_or_else(|e| panic!("{}: symlink {}: {e}", self.name, link.display()));
        }
        for (path, recipe) in &self.generate {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            generate(&path, recipe);
        }
    }

    /// The files a `stage` of this case is given: the YAML files of its
    /// namespace folder, once materialized under `root`.
    pub fn stage_inputs(&self, root: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let dir = root.join(self.folder());
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                    files.push(p);
                }
            }
        }
        files.sort();
        files
    }

    /// `Ok` when `output` names the place and holds every expected line;
    /// else what is missing.
    pub fn check(&self, tool: &str, output: &str) -> Result<(), String> {
        let mut missing: Vec<String> = self
            .expected
            .iter()
            .filter(|e| !output.contains(e.as_str()))
            .cloned()
            .collect();
        if let Some((file, document, line)) = &self.at {
            let placed = output.lines().any(|l| {
                let Some(i) = l.find(file.as_str()) else {
                    return false;
                };
                let rest = &l[i + file.len()..];
                let document_ok = document.is_none_or(|d| {
                    rest.starts_with(&format!(": document {d}"))
                        || rest.contains(&format!(": document {d}:"))
                });
                let line_ok = line.is_none_or(|n| {
                    rest.starts_with(&format!(":{n}:"))
                        || rest.starts_with(&format!(": line {n}:"))
                        || rest.contains(&format!(", line {n}:"))
                });
                document_ok && line_ok
            });
            if !placed {
                missing.insert(0, format!("at {file} document {document:?} line {line:?}"));
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} ({}), {tool}: missing {missing:?} in:\n{output}",
                self.name, self.what
            ))
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            fs::create_dir_all(&dest).unwrap();
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Inputs too large or too odd to keep in Git, made the same every time.
fn generate(path: &Path, recipe: &str) {
    let mut file = fs::File::create(path).unwrap();
    match recipe {
        "random-bytes" => {
            // xorshift64, seeded: the same 64 KiB on every run
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            let bytes: Vec<u8> = (0..65_536)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            file.write_all(&bytes).unwrap();
        }
        "deep-nesting" => {
            let mut text = String::from(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: deep\nspec:\n  hosts: ",
            );
            text.push_str(&"[".repeat(20_000));
            text.push_str(&"]".repeat(20_000));
            text.push('\n');
            file.write_all(text.as_bytes()).unwrap();
        }
        "many-documents" => {
            // 20,000 real objects are over the 1 MiB limit of one file:
            // empty documents, then a broken one, keep the count under it
            let mut text = "---\n".repeat(19_999);
            text.push_str("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: [last\n");
            file.write_all(text.as_bytes()).unwrap();
        }
        "huge-file" => {
            // 50 MiB: a valid object, then comment lines
            file.write_all(b"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: huge\nspec:\n  host: huge\n")
                .unwrap();
            let line = format!("# {}\n", "x".repeat(1021));
            for _ in 0..(50 * 1024) {
                file.write_all(line.as_bytes()).unwrap();
            }
        }
        other => panic!("unknown recipe {other:?}"),
    }
}

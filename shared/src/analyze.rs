//! Offline analysis of Istio config, in the spirit of `istioctl analyze`:
//! findings with Istio's own message codes where the meaning is the same, and
//! `GITOPS...` codes for our own checks and for load and policy errors.

use std::{fmt, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::{ManifestError, Problem};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Info => "Info",
            Level::Warning => "Warning",
            Level::Error => "Error",
        })
    }
}

/// Codes of our own checks.
pub mod codes {
    /// The file or document could not be loaded (YAML, size, encoding, fields).
    pub const INVALID_MANIFEST: &str = "GITOPS001";
    /// The object breaks the namespace policy (kind, namespace, duplicate, ...).
    pub const POLICY: &str = "GITOPS002";
}

/// One finding, as `validate -o json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Finding {
    pub code: String,
    pub level: Level,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] {}:{}",
            self.level,
            self.code,
            self.file.display(),
            self.line
        )?;
        if !self.name.is_empty() {
            write!(f, " ({} {}/{})", self.kind, self.namespace, self.name)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl Finding {
    /// A load or policy error as an Error finding of `namespace`.
    pub fn from_error(e: &ManifestError, namespace: &str) -> Self {
        let code = match e.problem {
            Problem::Policy(_) | Problem::SymlinkEscape(_) => codes::POLICY,
            _ => codes::INVALID_MANIFEST,
        };
        Finding {
            code: code.into(),
            level: Level::Error,
            kind: String::new(),
            namespace: namespace.into(),
            name: String::new(),
            file: e.file.clone(),
            line: e.line.unwrap_or(0),
            message: match e.document {
                Some(d) => format!("document {d}: {}", e.problem),
                None => e.problem.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{LoadOptions, parse_str};
    use std::path::Path;

    #[test]
    fn load_errors_become_error_findings_with_file_and_line() {
        let errors = parse_str(
            "apiVersion: v1\nkind: X\nmetadata:\n  name: Bad_Name\n",
            Path::new("a.yaml"),
            &LoadOptions::default(),
        )
        .unwrap_err();
        let f = Finding::from_error(&errors[0], "team-a");
        assert_eq!(f.code, codes::INVALID_MANIFEST);
        assert_eq!(f.level, Level::Error);
        assert_eq!(f.line, 4);
        assert!(
            f.to_string()
                .starts_with("Error [GITOPS001] a.yaml:4: document 1: name \"Bad_Name\""),
            "{f}"
        );
        let json = serde_json::to_value(&f).unwrap();
        for key in [
            "code",
            "level",
            "kind",
            "namespace",
            "name",
            "file",
            "line",
            "message",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }
}

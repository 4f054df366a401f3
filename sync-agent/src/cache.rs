//! The files of the last revision, parsed and prepared, kept between passes.
//!
//! A resync, or a revision that changes a few files, reads every file again
//! (nothing else tells what git-sync changed), but parses only those whose
//! content is new: parsing the YAML was half of a no-op pass's CPU. An
//! entry is keyed by the file's path in the repo and the digest of its
//! bytes, and holds the file's manifests without their parsed documents
//! (the planner reads the prepared object instead, a tenth of the memory).
//! Each load keeps only the entries of the files it read, so the cache
//! never holds more than one revision.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use gitops_shared::{
    hash::bytes_hash,
    manifest::{LoadOptions, Manifest, ManifestError, parse_bytes, read_file},
    plan::Prepared,
};
use serde_json::Value;

/// One file, parsed: its manifests (objects dropped unless kept) and, in
/// the same order, what the agent applies of each.
#[derive(Debug)]
struct Parsed {
    manifests: Vec<Manifest>,
    prepared: Vec<Prepared>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct ParseCache {
    /// (file relative to the tree, digest of its bytes) -> the file, parsed.
    entries: HashMap<(PathBuf, String), Arc<Parsed>>,
    /// Parsed files found again or parsed by the read in progress.
    next: HashMap<(PathBuf, String), Arc<Parsed>>,
}

/// How one tree is read through the cache.
#[derive(Debug)]
pub struct Reader<'c> {
    cache: &'c mut ParseCache,
    namespace: &'c str,
    agent: &'c str,
    /// Keep each manifest's parsed document (`--strict` analyses them).
    keep_objects: bool,
    /// The prepared objects of what was read, in the order of the manifests.
    pub prepared: Vec<Prepared>,
    /// Files parsed by this read (the others were found in the cache).
    pub parsed_files: usize,
}

impl ParseCache {
    /// A reader for one tree of agent `agent` in `namespace`.
    pub fn reader<'c>(
        &'c mut self,
        namespace: &'c str,
        agent: &'c str,
        keep_objects: bool,
    ) -> Reader<'c> {
        self.next.clear();
        Reader {
            cache: self,
            namespace,
            agent,
            keep_objects,
            prepared: Vec::new(),
            parsed_files: 0,
        }
    }

    /// Files held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Reader<'_> {
    /// Read `file` (shown as `shown`), parsing it only when its content is
    /// not cached. The manifests' source file is `shown`.
    pub fn read(
        &mut self,
        file: &Path,
        shown: &Path,
        opts: &LoadOptions,
    ) -> Result<Vec<Manifest>, Vec<ManifestError>> {
        let bytes = read_file(file, opts)?;
        let key = (shown.to_path_buf(), bytes_hash(&bytes));
        let parsed = match self
            .cache
            .next
            .get(&key)
            .or_else(|| self.cache.entries.get(&key))
        {
            Some(parsed) => parsed.clone(),
            None => {
                let mut manifests = parse_bytes(&bytes, file, opts)?;
                drop(bytes);
                let prepared = manifests
                    .iter_mut()
                    .map(|m| {
                        m.source.file = shown.to_path_buf();
                        let prepared = Prepared::of(m, self.namespace, self.agent);
                        if !self.keep_objects {
                            m.object = Value::Null;
                        }
                        prepared
                    })
                    .collect();
                self.parsed_files += 1;
                Arc::new(Parsed {
                    manifests,
                    prepared,
                })
            }
        };
        self.prepared.extend(parsed.prepared.iter().cloned());
        let manifests = parsed.manifests.clone();
        self.cache.next.insert(key, parsed);
        Ok(manifests)
    }

    /// The read is over: the cache holds what it read, and nothing else.
    pub fn finish(self) -> Vec<Prepared> {
        self.cache.entries = std::mem::take(&mut self.cache.next);
        self.prepared
    }
}

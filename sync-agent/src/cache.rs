//! The files of the last revision, parsed, kept between passes.
//!
//! A resync, or a revision that changes a few files, reads every file again
//! (nothing else tells what git-sync changed), but parses only those whose
//! content is new: parsing the YAML was half of a no-op pass's CPU. An
//! entry is keyed by the file's path in the repo and holds the digest of
//! its bytes, its manifests without their parsed documents, and the hash
//! of each object as it is applied: not the object itself, which was a
//! third of the idle agent's heap. A pass that must compare or write an
//! object of a file it did not parse reads that file again
//! ([`ParseCache::reread`]); a file parsed by the pass gives its objects
//! whole. Each load keeps only the entries of the files it read, so the
//! cache never holds more than one revision.

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

/// One file, parsed: the digest of its bytes, its manifests (objects
/// dropped unless kept) and, in the same order, the hash of what the agent
/// applies of each.
#[derive(Debug)]
struct Parsed {
    digest: String,
    manifests: Vec<Manifest>,
    hashes: Vec<Prepared>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct ParseCache {
    /// File relative to the tree -> the file, parsed.
    entries: HashMap<PathBuf, Arc<Parsed>>,
    /// Parsed files found again or parsed by the read in progress.
    next: HashMap<PathBuf, Arc<Parsed>>,
}

/// How one tree is read through the cache.
#[derive(Debug)]
pub struct Reader<'c> {
    cache: &'c mut ParseCache,
    namespace: &'c str,
    agent: &'c str,
    /// Keep each manifest's parsed document (`--strict` analyses them).
    keep_objects: bool,
    /// The prepared objects of what was read, in the order of the manifests:
    /// whole for the files this read parsed, the hash alone for the others.
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

    /// Manifest `m` of the last read of `tree`, prepared whole again by
    /// agent `agent` in `namespace`: its file read and parsed again.
    /// `Err(file)` when the file is gone or no longer what was read (the
    /// revision is then read again: git-sync may have moved on).
    pub fn reread(
        &self,
        tree: &Path,
        m: &Manifest,
        namespace: &str,
        agent: &str,
        opts: &LoadOptions,
    ) -> Result<Prepared, PathBuf> {
        let shown = &m.source.file;
        let file = tree.join(shown);
        let changed = || file.clone();
        let parsed = self.entries.get(shown).ok_or_else(changed)?;
        let bytes = read_file(&file, opts).map_err(|_| changed())?;
        if bytes_hash(&bytes) != parsed.digest {
            return Err(changed());
        }
        let mut again = parse_bytes(&bytes, &file, opts).map_err(|_| changed())?;
        let found = again
            .iter_mut()
            .find(|a| a.source.document == m.source.document)
            .ok_or_else(changed)?;
        found.source.file = shown.clone();
        Ok(Prepared::of(found, namespace, agent))
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
        let digest = bytes_hash(&bytes);
        let cached = self
            .cache
            .next
            .get(shown)
            .or_else(|| self.cache.entries.get(shown))
            .filter(|parsed| parsed.digest == digest);
        let parsed = match cached {
            Some(parsed) => {
                self.prepared.extend(parsed.hashes.iter().cloned());
                parsed.clone()
            }
            None => {
                let mut manifests = parse_bytes(&bytes, file, opts)?;
                drop(bytes);
                // Held until the file changes: no spare capacity (a file
                // of one object had room for four, a kilobyte each).
                manifests.shrink_to_fit();
                let mut hashes = Vec::with_capacity(manifests.len());
                for m in &mut manifests {
                    m.source.file = shown.to_path_buf();
                    let prepared = Prepared::of(m, self.namespace, self.agent);
                    if !self.keep_objects {
                        m.object = Value::Null;
                    }
                    hashes.push(prepared.hash_only());
                    self.prepared.push(prepared);
                }
                self.parsed_files += 1;
                Arc::new(Parsed {
                    digest,
                    manifests,
                    hashes,
                })
            }
        };
        let manifests = parsed.manifests.clone();
        self.cache.next.insert(shown.to_path_buf(), parsed);
        Ok(manifests)
    }

    /// The read is over: the cache holds what it read, and nothing else.
    pub fn finish(self) -> Vec<Prepared> {
        self.cache.entries = std::mem::take(&mut self.cache.next);
        self.prepared
    }
}

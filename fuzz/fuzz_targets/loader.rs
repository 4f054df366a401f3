//! The loader on any bytes (scripts/fuzz.sh): parsing a file never panics,
//! never hangs, and what it accepts normalizes, hashes and prepares like
//! any object the agent applies.
#![no_main]

use std::path::Path;

use gitops_shared::{
    manifest::{LoadOptions, parse_bytes, split_documents},
    normalize::{desired_object, normalize},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file = Path::new("namespaces/team-a/fuzzed.yaml");
    let _ = split_documents(&String::from_utf8_lossy(data));
    match parse_bytes(data, file, &LoadOptions::default()) {
        Ok(manifests) => {
            for m in manifests {
                assert!(m.object.is_object(), "a document that is not an object was accepted");
                let once = normalize(&m.object, "team-a");
                assert_eq!(normalize(&once, "team-a"), once, "normalize is not idempotent");
                let (_, hash) = desired_object(&m.object, "team-a", "sync-agent", "fuzzed.yaml");
                let (_, again) = desired_object(&once, "team-a", "sync-agent", "fuzzed.yaml");
                assert_eq!(hash, again, "the hash of a normalized object differs");
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "an error without a reason");
            assert!(errors.iter().all(|e| e.file == file), "an error naming another file");
        }
    }
});

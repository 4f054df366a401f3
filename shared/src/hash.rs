//! Canonical JSON and the object hash of DESIGN.md: `sha256:` + hex of the
//! canonical JSON (keys sorted, no whitespace) of the normalized object.
//!
//! Key order is sorted here explicitly rather than trusting `serde_json::Map`:
//! another crate in the build may turn on serde_json's `preserve_order`, and
//! the hash must be the same on every machine and in every binary.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Serialize `value` as canonical JSON: object keys sorted by their UTF-8
/// bytes, no insignificant whitespace, strings escaped as serde_json does.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
    }
}

/// `sha256:<hex>` of the canonical JSON of `value`.
pub fn object_hash(value: &Value) -> String {
    bytes_hash(canonical_json(value).as_bytes())
}

/// `sha256:<hex>` of raw bytes (also the revision of a folder outside git).
pub fn bytes_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256:");
    for byte in digest.iter() {
        hex.push(char::from_digit(u32::from(byte >> 4), 16).expect("nibble < 16"));
        hex.push(char::from_digit(u32::from(byte & 0xf), 16).expect("nibble < 16"));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let v = json!({"b": 1, "a": {"z": [1, "x\"y"], "c": null}, "é": true});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":null,"z":[1,"x\"y"]},"b":1,"é":true}"#
        );
    }

    #[test]
    fn golden_hashes_never_change() {
        // Pinned: changing these silently would make every agent re-apply
        // every object in every cluster.
        assert_eq!(
            object_hash(&json!({})),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(
            object_hash(&json!({"b": [1, 2], "a": "x"})),
            "sha256:721ef82f2d6c0997bffb7a8ab3f40f8fb45b0b52ce2af3afa6b0f05efbdc317f"
        );
        assert_eq!(
            bytes_hash(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

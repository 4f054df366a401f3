//! Normalization of DESIGN.md: what is left of an object once everything the
//! server (or a client-side `kubectl apply`) adds is taken away, so that the
//! same intent always looks, and hashes, the same.

use serde_json::{Map, Value};

use crate::{
    ANNOTATION_HASH, ANNOTATION_LAST_APPLIED, ANNOTATION_SOURCE, LABEL_AGENT, LABEL_MANAGED_BY,
    LABEL_OWNER, MANAGED_BY, hash::object_hash,
};

/// `metadata` fields that the server owns.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
];

/// Annotations that are derived, never intent: the client-side apply record
/// and our own hash and source (a hash cannot contain itself).
const DERIVED_ANNOTATIONS: &[&str] = &[ANNOTATION_LAST_APPLIED, ANNOTATION_HASH, ANNOTATION_SOURCE];

/// Normalize `object` for `namespace`: drop `status` and server-owned
/// metadata, drop derived annotations (and `annotations`/`labels` if that
/// leaves them empty), and set `metadata.namespace`. Idempotent.
pub fn normalize(object: &Value, namespace: &str) -> Value {
    let mut out = object.clone();
    let Some(root) = out.as_object_mut() else {
        return out;
    };
    root.remove("status");
    let metadata = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = metadata.as_object_mut() {
        for field in SERVER_METADATA {
            meta.remove(*field);
        }
        if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
            for key in DERIVED_ANNOTATIONS {
                annotations.remove(*key);
            }
        }
        for key in ["annotations", "labels"] {
            let empty = match meta.get(key) {
                Some(Value::Object(m)) => m.is_empty(),
                Some(Value::Null) => true,
                _ => false,
            };
            if empty {
                meta.remove(key);
            }
        }
        meta.insert("namespace".into(), Value::String(namespace.into()));
    }
    out
}

/// The object as agent `agent` applies it: normalized, with the three
/// ownership labels, then the hash of that and the source path as
/// annotations. Returns the object and its hash.
pub fn desired_object(
    object: &Value,
    namespace: &str,
    agent: &str,
    source: &str,
) -> (Value, String) {
    let mut out = normalize(object, namespace);
    {
        let labels = metadata_map(&mut out, "labels");
        labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
        labels.insert(LABEL_OWNER.into(), namespace.into());
        labels.insert(LABEL_AGENT.into(), agent.into());
    }
    let hash = object_hash(&out);
    let annotations = metadata_map(&mut out, "annotations");
    annotations.insert(ANNOTATION_HASH.into(), Value::String(hash.clone()));
    annotations.insert(ANNOTATION_SOURCE.into(), Value::String(source.into()));
    (out, hash)
}

/// Whether a live object carries the ownership labels of agent `agent` in
/// `namespace`. An object without the agent label (applied before it
/// existed) belongs to the default agent, `sync-agent`.
pub fn is_owned_by(object: &Value, namespace: &str, agent: &str) -> bool {
    let labels = &object["metadata"]["labels"];
    let owner_agent = labels[LABEL_AGENT]
        .as_str()
        .unwrap_or(crate::gitopssync::DEFAULT_NAME);
    labels[LABEL_MANAGED_BY] == MANAGED_BY
        && labels[LABEL_OWNER] == namespace
        && owner_agent == agent
}

/// `metadata.<key>` as a mutable map, created when missing.
fn metadata_map<'a>(object: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    let root = object
        .as_object_mut()
        .expect("desired objects are mappings (checked at load)");
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let meta = meta.as_object_mut().expect("set to an object just above");
    let entry = meta
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("set to an object just above")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live_vs() -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {
                "name": "reviews",
                "namespace": "team-a",
                "uid": "0b7c",
                "resourceVersion": "1234",
                "generation": 3,
                "creationTimestamp": "2026-11-29T00:00:00Z",
                "managedFields": [{"manager": "kubectl"}],
                "selfLink": "/apis/x",
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "team": "a"
                },
                "labels": {}
            },
            "spec": {"hosts": ["reviews"]},
            "status": {"observedGeneration": 3}
        })
    }

    #[test]
    fn drops_server_fields_and_sets_namespace() {
        let n = normalize(&live_vs(), "team-a");
        assert_eq!(
            n,
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": "reviews", "namespace": "team-a", "annotations": {"team": "a"}},
                "spec": {"hosts": ["reviews"]}
            })
        );
    }

    #[test]
    fn normalize_is_idempotent() {
        let once = normalize(&live_vs(), "team-a");
        assert_eq!(normalize(&once, "team-a"), once);
        let (desired, _) = desired_object(
            &live_vs(),
            "team-a",
            "sync-agent",
            "namespaces/team-a/vs.yaml",
        );
        let again = normalize(&desired, "team-a");
        assert_eq!(normalize(&again, "team-a"), again);
    }

    #[test]
    fn desired_object_carries_ownership_and_a_stable_hash() {
        let (desired, hash) = desired_object(
            &live_vs(),
            "team-a",
            "sync-agent",
            "namespaces/team-a/vs.yaml",
        );
        assert!(is_owned_by(&desired, "team-a", "sync-agent"));
        assert!(!is_owned_by(&desired, "team-b", "sync-agent"));
        assert!(!is_owned_by(&desired, "team-a", "security"));
        // Applied before the agent label existed: the default agent's.
        let mut old = desired.clone();
        old["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove(LABEL_AGENT);
        assert!(is_owned_by(&old, "team-a", "sync-agent"));
        assert!(!is_owned_by(&old, "team-a", "security"));
        assert_eq!(
            desired["metadata"]["annotations"][ANNOTATION_HASH],
            hash.as_str()
        );
        assert_eq!(
            desired["metadata"]["annotations"][ANNOTATION_SOURCE],
            "namespaces/team-a/vs.yaml"
        );
        // Re-deriving from the applied object gives the same hash: the hash
        // and source annotations are not part of what is hashed.
        let (_, again) = desired_object(&desired, "team-a", "sync-agent", "elsewhere.yaml");
        assert_eq!(again, hash);
        // Golden value, cross-checked with Python's json.dumps(sort_keys=True,
        // separators=(",", ":")): pinned so it never changes by accident.
        assert_eq!(
            hash,
            "sha256:5ab7ada3f6908dd05b069edf581283eeb34c8a3ef9a8d8a2829706806f32cbc7"
        );
    }
}

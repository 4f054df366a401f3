//! How objects are written: YAML with a stable key order that people expect
//! from Kubernetes manifests (`apiVersion`, `kind`, `metadata`, `spec`, then
//! the rest; in `metadata`: `name`, `namespace`, `labels`, `annotations`,
//! then the rest; everywhere else sorted), whatever order the map keeps.

use anyhow::{Context as _, Result};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// The YAML text of one object or value, ending in a newline.
pub fn to_yaml(value: &Value) -> Result<String> {
    let mut text = serde_saphyr::to_string(&Ordered(value, Level::Root)).context("writing YAML")?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Metadata,
    Other,
}

const ROOT_ORDER: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
const METADATA_ORDER: &[&str] = &["name", "namespace", "labels", "annotations"];

struct Ordered<'a>(&'a Value, Level);

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let first = match self.1 {
                    Level::Root => ROOT_ORDER,
                    Level::Metadata => METADATA_ORDER,
                    Level::Other => &[],
                };
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_by_key(|k| {
                    (
                        first.iter().position(|f| f == k).unwrap_or(first.len()),
                        k.as_str(),
                    )
                });
                let mut m = serializer.serialize_map(Some(keys.len()))?;
                for key in keys {
                    let child = if self.1 == Level::Root && key == "metadata" {
                        Level::Metadata
                    } else {
                        Level::Other
                    };
                    m.serialize_entry(key, &Ordered(&map[key], child))?;
                }
                m.end()
            }
            Value::Array(items) => {
                let mut s = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    s.serialize_element(&Ordered(item, Level::Other))?;
                }
                s.end()
            }
            other => other.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_kubernetes_key_order() {
        let v = json!({
            "status": {"a": 1},
            "spec": {"http": [{"route": [{"weight": 80, "destination": {"host": "r"}}]}], "hosts": ["*"]},
            "metadata": {"annotations": {"b": "x: y"}, "namespace": "team-a", "name": "reviews"},
            "kind": "VirtualService",
            "apiVersion": "networking.istio.io/v1"
        });
        assert_eq!(
            to_yaml(&v).unwrap(),
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n  namespace: team-a\n  annotations:\n    b: \"x: y\"\nspec:\n  hosts:\n  - \"*\"\n  http:\n  - route:\n    - destination:\n        host: r\n      weight: 80\nstatus:\n  a: 1\n"
        );
    }

    #[test]
    fn round_trips_through_the_shared_loader() {
        let v = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"s": "080", "t": "true", "n": null, "e": {}, "l": [], "m": "a\nb\n"}});
        let text = to_yaml(&v).unwrap();
        let back = gitops_shared::manifest::parse_str(
            &text,
            std::path::Path::new("x.yaml"),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(back[0].object, v);
    }
}

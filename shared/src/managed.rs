//! Fields that kubectl owns on an object the agent manages.
//!
//! Server-side apply removes a field only when its field manager stops
//! applying it. If `kubectl apply` (client side), `kubectl edit` or `kubectl
//! patch` set a field, kubectl owns it, and the agent's apply never removes it.
//! So a field deleted in Git stays live, and so does a field added by hand
//! (kubernetes #99003). Flux fixed this in kustomize-controller (#486, #527)
//! by taking kubectl's managers over. This module does the same, in two
//! parts:
//!
//! * [`first_foreign_field`] finds a field that kubectl owns and Git does not
//!   set, so the plan sees a difference (an update, or drift on an object
//!   the agent already applied).
//! * [`take_over`] merges kubectl's entries into the agent's own `Apply`
//!   entry in `metadata.managedFields`. The next apply then removes what
//!   Git no longer sets.
//!
//! Another controller's own server-side apply (operation `Apply`) is left
//! alone: that is someone's deliberate ownership, not a leftover.

use std::fmt;

use serde::{
    Deserialize, Deserializer,
    de::{self, MapAccess, Visitor},
};
use serde_json::{Map, Value, json, value::RawValue};

/// Managers whose `Update` entries are kubectl's own writes, taken over.
pub const TAKEN_OVER: &[&str] = &[
    "kubectl",
    "kubectl-client-side-apply",
    "kubectl-edit",
    "kubectl-patch",
    "kubectl-replace",
    "kubectl-create",
    "kubectl-set",
    "kubectl-label",
    "kubectl-annotate",
    "before-first-apply",
];

fn is_taken_over(entry: &Value) -> bool {
    taken_over(
        entry["manager"].as_str(),
        entry["operation"].as_str(),
        entry["subresource"].as_str(),
    )
}

fn taken_over(manager: Option<&str>, operation: Option<&str>, subresource: Option<&str>) -> bool {
    operation == Some("Update")
        && subresource.is_none_or(str::is_empty)
        && manager.is_some_and(|m| TAKEN_OVER.contains(&m))
}

/// A live object parsed from JSON as [`slim`] leaves it, without building
/// the `managedFields` it drops: they are only scanned (with the field sets
/// they carry, they are about half of an applied object's JSON). Only for
/// `serde_json`'s own deserializers.
#[derive(Debug, Clone, PartialEq)]
pub struct SlimObject(pub Value);

impl<'de> Deserialize<'de> for SlimObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_map(Fields { metadata: false })
            .map(SlimObject)
    }
}

/// A map of an object (`metadata: false`) or of its metadata.
struct Fields {
    metadata: bool,
}

impl<'de> Visitor<'de> for Fields {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if self.metadata {
            "object metadata"
        } else {
            "an object"
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = match key.as_str() {
                "metadata" if !self.metadata => {
                    access.next_value_seed(Nested(Fields { metadata: true }))?
                }
                "managedFields" if self.metadata => {
                    let raw: Box<RawValue> = access.next_value()?;
                    #[derive(Deserialize)]
                    struct Head<'a> {
                        #[serde(borrow)]
                        manager: Option<std::borrow::Cow<'a, str>>,
                        #[serde(borrow)]
                        operation: Option<std::borrow::Cow<'a, str>>,
                        #[serde(borrow)]
                        subresource: Option<std::borrow::Cow<'a, str>>,
                    }
                    let heads: Option<Vec<Head>> =
                        serde_json::from_str(raw.get()).map_err(de::Error::custom)?;
                    let read = heads.unwrap_or_default().iter().any(|h| {
                        taken_over(
                            h.manager.as_deref(),
                            h.operation.as_deref(),
                            h.subresource.as_deref(),
                        )
                    });
                    if !read {
                        continue;
                    }
                    serde_json::from_str(raw.get()).map_err(de::Error::custom)?
                }
                _ => access.next_value()?,
            };
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// [`Fields`] as a seed for a map's value.
struct Nested(Fields);

impl<'de> de::DeserializeSeed<'de> for Nested {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_map(self.0)
    }
}

/// Drop `metadata.managedFields` from a live object when no entry in it is
/// one [`take_over`] and [`first_foreign_field`] read (kubectl's): the plan
/// of the object is then the same, and a listing of many objects holds a
/// fraction of the memory (an applied object's own entry mirrors its whole
/// spec).
pub fn slim(live: &mut Value) {
    let keep = live["metadata"]["managedFields"]
        .as_array()
        .is_some_and(|entries| entries.iter().any(is_taken_over));
    if !keep && let Some(metadata) = live.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
}

/// One step of a field path in `fieldsV1` notation.
#[derive(Debug, Clone, PartialEq)]
enum Element {
    /// `f:name`: a field of a map.
    Field(String),
    /// `k:{"name":"v1"}`: the list item with these key fields.
    Key(Map<String, Value>),
    /// `v:"x"`: the set item with this value.
    Value(Value),
    /// `i:3`: a list item by position.
    Index(usize),
}

fn element(key: &str) -> Option<Element> {
    let (kind, rest) = key.split_once(':')?;
    match kind {
        "f" => Some(Element::Field(rest.to_string())),
        "k" => serde_json::from_str(rest).ok().map(Element::Key),
        "v" => serde_json::from_str(rest).ok().map(Element::Value),
        "i" => rest.parse().ok().map(Element::Index),
        _ => None,
    }
}

/// The owned leaves of a `fieldsV1` tree: paths whose node is `{}` or
/// holds `"."` (the node itself is owned).
fn leaves(node: &Value, path: &mut Vec<Element>, out: &mut Vec<Vec<Element>>) {
    let Some(map) = node.as_object() else {
        return;
    };
    if map.is_empty() || map.contains_key(".") {
        if !path.is_empty() {
            out.push(path.clone());
        }
        if map.is_empty() {
            return;
        }
    }
    for (key, child) in map {
        if key == "." {
            continue;
        }
        let Some(e) = element(key) else { continue };
        path.push(e);
        leaves(child, path, out);
        path.pop();
    }
}

/// Whether `value` has the field at `path`.
fn has(value: &Value, path: &[Element]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return true;
    };
    match (first, value) {
        (Element::Field(name), Value::Object(m)) => m.get(name).is_some_and(|v| has(v, rest)),
        (Element::Key(keys), Value::Array(items)) => items
            .iter()
            .find(|item| keys.iter().all(|(k, v)| item.get(k) == Some(v)))
            .is_some_and(|item| has(item, rest)),
        (Element::Value(v), Value::Array(items)) => items.contains(v) && rest.is_empty(),
        (Element::Index(i), Value::Array(items)) => items.get(*i).is_some_and(|v| has(v, rest)),
        _ => false,
    }
}

fn show(path: &[Element]) -> String {
    let mut out = String::new();
    for e in path {
        match e {
            Element::Field(name) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Element::Key(keys) => {
                let inner: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", inner.join(",")));
            }
            Element::Value(v) => out.push_str(&format!("[{v}]")),
            Element::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The first field of `live` that one of kubectl's managers owns and
/// `desired` does not set, as `path: set live by <manager>, not in Git`.
/// `status` and the bookkeeping in `metadata` do not count.
pub fn first_foreign_field(desired: &Value, live: &Value) -> Option<String> {
    let entries = live["metadata"]["managedFields"].as_array()?;
    for entry in entries.iter().filter(|e| is_taken_over(e)) {
        let mut paths = Vec::new();
        leaves(&entry["fieldsV1"], &mut Vec::new(), &mut paths);
        for path in paths {
            let skip = match path.first() {
                Some(Element::Field(f)) if f == "status" => true,
                Some(Element::Field(f)) if f == "metadata" => {
                    // kubectl's own bookkeeping, and what the agent adds
                    // itself, are not intent.
                    path.get(1).is_none_or(|e| {
                        matches!(e, Element::Field(f) if f == "managedFields" || f == "resourceVersion")
                    })
                }
                _ => false,
            };
            if !skip && !has(desired, &path) {
                let manager = entry["manager"].as_str().unwrap_or("kubectl");
                return Some(format!(
                    "{}: set live by {manager}, not in Git",
                    show(&path)
                ));
            }
        }
    }
    None
}

/// Deep union of two `fieldsV1` trees.
fn union(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) => union(existing, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// `metadata.managedFields` of `live` with kubectl's entries merged into
/// `manager`'s `Apply` entry (made when missing); `None` when kubectl owns
/// nothing there.
pub fn take_over(live: &Value, manager: &str) -> Option<Value> {
    let entries = live["metadata"]["managedFields"].as_array()?;
    if !entries.iter().any(is_taken_over) {
        return None;
    }
    let mut merged = json!({});
    let mut kept = Vec::new();
    let mut ours: Option<Value> = None;
    for entry in entries {
        if is_taken_over(entry) {
            union(&mut merged, &entry["fieldsV1"]);
        } else if entry["manager"] == manager
            && entry["operation"] == "Apply"
            && entry["subresource"].as_str().is_none_or(str::is_empty)
        {
            ours = Some(entry.clone());
        } else {
            kept.push(entry.clone());
        }
    }
    let mut ours = ours.unwrap_or_else(|| {
        json!({
            "manager": manager,
            "operation": "Apply",
            "apiVersion": live["apiVersion"],
            "fieldsType": "FieldsV1",
            "fieldsV1": {},
        })
    });
    union(&mut ours["fieldsV1"], &merged);
    kept.insert(0, ours);
    Some(Value::Array(kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `kubectl apply` (client side) leaves on a DestinationRule.
    fn live() -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {
                "name": "reviews",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "managedFields": [
                    {"manager": "kubectl-client-side-apply", "operation": "Update",
                     "apiVersion": "networking.istio.io/v1", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
                                  "f:spec": {".": {}, "f:host": {}, "f:subsets": {},
                                             "f:trafficPolicy": {".": {}, "f:connectionPool": {".": {}, "f:tcp": {".": {}, "f:maxConnections": {}}}}}}},
                    {"manager": "istio-operator", "operation": "Apply",
                     "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:exportTo": {}}}}
                ]
            },
            "spec": {"host": "reviews", "subsets": [{"name": "v1"}], "exportTo": ["."],
                     "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 100}}}}
        })
    }

    #[test]
    fn a_field_kubectl_owns_and_git_dropped_is_found() {
        // As the agent applies it: its own annotations, no kubectl record.
        let desired = json!({"metadata": {"annotations": {"kubectl-gitops.io/hash": "sha256:x"}},
                             "spec": {"host": "reviews", "subsets": [{"name": "v1"}]}});
        assert_eq!(
            first_foreign_field(&desired, &live()).unwrap(),
            "metadata.annotations.kubectl.kubernetes.io/last-applied-configuration: set live by kubectl-client-side-apply, not in Git"
        );
        // With the annotation in Git too, the first is the traffic policy.
        let mut d = desired.clone();
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
            json!("{}");
        assert_eq!(
            first_foreign_field(&d, &live()).unwrap(),
            "spec.trafficPolicy: set live by kubectl-client-side-apply, not in Git"
        );
        // Git sets everything kubectl owns: nothing foreign. exportTo is
        // another controller's Apply and does not count.
        d["spec"]["trafficPolicy"] = json!({"connectionPool": {"tcp": {"maxConnections": 1}}});
        assert_eq!(first_foreign_field(&d, &live()), None);
    }

    #[test]
    fn keyed_list_items_and_set_values_are_followed() {
        let live = json!({"metadata": {"managedFields": [{"manager": "kubectl-edit", "operation": "Update",
            "fieldsV1": {"f:spec": {"f:subsets": {"k:{\"name\":\"v2\"}": {".": {}, "f:name": {}, "f:labels": {"f:version": {}}}},
                                    "f:hosts": {"v:\"reviews\"": {}}}}}]}});
        let desired = json!({"spec": {"hosts": ["reviews"], "subsets": [{"name": "v1"}, {"name": "v2", "labels": {"version": "v2"}}]}});
        assert_eq!(first_foreign_field(&desired, &live), None);
        let desired = json!({"spec": {"hosts": ["reviews"], "subsets": [{"name": "v1"}]}});
        assert_eq!(
            first_foreign_field(&desired, &live).unwrap(),
            "spec.subsets[name=\"v2\"]: set live by kubectl-edit, not in Git"
        );
    }

    #[test]
    fn a_slim_object_parses_to_what_slim_leaves() {
        let mut applied = live();
        applied["metadata"]["managedFields"][0]["manager"] = "kubectl-gitops".into();
        applied["metadata"]["managedFields"][0]["operation"] = "Apply".into();
        let mut status_only = live();
        status_only["metadata"]["managedFields"][0]["subresource"] = "status".into();
        let mut bare = live();
        bare["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        let mut null = live();
        null["metadata"]["managedFields"] = Value::Null;
        for object in [live(), applied, status_only, bare, null] {
            let text = object.to_string();
            let parsed: SlimObject = serde_json::from_str(&text).unwrap();
            let mut slimmed = object.clone();
            slim(&mut slimmed);
            assert_eq!(parsed.0, slimmed, "{text}");
        }
        // Kept whole where kubectl owns fields.
        let kept: SlimObject = serde_json::from_str(&live().to_string()).unwrap();
        assert_eq!(kept.0, live());
        // Not an object: an error, not a panic.
        assert!(serde_json::from_str::<SlimObject>("[1]").is_err());
        assert!(serde_json::from_str::<SlimObject>(r#"{"metadata": 3}"#).is_err());
        assert!(
            serde_json::from_str::<SlimObject>(r#"{"metadata": {"managedFields": 3}}"#).is_err()
        );
    }

    #[test]
    fn slim_keeps_managed_fields_only_where_kubectl_owns_some() {
        let desired = json!({"spec": {"host": "reviews", "subsets": [{"name": "v1"}]}});
        // kubectl owns fields: kept whole, and what reads it says the same
        let mut kept = live();
        slim(&mut kept);
        assert_eq!(kept, live());
        assert_eq!(
            take_over(&kept, "kubectl-gitops"),
            take_over(&live(), "kubectl-gitops")
        );
        // only the agent and another applier: dropped, and nothing that
        // reads it can tell
        let mut applied = live();
        applied["metadata"]["managedFields"][0]["manager"] = "kubectl-gitops".into();
        applied["metadata"]["managedFields"][0]["operation"] = "Apply".into();
        let before = (
            take_over(&applied, "kubectl-gitops"),
            first_foreign_field(&desired, &applied),
        );
        slim(&mut applied);
        assert!(applied["metadata"].get("managedFields").is_none());
        assert_eq!(
            before,
            (
                take_over(&applied, "kubectl-gitops"),
                first_foreign_field(&desired, &applied)
            )
        );
        assert_eq!(applied["metadata"]["name"], "reviews");
    }

    #[test]
    fn take_over_merges_kubectl_into_the_agents_apply_entry() {
        let mut live = live();
        live["metadata"]["managedFields"]
            .as_array_mut()
            .unwrap()
            .push(json!({"manager": "kubectl-gitops", "operation": "Apply",
                         "fieldsV1": {"f:metadata": {"f:labels": {"f:app.kubernetes.io/managed-by": {}}}}}));
        let fields = take_over(&live, "kubectl-gitops").unwrap();
        let fields = fields.as_array().unwrap();
        assert_eq!(fields.len(), 2, "{fields:?}");
        assert_eq!(fields[0]["manager"], "kubectl-gitops");
        assert_eq!(fields[0]["operation"], "Apply");
        let f = &fields[0]["fieldsV1"];
        assert!(f["f:spec"]["f:trafficPolicy"]["f:connectionPool"].is_object());
        assert!(f["f:metadata"]["f:labels"]["f:app.kubernetes.io/managed-by"].is_object());
        assert_eq!(fields[1]["manager"], "istio-operator");
        // Nothing of kubectl's left: nothing to take over.
        let mut after = live.clone();
        after["metadata"]["managedFields"] = Value::Array(fields.clone());
        assert_eq!(take_over(&after, "kubectl-gitops"), None);
    }
}

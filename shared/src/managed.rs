//! Fields that managers other than the agent's own on an object it manages.
//!
//! Server-side apply removes a field only when its field manager stops
//! applying it. If `kubectl apply` (client side), `kubectl edit`, `kubectl
//! patch` or another tool's server-side apply set a field, that manager owns
//! it, and the agent's apply never removes it. So a field deleted in Git
//! stays live, and so does a field added by hand (kubernetes #99003). Flux
//! fixed this in kustomize-controller (#486, #527) by taking kubectl's
//! managers over. This module does it for every manager but the agent's
//! (DESIGN.md, "Drift"), in two parts:
//!
//! * [`foreign_field`] finds a field of `spec`, a label or an annotation that
//!   another manager owns: drift whatever its value, named with the manager
//!   (`changed by kubectl-edit: spec.http[0].fault`).
//! * [`take_over`] moves those fields into the agent's own `Apply` entry in
//!   `metadata.managedFields`. The next apply then removes what Git does not
//!   set, and the agent is the only owner of `spec`.
//!
//! Entries of a subresource (`status`, written by istiod) are left alone, and
//! so is what others own elsewhere in `metadata` (finalizers, owner references).

use std::fmt;

use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeSeed, MapAccess, Visitor},
};
use serde_json::{Map, Value, json, value::RawValue};

use crate::drift::{Shape, compare_whole};

/// Whether a `managedFields` entry is another manager's write of the object
/// itself (not of a subresource).
fn is_foreign(entry: &Value, manager: &str) -> bool {
    foreign(
        entry["manager"].as_str(),
        entry["subresource"].as_str(),
        manager,
    )
}

fn foreign(entry_manager: Option<&str>, subresource: Option<&str>, manager: &str) -> bool {
    subresource.is_none_or(str::is_empty) && entry_manager != Some(manager)
}

/// A live object parsed from JSON as [`slim`] leaves it, without building
/// the `managedFields` it drops: they are only scanned (with the field sets
/// they carry, they are about half of an applied object's JSON). `manager`
/// is the agent's field manager. Only for `serde_json`'s own deserializers.
#[derive(Debug, Clone, Copy)]
pub struct Slim<'a> {
    pub manager: &'a str,
}

impl<'de> DeserializeSeed<'de> for Slim<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_map(Fields {
            metadata: false,
            manager: self.manager,
        })
    }
}

impl Slim<'_> {
    /// `text`, one object, parsed slim.
    pub fn parse(self, text: &str) -> Result<Value, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(text);
        let value = self.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

/// A map of an object (`metadata: false`) or of its metadata.
struct Fields<'a> {
    metadata: bool,
    manager: &'a str,
}

impl<'de> Visitor<'de> for Fields<'_> {
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
                "metadata" if !self.metadata => access.next_value_seed(Fields {
                    metadata: true,
                    manager: self.manager,
                })?,
                "managedFields" if self.metadata => {
                    let raw: Box<RawValue> = access.next_value()?;
                    #[derive(Deserialize)]
                    struct Head<'a> {
                        #[serde(borrow)]
                        manager: Option<std::borrow::Cow<'a, str>>,
                        #[serde(borrow)]
                        subresource: Option<std::borrow::Cow<'a, str>>,
                    }
                    let heads: Option<Vec<Head>> =
                        serde_json::from_str(raw.get()).map_err(de::Error::custom)?;
                    let read = heads.unwrap_or_default().iter().any(|h| {
                        foreign(h.manager.as_deref(), h.subresource.as_deref(), self.manager)
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

impl<'de> DeserializeSeed<'de> for Fields<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

/// Drop `metadata.managedFields` from a live object when every entry in it
/// is the agent's (`manager`) or a subresource's: the plan of the object is
/// then the same, and a listing of many objects holds a fraction of the
/// memory (an applied object's own entry mirrors its whole spec).
pub fn slim(live: &mut Value, manager: &str) {
    let keep = live["metadata"]["managedFields"]
        .as_array()
        .is_some_and(|entries| entries.iter().any(|e| is_foreign(e, manager)));
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

/// The owned leaves of a `fieldsV1` tree: paths whose node holds nothing
/// but perhaps `"."` (the node itself is owned, nothing below it is listed).
fn leaves(node: &Value, path: &mut Vec<Element>, out: &mut Vec<Vec<Element>>) {
    let Some(map) = node.as_object() else {
        return;
    };
    if map.keys().all(|k| k == ".") {
        if !path.is_empty() {
            out.push(path.clone());
        }
        return;
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

/// The value at `path` in `value`.
fn at<'v>(value: &'v Value, path: &[Element]) -> Option<&'v Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(value);
    };
    let next = match (first, value) {
        (Element::Field(name), Value::Object(m)) => m.get(name),
        (Element::Key(keys), Value::Array(items)) => items
            .iter()
            .find(|item| keys.iter().all(|(k, v)| item.get(k) == Some(v))),
        (Element::Value(v), Value::Array(items)) => items.iter().find(|item| *item == v),
        (Element::Index(i), Value::Array(items)) => items.get(*i),
        _ => None,
    }?;
    at(next, rest)
}

/// The shape of the field at `path` below `shape`.
fn shape_at<'s>(shape: Option<&'s Shape>, path: &[Element]) -> Option<&'s Shape> {
    path.iter().try_fold(shape?, |shape, e| match e {
        Element::Field(name) => shape.field(name),
        _ => shape.items.as_deref(),
    })
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

/// Whether an owned path is intent (DESIGN.md, "Drift"): a field of
/// `spec`, a label or an annotation. The rest of `metadata` is bookkeeping.
fn is_intent(path: &[Element]) -> bool {
    match path {
        [Element::Field(f), ..] if f == "spec" => true,
        [Element::Field(m), Element::Field(f), _, ..] if m == "metadata" => {
            f == "labels" || f == "annotations"
        }
        _ => false,
    }
}

/// The first field of `spec`, label or annotation of `live` that a manager
/// other than `manager` owns, as `changed by <manager>: <path>`, whatever
/// its value. The path is where the live object leaves Git's `desired`
/// (defaulted as the server defaults): the first level Git does not have,
/// or inside what the manager owns, the first field that differs
/// (`spec.http[0].fault` when it owns the atomic list `spec.http`). Fields
/// of `spec` come before labels and annotations.
pub fn foreign_field(
    desired: &Value,
    live: &Value,
    shape: Option<&Shape>,
    manager: &str,
) -> Option<String> {
    let mut owned = foreign_intent(live, manager);
    // spec first (a stable sort keeps each manager's order)
    owned.sort_by_key(|(path, _)| !matches!(path.first(), Some(Element::Field(f)) if f == "spec"));
    // Where the live value leaves Git's, if anywhere: the first level Git
    // does not have, or the first field inside that differs.
    let differs = |path: &[Element]| -> Option<Option<String>> {
        let live_value = at(live, path)?; // an entry that outlived its field
        let missing = (1..=path.len()).find(|&n| at(desired, &path[..n]).is_none());
        Some(match (missing, at(desired, path)) {
            (Some(n), _) => Some(show(&path[..n])),
            (None, Some(git)) => {
                compare_whole(git, live_value, shape_at(shape, path), &show(path)).map(|d| d.path)
            }
            (None, None) => None,
        })
    };
    // A field someone changed is a better reason than one they set to Git's
    // value; either is drift.
    let mut same_value = None;
    for (path, who) in &owned {
        match differs(path) {
            Some(Some(shown)) => return Some(format!("changed by {who}: {shown}")),
            Some(None) if same_value.is_none() => {
                same_value = Some(format!("changed by {who}: {}", show(path)));
            }
            _ => {}
        }
    }
    same_value
}

/// The owned leaves of `spec`, labels and annotations of every entry of a
/// manager other than `manager`, each with that manager's name, in the
/// order of `managedFields`.
fn foreign_intent<'v>(live: &'v Value, manager: &str) -> Vec<(Vec<Element>, &'v str)> {
    let Some(entries) = live["metadata"]["managedFields"].as_array() else {
        return Vec::new();
    };
    let mut owned = Vec::new();
    for entry in entries.iter().filter(|e| is_foreign(e, manager)) {
        let mut paths = Vec::new();
        leaves(&entry["fieldsV1"], &mut Vec::new(), &mut paths);
        let who = entry["manager"]
            .as_str()
            .unwrap_or("a manager without a name");
        owned.extend(paths.into_iter().filter(|p| is_intent(p)).map(|p| (p, who)));
    }
    owned
}

/// The fields of `spec`, labels and annotations that managers other than
/// `manager` own, each as the names of the fields down to it (up to the
/// first list element): what `kubectl gitops diff` shows beside Git's.
pub fn foreign_field_paths(live: &Value, manager: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (path, _) in foreign_intent(live, manager) {
        let names: Vec<String> = path
            .iter()
            .map_while(|e| match e {
                Element::Field(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        if !out.contains(&names) {
            out.push(names);
        }
    }
    out
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

/// Whether a `fieldsV1` node owns nothing (no keys, or only `"."`).
fn owns_nothing(node: &Value) -> bool {
    node.as_object().is_none_or(|m| m.keys().all(|k| k == "."))
}

/// A `fieldsV1` tree split in what [`take_over`] takes (`f:spec`, the
/// labels and the annotations) and the rest; `None` for an empty part.
fn split(fields: &Value) -> (Option<Value>, Option<Value>) {
    let mut rest = fields.clone();
    let mut taken = Map::new();
    if let Some(map) = rest.as_object_mut() {
        if let Some(spec) = map.remove("f:spec") {
            taken.insert("f:spec".into(), spec);
        }
        if let Some(Value::Object(metadata)) = map.get_mut("f:metadata") {
            let mut meta = Map::new();
            for field in ["f:labels", "f:annotations"] {
                if let Some(v) = metadata.remove(field) {
                    meta.insert(field.into(), v);
                }
            }
            if !meta.is_empty() {
                taken.insert("f:metadata".into(), Value::Object(meta));
            }
        }
        if map.get("f:metadata").is_some_and(owns_nothing) {
            map.remove("f:metadata");
        }
    }
    let taken = (!taken.is_empty()).then_some(Value::Object(taken));
    let rest = (!owns_nothing(&rest)).then_some(rest);
    (taken, rest)
}

/// `metadata.managedFields` of `live` with what other managers own of
/// `spec`, the labels and the annotations merged into `manager`'s `Apply`
/// entry (made when missing); an entry left owning nothing is dropped.
/// `None` when no other manager owns any of those.
pub fn take_over(live: &Value, manager: &str) -> Option<Value> {
    let entries = live["metadata"]["managedFields"].as_array()?;
    let mut merged = json!({});
    let mut took = false;
    let mut kept = Vec::new();
    let mut ours: Option<Value> = None;
    for entry in entries {
        if is_foreign(entry, manager) {
            let (taken, rest) = split(&entry["fieldsV1"]);
            if let Some(taken) = taken {
                union(&mut merged, &taken);
                took = true;
            }
            if let Some(rest) = rest {
                let mut entry = entry.clone();
                entry["fieldsV1"] = rest;
                kept.push(entry);
            }
        } else if entry["manager"] == manager
            && entry["operation"] == "Apply"
            && entry["subresource"].as_str().is_none_or(str::is_empty)
        {
            ours = Some(entry.clone());
        } else {
            kept.push(entry.clone());
        }
    }
    if !took {
        return None;
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

    const AGENT: &str = "kubectl-gitops";

    /// What `kubectl apply` (client side) leaves on a DestinationRule, and
    /// another tool's server-side apply beside it.
    fn live() -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {
                "name": "reviews",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "finalizers": ["x"],
                "managedFields": [
                    {"manager": "kubectl-client-side-apply", "operation": "Update",
                     "apiVersion": "networking.istio.io/v1", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
                                  "f:spec": {".": {}, "f:host": {}, "f:subsets": {},
                                             "f:trafficPolicy": {".": {}, "f:connectionPool": {".": {}, "f:tcp": {".": {}, "f:maxConnections": {}}}}}}},
                    {"manager": "istio-operator", "operation": "Apply",
                     "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:finalizers": {}}, "f:spec": {"f:exportTo": {}}}},
                    {"manager": "pilot-discovery", "operation": "Update", "subresource": "status",
                     "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:conditions": {}}}}
                ]
            },
            "spec": {"host": "reviews", "subsets": [{"name": "v1"}], "exportTo": ["."],
                     "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 100}}}}
        })
    }

    #[test]
    fn a_field_another_manager_owns_is_named_with_the_manager() {
        let desired = json!({"metadata": {"annotations": {"kubectl-gitops.io/hash": "sha256:x"}},
                             "spec": {"host": "reviews", "subsets": [{"name": "v1"}]}});
        // Fields of spec first; the first level Git does not have.
        assert_eq!(
            foreign_field(&desired, &live(), None, AGENT).unwrap(),
            "changed by kubectl-client-side-apply: spec.trafficPolicy"
        );
        // Git sets the same values: still drift, whoever owns them.
        let mut d = desired.clone();
        d["spec"]["trafficPolicy"] = json!({"connectionPool": {"tcp": {"maxConnections": 100}}});
        d["spec"]["exportTo"] = json!(["."]);
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
            json!("{}");
        assert_eq!(
            foreign_field(&d, &live(), None, AGENT).unwrap(),
            "changed by kubectl-client-side-apply: spec.host"
        );
        // Only the agent and a subresource: nothing foreign.
        let mut own = live();
        own["metadata"]["managedFields"][0]["manager"] = AGENT.into();
        own["metadata"]["managedFields"][1]["manager"] = AGENT.into();
        assert_eq!(foreign_field(&desired, &own, None, AGENT), None);
        // Another tool's finalizer is not intent.
        let mut finalizer = own.clone();
        finalizer["metadata"]["managedFields"][1]["manager"] = "istio-operator".into();
        finalizer["metadata"]["managedFields"][1]["fieldsV1"] =
            json!({"f:metadata": {"f:finalizers": {}}});
        assert_eq!(foreign_field(&desired, &finalizer, None, AGENT), None);
    }

    #[test]
    fn inside_an_owned_atomic_list_the_field_that_differs_is_named() {
        let desired =
            json!({"spec": {"http": [{"route": [{"destination": {"host": "reviews"}}]}]}});
        let live = json!({"metadata": {"managedFields": [
                {"manager": AGENT, "operation": "Apply", "fieldsV1": {"f:spec": {"f:hosts": {}}}},
                {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:spec": {"f:http": {}}}}]},
            "spec": {"http": [{"fault": {"abort": {"httpStatus": 503}}, "route": [{"destination": {"host": "reviews"}}]}]}});
        assert_eq!(
            foreign_field(&desired, &live, None, AGENT).unwrap(),
            "changed by kubectl-edit: spec.http[0].fault"
        );
    }

    #[test]
    fn keyed_list_items_and_labels_are_followed() {
        let live = json!({"metadata": {"labels": {"team": "a", "x": "y"}, "managedFields": [{"manager": "kubectl-label", "operation": "Update",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:x": {}}}}}, {"manager": "other-tool", "operation": "Apply",
            "fieldsV1": {"f:spec": {"f:subsets": {"k:{\"name\":\"v2\"}": {".": {}, "f:name": {}, "f:labels": {"f:version": {}}}}}}}]},
            "spec": {"subsets": [{"name": "v1"}, {"name": "v2", "labels": {"version": "v2"}}]}});
        let desired =
            json!({"metadata": {"labels": {"team": "a"}}, "spec": {"subsets": [{"name": "v1"}]}});
        assert_eq!(
            foreign_field(&desired, &live, None, AGENT).unwrap(),
            "changed by other-tool: spec.subsets[name=\"v2\"]"
        );
        let mut only_label = live.clone();
        only_label["metadata"]["managedFields"]
            .as_array_mut()
            .unwrap()
            .pop();
        assert_eq!(
            foreign_field(&desired, &only_label, None, AGENT).unwrap(),
            "changed by kubectl-label: metadata.labels.x"
        );
    }

    #[test]
    fn a_slim_object_parses_to_what_slim_leaves() {
        let mut applied = live();
        for entry in applied["metadata"]["managedFields"].as_array_mut().unwrap() {
            if entry["subresource"].is_null() {
                entry["manager"] = AGENT.into();
            }
        }
        let mut bare = live();
        bare["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        let mut null = live();
        null["metadata"]["managedFields"] = Value::Null;
        for object in [live(), applied.clone(), bare, null] {
            let text = object.to_string();
            let parsed = Slim { manager: AGENT }.parse(&text).unwrap();
            let mut slimmed = object.clone();
            slim(&mut slimmed, AGENT);
            assert_eq!(parsed, slimmed, "{text}");
        }
        // Kept whole where another manager owns fields; dropped where only
        // the agent and a subresource do.
        assert_eq!(
            Slim { manager: AGENT }.parse(&live().to_string()).unwrap(),
            live()
        );
        let parsed = Slim { manager: AGENT }.parse(&applied.to_string()).unwrap();
        assert!(parsed["metadata"].get("managedFields").is_none());
        // Not an object: an error, not a panic.
        let slim = Slim { manager: AGENT };
        assert!(slim.parse("[1]").is_err());
        assert!(slim.parse(r#"{"metadata": 3}"#).is_err());
        assert!(slim.parse(r#"{"metadata": {"managedFields": 3}}"#).is_err());
    }

    #[test]
    fn take_over_moves_what_others_own_of_spec_labels_and_annotations() {
        let mut live = live();
        live["metadata"]["managedFields"]
            .as_array_mut()
            .unwrap()
            .push(json!({"manager": AGENT, "operation": "Apply",
                         "fieldsV1": {"f:metadata": {"f:labels": {"f:app.kubernetes.io/managed-by": {}}}}}));
        let fields = take_over(&live, AGENT).unwrap();
        let fields = fields.as_array().unwrap();
        // ours first; kubectl's entry is gone (it owned nothing else); the
        // operator keeps its finalizer; the status entry is untouched
        let managers: Vec<&str> = fields
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(
            managers,
            [AGENT, "istio-operator", "pilot-discovery"],
            "{fields:?}"
        );
        assert_eq!(fields[0]["operation"], "Apply");
        let f = &fields[0]["fieldsV1"];
        assert!(f["f:spec"]["f:trafficPolicy"]["f:connectionPool"].is_object());
        assert!(f["f:spec"]["f:exportTo"].is_object());
        assert!(f["f:metadata"]["f:labels"]["f:app.kubernetes.io/managed-by"].is_object());
        assert!(
            f["f:metadata"]["f:annotations"]["f:kubectl.kubernetes.io/last-applied-configuration"]
                .is_object()
        );
        assert_eq!(
            fields[1]["fieldsV1"],
            json!({"f:metadata": {"f:finalizers": {}}})
        );
        // Nothing of others' left: nothing to take over, nothing foreign.
        let mut after = live.clone();
        after["metadata"]["managedFields"] = Value::Array(fields.clone());
        assert_eq!(take_over(&after, AGENT), None);
        assert_eq!(foreign_field(&json!({}), &after, None, AGENT), None);
    }
}

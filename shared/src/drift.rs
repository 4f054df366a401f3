//! What drift is (DESIGN.md, "Drift"): Git's object against the live one,
//! compared the way the API server merges them, and who changed what.
//!
//! * Lists follow the CRD schema's `x-kubernetes-list-type` ([`Shape`], read
//!   from the server's OpenAPI v3 by `gitops-kube`): absent means atomic, and
//!   an atomic list is compared whole, fields Git does not set inside its
//!   elements included (a `fault` added by hand inside `spec.http[0]` is
//!   drift); the elements of a `map` list are matched by their keys; a `set`
//!   list compares as a set.
//! * Values the server fills in from schema defaults are not drift: Git's
//!   object is defaulted the way the server defaults it ([`Shape::default_into`])
//!   before it is compared.
//! * A field of `spec`, a label or an annotation owned in `managedFields` by
//!   a manager other than the agent's is drift whatever its value
//!   ([`crate::managed::foreign_field`]).
//!
//! [`difference`] is the one decision, made by the shared plan for both
//! `kubectl gitops diff` and the agent.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// How the server merges a list (`x-kubernetes-list-type`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ListType {
    /// Replaced whole; the default when the schema says nothing.
    #[default]
    Atomic,
    /// Elements are merged by these key fields.
    Map(Vec<String>),
    /// Elements are scalars merged as a set.
    Set,
}

/// The part of a structural schema that drift needs: list types, map types
/// and defaults. Nodes that hold none of these (the great majority) are left
/// out, so a kind's shape is small: Istio's VirtualService keeps a handful of
/// nodes of its thousands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shape {
    /// For an array: how its elements merge.
    pub list: ListType,
    /// `x-kubernetes-map-type: atomic`: an object replaced whole.
    pub atomic_map: bool,
    /// The value the server fills in when the field is absent.
    pub default: Option<Value>,
    /// Fields of an object whose shape is not trivial.
    pub properties: BTreeMap<String, Shape>,
    /// The elements of an array.
    pub items: Option<Box<Shape>>,
    /// The values of a map (`additionalProperties`).
    pub values: Option<Box<Shape>>,
}

/// A schema as the server publishes it (OpenAPI v3, or a CRD's
/// `openAPIV3Schema`), read for what [`Shape`] keeps; descriptions and the
/// rest are skipped as they are parsed, never built.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawSchema {
    properties: BTreeMap<String, RawSchema>,
    items: Option<Box<RawSchema>>,
    #[serde(rename = "additionalProperties")]
    additional: Option<Additional>,
    default: Option<Value>,
    #[serde(rename = "x-kubernetes-list-type")]
    list_type: Option<String>,
    #[serde(rename = "x-kubernetes-list-map-keys")]
    map_keys: Vec<String>,
    #[serde(rename = "x-kubernetes-map-type")]
    map_type: Option<String>,
    /// In an OpenAPI document: which kinds this schema is.
    #[serde(rename = "x-kubernetes-group-version-kind")]
    kinds: Vec<GroupVersionKind>,
}

/// One of a schema's `x-kubernetes-group-version-kind`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct GroupVersionKind {
    pub group: String,
    pub version: String,
    pub kind: String,
}

#[derive(Deserialize)]
struct OpenApiDocument {
    #[serde(default)]
    components: OpenApiComponents,
}

#[derive(Default, Deserialize)]
struct OpenApiComponents {
    #[serde(default)]
    schemas: BTreeMap<String, RawSchema>,
}

/// The shape of every kind an OpenAPI v3 document of the server describes
/// (`/openapi/v3/apis/<group>/<version>`), by its group, version and kind.
pub fn openapi_shapes(json: &str) -> Result<Vec<(GroupVersionKind, Shape)>, serde_json::Error> {
    let document: OpenApiDocument = serde_json::from_str(json)?;
    let mut out = Vec::new();
    for (_, mut schema) in document.components.schemas {
        let kinds = std::mem::take(&mut schema.kinds);
        if kinds.is_empty() {
            continue;
        }
        let shape = Shape::from(schema);
        out.extend(kinds.into_iter().map(|gvk| (gvk, shape.clone())));
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Additional {
    Schema(Box<RawSchema>),
    Allowed(#[allow(dead_code)] bool),
}

impl From<RawSchema> for Shape {
    fn from(raw: RawSchema) -> Self {
        let list = match raw.list_type.as_deref() {
            Some("map") => ListType::Map(raw.map_keys),
            Some("set") => ListType::Set,
            _ => ListType::Atomic,
        };
        let nontrivial = |raw: RawSchema| Some(Shape::from(raw)).filter(|s| !s.is_trivial());
        Shape {
            list,
            atomic_map: raw.map_type.as_deref() == Some("atomic"),
            default: raw.default,
            properties: raw
                .properties
                .into_iter()
                .filter_map(|(name, schema)| Some((name, nontrivial(schema)?)))
                .collect(),
            items: raw.items.and_then(|s| nontrivial(*s)).map(Box::new),
            values: match raw.additional {
                Some(Additional::Schema(s)) => nontrivial(*s).map(Box::new),
                _ => None,
            },
        }
    }
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RawSchema::deserialize(deserializer).map(Shape::from)
    }
}

impl Shape {
    /// A node that changes nothing: an atomic list or a granular map with no
    /// default and nothing below that matters.
    pub fn is_trivial(&self) -> bool {
        *self == Shape::default()
    }

    /// The shape of field `name` of an object of this shape.
    pub fn field(&self, name: &str) -> Option<&Shape> {
        self.properties.get(name).or(self.values.as_deref())
    }

    /// Fill in `value` the defaults the server would, as the API server's
    /// structural defaulting does: a field absent (or null) whose schema has a
    /// default gets it, then every field and element is defaulted in turn.
    pub fn default_into(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (name, shape) in &self.properties {
                    if let Some(default) = &shape.default
                        && map.get(name).is_none_or(Value::is_null)
                    {
                        map.insert(name.clone(), default.clone());
                    }
                }
                for (name, child) in map.iter_mut() {
                    if let Some(shape) = self.field(name) {
                        shape.default_into(child);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(shape) = &self.items {
                    items.iter_mut().for_each(|item| shape.default_into(item));
                }
            }
            _ => {}
        }
    }
}

/// The shapes of the kinds a plan compares, by (group, kind): Istio's
/// versions of a kind share one schema, and the server's list types and
/// defaults are the same at each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schemas(BTreeMap<(String, String), Shape>);

impl Schemas {
    pub fn insert(&mut self, group: &str, kind: &str, shape: Shape) {
        self.0.insert((group.to_string(), kind.to_string()), shape);
    }

    /// The shape of a kind; `None` when the server's was not read (every
    /// list is then atomic, as the server treats a list the schema says
    /// nothing of, and nothing is defaulted).
    pub fn get(&self, group: &str, kind: &str) -> Option<&Shape> {
        self.0.get(&(group.to_string(), kind.to_string()))
    }

    pub fn contains(&self, group: &str, kind: &str) -> bool {
        self.get(group, kind).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where a difference is, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// `spec.http[0].fault`, `spec.subsets[name="v2"]`.
    pub path: String,
    /// `set in Git, absent live`, `not in Git`, `Git has 80, live has 50`.
    pub what: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.what)
    }
}

/// Why `live` is not Git's `desired` object (as the agent applies it, its
/// source annotation already the live one's), or `None` when it is: first a
/// field that a manager other than `manager` owns (`changed by kubectl-edit:
/// spec.http[0].fault`), then the first value that differs. `shape` is the
/// kind's schema, when the server's was read.
pub fn difference(
    desired: &Value,
    live: &Value,
    shape: Option<&Shape>,
    manager: &str,
) -> Option<String> {
    let mut desired = desired.clone();
    if let Some(shape) = shape {
        shape.default_into(&mut desired);
    }
    if let Some(foreign) = crate::managed::foreign_field(&desired, live, shape, manager) {
        return Some(foreign);
    }
    first_difference(&desired, live, shape).map(|d| d.to_string())
}

/// The first place where `live` differs from `desired` (already defaulted),
/// the way the server merges: in an object only the fields Git sets are
/// compared (others belong to whoever set them; [`crate::managed::foreign_field`]
/// judges those), except inside an atomic list or map, which is compared
/// whole. `apiVersion` is not compared: the server answers in the version it
/// was asked for.
pub fn first_difference(
    desired: &Value,
    live: &Value,
    shape: Option<&Shape>,
) -> Option<Difference> {
    let mut path = String::new();
    compare(desired, live, shape, false, &mut path, true)
}

/// [`first_difference`] below `path`; `whole`: live fields Git does not set
/// are differences too (inside an atomic list or map).
pub(crate) fn compare_whole(
    desired: &Value,
    live: &Value,
    shape: Option<&Shape>,
    path: &str,
) -> Option<Difference> {
    let mut path = path.to_string();
    compare(desired, live, shape, true, &mut path, false)
}

fn found(path: &str, what: String) -> Option<Difference> {
    Some(Difference {
        path: path.to_string(),
        what,
    })
}

/// Appends `.name` (or `name` at the root) to `path` for the length of `f`.
fn in_field<T>(path: &mut String, name: &str, f: impl FnOnce(&mut String) -> T) -> T {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(name);
    let out = f(path);
    path.truncate(len);
    out
}

fn in_element<T>(path: &mut String, element: &str, f: impl FnOnce(&mut String) -> T) -> T {
    let len = path.len();
    path.push('[');
    path.push_str(element);
    path.push(']');
    let out = f(path);
    path.truncate(len);
    out
}

/// `name="v1",port=80`: a map list element's keys, as `managedFields` paths show them.
fn key_of(item: &Value, keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("{k}={}", item.get(k).unwrap_or(&Value::Null)))
        .collect::<Vec<_>>()
        .join(",")
}

fn same_keys(a: &Value, b: &Value, keys: &[String]) -> bool {
    keys.iter()
        .all(|k| a.get(k).unwrap_or(&Value::Null) == b.get(k).unwrap_or(&Value::Null))
}

fn equal(d: &Value, l: &Value) -> bool {
    match (d, l) {
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(d, l)| equal(d, l))
        }
        (Value::Object(d), Value::Object(l)) => {
            d.len() == l.len() && d.iter().all(|(k, d)| l.get(k).is_some_and(|l| equal(d, l)))
        }
        (d, l) => d == l,
    }
}

fn compare(
    desired: &Value,
    live: &Value,
    shape: Option<&Shape>,
    whole: bool,
    path: &mut String,
    root: bool,
) -> Option<Difference> {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            let whole = whole || shape.is_some_and(|s| s.atomic_map);
            for (key, dv) in d {
                if root && key == "apiVersion" {
                    continue;
                }
                let child = shape.and_then(|s| s.field(key));
                let diff = in_field(path, key, |path| match l.get(key) {
                    None if dv.is_null() => None,
                    None => found(path, "set in Git, absent live".into()),
                    Some(lv) => compare(dv, lv, child, whole, path, false),
                });
                if diff.is_some() {
                    return diff;
                }
            }
            if whole {
                for (key, lv) in l {
                    if !d.contains_key(key) && !lv.is_null() {
                        return in_field(path, key, |path| found(path, "not in Git".into()));
                    }
                }
            }
            None
        }
        (Value::Array(d), Value::Array(l)) => {
            let items = shape.and_then(|s| s.items.as_deref());
            match shape.map(|s| &s.list) {
                Some(ListType::Set) => {
                    if let Some(v) = d.iter().find(|v| !l.iter().any(|lv| equal(v, lv))) {
                        return found(path, format!("{v} set in Git, absent live"));
                    }
                    l.iter()
                        .find(|v| !d.iter().any(|dv| equal(dv, v)))
                        .and_then(|v| found(path, format!("{v} not in Git")))
                }
                Some(ListType::Map(keys)) => {
                    for dv in d {
                        let diff = in_element(path, &key_of(dv, keys), |path| {
                            match l.iter().find(|lv| same_keys(dv, lv, keys)) {
                                None => found(path, "set in Git, absent live".into()),
                                Some(lv) => compare(dv, lv, items, whole, path, false),
                            }
                        });
                        if diff.is_some() {
                            return diff;
                        }
                    }
                    l.iter()
                        .find(|lv| !d.iter().any(|dv| same_keys(dv, lv, keys)))
                        .and_then(|lv| {
                            in_element(path, &key_of(lv, keys), |path| {
                                found(path, "not in Git".into())
                            })
                        })
                }
                Some(ListType::Atomic) | None => {
                    if d.len() != l.len() {
                        return found(path, format!("{} items in Git, {} live", d.len(), l.len()));
                    }
                    d.iter().zip(l).enumerate().find_map(|(i, (dv, lv))| {
                        in_element(path, &i.to_string(), |path| {
                            compare(dv, lv, items, true, path, false)
                        })
                    })
                }
            }
        }
        (d, l) if equal(d, l) => None,
        (d, l) => found(path, format!("Git has {d}, live has {l}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A schema in the CRD's own words.
    fn shape(schema: Value) -> Shape {
        serde_json::from_value(schema).unwrap()
    }

    fn ports_schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "hosts": {"type": "array", "items": {"type": "string"}},
            "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port"],
                      "items": {"type": "object", "properties": {
                          "port": {"type": "integer"},
                          "protocol": {"type": "string", "default": "TCP"}}}},
            "http": {"type": "array", "description": "routes", "items": {"type": "object",
                     "properties": {"timeout": {"type": "string"}}}},
        }}}})
    }

    #[test]
    fn only_what_matters_of_a_schema_is_kept() {
        let s = shape(ports_schema());
        let spec = s.field("spec").unwrap();
        // hosts and http are atomic lists with nothing below: trivial, left out
        assert_eq!(
            spec.properties.keys().collect::<Vec<_>>(),
            ["ports", "tags"]
        );
        assert_eq!(spec.field("tags").unwrap().list, ListType::Set);
        let ports = spec.field("ports").unwrap();
        assert_eq!(ports.list, ListType::Map(vec!["port".into()]));
        assert_eq!(
            ports
                .items
                .as_ref()
                .unwrap()
                .field("protocol")
                .unwrap()
                .default,
            Some(json!("TCP"))
        );
    }

    #[test]
    fn istio_crds_keep_their_list_types_and_lose_the_rest() {
        let crds = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/testdata/istio-crds.yaml"
        ))
        .expect("Istio's CRDs beside the repo, in ../shared/testdata");
        let mut found = 0;
        for doc in serde_saphyr::from_multiple::<Value>(&crds).unwrap() {
            if doc["spec"]["names"]["kind"] != "ServiceEntry" {
                continue;
            }
            for version in doc["spec"]["versions"].as_array().unwrap() {
                let s = shape(version["schema"]["openAPIV3Schema"].clone());
                let spec = s.field("spec").unwrap();
                // ServiceEntry's ports are a map list keyed by name
                assert!(
                    matches!(&spec.field("ports").unwrap().list, ListType::Map(keys) if keys.len() == 1),
                    "{spec:?}"
                );
                found += 1;
            }
        }
        assert!(found >= 1);
    }

    #[test]
    fn a_field_added_inside_an_atomic_list_is_a_difference() {
        let s = shape(ports_schema());
        let git = json!({"spec": {"http": [{"timeout": "1s"}]}});
        let live = json!({"spec": {"http": [{"timeout": "1s", "fault": {"abort": {"httpStatus": 503}}}]},
                          "status": {}, "metadata": {"uid": "u"}});
        assert_eq!(
            first_difference(&git, &live, Some(&s)).unwrap().to_string(),
            "spec.http[0].fault: not in Git"
        );
        // no schema read: atomic all the same
        assert_eq!(
            first_difference(&git, &live, None).unwrap().path,
            "spec.http[0].fault"
        );
        // fields only live has outside a list are not compared here
        let live = json!({"spec": {"http": [{"timeout": "1s"}], "exportTo": ["."]}});
        assert_eq!(first_difference(&git, &live, Some(&s)), None);
    }

    #[test]
    fn map_lists_match_by_key_and_sets_compare_as_sets() {
        let s = shape(ports_schema());
        let mut git = json!({"spec": {"ports": [{"port": 80}, {"port": 443}], "tags": ["a", "b"]}});
        s.default_into(&mut git);
        // another order, and the default the server filled in: in sync
        let live = json!({"spec": {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 80, "protocol": "TCP"}],
                                   "tags": ["b", "a"]}});
        assert_eq!(first_difference(&git, &live, Some(&s)), None);
        let extra = json!({"spec": {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 80, "protocol": "TCP"},
                                              {"port": 8080, "protocol": "TCP"}], "tags": ["b", "a"]}});
        assert_eq!(
            first_difference(&git, &extra, Some(&s))
                .unwrap()
                .to_string(),
            "spec.ports[port=8080]: not in Git"
        );
        let changed = json!({"spec": {"ports": [{"port": 443, "protocol": "UDP"}, {"port": 80, "protocol": "TCP"}],
                                      "tags": ["a", "b"]}});
        assert_eq!(
            first_difference(&git, &changed, Some(&s))
                .unwrap()
                .to_string(),
            "spec.ports[port=443].protocol: Git has \"TCP\", live has \"UDP\""
        );
        let tagged = json!({"spec": {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 80, "protocol": "TCP"}],
                                     "tags": ["a", "b", "c"]}});
        assert_eq!(
            first_difference(&git, &tagged, Some(&s))
                .unwrap()
                .to_string(),
            "spec.tags: \"c\" not in Git"
        );
    }

    #[test]
    fn defaults_are_filled_in_as_the_server_does() {
        let s = shape(
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "rules": {"type": "array", "items": {"type": "object", "properties": {
                "matches": {"type": "array", "default": [{"path": {"type": "PathPrefix", "value": "/"}}],
                            "items": {"type": "object", "properties": {"path": {"type": "object",
                                "properties": {"type": {"type": "string", "default": "PathPrefix"}}}}}},
            }}}}}}}),
        );
        let mut git = json!({"spec": {"rules": [{}, {"matches": [{"path": {"value": "/a"}}]}]}});
        s.default_into(&mut git);
        assert_eq!(
            git,
            json!({"spec": {"rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]},
                                      {"matches": [{"path": {"type": "PathPrefix", "value": "/a"}}]}]}})
        );
        // and so a defaulted field inside an atomic list is not a difference
        let live = git.clone();
        let git = json!({"spec": {"rules": [{}, {"matches": [{"path": {"value": "/a"}}]}]}});
        assert_eq!(difference(&git, &live, Some(&s), "kubectl-gitops"), None);
        assert!(difference(&git, &live, None, "kubectl-gitops").is_some());
    }

    #[test]
    fn an_openapi_document_gives_each_kind_its_shape() {
        let document = json!({"openapi": "3.0.0", "components": {"schemas": {
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"type": "object", "properties": {
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "io.istio.networking.v1.ServiceEntry": {
                "type": "object",
                "x-kubernetes-group-version-kind": [{"group": "networking.istio.io", "kind": "ServiceEntry", "version": "v1"}],
                "properties": {"metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]},
                               "spec": ports_schema()["properties"]["spec"].clone()}}}}});
        let shapes = openapi_shapes(&document.to_string()).unwrap();
        assert_eq!(shapes.len(), 1);
        let (gvk, shape) = &shapes[0];
        assert_eq!(
            (gvk.group.as_str(), gvk.version.as_str(), gvk.kind.as_str()),
            ("networking.istio.io", "v1", "ServiceEntry")
        );
        assert_eq!(shape, &shape_of_ports());
    }

    fn shape_of_ports() -> Shape {
        shape(
            json!({"type": "object", "properties": {"spec": ports_schema()["properties"]["spec"].clone()}}),
        )
    }

    #[test]
    fn numbers_compare_by_value() {
        let git = json!({"spec": {"weight": 80, "list": [1.0]}});
        let live = json!({"spec": {"weight": 80.0, "list": [1]}});
        assert_eq!(first_difference(&git, &live, None), None);
    }
}

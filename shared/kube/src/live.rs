//! The live objects a namespace's plan is made against, listed the same way
//! for `kubectl gitops diff`/`status` and for the agent, so the two agree
//! about drift.

use futures::{StreamExt as _, stream};
use gitops_shared::{IstioKind, managed};
use kube::{
    Client,
    api::{Api, DynamicObject, ListParams},
};
use serde_json::Value;

use crate::{errors::is_status, resources::Served, retry};

/// What [`list`] found.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Every object of the kinds in use, each with `apiVersion` and `kind`
    /// set, and `managedFields` only where the plan reads it
    /// ([`managed::slim`]).
    pub objects: Vec<Value>,
    /// Kinds in use that the server does not serve (no CRD, or 404 on the
    /// list): the caller decides (the agent refuses to plan, `diff` says so).
    pub unserved: Vec<&'static IstioKind>,
}

/// List what the plan of `namespace` needs: every object of the kinds in
/// use (desired or in the inventory), one LIST per kind (DESIGN.md, "Plan"),
/// read in pages. Not label-selected, so the plan can tell "someone stripped
/// our labels" from "deleted" and adopt a same-named object as an update.
/// The LISTs go a few at once, each retried by [`retry::call`]; objects come
/// in the order of `in_use`.
pub async fn list(
    client: &Client,
    namespace: &str,
    in_use: &[&'static IstioKind],
    served: &Served,
) -> Result<Live, kube::Error> {
    let mut live = Live::default();
    let mut lists = Vec::new();
    for kind in in_use {
        if served.has(kind) {
            lists.push(list_kind(client, namespace, kind, served));
        } else {
            live.unserved.push(*kind);
        }
    }
    // A few LISTs at once: a pass then waits for the slowest, not the sum.
    let mut results = stream::iter(lists).buffered(CONCURRENT_LISTS);
    while let Some(result) = results.next().await {
        match result? {
            Listed::Objects(objects) => live.objects.extend(objects),
            Listed::Unserved(kind) => live.unserved.push(kind),
        }
    }
    Ok(live)
}

/// Objects per page of a LIST: a namespace of thousands is read a page at a
/// time, not held twice (response and objects) all at once.
const PAGE: u32 = 250;

/// A listed object as JSON, with `apiVersion` and `kind` set (list items
/// may leave them out) and `managedFields` slimmed; its fields are moved,
/// not copied.
fn into_value(
    item: DynamicObject,
    resource: &kube::core::ApiResource,
) -> Result<Value, kube::Error> {
    let metadata = serde_json::to_value(&item.metadata).map_err(kube::Error::SerdeError)?;
    let mut map = match item.data {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    let types = item.types.unwrap_or_default();
    let api_version = if types.api_version.is_empty() {
        resource.api_version.clone()
    } else {
        types.api_version
    };
    let kind = if types.kind.is_empty() {
        resource.kind.clone()
    } else {
        types.kind
    };
    map.insert("apiVersion".into(), Value::String(api_version));
    map.insert("kind".into(), Value::String(kind));
    map.insert("metadata".into(), metadata);
    let mut value = Value::Object(map);
    managed::slim(&mut value);
    Ok(value)
}

/// How many LISTs one [`list`] sends at once.
const CONCURRENT_LISTS: usize = 8;

enum Listed {
    Objects(Vec<Value>),
    Unserved(&'static IstioKind),
}

async fn list_kind(
    client: &Client,
    namespace: &str,
    kind: &'static IstioKind,
    served: &Served,
) -> Result<Listed, kube::Error> {
    let resource = served.resource(kind);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let mut params = ListParams::default().limit(PAGE);
    let mut objects = Vec::new();
    loop {
        let list = match retry::call(|| api.list(&params), None).await {
            Ok(list) => list,
            Err(e) if is_status(&e, 404) => return Ok(Listed::Unserved(kind)),
            Err(e) => return Err(e),
        };
        let next = list.metadata.continue_.filter(|c| !c.is_empty());
        objects.reserve(list.items.len());
        for item in list.items {
            objects.push(into_value(item, &resource)?);
        }
        match next {
            Some(token) => params.continue_token = Some(token),
            None => break,
        }
    }
    Ok(Listed::Objects(objects))
}

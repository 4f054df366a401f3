//! The live objects a namespace's plan is made against, listed the same way
//! for `kubectl gitops diff`/`status` and for the agent, so the two agree
//! about drift.

use futures::{Stream, StreamExt as _, stream};
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
/// Objects come in the order of `in_use`.
pub async fn list(
    client: &Client,
    namespace: &str,
    in_use: &[&'static IstioKind],
    served: &Served,
) -> Result<Live, kube::Error> {
    let mut by_kind: Vec<Vec<Value>> = vec![Vec::new(); in_use.len()];
    let unserved = list_pages(client, namespace, in_use, served, |kind, page| {
        by_kind[kind].extend(page);
    })
    .await?;
    Ok(Live {
        objects: by_kind.into_iter().flatten().collect(),
        unserved,
    })
}

/// [`list`], a page at a time: `page(i, objects)` gets each page of kind
/// `in_use[i]` as it arrives (a kind's pages in order), so the caller can
/// keep what it needs of each object and drop the rest. The LISTs go a few
/// at once, each retried by [`retry::call`]. Returns the kinds in use that
/// the server does not serve.
pub async fn list_pages(
    client: &Client,
    namespace: &str,
    in_use: &[&'static IstioKind],
    served: &Served,
    mut page: impl FnMut(usize, Vec<Value>),
) -> Result<Vec<&'static IstioKind>, kube::Error> {
    let mut unserved = Vec::new();
    let mut lists = Vec::new();
    for (i, kind) in in_use.iter().enumerate() {
        if served.has(kind) {
            lists.push(Box::pin(kind_pages(client, namespace, i, kind, served)));
        } else {
            unserved.push(*kind);
        }
    }
    // A few LISTs at once: a pass then waits for the slowest, not the sum.
    let mut pages = stream::iter(lists).flatten_unordered(CONCURRENT_LISTS);
    while let Some(result) = pages.next().await {
        match result? {
            Listed::Objects(i, objects) => page(i, objects),
            Listed::Unserved(kind) => unserved.push(kind),
        }
    }
    Ok(unserved)
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
    /// A page of the kind at this index of `in_use`.
    Objects(usize, Vec<Value>),
    Unserved(&'static IstioKind),
}

/// Where a kind's LIST is: the next page to read, or done.
enum Cursor {
    Next(ListParams),
    Done,
}

/// The pages of one kind's LIST, as a stream.
fn kind_pages<'a>(
    client: &'a Client,
    namespace: &'a str,
    index: usize,
    kind: &'static IstioKind,
    served: &Served,
) -> impl Stream<Item = Result<Listed, kube::Error>> + 'a {
    let resource = served.resource(kind);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let first = Cursor::Next(ListParams::default().limit(PAGE));
    stream::try_unfold(first, move |cursor| {
        let api = api.clone();
        let resource = resource.clone();
        async move {
            let Cursor::Next(mut params) = cursor else {
                return Ok(None);
            };
            let list = match retry::call(|| api.list(&params), None).await {
                Ok(list) => list,
                Err(e) if is_status(&e, 404) => {
                    return Ok(Some((Listed::Unserved(kind), Cursor::Done)));
                }
                Err(e) => return Err(e),
            };
            let next = match list.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => {
                    params.continue_token = Some(token);
                    Cursor::Next(params)
                }
                None => Cursor::Done,
            };
            let objects = list
                .items
                .into_iter()
                .map(|item| into_value(item, &resource))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some((Listed::Objects(index, objects), next)))
        }
    })
}

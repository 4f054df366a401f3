//! The live objects a namespace's plan is made against, listed the same way
//! for `kubectl gitops diff`/`status` and for the agent, so the two agree
//! about drift.

use futures::{Stream, StreamExt as _, stream};
use gitops_shared::{IstioKind, managed::Slim};
use kube::{
    Client, Resource as _,
    api::{DynamicObject, ListParams},
    core::Request,
};
use serde::Deserialize;
use serde_json::{Value, value::RawValue};

use crate::{errors::is_status, resources::Served, retry};

/// What [`list`] found.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Every object of the kinds in use, each with `apiVersion` and `kind`
    /// set, and `managedFields` only where the plan reads it
    /// ([`gitops_shared::managed::slim`]).
    pub objects: Vec<Value>,
    /// Kinds in use that the server does not serve (no CRD, or 404 on the
    /// list): the caller decides (the agent refuses to plan, `diff` says so).
    pub unserved: Vec<&'static IstioKind>,
}

/// List what the plan of `namespace` needs: every object of the kinds in
/// use (desired or in the inventory), one LIST per kind (DESIGN.md, "Plan"),
/// read in pages. Not label-selected, so the plan can tell "someone stripped
/// our labels" from "deleted" and adopt a same-named object as an update.
/// Objects come in the order of `in_use`. `manager` is the agent's field
/// manager: an object's `managedFields` are kept only when another manager
/// has an entry (drift reads them).
pub async fn list(
    client: &Client,
    namespace: &str,
    in_use: &[&'static IstioKind],
    served: &Served,
    manager: &str,
) -> Result<Live, kube::Error> {
    let mut by_kind: Vec<Vec<Value>> = vec![Vec::new(); in_use.len()];
    let unserved = list_pages(client, namespace, in_use, served, manager, |kind, page| {
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
    manager: &str,
    mut page: impl FnMut(usize, Vec<Value>),
) -> Result<Vec<&'static IstioKind>, kube::Error> {
    let mut unserved = Vec::new();
    let mut lists = Vec::new();
    for (i, kind) in in_use.iter().enumerate() {
        if served.has(kind) {
            lists.push(Box::pin(kind_pages(
                client, namespace, i, kind, served, manager,
            )));
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

/// The objects named in `wanted` (kind and name), read one GET each, at
/// most [`CONCURRENT_LISTS`] at a time, in the shape of [`list_pages`]'s: the
/// ones that do not exist are left out. For a plan of a few objects, when
/// the agent's watches tell which of them changed.
pub async fn get_each(
    client: &Client,
    namespace: &str,
    wanted: &[(&'static IstioKind, String)],
    served: &Served,
    manager: &str,
) -> Result<Vec<Value>, kube::Error> {
    let gets = wanted.iter().map(|(kind, name)| async move {
        let resource = served.resource(kind);
        let request = Request::new(DynamicObject::url_path(&resource, Some(namespace)));
        let send = || async {
            let get = request
                .get(name, &Default::default())
                .map_err(kube::Error::BuildRequest)?;
            let text = client.request_text(get).await?;
            Slim { manager }
                .parse(&text)
                .map_err(kube::Error::SerdeError)
        };
        match retry::call(send, None).await {
            Ok(object) => Ok(Some(completed(object, &resource))),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(e),
        }
    });
    let mut objects = Vec::with_capacity(wanted.len());
    let mut results = stream::iter(gets).buffer_unordered(CONCURRENT_LISTS);
    while let Some(result) = results.next().await {
        objects.extend(result?);
    }
    Ok(objects)
}

/// Objects per page of a LIST: a namespace of thousands is read a page at a
/// time, not held twice (response and objects) all at once.
const PAGE: u32 = 100;

/// A LIST response, its items left as text to be parsed straight into slim
/// JSON values ([`Slim`]): through `DynamicObject` each item was parsed twice
/// (its typed metadata, and the rest buffered by serde's `flatten`), its
/// metadata written back, and its managed fields built only to be dropped.
#[derive(Deserialize)]
struct RawList<'a> {
    #[serde(default)]
    metadata: RawListMeta,
    /// `null` from some servers, like `ObjectList`'s.
    #[serde(default, borrow)]
    items: Option<Vec<&'a RawValue>>,
}

impl RawList<'_> {
    /// The items, parsed slim for `manager`.
    fn objects(
        &self,
        manager: &str,
        resource: &kube::core::ApiResource,
    ) -> Result<Vec<Value>, kube::Error> {
        let items = self.items.as_deref().unwrap_or_default();
        items
            .iter()
            .map(|item| {
                let object = Slim { manager }
                    .parse(item.get())
                    .map_err(kube::Error::SerdeError)?;
                Ok(completed(object, resource))
            })
            .collect()
    }
}

#[derive(Default, Deserialize)]
struct RawListMeta {
    #[serde(rename = "continue")]
    continue_: Option<String>,
}

/// A listed object with `apiVersion` and `kind` set (list items may leave
/// them out), its `managedFields` slimmed as it was parsed.
fn completed(mut item: Value, resource: &kube::core::ApiResource) -> Value {
    if let Value::Object(map) = &mut item {
        for (field, value) in [
            ("apiVersion", &resource.api_version),
            ("kind", &resource.kind),
        ] {
            if map
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                map.insert(field.into(), Value::String(value.clone()));
            }
        }
    }
    item
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
    manager: &'a str,
) -> impl Stream<Item = Result<Listed, kube::Error>> + 'a {
    let resource = served.resource(kind);
    let path = DynamicObject::url_path(&resource, Some(namespace));
    let first = Cursor::Next(ListParams::default().limit(PAGE));
    stream::try_unfold(first, move |cursor| {
        let resource = resource.clone();
        let request = Request::new(path.clone());
        async move {
            let Cursor::Next(mut params) = cursor else {
                return Ok(None);
            };
            let send = || async {
                let list = request.list(&params).map_err(kube::Error::BuildRequest)?;
                client.request_text(list).await
            };
            let text = match retry::call(send, None).await {
                Ok(list) => list,
                Err(e) if is_status(&e, 404) => {
                    return Ok(Some((Listed::Unserved(kind), Cursor::Done)));
                }
                Err(e) => return Err(e),
            };
            let list: RawList = serde_json::from_str(&text).map_err(kube::Error::SerdeError)?;
            let next = match list.metadata.continue_.clone().filter(|c| !c.is_empty()) {
                Some(token) => {
                    params.continue_token = Some(token);
                    Cursor::Next(params)
                }
                None => Cursor::Done,
            };
            let objects = list.objects(manager, &resource)?;
            Ok(Some((Listed::Objects(index, objects), next)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_list_item_gets_its_type_and_loses_managed_fields_only_the_agent_has() {
        let resource = kube::core::ApiResource {
            group: "networking.istio.io".into(),
            version: "v1".into(),
            api_version: "networking.istio.io/v1".into(),
            kind: "VirtualService".into(),
            plural: "virtualservices".into(),
        };
        let list = json!({
            "metadata": {"continue": "abc", "resourceVersion": "9"},
            "items": [
                {"metadata": {"name": "a", "managedFields": [{"manager": "kubectl-gitops", "fieldsV1": {}}]}},
                {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {"name": "b"}},
            ],
        });
        // As the client parses a response: from its text.
        let text = list.to_string();
        let list: RawList = serde_json::from_str(&text).unwrap();
        assert_eq!(list.metadata.continue_.as_deref(), Some("abc"));
        let items = list.objects("kubectl-gitops", &resource).unwrap();
        assert_eq!(
            items,
            [
                json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "a"}}),
                json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {"name": "b"}}),
            ]
        );
        let empty: RawList = serde_json::from_str(r#"{"metadata": {}, "items": null}"#).unwrap();
        assert!(empty.items.is_none() && empty.metadata.continue_.is_none());
    }
}

//! The list types and defaults of the kinds in use, read from the API
//! server's OpenAPI v3 (DESIGN.md, "Drift"): `kubectl gitops diff` and the
//! agent compare with the same shapes, read the same way, so they never
//! disagree about drift.
//!
//! One request for the index (`/openapi/v3`) and one per group version in
//! use; only the part of each schema that drift needs is kept
//! ([`gitops_shared::drift::Shape`]). Both are discovery, readable by every
//! authenticated user (`system:discovery`): the agent's Role needs nothing
//! more.

use std::collections::{BTreeMap, BTreeSet};

use gitops_shared::{
    IstioKind,
    drift::{GroupVersionKind, Schemas, Shape, openapi_shapes},
};
use kube::Client;
use serde::Deserialize;

use crate::{errors::is_status, resources::Served, retry};

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    paths: BTreeMap<String, IndexPath>,
}

#[derive(Deserialize)]
struct IndexPath {
    #[serde(rename = "serverRelativeURL")]
    url: String,
}

async fn get_text(client: &Client, path: &str) -> Result<String, kube::Error> {
    retry::call(
        || async {
            let request = http::Request::get(path)
                .body(Vec::new())
                .map_err(kube::Error::HttpError)?;
            client.request_text(request).await
        },
        None,
    )
    .await
}

/// The shapes of each group version read so far, by the URL the server
/// gave for it: the URL carries a hash of the document, so a CRD that changed
/// (a new default, another list type) is read again and an unchanged one is
/// not.
#[derive(Debug, Clone, Default)]
pub struct Cache {
    read: BTreeMap<(&'static str, &'static str), Document>,
}

/// One group version's OpenAPI document: its URL, and the shapes of its kinds.
#[derive(Debug, Clone)]
struct Document {
    url: String,
    shapes: Vec<(GroupVersionKind, Shape)>,
}

/// The shapes of `kinds`, each at the version the server serves it in (the
/// one it is listed and applied at): one request for the index of the
/// server's OpenAPI v3, and one for each group version in use that `cache`
/// does not hold at the URL the index gives. A server without OpenAPI v3, or
/// one that does not let us read it, gives none: every list is then compared
/// as atomic, which is what the server does with a list its schema says
/// nothing of.
pub async fn read(
    client: &Client,
    served: &Served,
    kinds: &[&'static IstioKind],
    cache: &mut Cache,
) -> Result<Schemas, kube::Error> {
    let mut schemas = Schemas::default();
    if kinds.is_empty() {
        return Ok(schemas);
    }
    let index = match get_text(client, "/openapi/v3").await {
        Ok(text) => serde_json::from_str::<Index>(&text).map_err(kube::Error::SerdeError)?,
        Err(error) if is_status(&error, 404) || is_status(&error, 403) => {
            tracing::warn!(error = %crate::errors::describe(&error),
                "the API server's OpenAPI v3 cannot be read: every list is compared as atomic");
            return Ok(schemas);
        }
        Err(error) => return Err(error),
    };
    let versions: BTreeSet<(&'static str, &'static str)> = kinds
        .iter()
        .filter(|k| served.has(k))
        .map(|k| (k.group, served.preferred(k)))
        .collect();
    for (group, version) in versions {
        let Some(path) = index.paths.get(&format!("apis/{group}/{version}")) else {
            tracing::warn!(
                group,
                version,
                "the API server publishes no OpenAPI for this group version"
            );
            continue;
        };
        let fresh = cache
            .read
            .get(&(group, version))
            .is_some_and(|read| read.url == path.url);
        if !fresh {
            let text = get_text(client, &path.url).await?;
            let shapes = openapi_shapes(&text).map_err(kube::Error::SerdeError)?;
            let shapes = shapes
                .into_iter()
                .filter(|(gvk, _)| gvk.group == group && gvk.version == version)
                .collect();
            let url = path.url.clone();
            cache
                .read
                .insert((group, version), Document { url, shapes });
        }
        for (gvk, shape) in &cache.read[&(group, version)].shapes {
            if kinds
                .iter()
                .any(|k| k.group == gvk.group && k.kind == gvk.kind)
            {
                schemas.insert(&gvk.group, &gvk.kind, shape.clone());
            }
        }
    }
    Ok(schemas)
}

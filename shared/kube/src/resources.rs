//! Istio kinds and `GitOpsSync` as API resources, at the versions the API
//! server serves: read from its discovery ([`Served::discover`]), so a mesh
//! whose CRDs do not serve networking `v1` (Istio before 1.22) still works.

use std::collections::{BTreeMap, BTreeSet};

use gitops_shared::{IstioKind, kinds::KINDS};
use kube::{Client, core::ApiResource, discovery::Discovery};

use crate::retry;

/// The API resource of `kind` at `version`.
pub fn api_resource(kind: &IstioKind, version: &str) -> ApiResource {
    ApiResource {
        group: kind.group.to_string(),
        version: version.to_string(),
        api_version: format!("{}/{version}", kind.group),
        kind: kind.kind.to_string(),
        plural: kind.plural.to_string(),
    }
}

/// The API resource of `GitOpsSync`, from its type.
pub fn gitopssync_resource() -> ApiResource {
    ApiResource::erase::<crate::gitopssync::GitOpsSync>(&())
}

/// (group, kind) of an Istio kind -> the versions of it the server serves
/// (only those [`IstioKind::versions`] knows).
type Table = BTreeMap<(&'static str, &'static str), BTreeSet<&'static str>>;

/// Which versions of each Istio kind the API server serves.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// `None`: discovery was not read; every version we know is assumed.
    by_kind: Option<Table>,
}

impl Served {
    /// What is assumed without discovery: every version of [`IstioKind`].
    pub fn assumed() -> Self {
        Self::default()
    }

    /// Read the server's discovery for the Istio groups (aggregated
    /// discovery, one request, where the server has it; else one per group
    /// version).
    pub async fn discover(client: &Client) -> Result<Self, kube::Error> {
        let groups: BTreeSet<&str> = KINDS.iter().map(|k| k.group).collect();
        let groups: Vec<&str> = groups.into_iter().collect();
        let aggregated = retry::call(
            || {
                Discovery::new(client.clone())
                    .filter(&groups)
                    .run_aggregated()
            },
            None,
        )
        .await;
        let discovery = match aggregated {
            Ok(d) => d,
            Err(error) => {
                tracing::debug!(error = %crate::errors::describe(&error), "no aggregated discovery; asking per group");
                retry::call(
                    || Discovery::new(client.clone()).filter(&groups).run(),
                    None,
                )
                .await?
            }
        };
        let resources: Vec<ApiResource> = discovery
            .groups()
            .flat_map(|group| {
                group
                    .versions()
                    .flat_map(|version| group.versioned_resources(version))
                    .map(|(ar, _)| ar)
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(Self::from_table(resources.iter().map(|ar| {
            (ar.group.as_str(), ar.kind.as_str(), ar.version.as_str())
        })))
    }

    /// From `(group, kind, version)` rows of what is served, as discovery
    /// lists them; rows of other kinds and versions are left out.
    pub fn from_table<'a>(served: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>) -> Self {
        let mut by_kind = Table::new();
        for (group, kind, version) in served {
            let Some(known) = gitops_shared::kinds::lookup(group, kind) else {
                continue;
            };
            if let Some(version) = known.versions.iter().find(|v| **v == version) {
                by_kind
                    .entry((known.group, known.kind))
                    .or_default()
                    .insert(version);
            }
        }
        Self {
            by_kind: Some(by_kind),
        }
    }

    /// Whether the server serves `kind` at all (its CRD is installed).
    pub fn has(&self, kind: &IstioKind) -> bool {
        self.versions_of(kind).is_none_or(|v| !v.is_empty())
    }

    /// Whether the server serves `kind` at `version`.
    pub fn serves(&self, kind: &IstioKind, version: &str) -> bool {
        kind.serves(version) && self.versions_of(kind).is_none_or(|v| v.contains(version))
    }

    /// The version to talk to the server in: the newest of ours it serves,
    /// else the static preferred one (the server will then say 404).
    pub fn preferred(&self, kind: &IstioKind) -> &'static str {
        kind.versions
            .iter()
            .copied()
            .find(|v| self.serves(kind, v))
            .unwrap_or(kind.preferred)
    }

    /// The version to write an object given at `version` in: that one when
    /// served, else [`Served::preferred`] (Istio's versions of a kind share
    /// one schema, so an object converts by its `apiVersion` alone).
    pub fn for_version(&self, kind: &IstioKind, version: &str) -> &'static str {
        kind.versions
            .iter()
            .copied()
            .find(|v| *v == version && self.serves(kind, v))
            .unwrap_or_else(|| self.preferred(kind))
    }

    /// The API resource of `kind` at [`Served::preferred`].
    pub fn resource(&self, kind: &IstioKind) -> ApiResource {
        api_resource(kind, self.preferred(kind))
    }

    fn versions_of(&self, kind: &IstioKind) -> Option<&BTreeSet<&'static str>> {
        static NONE: BTreeSet<&'static str> = BTreeSet::new();
        let table = self.by_kind.as_ref()?;
        Some(table.get(&(kind.group, kind.kind)).unwrap_or(&NONE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs() -> &'static IstioKind {
        gitops_shared::kinds::lookup("networking.istio.io", "VirtualService")
            .expect("VirtualService is an Istio kind")
    }

    #[test]
    fn resources_come_from_the_shared_kinds() {
        let ar = api_resource(vs(), "v1beta1");
        assert_eq!(ar.api_version, "networking.istio.io/v1beta1");
        assert_eq!(ar.plural, "virtualservices");
        let gos = gitopssync_resource();
        assert_eq!(gos.api_version, "kubectl-gitops.io/v1alpha1");
        assert_eq!(gos.plural, gitops_shared::gitopssync::PLURAL);
        assert_eq!(gos.kind, gitops_shared::gitopssync::KIND);
    }

    #[test]
    fn without_discovery_the_newest_version_is_used() {
        let served = Served::assumed();
        assert!(served.has(vs()));
        assert_eq!(served.preferred(vs()), "v1");
        assert_eq!(served.for_version(vs(), "v1beta1"), "v1beta1");
        assert_eq!(served.for_version(vs(), "v2"), "v1");
    }

    #[test]
    fn a_mesh_without_v1_is_spoken_to_in_v1beta1() {
        // Istio 1.21: networking serves v1beta1 and v1alpha3, not v1
        let served = Served::from_table([
            ("networking.istio.io", "VirtualService", "v1beta1"),
            ("networking.istio.io", "VirtualService", "v1alpha3"),
        ]);
        assert!(served.has(vs()));
        assert!(!served.serves(vs(), "v1"));
        assert_eq!(served.preferred(vs()), "v1beta1");
        assert_eq!(
            served.resource(vs()).api_version,
            "networking.istio.io/v1beta1"
        );
        // a manifest written as v1 is sent as v1beta1; v1alpha3 stays
        assert_eq!(served.for_version(vs(), "v1"), "v1beta1");
        assert_eq!(served.for_version(vs(), "v1alpha3"), "v1alpha3");
        // a kind whose CRD is not installed is not served at all
        let dr = gitops_shared::kinds::lookup("networking.istio.io", "DestinationRule").unwrap();
        assert!(!served.has(dr));
    }
}

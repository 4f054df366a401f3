//! API resources, from the shared list of Istio kinds (no discovery needed
//! to name them) and the `GitOpsSync` contract.

use gitops_shared::{IstioKind, gitopssync};
use kube::core::ApiResource;

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

/// The API resource of `GitOpsSync`.
pub fn gitopssync_resource() -> ApiResource {
    ApiResource {
        group: gitopssync::GROUP.to_string(),
        version: gitopssync::VERSION.to_string(),
        api_version: format!("{}/{}", gitopssync::GROUP, gitopssync::VERSION),
        kind: gitopssync::KIND.to_string(),
        plural: gitopssync::PLURAL.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_come_from_the_shared_kinds() {
        let vs = gitops_shared::kinds::lookup("networking.istio.io", "VirtualService")
            .expect("VirtualService is an Istio kind");
        let ar = api_resource(vs, "v1beta1");
        assert_eq!(ar.api_version, "networking.istio.io/v1beta1");
        assert_eq!(ar.plural, "virtualservices");
        let gos = gitopssync_resource();
        assert_eq!(gos.api_version, "kubectl-gitops.io/v1alpha1");
        assert_eq!(gos.plural, "gitopssyncs");
    }
}

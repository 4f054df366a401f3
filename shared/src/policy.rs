//! Which objects a namespace folder may hold (DESIGN.md, "policy"): Istio
//! config kinds only; EnvoyFilter, WasmPlugin and TrafficExtension only when
//! allowed; `metadata.namespace` absent or equal to the folder's; never the
//! mesh root namespace; no two documents with the same kind and name.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    DEFAULT_ROOT_NAMESPACE,
    kinds::{self, IstioKind},
    manifest::{Manifest, ManifestError, ObjectKey, Problem, Source},
};

/// Kinds that are cluster-scoped in every Kubernetes cluster: a namespace
/// folder can never hold them, and saying so beats "not an Istio kind".
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "APIService",
    "CertificateSigningRequest",
    "GatewayClass",
];

/// The rules for one namespace folder.
#[derive(Debug, Clone)]
pub struct Policy {
    pub namespace: String,
    pub root_namespace: String,
    /// Dangerous kinds allowed anyway (`--allow-kind`), by kind name.
    pub allowed_kinds: BTreeSet<String>,
}

impl Policy {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            root_namespace: DEFAULT_ROOT_NAMESPACE.to_string(),
            allowed_kinds: BTreeSet::new(),
        }
    }

    /// Allow dangerous kinds, by name as a user types them (`EnvoyFilter`,
    /// `envoyfilter`, `envoyfilters`). Unknown names are an error.
    pub fn allow_kinds<S: AsRef<str>>(mut self, names: &[S]) -> Result<Self, String> {
        for name in names {
            let kind = kinds::resolve(name.as_ref()).ok_or_else(|| {
                format!("--allow-kind {}: not an Istio config kind", name.as_ref())
            })?;
            self.allowed_kinds.insert(kind.kind.to_string());
        }
        Ok(self)
    }

    pub fn with_root_namespace(mut self, root: impl Into<String>) -> Self {
        self.root_namespace = root.into();
        self
    }

    /// Check one object. Returns its kind when it may be applied.
    pub fn check_one(&self, m: &Manifest) -> Result<&'static IstioKind, ManifestError> {
        let at =
            |line: Option<usize>, msg: String| ManifestError::at(&m.at(line), Problem::Policy(msg));
        let Some(kind) = kinds::lookup(&m.group, &m.kind) else {
            let msg = if CLUSTER_SCOPED.contains(&m.kind.as_str()) {
                format!(
                    "{} is cluster-scoped; a namespace folder holds only namespaced Istio config",
                    m.kind
                )
            } else if let Some(kind) = kinds::near_miss(&m.kind) {
                format!(
                    "{} ({}) is not an Istio config kind: did you mean {kind}?",
                    m.kind, m.api_version
                )
            } else {
                format!(
                    "{} ({}) is not an Istio config kind; a namespace folder holds only Istio config (VirtualService, DestinationRule, ...)",
                    m.kind, m.api_version
                )
            };
            return Err(at(m.lines.kind, msg));
        };
        if !kind.serves(&m.version) {
            return Err(at(
                None,
                format!(
                    "{} is not served as {}; use one of: {}",
                    kind.kind,
                    m.api_version,
                    kind.versions
                        .iter()
                        .map(|v| format!("{}/{v}", kind.group))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if kind.dangerous && !self.allowed_kinds.contains(kind.kind) {
            return Err(at(
                m.lines.kind,
                format!(
                    "{} can change every proxy in the mesh and is refused; allow it explicitly with --allow-kind {}",
                    kind.kind, kind.kind
                ),
            ));
        }
        if let Some(ns) = &m.namespace
            && *ns != self.namespace
        {
            return Err(at(
                m.lines.namespace,
                format!(
                    "namespace {ns:?} is not {:?}: move the file to the folder of namespace {ns}, or drop metadata.namespace to keep it in {}",
                    self.namespace, self.namespace
                ),
            ));
        }
        if self.namespace == self.root_namespace {
            return Err(at(
                m.lines.namespace,
                format!(
                    "namespace {:?} is the mesh root namespace: config there applies to the whole mesh and is refused",
                    self.namespace
                ),
            ));
        }
        Ok(kind)
    }

    /// Check every object; returns every error found, duplicates included.
    pub fn check(&self, manifests: &[Manifest]) -> Result<(), Vec<ManifestError>> {
        let mut errors = Vec::new();
        let mut seen: BTreeMap<ObjectKey, &Source> = BTreeMap::new();
        for m in manifests {
            if let Err(e) = self.check_one(m) {
                errors.push(e);
            }
            if let Some(first) = seen.insert(m.key(), &m.source) {
                errors.push(ManifestError::at(
                    &m.at(m.lines.name),
                    Problem::Policy(format!("duplicate {}: already defined in {first}", m.key())),
                ));
                seen.insert(m.key(), first);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{LoadOptions, parse_str};
    use std::path::Path;

    fn manifests(text: &str) -> Vec<Manifest> {
        parse_str(
            text,
            Path::new("namespaces/team-a/x.yaml"),
            &LoadOptions::default(),
        )
        .unwrap()
    }

    fn error(text: &str) -> String {
        let errors = Policy::new("team-a").check(&manifests(text)).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors[0].to_string()
    }

    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n  namespace: team-a\nspec:\n  hosts: [reviews]\n";

    #[test]
    fn accepts_istio_kinds_in_their_namespace() {
        Policy::new("team-a").check(&manifests(VS)).unwrap();
        let no_ns = VS.replace("  namespace: team-a\n", "");
        Policy::new("team-a").check(&manifests(&no_ns)).unwrap();
        let beta = VS.replace("/v1\n", "/v1beta1\n");
        Policy::new("team-a").check(&manifests(&beta)).unwrap();
    }

    #[test]
    fn rejects_object_in_other_namespace() {
        let e = error(&VS.replace("namespace: team-a", "namespace: team-b"));
        assert_eq!(
            e,
            "namespaces/team-a/x.yaml: document 1, line 5: namespace \"team-b\" is not \"team-a\": move the file to the folder of namespace team-b, or drop metadata.namespace to keep it in team-a"
        );
    }

    #[test]
    fn rejects_deployment_and_cluster_scoped_kinds() {
        let e = error("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: reviews\n");
        assert!(
            e.contains("line 2: Deployment (apps/v1) is not an Istio config kind"),
            "{e}"
        );
        let e = error(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: admin\n",
        );
        assert!(e.contains("ClusterRole is cluster-scoped"), "{e}");
    }

    #[test]
    fn rejects_envoy_filter_unless_allowed() {
        let ef = "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata:\n  name: lua\nspec: {}\n";
        let e = error(ef);
        assert!(e.contains("--allow-kind EnvoyFilter"), "{e}");
        let policy = Policy::new("team-a").allow_kinds(&["envoyfilter"]).unwrap();
        policy.check(&manifests(ef)).unwrap();
        assert!(Policy::new("team-a").allow_kinds(&["Deployment"]).is_err());
    }

    #[test]
    fn rejects_unserved_version() {
        let e = error(&VS.replace("/v1\n", "/v2\n"));
        assert!(
            e.contains("VirtualService is not served as networking.istio.io/v2"),
            "{e}"
        );
    }

    #[test]
    fn rejects_mesh_root_namespace() {
        let errors = Policy::new("istio-system")
            .check(&manifests(&VS.replace("  namespace: team-a\n", "")))
            .unwrap_err();
        assert!(
            errors[0].to_string().contains("mesh root namespace"),
            "{}",
            errors[0]
        );
        Policy::new("istio-system")
            .with_root_namespace("mesh-root")
            .check(&manifests(&VS.replace("  namespace: team-a\n", "")))
            .unwrap();
    }

    #[test]
    fn rejects_duplicates_naming_both_places() {
        let e = error(&format!("{VS}---\n{VS}"));
        assert!(
            e.contains("line 12: duplicate VirtualService/reviews: already defined in namespaces/team-a/x.yaml: document 1, line 1"),
            "{e}"
        );
    }
}

//! `gitops-shared`: the one definition of what a manifest is, which objects a
//! namespace may hold, how an object is normalized and hashed, and how desired
//! and live state are compared.
//!
//! Both `kubectl-gitops` and `sync-agent` build on this crate so that "drift"
//! means the same thing in the CLI and in the agent. It is a pure core: no
//! network, no async runtime, no kube client, no git. The only I/O is reading
//! files of a namespace folder (see [`layout`]).
#![forbid(unsafe_code)]

pub mod analyze;
pub mod drift;
pub mod hash;
pub mod kinds;
pub mod layout;
pub mod managed;
pub mod manifest;
pub mod normalize;
pub mod plan;
pub mod policy;
pub mod units;

pub use hash::{canonical_json, object_hash};
pub use kinds::{IstioKind, KINDS};
pub use layout::{DesiredSet, LoadError, RepoConfig};
pub use manifest::{Manifest, ManifestError, ObjectKey, Source};
pub use plan::{Action, Plan, PlanOptions, PlanRefusal};
pub use policy::Policy;

/// Label every applied object carries: who manages it.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "kubectl-gitops";
/// Label naming the namespace (and so the agent) that owns an object.
pub const LABEL_OWNER: &str = "kubectl-gitops.io/owner";
/// Label naming the agent (its `--name`) that owns an object, so two agents
/// in one namespace never prune each other's objects. An object without it
/// belongs to [`gitopssync::DEFAULT_NAME`] (it was applied before the label).
pub const LABEL_AGENT: &str = "kubectl-gitops.io/agent";
/// Annotation holding the hash of the desired object.
pub const ANNOTATION_HASH: &str = "kubectl-gitops.io/hash";
/// Annotation holding the object's path in the config repo.
pub const ANNOTATION_SOURCE: &str = "kubectl-gitops.io/source";
/// Annotation holding a canary release's plan and state on its
/// VirtualService (JSON; `phase` is `Progressing`, `Promoted` or `Aborted`).
pub const ANNOTATION_CANARY: &str = "kubectl-gitops.io/canary";
/// The annotation `kubectl apply` (client side) leaves behind.
pub const ANNOTATION_LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Default mesh root namespace; objects there affect the whole mesh.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";
/// Default base folder of the config repo.
pub const DEFAULT_BASE_PATH: &str = "namespaces";
/// Default field manager for server-side apply.
pub const DEFAULT_FIELD_MANAGER: &str = "kubectl-gitops";
/// Marker file that allows a namespace folder to be emptied (prune everything).
pub const ALLOW_EMPTY_FILE: &str = ".allow-empty";

/// The agent's status object: group, version, kind and plural of `GitOpsSync`.
pub mod gitopssync {
    pub const GROUP: &str = "kubectl-gitops.io";
    pub const VERSION: &str = "v1alpha1";
    pub const KIND: &str = "GitOpsSync";
    pub const PLURAL: &str = "gitopssyncs";
    pub const DEFAULT_NAME: &str = "sync-agent";
}

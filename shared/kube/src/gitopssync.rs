//! `GitOpsSync`, the agent's status object (DESIGN.md, "Ownership,
//! inventory and status in the cluster"), defined once: the agent writes
//! this type, the plugin reads it, and `manifests/crds/gitopssync.yaml` is
//! generated from it ([`crd_yaml`], checked by a test and written by
//! `cargo run -p gitops-kube --bin crdgen`).

// The printcolumns repeat `type_ = "string"`, which this lint takes for a
// repeated attribute on the items the derive generates.
#![allow(clippy::duplicated_attributes)]

use std::fmt;

use gitops_shared::{ObjectKey, gitopssync, plan::Drift};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::{CustomResource, CustomResourceExt, api::DynamicObject};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The longest message written (the CRD allows 32768 in a condition).
pub const MAX_MESSAGE: usize = 16 * 1024;

/// What a person sets: only the emergency brake.
#[derive(
    CustomResource, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "kubectl-gitops.io",
    version = "v1alpha1",
    kind = "GitOpsSync",
    plural = "gitopssyncs",
    namespaced,
    status = "SyncStatus",
    shortname = "gos",
    category = "gitops",
    label("app.kubernetes.io/name", "kubectl-gitops"),
    derive = "Default",
    derive = "PartialEq",
    doc = "The state of one namespace's GitOps sync agent.",
    printcolumn(
        name = "Revision",
        type_ = "string",
        description = "The git commit that is fully applied",
        json_path = ".status.revision"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Drifted",
        type_ = "integer",
        description = "How many objects differ from Git",
        json_path = ".status.drifted"
    ),
    printcolumn(name = "Last Sync", type_ = "date", json_path = ".status.syncedAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        priority = 1,
        json_path = ".status.message"
    )
)]
pub struct GitOpsSyncSpec {
    /// Pause applying and pruning; drift is still reported. The emergency
    /// brake set by `kubectl gitops suspend`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// Annotation: which process writes for this agent name (the lease holder).
pub const ANNOTATION_HOLDER: &str = "kubectl-gitops.io/holder";
/// Annotation: when the holder last renewed its lease (RFC 3339): the
/// agent's heartbeat.
pub const ANNOTATION_RENEW: &str = "kubectl-gitops.io/renew-time";
/// Annotation: the holder's lease duration in seconds: a heartbeat older
/// than that (and some skew between clocks) means the agent is not running.
pub const ANNOTATION_LEASE_SECONDS: &str = "kubectl-gitops.io/lease-seconds";
/// Annotation: when the last holder let go of its lease on a clean stop.
pub const ANNOTATION_STOPPED: &str = "kubectl-gitops.io/stopped-at";

/// Whether the agent that writes this object runs, from its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// It renewed its lease within the lease's duration.
    Running,
    /// It let go of its lease when it stopped, at this time.
    Stopped(String),
    /// Its last heartbeat, at this time, is older than its lease allows.
    Silent(String),
    /// No lease was ever held (an agent run with --once or --dry-run, or
    /// before its first renewal).
    Unknown,
}

/// Clocks of two machines may differ: a heartbeat is stale only this much
/// past the lease's duration.
const SKEW: f64 = 5.0;

impl GitOpsSync {
    /// Whether its agent runs, judged at `now` from the lease annotations.
    pub fn liveness(&self, now: Timestamp) -> Liveness {
        let annotations = self.metadata.annotations.clone().unwrap_or_default();
        let get = |key: &str| annotations.get(key).filter(|v| !v.is_empty()).cloned();
        match (
            get(ANNOTATION_HOLDER),
            get(ANNOTATION_RENEW),
            get(ANNOTATION_STOPPED),
        ) {
            (None, _, Some(stopped)) => Liveness::Stopped(stopped),
            (Some(_), Some(renewed), _) => {
                let Ok(at) = renewed.parse::<Timestamp>() else {
                    return Liveness::Unknown;
                };
                let lease = get(ANNOTATION_LEASE_SECONDS)
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(15.0);
                let age = now.duration_since(at).as_secs_f64();
                if age > lease + SKEW {
                    Liveness::Silent(renewed)
                } else {
                    Liveness::Running
                }
            }
            _ => Liveness::Unknown,
        }
    }

    /// `spec.suspend`, false when unset.
    pub fn suspended(&self) -> bool {
        self.spec.suspend.unwrap_or(false)
    }

    /// The object as the API server sent it, read part by part: an object
    /// with no `spec` (the agent creates its own with none) is not
    /// suspended, and a `spec` or `status` that does not parse (written by
    /// another version, or by hand) is said in `unreadable` instead of
    /// silently becoming an empty status with no inventory.
    pub fn read(object: DynamicObject) -> Read {
        let mut unreadable = Vec::new();
        let part = |name: &str| object.data.get(name).filter(|raw| !raw.is_null()).cloned();
        let spec = match part("spec").map(serde_json::from_value::<GitOpsSyncSpec>) {
            None => GitOpsSyncSpec::default(),
            Some(Ok(spec)) => spec,
            Some(Err(e)) => {
                unreadable.push(format!("spec: {e}"));
                GitOpsSyncSpec::default()
            }
        };
        let status = match part("status").map(serde_json::from_value::<SyncStatus>) {
            None => None,
            Some(Ok(status)) => Some(status),
            Some(Err(e)) => {
                unreadable.push(format!("status: {e}"));
                None
            }
        };
        Read {
            sync: GitOpsSync {
                metadata: object.metadata,
                spec,
                status,
            },
            unreadable: (!unreadable.is_empty()).then(|| unreadable.join("; ")),
        }
    }
}

/// A [`GitOpsSync`] as read by [`GitOpsSync::read`].
#[derive(Debug, Clone)]
pub struct Read {
    pub sync: GitOpsSync,
    /// Why `spec` or `status` did not parse; the parts that did not are
    /// left at their defaults, so the inventory is then unknown.
    pub unreadable: Option<String>,
}

/// The CRD of [`GitOpsSync`]. `spec` is optional: the agent creates its
/// object with none, and the plugin's `suspend` adds it.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = GitOpsSync::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            if let Some(required) = schema.required.as_mut() {
                required.retain(|r| r != "spec");
            }
            if schema.required.as_ref().is_some_and(Vec::is_empty) {
                schema.required = None;
            }
        }
    }
    crd
}

/// Where the agent stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    Synced,
    #[default]
    Progressing,
    Failed,
    Drifted,
    Suspended,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Synced => "Synced",
            Phase::Progressing => "Progressing",
            Phase::Failed => "Failed",
            Phase::Drifted => "Drifted",
            Phase::Suspended => "Suspended",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object the agent owns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct InventoryEntry {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub name: String,
}

impl From<&ObjectKey> for InventoryEntry {
    fn from(k: &ObjectKey) -> Self {
        Self {
            group: k.group.clone(),
            kind: k.kind.clone(),
            name: k.name.clone(),
        }
    }
}

impl InventoryEntry {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.group, &self.kind, &self.name)
    }
}

/// One object that differs from Git, and how.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct DriftEntry {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub reason: String,
}

impl From<&Drift> for DriftEntry {
    fn from(d: &Drift) -> Self {
        Self {
            group: d.key.group.clone(),
            kind: d.key.kind.clone(),
            name: d.key.name.clone(),
            reason: d.reason.clone(),
        }
    }
}

/// Whether the condition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// A condition in the usual Kubernetes shape (metav1.Condition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    #[schemars(length(max = 316))]
    pub type_: String,
    pub status: ConditionStatus,
    #[schemars(length(max = 1024))]
    pub reason: String,
    #[schemars(length(max = 32768))]
    pub message: String,
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
}

/// What the agent reports, written whole on every report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct SyncStatus {
    /// The git commit that is fully applied.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// The newest commit the agent has seen (it may have failed).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub observed_revision: String,
    pub phase: Phase,
    /// When the last sync succeeded (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub synced_at: Option<String>,
    /// The last error or a short summary.
    #[schemars(length(max = 32768))]
    pub message: String,
    /// What the agent owns, sorted.
    pub inventory: Vec<InventoryEntry>,
    /// The objects that differ from Git, sorted; empty when none.
    pub drift: Vec<DriftEntry>,
    /// The number of entries in `drift`, for the Drifted printer column (a
    /// JSONPath column cannot count a list).
    #[schemars(extend("format" = "int32"))]
    pub drifted: u32,
    /// A `Ready` condition, in the usual Kubernetes shape.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl SyncStatus {
    /// The inventory as object keys.
    pub fn inventory_keys(&self) -> Vec<ObjectKey> {
        self.inventory.iter().map(InventoryEntry::key).collect()
    }

    pub fn set_inventory<'a>(&mut self, keys: impl IntoIterator<Item = &'a ObjectKey>) {
        let mut inv: Vec<InventoryEntry> = keys.into_iter().map(InventoryEntry::from).collect();
        inv.sort();
        inv.dedup();
        self.inventory = inv;
    }

    pub fn set_drift<'a>(&mut self, drift: impl IntoIterator<Item = &'a Drift>) {
        let mut d: Vec<DriftEntry> = drift.into_iter().map(DriftEntry::from).collect();
        d.sort();
        d.dedup();
        self.drifted = u32::try_from(d.len()).unwrap_or(u32::MAX);
        self.drift = d;
    }

    /// The `Ready` condition, when there is one.
    pub fn ready(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == "Ready")
    }

    /// Set phase, message and the `Ready` condition (its transition time
    /// moves only when its status does).
    pub fn set_phase(
        &mut self,
        phase: Phase,
        reason: &str,
        message: &str,
        generation: Option<i64>,
        now: Timestamp,
    ) {
        self.phase = phase;
        self.message = truncate(message);
        let ready = if matches!(phase, Phase::Synced) {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        let last_transition_time = match self.ready() {
            Some(c) if c.status == ready => c.last_transition_time.clone(),
            _ => rfc3339(now),
        };
        self.conditions.retain(|c| c.type_ != "Ready");
        self.conditions.push(Condition {
            type_: "Ready".into(),
            status: ready,
            reason: reason.into(),
            message: self.message.clone(),
            last_transition_time,
            observed_generation: generation,
        });
        self.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    }

    /// The body of a server-side apply of the status subresource.
    pub fn apply_body(&self, name: &str) -> Value {
        json!({
            "apiVersion": format!("{}/{}", gitopssync::GROUP, gitopssync::VERSION),
            "kind": gitopssync::KIND,
            "metadata": {"name": name},
            "status": self,
        })
    }
}

/// RFC 3339, whole seconds, UTC (`2026-11-29T01:02:03Z`).
pub fn rfc3339(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

fn truncate(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ... (truncated)", &message[..end])
}

/// The header of the generated CRD file.
const CRD_HEADER: &str = "\
# GitOpsSync: how each namespace's sync agent reports, the way Flux and Argo CD
# report through their own custom resources (DESIGN.md). One object per
# namespace, named `sync-agent` unless the agent's --name says otherwise;
# `kubectl get gos -A` is the fleet view.
#
# Generated from shared/kube/src/gitopssync.rs; do not edit. Regenerate with
#   cargo run -q -p gitops-kube --bin crdgen > manifests/crds/gitopssync.yaml
";

/// `manifests/crds/gitopssync.yaml`, as generated from [`GitOpsSync`].
pub fn crd_yaml() -> String {
    let crd = crd();
    let body = serde_saphyr::to_string(&crd).expect("a CRD serializes to YAML");
    format!("{CRD_HEADER}{body}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn liveness_comes_from_the_lease_annotations() {
        let with = |pairs: &[(&str, &str)]| {
            let mut o = GitOpsSync::new("sync-agent", GitOpsSyncSpec::default());
            o.metadata.annotations = Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            o
        };
        let now: Timestamp = "2026-12-08T10:00:30Z".parse().unwrap();
        let fresh = with(&[
            (ANNOTATION_HOLDER, "pod-1"),
            (ANNOTATION_RENEW, "2026-12-08T10:00:20Z"),
            (ANNOTATION_LEASE_SECONDS, "15"),
        ]);
        assert_eq!(fresh.liveness(now), Liveness::Running);
        let silent = with(&[
            (ANNOTATION_HOLDER, "pod-1"),
            (ANNOTATION_RENEW, "2026-12-08T10:00:05Z"),
            (ANNOTATION_LEASE_SECONDS, "15"),
        ]);
        assert_eq!(
            silent.liveness(now),
            Liveness::Silent("2026-12-08T10:00:05Z".into())
        );
        // a short lease is judged by its own duration
        let short = with(&[
            (ANNOTATION_HOLDER, "pod-1"),
            (ANNOTATION_RENEW, "2026-12-08T10:00:20Z"),
            (ANNOTATION_LEASE_SECONDS, "1.5"),
        ]);
        assert!(matches!(short.liveness(now), Liveness::Silent(_)));
        let stopped = with(&[(ANNOTATION_STOPPED, "2026-12-08T10:00:00Z")]);
        assert_eq!(
            stopped.liveness(now),
            Liveness::Stopped("2026-12-08T10:00:00Z".into())
        );
        assert_eq!(with(&[]).liveness(now), Liveness::Unknown);
    }

    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    /// The shipped CRD is the one this type generates: change the type,
    /// then regenerate the file (the command is in its header).
    #[test]
    fn the_shipped_crd_is_generated_from_the_type() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../manifests/crds/gitopssync.yaml"
        );
        let shipped = std::fs::read_to_string(path).unwrap();
        assert!(
            shipped == crd_yaml(),
            "{path} differs from the GitOpsSync type; regenerate it with\n  \
             cargo run -q -p gitops-kube --bin crdgen > manifests/crds/gitopssync.yaml"
        );
    }

    #[test]
    fn the_crd_keeps_its_columns_and_constraints() {
        let crd = serde_json::to_value(crd()).unwrap();
        let version = &crd["spec"]["versions"][0];
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            columns,
            [
                "Revision",
                "Phase",
                "Drifted",
                "Last Sync",
                "Age",
                "Message"
            ]
        );
        assert_eq!(version["subresources"]["status"], json!({}));
        assert_eq!(crd["spec"]["names"]["shortNames"], json!(["gos"]));
        let schema = &version["schema"]["openAPIV3Schema"];
        assert!(schema["required"].is_null(), "spec is optional: {schema}");
        let status = &schema["properties"]["status"]["properties"];
        assert_eq!(
            status["phase"]["enum"],
            json!(["Synced", "Progressing", "Failed", "Drifted", "Suspended"])
        );
        let conditions = &status["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
        let condition = &conditions["items"];
        assert_eq!(
            condition["properties"]["status"]["enum"],
            json!(["True", "False", "Unknown"])
        );
        assert_eq!(condition["properties"]["type"]["maxLength"], 316);
        assert_eq!(condition["properties"]["message"]["maxLength"], 32768);
        assert_eq!(
            condition["properties"]["lastTransitionTime"]["format"],
            "date-time"
        );
        let mut required: Vec<&str> = condition["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        required.sort_unstable();
        assert_eq!(
            required,
            ["lastTransitionTime", "message", "reason", "status", "type"]
        );
        assert_eq!(
            status["inventory"]["items"]["required"],
            json!(["kind", "name"])
        );
        assert_eq!(status["drifted"]["minimum"], 0.0);
    }

    fn dynamic(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_object_without_spec_or_status_reads_as_not_suspended() {
        let read = GitOpsSync::read(dynamic(json!({
            "apiVersion": "kubectl-gitops.io/v1alpha1",
            "kind": "GitOpsSync",
            "metadata": {"name": "sync-agent", "namespace": "team-a"},
        })));
        assert!(read.unreadable.is_none());
        assert!(!read.sync.suspended());
        assert!(read.sync.status.is_none());
        assert_eq!(read.sync.metadata.namespace.as_deref(), Some("team-a"));
    }

    #[test]
    fn a_status_that_does_not_parse_is_said_not_dropped() {
        let read = GitOpsSync::read(dynamic(json!({
            "apiVersion": "kubectl-gitops.io/v1alpha1",
            "kind": "GitOpsSync",
            "metadata": {"name": "sync-agent"},
            "spec": {"suspend": true},
            "status": {"phase": "Synced", "inventory": "not a list"},
        })));
        assert!(read.sync.suspended());
        assert!(read.sync.status.is_none());
        let why = read.unreadable.unwrap();
        assert!(why.starts_with("status: "), "{why}");
    }

    #[test]
    fn status_serializes_in_the_contract_shape() {
        let mut s = SyncStatus {
            revision: "abc".into(),
            observed_revision: "abc".into(),
            synced_at: Some(rfc3339(ts(1_800_000_000))),
            ..SyncStatus::default()
        };
        let keys = [
            ObjectKey::new("networking.istio.io", "VirtualService", "reviews"),
            ObjectKey::new("networking.istio.io", "DestinationRule", "reviews"),
        ];
        s.set_inventory(keys.iter());
        s.set_drift(&[Drift {
            key: keys[0].clone(),
            reason: "spec.x: Git has 1, live has 2".into(),
        }]);
        s.set_phase(
            Phase::Drifted,
            "Drifted",
            "1 object drifted",
            Some(3),
            ts(1_800_000_000),
        );
        let body = s.apply_body("sync-agent");
        assert_eq!(body["apiVersion"], "kubectl-gitops.io/v1alpha1");
        assert_eq!(body["kind"], "GitOpsSync");
        assert_eq!(body["metadata"]["name"], "sync-agent");
        let st = &body["status"];
        assert_eq!(st["revision"], "abc");
        assert_eq!(st["observedRevision"], "abc");
        assert_eq!(st["phase"], "Drifted");
        assert_eq!(st["syncedAt"], "2027-01-15T08:00:00Z");
        assert_eq!(st["message"], "1 object drifted");
        assert_eq!(
            st["inventory"],
            json!([
                {"group": "networking.istio.io", "kind": "DestinationRule", "name": "reviews"},
                {"group": "networking.istio.io", "kind": "VirtualService", "name": "reviews"}
            ])
        );
        assert_eq!(
            st["drift"],
            json!([{"group": "networking.istio.io", "kind": "VirtualService", "name": "reviews", "reason": "spec.x: Git has 1, live has 2"}])
        );
        assert_eq!(st["drifted"], 1);
        assert_eq!(
            st["conditions"],
            json!([{"type": "Ready", "status": "False", "reason": "Drifted", "message": "1 object drifted",
                    "lastTransitionTime": "2027-01-15T08:00:00Z", "observedGeneration": 3}])
        );
        // and reads back the same (inventory survives restarts)
        let back: SyncStatus = serde_json::from_value(st.clone()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.inventory_keys()[1], keys[0]);
    }

    #[test]
    fn ready_transition_time_moves_only_when_ready_flips() {
        let mut s = SyncStatus::default();
        s.set_phase(Phase::Synced, "Synced", "ok", None, ts(100));
        s.set_phase(Phase::Synced, "Synced", "still ok", None, ts(200));
        assert_eq!(s.conditions.len(), 1);
        assert_eq!(s.conditions[0].last_transition_time, rfc3339(ts(100)));
        s.set_phase(Phase::Failed, "InvalidRevision", "bad", None, ts(300));
        assert_eq!(s.conditions[0].status, ConditionStatus::False);
        assert_eq!(s.conditions[0].last_transition_time, rfc3339(ts(300)));
        s.set_phase(Phase::Drifted, "Drifted", "d", None, ts(400));
        assert_eq!(s.conditions[0].last_transition_time, rfc3339(ts(300)));
    }

    #[test]
    fn a_fresh_status_omits_what_is_not_known_yet_and_messages_are_bounded() {
        let mut s = SyncStatus::default();
        s.set_phase(Phase::Failed, "X", &"é".repeat(20_000), None, ts(0));
        let v = serde_json::to_value(&s).unwrap();
        assert!(v.get("revision").is_none());
        assert!(v.get("syncedAt").is_none());
        assert_eq!(v["inventory"], json!([]));
        assert_eq!(v["drift"], json!([]));
        assert!(s.message.len() < MAX_MESSAGE + 20);
        assert!(s.message.ends_with("(truncated)"));
    }
}

//! Every way a pass can fail, as one enum: the condition reason it reports,
//! the `result` label it counts under, and whether (and when) to retry.
//! The shape of kube-rs/controller-rs's `Error` with its `metric_label()`.

use std::time::Duration;

use gitops_shared::plan::PlanRefusal;

use crate::{apply::ApplyError, cluster, load::LoadFailure};

/// Why a pass did not sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The blocking read of the revision panicked: a bug.
    #[error("loading the revision panicked: {0}")]
    LoadPanicked(String),
    /// The checkout cannot be read (permissions, I/O).
    #[error("{0}")]
    RepoUnreadable(LoadFailure),
    /// git-sync kept moving the link while the revision was read.
    #[error("revision not read: {0}")]
    RevisionUnstable(LoadFailure),
    /// The status in the cluster does not parse: the inventory is unknown.
    #[error(
        "the status of GitOpsSync {name} does not parse ({why}); its inventory is unknown, so nothing is applied or pruned. Was it written by another version of sync-agent? Run that version, or clear the status (kubectl edit --subresource=status)"
    )]
    StatusUnreadable { name: String, why: String },
    /// The revision breaks a rule (parse, policy, limits, `--strict`).
    /// Its first line carries the first cause (and how many more), since
    /// `kubectl get gos` and `kubectl gitops status` show only that line.
    #[error(
        "revision {revision} refused, nothing applied or pruned: {}\n{refusal}",
        headline(.refusal)
    )]
    InvalidRevision { revision: String, refusal: String },
    /// The plan's safety rules refused (it would empty the namespace).
    #[error("revision {revision}: {refusal}; nothing applied or pruned")]
    PruneRefused {
        revision: String,
        refusal: PlanRefusal,
    },
    /// A read or write of the API server failed outside the apply.
    #[error("{doing}: {}{hint}", cluster::describe(.source))]
    Api {
        doing: &'static str,
        source: kube::Error,
        /// What to check, appended to the message (may be empty).
        hint: &'static str,
    },
    /// Kinds the revision or the inventory uses that the server does not
    /// serve: their CRDs are missing. Nothing is planned without their
    /// live objects.
    #[error(
        "the API server does not serve {kinds}: are Istio's CRDs installed? Nothing applied or pruned"
    )]
    KindsNotServed { kinds: String },
    /// The apply stopped part-way; what it wrote before is in the error.
    #[error("revision {revision} not applied:\n{source}")]
    ApplyFailed {
        revision: String,
        source: ApplyError,
    },
}

/// The first line of `errors` (one per line), and how many follow.
fn headline(errors: &str) -> String {
    let mut lines = errors.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("no reason given");
    match lines.count() {
        0 => first.to_string(),
        more => format!("{first} (and {more} more)"),
    }
}

impl SyncError {
    pub fn api(doing: &'static str, source: kube::Error) -> Self {
        SyncError::Api {
            doing,
            source,
            hint: "",
        }
    }

    /// A failed request on the agent's own `GitOpsSync`: a 404 there means
    /// the CRD is missing, and the message says so.
    pub fn gitopssync(doing: &'static str, source: kube::Error) -> Self {
        let hint = if cluster::status_code(&source) == Some(404) {
            "; is the GitOpsSync CRD installed? (manifests/crds/gitopssync.yaml)"
        } else {
            ""
        };
        SyncError::Api {
            doing,
            source,
            hint,
        }
    }

    /// The `result` label of `gitops_sync_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SyncError::LoadPanicked(_)
            | SyncError::RepoUnreadable(_)
            | SyncError::RevisionUnstable(_)
            | SyncError::Api { .. }
            | SyncError::KindsNotServed { .. } => "error",
            SyncError::StatusUnreadable { .. } => "status_unreadable",
            SyncError::InvalidRevision { .. } => "invalid",
            SyncError::PruneRefused { .. } => "refused",
            SyncError::ApplyFailed { .. } => "apply_failed",
        }
    }

    /// The reason of the `Ready` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            SyncError::LoadPanicked(_) => "InternalError",
            SyncError::RepoUnreadable(_) | SyncError::RevisionUnstable(_) => "RepoUnreadable",
            SyncError::StatusUnreadable { .. } => "StatusUnreadable",
            SyncError::InvalidRevision { .. } => "InvalidRevision",
            SyncError::PruneRefused { .. } => "PruneRefused",
            SyncError::Api { .. } => "ApiError",
            SyncError::KindsNotServed { .. } => "KindNotServed",
            SyncError::ApplyFailed { .. } => "ApplyFailed",
        }
    }

    /// Whether the cause may pass by itself, so the loop retries before the
    /// next resync. A refused revision fails the same way until Git changes.
    pub fn retry_soon(&self) -> bool {
        match self {
            SyncError::LoadPanicked(_)
            | SyncError::RepoUnreadable(_)
            | SyncError::RevisionUnstable(_) => true,
            SyncError::StatusUnreadable { .. }
            | SyncError::InvalidRevision { .. }
            | SyncError::PruneRefused { .. }
            | SyncError::KindsNotServed { .. } => false,
            SyncError::Api { source, .. } => cluster::is_transient(source),
            SyncError::ApplyFailed { source, .. } => source.is_transient(),
        }
    }

    /// Whether to write it into the status. Not when the API server itself
    /// is failing (the write would fail, or hang, the same way), not while
    /// the status is unreadable (a write would replace its inventory), and
    /// not for a revision read mid-swap (the next read will do).
    pub fn report(&self) -> bool {
        match self {
            SyncError::StatusUnreadable { .. } | SyncError::RevisionUnstable(_) => false,
            SyncError::Api { source, .. } => !cluster::is_transient(source),
            _ => true,
        }
    }

    /// How long the server asked us to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SyncError::Api { source, .. } => cluster::retry_after(source),
            SyncError::ApplyFailed { source, .. } => source.retry_after(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::{Status, response::StatusDetails};

    fn api_error(code: u16, retry_after_seconds: u32) -> kube::Error {
        let details = StatusDetails {
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            uid: String::new(),
            causes: Vec::new(),
            retry_after_seconds,
        };
        kube::Error::Api(
            Status {
                code,
                details: Some(details),
                ..Status::failure("slow down", "TooManyRequests")
            }
            .boxed(),
        )
    }

    #[test]
    fn each_failure_has_its_label_reason_and_retry() {
        let refused = SyncError::PruneRefused {
            revision: "abc".into(),
            refusal: PlanRefusal::WouldEmpty { owned: 3 },
        };
        assert_eq!(refused.metric_label(), "refused");
        assert_eq!(refused.reason(), "PruneRefused");
        assert!(!refused.retry_soon() && refused.report());

        let unreadable = SyncError::StatusUnreadable {
            name: "sync-agent".into(),
            why: "bad".into(),
        };
        assert_eq!(unreadable.metric_label(), "status_unreadable");
        assert!(
            !unreadable.report(),
            "a status write would drop the inventory"
        );

        let busy = SyncError::api("listing live objects", api_error(429, 7));
        assert_eq!(busy.metric_label(), "error");
        assert!(busy.retry_soon() && !busy.report());
        assert_eq!(busy.retry_after(), Some(Duration::from_secs(7)));

        let forbidden = SyncError::api("listing live objects", api_error(403, 0));
        assert!(!forbidden.retry_soon() && forbidden.report());
        assert_eq!(forbidden.retry_after(), None);

        let invalid = SyncError::InvalidRevision {
            revision: "abc".into(),
            refusal:
                "a.yaml: document 1, line 2: bad\nb.yaml: document 1, line 9: worse\nc.yaml: worst"
                    .into(),
        };
        assert_eq!(
            invalid.to_string().lines().next().unwrap(),
            "revision abc refused, nothing applied or pruned: a.yaml: document 1, line 2: bad (and 2 more)"
        );
        let one = SyncError::InvalidRevision {
            revision: "abc".into(),
            refusal: "a.yaml: document 1, line 2: bad".into(),
        };
        assert_eq!(
            one.to_string().lines().next().unwrap(),
            "revision abc refused, nothing applied or pruned: a.yaml: document 1, line 2: bad"
        );

        let missing = SyncError::gitopssync("creating the GitOpsSync", api_error(404, 0));
        assert!(
            missing
                .to_string()
                .contains("is the GitOpsSync CRD installed"),
            "{missing}"
        );
    }
}

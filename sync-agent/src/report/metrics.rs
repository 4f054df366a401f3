//! Prometheus metrics of DESIGN.md, kept and encoded by prometheus-client
//! (the OpenMetrics text format that Prometheus scrapes).

use std::{fmt, sync::atomic::AtomicU64, time::Duration};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the sync duration histogram, in seconds.
const BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Every `result` label value, so each series exists from the start.
pub const RESULTS: &[&str] = &[
    "success",
    "unchanged",
    "suspended",
    "standby",
    "invalid",
    "refused",
    "apply_failed",
    "status_unreadable",
    "error",
];

/// Every `phase` label value of `gitops_phase` (the GitOpsSync's phases).
pub const PHASES: &[&str] = &["Synced", "Progressing", "Failed", "Drifted", "Suspended"];

/// Every `state` label value of `gitops_objects`.
pub const STATES: &[&str] = &["managed", "create", "update", "unchanged", "prune"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CanaryLabel {
    virtualservice: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabel {
    revision: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabel {
    watch: String,
    kind: String,
}

/// The agent's metrics; shared between the loop and the HTTP server.
pub struct Metrics {
    registry: Registry,
    syncs: Family<ResultLabel, Counter>,
    duration: Histogram,
    objects: Family<StateLabel, Gauge>,
    drifted: Gauge,
    last_sync: Gauge<f64, AtomicU64>,
    revision: Family<RevisionLabel, Gauge>,
    watch_errors: Family<WatchLabel, Counter>,
    phase: Family<PhaseLabel, Gauge>,
    rollbacks: Family<CanaryLabel, Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let syncs = Family::<ResultLabel, Counter>::default();
        for result in RESULTS {
            let _ = syncs.get_or_create(&ResultLabel {
                result: result.to_string(),
            });
        }
        let objects = Family::<StateLabel, Gauge>::default();
        for state in STATES {
            let _ = objects.get_or_create(&StateLabel {
                state: state.to_string(),
            });
        }
        let phase = Family::<PhaseLabel, Gauge>::default();
        for p in PHASES {
            let _ = phase.get_or_create(&PhaseLabel {
                phase: p.to_string(),
            });
        }
        let m = Self {
            registry: Registry::default(),
            syncs,
            duration: Histogram::new(BUCKETS.iter().copied()),
            objects,
            drifted: Gauge::default(),
            last_sync: Gauge::default(),
            revision: Family::default(),
            watch_errors: Family::default(),
            phase,
            rollbacks: Family::default(),
        };
        let mut registry = Registry::default();
        registry.register(
            "gitops_watch_errors",
            "Errors of the API watches (drift, per kind; control, the GitOpsSync); while they fail, drift and suspend are seen on the resync tick only",
            m.watch_errors.clone(),
        );
        registry.register(
            "gitops_sync",
            "Reconciles, by result: success (Git applied: objects written, or a new revision reported), unchanged (a resync that found everything as Git says and wrote nothing), suspended (spec.suspend: nothing applied), standby (another replica writes), invalid (the revision was refused: a bad file, policy, limits), refused (a prune the safety rules refused), apply_failed (a write failed), status_unreadable (the GitOpsSync's status does not parse), error (the API server or the checkout could not be read)",
            m.syncs.clone(),
        );
        registry.register(
            "gitops_sync_duration_seconds",
            "How long a reconcile (load, plan, apply, report) took",
            m.duration.clone(),
        );
        registry.register(
            "gitops_objects",
            "Objects by state as of the last plan: managed (the inventory), create, update, unchanged, prune",
            m.objects.clone(),
        );
        registry.register(
            "gitops_drifted_objects",
            "Objects that differ from Git and were not healed",
            m.drifted.clone(),
        );
        registry.register(
            "gitops_last_sync_timestamp_seconds",
            "Unix time of the last successful reconcile: Git applied, or drift reported (0 before the first)",
            m.last_sync.clone(),
        );
        registry.register(
            "gitops_revision_info",
            "The git revision that is fully applied (value 1)",
            m.revision.clone(),
        );
        registry.register(
            "gitops_phase",
            "The phase the agent reports in its GitOpsSync (value 1; the others 0)",
            m.phase.clone(),
        );
        registry.register(
            "gitops_canary_rollbacks",
            "Canary releases rolled back: a VirtualService applied with its canary annotation newly in phase Aborted",
            m.rollbacks.clone(),
        );
        Self { registry, ..m }
    }

    /// The phase reported now.
    pub fn set_phase(&self, phase: &str) {
        for p in PHASES {
            self.phase
                .get_or_create(&PhaseLabel {
                    phase: p.to_string(),
                })
                .set(i64::from(*p == phase));
        }
    }

    /// A canary release of `virtualservice` was rolled back, as Git says.
    pub fn observe_rollback(&self, virtualservice: &str) {
        self.rollbacks
            .get_or_create(&CanaryLabel {
                virtualservice: virtualservice.to_string(),
            })
            .inc();
    }

    /// One reconcile ended with `result` after `duration`.
    pub fn observe_sync(&self, result: &str, duration: Duration) {
        self.syncs
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
        self.duration.observe(duration.as_secs_f64());
    }

    /// Objects by state as of the last plan (and `managed`, the inventory).
    pub fn set_objects(&self, counts: &[(&str, usize)]) {
        for (state, n) in counts {
            self.objects
                .get_or_create(&StateLabel {
                    state: state.to_string(),
                })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    /// One error of an API watch (`drift` on a kind, or `control` on the
    /// agent's own GitOpsSync).
    pub fn observe_watch_error(&self, watch: &str, kind: &str) {
        self.watch_errors
            .get_or_create(&WatchLabel {
                watch: watch.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    pub fn set_drifted(&self, n: usize) {
        self.drifted.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The last successful sync: its time (Unix seconds) and revision.
    pub fn set_synced(&self, unix_seconds: f64, revision: &str) {
        self.last_sync.set(unix_seconds);
        let label = RevisionLabel {
            revision: revision.to_string(),
        };
        if self.revision.get(&label).is_none() {
            // One series: the revision applied now.
            self.revision.clear();
            self.revision.get_or_create(&label).set(1);
        }
    }

    /// The OpenMetrics text exposition ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_design_metric() {
        let m = Metrics::new();
        m.observe_sync("success", Duration::from_millis(300));
        m.observe_sync("invalid", Duration::from_secs(200));
        m.set_objects(&[("managed", 5), ("unchanged", 4), ("update", 1)]);
        m.set_drifted(2);
        m.set_phase("Drifted");
        m.observe_rollback("reviews");
        m.set_synced(1_800_000_000.5, "old");
        m.set_synced(1_800_000_000.5, "abc\"def");
        m.observe_watch_error("drift", "VirtualService");
        let text = m.render();
        for needle in [
            "# TYPE gitops_sync counter\n",
            "gitops_sync_total{result=\"success\"} 1\n",
            "gitops_sync_total{result=\"invalid\"} 1\n",
            "gitops_sync_total{result=\"apply_failed\"} 0\n",
            "# TYPE gitops_sync_duration_seconds histogram\n",
            "gitops_sync_duration_seconds_bucket{le=\"0.25\"} 0\n",
            "gitops_sync_duration_seconds_bucket{le=\"0.5\"} 1\n",
            "gitops_sync_duration_seconds_bucket{le=\"120.0\"} 1\n",
            "gitops_sync_duration_seconds_bucket{le=\"+Inf\"} 2\n",
            "gitops_sync_duration_seconds_sum 200.3\n",
            "gitops_sync_duration_seconds_count 2\n",
            "gitops_objects{state=\"managed\"} 5\n",
            "gitops_objects{state=\"prune\"} 0\n",
            "gitops_drifted_objects 2\n",
            "gitops_last_sync_timestamp_seconds 1800000000.5\n",
            "gitops_revision_info{revision=\"abc\\\"def\"} 1\n",
            "gitops_watch_errors_total{watch=\"drift\",kind=\"VirtualService\"} 1\n",
            "gitops_phase{phase=\"Drifted\"} 1\n",
            "gitops_phase{phase=\"Synced\"} 0\n",
            "gitops_canary_rollbacks_total{virtualservice=\"reviews\"} 1\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(
            !text.contains("revision=\"old\""),
            "one revision series\n{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        // the HELP of gitops_sync_total explains every result
        let help = text
            .lines()
            .find(|l| l.starts_with("# HELP gitops_sync "))
            .unwrap();
        for result in RESULTS {
            assert!(help.contains(&format!(" {result} (")), "{result}: {help}");
        }
        // every line is a comment or `name{labels} value`
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(series.starts_with("gitops_"), "{line}");
            value.parse::<f64>().unwrap();
        }
    }

    #[test]
    fn before_the_first_sync_there_is_no_revision_series() {
        let text = Metrics::new().render();
        assert!(
            text.contains("gitops_last_sync_timestamp_seconds 0"),
            "{text}"
        );
        assert!(!text.contains("gitops_revision_info{"));
        let m = Metrics::new();
        m.set_synced(1.0, "abc");
        assert!(m.render().contains("# TYPE gitops_revision_info gauge"));
    }
}

//! Prometheus metrics of DESIGN.md, rendered by hand in the text exposition
//! format (no client library needed for six series).

use std::{collections::BTreeMap, fmt::Write as _, sync::Mutex, time::Duration};

/// Upper bounds of the sync duration histogram, in seconds.
const BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Every `result` label value, so each series exists from the start.
pub const RESULTS: &[&str] = &[
    "success",
    "suspended",
    "standby",
    "invalid",
    "refused",
    "apply_failed",
    "status_unreadable",
    "error",
];

/// Every `state` label value of `gitops_objects`.
pub const STATES: &[&str] = &["managed", "create", "update", "unchanged", "prune"];

#[derive(Debug, Default)]
struct State {
    sync_total: BTreeMap<String, u64>,
    bucket_counts: Vec<u64>,
    duration_sum: f64,
    duration_count: u64,
    objects: BTreeMap<String, u64>,
    drifted: u64,
    last_sync: Option<f64>,
    revision: Option<String>,
    /// `(watch, kind)` -> errors of the API watches.
    watch_errors: BTreeMap<(String, String), u64>,
}

/// The agent's metrics; shared between the loop and the HTTP server.
#[derive(Debug)]
pub struct Metrics {
    state: Mutex<State>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let state = State {
            sync_total: RESULTS.iter().map(|r| (r.to_string(), 0)).collect(),
            bucket_counts: vec![0; BUCKETS.len()],
            objects: STATES.iter().map(|s| (s.to_string(), 0)).collect(),
            ..State::default()
        };
        Self {
            state: Mutex::new(state),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // A panic while holding the lock leaves plain numbers behind: keep going.
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// One reconcile ended with `result` after `duration`.
    pub fn observe_sync(&self, result: &str, duration: Duration) {
        let secs = duration.as_secs_f64();
        self.with(|s| {
            *s.sync_total.entry(result.to_string()).or_default() += 1;
            for (count, bound) in s.bucket_counts.iter_mut().zip(BUCKETS) {
                if secs <= *bound {
                    *count += 1;
                }
            }
            s.duration_sum += secs;
            s.duration_count += 1;
        });
    }

    /// Objects by state as of the last plan (and `managed`, the inventory).
    pub fn set_objects(&self, counts: &[(&str, usize)]) {
        self.with(|s| {
            for (state, n) in counts {
                s.objects.insert(state.to_string(), *n as u64);
            }
        });
    }

    /// One error of an API watch (`drift` on a kind, or `control` on the
    /// agent's own GitOpsSync).
    pub fn observe_watch_error(&self, watch: &str, kind: &str) {
        self.with(|s| {
            *s.watch_errors
                .entry((watch.to_string(), kind.to_string()))
                .or_default() += 1;
        });
    }

    pub fn set_drifted(&self, n: usize) {
        self.with(|s| s.drifted = n as u64);
    }

    /// The last successful sync: its time (Unix seconds) and revision.
    pub fn set_synced(&self, unix_seconds: f64, revision: &str) {
        self.with(|s| {
            s.last_sync = Some(unix_seconds);
            s.revision = Some(revision.to_string());
        });
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        self.with(|s| {
            let mut out = String::new();
            header(
                &mut out,
                "gitops_watch_errors_total",
                "counter",
                "Errors of the API watches (drift, per kind; control, the GitOpsSync); while they fail, drift and suspend are seen on the resync tick only.",
            );
            for ((watch, kind), n) in &s.watch_errors {
                let _ = writeln!(
                    out,
                    "gitops_watch_errors_total{{watch=\"{}\",kind=\"{}\"}} {n}",
                    escape(watch),
                    escape(kind)
                );
            }
            header(&mut out, "gitops_sync_total", "counter", "Reconciles, by result.");
            for (result, n) in &s.sync_total {
                let _ = writeln!(out, "gitops_sync_total{{result=\"{}\"}} {n}", escape(result));
            }
            header(
                &mut out,
                "gitops_sync_duration_seconds",
                "histogram",
                "How long a reconcile (load, plan, apply, report) took.",
            );
            for (bound, n) in BUCKETS.iter().zip(&s.bucket_counts) {
                let _ = writeln!(out, "gitops_sync_duration_seconds_bucket{{le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "gitops_sync_duration_seconds_bucket{{le=\"+Inf\"}} {}",
                s.duration_count
            );
            let _ = writeln!(out, "gitops_sync_duration_seconds_sum {}", s.duration_sum);
            let _ = writeln!(out, "gitops_sync_duration_seconds_count {}", s.duration_count);
            header(
                &mut out,
                "gitops_objects",
                "gauge",
                "Objects by state as of the last plan: managed (the inventory), create, update, unchanged, prune.",
            );
            for (state, n) in &s.objects {
                let _ = writeln!(out, "gitops_objects{{state=\"{}\"}} {n}", escape(state));
            }
            header(
                &mut out,
                "gitops_drifted_objects",
                "gauge",
                "Objects that differ from Git and were not healed.",
            );
            let _ = writeln!(out, "gitops_drifted_objects {}", s.drifted);
            header(
                &mut out,
                "gitops_last_sync_timestamp_seconds",
                "gauge",
                "Unix time of the last successful reconcile: Git applied, or drift reported (0 before the first).",
            );
            let _ = writeln!(
                out,
                "gitops_last_sync_timestamp_seconds {}",
                s.last_sync.unwrap_or(0.0)
            );
            header(
                &mut out,
                "gitops_revision_info",
                "gauge",
                "The git revision that is fully applied (value 1).",
            );
            if let Some(rev) = &s.revision {
                let _ = writeln!(out, "gitops_revision_info{{revision=\"{}\"}} 1", escape(rev));
            }
            out
        })
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
        m.set_synced(1_800_000_000.5, "abc\"def");
        let text = m.render();
        for needle in [
            "# TYPE gitops_sync_total counter\n",
            "gitops_sync_total{result=\"success\"} 1\n",
            "gitops_sync_total{result=\"invalid\"} 1\n",
            "gitops_sync_total{result=\"apply_failed\"} 0\n",
            "# TYPE gitops_sync_duration_seconds histogram\n",
            "gitops_sync_duration_seconds_bucket{le=\"0.25\"} 0\n",
            "gitops_sync_duration_seconds_bucket{le=\"0.5\"} 1\n",
            "gitops_sync_duration_seconds_bucket{le=\"120\"} 1\n",
            "gitops_sync_duration_seconds_bucket{le=\"+Inf\"} 2\n",
            "gitops_sync_duration_seconds_sum 200.3\n",
            "gitops_sync_duration_seconds_count 2\n",
            "gitops_objects{state=\"managed\"} 5\n",
            "gitops_objects{state=\"prune\"} 0\n",
            "gitops_drifted_objects 2\n",
            "gitops_last_sync_timestamp_seconds 1800000000.5\n",
            "gitops_revision_info{revision=\"abc\\\"def\"} 1\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
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
        assert!(text.contains("gitops_last_sync_timestamp_seconds 0\n"));
        assert!(!text.contains("gitops_revision_info{"));
        assert!(text.contains("# TYPE gitops_revision_info gauge"));
    }
}

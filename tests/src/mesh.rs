//! A mesh-traffic simulator for canary tests (DESIGN.md, "Tests against a
//! real API server"): it watches one VirtualService on the test API server,
//! splits a synthetic stream of requests between the route's subsets by the
//! live weights, and serves `/metrics` with Istio's own metric and label
//! names (`istio_requests_total`, `istio_request_duration_milliseconds`,
//! `reporter="destination"`, `destination_version`, ...). Each version's
//! error rate and latency are set by the test while it runs, so the PromQL
//! of `canary run` is evaluated by a real Prometheus on traffic that
//! follows what the agent applied.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result};
use futures::StreamExt as _;
use http_body_util::Full;
use hyper::{Request, Response, body::Bytes, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kube::{
    Api,
    api::{ApiResource, DynamicObject},
    runtime::watcher,
};
use serde_json::Value;

/// Istio's default request-duration buckets, in milliseconds.
const BUCKETS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];
const TICK: Duration = Duration::from_millis(100);

/// What the test sets for one version.
#[derive(Debug, Clone, Copy)]
struct Behaviour {
    error_rate: f64,
    latency_ms: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            latency_ms: 8.0,
        }
    }
}

#[derive(Debug, Default)]
struct Version {
    /// Requests not yet whole (the split is exact over time).
    pending: f64,
    pending_errors: f64,
    ok: u64,
    errors: u64,
    /// Per bucket, cumulative as exposed.
    buckets: Vec<u64>,
    sum_ms: f64,
}

#[derive(Debug, Default)]
struct State {
    /// `subset -> weight` of the watched route, as live in the cluster.
    weights: BTreeMap<String, u64>,
    behaviour: BTreeMap<String, Behaviour>,
    versions: BTreeMap<String, Version>,
    /// Each new set of live weights seen through the watch, in order.
    history: Vec<BTreeMap<String, u64>>,
}

/// The simulator; stops when dropped.
#[derive(Debug)]
pub struct MeshSim {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

/// The route's `subset -> weight` (a sole destination without a weight has 100).
fn route_weights(vs: &Value, route: usize) -> BTreeMap<String, u64> {
    let dests = vs["spec"]["http"][route]["route"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let sole = dests.len() == 1;
    dests
        .iter()
        .filter_map(|d| {
            let subset = d["destination"]["subset"].as_str()?.to_string();
            let weight = d["weight"].as_u64().unwrap_or(if sole { 100 } else { 0 });
            Some((subset, weight))
        })
        .collect()
}

impl MeshSim {
    /// Watch VirtualService `name` in `namespace` through `config`'s server
    /// and send `rps` requests a second to HTTP route `route` of service
    /// `service`.
    pub fn start(
        config: kube::Config,
        namespace: &str,
        name: &str,
        route: usize,
        service: &str,
        rps: f64,
    ) -> Result<MeshSim> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let state = Arc::new(Mutex::new(State::default()));
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;

        // The client spawns its connection buffer on the current runtime.
        let client = {
            let _enter = runtime.enter();
            kube::Client::try_from(config).context("a client for the simulator")?
        };
        let resource = ApiResource {
            group: "networking.istio.io".into(),
            version: "v1".into(),
            api_version: "networking.istio.io/v1".into(),
            kind: "VirtualService".into(),
            plural: "virtualservices".into(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &resource);
        let watch_state = state.clone();
        let selector = format!("metadata.name={name}");
        runtime.spawn(async move {
            let stream = watcher(api, watcher::Config::default().fields(&selector));
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let Ok(event) = event else {
                    continue; // the watcher retries by itself
                };
                let update = |o: &DynamicObject| {
                    serde_json::to_value(o)
                        .map(|v| route_weights(&v, route))
                        .unwrap_or_default()
                };
                let weights = match event {
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) => update(&o),
                    watcher::Event::Delete(_) => BTreeMap::new(),
                    watcher::Event::Init | watcher::Event::InitDone => continue,
                };
                let mut s = watch_state.lock().expect("the simulator's state");
                if s.history.last() != Some(&weights) {
                    s.history.push(weights.clone());
                }
                s.weights = weights;
            }
        });

        let tick_state = state.clone();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                let mut s = tick_state.lock().expect("the simulator's state");
                let s = &mut *s;
                let total: u64 = s.weights.values().sum();
                if total == 0 {
                    continue;
                }
                let batch = rps * TICK.as_secs_f64();
                for (subset, weight) in &s.weights {
                    let b = s.behaviour.get(subset).copied().unwrap_or_default();
                    let v = s.versions.entry(subset.clone()).or_default();
                    if v.buckets.is_empty() {
                        v.buckets = vec![0; BUCKETS.len()];
                    }
                    v.pending += batch * (*weight as f64) / (total as f64);
                    let n = v.pending.floor();
                    v.pending -= n;
                    v.pending_errors += n * b.error_rate;
                    let errors = v.pending_errors.floor();
                    v.pending_errors -= errors;
                    let n = n as u64;
                    let errors = (errors as u64).min(n);
                    v.errors += errors;
                    v.ok += n - errors;
                    v.sum_ms += n as f64 * b.latency_ms;
                    for (i, le) in BUCKETS.iter().enumerate() {
                        if b.latency_ms <= *le {
                            v.buckets[i] += n;
                        }
                    }
                }
            }
        });

        let serve_state = state.clone();
        let namespace = namespace.to_string();
        let service = service.to_string();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = serve_state.clone();
                let (namespace, service) = (namespace.clone(), service.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                        let body = {
                            let s = state.lock().expect("the simulator's state");
                            exposition(&s, &namespace, &service)
                        };
                        async move {
                            Response::builder()
                                .header("content-type", "text/plain; version=0.0.4")
                                .body(Full::new(Bytes::from(body)))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });

        Ok(MeshSim {
            state,
            addr,
            runtime: Some(runtime),
        })
    }

    /// Where Prometheus scrapes `/metrics`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The fraction (0..1) of `version`'s requests answered with a 500.
    pub fn set_error_rate(&self, version: &str, rate: f64) {
        let mut s = self.state.lock().expect("the simulator's state");
        s.behaviour
            .entry(version.to_string())
            .or_default()
            .error_rate = rate;
    }

    /// How long `version` takes to answer.
    pub fn set_latency_ms(&self, version: &str, ms: f64) {
        let mut s = self.state.lock().expect("the simulator's state");
        s.behaviour
            .entry(version.to_string())
            .or_default()
            .latency_ms = ms;
    }

    /// The live weights the simulator splits by.
    pub fn weights(&self) -> BTreeMap<String, u64> {
        self.state
            .lock()
            .expect("the simulator's state")
            .weights
            .clone()
    }

    /// Every set of live weights seen so far, in order.
    pub fn history(&self) -> Vec<BTreeMap<String, u64>> {
        self.state
            .lock()
            .expect("the simulator's state")
            .history
            .clone()
    }

    /// Requests sent to `version` so far: `(non-5xx, 5xx)`.
    pub fn requests(&self, version: &str) -> (u64, u64) {
        let s = self.state.lock().expect("the simulator's state");
        s.versions.get(version).map_or((0, 0), |v| (v.ok, v.errors))
    }
}

impl Drop for MeshSim {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The Prometheus text format of every version seen so far.
fn exposition(s: &State, namespace: &str, service: &str) -> String {
    let mut out = String::new();
    let labels = |version: &str| {
        format!(
            "reporter=\"destination\",destination_workload=\"{service}-{version}\",destination_workload_namespace=\"{namespace}\",destination_service_name=\"{service}\",destination_version=\"{version}\""
        )
    };
    out.push_str("# TYPE istio_requests_total counter\n");
    for (version, v) in &s.versions {
        let l = labels(version);
        // As in Istio, a response code's series exists once it was answered.
        if v.ok > 0 {
            let _ = writeln!(
                out,
                "istio_requests_total{{{l},response_code=\"200\"}} {}",
                v.ok
            );
        }
        if v.errors > 0 {
            let _ = writeln!(
                out,
                "istio_requests_total{{{l},response_code=\"500\"}} {}",
                v.errors
            );
        }
    }
    out.push_str("# TYPE istio_request_duration_milliseconds histogram\n");
    for (version, v) in &s.versions {
        let l = labels(version);
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "istio_request_duration_milliseconds_bucket{{{l},le=\"{le}\"}} {}",
                v.buckets[i]
            );
        }
        let count = v.ok + v.errors;
        let _ = writeln!(
            out,
            "istio_request_duration_milliseconds_bucket{{{l},le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "istio_request_duration_milliseconds_sum{{{l}}} {}",
            v.sum_ms
        );
        let _ = writeln!(
            out,
            "istio_request_duration_milliseconds_count{{{l}}} {count}"
        );
    }
    out
}

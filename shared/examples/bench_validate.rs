//! Benchmark: `validate` of a repo with 1,000 objects in 20 namespaces.
//!
//! Generates the repo in a temp folder (per namespace: 10 DestinationRules,
//! 10 VirtualServices routing weighted traffic to their subsets, 10
//! AuthorizationPolicies, 10 Sidecars-with-selectors, 10 ServiceEntries ...
//! 50 objects), then times load + policy + analysis of the whole repo and
//! prints the figures. Run: `cargo run --release -p gitops-shared --example bench_validate`.
//! With `--write DIR` it only writes the repo into DIR (for timing the real
//! `kubectl gitops validate` on it, as `scripts/bench.sh` does).

use std::{path::Path, time::Instant};

use gitops_shared::{analyze, manifest::LoadOptions, policy::Policy};

const NAMESPACES: usize = 20;
const PER_KIND: usize = 10;

fn write(root: &Path, ns: &str, name: &str, text: &str) {
    let dir = root.join("namespaces").join(ns);
    std::fs::create_dir_all(&dir).expect("create namespace folder");
    std::fs::write(dir.join(name), text).expect("write object");
}

fn generate(root: &Path) -> usize {
    let mut count = 0;
    for n in 0..NAMESPACES {
        let ns = format!("team-{n:02}");
        for i in 0..PER_KIND {
            let svc = format!("svc-{i}");
            write(
                root,
                &ns,
                &format!("destinationrule-{svc}.yaml"),
                &format!(
                    "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {svc}\nspec:\n  host: {svc}\n  trafficPolicy:\n    tls:\n      mode: ISTIO_MUTUAL\n  subsets:\n  - name: v1\n    labels: {{version: v1}}\n  - name: v2\n    labels: {{version: v2}}\n"
                ),
            );
            write(
                root,
                &ns,
                &format!("virtualservice-{svc}.yaml"),
                &format!(
                    "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {svc}\nspec:\n  hosts: [{svc}]\n  http:\n  - match:\n    - headers:\n        end-user: {{exact: jason}}\n    route:\n    - destination: {{host: {svc}, subset: v2}}\n  - route:\n    - destination: {{host: {svc}, subset: v1}}\n      weight: 90\n    - destination: {{host: {svc}, subset: v2}}\n      weight: 10\n"
                ),
            );
            write(
                root,
                &ns,
                &format!("authorizationpolicy-{svc}.yaml"),
                &format!(
                    "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {svc}\nspec:\n  selector:\n    matchLabels: {{app: {svc}}}\n  action: ALLOW\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/{ns}/sa/frontend\"]\n"
                ),
            );
            write(
                root,
                &ns,
                &format!("sidecar-{svc}.yaml"),
                &format!(
                    "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: {svc}\nspec:\n  workloadSelector:\n    labels: {{app: {svc}}}\n  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]\n"
                ),
            );
            write(
                root,
                &ns,
                &format!("serviceentry-ext-{i}.yaml"),
                &format!(
                    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: ext-{i}\nspec:\n  hosts: [api{i}.{ns}.example.com]\n  ports:\n  - number: 443\n    name: https\n    protocol: TLS\n  resolution: DNS\n  exportTo: [\".\"]\n"
                ),
            );
            count += 5;
        }
    }
    count
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, dir] = args.as_slice()
        && flag == "--write"
    {
        let objects = generate(Path::new(dir));
        println!("wrote {objects} objects in {NAMESPACES} namespaces to {dir}");
        return;
    }
    let repo = tempfile::tempdir().expect("temp dir");
    let objects = generate(repo.path());
    let policy = |ns: &str| Policy::new(ns);
    let opts = LoadOptions::default();
    let mut times = Vec::new();
    let mut findings = 0;
    for _ in 0..15 {
        let start = Instant::now();
        let result = analyze::validate_repo(repo.path(), "namespaces", None, &policy, &opts)
            .expect("validate");
        times.push(start.elapsed());
        findings = result.len();
    }
    times.sort();
    println!("validate_repo: {objects} objects in {NAMESPACES} namespaces, {findings} findings");
    println!(
        "  min {:.1} ms, median {:.1} ms, max {:.1} ms over {} runs",
        times[0].as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
}

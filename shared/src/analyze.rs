//! Offline analysis of Istio config, in the spirit of `istioctl analyze
//! --use-kube=false`: findings with Istio's own message codes where the
//! meaning is the same, and `GITOPS...` codes for our own checks and for load
//! and policy errors.
//!
//! The analysis of a namespace may read every object it is given (Istio sees
//! across namespaces too), but judges references only into namespaces it
//! knows: a Gateway in a namespace the repo does not hold may well exist, so
//! it is not reported missing.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    layout::{self, DesiredSet},
    manifest::{LoadOptions, Manifest, ManifestError, Problem},
    policy::Policy,
};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Info => "Info",
            Level::Warning => "Warning",
            Level::Error => "Error",
        })
    }
}

/// Codes of our own checks.
pub mod codes {
    /// The file or document could not be loaded (YAML, size, encoding, fields).
    pub const INVALID_MANIFEST: &str = "GITOPS001";
    /// The object breaks the namespace policy (kind, namespace, duplicate, ...).
    pub const POLICY: &str = "GITOPS002";
    /// Route weights do not add up to 100.
    pub const WEIGHTS: &str = "GITOPS003";
    /// Weighted traffic to a subset defined in another namespace's folder,
    /// which this namespace's agent cannot apply first.
    pub const SUBSET_ORDER: &str = "GITOPS004";
    /// `exportTo` wider than the object's own namespace.
    pub const EXPORT_TO: &str = "GITOPS005";
    /// A VirtualService for hosts of another namespace.
    pub const FOREIGN_HOST: &str = "GITOPS006";
    /// The same object defined twice among `--files` (the later one wins).
    pub const DUPLICATE: &str = "GITOPS007";
    /// Istio: a referenced subset or gateway does not exist.
    pub const REFERENCED_RESOURCE_NOT_FOUND: &str = "IST0101";
    /// Istio: VirtualServices bound to the mesh gateway claim the same host.
    pub const CONFLICTING_MESH_GATEWAY_HOSTS: &str = "IST0109";
    /// Istio: several Sidecars without workload selector in one namespace.
    pub const MULTIPLE_SIDECARS_WITHOUT_SELECTOR: &str = "IST0111";
    /// Istio: SIMPLE/MUTUAL TLS without caCertificates, destination level.
    pub const NO_SERVER_CERT_VERIFICATION_DESTINATION: &str = "IST0128";
    /// Istio: SIMPLE/MUTUAL TLS without caCertificates, port level.
    pub const NO_SERVER_CERT_VERIFICATION_PORT: &str = "IST0129";
    /// Istio: a VirtualService rule that can never match.
    pub const UNREACHABLE_RULE: &str = "IST0130";
    /// Istio: a VirtualService match shadowed by an earlier one.
    pub const INEFFECTIVE_MATCH: &str = "IST0131";
    /// Istio: a VirtualService host the Gateway does not serve.
    pub const HOST_NOT_FOUND_IN_GATEWAY: &str = "IST0132";
    /// Istio: Gateways with the same selector and port claim the same host.
    pub const CONFLICTING_GATEWAYS: &str = "IST0145";
}

/// One finding, as `validate -o json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Finding {
    pub code: String,
    pub level: Level,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] {}:{}",
            self.level,
            self.code,
            self.file.display(),
            self.line
        )?;
        if !self.name.is_empty() {
            write!(f, " ({} {}/{})", self.kind, self.namespace, self.name)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl Finding {
    /// A load or policy error as an Error finding of `namespace`.
    pub fn from_error(e: &ManifestError, namespace: &str) -> Self {
        let code = match e.problem {
            Problem::Policy(_) | Problem::SymlinkEscape(_) => codes::POLICY,
            _ => codes::INVALID_MANIFEST,
        };
        Finding {
            code: code.into(),
            level: Level::Error,
            kind: String::new(),
            namespace: namespace.into(),
            name: String::new(),
            file: e.file.clone(),
            line: e.line.unwrap_or(0),
            message: match e.document {
                Some(d) => format!("document {d}: {}", e.problem),
                None => e.problem.to_string(),
            },
        }
    }
}

/// One object as the analysis sees it: its manifest and effective namespace.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub namespace: &'a str,
    pub manifest: &'a Manifest,
}

impl Input<'_> {
    fn spec(&self) -> &Value {
        &self.manifest.object["spec"]
    }

    fn is(&self, kind: &str) -> bool {
        self.manifest.kind == kind && self.manifest.group == "networking.istio.io"
    }

    fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.manifest.name)
    }

    fn finding(&self, code: &str, level: Level, message: String) -> Finding {
        Finding {
            code: code.into(),
            level,
            kind: self.manifest.kind.clone(),
            namespace: self.namespace.into(),
            name: self.manifest.name.clone(),
            file: self.manifest.source.file.clone(),
            line: self.manifest.source.line,
            message,
        }
    }
}

const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// A host as Istio resolves it from a rule in `namespace`: a short name gets
/// the rule's namespace and the cluster domain; `name.ns` (when `ns` is a
/// namespace the analysis knows) and `name.ns.svc` get the cluster domain;
/// anything else (FQDNs, wildcards, external names) stays as written.
pub fn resolve_host(namespace: &str, host: &str, known: &BTreeSet<&str>) -> String {
    if host.starts_with('*') {
        return host.to_string();
    }
    let parts: Vec<&str> = host.split('.').collect();
    match parts.as_slice() {
        [name] => format!("{name}.{namespace}.{CLUSTER_DOMAIN}"),
        [name, ns] if known.contains(ns) => format!("{name}.{ns}.{CLUSTER_DOMAIN}"),
        [name, ns, "svc"] => format!("{name}.{ns}.{CLUSTER_DOMAIN}"),
        _ => host.to_string(),
    }
}

/// The namespace of a cluster-local FQDN (`name.ns.svc.cluster.local`).
fn host_namespace(fqdn: &str) -> Option<&str> {
    let rest = fqdn.strip_suffix(CLUSTER_DOMAIN)?.strip_suffix('.')?;
    let (name, ns) = rest.rsplit_once('.')?;
    (!name.is_empty() && !ns.is_empty() && !ns.contains('.')).then_some(ns)
}

/// Istio's host matching: equal, or one wildcard (`*`, `*.example.com`)
/// covering the other.
fn hosts_match(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => sa.ends_with(sb) || sb.ends_with(sa),
        (Some(sa), None) => b.ends_with(sa),
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A rule's name in messages: its `name`, or `#index` as Istio prints it.
fn rule_name(rule: &Value, index: usize) -> String {
    match rule["name"].as_str() {
        Some(n) if !n.is_empty() => format!("{n:?}"),
        _ => format!("#{index}"),
    }
}

/// A destination a VirtualService sends traffic to.
struct RouteDestination<'v> {
    what: &'static str,
    rule: String,
    host: &'v str,
    subset: &'v str,
    weight: Option<i64>,
}

fn route_destinations(spec: &Value) -> Vec<RouteDestination<'_>> {
    let mut out = Vec::new();
    for section in ["http", "tls", "tcp"] {
        for (i, rule) in items(&spec[section]).iter().enumerate() {
            for route in items(&rule["route"]) {
                out.push(RouteDestination {
                    what: "route",
                    rule: format!("{section} rule {}", rule_name(rule, i)),
                    host: route["destination"]["host"].as_str().unwrap_or(""),
                    subset: route["destination"]["subset"].as_str().unwrap_or(""),
                    weight: route["weight"].as_i64(),
                });
            }
            if section == "http" {
                let mirrors = std::iter::once(&rule["mirror"])
                    .chain(items(&rule["mirrors"]).iter().map(|m| &m["destination"]));
                for mirror in mirrors.filter(|m| m.is_object()) {
                    out.push(RouteDestination {
                        what: "mirror",
                        rule: format!("{section} rule {}", rule_name(rule, i)),
                        host: mirror["host"].as_str().unwrap_or(""),
                        subset: mirror["subset"].as_str().unwrap_or(""),
                        weight: None,
                    });
                }
            }
        }
    }
    out
}

/// Analyze `objects` together; report findings only for objects in `scope`
/// (every object when `None`).
pub fn analyze(objects: &[Input<'_>], scope: Option<&str>) -> Vec<Finding> {
    let known: BTreeSet<&str> = objects.iter().map(|o| o.namespace).collect();
    let in_scope = |o: &Input<'_>| scope.is_none_or(|s| s == o.namespace);
    let mut findings = Vec::new();

    // Subsets by resolved host: (host, subset) -> namespaces of the rules defining it.
    let mut subsets: HashMap<(String, &str), BTreeSet<&str>> = HashMap::new();
    // Gateways by namespace/name.
    let mut gateways: BTreeMap<String, &Input<'_>> = BTreeMap::new();
    for o in objects {
        if o.is("DestinationRule") {
            let host = resolve_host(o.namespace, o.spec()["host"].as_str().unwrap_or(""), &known);
            for subset in items(&o.spec()["subsets"]) {
                if let Some(name) = subset["name"].as_str() {
                    subsets
                        .entry((host.clone(), name))
                        .or_default()
                        .insert(o.namespace);
                }
            }
        } else if o.is("Gateway") {
            gateways.insert(o.full_name(), o);
        }
    }

    for o in objects.iter().filter(|o| in_scope(o)) {
        if o.is("VirtualService") {
            virtual_service(o, &known, &subsets, &gateways, &mut findings);
        } else if o.is("DestinationRule") {
            destination_rule_tls(o, &mut findings);
        }
        export_to(o, &mut findings);
    }
    mesh_gateway_hosts(objects, &known, &in_scope, &mut findings);
    sidecars_without_selector(objects, &in_scope, &mut findings);
    conflicting_gateways(&gateways, &in_scope, &mut findings);
    sort(&mut findings);
    findings.dedup();
    findings
}

/// Order findings for people: by file and line, then code.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        (&a.file, a.line, &a.code, &a.name, &a.message)
            .cmp(&(&b.file, b.line, &b.code, &b.name, &b.message))
    });
}

fn virtual_service(
    o: &Input<'_>,
    known: &BTreeSet<&str>,
    subsets: &HashMap<(String, &str), BTreeSet<&str>>,
    gateways: &BTreeMap<String, &Input<'_>>,
    findings: &mut Vec<Finding>,
) {
    let spec = o.spec();
    for d in route_destinations(spec) {
        if d.subset.is_empty() || d.host.is_empty() {
            continue;
        }
        let host = resolve_host(o.namespace, d.host, known);
        match subsets.get(&(host.clone(), d.subset)) {
            None => {
                // Judge only what the analysis can see.
                if host_namespace(&host).is_none_or(|ns| known.contains(ns)) {
                    findings.push(o.finding(
                        codes::REFERENCED_RESOURCE_NOT_FOUND,
                        Level::Error,
                        format!(
                            "Referenced host+subset in destinationrule not found: \"{}+{}\" ({} of {}); define subset {:?} in the DestinationRule for {host}, or fix the name",
                            d.host, d.subset, d.what, d.rule, d.subset
                        ),
                    ));
                }
            }
            Some(namespaces)
                if d.weight.unwrap_or(100) > 0 && !namespaces.contains(o.namespace) =>
            {
                findings.push(o.finding(
                    codes::SUBSET_ORDER,
                    Level::Warning,
                    format!(
                        "{} sends traffic to subset {:?} of {host}, defined only by a DestinationRule in namespace {}: the agent of {} cannot apply it first, so make sure it is live before this VirtualService",
                        d.rule,
                        d.subset,
                        namespaces.iter().copied().collect::<Vec<_>>().join(", "),
                        o.namespace
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    weights(o, findings);
    unreachable_rules(o, findings);
    for host in strs(&spec["hosts"]) {
        let fqdn = resolve_host(o.namespace, host, known);
        if let Some(ns) = host_namespace(&fqdn)
            && ns != o.namespace
        {
            findings.push(o.finding(
                codes::FOREIGN_HOST,
                Level::Warning,
                format!(
                    "host {host:?} belongs to namespace {ns}; a VirtualService for it belongs in that namespace's folder"
                ),
            ));
        }
    }
    for gw in strs(&spec["gateways"]) {
        if gw == "mesh" {
            continue;
        }
        let full = if gw.contains('/') {
            gw.to_string()
        } else {
            format!("{}/{gw}", o.namespace)
        };
        let gw_ns = full.split('/').next().unwrap_or_default();
        match gateways.get(&full) {
            None if known.contains(gw_ns) => findings.push(o.finding(
                codes::REFERENCED_RESOURCE_NOT_FOUND,
                Level::Error,
                format!("Referenced gateway not found: {gw:?}; no Gateway {full} is defined"),
            )),
            None => {}
            Some(gateway) => {
                let vs_hosts = strs(&spec["hosts"]);
                let served = gateway_hosts(gateway, o.namespace);
                if !served
                    .iter()
                    .any(|g| vs_hosts.iter().any(|h| hosts_match(g, h)))
                {
                    findings.push(o.finding(
                        codes::HOST_NOT_FOUND_IN_GATEWAY,
                        Level::Warning,
                        format!(
                            "one or more host {vs_hosts:?} defined in VirtualService {} not found in Gateway {full}; add the host to the Gateway's servers or fix it here",
                            o.full_name()
                        ),
                    ));
                }
            }
        }
    }
}

/// The hosts a Gateway serves to VirtualServices of `vs_namespace`:
/// `./h` is the gateway's namespace, `*/h` any namespace, `ns/h` only `ns`.
fn gateway_hosts(gateway: &Input<'_>, vs_namespace: &str) -> Vec<String> {
    let mut out = Vec::new();
    for server in items(&gateway.spec()["servers"]) {
        for host in strs(&server["hosts"]) {
            match host.split_once('/') {
                None => out.push(host.to_string()),
                Some((".", h)) if gateway.namespace == vs_namespace => out.push(h.to_string()),
                Some(("*", h)) => out.push(h.to_string()),
                Some((ns, h)) if ns == vs_namespace => out.push(h.to_string()),
                Some(_) => {}
            }
        }
    }
    out
}

fn weights(o: &Input<'_>, findings: &mut Vec<Finding>) {
    for section in ["http", "tls", "tcp"] {
        for (i, rule) in items(&o.spec()[section]).iter().enumerate() {
            let routes = items(&rule["route"]);
            let weighted = routes.iter().any(|r| !r["weight"].is_null());
            if routes.len() < 2 && !weighted {
                continue; // one destination takes everything
            }
            let sum: i64 = routes.iter().filter_map(|r| r["weight"].as_i64()).sum();
            if sum != 100 {
                let listed: Vec<String> = routes
                    .iter()
                    .map(|r| match r["weight"].as_i64() {
                        Some(w) => w.to_string(),
                        None => "unset".into(),
                    })
                    .collect();
                findings.push(o.finding(
                    codes::WEIGHTS,
                    Level::Error,
                    format!(
                        "{section} rule {}: route weights [{}] add up to {sum}, not 100; set them so they add up to 100",
                        rule_name(rule, i),
                        listed.join(", ")
                    ),
                ));
            }
        }
    }
}

/// A match's identity for duplicate detection: the match without its name.
fn match_key(m: &Value) -> String {
    let mut m = m.clone();
    if let Some(map) = m.as_object_mut() {
        map.remove("name");
    }
    crate::hash::canonical_json(&m)
}

fn unreachable_rules(o: &Input<'_>, findings: &mut Vec<Finding>) {
    for section in ["http", "tls", "tcp"] {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut catch_all: Option<usize> = None;
        for (i, rule) in items(&o.spec()[section]).iter().enumerate() {
            let matches = items(&rule["match"]);
            let name = rule_name(rule, i);
            let is_catch_all = matches.is_empty() || matches.iter().any(|m| match_key(m) == "{}");
            if let Some(first) = catch_all {
                let reason = if matches.is_empty() {
                    "only the last rule can have no matches".to_string()
                } else {
                    format!(
                        "rule {} before it has no match and takes all traffic",
                        rule_name(&items(&o.spec()[section])[first], first)
                    )
                };
                findings.push(o.finding(
                    codes::UNREACHABLE_RULE,
                    Level::Warning,
                    format!("VirtualService {section} rule {name} not used ({reason}); move catch-all rules to the end"),
                ));
                continue;
            }
            if is_catch_all {
                catch_all = Some(i);
                continue;
            }
            let mut duplicates = 0;
            for (j, m) in matches.iter().enumerate() {
                let key = match_key(m);
                match seen.get(&key) {
                    Some(&earlier) => {
                        duplicates += 1;
                        findings.push(o.finding(
                            codes::INEFFECTIVE_MATCH,
                            Level::Info,
                            format!(
                                "VirtualService {section} rule {name} match #{j} is not used (duplicates a match in rule {}); remove it or make it more specific",
                                rule_name(&items(&o.spec()[section])[earlier], earlier)
                            ),
                        ));
                    }
                    None => {
                        seen.insert(key, i);
                    }
                }
            }
            if duplicates > 0 && duplicates == matches.len() {
                findings.push(o.finding(
                    codes::UNREACHABLE_RULE,
                    Level::Warning,
                    format!("VirtualService {section} rule {name} not used (all matches used by prior rules)"),
                ));
            }
        }
    }
}

fn destination_rule_tls(o: &Input<'_>, findings: &mut Vec<Finding>) {
    let policy = &o.spec()["trafficPolicy"];
    let host = o.spec()["host"].as_str().unwrap_or("");
    let unverified = |tls: &Value| -> Option<String> {
        let mode = tls["mode"].as_str()?;
        let unset = |key: &str| tls[key].as_str().unwrap_or("").is_empty();
        ((mode == "SIMPLE" || mode == "MUTUAL")
            && unset("caCertificates")
            && unset("credentialName"))
        .then(|| mode.to_string())
    };
    if let Some(mode) = unverified(&policy["tls"]) {
        findings.push(o.finding(
            codes::NO_SERVER_CERT_VERIFICATION_DESTINATION,
            Level::Warning,
            format!(
                "DestinationRule {} in namespace {} has TLS mode set to {mode} but no caCertificates are set to validate server identity for host: {host}; set caCertificates (or credentialName)",
                o.manifest.name, o.namespace
            ),
        ));
    }
    for setting in items(&policy["portLevelSettings"]) {
        if let Some(mode) = unverified(&setting["tls"]) {
            findings.push(o.finding(
                codes::NO_SERVER_CERT_VERIFICATION_PORT,
                Level::Warning,
                format!(
                    "DestinationRule {} in namespace {} has TLS mode set to {mode} but no caCertificates are set to validate server identity for host: {host} at port {}; set caCertificates (or credentialName)",
                    o.manifest.name, o.namespace, setting["port"]["number"]
                ),
            ));
        }
    }
}

fn export_to(o: &Input<'_>, findings: &mut Vec<Finding>) {
    let export = strs(&o.spec()["exportTo"]);
    let wider: Vec<&str> = export
        .iter()
        .copied()
        .filter(|e| *e != "." && *e != o.namespace)
        .collect();
    if !wider.is_empty() {
        findings.push(o.finding(
            codes::EXPORT_TO,
            Level::Info,
            format!(
                "exportTo {wider:?} makes this {} visible beyond namespace {}; use [\".\"] to keep it local",
                o.manifest.kind, o.namespace
            ),
        ));
    }
}

fn mesh_gateway_hosts(
    objects: &[Input<'_>],
    known: &BTreeSet<&str>,
    in_scope: &dyn Fn(&Input<'_>) -> bool,
    findings: &mut Vec<Finding>,
) {
    // (scope, fqdn) -> the VirtualServices (by namespace/name) claiming it
    let mut claims: BTreeMap<(String, String), BTreeMap<String, &Input<'_>>> = BTreeMap::new();
    for o in objects.iter().filter(|o| o.is("VirtualService")) {
        let gws = strs(&o.spec()["gateways"]);
        if !(gws.is_empty() || gws.contains(&"mesh")) {
            continue;
        }
        let export = strs(&o.spec()["exportTo"]);
        let scopes: BTreeSet<String> = if export.is_empty() || export.contains(&"*") {
            BTreeSet::from(["*".to_string()])
        } else {
            export
                .iter()
                .map(|e| {
                    if *e == "." {
                        o.namespace.to_string()
                    } else {
                        e.to_string()
                    }
                })
                .collect()
        };
        for scope in scopes {
            for host in strs(&o.spec()["hosts"]) {
                let fqdn = resolve_host(o.namespace, host, known);
                claims
                    .entry((scope.clone(), fqdn))
                    .or_default()
                    .insert(o.full_name(), o);
            }
        }
    }
    for ((_, fqdn), vss) in claims {
        if vss.len() < 2 {
            continue;
        }
        let names: Vec<&str> = vss.keys().map(String::as_str).collect();
        for o in vss.values().filter(|o| in_scope(o)) {
            findings.push(o.finding(
                codes::CONFLICTING_MESH_GATEWAY_HOSTS,
                Level::Error,
                format!(
                    "The VirtualServices {} associated with mesh gateway define the same host {fqdn} which can lead to undefined behavior; merge them into a single VirtualService",
                    names.join(",")
                ),
            ));
        }
    }
}

fn sidecars_without_selector(
    objects: &[Input<'_>],
    in_scope: &dyn Fn(&Input<'_>) -> bool,
    findings: &mut Vec<Finding>,
) {
    let mut by_ns: BTreeMap<&str, BTreeMap<&str, &Input<'_>>> = BTreeMap::new();
    for o in objects.iter().filter(|o| o.is("Sidecar")) {
        if o.spec()["workloadSelector"].is_null() {
            by_ns
                .entry(o.namespace)
                .or_default()
                .insert(&o.manifest.name, o);
        }
    }
    for (ns, sidecars) in by_ns {
        if sidecars.len() < 2 {
            continue;
        }
        let names: Vec<&str> = sidecars.keys().copied().collect();
        for o in sidecars.values().filter(|o| in_scope(o)) {
            findings.push(o.finding(
                codes::MULTIPLE_SIDECARS_WITHOUT_SELECTOR,
                Level::Error,
                format!(
                    "The Sidecars [{}] in namespace {ns:?} have no workload selector; only one may, give the others a workloadSelector",
                    names.join(", ")
                ),
            ));
        }
    }
}

fn conflicting_gateways(
    gateways: &BTreeMap<String, &Input<'_>>,
    in_scope: &dyn Fn(&Input<'_>) -> bool,
    findings: &mut Vec<Finding>,
) {
    // (selector, port) -> gateway -> hosts
    let mut by_key: BTreeMap<(String, i64), BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    let selector = |gw: &Input<'_>| -> String {
        let mut pairs: Vec<String> = gw.spec()["selector"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        pairs.sort();
        pairs.join(",")
    };
    for (name, gw) in gateways {
        for server in items(&gw.spec()["servers"]) {
            let port = server["port"]["number"].as_i64().unwrap_or(0);
            by_key
                .entry((selector(gw), port))
                .or_default()
                .entry(name)
                .or_default()
                .extend(strs(&server["hosts"]));
        }
    }
    for ((sel, port), gws) in &by_key {
        for (name, hosts) in gws {
            let gw = gateways[*name];
            if !in_scope(gw) {
                continue;
            }
            let others: Vec<&str> = gws
                .iter()
                .filter(|(other, other_hosts)| {
                    other != &name
                        && hosts
                            .iter()
                            .any(|h| other_hosts.iter().any(|o| hosts_match(h, o)))
                })
                .map(|(other, _)| *other)
                .collect();
            if !others.is_empty() {
                findings.push(gw.finding(
                    codes::CONFLICTING_GATEWAYS,
                    Level::Error,
                    format!(
                        "Conflict with gateways {} (workload selector {sel}, port {port}, hosts {}); give them distinct hosts or ports",
                        others.join(","),
                        hosts.join(",")
                    ),
                ));
            }
        }
    }
}

/// Findings for one loaded namespace (the agent's `--strict`): only its own
/// objects are visible, so references elsewhere are not judged.
pub fn analyze_namespace(set: &DesiredSet) -> Vec<Finding> {
    let inputs: Vec<Input<'_>> = set
        .manifests
        .iter()
        .map(|m| Input {
            namespace: &set.namespace,
            manifest: m,
        })
        .collect();
    analyze(&inputs, Some(&set.namespace))
}

/// `validate` over a repo: every namespace folder is loaded (so analyses see
/// across namespaces as Istio would); load and policy errors and analysis
/// findings are reported for the namespaces in `scope` (all when `None`).
pub fn validate_repo(
    repo: &Path,
    base: &str,
    scope: Option<&[String]>,
    policy: &dyn Fn(&str) -> Policy,
    opts: &LoadOptions,
) -> std::io::Result<Vec<Finding>> {
    let mut namespaces = layout::list_namespaces(repo, base)?;
    if let Some(scope) = scope {
        for ns in scope {
            if !namespaces.contains(ns) {
                namespaces.push(ns.clone());
            }
        }
    }
    let wanted = |ns: &str| scope.is_none_or(|s| s.iter().any(|x| x == ns));
    let mut findings = Vec::new();
    let mut sets = Vec::new();
    for ns in &namespaces {
        match layout::load_namespace(repo, base, &policy(ns), opts) {
            Ok(set) => sets.push(set),
            Err(e) if wanted(ns) => findings.extend(errors_as_findings(&e.errors, ns)),
            Err(_) => {}
        }
    }
    let inputs: Vec<Input<'_>> = sets
        .iter()
        .flat_map(|s| {
            s.manifests.iter().map(|m| Input {
                namespace: &s.namespace,
                manifest: m,
            })
        })
        .collect();
    findings.extend(
        analyze(&inputs, None)
            .into_iter()
            .filter(|f| wanted(&f.namespace)),
    );
    sort(&mut findings);
    Ok(findings)
}

/// `validate --files`: any files or folders, like `istioctl analyze
/// --use-kube=false`. An object's namespace is the namespace folder its file
/// is in (`folder_namespace`), else its own `metadata.namespace`, else
/// `default`. The same object defined twice is a warning (the later one wins,
/// as with `kubectl apply`), since sample folders hold alternatives; the
/// analysis sees both.
pub fn validate_files(
    paths: &[PathBuf],
    folder_namespace: &dyn Fn(&Path) -> Option<String>,
    policy: &dyn Fn(&str) -> Policy,
    opts: &LoadOptions,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut manifests: Vec<(String, Manifest)> = Vec::new();
    for path in paths {
        let files = if path.is_dir() {
            match layout::walk_namespace(path) {
                Ok(files) => files,
                Err(errors) => {
                    findings.extend(errors.iter().map(|e| Finding::from_error(e, "")));
                    continue;
                }
            }
        } else {
            vec![path.clone()]
        };
        for file in files {
            let folder = folder_namespace(&file);
            match crate::manifest::load_file(&file, opts) {
                Ok(ms) => manifests.extend(ms.into_iter().map(|m| {
                    let ns = folder
                        .clone()
                        .or_else(|| m.namespace.clone())
                        .unwrap_or_else(|| "default".into());
                    (ns, m)
                })),
                Err(errors) => findings.extend(
                    errors
                        .iter()
                        .map(|e| Finding::from_error(e, folder.as_deref().unwrap_or(""))),
                ),
            }
        }
    }
    let mut first: BTreeMap<(String, String, String, String), usize> = BTreeMap::new();
    let mut refused = BTreeSet::new();
    for (i, (ns, m)) in manifests.iter().enumerate() {
        if let Err(e) = policy(ns).check_one(m) {
            findings.push(Finding::from_error(&e, ns));
            refused.insert(i); // never applied, so not analysed
        }
        let key = (ns.clone(), m.group.clone(), m.kind.clone(), m.name.clone());
        if let Some(&earlier) = first.get(&key) {
            let input = Input {
                namespace: ns,
                manifest: m,
            };
            findings.push(input.finding(
                codes::DUPLICATE,
                Level::Warning,
                format!(
                    "{}/{} is also defined in {}; the later one wins when both are applied, and a namespace folder refuses it",
                    m.kind, m.name, manifests[earlier].1.source
                ),
            ));
        } else {
            first.insert(key, i);
        }
    }
    let inputs: Vec<Input<'_>> = manifests
        .iter()
        .enumerate()
        .filter(|(i, _)| !refused.contains(i))
        .map(|(_, (ns, m))| Input {
            namespace: ns,
            manifest: m,
        })
        .collect();
    findings.extend(analyze(&inputs, None));
    sort(&mut findings);
    findings
}

/// Whether `findings` hold one at `level` or worse.
pub fn any_at_least(findings: &[Finding], level: Level) -> bool {
    findings.iter().any(|f| f.level >= level)
}

/// Load errors of a namespace as findings (used where a whole load failed).
pub fn errors_as_findings(errors: &[ManifestError], namespace: &str) -> Vec<Finding> {
    errors
        .iter()
        .map(|e| Finding::from_error(e, namespace))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_str;

    /// Parse YAML documents into (namespace, manifest) pairs; objects without
    /// a namespace are in `default`.
    fn objects(yaml: &str) -> Vec<(String, Manifest)> {
        parse_str(yaml, Path::new("t.yaml"), &LoadOptions::default())
            .unwrap()
            .into_iter()
            .map(|m| (m.namespace.clone().unwrap_or_else(|| "default".into()), m))
            .collect()
    }

    fn run(yaml: &str) -> Vec<Finding> {
        let objs = objects(yaml);
        let inputs: Vec<Input<'_>> = objs
            .iter()
            .map(|(ns, m)| Input {
                namespace: ns,
                manifest: m,
            })
            .collect();
        analyze(&inputs, None)
    }

    fn codes_of(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.code.as_str()).collect()
    }

    fn only(yaml: &str, code: &str) -> Vec<Finding> {
        run(yaml).into_iter().filter(|f| f.code == code).collect()
    }

    const DR_REVIEWS: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\n  namespace: team-a\nspec:\n  host: reviews\n  subsets:\n  - name: v1\n    labels: {version: v1}\n  - name: v2\n    labels: {version: v2}\n";

    fn vs_to(host: &str, subset: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n  namespace: team-a\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: {host}\n        subset: {subset}\n"
        )
    }

    #[test]
    fn ist0101_subset_found_through_every_host_form() {
        for host in [
            "reviews",
            "reviews.team-a",
            "reviews.team-a.svc",
            "reviews.team-a.svc.cluster.local",
        ] {
            let f = run(&format!("{DR_REVIEWS}{}", vs_to(host, "v2")));
            assert!(f.is_empty(), "{host}: {f:?}");
        }
    }

    #[test]
    fn ist0101_missing_subset_is_an_error() {
        let f = only(
            &format!("{DR_REVIEWS}{}", vs_to("reviews", "v3")),
            codes::REFERENCED_RESOURCE_NOT_FOUND,
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].level, Level::Error);
        assert_eq!(
            (f[0].kind.as_str(), f[0].name.as_str(), f[0].line),
            ("VirtualService", "reviews", 14)
        );
        assert!(f[0].message.contains("\"reviews+v3\""), "{}", f[0].message);
        // the same subset name on a host in another namespace does not count
        let f = only(
            &format!(
                "{DR_REVIEWS}{}",
                vs_to("reviews.team-b.svc.cluster.local", "v1").replace(
                    "namespace: team-a\nspec:\n  hosts: [reviews]",
                    "namespace: team-b\nspec:\n  hosts: [reviews]"
                )
            ),
            codes::REFERENCED_RESOURCE_NOT_FOUND,
        );
        assert_eq!(f.len(), 1, "{f:?}");
    }

    #[test]
    fn ist0101_short_names_resolve_in_the_rules_own_namespace() {
        // DR in team-b for its own "reviews"; a team-a VS's short name means team-a's reviews
        let dr_b = DR_REVIEWS.replace("namespace: team-a", "namespace: team-b");
        let f = only(
            &format!("{dr_b}{}", vs_to("reviews", "v1")),
            codes::REFERENCED_RESOURCE_NOT_FOUND,
        );
        assert_eq!(f.len(), 1, "{f:?}");
        let f = only(
            &format!("{dr_b}{}", vs_to("reviews.team-b", "v1")),
            codes::REFERENCED_RESOURCE_NOT_FOUND,
        );
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn ist0101_mirror_subsets_are_checked() {
        let vs = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: m\n  namespace: team-a\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n    mirror: {host: reviews, subset: v9}\n";
        let f = only(
            &format!("{DR_REVIEWS}{vs}"),
            codes::REFERENCED_RESOURCE_NOT_FOUND,
        );
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("mirror"), "{}", f[0].message);
    }

    #[test]
    fn ist0101_gateway_must_exist_where_the_analysis_can_see() {
        let gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: web\n  namespace: team-a\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"shop.example.com\"]\n";
        let vs = |gws: &str| {
            format!(
                "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: shop\n  namespace: team-a\nspec:\n  hosts: [shop.example.com]\n  gateways: {gws}\n  http:\n  - route:\n    - destination: {{host: shop}}\n"
            )
        };
        assert!(run(&format!("{gw}{}", vs("[web, mesh]"))).is_empty());
        assert!(run(&format!("{gw}{}", vs("[team-a/web]"))).is_empty());
        let f = only(
            &format!("{gw}{}", vs("[webb]")),
            codes::REFERENCED_RESOURCE_NOT_FOUND,
        );
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message
                .contains("Referenced gateway not found: \"webb\"")
        );
        // a gateway in a namespace the repo does not hold is not judged
        assert!(run(&format!("{gw}{}", vs("[istio-system/ingress]"))).is_empty());
    }

    #[test]
    fn ist0132_host_not_served_by_gateway() {
        let gw = |hosts: &str| {
            format!(
                "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: web\n  namespace: team-a\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 80, name: http, protocol: HTTP}}\n    hosts: {hosts}\n"
            )
        };
        let vs = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: shop\n  namespace: team-a\nspec:\n  hosts: [shop.example.com]\n  gateways: [web]\n  http:\n  - route:\n    - destination: {host: shop}\n";
        for ok in [
            "[\"*\"]",
            "[\"*.example.com\"]",
            "[\"shop.example.com\"]",
            "[\"./shop.example.com\"]",
            "[\"team-a/*\"]",
            "[\"*/shop.example.com\"]",
        ] {
            assert!(
                only(&format!("{}{vs}", gw(ok)), codes::HOST_NOT_FOUND_IN_GATEWAY).is_empty(),
                "{ok}"
            );
        }
        for bad in [
            "[\"other.example.com\"]",
            "[\"*.example.org\"]",
            "[\"team-b/shop.example.com\"]",
        ] {
            let f = only(
                &format!("{}{vs}", gw(bad)),
                codes::HOST_NOT_FOUND_IN_GATEWAY,
            );
            assert_eq!(f.len(), 1, "{bad}");
            assert_eq!(f[0].level, Level::Warning);
        }
    }

    fn mesh_vs(ns: &str, name: &str, host: &str, extra: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  hosts: [{host}]\n{extra}  http:\n  - route:\n    - destination: {{host: {host}}}\n"
        )
    }

    #[test]
    fn ist0109_two_mesh_virtual_services_for_one_host() {
        // the example of the Istio documentation: productpage twice in one namespace
        let yaml = format!(
            "{}{}",
            mesh_vs("team-a", "productpage", "productpage", ""),
            mesh_vs("team-a", "custom", "productpage", "")
        );
        let f = only(&yaml, codes::CONFLICTING_MESH_GATEWAY_HOSTS);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(
            f[0].message.contains("team-a/custom,team-a/productpage"),
            "{}",
            f[0].message
        );
        assert!(
            f[0].message
                .contains("productpage.team-a.svc.cluster.local")
        );
        // same short name in two namespaces is two hosts
        let yaml = format!(
            "{}{}",
            mesh_vs("team-a", "p", "productpage", ""),
            mesh_vs("team-b", "p", "productpage", "")
        );
        assert!(only(&yaml, codes::CONFLICTING_MESH_GATEWAY_HOSTS).is_empty());
        // exported to different namespaces: no conflict
        let yaml = format!(
            "{}{}",
            mesh_vs("team-a", "a", "productpage", "  exportTo: [\".\"]\n"),
            mesh_vs("team-a", "b", "productpage", "  exportTo: [team-c]\n")
        );
        assert!(only(&yaml, codes::CONFLICTING_MESH_GATEWAY_HOSTS).is_empty());
        // bound to a gateway only: not the mesh gateway
        let yaml = format!(
            "{}{}",
            mesh_vs("team-a", "a", "productpage", ""),
            mesh_vs("team-a", "b", "productpage", "  gateways: [team-a/web]\n")
        );
        assert!(only(&yaml, codes::CONFLICTING_MESH_GATEWAY_HOSTS).is_empty());
    }

    #[test]
    fn ist0111_several_sidecars_without_selector() {
        let sc = |name: &str, extra: &str| {
            format!(
                "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: {name}\n  namespace: team-a\nspec:\n{extra}  egress:\n  - hosts: [\"./*\"]\n"
            )
        };
        let f = only(
            &format!("{}{}", sc("a", ""), sc("b", "")),
            codes::MULTIPLE_SIDECARS_WITHOUT_SELECTOR,
        );
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].level, Level::Error);
        let with_selector = "  workloadSelector:\n    labels: {app: ratings}\n";
        assert!(
            only(
                &format!("{}{}", sc("a", ""), sc("b", with_selector)),
                codes::MULTIPLE_SIDECARS_WITHOUT_SELECTOR
            )
            .is_empty()
        );
    }

    #[test]
    fn ist0128_and_ist0129_tls_without_ca_certificates() {
        let dr = |tls: &str| {
            format!(
                "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: db-mtls\n  namespace: team-a\nspec:\n  host: mydbserver.prod.svc.cluster.local\n  trafficPolicy:\n{tls}"
            )
        };
        let dest = "    tls:\n      mode: MUTUAL\n      clientCertificate: /etc/certs/myclientcert.pem\n      privateKey: /etc/certs/client_private_key.pem\n";
        let f = run(&dr(dest));
        assert_eq!(
            codes_of(&f),
            [codes::NO_SERVER_CERT_VERIFICATION_DESTINATION]
        );
        assert_eq!(f[0].level, Level::Warning);
        assert!(
            f[0].message
                .contains("TLS mode set to MUTUAL but no caCertificates")
        );
        assert!(
            run(&dr(&format!(
                "{dest}      caCertificates: /etc/certs/rootcacerts.pem\n"
            )))
            .is_empty()
        );
        let port =
            "    portLevelSettings:\n    - port: {number: 443}\n      tls:\n        mode: SIMPLE\n";
        let f = run(&dr(port));
        assert_eq!(codes_of(&f), [codes::NO_SERVER_CERT_VERIFICATION_PORT]);
        assert!(f[0].message.contains("at port 443"), "{}", f[0].message);
        assert!(run(&dr("    tls:\n      mode: ISTIO_MUTUAL\n")).is_empty());
        assert!(
            run(&dr(
                "    tls:\n      mode: SIMPLE\n      credentialName: db-ca\n"
            ))
            .is_empty()
        );
    }

    #[test]
    fn ist0130_rules_after_a_catch_all_are_unreachable() {
        // the example of the Istio documentation: fault and mirror as two rules
        let yaml = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: sample-foo-cluster01\n  namespace: foo\nspec:\n  hosts:\n  - sample.foo.svc.cluster.local\n  http:\n  - fault:\n      delay:\n        fixedDelay: 5s\n        percentage:\n          value: 100\n    route:\n    - destination:\n        host: sample.foo.svc.cluster.local\n  - mirror:\n      host: sample.bar.svc.cluster.local\n    route:\n    - destination:\n        host: sample.bar.svc.cluster.local\n        subset: v1\n";
        let f = only(yaml, codes::UNREACHABLE_RULE);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].message
                .contains("http rule #1 not used (only the last rule can have no matches)"),
            "{}",
            f[0].message
        );
        // a matched rule after a catch-all can never be reached either
        let later = yaml.replace(
            "  - mirror:",
            "  - match:\n    - uri: {prefix: /api}\n    mirror:",
        );
        let f = only(&later, codes::UNREACHABLE_RULE);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].message.contains("rule #0 before it has no match"),
            "{}",
            f[0].message
        );
        // catch-all last: fine
        let ok = yaml.replace(
            "  - fault:",
            "  - match:\n    - headers: {end-user: {exact: jason}}\n    fault:",
        );
        assert!(only(&ok, codes::UNREACHABLE_RULE).is_empty());
    }

    #[test]
    fn ist0131_duplicate_match_is_ineffective() {
        // the example of the Istio documentation (TLS routing)
        let yaml = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: tls-routing\nspec:\n  hosts:\n  - www1.googleapis.com\n  - api1.facebook.com\n  tls:\n  - match:\n    - port: 2443\n      sniHosts:\n      - www1.googleapis.com\n    route:\n    - destination:\n        host: www1.googleapis.com\n  - match:\n    - port: 2443\n      sniHosts:\n      - www1.googleapis.com\n    route:\n    - destination:\n        host: api1.facebook.com\n";
        let f = run(yaml);
        let ineffective: Vec<_> = f
            .iter()
            .filter(|x| x.code == codes::INEFFECTIVE_MATCH)
            .collect();
        assert_eq!(ineffective.len(), 1, "{f:?}");
        assert_eq!(ineffective[0].level, Level::Info);
        assert!(
            ineffective[0]
                .message
                .contains("tls rule #1 match #0 is not used (duplicates a match in rule #0)"),
            "{}",
            ineffective[0].message
        );
        // every match of rule #1 is shadowed, so the rule is unreachable too
        assert_eq!(
            f.iter()
                .filter(|x| x.code == codes::UNREACHABLE_RULE)
                .count(),
            1
        );
        let distinct = yaml.replacen("port: 2443", "port: 443", 1);
        assert!(run(&distinct).is_empty(), "{:?}", run(&distinct));
    }

    #[test]
    fn ist0145_conflicting_gateways() {
        let gw = |name: &str, port: u16, host: &str| {
            format!(
                "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: {name}\n  namespace: team-a\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {port}, name: http, protocol: HTTP}}\n    hosts: [\"{host}\"]\n"
            )
        };
        let f = only(
            &format!("{}{}", gw("alpha", 80, "foo.bar"), gw("beta", 80, "*.bar")),
            codes::CONFLICTING_GATEWAYS,
        );
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].level, Level::Error);
        assert!(
            f[0].message.contains("Conflict with gateways team-a/beta"),
            "{}",
            f[0].message
        );
        assert!(
            only(
                &format!(
                    "{}{}",
                    gw("alpha", 80, "foo.bar"),
                    gw("beta", 8080, "foo.bar")
                ),
                codes::CONFLICTING_GATEWAYS
            )
            .is_empty()
        );
        assert!(
            only(
                &format!(
                    "{}{}",
                    gw("alpha", 80, "foo.bar"),
                    gw("beta", 80, "baz.bar")
                ),
                codes::CONFLICTING_GATEWAYS
            )
            .is_empty()
        );
    }

    fn weighted(weights: &[Option<u32>]) -> String {
        let mut s = String::from(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n  namespace: team-a\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n",
        );
        for (i, w) in weights.iter().enumerate() {
            s.push_str(&format!(
                "    - destination: {{host: reviews, subset: v{}}}\n",
                i + 1
            ));
            if let Some(w) = w {
                s.push_str(&format!("      weight: {w}\n"));
            }
        }
        format!("{DR_REVIEWS}---\n{s}")
    }

    #[test]
    fn gitops003_weights_must_add_up_to_100() {
        assert!(run(&weighted(&[Some(80), Some(20)])).is_empty());
        assert!(run(&weighted(&[None])).is_empty());
        assert!(run(&weighted(&[Some(100)])).is_empty());
        let f = run(&weighted(&[Some(80), Some(30)]));
        assert_eq!(codes_of(&f), [codes::WEIGHTS]);
        assert!(
            f[0].message
                .contains("route weights [80, 30] add up to 110, not 100"),
            "{}",
            f[0].message
        );
        let f = run(&weighted(&[Some(80), None]));
        assert_eq!(codes_of(&f), [codes::WEIGHTS]);
        assert!(f[0].message.contains("[80, unset]"));
    }

    #[test]
    fn gitops004_weighted_subset_defined_only_in_another_namespace() {
        let dr_b = DR_REVIEWS.replace("namespace: team-a", "namespace: team-b");
        let vs = vs_to("reviews.team-b.svc.cluster.local", "v2");
        let f = only(&format!("{dr_b}{vs}"), codes::SUBSET_ORDER);
        assert_eq!(f.len(), 1, "{:?}", run(&format!("{dr_b}{vs}")));
        assert_eq!(f[0].level, Level::Warning);
        assert!(
            f[0].message.contains("namespace team-b"),
            "{}",
            f[0].message
        );
        // defined in the VirtualService's own namespace: applied first by its agent
        let both = format!(
            "{dr_b}---\n{}",
            DR_REVIEWS.replace("host: reviews", "host: reviews.team-b.svc.cluster.local")
        );
        assert!(only(&format!("{both}{vs}"), codes::SUBSET_ORDER).is_empty());
    }

    #[test]
    fn gitops005_export_to_wider_than_namespace() {
        let dr = DR_REVIEWS.replace("spec:\n", "spec:\n  exportTo: [\"*\"]\n");
        let f = run(&dr);
        assert_eq!(codes_of(&f), [codes::EXPORT_TO]);
        assert_eq!(f[0].level, Level::Info);
        assert!(run(&DR_REVIEWS.replace("spec:\n", "spec:\n  exportTo: [\".\"]\n")).is_empty());
        assert!(run(&DR_REVIEWS.replace("spec:\n", "spec:\n  exportTo: [team-a]\n")).is_empty());
    }

    #[test]
    fn gitops006_virtual_service_for_another_namespaces_host() {
        let f = run(&mesh_vs(
            "team-a",
            "r",
            "reviews.team-b.svc.cluster.local",
            "",
        ));
        assert_eq!(codes_of(&f), [codes::FOREIGN_HOST]);
        assert_eq!(f[0].level, Level::Warning);
        assert!(run(&mesh_vs("team-a", "r", "reviews", "")).is_empty());
        assert!(run(&mesh_vs("team-a", "r", "www.example.com", "")).is_empty());
    }

    #[test]
    fn analysis_can_be_scoped_to_one_namespace_while_reading_all() {
        let dr_b = DR_REVIEWS.replace("namespace: team-a", "namespace: team-b");
        let yaml = format!(
            "{dr_b}{}{}",
            vs_to("reviews.team-b", "v1"),
            mesh_vs("team-b", "first", "a", "") + &mesh_vs("team-b", "second", "a", "")
        );
        let objs = objects(&yaml);
        let inputs: Vec<Input<'_>> = objs
            .iter()
            .map(|(ns, m)| Input {
                namespace: ns,
                manifest: m,
            })
            .collect();
        // team-a's VirtualService finds its subset in team-b's DestinationRule
        // (so only the cross-namespace ordering warning), and team-b's
        // conflict is not reported for team-a
        assert_eq!(
            codes_of(&analyze(&inputs, Some("team-a"))),
            [codes::SUBSET_ORDER]
        );
        let b = analyze(&inputs, Some("team-b"));
        assert_eq!(codes_of(&b), [codes::CONFLICTING_MESH_GATEWAY_HOSTS; 2]);
        assert!(b.iter().all(|f| f.namespace == "team-b"));
    }

    fn samples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/istio-samples")
    }

    #[test]
    fn bookinfo_samples_together_give_no_error() {
        // Every sample but certmanager-gateway.yaml, which is cert-manager's
        // config for istio-system, not Bookinfo's (checked below).
        let bookinfo: Vec<PathBuf> = std::fs::read_dir(samples())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .filter(|p| !p.ends_with("certmanager-gateway.yaml"))
            .collect();
        assert!(bookinfo.len() >= 20);
        let findings = validate_files(
            &bookinfo,
            &|_| None,
            &|ns| Policy::new(ns),
            &LoadOptions::default(),
        );
        let errors: Vec<String> = findings
            .iter()
            .filter(|f| f.level == Level::Error)
            .map(|f| f.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
        // they are alternatives of each other: duplicates are warnings
        assert!(
            findings
                .iter()
                .any(|f| f.code == codes::DUPLICATE && f.level == Level::Warning)
        );
        // and the egress sample originates TLS without a CA: IST0129
        assert!(
            findings
                .iter()
                .any(|f| f.code == codes::NO_SERVER_CERT_VERIFICATION_PORT
                    && f.name == "originate-tls-for-googleapis")
        );
        assert!(findings.iter().all(|f| f.namespace == "default"));
        // the cert-manager sample lives in the mesh root namespace: refused
        let root = validate_files(
            &[samples().join("certmanager-gateway.yaml")],
            &|_| None,
            &|ns| Policy::new(ns),
            &LoadOptions::default(),
        );
        assert!(
            root.iter()
                .all(|f| f.code == codes::POLICY && f.message.contains("mesh root namespace")),
            "{root:?}"
        );
        assert_eq!(root.len(), 2);
    }

    #[test]
    fn validate_files_takes_the_namespace_of_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vs.yaml");
        std::fs::write(&file, vs_to("reviews", "v1")).unwrap();
        // the VS says team-a; in a team-b folder that is a policy error
        let f = validate_files(
            std::slice::from_ref(&file),
            &|_| Some("team-b".into()),
            &|ns| Policy::new(ns),
            &LoadOptions::default(),
        );
        assert_eq!(codes_of(&f), [codes::POLICY], "{f:?}");
        assert!(
            f[0].message
                .contains("namespace \"team-a\" is not \"team-b\"")
        );
        // elsewhere it keeps its own namespace (and its subset is missing)
        let f = validate_files(
            &[file],
            &|_| None,
            &|ns| Policy::new(ns),
            &LoadOptions::default(),
        );
        assert_eq!(codes_of(&f), [codes::REFERENCED_RESOURCE_NOT_FOUND]);
        assert_eq!(f[0].namespace, "team-a");
    }

    #[test]
    fn validate_repo_reports_load_errors_and_findings_per_namespace() {
        let repo = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let p = repo.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("namespaces/team-a/dr.yaml", DR_REVIEWS);
        write("namespaces/team-a/vs.yaml", &vs_to("reviews", "v3"));
        write(
            "namespaces/team-b/bad.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n",
        );
        let policy = |ns: &str| Policy::new(ns);
        let all = validate_repo(
            repo.path(),
            "namespaces",
            None,
            &policy,
            &LoadOptions::default(),
        )
        .unwrap();
        assert_eq!(
            codes_of(&all),
            [codes::REFERENCED_RESOURCE_NOT_FOUND, codes::POLICY],
            "{all:?}"
        );
        assert_eq!(all[0].file, Path::new("namespaces/team-a/vs.yaml"));
        assert_eq!(all[1].namespace, "team-b");
        assert_eq!(all[1].line, 2);
        let a = validate_repo(
            repo.path(),
            "namespaces",
            Some(&["team-a".to_string()]),
            &policy,
            &LoadOptions::default(),
        )
        .unwrap();
        assert_eq!(codes_of(&a), [codes::REFERENCED_RESOURCE_NOT_FOUND]);
        assert!(any_at_least(&a, Level::Error));
        assert!(!any_at_least(&[], Level::Info));
    }

    #[test]
    fn load_errors_become_error_findings_with_file_and_line() {
        let errors = parse_str(
            "apiVersion: v1\nkind: X\nmetadata:\n  name: Bad_Name\n",
            Path::new("a.yaml"),
            &LoadOptions::default(),
        )
        .unwrap_err();
        let f = Finding::from_error(&errors[0], "team-a");
        assert_eq!(f.code, codes::INVALID_MANIFEST);
        assert_eq!(f.level, Level::Error);
        assert_eq!(f.line, 4);
        assert!(
            f.to_string()
                .starts_with("Error [GITOPS001] a.yaml:4: document 1: name \"Bad_Name\""),
            "{f}"
        );
        let json = serde_json::to_value(&f).unwrap();
        for key in [
            "code",
            "level",
            "kind",
            "namespace",
            "name",
            "file",
            "line",
            "message",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }
}

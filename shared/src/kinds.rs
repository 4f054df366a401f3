//! The Istio config kinds a namespace folder may hold, with what the agent and
//! the plugin need to talk to the API server about them (plural, versions) and
//! the order Istio's make-before-break rule asks for.

/// One Istio config kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IstioKind {
    pub group: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    /// Versions the CRD serves, newest first.
    pub versions: &'static [&'static str],
    /// Version used to talk to the API server.
    pub preferred: &'static str,
    /// Lower ranks are applied first and pruned last (make-before-break:
    /// a subset must exist before a route uses it, and outlive it).
    pub apply_rank: u8,
    /// Can destabilize the whole mesh: refused unless explicitly allowed.
    pub dangerous: bool,
}

impl IstioKind {
    /// `group/version` for the preferred version.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.preferred)
    }

    /// Whether `version` is served for this kind.
    pub fn serves(&self, version: &str) -> bool {
        self.versions.contains(&version)
    }
}

const NET: &str = "networking.istio.io";
const SEC: &str = "security.istio.io";
const TEL: &str = "telemetry.istio.io";
const EXT: &str = "extensions.istio.io";
const NET_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];
const SEC_VERSIONS: &[&str] = &["v1", "v1beta1"];

const fn kind(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    versions: &'static [&'static str],
    apply_rank: u8,
    dangerous: bool,
) -> IstioKind {
    IstioKind {
        group,
        kind,
        plural,
        versions,
        preferred: versions[0],
        apply_rank,
        dangerous,
    }
}

/// Every kind of DESIGN.md, in apply order.
pub const KINDS: &[IstioKind] = &[
    kind(
        NET,
        "DestinationRule",
        "destinationrules",
        NET_VERSIONS,
        0,
        false,
    ),
    kind(
        NET,
        "ServiceEntry",
        "serviceentries",
        NET_VERSIONS,
        1,
        false,
    ),
    kind(
        NET,
        "WorkloadEntry",
        "workloadentries",
        NET_VERSIONS,
        1,
        false,
    ),
    kind(
        NET,
        "WorkloadGroup",
        "workloadgroups",
        NET_VERSIONS,
        1,
        false,
    ),
    kind(NET, "Gateway", "gateways", NET_VERSIONS, 2, false),
    kind(NET, "Sidecar", "sidecars", NET_VERSIONS, 3, false),
    kind(NET, "ProxyConfig", "proxyconfigs", &["v1beta1"], 3, false),
    kind(
        SEC,
        "AuthorizationPolicy",
        "authorizationpolicies",
        SEC_VERSIONS,
        4,
        false,
    ),
    kind(
        SEC,
        "PeerAuthentication",
        "peerauthentications",
        SEC_VERSIONS,
        4,
        false,
    ),
    kind(
        SEC,
        "RequestAuthentication",
        "requestauthentications",
        SEC_VERSIONS,
        4,
        false,
    ),
    kind(
        TEL,
        "Telemetry",
        "telemetries",
        &["v1", "v1alpha1"],
        4,
        false,
    ),
    kind(NET, "EnvoyFilter", "envoyfilters", &["v1alpha3"], 4, true),
    kind(EXT, "WasmPlugin", "wasmplugins", &["v1alpha1"], 4, true),
    kind(
        EXT,
        "TrafficExtension",
        "trafficextensions",
        &["v1alpha1"],
        4,
        true,
    ),
    kind(
        NET,
        "VirtualService",
        "virtualservices",
        NET_VERSIONS,
        5,
        false,
    ),
];

/// The kind with this group and kind name.
pub fn lookup(group: &str, kind: &str) -> Option<&'static IstioKind> {
    KINDS.iter().find(|k| k.group == group && k.kind == kind)
}

/// Resolve what a user types (`vs`, `virtualservice`, `VirtualService`,
/// `virtualservices`, `virtualservices.networking.istio.io`) the way kubectl does.
pub fn resolve(name: &str) -> Option<&'static IstioKind> {
    let lower = name.to_ascii_lowercase();
    let (base, group) = match lower.split_once('.') {
        Some((b, g)) => (b.to_string(), Some(g.to_string())),
        None => (lower, None),
    };
    KINDS.iter().find(|k| {
        let short = short_name(k.kind);
        let matches = base == k.kind.to_ascii_lowercase()
            || base == k.plural
            || short.is_some_and(|s| s == base);
        matches && group.as_deref().is_none_or(|g| g == k.group)
    })
}

/// The short names Istio's CRDs declare.
fn short_name(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "VirtualService" => "vs",
        "DestinationRule" => "dr",
        "Gateway" => "gw",
        "ServiceEntry" => "se",
        "WorkloadEntry" => "we",
        "WorkloadGroup" => "wg",
        "AuthorizationPolicy" => "ap",
        "PeerAuthentication" => "pa",
        "RequestAuthentication" => "ra",
        _ => return None,
    })
}

/// Split `apiVersion` into group and version (`v1` alone is the core group "").
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// The Istio kind `name` nearly spells (case aside, or at most two letters
/// off), for "did you mean VirtualService?"; `None` for an exact name or
/// nothing close.
pub fn near_miss(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    KINDS
        .iter()
        .filter(|k| k.kind != name)
        .map(|k| (edit_distance(&lower, &k.kind.to_ascii_lowercase()), k.kind))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, kind)| kind)
}

/// Levenshtein distance of two short ASCII names.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_of_a_kind_are_suggested() {
        assert_eq!(near_miss("VirtualServce"), Some("VirtualService"));
        assert_eq!(near_miss("virtualservice"), Some("VirtualService"));
        assert_eq!(near_miss("DestinatonRule"), Some("DestinationRule"));
        assert_eq!(near_miss("VirtualService"), None);
        assert_eq!(near_miss("Deployment"), None);
    }

    #[test]
    fn virtual_service_is_applied_after_destination_rule() {
        let vs = lookup(NET, "VirtualService").unwrap();
        let dr = lookup(NET, "DestinationRule").unwrap();
        assert!(dr.apply_rank < vs.apply_rank);
        assert_eq!(vs.api_version(), "networking.istio.io/v1");
        assert!(vs.serves("v1alpha3"));
    }

    #[test]
    fn resolves_what_users_type() {
        for name in [
            "vs",
            "VS",
            "virtualservice",
            "VirtualService",
            "virtualservices",
            "virtualservices.networking.istio.io",
        ] {
            assert_eq!(resolve(name).unwrap().kind, "VirtualService", "{name}");
        }
        assert_eq!(resolve("ap").unwrap().kind, "AuthorizationPolicy");
        assert!(resolve("deployment").is_none());
        assert!(resolve("virtualservices.apps").is_none());
    }

    #[test]
    fn only_mesh_wide_extension_kinds_are_dangerous() {
        let dangerous: Vec<_> = KINDS
            .iter()
            .filter(|k| k.dangerous)
            .map(|k| k.kind)
            .collect();
        assert_eq!(dangerous, ["EnvoyFilter", "WasmPlugin", "TrafficExtension"]);
    }

    #[test]
    fn splits_api_versions() {
        assert_eq!(
            split_api_version("networking.istio.io/v1"),
            ("networking.istio.io", "v1")
        );
        assert_eq!(split_api_version("v1"), ("", "v1"));
    }
}

//! Flags and environment, parsed once and validated once into a [`Config`].
//!
//! Every flag of DESIGN.md ("sync-agent (contract)") also reads an environment
//! variable `GITOPS_<FLAG>` (git-sync does the same with `GITSYNC_*`), so the
//! sidecar can be configured from a pod spec either way. `--namespace` falls
//! back to `POD_NAMESPACE`, which the downward API provides.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{Parser, ValueEnum, builder::BoolishValueParser};
use gitops_shared::{
    DEFAULT_BASE_PATH, DEFAULT_FIELD_MANAGER, DEFAULT_ROOT_NAMESPACE, Policy, gitopssync,
    layout::check_relative,
    manifest::{check_dns1123_label, check_dns1123_subdomain},
    units::{parse_duration, parse_size},
};

/// Writes in flight at once by default. `scripts/bench.sh` creates 1,000
/// objects `--once` at 1 to 64 against the API server's floor
/// (docs/benchmarks.md): 1 and 2 are about twice the floor, 4 to 64 within
/// the noise of each other on a server sharing two cores with the agent;
/// a server on its own machine gains more from overlapping round trips.
/// 16 stays far below kube-apiserver's default of 200 mutating requests in
/// flight, so a small API server is not flooded.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// Per-namespace sidecar: applies one namespace's Istio config from a
/// git-sync checkout with server-side apply, prunes what left Git, reports
/// drift and heals it.
#[derive(Debug, Clone, Parser)]
#[command(name = "sync-agent", version, about, max_term_width = 100)]
pub struct Args {
    /// Namespace to sync: its folder in the repo and its objects in the
    /// cluster [env: GITOPS_NAMESPACE, then POD_NAMESPACE]
    #[arg(long, short = 'n', env = "GITOPS_NAMESPACE", hide_env = true)]
    pub namespace: Option<String>,

    /// git-sync's --root, or a plain checkout of the config repo
    #[arg(long, env = "GITOPS_REPO", value_name = "DIR")]
    pub repo: PathBuf,

    /// git-sync's --link inside --repo; absent = --repo is a plain folder
    #[arg(long, env = "GITOPS_LINK", value_name = "NAME")]
    pub link: Option<PathBuf>,

    /// Base folder inside the repo [default: the repo's .gitops/config.yaml,
    /// else "namespaces"]
    #[arg(long, env = "GITOPS_PATH", value_name = "PATH")]
    pub path: Option<String>,

    /// Name of this agent's GitOpsSync object
    #[arg(long, env = "GITOPS_NAME", default_value = gitopssync::DEFAULT_NAME)]
    pub name: String,

    /// Field manager for server-side apply
    #[arg(long, env = "GITOPS_FIELD_MANAGER", default_value = DEFAULT_FIELD_MANAGER)]
    pub field_manager: String,

    /// Drift check and self-heal period (e.g. 30s, 5m, 1h). Watches see a
    /// change within a second; a tick reads only the objects they saw
    /// change, and every 10th tick lists every object
    #[arg(long, env = "GITOPS_RESYNC", default_value = "60s", value_parser = parse_duration)]
    pub resync: Duration,

    /// Report drift only, never heal it
    #[arg(long, env = "GITOPS_NO_SELF_HEAL", value_parser = BoolishValueParser::new())]
    pub no_self_heal: bool,

    /// Never delete objects that left Git
    #[arg(long, env = "GITOPS_NO_PRUNE", value_parser = BoolishValueParser::new())]
    pub no_prune: bool,

    /// Allow a kind that can destabilize the mesh (EnvoyFilter, WasmPlugin,
    /// TrafficExtension); repeatable, or comma-separated in the env var
    #[arg(
        long = "allow-kind",
        env = "GITOPS_ALLOW_KIND",
        value_name = "KIND",
        value_delimiter = ','
    )]
    pub allow_kind: Vec<String>,

    /// Refuse a revision whose namespace folder holds more objects than this
    #[arg(
        long,
        env = "GITOPS_MAX_OBJECTS",
        value_name = "N",
        default_value_t = 5000
    )]
    pub max_objects: u64,

    /// Refuse a revision whose namespace folder holds more bytes of YAML than
    /// this (64Mi, 500Ki, 1G, or bytes), before reading it
    #[arg(long, env = "GITOPS_MAX_BYTES", value_name = "SIZE", default_value = "64Mi", value_parser = parse_size)]
    pub max_bytes: u64,

    /// Also refuse revisions with Error findings of `kubectl gitops validate`
    #[arg(long, env = "GITOPS_STRICT", value_parser = BoolishValueParser::new())]
    pub strict: bool,

    /// One reconcile, then exit: 0 on success, 1 on failure
    #[arg(long, env = "GITOPS_ONCE", value_parser = BoolishValueParser::new())]
    pub once: bool,

    /// Plan and print the plan; write nothing (no objects, no status)
    #[arg(long, env = "GITOPS_DRY_RUN", value_parser = BoolishValueParser::new())]
    pub dry_run: bool,

    /// Address of /metrics, /healthz and /readyz ("off" to disable)
    #[arg(
        long,
        env = "GITOPS_LISTEN",
        default_value = "0.0.0.0:9090",
        value_name = "ADDR"
    )]
    pub listen: String,

    /// Kubeconfig file [default: in-cluster, then KUBECONFIG or ~/.kube/config]
    #[arg(long, env = "GITOPS_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Log format (the level comes from RUST_LOG, default info)
    #[arg(long, env = "GITOPS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,

    /// The mesh root namespace, whose config affects every proxy: refused
    #[arg(long, env = "GITOPS_ROOT_NAMESPACE", default_value = DEFAULT_ROOT_NAMESPACE)]
    pub root_namespace: String,

    /// Objects applied in parallel within one apply rank
    #[arg(long, env = "GITOPS_CONCURRENCY", default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: usize,

    /// How long a writer's lease lasts without renewal before another
    /// replica takes over
    #[arg(long, env = "GITOPS_LEASE_DURATION", default_value = "15s", value_parser = parse_duration, hide = true)]
    pub lease_duration: Duration,
}

/// How logs are written (to stderr; stdout is for `--dry-run` plans).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// Where revisions come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A git-sync v4 volume: `root` holds `link`, a symlink to `.worktrees/<sha>`.
    Link { root: PathBuf, link: PathBuf },
    /// A plain folder, a git work tree or not.
    Plain { dir: PathBuf },
}

impl Source {
    /// The folder the agent reads from: git-sync's root or the plain folder.
    pub fn root(&self) -> &Path {
        match self {
            Source::Link { root, .. } => root,
            Source::Plain { dir } => dir,
        }
    }
}

/// The validated configuration of one agent.
#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    pub source: Source,
    /// `--path`; `None`: the revision's `.gitops/config.yaml` decides.
    pub base_path: Option<String>,
    pub name: String,
    pub field_manager: String,
    pub resync: Duration,
    pub self_heal: bool,
    pub prune: bool,
    pub policy: Policy,
    pub strict: bool,
    pub once: bool,
    pub dry_run: bool,
    /// `None`: no HTTP server.
    pub listen: Option<SocketAddr>,
    pub kubeconfig: Option<PathBuf>,
    pub log_format: LogFormat,
    pub concurrency: usize,
    pub max_objects: u64,
    pub max_bytes: u64,
    pub lease_duration: Duration,
}

/// A flag value that cannot be used; says which flag and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--namespace is required (or set GITOPS_NAMESPACE, or POD_NAMESPACE from the downward API)"
    )]
    MissingNamespace,
    #[error("--namespace {value:?}: {reason}")]
    Namespace { value: String, reason: String },
    #[error("--{flag} {value:?}: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: String,
    },
}

fn invalid(flag: &'static str, value: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        value: value.into(),
        reason: reason.into(),
    }
}

impl Config {
    /// Validate `args`; `pod_namespace` is the `POD_NAMESPACE` fallback.
    pub fn from_args(args: Args, pod_namespace: Option<String>) -> Result<Self, ConfigError> {
        let namespace = args
            .namespace
            .filter(|n| !n.is_empty())
            .or(pod_namespace.filter(|n| !n.is_empty()))
            .ok_or(ConfigError::MissingNamespace)?;
        check_dns1123_label(&namespace).map_err(|rule| ConfigError::Namespace {
            value: namespace.clone(),
            reason: format!("not a valid DNS-1123 {rule}"),
        })?;
        if namespace == args.root_namespace {
            return Err(ConfigError::Namespace {
                value: namespace,
                reason: "is the mesh root namespace: config there applies to the whole mesh and is refused".into(),
            });
        }
        let policy = Policy::new(&namespace)
            .with_root_namespace(&args.root_namespace)
            .allow_kinds(&args.allow_kind)
            .map_err(|e| invalid("allow-kind", args.allow_kind.join(","), e))?;

        if args.repo.as_os_str().is_empty() {
            return Err(invalid("repo", "", "must not be empty"));
        }
        let source = match args.link {
            Some(link) => {
                let shown = link.display().to_string();
                if link.as_os_str().is_empty() || link.file_name().is_none() {
                    return Err(invalid(
                        "link",
                        shown,
                        "must name the link git-sync creates",
                    ));
                }
                Source::Link {
                    link: args.repo.join(link),
                    root: args.repo,
                }
            }
            None => Source::Plain { dir: args.repo },
        };
        if let Some(path) = &args.path {
            check_relative(path).map_err(|e| invalid("path", path.clone(), e))?;
        }
        check_dns1123_subdomain(&args.name)
            .map_err(|rule| invalid("name", &args.name, format!("not a valid DNS-1123 {rule}")))?;
        if args.field_manager.trim().is_empty() || args.field_manager.len() > 128 {
            return Err(invalid(
                "field-manager",
                &args.field_manager,
                "must be 1 to 128 characters",
            ));
        }
        if args.resync < Duration::from_millis(100) {
            return Err(invalid(
                "resync",
                format!("{:?}", args.resync),
                "must be at least 100ms",
            ));
        }
        let listen = match args.listen.as_str() {
            "" | "off" | "none" => None,
            addr => Some(addr.parse().map_err(|e: std::net::AddrParseError| {
                invalid(
                    "listen",
                    addr,
                    format!("{e} (expected HOST:PORT, e.g. 0.0.0.0:9090)"),
                )
            })?),
        };
        if args.concurrency == 0 {
            return Err(invalid("concurrency", "0", "must be at least 1"));
        }
        if args.lease_duration < Duration::from_millis(300) {
            return Err(invalid(
                "lease-duration",
                format!("{:?}", args.lease_duration),
                "must be at least 300ms",
            ));
        }
        if args.max_objects == 0 {
            return Err(invalid("max-objects", "0", "must be at least 1"));
        }
        Ok(Config {
            namespace,
            source,
            base_path: args.path,
            name: args.name,
            field_manager: args.field_manager,
            resync: args.resync,
            self_heal: !args.no_self_heal,
            prune: !args.no_prune,
            policy,
            strict: args.strict,
            once: args.once,
            dry_run: args.dry_run,
            listen,
            kubeconfig: args.kubeconfig,
            log_format: args.log_format,
            concurrency: args.concurrency,
            max_objects: args.max_objects,
            max_bytes: args.max_bytes,
            lease_duration: args.lease_duration,
        })
    }

    /// `--path`, or the default when neither the flag nor the repo says.
    pub fn base_path_or_default(&self) -> &str {
        self.base_path.as_deref().unwrap_or(DEFAULT_BASE_PATH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> Args {
        let mut full = vec!["sync-agent"];
        full.extend_from_slice(argv);
        Args::try_parse_from(full).unwrap()
    }

    fn config(argv: &[&str]) -> Result<Config, ConfigError> {
        Config::from_args(args(argv), None)
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = config(&["--namespace", "team-a", "--repo", "/git", "--link", "repo"]).unwrap();
        assert_eq!(c.namespace, "team-a");
        assert_eq!(
            c.source,
            Source::Link {
                root: "/git".into(),
                link: "/git/repo".into()
            }
        );
        assert_eq!(c.base_path, None);
        assert_eq!(c.base_path_or_default(), "namespaces");
        assert_eq!(c.name, "sync-agent");
        assert_eq!(c.field_manager, "kubectl-gitops");
        assert_eq!(c.resync, Duration::from_secs(60));
        assert!(c.self_heal && c.prune && !c.strict && !c.once && !c.dry_run);
        assert_eq!(c.listen, Some("0.0.0.0:9090".parse().unwrap()));
        assert_eq!(c.log_format, LogFormat::Plain);
        assert_eq!(c.policy.root_namespace, "istio-system");
        assert!(c.policy.allowed_kinds.is_empty());
    }

    #[test]
    fn every_flag_parses() {
        let c = config(&[
            "--namespace=team-b",
            "--repo=/src",
            "--path=envs/prod/namespaces",
            "--name=agent",
            "--field-manager=me",
            "--resync=1m30s",
            "--no-self-heal",
            "--no-prune",
            "--allow-kind=EnvoyFilter",
            "--allow-kind",
            "wasmplugins",
            "--strict",
            "--once",
            "--dry-run",
            "--listen=off",
            "--kubeconfig=/k",
            "--log-format=json",
        ])
        .unwrap();
        assert_eq!(c.source, Source::Plain { dir: "/src".into() });
        assert_eq!(c.base_path.as_deref(), Some("envs/prod/namespaces"));
        assert_eq!(c.name, "agent");
        assert_eq!(c.field_manager, "me");
        assert_eq!(c.resync, Duration::from_secs(90));
        assert!(!c.self_heal && !c.prune && c.strict && c.once && c.dry_run);
        assert_eq!(c.listen, None);
        assert_eq!(c.kubeconfig, Some(PathBuf::from("/k")));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(
            c.policy.allowed_kinds.iter().collect::<Vec<_>>(),
            ["EnvoyFilter", "WasmPlugin"]
        );
    }

    #[test]
    fn namespace_falls_back_to_pod_namespace() {
        let c = Config::from_args(args(&["--repo", "/git"]), Some("team-c".into())).unwrap();
        assert_eq!(c.namespace, "team-c");
        let err = Config::from_args(args(&["--repo", "/git"]), None).unwrap_err();
        assert!(err.to_string().contains("POD_NAMESPACE"), "{err}");
        // the flag wins over the fallback
        let c =
            Config::from_args(args(&["-n", "team-a", "--repo", "/git"]), Some("x".into())).unwrap();
        assert_eq!(c.namespace, "team-a");
    }

    #[test]
    fn rejects_what_cannot_work() {
        for (argv, needle) in [
            (
                &["-n", "Team_A", "--repo", "/g"][..],
                "--namespace \"Team_A\"",
            ),
            (&["-n", "istio-system", "--repo", "/g"], "mesh root"),
            (
                &["-n", "a", "--repo", "/g", "--allow-kind", "Deployment"],
                "--allow-kind",
            ),
            (
                &["-n", "a", "--repo", "/g", "--path", "../x"],
                "--path \"../x\"",
            ),
            (&["-n", "a", "--repo", "/g", "--name", "Bad Name"], "--name"),
            (&["-n", "a", "--repo", "/g", "--resync", "0s"], "--resync"),
            (
                &["-n", "a", "--repo", "/g", "--listen", "nowhere"],
                "--listen \"nowhere\"",
            ),
            (&["-n", "a", "--repo", "/g", "--link", ".."], "--link"),
            (
                &["-n", "a", "--repo", "/g", "--concurrency", "0"],
                "--concurrency",
            ),
        ] {
            let err = config(argv).unwrap_err().to_string();
            assert!(err.contains(needle), "{argv:?}: {err}");
        }
        assert!(
            Args::try_parse_from([
                "sync-agent",
                "-n",
                "a",
                "--repo",
                "/g",
                "--log-format",
                "xml"
            ])
            .is_err()
        );
    }

    /// The env half of every flag. One test mutates the process environment
    /// (no other test here reads these variables).
    #[test]
    fn every_flag_reads_its_gitops_env_var() {
        let vars = [
            ("GITOPS_NAMESPACE", "team-e"),
            ("GITOPS_REPO", "/vol"),
            ("GITOPS_LINK", "current"),
            ("GITOPS_PATH", "ns"),
            ("GITOPS_NAME", "gos"),
            ("GITOPS_FIELD_MANAGER", "fm"),
            ("GITOPS_RESYNC", "10s"),
            ("GITOPS_NO_SELF_HEAL", "true"),
            ("GITOPS_NO_PRUNE", "1"),
            ("GITOPS_ALLOW_KIND", "EnvoyFilter,WasmPlugin"),
            ("GITOPS_STRICT", "yes"),
            ("GITOPS_ONCE", "true"),
            ("GITOPS_DRY_RUN", "true"),
            ("GITOPS_LISTEN", "127.0.0.1:9999"),
            ("GITOPS_KUBECONFIG", "/kc"),
            ("GITOPS_LOG_FORMAT", "json"),
        ];
        // SAFETY-free: edition 2024 makes set_var unsafe, and this crate
        // forbids unsafe code, so the environment is passed through a child
        // process: the test binary re-runs this parse under `env`.
        if std::env::var_os("SYNC_AGENT_ENV_TEST").is_none() {
            let exe = std::env::current_exe().unwrap();
            let mut cmd = std::process::Command::new(exe);
            cmd.args([
                "--exact",
                "config::tests::every_flag_reads_its_gitops_env_var",
                "--nocapture",
            ])
            .env("SYNC_AGENT_ENV_TEST", "1");
            for (k, v) in vars {
                cmd.env(k, v);
            }
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("env parse ok"));
            return;
        }
        let c = Config::from_args(Args::try_parse_from(["sync-agent"]).unwrap(), None).unwrap();
        assert_eq!(c.namespace, "team-e");
        assert_eq!(
            c.source,
            Source::Link {
                root: "/vol".into(),
                link: "/vol/current".into()
            }
        );
        assert_eq!(c.base_path.as_deref(), Some("ns"));
        assert_eq!(c.name, "gos");
        assert_eq!(c.field_manager, "fm");
        assert_eq!(c.resync, Duration::from_secs(10));
        assert!(!c.self_heal && !c.prune && c.strict && c.once && c.dry_run);
        assert_eq!(c.policy.allowed_kinds.len(), 2);
        assert_eq!(c.listen, Some("127.0.0.1:9999".parse().unwrap()));
        assert_eq!(c.kubeconfig, Some(PathBuf::from("/kc")));
        assert_eq!(c.log_format, LogFormat::Json);
        println!("env parse ok");
    }

    #[test]
    fn limits_default_to_the_contract() {
        let c = config(&["-n", "a", "--repo", "/g"]).unwrap();
        assert_eq!((c.max_objects, c.max_bytes), (5000, 64 << 20));
    }
}

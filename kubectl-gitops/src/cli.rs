//! The command line: clap derive, where each `///` comment is the help text.
//! Global flags follow kubectl (`-n`, `-A`, `--context`, `--kubeconfig`,
//! `-o`) and git (`--repo`); each subcommand's own flags live beside its code
//! in `cmd/<name>.rs`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{cmd, output::Format};

/// GitOps for Istio, one namespace at a time: stage, commit and push traffic
/// rules to the config repo, and see how the cluster differs from Git.
///
/// Exit codes: 0 ok, 1 differences or findings (diff, validate, status with
/// drift, a canary run that was rolled back), 2 error.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-gitops",
    bin_name = "kubectl gitops",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand understands.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Global {
    /// The config repo (default: the git repository around the current directory)
    #[arg(long, global = true, value_name = "DIR", env = "GITOPS_REPO")]
    pub repo: Option<PathBuf>,

    /// The base folder in the repo, one folder per namespace below it
    /// (default: `path` in .gitops/config.yaml, else "namespaces")
    #[arg(long, global = true, value_name = "PATH", env = "GITOPS_PATH")]
    pub path: Option<String>,

    /// The namespace (default: the namespace of the kubeconfig context, as in kubectl)
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Every namespace (every folder under the base folder), where it makes sense
    #[arg(short = 'A', long, global = true, conflicts_with = "namespace")]
    pub all_namespaces: bool,

    /// The kubeconfig context to use
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Output format, for commands whose output is data
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    /// Say more on stderr (-v info, -vv debug, -vvv trace)
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Policy flags of the commands that load manifests.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PolicyArgs {
    /// Allow a kind that can destabilize the whole mesh (EnvoyFilter,
    /// WasmPlugin, TrafficExtension); repeat for several
    #[arg(long = "allow-kind", value_name = "KIND")]
    pub allow_kind: Vec<String>,
}

pub use gitops_shared::units::parse_duration;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the config repo if needed, with .gitops/config.yaml and the base folder, and commit that scaffolding
    Init(cmd::init::Args),
    /// Validate, normalize and stage manifests into the namespace folder (FILE... or - for stdin)
    Stage(cmd::stage::Args),
    /// Read live objects from the cluster, normalize and stage them (adoption)
    Import(cmd::import::Args),
    /// Stage the deletion of objects from the namespace folder
    Rm(cmd::rm::Args),
    /// Commit what is staged under the base folder, with Gitops-Namespace and Gitops-Object trailers
    Commit(cmd::commit::Args),
    /// Push; when the remote moved on, fetch, rebase and retry
    Push(cmd::push::Args),
    /// Compare Git (the working tree, or REV) with the cluster; exit 1 when they differ
    Diff(cmd::diff::Args),
    /// Show each namespace's sync agent: applied revision vs the repo, phase, last sync, drift
    Status(cmd::status::Args),
    /// Show the history of a namespace folder, with its trailers
    Log(cmd::log::Args),
    /// Make a new commit that undoes REV's changes in the namespace folder
    Revert(cmd::revert::Args),
    /// Load and policy-check namespace folders or files, offline; exit 1 on findings
    Validate(cmd::validate::Args),
    /// Pause the namespace's sync agent (sets spec.suspend on its GitOpsSync): the emergency brake
    Suspend(cmd::suspend::Args),
    /// Resume the namespace's sync agent (clears spec.suspend on its GitOpsSync)
    Resume(cmd::suspend::Args),
    /// Canary releases through Git: start, step, promote, abort, status, and run (judged by Prometheus)
    Canary(cmd::canary::Args),
    /// Print a shell completion script
    Completion(cmd::completion::Args),
    /// Print the version
    Version(cmd::version::Args),
}

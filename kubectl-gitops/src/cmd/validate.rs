//! `validate`: load, policy-check and analyze namespace folders (`-n`, `-A`)
//! or files (`--files`), offline, and print the findings (Istio's codes where
//! the meaning is the same, `GITOPS...` for ours). Exit 1 when a finding
//! reaches `--fail-on` (Error by default).
//!
//! The work is `gitops_shared::analyze`, so the agent's `--strict` refuses
//! exactly what this command reports as an Error.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use gitops_shared::{
    analyze::{self, Finding, Level},
    layout::namespace_dir,
    manifest::LoadOptions,
    policy::Policy,
};

use crate::{
    Status,
    cli::PolicyArgs,
    context::{Context, policy},
    output::{self, Format},
};

/// Check manifests offline: policy and Istio analysis (IST0101, IST0109, ...)
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check these files or folders instead of namespace folders, like
    /// `istioctl analyze --use-kube=false`: a file under <path>/<ns>/ is in
    /// namespace <ns>, any other object in its own namespace or `default`
    #[arg(long, num_args = 1.., value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Exit 1 when a finding is at least this severe
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Error,
    Warning,
    Info,
}

impl FailOn {
    fn level(self) -> Level {
        match self {
            FailOn::Error => Level::Error,
            FailOn::Warning => Level::Warning,
            FailOn::Info => Level::Info,
        }
    }
}

pub fn run(ctx: &Context, args: Args) -> Result<Status> {
    let (findings, scope) = findings(ctx, &args)?;
    match ctx.format() {
        Format::Table => {
            let text: String = if findings.is_empty() {
                format!("no findings in {scope}\n")
            } else {
                findings.iter().map(|f| format!("{f}\n")).collect()
            };
            output::print(&text)?;
        }
        format => output::print_data(format, &findings)?,
    }
    Ok(if analyze::any_at_least(&findings, args.fail_on.level()) {
        Status::Differences
    } else {
        Status::Ok
    })
}

/// Every finding, sorted by file and line, and what was checked (for the
/// "no findings" line).
pub fn findings(ctx: &Context, args: &Args) -> Result<(Vec<Finding>, String)> {
    // Parse --allow-kind once; every namespace's policy is this one renamed.
    let template = policy(ctx, "default", &args.policy)?;
    let policy_for = move |ns: &str| Policy {
        namespace: ns.to_string(),
        ..template.clone()
    };
    let opts = LoadOptions::default();
    if args.files.is_empty() {
        let repo = ctx.repo()?;
        let base = ctx.base(&repo)?;
        let namespaces = ctx.namespaces(&repo, &base, "validate")?;
        for ns in &namespaces {
            if !namespace_dir(repo.workdir(), &base, ns).is_dir() {
                bail!(
                    "there is no folder {base}/{ns} in {}",
                    repo.workdir().display()
                );
            }
        }
        // Every folder is loaded (analyses see across namespaces, as Istio
        // does); findings are reported for the namespaces asked for.
        let findings =
            analyze::validate_repo(repo.workdir(), &base, Some(&namespaces), &policy_for, &opts)?;
        return Ok((findings, namespaces.join(", ")));
    }
    let located = ctx
        .repo()
        .ok()
        .and_then(|repo| ctx.base(&repo).ok().map(|base| (repo, base)));
    let folder = |file: &Path| folder_namespace(&located, file);
    let findings = analyze::validate_files(&args.files, &folder, &policy_for, &opts);
    let shown: Vec<String> = args.files.iter().map(|p| p.display().to_string()).collect();
    Ok((findings, shown.join(", ")))
}

/// The namespace of a file inside `<repo>/<base>/<ns>/`.
fn folder_namespace(located: &Option<(crate::git::Repo, String)>, file: &Path) -> Option<String> {
    let (repo, base) = located.as_ref()?;
    let rel = repo.relative(file)?;
    let rest = rel.strip_prefix(base.as_str())?.strip_prefix('/')?;
    let (ns, _) = rest.split_once('/')?;
    Some(ns.to_string())
}

//! `canary start|step|promote|abort|status|run VS`: Git-driven canary
//! releases (DESIGN.md). Git is the only writer of the weights and the only
//! store of a release's state: each move is one commit of the
//! VirtualService's file, the plan rides in its `kubectl-gitops.io/canary`
//! annotation, and `run` judges each step by Prometheus metrics.

use std::{collections::BTreeSet, time::Duration};

use anyhow::{Result, bail};
use gitops_shared::{analyze::resolve_host, gitopssync};
use serde::Serialize;
use serde_json::Value;

use crate::{
    Status,
    canary::{
        file::{Move, VsFile, commit_move},
        release::{
            Phase, Release, Split, check_route, check_steps, destinations, route_index, route_label,
        },
        run::{self, RunArgs},
    },
    cluster::{Cluster, block_on},
    context::Context,
    git::Repo,
    output::{self, Format},
};

/// Canary releases through Git: every weight change is a commit
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Start a release: record the plan on the VirtualService, set the first weight, commit
    Start(StartArgs),
    /// Move to the next step's weight, commit
    Step(MoveArgs),
    /// Send all traffic of the route to the canary and end the release, commit
    Promote(MoveArgs),
    /// Send all traffic of the route back to the stable subset and end the release, commit
    Abort(MoveArgs),
    /// Show the plan, the step, the weights in Git and live, and whether the agent applied them
    Status(StatusArgs),
    /// Drive the release: after each step is applied, judge it by Prometheus metrics;
    /// advance while healthy, roll back after --threshold failed checks (exit 1)
    Run(RunArgs),
}

/// Flags of every command that commits a move.
#[derive(Debug, Clone, clap::Args)]
pub struct CommitArgs {
    /// Push the commit (rebasing onto the remote when it moved on)
    #[arg(long)]
    pub push: bool,
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// The VirtualService's name
    #[arg(value_name = "VS")]
    pub vs: String,
    /// The subset that has the traffic now
    #[arg(long, value_name = "SUBSET")]
    pub stable: String,
    /// The subset to move traffic to
    #[arg(long, value_name = "SUBSET")]
    pub canary: String,
    /// The canary's weight at each step, increasing, within 1..100
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,25,50,100",
        value_name = "W,..."
    )]
    pub steps: Vec<u32>,
    /// The HTTP route to shift (its name, or http[N]); needed when there are several
    #[arg(long, value_name = "NAME")]
    pub route: Option<String>,
    #[command(flatten)]
    pub commit: CommitArgs,
}

#[derive(Debug, clap::Args)]
pub struct MoveArgs {
    /// The VirtualService's name
    #[arg(value_name = "VS")]
    pub vs: String,
    #[command(flatten)]
    pub commit: CommitArgs,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The VirtualService's name
    #[arg(value_name = "VS")]
    pub vs: String,
    /// Name of the namespace's GitOpsSync (its sync agent)
    #[arg(long, default_value = gitopssync::DEFAULT_NAME, value_name = "NAME")]
    pub name: String,
}

pub fn run(ctx: &Context, args: Args) -> Result<Status> {
    match args.command {
        Command::Start(a) => start(ctx, a),
        Command::Step(a) => advance(ctx, a, MoveKind::Step),
        Command::Promote(a) => advance(ctx, a, MoveKind::Promote),
        Command::Abort(a) => advance(ctx, a, MoveKind::Abort),
        Command::Status(a) => status(ctx, a),
        Command::Run(a) => run::run(ctx, a),
    }
}

/// The repo, base folder and namespace every canary command works in.
pub(crate) fn open(ctx: &Context, vs: &str) -> Result<(Repo, String, VsFile)> {
    let repo = ctx.repo()?;
    let base = ctx.base(&repo)?;
    let namespace = ctx.namespace("canary")?;
    let file = VsFile::find(&repo, &base, &namespace, vs)?;
    Ok((repo, base, file))
}

fn start(ctx: &Context, args: StartArgs) -> Result<Status> {
    let (repo, _, vs) = open(ctx, &args.vs)?;
    check_steps(&args.steps)?;
    if let Some(r) = vs.release()?
        && r.phase == Phase::Progressing
    {
        bail!(
            "a release is already running on VirtualService {} ({} -> {}, step {}, {}% to {}); step, promote or abort it first",
            vs.name,
            r.stable,
            r.canary,
            r.step_label(),
            r.weight(),
            r.canary
        );
    }
    if args.stable == args.canary {
        bail!("--stable and --canary are both {:?}", args.stable);
    }
    let index = route_index(&vs.object, args.route.as_deref())?;
    let host = check_route(&vs.object, index, &args.stable, &args.canary)?;
    subsets_rule(&vs, &host, &args.stable, &args.canary)?;
    vs.check_clean(&repo)?;

    let release = Release {
        stable: args.stable,
        canary: args.canary,
        steps: args.steps,
        step: 1,
        route: route_label(&vs.object, index),
        phase: Phase::Progressing,
    };
    let subject = format!(
        "canary {}: start {} -> {}, step {}: {}% to {}",
        vs.name,
        release.stable,
        release.canary,
        release.step_label(),
        release.weight(),
        release.canary
    );
    let m = Move {
        subject,
        body: None,
        release: &release,
        split: Split::Canary(release.weight()),
        checks: Vec::new(),
    };
    commit_and_report(&repo, &vs, index, &m, &args.commit)?;
    Ok(Status::Ok)
}

/// The DestinationRule of the namespace folder that defines both subsets
/// for the route's host, or a clear refusal.
pub(crate) fn subsets_rule(vs: &VsFile, host: &str, stable: &str, canary: &str) -> Result<Value> {
    let known = BTreeSet::from([vs.namespace.as_str()]);
    let want = resolve_host(&vs.namespace, host, &known);
    let mut partial = Vec::new();
    for (key, defs) in &vs.folder.definitions {
        if key.kind != "DestinationRule" || key.group != "networking.istio.io" {
            continue;
        }
        for def in defs {
            let Some(dr_host) = def.object["spec"]["host"].as_str() else {
                continue;
            };
            if resolve_host(&vs.namespace, dr_host, &known) != want {
                continue;
            }
            let subsets: BTreeSet<&str> = def.object["spec"]["subsets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .filter_map(|s| s["name"].as_str())
                .collect();
            if subsets.contains(stable) && subsets.contains(canary) {
                return Ok(def.object.clone());
            }
            partial.push(format!(
                "DestinationRule {} has {}",
                key.name,
                if subsets.is_empty() {
                    "no subsets".to_string()
                } else {
                    subsets.into_iter().collect::<Vec<_>>().join(", ")
                }
            ));
        }
    }
    let seen = if partial.is_empty() {
        String::new()
    } else {
        format!(" ({})", partial.join("; "))
    };
    bail!(
        "no DestinationRule in {}/ defines both subsets {stable:?} and {canary:?} for host {host}{seen}; stage one first",
        vs.prefix
    )
}

/// The three moves a person (or `run`) makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MoveKind {
    Step,
    Promote,
    Abort,
}

/// The release recorded on `vs`, which must be running.
pub(crate) fn running(vs: &VsFile) -> Result<Release> {
    match vs.release()? {
        Some(r) if r.phase == Phase::Progressing => Ok(r),
        Some(r) => bail!(
            "the release on VirtualService {} is over ({}, {}% to {}); start a new one with `canary start`",
            vs.name,
            r.phase,
            r.weight(),
            r.canary
        ),
        None => bail!(
            "no release on VirtualService {}; start one with `kubectl gitops canary start {} --stable SUBSET --canary SUBSET`",
            vs.name,
            vs.name
        ),
    }
}

/// The next release state and split for a move, and the commit subject.
pub(crate) fn next(
    vs: &VsFile,
    current: &Release,
    kind: MoveKind,
) -> Result<(Release, Split, String)> {
    let mut r = current.clone();
    let (split, subject) = match kind {
        MoveKind::Step => {
            if r.step >= r.steps.len() {
                bail!(
                    "VirtualService {} is at the last step ({}, {}% to {}); promote or abort it",
                    vs.name,
                    r.step_label(),
                    r.weight(),
                    r.canary
                );
            }
            r.step += 1;
            let w = r.weight();
            (
                Split::Canary(w),
                format!(
                    "canary {}: step {}, {w}% to {}",
                    vs.name,
                    r.step_label(),
                    r.canary
                ),
            )
        }
        MoveKind::Promote => {
            r.phase = Phase::Promoted;
            (
                Split::AllCanary,
                format!(
                    "canary {}: promote {}, 100% to {}",
                    vs.name, r.canary, r.canary
                ),
            )
        }
        MoveKind::Abort => {
            r.phase = Phase::Aborted;
            (
                Split::AllStable,
                format!(
                    "canary {}: roll back to {} at step {}, 0% to {}",
                    vs.name,
                    r.stable,
                    r.step_label(),
                    r.canary
                ),
            )
        }
    };
    Ok((r, split, subject))
}

fn advance(ctx: &Context, args: MoveArgs, kind: MoveKind) -> Result<Status> {
    let (repo, _, vs) = open(ctx, &args.vs)?;
    let current = running(&vs)?;
    let index = route_index(&vs.object, Some(&current.route))?;
    vs.check_clean(&repo)?;
    let (release, split, subject) = next(&vs, &current, kind)?;
    let m = Move {
        subject,
        body: None,
        release: &release,
        split,
        checks: Vec::new(),
    };
    commit_and_report(&repo, &vs, index, &m, &args.commit)?;
    Ok(Status::Ok)
}

/// Commit a move, print it, push when asked.
pub(crate) fn commit_and_report(
    repo: &Repo,
    vs: &VsFile,
    index: usize,
    m: &Move<'_>,
    commit: &CommitArgs,
) -> Result<git2::Oid> {
    let id = commit_only(repo, vs, index, m)?;
    publish(repo, commit.push)?;
    Ok(id)
}

/// Commit a move and show it, as git does (`[main 1a2b3c4d5e6f] subject`).
pub(crate) fn commit_only(
    repo: &Repo,
    vs: &VsFile,
    index: usize,
    m: &Move<'_>,
) -> Result<git2::Oid> {
    let id = commit_move(repo, vs, index, m)?;
    let branch = repo.branch().unwrap_or_else(|| "HEAD".into());
    output::print(&format!(
        "[{branch} {}] {}\n",
        &id.to_string()[..12],
        m.subject
    ))?;
    Ok(id)
}

/// Push HEAD when `push` (through `push`'s rebase and retry); otherwise, in
/// a branch that tracks a remote, say that the move is only local: the
/// agents read the remote, so nothing changed in the cluster.
pub(crate) fn publish(repo: &Repo, push: bool) -> Result<()> {
    if push {
        let outcome = repo.push(None, 5)?;
        return output::print(&super::push::report(&outcome));
    }
    if let Some(upstream) = repo.upstream()
        && !repo.upstream_has_head()
    {
        output::print(&format!(
            "committed, not pushed: the agents read {upstream}, so nothing changes in the cluster until `kubectl gitops push` (or --push)\n"
        ))?;
    }
    Ok(())
}

/// What `canary status` shows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    pub namespace: String,
    pub virtual_service: String,
    pub file: String,
    pub release: Option<Release>,
    /// The canary's weight Git holds.
    pub weight: Option<u32>,
    /// The route's weights in Git and live.
    pub git_weights: Vec<SubsetWeight>,
    pub live_weights: Option<Vec<SubsetWeight>>,
    /// The last commit of the file.
    pub commit: String,
    /// Whether the namespace's agent has applied that commit; `None` when unknown.
    pub applied: Option<bool>,
    pub agent_revision: String,
    pub agent_phase: String,
    pub agent_message: String,
    /// Why the cluster side is unknown.
    pub cluster_error: Option<String>,
}

/// One destination's weight, as `canary status -o json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubsetWeight {
    /// The subset (or the host, for a destination without one).
    pub subset: String,
    pub weight: u64,
}

fn named(weights: Vec<(String, u64)>) -> Vec<SubsetWeight> {
    weights
        .into_iter()
        .map(|(subset, weight)| SubsetWeight { subset, weight })
        .collect()
}

/// `(subset, weight)` of route `index`; a sole destination without a weight has 100.
pub(crate) fn weights(vs: &Value, index: usize) -> Vec<(String, u64)> {
    let dests = destinations(vs, index);
    let sole = dests.len() == 1;
    dests
        .into_iter()
        .map(|(subset, host, weight)| {
            (
                subset.unwrap_or(host),
                weight.unwrap_or(if sole { 100 } else { 0 }),
            )
        })
        .collect()
}

fn status(ctx: &Context, args: StatusArgs) -> Result<Status> {
    let (repo, _, vs) = open(ctx, &args.vs)?;
    let release = vs.release()?;
    let index = route_index(&vs.object, release.as_ref().map(|r| r.route.as_str()))?;
    let commit = vs.last_commit(&repo)?;
    let mut out = CanaryStatus {
        namespace: vs.namespace.clone(),
        virtual_service: vs.name.clone(),
        file: vs.rel.clone(),
        weight: release.as_ref().map(Release::weight),
        release: release.clone(),
        git_weights: named(weights(&vs.object, index)),
        live_weights: None,
        commit: commit.map(|c| c.to_string()).unwrap_or_default(),
        applied: None,
        agent_revision: String::new(),
        agent_phase: String::new(),
        agent_message: String::new(),
        cluster_error: None,
    };
    let live = block_on(async {
        let cluster = Cluster::connect(&ctx.global).await?;
        let kind =
            gitops_shared::kinds::lookup(crate::canary::file::GROUP, crate::canary::file::KIND)
                .expect("VirtualService is an Istio kind");
        let object = cluster.get(kind, &vs.namespace, &vs.name).await?;
        let agent = cluster.gitopssync(&vs.namespace, &args.name).await?;
        anyhow::Ok((object, agent))
    })?;
    match live {
        Ok((object, agent)) => {
            out.live_weights = object.map(|o| named(weights(&o, index)));
            if let Some(agent) = agent {
                let status = agent.status.unwrap_or_default();
                out.agent_revision = status.revision;
                out.agent_phase = status.phase.to_string();
                out.agent_message = status.message;
                if let Some(c) = commit {
                    out.applied = repo.contains(&out.agent_revision, c)?;
                }
            } else {
                out.cluster_error = Some(format!(
                    "no GitOpsSync {:?} in namespace {}",
                    args.name, vs.namespace
                ));
            }
        }
        Err(e) => out.cluster_error = Some(format!("{e:#}")),
    }

    match ctx.format() {
        Format::Table => output::print(&status_text(&out))?,
        format => output::print_data(format, &out)?,
    }
    Ok(Status::Ok)
}

fn pairs(weights: &[SubsetWeight]) -> String {
    weights
        .iter()
        .map(|w| format!("{}={}", w.subset, w.weight))
        .collect::<Vec<_>>()
        .join(" ")
}

fn status_text(s: &CanaryStatus) -> String {
    let mut text = format!(
        "VirtualService {}/{} ({})\n",
        s.namespace, s.virtual_service, s.file
    );
    match &s.release {
        Some(r) => {
            text.push_str(&format!(
                "release:  {} -> {} on route {}, steps {}\n",
                r.stable,
                r.canary,
                r.route,
                r.steps
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ));
            text.push_str(&format!(
                "state:    {}, step {}, {}% to {}\n",
                r.phase,
                r.step_label(),
                r.weight(),
                r.canary
            ));
        }
        None => text.push_str("release:  none\n"),
    }
    text.push_str(&format!("git:      {}\n", pairs(&s.git_weights)));
    match &s.live_weights {
        Some(w) => text.push_str(&format!("live:     {}\n", pairs(w))),
        None => text.push_str("live:     -\n"),
    }
    let short = |c: &str| c[..c.len().min(12)].to_string();
    let applied = match s.applied {
        Some(true) => "applied",
        Some(false) => "not applied yet",
        None => "unknown",
    };
    text.push_str(&format!("commit:   {} ({applied})\n", short(&s.commit)));
    if !s.agent_revision.is_empty() || !s.agent_phase.is_empty() {
        text.push_str(&format!(
            "agent:    {} at {}{}\n",
            s.agent_phase,
            short(&s.agent_revision),
            if s.agent_message.is_empty() {
                String::new()
            } else {
                format!(": {}", s.agent_message.lines().next().unwrap_or_default())
            }
        ));
    }
    if let Some(e) = &s.cluster_error {
        text.push_str(&format!("cluster:  {e}\n"));
    }
    text
}

/// How long to wait between two looks at the agent.
pub(crate) const POLL: Duration = Duration::from_millis(500);

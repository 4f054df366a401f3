//! `status`: what each namespace's sync agent reports in its `GitOpsSync`,
//! set against the repo: the applied revision vs the last commit that
//! changed the namespace folder ("in sync" / "behind by N commits"), phase,
//! last sync, drift and message. `-A` is the fleet. Exit 1 when an agent
//! reports drift or failure, or is not running (its heartbeat, the lease it
//! renews on its `GitOpsSync`, stopped or went silent).

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use gitops_kube::gitopssync::{DriftEntry, GitOpsSync, Liveness};
use gitops_shared::gitopssync;
use serde::Serialize;

use crate::{
    Status,
    cluster::{Cluster, block_on},
    context::Context,
    git::{Relation, Repo},
    output::{self, Format, Table},
};

/// Show the sync agents' state against the repo.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Name of the agents' GitOpsSync objects
    #[arg(long, default_value = gitopssync::DEFAULT_NAME, value_name = "NAME")]
    pub name: String,
    /// Wait until every namespace shown has applied HEAD with no drift (exit 0),
    /// or until TIMEOUT passes (exit 1); default 5m
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, require_equals = true,
          default_missing_value = "5m", value_parser = crate::cli::parse_duration)]
    pub wait: Option<Duration>,
}

/// How often `--wait` looks again.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// One agent's state.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    pub namespace: String,
    /// The GitOpsSync's name; empty when the namespace has no agent.
    pub name: String,
    /// `status.revision`: the commit fully applied.
    pub revision: String,
    /// The last commit that changed the namespace folder in this repo.
    pub head: String,
    /// `in sync`, `behind by N commits`, ...
    pub state: String,
    /// Commits changing the folder that the agent has not applied, when known.
    pub behind: Option<usize>,
    pub phase: String,
    pub synced_at: String,
    pub suspended: bool,
    /// What drifted (the GitOpsSync's `status.drift`).
    pub drift: Vec<DriftEntry>,
    /// How many objects drifted (its `status.drifted`).
    pub drifted: usize,
    pub message: String,
    /// Whether the agent runs, from its heartbeat; `None` when it holds no
    /// lease (run with --once or --dry-run).
    pub running: Option<bool>,
    /// Why it is taken not to run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_running: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> Result<Status> {
    // Without a repo (no --repo, not inside one) the agents' own view is
    // still worth showing; with one, each is set against the folder's history.
    let repo = match (&ctx.global.repo, ctx.repo()) {
        (_, Ok(repo)) => {
            let base = ctx.base(&repo)?;
            Some((repo, base))
        }
        (Some(_), Err(e)) => return Err(e),
        (None, Err(e)) => {
            tracing::info!(error = %e, "no config repo: revisions are not compared");
            None
        }
    };
    let single = if ctx.global.all_namespaces {
        None
    } else {
        Some(ctx.namespace("status")?)
    };
    let deadline = args.wait.map(|w| Instant::now() + w);
    let rows = loop {
        let rows = collect(ctx, &args, repo.as_ref(), single.as_deref())?;
        match deadline {
            Some(at) if !rows.iter().all(AgentStatus::done) && Instant::now() < at => {
                std::thread::sleep(WAIT_POLL);
            }
            _ => break rows,
        }
    };

    match ctx.format() {
        Format::Table => {
            let wide = ctx.wide();
            let mut headers = vec!["NAMESPACE"];
            if wide {
                headers.push("NAME");
            }
            headers.extend(["REVISION"]);
            if wide {
                headers.push("HEAD");
            }
            headers.extend(["STATE", "PHASE", "LAST SYNC", "DRIFT"]);
            if wide {
                headers.push("RUNNING");
            }
            headers.push("MESSAGE");
            let mut table = Table::new(&headers);
            for r in &rows {
                let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
                let mut row = vec![r.namespace.clone()];
                if wide {
                    row.push(dash(r.name.clone()));
                }
                row.push(dash(short(&r.revision)));
                if wide {
                    row.push(dash(short(&r.head)));
                }
                row.extend([
                    r.state.clone(),
                    dash(if r.running == Some(false) {
                        format!("{} (not running)", r.phase)
                    } else if r.suspended && r.phase != "Suspended" {
                        format!("{} (suspended)", r.phase)
                    } else {
                        r.phase.clone()
                    }),
                    last_sync(&r.synced_at),
                    r.drifted.to_string(),
                ]);
                if wide {
                    row.push(
                        match r.running {
                            Some(true) => "yes",
                            Some(false) => "no",
                            None => "-",
                        }
                        .to_string(),
                    );
                }
                row.push(match &r.not_running {
                    Some(why) => why.clone(),
                    None => r.message.lines().next().unwrap_or_default().to_string(),
                });
                table.row(row);
            }
            output::print(&table.render())?;
        }
        format => output::print_data(format, &rows)?,
    }
    if ctx.global.all_namespaces && !rows.iter().any(|r| !r.name.is_empty()) {
        eprintln!(
            "no GitOpsSync found in any namespace: no sync agent is deployed. Install the CRD once (kubectl apply -f manifests/crds/), then an agent per namespace (kubectl kustomize manifests/agent | kubectl apply -n NAMESPACE -f -)"
        );
    }
    let trouble = rows.iter().any(|r| {
        r.drifted > 0 || r.phase == "Drifted" || r.phase == "Failed" || r.running == Some(false)
    });
    let waited_in_vain = args.wait.is_some() && !rows.iter().all(AgentStatus::done);
    if waited_in_vain {
        let why: Vec<String> = rows
            .iter()
            .filter(|r| !r.done())
            .map(|r| format!("{}: {}", r.namespace, r.why_not_done()))
            .collect();
        eprintln!(
            "error: gave up waiting after {}: {}",
            output::age(args.wait.unwrap_or_default().as_secs() as i64),
            why.join("; ")
        );
    }
    Ok(if trouble || waited_in_vain {
        Status::Differences
    } else {
        Status::Ok
    })
}

impl AgentStatus {
    /// Applied the folder's last commit (or later), synced, no drift.
    fn done(&self) -> bool {
        self.behind == Some(0)
            && self.drifted == 0
            && self.phase == "Synced"
            && self.running != Some(false)
    }

    /// What keeps [`AgentStatus::done`] false, in words.
    fn why_not_done(&self) -> String {
        let mut why = Vec::new();
        if self.behind != Some(0) {
            why.push(self.state.clone());
        }
        if self.phase != "Synced" {
            why.push(match self.phase.as_str() {
                "" => "no report from its agent yet".to_string(),
                phase => format!(
                    "phase {phase}{}",
                    self.message
                        .lines()
                        .next()
                        .filter(|m| !m.is_empty())
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                ),
            });
        }
        if self.drifted > 0 {
            why.push(format!("{} drifted", self.drifted));
        }
        if let Some(not_running) = &self.not_running {
            why.push(not_running.clone());
        }
        why.join(", ")
    }
}

/// One look at the agents (and, with `-A`, the folders nobody syncs).
fn collect(
    ctx: &Context,
    args: &Args,
    repo: Option<&(Repo, String)>,
    single: Option<&str>,
) -> Result<Vec<AgentStatus>> {
    let all = ctx.global.all_namespaces;
    let objects = block_on(async {
        let cluster = Cluster::connect(&ctx.global).await?;
        match single {
            Some(ns) => match cluster.gitopssync(ns, &args.name).await? {
                Some(o) => anyhow::Ok(vec![o]),
                None => bail!(
                    "no GitOpsSync {:?} in namespace {ns:?}: is the sync agent deployed there?",
                    args.name
                ),
            },
            None => cluster.all_gitopssyncs().await,
        }
    })??;

    let mut rows = Vec::new();
    let mut seen = BTreeSet::new();
    for o in &objects {
        let ns = o.metadata.namespace.clone().unwrap_or_default();
        seen.insert(ns.clone());
        rows.push(agent_status(repo, &ns, o)?);
    }
    if all && let Some((repo, base)) = repo {
        // Folders nobody syncs are worth seeing in the fleet view.
        for ns in gitops_shared::layout::list_namespaces(repo.workdir(), base)? {
            if !seen.contains(&ns) {
                let head = repo.history(&format!("{base}/{ns}"), None, Some(1))?;
                rows.push(AgentStatus {
                    namespace: ns,
                    name: String::new(),
                    revision: String::new(),
                    head: head.first().map(|c| c.commit.clone()).unwrap_or_default(),
                    state: "no agent".into(),
                    behind: None,
                    phase: String::new(),
                    synced_at: String::new(),
                    suspended: false,
                    drift: Vec::new(),
                    drifted: 0,
                    message: String::new(),
                    running: None,
                    not_running: None,
                });
            }
        }
        rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    }
    Ok(rows)
}

fn agent_status(repo: Option<&(Repo, String)>, ns: &str, o: &GitOpsSync) -> Result<AgentStatus> {
    let status = o.status.clone().unwrap_or_default();
    let revision = status.revision.clone();
    let mut head = String::new();
    let (state, behind) = if revision.is_empty() {
        ("never synced".to_string(), None)
    } else if let Some((repo, base)) = repo {
        let prefix = format!("{base}/{ns}");
        head = repo
            .history(&prefix, None, Some(1))?
            .first()
            .map(|c| c.commit.clone())
            .unwrap_or_default();
        match repo.relation(&revision, &prefix)? {
            Relation::InSync => ("in sync".to_string(), Some(0)),
            Relation::Behind(n) => (
                format!("behind by {n} commit{}", if n == 1 { "" } else { "s" }),
                Some(n),
            ),
            Relation::Ahead(n) => (
                format!(
                    "ahead by {n} commit{} (pull?)",
                    if n == 1 { "" } else { "s" }
                ),
                Some(0),
            ),
            Relation::Diverged { behind, ahead } => (
                format!("diverged: behind by {behind}, ahead by {ahead}"),
                Some(behind),
            ),
            Relation::Unknown => ("unknown revision (fetch?)".to_string(), None),
        }
    } else {
        ("no repo to compare".to_string(), None)
    };
    // `drifted` alone when the list was left out (an older agent)
    let drifted = status.drift.len().max(status.drifted as usize);
    let (running, not_running) = match o.liveness(k8s_openapi::jiff::Timestamp::now()) {
        Liveness::Running => (Some(true), None),
        Liveness::Unknown => (None, None),
        Liveness::Stopped(at) => (
            Some(false),
            Some(format!("agent not running: it stopped at {at}")),
        ),
        Liveness::Silent(at) => (
            Some(false),
            Some(format!(
                "agent not running: no heartbeat since {at} (its lease has run out)"
            )),
        ),
    };
    Ok(AgentStatus {
        namespace: ns.to_string(),
        name: o.metadata.name.clone().unwrap_or_default(),
        revision,
        head,
        state,
        behind,
        // empty until the agent's first report
        phase: o
            .status
            .as_ref()
            .map(|s| s.phase.to_string())
            .unwrap_or_default(),
        synced_at: status.synced_at.unwrap_or_default(),
        suspended: o.suspended(),
        drift: status.drift,
        drifted,
        message: status.message,
        running,
        not_running,
    })
}

fn short(revision: &str) -> String {
    if revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()) {
        revision[..12].to_string()
    } else {
        revision.to_string()
    }
}

/// `5m ago` from an RFC 3339 time; the text itself when it does not parse.
fn last_sync(synced_at: &str) -> String {
    if synced_at.is_empty() {
        return "never".into();
    }
    let Ok(then) = synced_at.parse::<k8s_openapi::jiff::Timestamp>() else {
        return synced_at.to_string();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    format!("{} ago", output::age(now - then.as_second()))
}

//! `canary run VS`: drive a release from Git alone. For the step Git holds:
//! wait until the namespace's agent has applied the commit (its
//! `GitOpsSync` revision contains it and the live weights are Git's), wait
//! `--interval`, judge the checks over the window since the step went live;
//! advance while healthy (the last step healthy: promote, exit 0), roll back
//! after `--threshold` failed checks (exit 1). Nothing is kept outside Git:
//! killed and started again, `run` resumes at the step Git records.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use git2::Oid;
use gitops_shared::{gitopssync, kinds};
use indicatif::{ProgressBar, ProgressStyle};

use super::{
    checks::{self, Check, Scope, Verdict},
    file::{GROUP, KIND, Move, VsFile},
    prometheus::Prometheus,
    release::{Phase, Release, route_index},
};
use crate::{
    Status,
    cluster::{Cluster, block_on},
    cmd::canary::{
        CommitArgs, MoveKind, POLL, commit_only, next, open, publish, running, subsets_rule,
        weights,
    },
    context::Context,
    git::Repo,
};

/// Drive the release of VS by Prometheus metrics
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The VirtualService's name
    #[arg(value_name = "VS")]
    pub vs: String,
    /// The Prometheus server that scrapes the mesh
    #[arg(
        long,
        value_name = "URL",
        env = "GITOPS_PROMETHEUS",
        default_value = "http://localhost:9090"
    )]
    pub prometheus: String,
    /// How long each step runs, after it is applied, before it is judged (30s, 1m, 2m30s)
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = crate::cli::parse_duration)]
    pub interval: Duration,
    /// Failed checks after which the release is rolled back
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub threshold: u32,
    /// Lowest request success rate of the canary, in percent (non-5xx answers)
    #[arg(long, value_name = "PERCENT", default_value_t = 99.0)]
    pub min_success_rate: f64,
    /// Highest p99 request duration of the canary, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 500.0)]
    pub max_p99_ms: f64,
    /// An extra check: PROMQL must give one number within MIN..MAX (either may be empty);
    /// {{ selector }}, {{ namespace }}, {{ version }} and {{ interval }} are filled in
    #[arg(long = "query", value_name = "NAME=PROMQL:MIN:MAX", value_parser = checks::parse_query)]
    pub queries: Vec<Check>,
    /// How the canary's requests are told apart (default: destination_version from the
    /// subset's `version` label); PromQL matchers or key=value,...
    #[arg(long, value_name = "LABELS")]
    pub canary_selector: Option<String>,
    /// How long the agent may take to apply a step
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::cli::parse_duration)]
    pub apply_timeout: Duration,
    /// Name of the namespace's GitOpsSync (its sync agent)
    #[arg(long, default_value = gitopssync::DEFAULT_NAME, value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub commit: CommitArgs,
    /// Leave every move only local, even when the branch tracks a remote
    /// (by default each move is pushed there, since the agents read it)
    #[arg(long, conflicts_with = "push")]
    pub no_push: bool,
}

/// Progress for a person: a live line on a terminal, plain lines otherwise.
struct Display {
    bar: Option<ProgressBar>,
}

impl Display {
    fn new() -> Self {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self { bar }
    }

    /// A line that stays.
    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    /// The live line (terminal only).
    fn status(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(text.to_string());
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub fn run(ctx: &Context, args: RunArgs) -> Result<Status> {
    let mut checks = checks::defaults(args.min_success_rate, args.max_p99_ms);
    checks.extend(args.queries.iter().cloned());
    let prometheus = Prometheus::new(&args.prometheus)?;
    block_on(async {
        let cluster = Cluster::connect(&ctx.global).await?;
        let driver = Driver {
            ctx,
            args: &args,
            checks: &checks,
            prometheus: &prometheus,
            cluster: &cluster,
            display: Display::new(),
        };
        tokio::select! {
            outcome = driver.drive() => outcome,
            signal = stopped() => {
                let signal = signal?;
                driver.display.line(&format!(
                    "{signal}: stopped; the release stays where Git has it, and `kubectl gitops canary run {}` resumes it",
                    args.vs
                ));
                bail!("interrupted by {signal}")
            }
        }
    })?
}

/// Ctrl-C or SIGTERM. Moves are synchronous commits, so a signal never
/// lands in the middle of one: it is seen only while waiting.
async fn stopped() -> Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| "interrupt").map_err(Into::into),
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok("interrupt")
    }
}

struct Driver<'a> {
    ctx: &'a Context,
    args: &'a RunArgs,
    checks: &'a [Check],
    prometheus: &'a Prometheus,
    cluster: &'a Cluster,
    display: Display,
}

impl Driver<'_> {
    /// Whether moves are pushed: `--push`, or the branch tracks a remote
    /// (the agents read it) and `--no-push` was not given.
    fn pushes(&self, repo: &Repo) -> bool {
        self.args.commit.push || (!self.args.no_push && repo.upstream().is_some())
    }

    async fn drive(&self) -> Result<Status> {
        let args = self.args;
        let mut asked_prometheus = false;
        loop {
            // Git is the state: read it afresh before every decision.
            let (repo, _, vs) = open(self.ctx, &args.vs)?;
            let release = match vs.release()? {
                Some(r) if r.phase == Phase::Promoted => {
                    // a promotion an earlier run could not make live: again
                    let index = route_index(&vs.object, Some(&r.route))?;
                    let what = format!("the promotion of {} to {}", vs.name, r.canary);
                    self.make_live(&repo, &vs, index, &what).await?;
                    self.display.line(&format!(
                        "{}: {} is promoted (100% of route {}), live",
                        vs.name, r.canary, r.route
                    ));
                    return Ok(Status::Ok);
                }
                Some(r) if r.phase == Phase::Aborted => {
                    let index = route_index(&vs.object, Some(&r.route))?;
                    let what = format!("the rollback of {} to {}", vs.name, r.stable);
                    self.make_live(&repo, &vs, index, &what).await?;
                    self.display.line(&format!(
                        "{}: the release of {} was rolled back (100% to {}), live",
                        vs.name, r.canary, r.stable
                    ));
                    return Ok(Status::Differences);
                }
                _ => running(&vs)?,
            };
            let index = route_index(&vs.object, Some(&release.route))?;
            vs.check_clean(&repo)?;
            if !asked_prometheus {
                // Before any move: a run that cannot judge must not move.
                if let Err(e) = self.prometheus.query("1").await {
                    bail!("{e:#}; nothing was committed: check --prometheus and run again");
                }
                asked_prometheus = true;
            }
            // A step an earlier run committed but could not push.
            if self.pushes(&repo) && !repo.upstream_has_head() {
                publish(&repo, true)?;
            }
            let scope = self.scope(&vs, index, &release)?;
            let label = format!(
                "{} step {} ({}% to {})",
                vs.name,
                release.step_label(),
                release.weight(),
                release.canary
            );
            let commit = vs
                .last_commit(&repo)?
                .ok_or_else(|| anyhow!("{} is not committed yet", vs.rel))?;
            self.wait_applied(&repo, &vs, index, commit, &label).await?;
            let live_at = Instant::now();
            self.display.line(&format!(
                "{label}: applied ({}), judging for {}",
                short(commit),
                human(args.interval)
            ));

            let mut failures = 0;
            let (verdicts, window) = loop {
                self.countdown(&label, args.interval).await;
                let window = checks::window(live_at.elapsed());
                let mut verdicts = Vec::new();
                for check in self.checks {
                    verdicts.push(check.run(self.prometheus, &scope, &window).await);
                }
                let all_ok = verdicts.iter().all(Verdict::ok);
                if !all_ok {
                    failures += 1;
                }
                self.display.line(&format!(
                    "{label}: check over {window}: {}{}",
                    join(&verdicts),
                    if all_ok {
                        String::new()
                    } else {
                        format!(" ({failures}/{} failed)", args.threshold)
                    }
                ));
                if all_ok {
                    break (verdicts, window);
                }
                if failures >= args.threshold {
                    return self
                        .roll_back(&repo, &vs, index, &release, &verdicts, &window)
                        .await;
                }
            };

            let kind = if release.step >= release.steps.len() {
                MoveKind::Promote
            } else {
                MoveKind::Step
            };
            let (moved, split, subject) = next(&vs, &release, kind)?;
            let m = Move {
                subject,
                body: Some(judged(&release, &window, true)),
                release: &moved,
                split,
                checks: verdicts.iter().map(ToString::to_string).collect(),
            };
            commit_only(&repo, &vs, index, &m)?;
            if kind == MoveKind::Promote {
                let (repo, _, vs) = open(self.ctx, &args.vs)?;
                let what = format!("the promotion of {} to {}", vs.name, moved.canary);
                self.make_live(&repo, &vs, index, &what).await?;
                self.display.line(&format!(
                    "{}: {} promoted, 100% of route {}",
                    vs.name, moved.canary, moved.route
                ));
                return Ok(Status::Ok);
            }
        }
    }

    /// Commit the rollback with the failed checks, wait for it to be live.
    async fn roll_back(
        &self,
        repo: &Repo,
        vs: &VsFile,
        index: usize,
        release: &Release,
        verdicts: &[Verdict],
        window: &str,
    ) -> Result<Status> {
        let (moved, split, subject) = next(vs, release, MoveKind::Abort)?;
        let m = Move {
            subject,
            body: Some(judged(release, window, false)),
            release: &moved,
            split,
            checks: verdicts.iter().map(ToString::to_string).collect(),
        };
        commit_only(repo, vs, index, &m)?;
        let (repo, _, vs) = open(self.ctx, &self.args.vs)?;
        let what = format!("the rollback of {} to {}", vs.name, moved.stable);
        self.make_live(&repo, &vs, index, &what).await?;
        self.display.line(&format!(
            "{}: rolled back to {} after {} failed checks",
            vs.name, moved.stable, self.args.threshold
        ));
        Ok(Status::Differences)
    }

    /// Push the last move (when moves are pushed) and wait until the agent
    /// has applied it. Either failing is an error that says first that
    /// `what` is NOT live; the commit stays, and `run` again retries.
    async fn make_live(&self, repo: &Repo, vs: &VsFile, index: usize, what: &str) -> Result<()> {
        let commit = vs
            .last_commit(repo)?
            .ok_or_else(|| anyhow!("{} is not committed yet", vs.rel))?;
        let again = format!(
            "the commit {} is kept: run `kubectl gitops -n {} canary run {}` again to retry",
            short(commit),
            vs.namespace,
            vs.name
        );
        if self.pushes(repo)
            && !repo.upstream_has_head()
            && let Err(e) = publish(repo, true)
        {
            bail!("{what} is NOT live: it was committed, but the push failed: {e:#}; {again}");
        }
        if let Err(e) = self.wait_applied(repo, vs, index, commit, what).await {
            bail!("{what} is NOT live: {e:#}; {again}");
        }
        Ok(())
    }

    /// Who the checks look at: the canary subset's `version` label (from
    /// the DestinationRule in Git) or `--canary-selector`.
    fn scope(&self, vs: &VsFile, index: usize, release: &Release) -> Result<Scope> {
        let host =
            super::release::check_route(&vs.object, index, &release.stable, &release.canary)?;
        let rule = subsets_rule(vs, &host, &release.stable, &release.canary)?;
        let version = rule["spec"]["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"].as_str() == Some(release.canary.as_str()))
            .and_then(|s| s["labels"]["version"].as_str());
        let known = std::collections::BTreeSet::from([vs.namespace.as_str()]);
        let fqdn = gitops_shared::analyze::resolve_host(&vs.namespace, &host, &known);
        let service = fqdn
            .strip_suffix(".svc.cluster.local")
            .and_then(|rest| rest.split('.').next())
            .filter(|s| !s.is_empty() && *s != "*");
        Scope::new(
            &vs.namespace,
            service,
            version,
            self.args.canary_selector.as_deref(),
        )
    }

    /// Wait until the agent's revision contains `commit` and the live route
    /// has Git's weights, or fail after `--apply-timeout` with the agent's
    /// own account.
    async fn wait_applied(
        &self,
        repo: &Repo,
        vs: &VsFile,
        index: usize,
        commit: Oid,
        label: &str,
    ) -> Result<()> {
        let kind = kinds::lookup(GROUP, KIND).expect("VirtualService is an Istio kind");
        let want = weights(&vs.object, index);
        let deadline = Instant::now() + self.args.apply_timeout;
        let agent = format!("{}/{}", vs.namespace, self.args.name);
        loop {
            let why;
            match self
                .cluster
                .gitopssync(&vs.namespace, &self.args.name)
                .await
            {
                Ok(Some(gos)) => {
                    let status = gos.status.unwrap_or_default();
                    let (revision, message) = (status.revision, status.message);
                    let contains = repo.contains(&revision, commit)?;
                    if contains == Some(true) {
                        match self.cluster.get(kind, &vs.namespace, &vs.name).await {
                            Ok(Some(live)) if weights(&live, index) == want => return Ok(()),
                            Ok(Some(_)) => {
                                why = format!(
                                    "{agent} is at {}, but the live weights differ from Git (drift?)",
                                    short_str(&revision)
                                );
                            }
                            Ok(None) => {
                                why = format!("VirtualService {} is not in the cluster", vs.name)
                            }
                            Err(e) => why = format!("{e:#}"),
                        }
                    } else {
                        why = format!(
                            "{agent} is {} at {}{}",
                            status.phase,
                            if revision.is_empty() {
                                "no revision".to_string()
                            } else {
                                short_str(&revision)
                            },
                            if message.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", message.lines().next().unwrap_or_default())
                            }
                        );
                    }
                }
                Ok(None) => {
                    why = format!("no GitOpsSync {agent}: is the sync agent deployed there?")
                }
                Err(e) => why = format!("{e:#}"),
            }
            if Instant::now() >= deadline {
                bail!(
                    "{label}: the agent did not apply {} within {}: {why}; the release stays where Git has it",
                    short(commit),
                    human(self.args.apply_timeout)
                );
            }
            self.display.status(&format!(
                "{label}: waiting for {agent} to apply {} ({why})",
                short(commit)
            ));
            tokio::time::sleep(POLL).await;
        }
    }

    async fn countdown(&self, label: &str, interval: Duration) {
        let end = Instant::now() + interval;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            self.display
                .status(&format!("{label}: next check in {}", human(left)));
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        }
    }
}

/// The body of an automatic move: which step the checks judged.
fn judged(release: &Release, window: &str, healthy: bool) -> String {
    if healthy {
        format!(
            "Step {} ({}% to {}) was healthy over the last {window}; moved on by `kubectl gitops canary run`.",
            release.step_label(),
            release.weight(),
            release.canary
        )
    } else {
        format!(
            "Step {} ({}% to {}) failed its checks; rolled back by `kubectl gitops canary run`.",
            release.step_label(),
            release.weight(),
            release.canary
        )
    }
}

fn join(verdicts: &[Verdict]) -> String {
    verdicts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn short(id: Oid) -> String {
    id.to_string()[..12].to_string()
}

fn short_str(revision: &str) -> String {
    revision[..revision.len().min(12)].to_string()
}

/// `1m30s`, `45s`.
fn human(d: Duration) -> String {
    let secs = d.as_secs_f64().ceil() as u64;
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
        assert_eq!(human(Duration::from_millis(4200)), "5s");
    }
}

#!/usr/bin/env bash
# The quickstart: everything on this machine, nothing to install by hand.
#
#   scripts/demo.sh            run the whole story, then clean up
#   KEEP=1 scripts/demo.sh     leave the cluster, repo and agent running to play with
#
# 1. a real Kubernetes API server with Istio's CRDs (scripts/test-cluster.sh;
#    the first run builds it from Debian's Go source packages, ~5 minutes);
# 2. a config repo made with `kubectl gitops init`, the Bookinfo rules staged
#    into namespaces/team-a and committed;
# 3. a git-sync volume laid out exactly as git-sync v4 does it (worktrees and
#    an atomically swapped `current` link), and a sync-agent for team-a;
# 4. a change as one commit, diffed against the cluster, then applied;
# 5. a canary release through Git, judged by a real Prometheus (Debian's
#    package, fetched like etcd) scraping a mesh-traffic simulator that
#    follows the live weights: v2 is promoted step by step, then a bad v3
#    is rolled back, every move a commit;
# 6. someone edits the VirtualService by hand: the agent heals the drift;
# 7. the emergency brake: suspend and resume.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT=$PWD
SAMPLES=${GITOPS_SAMPLES:-$REPO_ROOT/../shared/testdata/istio-samples}

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() {
    printf '$ %s\n' "$*"
    "$@"
}
die() {
    printf 'demo: error: %s\n' "$*" >&2
    exit 1
}

command -v cargo >/dev/null || die "cargo is missing (install Rust with rustup)"
command -v kubectl >/dev/null || die "kubectl is missing"
command -v git >/dev/null || die "git is missing"
[[ -d $SAMPLES ]] || die "no Istio samples at $SAMPLES (set GITOPS_SAMPLES)"

say "Building kubectl-gitops and sync-agent"
cargo build -q --bins
BIN=$REPO_ROOT/target/debug
export PATH=$BIN:$PATH # kubectl finds its plugins on PATH

say "Starting a real API server with Istio's CRDs"
bash scripts/test-cluster.sh build
WORK=$(mktemp -d -t kubectl-gitops-demo.XXXXXX)
AGENT_PID=""
SIM_PID=""
PROM_PID=""
FOLLOW_PID=""
cleanup() {
    if [[ -n ${KEEP:-} ]]; then
        printf '\nLeft running (KEEP=1): export KUBECONFIG=%s; agent pid %s; repo %s\n' \
            "$WORK/cluster/kubeconfig" "$AGENT_PID" "$WORK/config"
        printf 'Stop with: kill %s; scripts/test-cluster.sh stop %s\n' "$AGENT_PID" "$WORK/cluster"
        return
    fi
    local pid
    for pid in "$FOLLOW_PID" "$SIM_PID" "$PROM_PID" "$AGENT_PID"; do
        # Killed by TERM, the helpers exit 143: that is not the demo failing.
        [[ -z $pid ]] || { kill "$pid" && wait "$pid"; } 2>/dev/null || true
    done
    bash "$REPO_ROOT/scripts/test-cluster.sh" stop "$WORK/cluster" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
bash scripts/test-cluster.sh start "$WORK/cluster" >/dev/null
export KUBECONFIG=$WORK/cluster/kubeconfig
KUBECTL=(kubectl --cache-dir "$WORK/kube-cache")
run "${KUBECTL[@]}" get crd virtualservices.networking.istio.io gitopssyncs.kubectl-gitops.io

say "A config repo: kubectl gitops init, stage Bookinfo's rules into team-a, commit"
mkdir -p "$WORK/config"
cd "$WORK/config"
git init -q -b main .
git config user.name "Demo User"
git config user.email "demo@example.com"
run kubectl gitops init
run kubectl gitops -n team-a stage "$SAMPLES/destination-rule-all.yaml" \
    "$SAMPLES/virtual-service-all-v1.yaml" "$SAMPLES/bookinfo-gateway.yaml"
run kubectl gitops -n team-a validate
run kubectl gitops commit -m "team-a: Bookinfo, all traffic on v1"
run git log --format='%h %s%n%(trailers:key=Gitops-Object,separator=%x20)' -1

# git-sync v4's layout: <root>/.worktrees/<sha> and a `current` symlink that is
# replaced atomically (rename of a fresh tmp link), the old worktree removed.
VOLUME=$WORK/volume
mkdir -p "$VOLUME/.worktrees"
publish() {
    local sha old
    sha=$(git -C "$WORK/config" rev-parse HEAD)
    old=$(readlink "$VOLUME/current" 2>/dev/null || true)
    git -C "$WORK/config" worktree add -q --detach "$VOLUME/.worktrees/$sha" "$sha"
    ln -sfn ".worktrees/$sha" "$VOLUME/tmp-link"
    mv -T "$VOLUME/tmp-link" "$VOLUME/current"
    if [[ -n $old && $old != ".worktrees/$sha" ]]; then
        git -C "$WORK/config" worktree remove --force "$VOLUME/$old"
    fi
    printf 'git-sync: published %s\n' "${sha:0:12}"
}
wait_for() { # wait_for DESCRIPTION COMMAND...: poll up to 60 s
    local what=$1
    shift
    for _ in $(seq 1 120); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    die "timed out waiting for $what"
}
phase_is() {
    [[ $("${KUBECTL[@]}" -n team-a get gos sync-agent -o jsonpath='{.status.phase}') == "$1" ]]
}
revision_is_head() {
    [[ $("${KUBECTL[@]}" -n team-a get gos sync-agent -o jsonpath='{.status.revision}') == \
        $(git -C "$WORK/config" rev-parse HEAD) ]] && phase_is Synced
}

say "A sync-agent for team-a on the git-sync volume"
publish
sync-agent --namespace team-a --repo "$VOLUME" --link current --resync 10s \
    --listen 127.0.0.1:0 --kubeconfig "$KUBECONFIG" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
wait_for "the agent to sync" revision_is_head
run "${KUBECTL[@]}" get gos -A
run "${KUBECTL[@]}" -n team-a get virtualservices,destinationrules,gateways
run kubectl gitops -n team-a status

say "A change as one commit: ratings delays jason's requests by 7s (a fault-injection test)"
cd "$WORK/config"
run kubectl gitops -n team-a stage "$SAMPLES/virtual-service-ratings-test-delay.yaml"
run kubectl gitops commit -m "team-a: ratings, 7s delay for jason"
run kubectl gitops -n team-a status || true
printf '$ kubectl gitops -n team-a diff   # the cluster is behind Git: exit 1\n'
kubectl gitops -n team-a diff && die "diff should report the pending change"
publish
wait_for "the agent to apply the new commit" revision_is_head
run kubectl gitops -n team-a diff

say "Mesh traffic and a real Prometheus for the canary"
# From here on git-sync follows the repo by itself, as it polls a remote.
(
    while sleep 0.5; do
        head=$(git -C "$WORK/config" rev-parse HEAD)
        [[ $(readlink "$VOLUME/current") == ".worktrees/$head" ]] || publish >>"$WORK/git-sync.log" 2>&1
    done
) &
FOLLOW_PID=$!
# The simulator watches the live VirtualService and splits 50 requests a
# second by its weights; v3 is broken: a quarter of its answers are 500s.
mesh-sim --kubeconfig "$KUBECONFIG" --namespace team-a --vs reviews --rps 50 \
    --error-rate v3=0.25 --port-file "$WORK/sim.addr" >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
wait_for "the traffic simulator" test -s "$WORK/sim.addr"
http_get() { # http_get PORT PATH: the body of a loopback GET
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$2" >&3
    sed '1,/^\r$/d' <&3
    exec 3<&-
}
PROM_PORT=$((20000 + RANDOM % 12000))
cat >"$WORK/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: mesh
  static_configs:
  - targets: ['$(cat "$WORK/sim.addr")']
EOF
"${GITOPS_CACHE_DIR:-$HOME/.cache/kubectl-gitops}/bin/prometheus" --config.file="$WORK/prometheus.yml" \
    --storage.tsdb.path="$WORK/prometheus-data" --web.listen-address="127.0.0.1:$PROM_PORT" \
    --log.level=warn >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
scraping() { http_get "$PROM_PORT" '/api/v1/query?query=up' | grep -q '"value":\[[0-9.]*,"1"\]'; }
wait_for "Prometheus to scrape the simulator" scraping
printf 'Prometheus on http://127.0.0.1:%s scrapes the simulator at %s\n' "$PROM_PORT" "$(cat "$WORK/sim.addr")"
CANARY_RUN=(kubectl gitops -n team-a canary run reviews --prometheus "http://127.0.0.1:$PROM_PORT" --interval 5s)

say "A canary through Git: reviews v1 -> v2 in steps of 20% and 50%, each step a commit judged by Prometheus"
run kubectl gitops -n team-a canary start reviews --stable v1 --canary v2 --steps 20,50
run "${CANARY_RUN[@]}"
run kubectl gitops -n team-a canary status reviews
[[ $("${KUBECTL[@]}" -n team-a get vs reviews -o jsonpath='{.spec.http[0].route[*].destination.subset}') == v2 ]] ||
    die "v2 should have all of reviews' traffic"

say "A bad canary: v3 fails a quarter of its requests; the metrics roll it back, as a commit"
run kubectl gitops -n team-a canary start reviews --stable v2 --canary v3 --steps 20,50
printf '$ %s   # rolled back: exit 1\n' "${CANARY_RUN[*]}"
if "${CANARY_RUN[@]}"; then die "the bad canary v3 was promoted"; fi
wait_for "the rollback to be live" revision_is_head
run "${KUBECTL[@]}" -n team-a get vs reviews -o jsonpath='{range .spec.http[0].route[*]}{.destination.subset}={.weight}{" "}{end}{"\n"}'
printf 'The release history, as git tells it:\n'
run git log --format='%h %s%n%(trailers:key=Gitops-Canary-Weight,key=Gitops-Canary-Check)' -- namespaces/team-a/virtualservice-reviews.yaml

say "Someone edits the VirtualService by hand: drift, healed by the agent"
run "${KUBECTL[@]}" -n team-a patch vs reviews --type merge --field-manager someone \
    -p '{"spec":{"http":[{"route":[{"destination":{"host":"reviews","subset":"v1"}}]}]}}'
weights_back() {
    [[ $("${KUBECTL[@]}" -n team-a get vs reviews -o jsonpath='{.spec.http[0].route[*].destination.subset}={.spec.http[0].route[*].weight}') == "v2=100" ]]
}
wait_for "the agent to heal the drift" weights_back
run "${KUBECTL[@]}" -n team-a get vs reviews -o jsonpath='{range .spec.http[0].route[*]}{.destination.subset}={.weight}{" "}{end}{"\n"}'
grep -m1 -E "healed=[1-9]" "$WORK/agent.log" || true

say "The emergency brake"
run kubectl gitops -n team-a suspend
wait_for "the agent to report Suspended" phase_is Suspended
run "${KUBECTL[@]}" get gos -A
run kubectl gitops -n team-a resume
wait_for "the agent to resume" phase_is Synced
run "${KUBECTL[@]}" get gos -A

say "Done: every change was a commit, applied by the agent, with the cluster's own audit log as witness"
grep -c '"verb":"patch"' "$WORK/cluster/audit.log" | xargs printf 'patch requests seen by the API server: %s\n'

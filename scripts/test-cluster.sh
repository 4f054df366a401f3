#!/usr/bin/env bash
# A real Kubernetes API server for tests and the demo (DESIGN.md, "Tests
# against a real API server"; how it was first done by hand:
# ../shared/recipes/test-apiserver.md).
#
#   scripts/test-cluster.sh build          build (or find in the cache) the server, etcd and Prometheus
#   scripts/test-cluster.sh start [DIR]    fresh certs, etcd + server on loopback, CRDs installed
#                                          (a stopped DIR starts again with its ports, certs and data)
#   scripts/test-cluster.sh stop DIR       stop exactly what `start DIR` started
#   scripts/test-cluster.sh status DIR     what runs, where
#
# Used by the Rust harness (tests/src/cluster.rs), which owns the processes:
#   scripts/test-cluster.sh prepare DIR    certs, kubeconfig, audit policy, argv files; starts nothing
#   scripts/test-cluster.sh install-crds DIR
#
# The server is k8s.io/apiextensions-apiserver (the part of every cluster that
# serves custom resources) built from Debian unstable's Go source packages with
# our tests/apiserver/main.go; etcd is Debian's etcd-server. Nothing is
# installed system-wide: packages are fetched with a private apt configuration
# and unpacked with `dpkg -x` into a cache outside the repo:
#   ${GITOPS_CACHE_DIR:-$HOME/.cache/kubectl-gitops}
# The mirror is read at run time from this machine's own apt sources.
#
# Environment:
#   GITOPS_CACHE_DIR    cache folder (default ~/.cache/kubectl-gitops)
#   GITOPS_ISTIO_CRDS   Istio CRDs to install (default <repo>/../shared/testdata/istio-crds.yaml)
#   GITOPS_ETCD_PORT, GITOPS_ETCD_PEER_PORT, GITOPS_SERVER_PORT
#                       loopback ports for `prepare`/`start` (default: free ones)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${GITOPS_CACHE_DIR:-$HOME/.cache/kubectl-gitops}
MAIN_GO=$REPO/tests/apiserver/main.go
SERVER_PACKAGES=(golang-k8s-apiextensions-apiserver-dev golang-go)
# The meta packages pulled in by golang-go; the versioned toolchain they name stays.
DROP_PACKAGES='golang-(go|any|src|doc)'
DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

log() { printf '[test-cluster] %s\n' "$*" >&2; }
die() {
    printf 'test-cluster: error: %s\n' "$*" >&2
    exit 1
}

# --- steps: a failing command names the step it broke ------------------------
CURRENT_STEP=""
STEP_T0=0
TEMP_DIRS=()
now_ms() { date +%s%3N; }
begin_step() {
    CURRENT_STEP=$1
    STEP_T0=$(now_ms)
    log "$CURRENT_STEP ..."
}
end_step() {
    local ms=$(($(now_ms) - STEP_T0))
    log "$CURRENT_STEP: done in $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s"
    CURRENT_STEP=""
}
on_exit() {
    local rc=$?
    if ((rc != 0)) && [[ -n $CURRENT_STEP ]]; then
        printf 'test-cluster: error: step "%s" failed (exit %d)\n' "$CURRENT_STEP" "$rc" >&2
    fi
    local d
    for d in "${TEMP_DIRS[@]}"; do rm -rf -- "$d"; done
    return "$rc"
}
trap on_exit EXIT

sha() { sha256sum | cut -c1-64; }

# --- build -------------------------------------------------------------------

# The URI of this machine's Debian mirror, from its own apt sources.
debian_mirror() {
    local uri=""
    if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
        uri=$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' \
            /etc/apt/sources.list.d/debian.sources | grep -v -- '-security' | head -n1 || true)
    fi
    if [[ -z $uri && -r /etc/apt/sources.list ]]; then
        uri=$(sed -E -n 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' /etc/apt/sources.list |
            grep -v -- '-security' | head -n1 || true)
    fi
    [[ -n $uri ]] || die "found no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
    printf '%s\n' "$uri"
}

# A private apt configuration under $CACHE/apt that lists only `sid main`.
# The lists are kept there so that the next `apt-get update` is incremental;
# the system's own apt state is never written.
setup_apt() {
    APT_DIR=$CACHE/apt
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
    [[ -r $DEBIAN_KEYRING ]] || die "$DEBIAN_KEYRING is missing (package debian-archive-keyring)"
    printf 'deb [signed-by=%s] %s sid main\n' "$DEBIAN_KEYRING" "$(debian_mirror)" >"$APT_DIR/sources.list"
    cat >"$APT_DIR/apt.conf" <<EOF
Dir::Etc::sourcelist "$APT_DIR/sources.list";
Dir::Etc::sourceparts "/dev/null";
Dir::Etc::preferences "/dev/null";
Dir::Etc::preferencesparts "/dev/null";
Dir::State::Lists "$APT_DIR/lists";
Dir::Cache "$APT_DIR/cache";
Acquire::Languages "none";
APT::Sandbox::User "$(id -un)";
EOF
    export APT_CONFIG=$APT_DIR/apt.conf
}

# name=version of every package the server's build needs, sorted.
resolve_server_packages() {
    local names
    names=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances "${SERVER_PACKAGES[@]}" |
        grep -E '^golang-' | grep -vxE "$DROP_PACKAGES" | sort -u)
    [[ -n $names ]] || die "apt-cache found no golang-* packages for ${SERVER_PACKAGES[*]}"
    # shellcheck disable=SC2086 # one word per package name
    apt-cache show --no-all-versions $names |
        awk '/^Package: /{p=$2} /^Version: /{print p "=" $2}' | sort -u
}

candidate_version() {
    apt-cache show --no-all-versions "$1" | awk '/^Version: /{print $2; exit}'
}

# Download the packages named in file $1 (name=version lines) and unpack
# them into $2 with dpkg -x.
download_and_unpack() {
    local list=$1 root=$2 debs
    debs=$(mktemp -d "${TMPDIR:-/tmp}/gitops-debs.XXXXXX")
    TEMP_DIRS+=("$debs")
    begin_step "download $(wc -l <"$list") packages"
    # shellcheck disable=SC2046 # one word per package
    (cd "$debs" && apt-get -q download $(cat "$list") >/dev/null)
    end_step
    begin_step "unpack into $root"
    rm -rf -- "$root.partial"
    mkdir -p "$root.partial"
    local deb
    for deb in "$debs"/*.deb; do dpkg -x "$deb" "$root.partial"; done
    rm -rf -- "$root"
    mv "$root.partial" "$root"
    end_step
    rm -rf -- "$debs"
}

build_ok_marker() { printf '%s\n' "$CACHE/bin/.main-go.sha256"; }

cmd_build() {
    mkdir -p "$CACHE/bin"
    command -v apt-get >/dev/null || die "apt-get is needed to fetch Debian's packages"
    command -v dpkg >/dev/null || die "dpkg is needed to unpack Debian's packages"
    [[ -f $MAIN_GO ]] || die "$MAIN_GO is missing"
    exec 9>"$CACHE/.build.lock"
    flock 9 # one build at a time
    local t0 main_sha
    t0=$(now_ms)
    main_sha=$(sha <"$MAIN_GO")

    begin_step "apt update"
    setup_apt
    if ! apt-get -q -o APT::Update::Error-Mode=any update >"$CACHE/apt/update.log" 2>&1; then
        cat "$CACHE/apt/update.log" >&2
        if [[ -x $CACHE/bin/test-apiserver && -x $CACHE/bin/etcd && -x $CACHE/bin/prometheus &&
            "$(cat "$(build_ok_marker)" 2>/dev/null)" == "$main_sha" ]]; then
            log "WARNING: apt update failed; keeping the previous build in $CACHE/bin"
            CURRENT_STEP=""
            build_git_sync "$(find "$CACHE" -maxdepth 1 -name 'root-*' -type d | sort | tail -n1)"
            print_binaries
            return 0
        fi
        exit 1
    fi
    end_step

    begin_step "resolve"
    local pkgs pkg_sha key
    pkgs=$(resolve_server_packages)
    printf '%s\n' "$pkgs" >"$CACHE/packages.next"
    pkg_sha=$(sha <"$CACHE/packages.next")
    key=$(printf '%s\n%s\n' "$pkg_sha" "$main_sha" | sha | cut -c1-16)
    local etcd_version
    etcd_version=$(candidate_version etcd-server)
    [[ -n $etcd_version ]] || die "no etcd-server in Debian sid"
    log "$(wc -l <"$CACHE/packages.next") packages, $(grep '^golang-k8s-apiextensions-apiserver-dev=' "$CACHE/packages.next"), etcd-server=$etcd_version"
    end_step

    # etcd: apt-get download + dpkg -x; `apt-get install` would start a system etcd.
    local etcd_root=$CACHE/etcd-$etcd_version
    if [[ ! -x $etcd_root/usr/bin/etcd ]]; then
        printf 'etcd-server=%s\n' "$etcd_version" >"$CACHE/etcd.next"
        download_and_unpack "$CACHE/etcd.next" "$etcd_root"
        [[ -x $etcd_root/usr/bin/etcd ]] || die "etcd-server $etcd_version has no usr/bin/etcd"
    fi

    # Prometheus (canary tests) and its promtool (alerting-rule tests): the
    # same way; `apt-get install prometheus` would start a system service.
    local prometheus_version
    prometheus_version=$(candidate_version prometheus)
    [[ -n $prometheus_version ]] || die "no prometheus in Debian sid"
    local prometheus_root=$CACHE/prometheus-$prometheus_version
    if [[ ! -x $prometheus_root/usr/bin/prometheus ]]; then
        # Debian ships promtool on its own since 3.x; take the same version.
        local promtool_version
        promtool_version=$(candidate_version promtool)
        printf 'prometheus=%s\n' "$prometheus_version" >"$CACHE/prometheus.next"
        [[ -z $promtool_version ]] || printf 'promtool=%s\n' "$promtool_version" >>"$CACHE/prometheus.next"
        download_and_unpack "$CACHE/prometheus.next" "$prometheus_root"
        [[ -x $prometheus_root/usr/bin/prometheus && -x $prometheus_root/usr/bin/promtool ]] ||
            die "prometheus $prometheus_version has no usr/bin/prometheus and usr/bin/promtool"
    fi

    local out=$CACHE/builds/$key/test-apiserver
    if [[ -x $out ]]; then
        log "cached: $out (packages and main.go unchanged)"
    else
        local root=$CACHE/root-${pkg_sha:0:16}
        if [[ ! -f $root/.complete ]]; then
            download_and_unpack "$CACHE/packages.next" "$root"
            cp "$CACHE/packages.next" "$root/.packages"
            touch "$root/.complete"
            # An unpacked root is about 4 GB: keep only the current one.
            local old
            for old in "$CACHE"/root-*; do
                [[ $old == "$root" || ! -d $old ]] || rm -rf -- "$old"
            done
        fi

        begin_step "compile"
        local goroot
        goroot=$(find "$root/usr/lib" -maxdepth 1 -name 'go-1.*' -type d | sort -V | tail -n1)
        [[ -n $goroot && -x $goroot/bin/go ]] || die "no Go toolchain (usr/lib/go-1.*) in $root"
        log "Go: $goroot"
        mkdir -p "$(dirname "$out")" "$CACHE/gocache"
        (
            cd "$(dirname "$MAIN_GO")"
            env -u GOFLAGS -u GOPATH -u GOROOT \
                GOROOT="$goroot" GOPATH="$root/usr/share/gocode" GOCACHE="$CACHE/gocache" \
                GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0 GOENV=off \
                GOTELEMETRY=off GOFLAGS= \
                "$goroot/bin/go" build -ldflags "-s -w" -o "$out.tmp" .
        )
        mv "$out.tmp" "$out"
        end_step
        # Builds for older keys are 77 MB each: keep only this one.
        local b
        for b in "$CACHE"/builds/*; do
            [[ $b == "$(dirname "$out")" ]] || rm -rf -- "$b"
        done
    fi

    build_git_sync "$CACHE/root-${pkg_sha:0:16}"

    ln -sfn "$out" "$CACHE/bin/test-apiserver"
    ln -sfn "$etcd_root/usr/bin/etcd" "$CACHE/bin/etcd"
    ln -sfn "$prometheus_root/usr/bin/prometheus" "$CACHE/bin/prometheus"
    ln -sfn "$prometheus_root/usr/bin/promtool" "$CACHE/bin/promtool"
    printf '%s\n' "$main_sha" >"$(build_ok_marker)"
    cp "$CACHE/packages.next" "$CACHE/bin/packages.txt"
    printf 'etcd-server=%s\n' "$etcd_version" >>"$CACHE/bin/packages.txt"
    printf 'prometheus=%s\n' "$prometheus_version" >>"$CACHE/bin/packages.txt"
    local ms=$(($(now_ms) - t0))
    log "build: done in $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s"
    print_binaries
}

# The real git-sync v4, from the source tarball (with its vendored modules)
# in ../shared/testdata/git-sync, built with the Go toolchain of the unpacked
# root; cached by the tarball's hash. The tests of the shipped pod run it.
build_git_sync() {
    local root=$1 tarball
    tarball=$(find "$REPO/../shared/testdata/git-sync" -maxdepth 1 -name 'git-sync-src-*.tar.gz' 2>/dev/null | sort | tail -n1)
    [[ -n $tarball ]] || die "no git-sync source in $REPO/../shared/testdata/git-sync"
    local out
    out=$CACHE/git-sync-$(sha <"$tarball" | cut -c1-16)/git-sync
    if [[ ! -x $out ]]; then
        begin_step "build git-sync"
        local goroot
        goroot=$(find "$root/usr/lib" -maxdepth 1 -name 'go-1.*' -type d | sort -V | tail -n1)
        [[ -n $goroot && -x $goroot/bin/go ]] || die "no Go toolchain (usr/lib/go-1.*) in $root"
        local src
        src=$(mktemp -d)
        tar -xzf "$tarball" -C "$src"
        local mod
        mod=$(find "$src" -maxdepth 2 -name go.mod -printf '%h\n' | head -n1)
        [[ -n $mod ]] || die "no go.mod in $tarball"
        mkdir -p "$(dirname "$out")" "$CACHE/gocache" "$CACHE/gopath"
        (
            cd "$mod"
            env -u GOFLAGS -u GOPATH -u GOROOT \
                GOROOT="$goroot" GOPATH="$CACHE/gopath" GOCACHE="$CACHE/gocache" \
                GO111MODULE=on GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0 \
                GOENV=off GOTELEMETRY=off \
                "$goroot/bin/go" build -o "$out.tmp" .
        )
        mv "$out.tmp" "$out"
        rm -rf -- "$src"
        end_step
    fi
    ln -sfn "$out" "$CACHE/bin/git-sync"
}

print_binaries() {
    printf 'test-apiserver: %s\n' "$(readlink -f "$CACHE/bin/test-apiserver")"
    printf 'git-sync: %s\n' "$(readlink -f "$CACHE/bin/git-sync")"
    printf 'etcd: %s\n' "$(readlink -f "$CACHE/bin/etcd")"
    printf 'prometheus: %s\n' "$(readlink -f "$CACHE/bin/prometheus")"
}

# --- start / stop ------------------------------------------------------------

apiserver_bin() { printf '%s\n' "${GITOPS_TEST_APISERVER:-$CACHE/bin/test-apiserver}"; }
etcd_bin() { printf '%s\n' "${GITOPS_TEST_ETCD:-$CACHE/bin/etcd}"; }

port_in_use() {
    if command -v ss >/dev/null; then
        [[ -n $(ss -Htan "( sport = :$1 )" 2>/dev/null) ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

# A loopback port nobody listens on, below the kernel's ephemeral range.
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 12000))
        if ! port_in_use "$p" && [[ " ${TAKEN_PORTS:-} " != *" $p "* ]]; then
            TAKEN_PORTS="${TAKEN_PORTS:-} $p"
            printf '%s\n' "$p"
            return 0
        fi
    done
    die "found no free loopback port"
}

openssl_quiet() { openssl "$@" 2>/dev/null; }

make_certs() {
    local dir=$1 ext=$1/.ext
    local curve=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl_quiet req -x509 "${curve[@]}" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
        -days 3650 -subj "/CN=kubectl-gitops test CA"
    # rustls (kube-rs's TLS) checks the SANs and ignores the CN.
    printf '%s\n' 'basicConstraints=CA:FALSE' 'keyUsage=critical,digitalSignature,keyEncipherment' \
        'extendedKeyUsage=serverAuth' 'subjectAltName=IP:127.0.0.1,DNS:localhost' >"$ext"
    openssl_quiet req "${curve[@]}" -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=localhost"
    openssl_quiet x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 3650 -extfile "$ext" -out "$dir/server.crt"
    # Group system:masters passes the server's authorization.
    printf '%s\n' 'basicConstraints=CA:FALSE' 'keyUsage=critical,digitalSignature,keyEncipherment' \
        'extendedKeyUsage=clientAuth' >"$ext"
    openssl_quiet req "${curve[@]}" -keyout "$dir/client.key" -out "$dir/client.csr" \
        -subj "/O=system:masters/CN=gitops-admin"
    openssl_quiet x509 -req -in "$dir/client.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 3650 -extfile "$ext" -out "$dir/client.crt"
    rm -f "$ext" "$dir"/*.csr "$dir/ca.srl"
    chmod 600 "$dir"/*.key
}

b64() { base64 -w0 <"$1"; }

# Certs, kubeconfigs, audit policy and one argv file per process (one
# argument a line) in DIR; starts nothing. The Rust harness starts the
# processes itself from the argv files so that it owns them.
cmd_prepare() {
    local dir=$1
    command -v openssl >/dev/null || die "openssl is needed for the test cluster's certificates"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local apiserver etcd
    apiserver=$(apiserver_bin)
    etcd=$(etcd_bin)
    [[ -x $apiserver && -x $etcd ]] || die "no test API server or etcd in $CACHE/bin: run scripts/test-cluster.sh build"
    local etcd_port peer_port server_port
    etcd_port=${GITOPS_ETCD_PORT:-$(free_port)}
    peer_port=${GITOPS_ETCD_PEER_PORT:-$(free_port)}
    server_port=${GITOPS_SERVER_PORT:-$(free_port)}

    make_certs "$dir"
    local server=https://127.0.0.1:$server_port
    # The delegated authentication/authorization and the core-API informers
    # want a kubeconfig; they get one for a loopback address nobody serves.
    cat >"$dir/unused.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: none
  cluster:
    server: https://127.0.0.1:1
    insecure-skip-tls-verify: true
users:
- name: none
  user: {}
contexts:
- name: none
  context: {cluster: none, user: none}
current-context: none
EOF
    cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: gitops-test
  cluster:
    server: $server
    certificate-authority-data: $(b64 "$dir/ca.crt")
users:
- name: gitops-admin
  user:
    client-certificate-data: $(b64 "$dir/client.crt")
    client-key-data: $(b64 "$dir/client.key")
contexts:
- name: gitops-test
  context:
    cluster: gitops-test
    user: gitops-admin
    namespace: default
current-context: gitops-test
EOF
    chmod 600 "$dir/kubeconfig"
    cat >"$dir/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
EOF
    printf '%s\n' "$etcd" \
        --name=gitops-test \
        "--data-dir=$dir/etcd-data" \
        "--listen-client-urls=http://127.0.0.1:$etcd_port" \
        "--advertise-client-urls=http://127.0.0.1:$etcd_port" \
        "--listen-peer-urls=http://127.0.0.1:$peer_port" \
        "--initial-advertise-peer-urls=http://127.0.0.1:$peer_port" \
        "--initial-cluster=gitops-test=http://127.0.0.1:$peer_port" \
        --unsafe-no-fsync \
        --log-level=warn >"$dir/etcd.args"
    # --request-timeout: with etcd stopped a request waits this long and
    # then gets a 504 (default 60s); fault tests wait for it. Everything
    # else here answers in milliseconds.
    printf '%s\n' "$apiserver" \
        "--etcd-servers=http://127.0.0.1:$etcd_port" \
        --bind-address=127.0.0.1 \
        "--secure-port=$server_port" \
        "--cert-dir=$dir/serving" \
        "--tls-cert-file=$dir/server.crt" \
        "--tls-private-key-file=$dir/server.key" \
        "--client-ca-file=$dir/ca.crt" \
        --authentication-skip-lookup \
        "--authentication-kubeconfig=$dir/unused.kubeconfig" \
        "--authorization-kubeconfig=$dir/unused.kubeconfig" \
        "--kubeconfig=$dir/unused.kubeconfig" \
        --disable-admission-plugins=NamespaceLifecycle,MutatingAdmissionPolicy,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,ValidatingAdmissionWebhook \
        --enable-priority-and-fairness=false \
        --request-timeout=15s \
        "--audit-log-path=$dir/audit.log" \
        "--audit-policy-file=$dir/audit-policy.yaml" >"$dir/apiserver.args"
    cat >"$dir/cluster.env" <<EOF
SERVER_URL=$server
SERVER_PORT=$server_port
ETCD_PORT=$etcd_port
ETCD_PEER_PORT=$peer_port
KUBECONFIG=$dir/kubeconfig
EOF
}

# kubectl with its own discovery cache: a stale cache of another server on
# the same port (in ~/.kube/cache) makes kubectl skip discovery.
kctl() {
    local dir=$1
    shift
    local cache
    cache=$(mktemp -d "${TMPDIR:-/tmp}/gitops-kubectl.XXXXXX")
    local rc=0
    kubectl --kubeconfig "$dir/kubeconfig" --cache-dir "$cache" "$@" || rc=$?
    rm -rf -- "$cache"
    return "$rc"
}

istio_crds() {
    local f=${GITOPS_ISTIO_CRDS:-$REPO/../shared/testdata/istio-crds.yaml}
    [[ -r $f ]] || die "Istio CRDs not found at $f (set GITOPS_ISTIO_CRDS)"
    printf '%s\n' "$f"
}

cmd_install_crds() {
    local dir
    dir=$(cd "$1" && pwd)
    command -v kubectl >/dev/null || die "kubectl is needed to install the CRDs"
    local istio
    istio=$(istio_crds)
    kctl "$dir" apply --server-side --field-manager=test-cluster \
        -f "$istio" -f "$REPO/manifests/crds/gitopssync.yaml" >/dev/null
    kctl "$dir" wait --for=condition=Established --timeout=120s crd --all >/dev/null
}

# Start one process from DIR/NAME.args in the background; its pid goes to DIR/NAME.pid.
launch() {
    local dir=$1 name=$2
    local -a argv
    mapfile -t argv <"$dir/$name.args"
    "${argv[@]}" </dev/null >>"$dir/$name.log" 2>&1 &
    printf '%s\n' "$!" >"$dir/$name.pid"
}

# Whether DIR/NAME.pid names a live process that we started (its command
# line mentions DIR, which guards against a reused pid).
running() {
    local dir=$1 name=$2 pid
    [[ -f $dir/$name.pid ]] || return 1
    pid=$(cat "$dir/$name.pid")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir"
}

wait_livez() {
    local dir=$1
    for _ in $(seq 1 600); do
        running "$dir" etcd || { tail -n 20 "$dir/etcd.log" >&2; die "etcd exited; log: $dir/etcd.log"; }
        running "$dir" apiserver || { tail -n 20 "$dir/apiserver.log" >&2; die "the API server exited; log: $dir/apiserver.log"; }
        if kctl "$dir" get --raw=/livez >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    die "the API server did not become live within 60s; log: $dir/apiserver.log"
}

cmd_start() {
    local dir=${1:-}
    if [[ -z $dir ]]; then
        dir=$(mktemp -d "${TMPDIR:-/tmp}/gitops-cluster.XXXXXX")
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if running "$dir" apiserver || running "$dir" etcd; then
        die "a test cluster already runs in $dir; stop it first: $0 stop $dir"
    fi
    command -v kubectl >/dev/null || die "kubectl is needed"
    if [[ ! -x $(apiserver_bin) || ! -x $(etcd_bin) ]]; then
        log "no build in $CACHE/bin yet: building"
        cmd_build >/dev/null
    fi
    local t0
    t0=$(now_ms)
    if [[ -f $dir/cluster.env && -f $dir/etcd.args && -f $dir/apiserver.args ]]; then
        log "restarting the cluster in $dir (same ports, certificates and data)"
    else
        begin_step "prepare $dir"
        cmd_prepare "$dir"
        end_step
    fi
    begin_step "start etcd and the API server"
    launch "$dir" etcd
    launch "$dir" apiserver
    wait_livez "$dir"
    end_step
    begin_step "install CRDs"
    cmd_install_crds "$dir"
    end_step
    local ms=$(($(now_ms) - t0))
    log "ready in $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s; stop with: $0 stop $dir"
    printf 'export KUBECONFIG=%s\n' "$dir/kubeconfig"
}

stop_one() {
    local dir=$1 name=$2 pid
    if running "$dir" "$name"; then
        pid=$(cat "$dir/$name.pid")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name ($pid) ignored SIGTERM for 10s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        fi
        log "stopped $name ($pid)"
    fi
    rm -f "$dir/$name.pid"
}

cmd_stop() {
    local dir=$1
    [[ -d $dir ]] || die "$dir is not a folder"
    dir=$(cd "$dir" && pwd)
    stop_one "$dir" apiserver
    stop_one "$dir" etcd
}

cmd_status() {
    local dir=$1
    dir=$(cd "$dir" && pwd)
    [[ -f $dir/cluster.env ]] && cat "$dir/cluster.env"
    local name rc=0
    for name in etcd apiserver; do
        if running "$dir" "$name"; then
            printf '%s: running (pid %s)\n' "$name" "$(cat "$dir/$name.pid")"
        else
            printf '%s: stopped\n' "$name"
            rc=1
        fi
    done
    if ((rc == 0)) && kctl "$dir" get --raw=/livez >/dev/null 2>&1; then
        echo "livez: ok"
    else
        echo "livez: failing"
        rc=1
    fi
    return "$rc"
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

case ${1:-} in
stop | status | prepare | install-crds) [[ -n ${2:-} ]] || die "usage: $0 $1 DIR" ;;
esac
case ${1:-} in
build) cmd_build ;;
start) cmd_start "${2:-}" ;;
stop) cmd_stop "$2" ;;
status) cmd_status "$2" ;;
prepare) cmd_prepare "$2" ;;
install-crds) cmd_install_crds "$2" ;;
*) usage ;;
esac

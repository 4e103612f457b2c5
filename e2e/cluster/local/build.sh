#!/usr/bin/env bash
# Build (or reuse) every binary of the local e2e cluster from the Go module proxy.
#
#   build.sh             install Debian packages, then build what is missing in the cache
#   build.sh --no-apt    skip the Debian packages
#   build.sh --apt-only  only install the Debian packages (then `build.sh --no-apt &` can run in the
#                        background next to other apt users without fighting for the dpkg lock)
#
# Cache (outside the repo), keyed by component and version:
#   ${TIDELOG_E2E_CACHE:-/var/cache/tidelog-e2e}/<component>-<version>/bin/...
#   ${TIDELOG_E2E_CACHE}/go/{mod,build}        Go module and build caches used by these builds
# A component whose directory holds `.done` is skipped. Each component's /usr/bin/time -v report
# is kept in <component>-<version>/build-time.txt.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../versions.env
source "$HERE/../versions.env"

CACHE="${TIDELOG_E2E_CACHE:-/var/cache/tidelog-e2e}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build"
export GOPATH="$CACHE/go/path"
NICE=(nice -n "${TIDELOG_E2E_NICE:-10}")

log() { printf '[build %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

DEBIAN_PACKAGES=(
  containerd runc containernetworking-plugins iptables conntrack iproute2 ethtool socat
  util-linux mount openssl ca-certificates curl gcc libc6-dev time python3 procps psmisc kmod
  busybox-static
)

install_debian_packages() {
  local missing=() p
  for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

check_go() {
  command -v go >/dev/null || { log "go not found on PATH (need >= $GO_MIN_VERSION)"; exit 1; }
  local v; v="$(go env GOVERSION)"; v="${v#go}"
  if [[ "$(printf '%s\n%s\n' "$GO_MIN_VERSION" "$v" | sort -V | head -1)" != "$GO_MIN_VERSION" ]]; then
    log "go $v is older than $GO_MIN_VERSION"; exit 1
  fi
}

# new_wrapper DIR: an empty module in DIR/src to build other modules' main packages from.
new_wrapper() {
  rm -rf "$1/src"; mkdir -p "$1/src" "$1/bin"
  (cd "$1/src" && go mod init local/tidelog-e2e-build >/dev/null 2>&1)
}

# ---------------------------------------------------------------------------------------- builders
# Each runs in a child process (`build.sh _build NAME DIR`) so that /usr/bin/time measures it alone.

build_kubernetes() {
  local dir=$1 v=$KUBERNETES_VERSION sv=$K8S_STAGING_VERSION
  new_wrapper "$dir"; cd "$dir/src"
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@$v" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  # Mirror k8s.io/kubernetes's replace directives: each ./staging/src/k8s.io/X becomes the published
  # k8s.io/X@$sv; any other replace is copied as it is. Derived from the go.mod, never hard-coded.
  local edits
  mapfile -t edits < <(go mod edit -json "$gomod" | python3 -c '
import json, sys
sv = sys.argv[1]
for r in json.load(sys.stdin).get("Replace") or []:
    old, new = r["Old"], r["New"]
    o = old["Path"] + ("@" + old["Version"] if old.get("Version") else "")
    if new["Path"].startswith("./staging/"):
        print("-replace=%s=%s@%s" % (o, old["Path"], sv))
    elif new.get("Version"):
        print("-replace=%s=%s@%s" % (o, new["Path"], new["Version"]))
    else:
        sys.exit("unexpected local replace in k8s.io/kubernetes go.mod: %s => %s" % (o, new["Path"]))
' "$sv")
  log "kubernetes: ${#edits[@]} replace directives from $gomod"
  ((${#edits[@]} > 20)) || { log "too few staging replaces found"; exit 1; }
  go mod edit "${edits[@]}"
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
  local pkgs=() c
  for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  go get "${pkgs[@]/%/@$v}"
  local minor=${v#v1.}; minor=${minor%%.*}
  local ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    ld+=" -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  "${NICE[@]}" go build -trimpath -ldflags "$ld" -o "$dir/bin/" "${pkgs[@]}"
}

build_etcd() {
  local dir=$1 v=$ETCD_VERSION
  new_wrapper "$dir"; cd "$dir/src"
  go get "go.etcd.io/etcd/server/v3@$v"
  "${NICE[@]}" go build -trimpath \
    -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$v" \
    -o "$dir/bin/etcd" go.etcd.io/etcd/server/v3
}

build_coredns() {
  local dir=$1 v=$COREDNS_VERSION
  new_wrapper "$dir"; cd "$dir/src"
  # Minimal CoreDNS: only the plugins the cluster Corefile uses (no forward).
  cat > main.go <<'GO'
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/template"
)

func main() { coremain.Run() }
GO
  go get "github.com/coredns/coredns@$v"
  go mod tidy >/dev/null
  "${NICE[@]}" go build -trimpath -ldflags "-s -w" -o "$dir/bin/coredns" .
}

build_helm() {
  local dir=$1 v=$HELM_VERSION
  new_wrapper "$dir"; cd "$dir/src"
  go get "helm.sh/helm/v3/cmd/helm@$v"
  "${NICE[@]}" go build -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$v" \
    -o "$dir/bin/helm" helm.sh/helm/v3/cmd/helm
}

# Prometheus: Debian's package, downloaded and unpacked (not installed: no service is started).
# Debian 12's 2.42 has no kubernetes_sd_configs; the tests use file_sd_configs (see versions.env).
build_prometheus() {
  local dir=$1
  mkdir -p "$dir/bin" "$dir/src"; cd "$dir/src"
  chmod 755 "$dir/src"
  apt-get download -q "prometheus=$(prometheus_version)" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true
  dpkg-deb -x prometheus_*.deb root
  cp root/usr/bin/prometheus root/usr/bin/promtool "$dir/bin/"
}

prometheus_version() {
  local v
  v="$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')"
  if [[ -z $v || $v == "(none)" ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    v="$(apt-cache policy prometheus | awk '/Candidate:/ {print $2}')"
  fi
  [[ -n $v && $v != "(none)" ]] || { log "no prometheus package in the apt sources"; exit 1; }
  echo "$v"
}

# ---------------------------------------------------------------------------------------- driver

component_dir() {
  case $1 in
    kubernetes) echo "$CACHE/kubernetes-$KUBERNETES_VERSION" ;;
    etcd) echo "$CACHE/etcd-$ETCD_VERSION" ;;
    coredns) echo "$CACHE/coredns-$COREDNS_VERSION" ;;
    helm) echo "$CACHE/helm-$HELM_VERSION" ;;
    prometheus) echo "$CACHE/prometheus-debian-$(prometheus_version)" ;;
    *) log "unknown component $1"; exit 2 ;;
  esac
}

if [[ "${1:-}" == _build ]]; then
  "build_$2" "$3"
  exit 0
fi

main() {
  local apt=1
  case "${1:-}" in
    --no-apt) apt=0 ;;
    --apt-only) install_debian_packages; return 0 ;;
    "") ;;
    *) log "usage: build.sh [--no-apt|--apt-only]"; exit 2 ;;
  esac
  ((apt)) && install_debian_packages
  check_go
  mkdir -p "$CACHE" "$GOMODCACHE" "$GOCACHE"
  local c dir timer=()
  [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -v -o)
  for c in etcd coredns helm kubernetes prometheus; do
    dir="$(component_dir "$c")"
    if [[ -f "$dir/.done" ]]; then
      log "$c: cached in $dir"
      continue
    fi
    log "$c: building into $dir"
    rm -rf "$dir"; mkdir -p "$dir"
    if ((${#timer[@]})); then
      "${timer[@]}" "$dir/build-time.tmp" "$0" _build "$c" "$dir"
      mv "$dir/build-time.tmp" "$dir/build-time.txt"
      grep -E 'Elapsed|User time|System time|Maximum resident' "$dir/build-time.txt" | sed "s/^/[build] $c: /" >&2
    else
      "$0" _build "$c" "$dir"
    fi
    rm -rf "$dir/src"
    touch "$dir/.done"
  done
  log "done; cache $(du -sh "$CACHE" 2>/dev/null | cut -f1) in $CACHE"
}

main "$@"

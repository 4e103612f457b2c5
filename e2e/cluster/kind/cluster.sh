#!/usr/bin/env bash
# kind provider: the same interface as the local provider, for users whose machines reach a
# container registry (kind's node image is pulled). It CANNOT run on the CI machines (no registry
# is reachable there); it has not been run by the project yet: see e2e/README.md.
#
#   cluster.sh up | down | load-images REF|TAR... | kubeconfig
#
# Env: KIND (default: kind on PATH), TIDELOG_KIND_CLUSTER (default tidelog-e2e),
#      TIDELOG_KIND_NODE_IMAGE (default: kind's own default node image for its release),
#      TIDELOG_E2E_STATE (where the kubeconfig is written, default ~/.cache/tidelog-e2e-kind).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../versions.env
source "$HERE/../versions.env"
KIND="${KIND:-kind}"
NAME="${TIDELOG_KIND_CLUSTER:-tidelog-e2e}"
STATE="${TIDELOG_E2E_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidelog-e2e-kind}"
KUBECONFIG_FILE="$STATE/$NAME.kubeconfig"

log() { printf '[kind %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
need() { command -v "$1" >/dev/null || { log "ERROR: $1 not found ($2)"; exit 1; }; }

cmd_up() {
  need "$KIND" "install kind: https://kind.sigs.k8s.io/"
  need docker "kind needs a container engine"
  mkdir -p "$STATE"
  if ! "$KIND" get clusters 2>/dev/null | grep -qx "$NAME"; then
    local args=(create cluster --name "$NAME" --kubeconfig "$KUBECONFIG_FILE" --wait 180s)
    [[ -n "${TIDELOG_KIND_NODE_IMAGE:-}" ]] && args+=(--image "$TIDELOG_KIND_NODE_IMAGE")
    "$KIND" "${args[@]}"
  fi
  "$KIND" get kubeconfig --name "$NAME" > "$KUBECONFIG_FILE"
  # The smoke tests' busybox image, built exactly as the local provider builds it.
  if [[ -x /bin/busybox ]]; then
    TIDELOG_E2E_CACHE="$STATE/cache" "$HERE/../local/cluster.sh" _fn build_busybox_image
    cmd_load_images "$STATE/cache/images/busybox.tar"
  else
    log "no /bin/busybox: load a busybox image yourself and set E2E_TEST_IMAGE"
  fi
  log "KUBECONFIG=$KUBECONFIG_FILE"
}

cmd_down() {
  command -v "$KIND" >/dev/null || return 0
  "$KIND" delete cluster --name "$NAME" || true
  rm -f "$KUBECONFIG_FILE"
}

cmd_load_images() {
  need "$KIND" "install kind"
  local src
  for src in "$@"; do
    if [[ -f $src ]]; then
      "$KIND" load image-archive "$src" --name "$NAME"
    else
      "$KIND" load docker-image "$src" --name "$NAME"
    fi
  done
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  load-images) shift; cmd_load_images "$@" ;;
  kubeconfig) echo "$KUBECONFIG_FILE" ;;
  *) sed -n '2,11p' "$0"; exit 2 ;;
esac

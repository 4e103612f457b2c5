#!/usr/bin/env bash
# Bring the local cluster up, run the e2e tests against it, and always tear it down (EXIT trap:
# pods live in /kubepods, outside the caller's cgroup, so nothing else would clean them up).
#
#   e2e/run-local.sh [pytest args...]
#
# If KUBECONFIG is already set, the tests run against that cluster and nothing is brought up.
# A SIGTERM/SIGINT to this script also stops the step it is running (`up` or pytest) before `down`
# runs, so a half-done `up` cannot start processes after the teardown.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOCAL="$HERE/cluster/local"
PYTHON="${PYTHON:-python3}"

child=""
# step CMD...: run CMD as a child we can stop on a signal; return its exit status.
step() {
  "$@" &
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=""
  return "$rc"
}
on_signal() {
  if [[ -n $child ]]; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  exit 143
}
trap on_signal TERM INT

if [[ -z "${KUBECONFIG:-}" ]]; then
  trap '"$LOCAL/down"' EXIT
  step "$LOCAL/up"
  KUBECONFIG="$("$LOCAL/kubeconfig")"
  export KUBECONFIG
  export KUBECTL="${KUBECTL:-$("$LOCAL/cluster.sh" kubectl-path)}"
  export HELM="${HELM:-$("$LOCAL/cluster.sh" helm-path)}"
  export PROMETHEUS="${PROMETHEUS:-$("$LOCAL/cluster.sh" prometheus-path)}"
fi
step "$PYTHON" -m pytest -v "$HERE/tests" "$@"

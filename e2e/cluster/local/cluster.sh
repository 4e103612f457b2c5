#!/usr/bin/env bash
# Local provider: a single-node Kubernetes made of host processes (see e2e/README.md).
#
#   cluster.sh up                   build (cached) + start everything, wait for the node to be Ready
#   cluster.sh down                 stop and remove everything; safe twice and from an EXIT trap
#   cluster.sh load-images REF|TAR  import images (OCI/docker archives, or refs from a docker daemon);
#                                   with no argument, the Tidelog images built by e2e/images/build.sh
#                                   (`up` imports those itself when they are built)
#   cluster.sh kubeconfig           print the admin kubeconfig's path
#   cluster.sh status               show what runs
#
# Env: TIDELOG_E2E_CACHE (built binaries, default /var/cache/tidelog-e2e),
#      TIDELOG_E2E_STATE (runtime state, default /var/lib/tidelog-e2e),
#      TIDELOG_E2E_NODE_IP (default 10.245.0.1: put on `lo` by `up`, so nothing leaves the machine).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../versions.env
source "$HERE/../versions.env"

CACHE="${TIDELOG_E2E_CACHE:-/var/cache/tidelog-e2e}"
STATE="${TIDELOG_E2E_STATE:-/var/lib/tidelog-e2e}"
RUN=/run/tidelog-e2e
NODE_IP="${TIDELOG_E2E_NODE_IP:-10.245.0.1}"
K8S_BIN="$CACHE/kubernetes-$KUBERNETES_VERSION/bin"
ETCD_BIN="$CACHE/etcd-$ETCD_VERSION/bin"
COREDNS_BIN="$CACHE/coredns-$COREDNS_VERSION/bin"
HELM_BIN="$CACHE/helm-$HELM_VERSION/bin"
PKI="$STATE/pki"
LOGS="$STATE/logs"
CTRD_SOCK="$RUN/containerd/containerd.sock"
CNI_NET=tidelog-e2e
CNI_CONF_DIR="$STATE/cni/net.d"
HOSTPATH_PV_DIR=/tmp/hostpath_pv # where KCM's hostPath provisioner creates volumes
KUBECONFIG_ADMIN="$STATE/admin.kubeconfig"
DEADLINE_UP="${TIDELOG_E2E_UP_TIMEOUT:-180}"

log() { printf '[local %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

kubectl() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
ctr_() { ctr --address "$CTRD_SOCK" -n k8s.io "$@"; }

# wait_for DESCRIPTION SECONDS COMMAND...: poll COMMAND until it succeeds or the deadline passes.
wait_for() {
  local what=$1 secs=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || { log "timed out after ${secs}s waiting for $what"; return 1; }
    sleep 0.5
  done
  log "ready: $what"
}

# ----------------------------------------------------------------------------------------- PKI

pki() {
  mkdir -p "$PKI"; cd "$PKI"
  [[ -f ca.crt ]] && return 0
  log "PKI (openssl) in $PKI"
  openssl genrsa -out ca.key 2048 2>/dev/null
  openssl req -x509 -new -key ca.key -sha256 -days 30 -subj "/CN=tidelog-e2e-ca" -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash"
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  # leaf NAME SUBJECT EKU [SANS]
  leaf() {
    local name=$1 subj=$2 eku=$3 sans=${4:-}
    openssl genrsa -out "$name.key" 2048 2>/dev/null
    openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr"
    {
      echo "basicConstraints=critical,CA:FALSE"
      echo "keyUsage=critical,digitalSignature,keyEncipherment"
      echo "extendedKeyUsage=$eku"
      echo "authorityKeyIdentifier=keyid"
      [[ -n $sans ]] && echo "subjectAltName=$sans"
    } > "$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -sha256 \
      -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
  }
  leaf apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost,DNS:$NODE_NAME,IP:127.0.0.1,IP:$KUBERNETES_SERVICE_IP,IP:$NODE_IP"
  leaf apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  leaf admin "/O=system:masters/CN=kubernetes-admin" clientAuth
  leaf controller-manager "/CN=system:kube-controller-manager" clientAuth
  leaf scheduler "/CN=system:kube-scheduler" clientAuth
  leaf kube-proxy "/CN=system:kube-proxy" clientAuth
  leaf kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "serverAuth,clientAuth" \
    "DNS:$NODE_NAME,DNS:localhost,IP:$NODE_IP,IP:127.0.0.1"
  chmod 600 ./*.key
  local who
  for who in admin controller-manager scheduler kube-proxy kubelet; do
    write_kubeconfig "$who"
  done
}

write_kubeconfig() {
  local who=$1 out="$STATE/$1.kubeconfig"
  cat > "$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tidelog-e2e
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority-data: $(base64 -w0 < "$PKI/ca.crt")
users:
- name: $who
  user:
    client-certificate-data: $(base64 -w0 < "$PKI/$who.crt")
    client-key-data: $(base64 -w0 < "$PKI/$who.key")
contexts:
- name: tidelog-e2e
  context: {cluster: tidelog-e2e, user: $who}
current-context: tidelog-e2e
EOF
  chmod 600 "$out"
}

# ----------------------------------------------------------------------------------------- processes

# start NAME BINARY ARGS...: run detached in its own session; pid in $RUN/pids/NAME.pid.
start() {
  local name=$1; shift
  mkdir -p "$RUN/pids" "$LOGS"
  if is_running "$name"; then log "$name already running"; return 0; fi
  log "start $name"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/pids/$name.pid"
}

pid_of() { [[ -f "$RUN/pids/$1.pid" ]] && cat "$RUN/pids/$1.pid"; }
is_running() { local p; p="$(pid_of "$1")" || return 1; [[ -n $p ]] && kill -0 "$p" 2>/dev/null; }

# stop NAME: TERM the recorded pid, KILL after 10 s. Only the pid this script started.
stop() {
  local name=$1 p i
  p="$(pid_of "$name" 2>/dev/null)" || return 0
  if [[ -n $p ]] && kill -0 "$p" 2>/dev/null; then
    log "stop $name ($p)"
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  fi
  rm -f "$RUN/pids/$name.pid"
}

# ----------------------------------------------------------------------------------------- pieces

# Host sysctls that `up` (ip_forward, bridge-nf-call-iptables) and the kubelet (protectKernelDefaults:
# false sets kernel.panic=10, kernel.panic_on_oops=1, vm.overcommit_memory=1 and raises the keyring
# limits) change; `down` puts the values saved by the first `up` back.
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables kernel.panic kernel.panic_on_oops
  vm.overcommit_memory kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

save_sysctls() {
  [[ -f "$STATE/sysctl.saved" ]] && return 0
  local k
  for k in "${SYSCTLS[@]}"; do
    [[ -e /proc/sys/${k//.//} ]] && echo "$k=$(cat "/proc/sys/${k//.//}")"
  done > "$STATE/sysctl.saved"
}

restore_sysctls() {
  [[ -f "$STATE/sysctl.saved" ]] || return 0
  local line
  while read -r line; do sysctl -qw "$line" 2>/dev/null || log "warning: could not restore $line"; done < "$STATE/sysctl.saved"
  rm -f "$STATE/sysctl.saved"
}

host_setup() {
  mkdir -p "$STATE" "$RUN" "$LOGS"
  save_sysctls
  ip addr replace "$NODE_IP/32" dev lo
  ip addr replace "$CLUSTER_DNS_IP/32" dev lo
  sysctl -qw net.ipv4.ip_forward=1
  if [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
    sysctl -qw net.bridge.bridge-nf-call-iptables=1
  else
    modprobe br_netfilter 2>/dev/null || log "warning: no br_netfilter (hairpin Service traffic may fail)"
  fi
}

images_dir() { echo "$CACHE/images"; }

# Pause image from a static C program, as an OCI archive (no Docker, no registry).
build_pause_image() {
  local dir; dir="$(images_dir)"; mkdir -p "$dir"
  [[ -f "$dir/pause.tar" ]] && return 0
  log "building pause image"
  local root; root="$(mktemp -d)"
  gcc -static -Os -s -o "$root/pause" "$HERE/images/pause.c"
  python3 "$HERE/images/mkimage.py" --rootfs "$root" --name "$PAUSE_IMAGE" --entrypoint /pause \
    --user 65535:65535 -o "$dir/pause.tar.tmp"
  mv "$dir/pause.tar.tmp" "$dir/pause.tar"
  rm -rf "$root"
}

# A small image built here from Debian's static busybox, for smoke tests (sh, wget, nslookup, httpd).
build_busybox_image() {
  local dir; dir="$(images_dir)"; mkdir -p "$dir"
  [[ -f "$dir/busybox.tar" ]] && return 0
  [[ -x /bin/busybox ]] || die "/bin/busybox missing (apt-get install busybox-static)"
  log "building busybox image"
  local root; root="$(mktemp -d)"
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/data"
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  local app
  for app in $("$root/bin/busybox" --list); do
    [[ $app == busybox ]] || ln -sf busybox "$root/bin/$app"
  done
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  python3 "$HERE/images/mkimage.py" --rootfs "$root" --name docker.io/tidelog/busybox:e2e \
    --cmd /bin/sh -o "$dir/busybox.tar.tmp"
  mv "$dir/busybox.tar.tmp" "$dir/busybox.tar"
  rm -rf "$root"
}

start_containerd() {
  mkdir -p "$STATE/containerd" "$RUN/containerd" "$CNI_CONF_DIR"
  cat > "$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$RUN/containerd/state"
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$RUN/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CNI_CONF_DIR"
EOF
  cat > "$CNI_CONF_DIR/10-$CNI_NET.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NET",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall"}
  ]
}
EOF
  start containerd containerd --config "$STATE/containerd/config.toml"
  wait_for containerd 30 ctr --address "$CTRD_SOCK" version
}

# The Tidelog images' OCI archives (built by `make images` = e2e/images/build.sh), if built.
TIDELOG_IMAGES_BUILD="$HERE/../../images/build.sh"
tidelog_archives() { TIDELOG_E2E_CACHE="$CACHE" "$TIDELOG_IMAGES_BUILD" --print-archives; }

load_images() {
  local src
  if (($# == 0)); then
    # No argument: the Tidelog images. They must have been built first.
    local missing=0
    local archives
    for src in $(tidelog_archives); do
      [[ -f $src ]] || { log "missing $src"; missing=1; }
    done
    ((missing == 0)) || die "Tidelog images not built: run 'make images' (e2e/images/build.sh) first"
    mapfile -t archives < <(tidelog_archives)
    set -- "${archives[@]}"
  fi
  for src in "$@"; do
    if [[ -f $src ]]; then
      log "import $src"
      ctr_ images import "$src" >/dev/null
    else
      command -v docker >/dev/null || die "$src is not a file and there is no docker to save it from"
      log "import $src from docker"
      docker save "$src" | ctr_ images import - >/dev/null
    fi
  done
}

# `up` imports the Tidelog images when they are built (`make images`); tests that need them fail
# with ErrImageNeverPull otherwise, and the log says why.
load_tidelog_images_if_built() {
  local src archives=()
  for src in $(tidelog_archives); do
    if [[ -f $src ]]; then archives+=("$src"); else log "warning: $src not built (make images)"; fi
  done
  ((${#archives[@]} == 0)) || load_images "${archives[@]}"
}

start_etcd() {
  mkdir -p "$STATE/etcd"
  start etcd "$ETCD_BIN/etcd" --name e2e --data-dir "$STATE/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster e2e=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
    --unsafe-no-fsync --log-level warn
  wait_for etcd 30 curl -fsS http://127.0.0.1:2379/readyz
}

start_control_plane() {
  start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --advertise-address="$NODE_IP" --bind-address="$NODE_IP" --secure-port=6443 \
    --etcd-servers=http://127.0.0.1:2379 \
    --service-cluster-ip-range="$SERVICE_CIDR" --service-node-port-range=30000-32767 \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true \
    --client-ca-file="$PKI/ca.crt" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer="https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --profiling=false
  wait_for kube-apiserver 90 kubectl get --raw /readyz
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --cluster-cidr="$CLUSTER_CIDR" --service-cluster-ip-range="$SERVICE_CIDR" \
    --enable-hostpath-provisioner=true --profiling=false
  start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --profiling=false
}

start_node() {
  mkdir -p "$STATE/kubelet"
  cat > "$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
containerRuntimeEndpoint: unix://$CTRD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
oomScoreAdj: 0
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: ["$CLUSTER_DNS_IP"]
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}
rotateCertificates: false
podLogsDir: $STATE/pod-logs
serializeImagePulls: false
protectKernelDefaults: false
EOF
  start kubelet "$K8S_BIN/kubelet" --config="$STATE/kubelet/config.yaml" \
    --kubeconfig="$STATE/kubelet.kubeconfig" --root-dir="$STATE/kubelet/root" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
  start kube-proxy "$K8S_BIN/kube-proxy" --kubeconfig="$STATE/kube-proxy.kubeconfig" \
    --proxy-mode=iptables --hostname-override="$NODE_NAME" --cluster-cidr="$CLUSTER_CIDR" \
    --oom-score-adj=0 --conntrack-max-per-core=0 --conntrack-min=0 \
    --conntrack-tcp-timeout-established=0s --conntrack-tcp-timeout-close-wait=0s \
    --conntrack-udp-timeout=0s --conntrack-udp-timeout-stream=0s \
    --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256 \
    --nodeport-addresses="$NODE_IP/32"
}

start_coredns() {
  mkdir -p "$STATE/coredns"
  cat > "$STATE/coredns/Corefile" <<EOF
$CLUSTER_DOMAIN:53 {
    bind $CLUSTER_DNS_IP
    errors
    kubernetes $CLUSTER_DOMAIN {
        kubeconfig $KUBECONFIG_ADMIN tidelog-e2e
        pods insecure
        ttl 5
    }
    cache 5
}
.:53 {
    bind $CLUSTER_DNS_IP
    errors
    template ANY ANY {
        rcode NXDOMAIN
    }
}
EOF
  start coredns "$COREDNS_BIN/coredns" -conf "$STATE/coredns/Corefile"
}

addons() {
  kubectl apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: hostpath
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF
}

# Fail early, naming the port, if something else already listens on one of ours.
check_ports() {
  local port busy=()
  for port in 2379 2380 2381 6443 10248 10249 10250 10256 10257 10259; do
    ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && busy+=("$port")
  done
  ss -Hlun "sport = :53" 2>/dev/null | grep -qF "$CLUSTER_DNS_IP:53" && busy+=("$CLUSTER_DNS_IP:53/udp")
  ((${#busy[@]} == 0)) || die "ports in use by another process: ${busy[*]} (ss -ltnp)"
}

node_ready() {
  [[ "$(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}

# ----------------------------------------------------------------------------------------- commands

cmd_up() {
  local t0=$SECONDS
  "$HERE/build.sh" ${TIDELOG_E2E_NO_APT:+--no-apt}

  if ! is_running etcd && [[ -e $STATE ]]; then
    # A run that ended without `down` (killed, or a teardown that could not finish) leaves mounts,
    # containerd snapshots and a stale etcd; a fresh start on top of them fails (ctr import: "file
    # exists"). Tear all of it down first.
    log "state of an earlier run left in $STATE: tearing it down first"
    cmd_down
    set -e # cmd_down runs with errexit off
    [[ -e $STATE ]] && die "could not remove $STATE (still mounted? findmnt | grep $STATE)"
  fi
  is_running etcd || check_ports
  host_setup
  pki
  build_pause_image
  build_busybox_image
  start_etcd
  start_control_plane
  start_containerd
  load_images "$(images_dir)/pause.tar" "$(images_dir)/busybox.tar"
  load_tidelog_images_if_built
  start_node
  start_coredns
  wait_for "node $NODE_NAME Ready" "$DEADLINE_UP" node_ready
  wait_for "default service account" 60 kubectl -n default get serviceaccount default
  addons
  log "up in $((SECONDS - t0))s; KUBECONFIG=$KUBECONFIG_ADMIN"
}

kill_cgroup_procs() {
  # Kill every process left in the kubepods cgroups (pods live outside the caller's cgroup).
  local f p
  for f in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
    [[ -d $f ]] || continue
    while read -r p; do
      [[ -n $p ]] && kill -KILL "$p" 2>/dev/null || true
    done < <(find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null)
  done
}

# drop_chains IPTABLES REGEX: delete every rule jumping to a chain whose name matches ^REGEX,
# then flush and delete those chains, in every table.
drop_chains() {
  local ipt=$1 re=$2 tbl rule chain
  command -v "$ipt" >/dev/null || return 0
  for tbl in filter nat mangle raw; do
    "$ipt" -t "$tbl" -S >/dev/null 2>&1 || continue
    while read -r rule; do
      eval "$ipt -t $tbl ${rule/-A/-D}" 2>/dev/null
    done < <("$ipt" -t "$tbl" -S 2>/dev/null | grep -E "^-A [^ ]+ .*-j ($re)")
    local chains
    chains=$("$ipt" -t "$tbl" -S 2>/dev/null | awk -v re="^($re)" '$1 == "-N" && $2 ~ re {print $2}')
    for chain in $chains; do "$ipt" -t "$tbl" -F "$chain" 2>/dev/null; done
    for chain in $chains; do "$ipt" -t "$tbl" -X "$chain" 2>/dev/null; done
  done
  return 0
}

cmd_down() {
  set +e
  log "down"
  stop kubelet
  # Pod containers: ask containerd to kill and remove them while it still runs.
  if is_running containerd; then
    local t c
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$t" >/dev/null 2>&1; done
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" >/dev/null 2>&1; done
  fi
  kill_cgroup_procs
  stop coredns
  stop kube-proxy
  stop containerd
  # containerd shims outlive containerd: find ours by the socket path on their command line.
  local p
  for p in $(pgrep -f -- "containerd-shim-runc-v2 .*-address $CTRD_SOCK" 2>/dev/null); do
    kill -KILL "$p" 2>/dev/null
  done
  stop kube-scheduler
  stop kube-controller-manager
  stop kube-apiserver
  stop etcd
  [[ -x "$K8S_BIN/kube-proxy" ]] && "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1
  # Mounts: kubelet volumes, containerd snapshots/shm, pod network namespaces.
  local m
  for m in $(findmnt -rn -o TARGET | grep -E "^($STATE|$RUN|/run/netns/cni-|/var/run/netns/cni-)" | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  rm -f /run/netns/cni-* 2>/dev/null
  # Network: bridge, addresses on lo, CNI iptables chains, IPAM leases.
  ip link del cni0 2>/dev/null
  ip addr del "$NODE_IP/32" dev lo 2>/dev/null
  ip addr del "$CLUSTER_DNS_IP/32" dev lo 2>/dev/null
  # CNI-* chains (bridge ipMasq, portmap, firewall plugins) and the chains the kubelet makes
  # itself (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT; kube-proxy --cleanup has
  # removed the proxy's own), in IPv4 and IPv6.
  drop_chains iptables 'CNI-|KUBE-'
  drop_chains ip6tables 'CNI-|KUBE-'
  rm -rf "/var/lib/cni/networks/$CNI_NET" /var/lib/cni/results/"$CNI_NET"-* \
    /var/lib/cni/results/cni-loopback-* 2>/dev/null
  # Cgroups left by the kubelet (cgroupfs driver).
  kill_cgroup_procs
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
    [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  restore_sysctls
  rm -rf "$STATE" "$RUN" "$HOSTPATH_PV_DIR" 2>/dev/null
  [[ -e $STATE ]] && log "warning: $STATE could not be removed entirely (the next up tears it down again)"
  # The kubelet always links container logs from /var/log/containers; drop links left dangling.
  [[ -d /var/log/containers ]] && find /var/log/containers -xtype l -delete 2>/dev/null
  rmdir /var/log/containers 2>/dev/null
  log "down complete"
  return 0
}

cmd_status() {
  local n
  for n in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy coredns; do
    if is_running "$n"; then echo "$n running (pid $(pid_of "$n"))"; else echo "$n stopped"; fi
  done
  [[ -f $KUBECONFIG_ADMIN ]] && kubectl get nodes -o wide 2>&1 || true
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  load-images) shift; load_images "$@" ;;
  kubeconfig) echo "$KUBECONFIG_ADMIN" ;;
  status) cmd_status ;;
  helm-path) echo "$HELM_BIN/helm" ;;
  _fn) shift; "$@" ;; # debugging: run one internal function
  kubectl-path) echo "$K8S_BIN/kubectl" ;;
  prometheus-path) ls "$CACHE"/prometheus-debian-*/bin/prometheus | tail -1 ;;
  *) sed -n '2,13p' "$0"; exit 2 ;;
esac

#!/usr/bin/env bash
# Build Tidelog's container images on a machine without a container registry.
#
#   e2e/images/build.sh            # -> tidelog/broker:<version>-e2e and tidelog/operator:<version>-e2e
#   e2e/images/build.sh --docker   # the same through broker/Dockerfile and operator/Dockerfile (needs dockerd)
#   e2e/images/build.sh --print-archives   # the OCI archives' paths, one a line (for load-images)
#   --no-apt (or TIDELOG_E2E_NO_APT=1): fail instead of `apt-get install debootstrap` when it is missing
#
# Steps (each cached under ${TIDELOG_E2E_CACHE:-/var/cache/tidelog-e2e}/images, by content hash):
#  1. base rootfs: `debootstrap --variant=minbase` of Debian bookworm with python3 (3.11),
#     python3-venv and ca-certificates, from the Debian mirror in this machine's apt sources
#     (read at run time). Cached by the hash of the recipe below; a layer tar is kept next to it.
#  2. wheelhouse on the host: the tidelog wheel (built from the work tree) and its runtime
#     dependencies (`pip wheel`, constrained to the versions in the dev venv, which `make test`
#     ran with). Python must be 3.11, like the image's.
#  3. default path (what CI uses, no daemon): an overlayfs on the base rootfs, chroot into it and do
#     what the Dockerfiles do (venv in /opt/tidelog, `pip install --no-index`, user tidelog 10001);
#     the overlay's upper directory is the app layer. e2e/cluster/local/images/mkimage.py writes
#     a two-layer OCI archive per image (base layer shared, so containerd stores it once).
#     --docker: `docker import` of the base as tidelog/base:<hash>, then `docker build
#     --network=none --build-arg BASE_IMAGE=tidelog/base:<hash>` of both Dockerfiles (legacy
#     builder) and `docker save` to the same archive paths. Uses the daemon DOCKER_HOST names; if
#     none answers, starts a private dockerd (Debian's docker.io: own socket and data root, no
#     iptables/bridge changes) and stops it when the script exits.
# No network is used after steps 1 and 2 (debootstrap and pip use the package registries only).
#
# Env: PYTHON (a Python 3.11 with pip and setuptools, default .venv/bin/python), TIDELOG_E2E_CACHE,
#      TIDELOG_IMAGE_TAG (default <version>-e2e; never `latest`).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
MKIMAGE="$REPO/e2e/cluster/local/images/mkimage.py"
CACHE="${TIDELOG_E2E_CACHE:-/var/cache/tidelog-e2e}/images"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
SUITE=bookworm
BASE_PACKAGES="python3,python3-venv,ca-certificates"
UID_GID=10001

MODE=mkimage
PRINT=""
NO_APT="${TIDELOG_E2E_NO_APT:-}"
for arg in "$@"; do
  case $arg in
    --docker) MODE=docker ;;
    --print-archives) PRINT=1 ;;
    --no-apt) NO_APT=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[images %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/pyproject.toml" | head -1)"
[[ -n $VERSION ]] || die "no version in pyproject.toml"
TAG="${TIDELOG_IMAGE_TAG:-$VERSION-e2e}"
[[ $TAG != latest ]] || die "never tag images :latest"
BROKER_REF="tidelog/broker:$TAG"
OPERATOR_REF="tidelog/operator:$TAG"
# containerd (and the kubelet through CRI) know images by their normalized reference: a name with no
# domain gets Docker Hub's default prefix. That is naming only; nothing is pulled.
full_ref() { echo "docker.io/$1"; }
BROKER_TAR="$CACHE/tidelog-broker-$TAG.tar"
OPERATOR_TAR="$CACHE/tidelog-operator-$TAG.tar"

if [[ -n $PRINT ]]; then
  printf '%s\n' "$BROKER_TAR" "$OPERATOR_TAR"
  exit 0
fi

[[ $(id -u) == 0 ]] || die "run as root (debootstrap, overlayfs, chroot)"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

sha() { sha256sum | cut -c1-16; }

# ------------------------------------------------------------------------------ 1. base rootfs

# The Debian mirror: the first bookworm (non-security) main source in this machine's apt config.
debian_mirror() {
  local uri
  # shellcheck disable=SC2016  # $(SITE) etc. are apt's format fields
  uri="$(apt-get indextargets --format '$(SITE) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' 2>/dev/null |
    awk -v s="$SUITE" '$2 == s && $3 == "main" {print $1; exit}')"
  [[ -n $uri ]] || die "no '$SUITE main' source in the apt configuration (apt-get update first?)"
  echo "${uri%/}"
}

BASE_RECIPE="debootstrap --variant=minbase --include=$BASE_PACKAGES $SUITE; trim v1"
BASE_HASH="$(echo "$BASE_RECIPE" | sha)"
BASE_DIR="$CACHE/base-$BASE_HASH"
BASE_REF="tidelog/base:$BASE_HASH"

build_base() {
  [[ -f $BASE_DIR/.done ]] && { log "base $BASE_HASH cached"; return 0; }
  if ! command -v debootstrap >/dev/null; then
    [[ -z $NO_APT ]] || die "debootstrap missing (apt-get install debootstrap)"
    log "apt-get install debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  local mirror t0=$SECONDS
  mirror="$(debian_mirror)"
  log "base: debootstrap $SUITE ($BASE_PACKAGES) from $mirror"
  rm -rf "$BASE_DIR"; mkdir -p "$BASE_DIR"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$BASE_DIR/rootfs" "$mirror" \
    > "$BASE_DIR/debootstrap.log" 2>&1 || { tail -20 "$BASE_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
  local r="$BASE_DIR/rootfs"
  # trim: package caches and lists, docs other than copyright files, man pages; no resolv.conf/hostname
  # of the build machine (the runtime mounts its own).
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/usr/share/man/* "$r"/usr/share/info/* \
    "$r"/var/log/* "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old
  find "$r/usr/share/doc" -type f ! -name copyright -delete
  find "$r/usr/share/doc" -type d -empty -delete
  : > "$r/etc/resolv.conf"; : > "$r/etc/hostname"
  local pyver
  pyver="$(chroot "$r" /usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  [[ $pyver == 3.11 ]] || die "base has Python $pyver, expected 3.11"
  python3 "$MKIMAGE" --rootfs "$r" --keep-owners --layer-only -o "$BASE_DIR/layer.tar"
  touch "$BASE_DIR/.done"
  log "base built in $((SECONDS - t0))s: $(du -sh "$r" | cut -f1) rootfs"
}

# ------------------------------------------------------------------------------ 2. wheelhouse

WHEELS="$CACHE/wheelhouse-$TAG"

build_wheelhouse() {
  local t0=$SECONDS pyver
  [[ -x $PYTHON ]] || die "no $PYTHON (run 'make setup', or set PYTHON to a Python 3.11 with pip + setuptools)"
  pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  [[ $pyver == 3.11 ]] || die "$PYTHON is Python $pyver; the image's is 3.11 and its wheels must match"
  local tmp; tmp="$(mktemp -d)"
  # The project's wheel, from the work tree, with the venv's setuptools (pinned in the dev extras).
  "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation --wheel-dir "$tmp/self" "$REPO" >&2
  local self; self="$(ls "$tmp"/self/tidelog-*.whl)"
  # Runtime dependencies: pinned in pyproject; transitive ones constrained to the dev venv's versions.
  "$PYTHON" -m pip freeze --exclude-editable > "$tmp/constraints.txt"
  local deps_hash
  deps_hash="$({ unzip -p "$self" '*.dist-info/METADATA' | grep '^Requires-Dist' | grep -v 'extra =='
    cat "$tmp/constraints.txt"; echo "$pyver"; } | sha)"
  local deps="$CACHE/deps-$deps_hash"
  if [[ ! -f $deps/.done ]]; then
    log "wheelhouse: runtime dependencies (pip wheel)"
    rm -rf "$deps"
    "$PYTHON" -m pip wheel -q --wheel-dir "$deps" -c "$tmp/constraints.txt" "$self" >&2
    rm -f "$deps"/tidelog-*.whl
    touch "$deps/.done"
  fi
  rm -rf "$WHEELS"; mkdir -p "$WHEELS"
  cp "$deps"/*.whl "$self" "$WHEELS/"
  rm -rf "$tmp"
  log "wheelhouse ready in $((SECONDS - t0))s: $(cd "$WHEELS" && ls | tr '\n' ' ')"
}

# Content hash of the wheelhouse (the tidelog wheel's members, not its timestamps) + the recipe.
app_hash() {
  "$PYTHON" - "$WHEELS" "$BASE_HASH" "$0" "$MKIMAGE" <<'EOF'
import hashlib, sys, zipfile
from pathlib import Path
h = hashlib.sha256()
wheels, base, *scripts = sys.argv[1:]
h.update(base.encode())
for s in scripts:
    h.update(Path(s).read_bytes())
for whl in sorted(Path(wheels).glob("*.whl")):
    h.update(whl.name.encode())
    with zipfile.ZipFile(whl) as z:
        for name in sorted(z.namelist()):
            h.update(name.encode()); h.update(z.read(name))
print(h.hexdigest()[:16])
EOF
}

# ------------------------------------------------------------------------------ 3. images

LABELS=(
  "org.opencontainers.image.version=$VERSION"
  "org.opencontainers.image.revision=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
  "org.opencontainers.image.licenses=Apache-2.0"
  "org.opencontainers.image.vendor=Tidelog"
)

# broker/Dockerfile's CMD: a broker for `docker run -p 9092:9092 -p 9404:9404` on the same machine.
# Kubernetes manifests give their own args (--listen/--advertise on the pod IP).
BROKER_CMD='["broker", "--data-dir", "/var/lib/tidelog", "--listen", "0.0.0.0:9092", "--advertise", "127.0.0.1:9092", "--set", "metrics.host=0.0.0.0"]'

# The steps of broker/Dockerfile's `install` stage and final stage, in a chroot. Keep them in sync.
INSTALL_SCRIPT='
set -eu
python3 -c "import sys; assert sys.version_info[:2] == (3, 11), sys.version"
python3 -m venv /opt/tidelog
/opt/tidelog/bin/python -m pip install --quiet --no-index --no-cache-dir --find-links /tmp/wheels tidelog
/opt/tidelog/bin/python -m pip uninstall --quiet --yes pip setuptools
groupadd --gid 10001 tidelog
useradd --uid 10001 --gid 10001 --home-dir /var/lib/tidelog --no-create-home --shell /usr/sbin/nologin tidelog
install -d -o 10001 -g 10001 -m 0750 /var/lib/tidelog
/opt/tidelog/bin/tidelog --help > /dev/null
'

build_mkimage() {
  local hash; hash="$(app_hash)"
  local stamp="$CACHE/app-$TAG.hash"
  if [[ -f $BROKER_TAR && -f $OPERATOR_TAR && -f $stamp && $(cat "$stamp") == "$hash" ]]; then
    log "images cached (app $hash)"
    return 0
  fi
  local t0=$SECONDS work; work="$(mktemp -d "$CACHE/app-work.XXXXXX")"
  mkdir -p "$work/upper" "$work/ovl" "$work/merged"
  log "app layer: overlay on base $BASE_HASH, install the wheelhouse in a chroot"
  # A private mount namespace: the overlay, /proc, /dev and the wheelhouse bind vanish with it.
  unshare --mount --propagation private -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin bash -euc '
    base=$1 work=$2 wheels=$3 script=$4
    mount -t overlay overlay -o "lowerdir=$base,upperdir=$work/upper,workdir=$work/ovl" "$work/merged"
    mkdir -p "$work/merged/tmp/wheels"
    mount --bind "$wheels" "$work/merged/tmp/wheels"
    mount -t proc proc "$work/merged/proc"
    mount --bind /dev "$work/merged/dev"
    chroot "$work/merged" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
      PYTHONDONTWRITEBYTECODE=1 /bin/sh -c "$script"
  ' _ "$BASE_DIR/rootfs" "$work" "$WHEELS" "$INSTALL_SCRIPT"
  rmdir "$work/upper/tmp/wheels"
  rm -rf "$work/upper/root/.cache" "$work/upper/var/log" "$work/upper/var/cache/debconf"
  # Left in the upper dir by the mount points and by useradd's backups: not part of the image.
  rm -f "$work/upper"/etc/{passwd,group,shadow,gshadow}- "$work/upper/etc/.pwd.lock"
  # Owners must survive (10001 on /var/lib/tidelog; shadow's group): --keep-owners.
  local common=(--layer-tar "$BASE_DIR/layer.tar" --rootfs "$work/upper" --keep-owners
    --env PATH=/opt/tidelog/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    --env PYTHONUNBUFFERED=1 --env PYTHONDONTWRITEBYTECODE=1
    --user "$UID_GID:$UID_GID" --workdir /var/lib/tidelog --expose 9092 --expose 9404)
  local lbl labels=()
  for lbl in "${LABELS[@]}"; do labels+=(--label "$lbl"); done
  python3 "$MKIMAGE" "${common[@]}" "${labels[@]}" \
    --label org.opencontainers.image.title=tidelog-broker \
    --label "org.opencontainers.image.description=Tidelog broker (Kafka-compatible streaming log)" \
    --label "org.opencontainers.image.base.name=$BASE_REF" \
    --name "$(full_ref "$BROKER_REF")" --entrypoint tidelog --cmd-json "$BROKER_CMD" \
    -o "$BROKER_TAR"
  python3 "$MKIMAGE" "${common[@]}" "${labels[@]}" \
    --label org.opencontainers.image.title=tidelog-operator \
    --label "org.opencontainers.image.description=Tidelog operator (Cluster and Topic resources, kopf)" \
    --label "org.opencontainers.image.base.name=$BASE_REF" \
    --name "$(full_ref "$OPERATOR_REF")" --entrypoint tidelog --cmd-json '["operator"]' \
    -o "$OPERATOR_TAR"
  echo "$hash" > "$stamp"
  rm -rf "$work"
  log "images built in $((SECONDS - t0))s: $BROKER_TAR $(du -h "$BROKER_TAR" | cut -f1), $OPERATOR_TAR"
}

# A private dockerd for --docker when none answers: its own socket, data root and exec root, and no
# iptables, bridge or IP forwarding changes (the builds run with --network=none, they need no network).
# Stopped (TERM, then waited for) by the EXIT trap, so it never outlives this script.
DOCKERD_RUN=/run/tidelog-images-dockerd
dockerd_pid=""
stop_private_dockerd() {
  [[ -n $dockerd_pid ]] || return 0
  log "stopping the private dockerd (pid $dockerd_pid)"
  kill -TERM "$dockerd_pid" 2>/dev/null || true
  local end=$((SECONDS + 30))
  while kill -0 "$dockerd_pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.2; done
  kill -KILL "$dockerd_pid" 2>/dev/null || true
  wait "$dockerd_pid" 2>/dev/null || true
  dockerd_pid=""
  umount "$CACHE/docker/overlay2" 2>/dev/null || true
}
start_private_dockerd() {
  command -v dockerd >/dev/null || die "no dockerd (apt-get install docker.io)"
  mkdir -p "$DOCKERD_RUN" "$CACHE/docker"
  export DOCKER_HOST="unix://$DOCKERD_RUN/docker.sock"
  log "starting a private dockerd on $DOCKER_HOST (data in $CACHE/docker; log $DOCKERD_RUN/dockerd.log)"
  trap stop_private_dockerd EXIT
  trap 'exit 143' TERM INT
  dockerd --host "$DOCKER_HOST" --data-root "$CACHE/docker" --exec-root "$DOCKERD_RUN/exec" \
    --pidfile "$DOCKERD_RUN/dockerd.pid" --iptables=false --ip6tables=false --ip-forward=false \
    --ip-masq=false --bridge=none > "$DOCKERD_RUN/dockerd.log" 2>&1 &
  dockerd_pid=$!
  local end=$((SECONDS + 60))
  until docker info >/dev/null 2>&1; do
    kill -0 "$dockerd_pid" 2>/dev/null || { tail -20 "$DOCKERD_RUN/dockerd.log" >&2; die "dockerd exited"; }
    ((SECONDS < end)) || { tail -20 "$DOCKERD_RUN/dockerd.log" >&2; die "dockerd not ready after 60s"; }
    sleep 0.2
  done
}

build_docker() {
  command -v docker >/dev/null || die "no docker CLI"
  docker info >/dev/null 2>&1 || start_private_dockerd
  local t0=$SECONDS
  if ! docker image inspect "$BASE_REF" >/dev/null 2>&1; then
    log "docker import of the base as $BASE_REF"
    docker import "$BASE_DIR/layer.tar" "$BASE_REF" >/dev/null
  fi
  local ctx; ctx="$(mktemp -d)"
  cp -r "$WHEELS" "$ctx/wheels"
  local rev; rev="$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
  local comp ref
  for comp in broker operator; do
    ref="$BROKER_REF"; [[ $comp == operator ]] && ref="$OPERATOR_REF"
    log "docker build -f $comp/Dockerfile -t $ref (BASE_IMAGE=$BASE_REF)"
    DOCKER_BUILDKIT=0 docker build -q --network=none -f "$REPO/$comp/Dockerfile" --build-arg "BASE_IMAGE=$BASE_REF" \
      --build-arg "VERSION=$VERSION" --build-arg "REVISION=$rev" -t "$ref" "$ctx" >/dev/null
  done
  docker save "$BROKER_REF" > "$BROKER_TAR.tmp" && mv "$BROKER_TAR.tmp" "$BROKER_TAR"
  docker save "$OPERATOR_REF" > "$OPERATOR_TAR.tmp" && mv "$OPERATOR_TAR.tmp" "$OPERATOR_TAR"
  rm -f "$CACHE/app-$TAG.hash"  # the archives are docker's now; the next mkimage build redoes them
  rm -rf "$ctx"
  log "docker images built in $((SECONDS - t0))s: $(docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' tidelog/broker)"
}

t_start=$SECONDS
build_base
build_wheelhouse
if [[ $MODE == docker ]]; then build_docker; else build_mkimage; fi
log "done in $((SECONDS - t_start))s: $BROKER_REF -> $BROKER_TAR; $OPERATOR_REF -> $OPERATOR_TAR"

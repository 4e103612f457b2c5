#!/usr/bin/env python3
"""Write an OCI image-layout archive from root filesystem directories, without Docker.

    mkimage.py --rootfs DIR --name registry.k8s.io/pause:3.10 --entrypoint /pause \
               --user 65535:65535 -o pause.tar
    ctr -n k8s.io images import pause.tar

Several layers, lowest first: `--layer-tar FILE` (an uncompressed layer tar made earlier, e.g.
with `--layer-only`) and `--rootfs DIR` may be repeated and mixed; `--layer` order is the order
given. A `--rootfs` that is an overlayfs upper directory may hold whiteouts (character devices
0:0, `trusted.overlay.opaque` directories): they become OCI whiteouts (`.wh.NAME`,
`.wh..wh..opq`).

    mkimage.py --rootfs base/ --keep-owners --layer-only -o base-layer.tar
    mkimage.py --layer-tar base-layer.tar --rootfs app-upper/ --keep-owners \
               --name docker.io/tidelog/broker:0.1.0-e2e --label org.opencontainers.image.version=0.1.0 \
               --entrypoint tidelog --cmd broker -o broker.tar

The archive follows the OCI image-layout spec (oci-layout, index.json, blobs/sha256/...). The
index entry carries `io.containerd.image.name` so `ctr images import` names the image with no
extra flag (containerd's CRI looks images up by their normalized reference, so the name must be
the full one). Layers are uncompressed tars with mtime 0; owners are 0:0 unless --keep-owners.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import IO

_CHUNK = 1 << 20


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes what goes through it (for the layer's diff_id)."""

    def __init__(self, f: IO[bytes]):
        self.f = f
        self.h = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.h.update(b)
        self.size += len(b)
        self.f.write(b)
        return len(b)


def _whiteout_kind(path: Path, st: os.stat_result) -> str:
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return "file"
    if stat.S_ISDIR(st.st_mode):
        try:
            if os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y":
                return "opaque"
        except OSError:
            pass
    return ""


def write_layer(rootfs: Path, out: IO[bytes], keep_owners: bool) -> tuple[str, int]:
    """Tar `rootfs` (sorted, mtime 0) into `out`; return (sha256 digest, size)."""
    hw = _HashingWriter(out)
    with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT) as tar:

        def add(path: Path, arcname: str) -> None:
            st = path.lstat()
            kind = _whiteout_kind(path, st)
            if kind == "file":
                parent, _, name = arcname.rpartition("/")
                wh = tarfile.TarInfo(f"{parent}/.wh.{name}" if parent else f".wh.{name}")
                wh.mtime = 0
                tar.addfile(wh)
                return
            if stat.S_ISSOCK(st.st_mode):  # not representable in a layer (gettarinfo gives None)
                return
            info = tar.gettarinfo(str(path), arcname)
            info.mtime = 0
            info.uname = info.gname = ""
            if not keep_owners:
                info.uid = info.gid = 0
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            if info.isdir():
                if kind == "opaque":
                    wh = tarfile.TarInfo(f"{arcname}/.wh..wh..opq")
                    wh.mtime = 0
                    tar.addfile(wh)
                for child in sorted(path.iterdir()):
                    add(child, f"{arcname}/{child.name}")

        for child in sorted(rootfs.iterdir()):
            add(child, child.name)
    return "sha256:" + hw.h.hexdigest(), hw.size


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _blob_file(tar: tarfile.TarFile, path: Path, digest: str, media_type: str) -> dict[str, object]:
    info = tarfile.TarInfo("blobs/sha256/" + digest.split(":", 1)[1])
    info.size = path.stat().st_size
    with path.open("rb") as f:
        tar.addfile(info, f)
    return {"mediaType": media_type, "digest": digest, "size": info.size}


def _blob(tar: tarfile.TarFile, data: bytes, media_type: str, **extra: object) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo("blobs/sha256/" + digest.split(":", 1)[1])
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
    return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


class _LayerAction(argparse.Action):
    """--rootfs and --layer-tar append to one ordered list of layers."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        layers = getattr(namespace, "layers", None) or []
        layers.append((self.dest, values))
        namespace.layers = layers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rootfs", action=_LayerAction, help="a directory to tar as the next layer")
    ap.add_argument("--layer-tar", action=_LayerAction, help="an uncompressed layer tar to use as the next layer")
    ap.add_argument("--keep-owners", action="store_true", help="keep files' uid/gid (default: 0:0)")
    ap.add_argument("--layer-only", action="store_true", help="write only the (single) layer tar to --output")
    ap.add_argument("--name", help="full reference, e.g. docker.io/library/x:e2e")
    ap.add_argument("--entrypoint", nargs="*", default=[])
    ap.add_argument("--cmd", nargs="*", default=[])
    ap.add_argument("--entrypoint-json", help='the entrypoint as a JSON list (for arguments that start with "-")')
    ap.add_argument("--cmd-json", help='the command as a JSON list (for arguments that start with "-")')
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--expose", action="append", default=[], metavar="PORT/PROTO")
    ap.add_argument("--user", default="")
    ap.add_argument("--workdir", default="/")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    layers: list[tuple[str, str]] = getattr(a, "layers", None) or []
    if not layers:
        ap.error("give at least one --rootfs or --layer-tar")

    if a.layer_only:
        if len(layers) != 1 or layers[0][0] != "rootfs":
            ap.error("--layer-only takes exactly one --rootfs")
        tmp = Path(a.output + ".tmp")
        with tmp.open("wb") as f:
            write_layer(Path(layers[0][1]), f, a.keep_owners)
        tmp.replace(a.output)
        return
    if not a.name:
        ap.error("--name is required")
    if a.entrypoint_json:
        a.entrypoint = json.loads(a.entrypoint_json)
    if a.cmd_json:
        a.cmd = json.loads(a.cmd_json)

    with tempfile.TemporaryDirectory(dir=Path(a.output).resolve().parent) as work:
        layer_files: list[tuple[Path, str]] = []  # (path, digest)
        for i, (kind, value) in enumerate(layers):
            if kind == "layer_tar":
                layer_files.append((Path(value), _sha256_file(Path(value))))
            else:
                path = Path(work) / f"layer{i}.tar"
                with path.open("wb") as f:
                    digest, _ = write_layer(Path(value), f, a.keep_owners)
                layer_files.append((path, digest))

        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": a.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Entrypoint": a.entrypoint or None,
                "Cmd": a.cmd or None,
                "User": a.user,
                "WorkingDir": a.workdir,
                "Labels": dict(lbl.split("=", 1) for lbl in a.label) or None,
                "ExposedPorts": {p if "/" in p else p + "/tcp": {} for p in a.expose} or None,
            },
            "rootfs": {"type": "layers", "diff_ids": [d for _, d in layer_files]},
            "history": [{"created_by": "tidelog e2e mkimage.py"} for _ in layer_files],
        }
        tmp_out = a.output + ".tmp"
        with tarfile.open(tmp_out, "w") as tar:
            _add_file(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
            layer_descs = [
                _blob_file(tar, path, digest, "application/vnd.oci.image.layer.v1.tar") for path, digest in layer_files
            ]
            config_desc = _blob(
                tar, json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json"
            )
            manifest = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc,
                "layers": layer_descs,
            }
            manifest_desc = _blob(
                tar,
                json.dumps(manifest, sort_keys=True).encode(),
                "application/vnd.oci.image.manifest.v1+json",
                platform={"architecture": "amd64", "os": "linux"},
                annotations={
                    "io.containerd.image.name": a.name,
                    "org.opencontainers.image.ref.name": a.name.rsplit(":", 1)[-1],
                },
            )
            index = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [manifest_desc],
            }
            _add_file(tar, "index.json", json.dumps(index, sort_keys=True).encode())
        shutil.move(tmp_out, a.output)


if __name__ == "__main__":
    main()

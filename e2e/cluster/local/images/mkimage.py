#!/usr/bin/env python3
"""Write a one-layer OCI image-layout archive from a root filesystem directory, without Docker.

    mkimage.py --rootfs DIR --name registry.k8s.io/pause:3.10 --entrypoint /pause \
               --user 65535:65535 -o pause.tar
    ctr -n k8s.io images import pause.tar

The archive follows the OCI image-layout spec (oci-layout, index.json, blobs/sha256/...). The
index entry carries `io.containerd.image.name` so `ctr images import` names the image with no
extra flag. The layer is an uncompressed tar with owners 0:0 and mtime 0 (reproducible).
"""

import argparse
import hashlib
import io
import json
import tarfile
from pathlib import Path


def _layer(rootfs: str) -> bytes:
    buf = io.BytesIO()

    def norm(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(Path(rootfs).iterdir()):
            tar.add(entry, arcname=entry.name, filter=norm)
    return buf.getvalue()


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--name", required=True, help="full reference, e.g. docker.io/library/x:e2e")
    ap.add_argument("--entrypoint", nargs="*", default=[])
    ap.add_argument("--cmd", nargs="*", default=[])
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--user", default="")
    ap.add_argument("--workdir", default="/")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()

    layer = _layer(a.rootfs)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": a.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": a.entrypoint or None,
            "Cmd": a.cmd or None,
            "User": a.user,
            "WorkingDir": a.workdir,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "tidelog e2e mkimage.py"}],
    }
    with tarfile.open(a.output, "w") as tar:
        _add_file(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        layer_desc = _blob(tar, layer, "application/vnd.oci.image.layer.v1.tar")
        config_desc = _blob(
            tar, json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json"
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [layer_desc],
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


if __name__ == "__main__":
    main()

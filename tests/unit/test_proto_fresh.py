"""The committed code in broker/admin/pb/ is exactly what scripts/gen_proto.sh makes from proto/.

Regenerates into a temporary directory with this interpreter's grpcio-tools and mypy-protobuf (the
versions pinned in pyproject) and compares byte for byte, so an edited .proto without regenerated
code, or a hand-edited generated file, fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "scripts" / "gen_proto.sh"
COMMITTED = ROOT / "broker" / "admin" / "pb"
HAND_WRITTEN = {"__init__.py"}


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, f"scripts/gen_proto.sh failed:\n{result.stdout}\n{result.stderr}"
    generated = {p.name for p in tmp_path.iterdir()}
    assert generated == {"admin_pb2.py", "admin_pb2.pyi", "admin_pb2_grpc.py", "admin_pb2_grpc.pyi"}

    committed = {p.name for p in COMMITTED.iterdir() if p.is_file()} - HAND_WRITTEN
    stale = [name for name in sorted(generated) if (tmp_path / name).read_bytes() != _read(COMMITTED / name)]
    assert not stale, f"broker/admin/pb/ is out of date ({', '.join(stale)}): run scripts/gen_proto.sh"
    extra = sorted(committed - generated)
    assert not extra, f"broker/admin/pb/ has files the generator does not make ({extra}): run scripts/gen_proto.sh"


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None

"""The wheel holds every package under its import name, and no top-level `operator` shadows the stdlib."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_wheel_contains_every_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("tidelog-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for folder, prefix in (("broker", "tidelog/broker"), ("operator", "tidelog/operator")):
        for init in (ROOT / folder).rglob("__init__.py"):
            expected.add(f"{prefix}/{init.relative_to(ROOT / folder).as_posix()}")
    assert expected, "no packages found"
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
    assert not any(n.startswith("operator/") for n in names)


def test_stdlib_operator_is_not_shadowed() -> None:
    import operator

    assert hasattr(operator, "itemgetter")
    assert "site-packages" not in (operator.__file__ or "") or "tidelog" not in (operator.__file__ or "")

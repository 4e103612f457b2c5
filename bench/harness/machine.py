"""Describes the host a run happened on: CPU, cores, memory, kernel, Java, Python, load.

Written into every report by ``report`` so figures are never separated from their machine.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path


def _first(path: str, key: str) -> str:
    try:
        with Path(path).open() as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    lines = out.stderr.strip().splitlines()
    return lines[0] if lines else "?"


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "?")
    except OSError:
        return "?"


def describe() -> dict[str, object]:
    """A JSON-able description of this machine at this moment."""
    mem_kb = _first("/proc/meminfo", "MemTotal").split()[0]
    return {
        "cpu_model": _first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem_kb) / 1024 / 1024, 1) if mem_kb.isdigit() else "?",
        "kernel": platform.release(),
        "os": _os_name(),
        "java": _java_version(),
        "python": sys.version.split()[0],
        "loadavg_at_start": os.getloadavg(),
    }

"""Per-data-directory checkpoint files in Kafka's text format, written atomically.

``recovery-point-offset-checkpoint``, ``log-start-offset-checkpoint`` and
``cleaner-offset-checkpoint`` each hold::

    0                      (format version)
    <count>
    <topic> <partition> <offset>   (one line per partition)

A damaged file is reported and treated as empty: the recovery point then falls back to 0, which
costs a full rescan but loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from tidelog.broker.log.io import FileIO

log = logging.getLogger(__name__)

RECOVERY_POINT = "recovery-point-offset-checkpoint"
LOG_START_OFFSET = "log-start-offset-checkpoint"
CLEANER_OFFSET = "cleaner-offset-checkpoint"

TopicPartition = tuple[str, int]


def write(io: FileIO, path: Path, offsets: Mapping[TopicPartition, int]) -> None:
    lines = ["0", str(len(offsets))]
    lines += [f"{topic} {partition} {offset}" for (topic, partition), offset in sorted(offsets.items())]
    io.write_file_atomically(path, ("\n".join(lines) + "\n").encode())


def read(path: Path) -> dict[TopicPartition, int]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        lines = text.splitlines()
        if lines[0].strip() != "0":
            raise ValueError(f"unknown version {lines[0]!r}")
        count = int(lines[1])
        out: dict[TopicPartition, int] = {}
        for line in lines[2 : 2 + count]:
            topic, partition, offset = line.rsplit(" ", 2)
            out[(topic, int(partition))] = int(offset)
        if len(out) != count:
            raise ValueError(f"expected {count} entries, found {len(out)}")
    except (ValueError, IndexError) as exc:
        log.error("%s is damaged (%s): ignoring it; affected logs will be fully recovered", path, exc)
        return {}
    return out

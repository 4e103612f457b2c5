"""The data directory's format version and owner: ``meta.properties`` (as Kafka's log directories
carry one).

    # Tidelog data directory (written by the broker; do not edit)
    version=1
    node.id=3

``version`` is the layout of the directory and its files (partition directories of Kafka v2
segments, the checkpoint files). A broker reads every version up to its own ``FORMAT_VERSION``,
upgrading the file when it opened an older one, and refuses a newer one with a message naming both
(a downgrade past a format change must not half-read a log). A directory without the file was
written before it existed (format 1): it is stamped, not rejected. ``node.id`` guards against a
volume mounted on the wrong broker (a claim reused across brokers), which would mix two brokers'
replicas: a mismatch is refused. Both refusals are KAFKA_STORAGE_ERROR at start.
"""

from __future__ import annotations

from pathlib import Path

from tidelog.broker.log.io import DEFAULT_IO, FileIO
from tidelog.broker.protocol.errors import KafkaStorageError

FILE = "meta.properties"
FORMAT_VERSION = 1
HEADER = "# Tidelog data directory (written by the broker; do not edit)"


def read(data_dir: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = (data_dir / FILE).read_text()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            out[key.strip()] = value.strip()
    return out


def check_and_stamp(data_dir: Path, node_id: int | None, io: FileIO = DEFAULT_IO) -> int:
    """Refuse a directory this broker must not open; then record the current format (and
    ``node_id`` when given). Returns the version found (0: none recorded)."""
    meta = read(data_dir)
    found = meta.get("version", "0")
    if not found.isdigit():
        raise KafkaStorageError(f"{data_dir / FILE}: version={found!r} is not a number")
    version = int(found)
    if version > FORMAT_VERSION:
        raise KafkaStorageError(
            f"{data_dir} has data format {version}, written by a newer Tidelog; this broker reads formats "
            f"up to {FORMAT_VERSION}: run the newer version (nothing was read or changed)"
        )
    stored = meta.get("node.id")
    if node_id is not None and stored is not None and stored != str(node_id):
        raise KafkaStorageError(
            f"{data_dir} belongs to broker {stored}, not to this broker ({node_id}): a volume mounted on the "
            "wrong broker (nothing was read or changed)"
        )
    owner = str(node_id) if node_id is not None else stored
    lines = [HEADER, f"version={FORMAT_VERSION}"] + ([f"node.id={owner}"] if owner is not None else [])
    wanted = "\n".join(lines) + "\n"
    if (data_dir / FILE).exists() and (data_dir / FILE).read_text() == wanted:
        return version
    io.write_file_atomically(data_dir / FILE, wanted.encode())
    return version

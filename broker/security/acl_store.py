"""Where ACL bindings live, and how every broker's authorizer hears of a change.

In a cluster: one metadata-store key per resource pattern,
``acls/<TYPE>/<PATTERN>/<url-quoted name>`` (Kafka's ZooKeeper layout had the same shape), holding a
JSON list of that pattern's bindings; written under compare-and-set, mirrored into every broker by
the metadata watch it already runs (``ClusterMetadata.mirror``), so a binding created through one
broker is enforced by all of them within a watch round trip. On a lone broker: the file
``<data>/acls.json``, written atomically.

Both offer ``add`` (CreateAcls), ``remove`` (DeleteAcls: every binding a filter matches) and
``bindings`` (DescribeAcls), and push the full set into the ``Authorizer`` after every change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote

from tidelog.broker.cluster.store import ABSENT, MetadataStore
from tidelog.broker.log.io import DEFAULT_IO, FileIO
from tidelog.broker.security.acl import AclBinding, AclFilter, Authorizer, PatternType, ResourceType

log = logging.getLogger(__name__)
PREFIX = "acls/"
FILE = "acls.json"
CAS_ATTEMPTS = 20


class AclStore(Protocol):
    def bindings(self) -> frozenset[AclBinding]: ...

    async def add(self, bindings: Iterable[AclBinding]) -> None:
        """Store ``bindings`` (already validated); storing one twice keeps one."""

    async def remove(self, filters: list[AclFilter]) -> list[list[AclBinding]]:
        """Delete every binding each filter matches; per filter, what it deleted."""


def pattern_key(resource_type: ResourceType, pattern_type: PatternType, name: str) -> str:
    return f"{PREFIX}{resource_type.name}/{pattern_type.name}/{quote(name, safe='')}"


def _encode(bindings: Iterable[AclBinding]) -> bytes:
    return json.dumps(sorted((b.to_json() for b in bindings), key=json.dumps)).encode()


def _decode(raw: bytes) -> list[AclBinding]:
    return [AclBinding.from_json(item) for item in json.loads(raw)]


def decode_all(values: dict[str, bytes]) -> frozenset[AclBinding]:
    """Every binding under ``acls/`` (a value that cannot be read is logged and skipped)."""
    found: set[AclBinding] = set()
    for key, raw in values.items():
        try:
            found.update(_decode(raw))
        except (ValueError, KeyError, TypeError) as exc:
            log.error("ignoring unreadable ACLs at %s: %s", unquote(key), exc)
    return frozenset(found)


class FileAcls:
    """A lone broker's bindings: one JSON file in its data directory."""

    def __init__(self, data_dir: Path, authorizer: Authorizer, io: FileIO = DEFAULT_IO) -> None:
        self.path = data_dir / FILE
        self.io = io
        self.authorizer = authorizer
        self._bindings: frozenset[AclBinding] = frozenset()
        if self.path.exists():
            self._bindings = frozenset(AclBinding.from_json(item) for item in json.loads(self.path.read_text()))
        authorizer.update(self._bindings)

    def bindings(self) -> frozenset[AclBinding]:
        return self._bindings

    def _save(self, bindings: frozenset[AclBinding]) -> None:
        data = sorted((b.to_json() for b in bindings), key=json.dumps)
        self.io.write_file_atomically(self.path, json.dumps(data, indent=1).encode())
        self._bindings = bindings
        self.authorizer.update(bindings)

    async def add(self, bindings: Iterable[AclBinding]) -> None:
        self._save(self._bindings | frozenset(bindings))

    async def remove(self, filters: list[AclFilter]) -> list[list[AclBinding]]:
        removed = [[b for b in self._bindings if f.matches(b)] for f in filters]
        gone = {b for found in removed for b in found}
        if gone:
            self._save(self._bindings - gone)
        return removed


class StoreAcls:
    """A cluster's bindings in the metadata store, mirrored by the metadata watch."""

    def __init__(self, store: MetadataStore, meta: Any, authorizer: Authorizer) -> None:
        self.store = store
        self.meta = meta  # ClusterMetadata (it mirrors acls/ into self._values)
        self.authorizer = authorizer
        self._bindings: frozenset[AclBinding] = frozenset()
        self._values: dict[str, bytes] = meta.mirror(PREFIX, self._changed)

    def _changed(self, values: dict[str, bytes]) -> None:
        self._bindings = decode_all(values)
        self.authorizer.update(self._bindings)

    def bindings(self) -> frozenset[AclBinding]:
        return self._bindings

    async def _change(self, key: str, edit: Any) -> list[Any]:
        """Apply ``edit(current) -> (new, result)`` to one key under compare-and-set."""
        for _ in range(CAS_ATTEMPTS):
            entry = await self.store.get(key)
            current = _decode(entry.value) if entry is not None else []
            new, result = edit(current)
            if set(new) == set(current):
                return list(result)
            if not new:
                if entry is not None and await self.store.delete(key, expect=entry.version):
                    self.meta.deleted(key)
                    return list(result)
                continue
            written = await self.store.put(key, _encode(new), expect=entry.version if entry is not None else ABSENT)
            if written is not None:
                self.meta.written(written)
                return list(result)
        raise RuntimeError(f"ACLs at {unquote(key)}: too much contention")

    async def add(self, bindings: Iterable[AclBinding]) -> None:
        by_key: dict[str, list[AclBinding]] = {}
        for b in bindings:
            by_key.setdefault(pattern_key(b.resource_type, b.pattern_type, b.resource_name), []).append(b)
        for key, new in by_key.items():
            await self._change(key, lambda current, new=new: (list(dict.fromkeys(current + new)), []))

    async def remove(self, filters: list[AclFilter]) -> list[list[AclBinding]]:
        removed: list[list[AclBinding]] = [[] for _ in filters]
        # Only the patterns holding a binding some filter matches are read and rewritten (as this
        # broker sees them: a binding another broker made a moment ago may not be mirrored yet,
        # as in Kafka).
        keys = {
            pattern_key(b.resource_type, b.pattern_type, b.resource_name)
            for b in self._bindings
            if any(f.matches(b) for f in filters)
        }
        for key in sorted(keys):

            def edit(current: list[AclBinding]) -> tuple[list[AclBinding], list[tuple[int, AclBinding]]]:
                hits = [(i, b) for b in current for i, f in enumerate(filters) if f.matches(b)]
                gone = {b for _i, b in hits}
                return [b for b in current if b not in gone], hits

            for i, b in await self._change(key, edit):
                removed[i].append(b)
        return removed

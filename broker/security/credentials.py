"""Where SCRAM credentials live: per user, per mechanism, salted (scram.Credential), never a password.

In a cluster, one key per user in the metadata store (``scram-credentials/<user>``, JSON), read at
each authentication so every broker sees a change at once; on a lone broker, the file
``<data>/scram-credentials.json``, written atomically. Changed through Kafka's
AlterUserScramCredentials, listed through DescribeUserScramCredentials.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from tidelog.broker.cluster.store import ABSENT, MetadataStore
from tidelog.broker.log.io import DEFAULT_IO, FileIO
from tidelog.broker.security.scram import Credential

PREFIX = "scram-credentials/"
FILE = "scram-credentials.json"
Users = dict[str, dict[str, Credential]]


class CredentialStore(Protocol):
    async def get(self, user: str) -> dict[str, Credential]: ...

    async def users(self) -> Users: ...

    async def set(self, user: str, mechanism: str, credential: Credential | None) -> None:
        """Upsert (``credential``) or delete (None) one mechanism's credential of ``user``."""


def _encode(creds: dict[str, Credential]) -> bytes:
    return json.dumps({m: c.to_json() for m, c in sorted(creds.items())}).encode()


def _decode(raw: bytes) -> dict[str, Credential]:
    return {m: Credential.from_json(c) for m, c in json.loads(raw).items()}


class FileCredentials:
    """A lone broker's credentials: one JSON file in its data directory."""

    def __init__(self, data_dir: Path, io: FileIO = DEFAULT_IO) -> None:
        self.path = data_dir / FILE
        self.io = io
        self._users: Users = {}
        if self.path.exists():
            raw = json.loads(self.path.read_text())
            self._users = {u: {m: Credential.from_json(c) for m, c in creds.items()} for u, creds in raw.items()}

    async def get(self, user: str) -> dict[str, Credential]:
        return dict(self._users.get(user, {}))

    async def users(self) -> Users:
        return {u: dict(c) for u, c in self._users.items()}

    async def set(self, user: str, mechanism: str, credential: Credential | None) -> None:
        creds = self._users.setdefault(user, {})
        if credential is None:
            creds.pop(mechanism, None)
            if not creds:
                del self._users[user]
        else:
            creds[mechanism] = credential
        data = {u: {m: c.to_json() for m, c in cs.items()} for u, cs in sorted(self._users.items())}
        self.io.write_file_atomically(self.path, json.dumps(data, indent=1).encode())


class StoreCredentials:
    """A cluster's credentials: one metadata-store key per user (compare-and-set on change)."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    async def get(self, user: str) -> dict[str, Credential]:
        entry = await self.store.get(PREFIX + user)
        return _decode(entry.value) if entry is not None else {}

    async def users(self) -> Users:
        return {e.key[len(PREFIX) :]: _decode(e.value) for e in await self.store.list(PREFIX)}

    async def set(self, user: str, mechanism: str, credential: Credential | None) -> None:
        for _ in range(10):
            entry = await self.store.get(PREFIX + user)
            creds = _decode(entry.value) if entry is not None else {}
            if credential is None:
                creds.pop(mechanism, None)
            else:
                creds[mechanism] = credential
            expect = entry.version if entry is not None else None
            if not creds:
                if entry is None or await self.store.delete(PREFIX + user, expect=expect):
                    return
                continue
            if await self.store.put(PREFIX + user, _encode(creds), expect=expect or ABSENT) is not None:
                return
        raise RuntimeError(f"credentials of {user}: too much contention")

"""``MetadataStore`` over etcd's v3 gRPC API: the backend of a replicated cluster outside Kubernetes.

How the model maps onto etcd (every key is stored under ``root``, e.g. ``/tidelog/<cluster>/``):
- a version is ``str(mod_revision)``; ``put(expect=v)`` is a Txn comparing ``mod_revision == v``,
  ``expect=ABSENT`` compares ``create_revision == 0``; ``list`` is a Range over the prefix;
- the session is one lease (LeaseGrant, kept by a LeaseKeepAlive stream, revoked by ``close()``);
  leased keys are put with it. When no keepalive is answered for ``session_ttl_s`` or etcd says
  the lease is gone, the session is lost: the hooks hear it, the old lease is revoked as soon as
  etcd answers, and a new lease is granted for later leased puts;
- ``watch`` lists the prefix, yields that as a ``reset`` batch, then watches from the listing's
  revision + 1; after compaction, a cancelled watch or a broken stream it lists again and yields
  another ``reset`` batch. Unreachable etcd: calls retry with backoff, then raise ``StoreError``.

Client library: ``aetcd`` (asyncio etcd client) ships etcd's v3 protos compiled for today's
grpcio/protobuf, and that is what this module uses (``aetcd.rpc``: the stubs and messages) over
``grpc.aio`` directly. Its high-level ``Client`` is not used: it has no keepalive stream (one RPC
per refresh), its watcher hands events out one by one without the response revision and cannot
resume after the stream breaks. Compiling etcd's protos here instead would add a generator, a
copy of the protos and a freshness test for the same stubs.

Neighbours: ``store`` (interface), ``memory_store`` (the in-process twin); the conformance suite
is ``tests/support/storecontract.py``, the fault tests ``tests/integration/test_etcd_store.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio
from aetcd import rpc  # type: ignore[import-untyped]

from tidelog.broker.cluster.store import (
    ABSENT,
    Entry,
    Event,
    EventKind,
    MetadataStore,
    SessionHooks,
    SessionLostError,
    StoreError,
    WatchBatch,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Reconnect quickly after etcd comes back (gRPC's default backoff grows to two minutes); HTTP/2
# pings find a dead connection (etcd accepts pings every 5 s and more rarely).
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
]
_BACKOFF_FIRST_S = 0.05
_BACKOFF_MAX_S = 1.0


def prefix_end(key: bytes) -> bytes:
    """The end of etcd's range for ``key`` as a prefix (the key with its last byte incremented)."""
    stripped = key.rstrip(b"\xff")
    if not stripped:
        return b"\0"  # every key from ``key`` on
    return stripped[:-1] + bytes([stripped[-1] + 1])


class _Stubs:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.channel = grpc.aio.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)
        self.kv: Any = rpc.KVStub(self.channel)
        self.lease: Any = rpc.LeaseStub(self.channel)
        self.watch: Any = rpc.WatchStub(self.channel)


class EtcdStore(MetadataStore):
    """One session (lease) on an etcd cluster, for the keys under ``root``."""

    def __init__(
        self, endpoints: list[str], root: str, session_ttl_s: float = 10.0, *, op_timeout_s: float = 5.0
    ) -> None:
        if not endpoints:
            raise ValueError("EtcdStore needs at least one endpoint (host:port)")
        self.endpoints = list(endpoints)
        self.root = root if root.endswith("/") else root + "/"
        self.session_ttl_s = session_ttl_s
        self.op_timeout_s = op_timeout_s
        self.hooks = SessionHooks()
        self._stubs: list[_Stubs] = []
        self._current = 0
        self._lease_id: int | None = None
        self._lease_ready = asyncio.Event()
        self._stale_leases: list[int] = []  # lost leases still to revoke once etcd answers
        self._keeper: asyncio.Task[None] | None = None

    # --- connection -------------------------------------------------------------------------

    def _live(self) -> _Stubs:
        if not self._stubs:
            raise StoreError("the etcd store is not open")
        return self._stubs[self._current]

    async def _call(self, what: str, call: Callable[[_Stubs, float], Awaitable[T]]) -> T:
        """One unary RPC, retried with backoff (next endpoint each time) while etcd is unreachable."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.op_timeout_s
        delay = _BACKOFF_FIRST_S
        while True:
            stubs = self._live()
            try:
                return await call(stubs, max(deadline - loop.time(), 0.05))
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.UNAVAILABLE and loop.time() + delay < deadline:
                    self._current = (self._current + 1) % len(self._stubs)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _BACKOFF_MAX_S)
                    continue
                if error.code() == grpc.StatusCode.NOT_FOUND and "lease" in (error.details() or ""):
                    raise SessionLostError(f"etcd {what}: the session's lease is gone") from error
                raise StoreError(
                    f"etcd {what} at {stubs.endpoint} failed: {error.code().name} {error.details()}"
                ) from error

    async def open(self) -> None:
        if self._stubs:
            return
        self._stubs = [_Stubs(endpoint) for endpoint in self.endpoints]
        try:
            await self._grant()
        except StoreError as error:
            await self._close_channels()
            raise StoreError(f"cannot reach etcd at {', '.join(self.endpoints)}: {error}") from error
        self._keeper = asyncio.create_task(self._keep_session(), name="etcd-session")

    async def close(self) -> None:
        if not self._stubs:
            return
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        for lease in [*self._stale_leases, *([self._lease_id] if self._lease_id is not None else [])]:
            try:
                await self._revoke(lease)
            except StoreError as error:
                log.warning("could not revoke lease %x on close (its keys go after the TTL): %s", lease, error)
        self._lease_id = None
        self._stale_leases.clear()
        await self._close_channels()

    async def abandon(self) -> None:
        """Disconnect without revoking the lease, as a crashed process would (tests: the leased
        keys go only when etcd expires the lease)."""
        self._lease_id = None
        self._stale_leases.clear()
        await self.close()

    async def _close_channels(self) -> None:
        stubs, self._stubs = self._stubs, []
        for stub in stubs:
            await stub.channel.close()

    # --- session (lease) --------------------------------------------------------------------

    async def _grant(self) -> None:
        ttl = max(math.ceil(self.session_ttl_s), 1)
        response = await self._call(
            "LeaseGrant", lambda s, t: s.lease.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl), timeout=t)
        )
        if response.error:
            raise StoreError(f"etcd LeaseGrant failed: {response.error}")
        self._lease_id = int(response.ID)
        self._lease_ready.set()

    async def _revoke(self, lease: int) -> None:
        with contextlib.suppress(SessionLostError):  # already gone
            await self._call(
                "LeaseRevoke", lambda s, t: s.lease.LeaseRevoke(rpc.LeaseRevokeRequest(ID=lease), timeout=t)
            )

    async def _keep_session(self) -> None:
        delay = _BACKOFF_FIRST_S
        while True:
            if self._lease_id is None:
                try:
                    while self._stale_leases:
                        await self._revoke(self._stale_leases[0])
                        self._stale_leases.pop(0)
                    await self._grant()
                    delay = _BACKOFF_FIRST_S
                except StoreError as error:
                    log.info("etcd session: cannot start a new lease yet: %s", error)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _BACKOFF_MAX_S)
                    continue
            lease = self._lease_id
            assert lease is not None
            await self._keep_alive(lease)
            log.warning("etcd session lost: lease %x was not kept alive within %.1fs", lease, self.session_ttl_s)
            self._lease_id = None
            self._lease_ready.clear()
            self._stale_leases.append(lease)
            self._session_lost()

    async def _keep_alive(self, lease: int) -> None:
        """Refresh ``lease`` until etcd says it is gone or no refresh was answered for the TTL."""
        loop = asyncio.get_running_loop()
        ttl = self.session_ttl_s
        interval = max(ttl / 3, 0.1)
        last_ok = loop.time()
        while (left := last_ok + ttl - loop.time()) > 0:
            stubs = self._live()
            call = stubs.lease.LeaseKeepAlive()
            try:
                while True:
                    async with asyncio.timeout(left):
                        await call.write(rpc.LeaseKeepAliveRequest(ID=lease))
                        response = await call.read()
                    if response is grpc.aio.EOF:
                        break
                    if response.TTL <= 0:
                        return  # etcd no longer knows the lease
                    last_ok = loop.time()
                    await asyncio.sleep(interval)
                    left = last_ok + ttl - loop.time()
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError, TimeoutError) as error:
                log.debug("etcd keepalive stream to %s broke: %r", stubs.endpoint, error)
                self._current = (self._current + 1) % len(self._stubs)
            finally:
                call.cancel()
            await asyncio.sleep(min(interval, max(last_ok + ttl - loop.time(), 0)))

    async def _lease_for_put(self) -> int:
        try:
            async with asyncio.timeout(self.op_timeout_s):
                await self._lease_ready.wait()
        except TimeoutError:
            raise SessionLostError("no etcd session (lease) for a leased key: etcd is unreachable") from None
        assert self._lease_id is not None
        return self._lease_id

    # --- keys -------------------------------------------------------------------------------

    def _key(self, key: str) -> bytes:
        return (self.root + key).encode()

    def _entry(self, kv: Any) -> Entry:
        return Entry(bytes(kv.key).decode()[len(self.root) :], bytes(kv.value), str(kv.mod_revision))

    async def get(self, key: str) -> Entry | None:
        request = rpc.RangeRequest(key=self._key(key))
        response = await self._call("get", lambda s, t: s.kv.Range(request, timeout=t))
        return self._entry(response.kvs[0]) if response.kvs else None

    async def _range(self, prefix: str) -> Any:
        key = self._key(prefix)
        request = rpc.RangeRequest(
            key=key, range_end=prefix_end(key), sort_order=rpc.RangeRequest.ASCEND, sort_target=rpc.RangeRequest.KEY
        )
        return await self._call("list", lambda s, t: s.kv.Range(request, timeout=t))

    async def list(self, prefix: str) -> list[Entry]:
        return [self._entry(kv) for kv in (await self._range(prefix)).kvs]

    @staticmethod
    def _compare(key: bytes, expect: str) -> Any | None:
        if expect == ABSENT:
            return rpc.Compare(key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)
        if not expect.isdigit():
            return None  # not a version this store made: it cannot match
        return rpc.Compare(key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=int(expect))

    async def put(self, key: str, value: bytes, *, expect: str | None = None, leased: bool = False) -> Entry | None:
        raw = self._key(key)
        request = rpc.PutRequest(key=raw, value=bytes(value), lease=await self._lease_for_put() if leased else 0)
        if expect is None:
            response = await self._call("put", lambda s, t: s.kv.Put(request, timeout=t))
            return Entry(key, bytes(value), str(response.header.revision))
        compare = self._compare(raw, expect)
        if compare is None:
            return None
        txn = rpc.TxnRequest(compare=[compare], success=[rpc.RequestOp(request_put=request)])
        response = await self._call("put", lambda s, t: s.kv.Txn(txn, timeout=t))
        return Entry(key, bytes(value), str(response.header.revision)) if response.succeeded else None

    async def delete(self, key: str, *, expect: str | None = None) -> bool:
        raw = self._key(key)
        request = rpc.DeleteRangeRequest(key=raw)
        if expect is None:
            response = await self._call("delete", lambda s, t: s.kv.DeleteRange(request, timeout=t))
            return bool(response.deleted)
        compare = self._compare(raw, expect)
        if compare is None:
            return False
        txn = rpc.TxnRequest(compare=[compare], success=[rpc.RequestOp(request_delete_range=request)])
        response = await self._call("delete", lambda s, t: s.kv.Txn(txn, timeout=t))
        return bool(response.succeeded and response.responses[0].response_delete_range.deleted)

    # --- watch ------------------------------------------------------------------------------

    def watch(self, prefix: str) -> AsyncIterator[WatchBatch]:
        self._live()
        return self._watch(prefix)

    async def _watch(self, prefix: str) -> AsyncIterator[WatchBatch]:
        key = self._key(prefix)
        delay = _BACKOFF_FIRST_S
        while self._stubs:
            try:
                listing = await self._range(prefix)
            except StoreError as error:
                log.info("etcd watch of %r: cannot list yet: %s", prefix, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX_S)
                continue
            entries = [self._entry(kv) for kv in listing.kvs]
            yield WatchBatch(
                [Event(EventKind.PUT, e.key, e) for e in entries], reset=True, revision=str(listing.header.revision)
            )
            create = rpc.WatchCreateRequest(
                key=key, range_end=prefix_end(key), start_revision=listing.header.revision + 1
            )
            call = self._live().watch.Watch()
            try:
                await call.write(rpc.WatchRequest(create_request=create))
                while (response := await call.read()) is not grpc.aio.EOF:
                    if response.compact_revision or response.canceled:
                        log.info("etcd watch of %r restarts: %s", prefix, response.cancel_reason or "compacted")
                        break
                    if response.events:
                        delay = _BACKOFF_FIRST_S
                        yield WatchBatch(
                            [self._event(e) for e in response.events], revision=str(response.header.revision)
                        )
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as error:
                log.info("etcd watch of %r broke, listing again: %s", prefix, error.__class__.__name__)
            finally:
                call.cancel()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX_S)

    def _event(self, event: Any) -> Event:
        if event.type == rpc.Event.DELETE:
            return Event(EventKind.DELETE, bytes(event.kv.key).decode()[len(self.root) :], None)
        entry = self._entry(event.kv)
        return Event(EventKind.PUT, entry.key, entry)

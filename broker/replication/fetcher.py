"""Follower replication from one leader broker: one connection (the project's own Kafka client),
one Fetch at a time with this broker's replica id for every partition that broker leads.

A partition that joins (this broker just became its follower) first truncates its log where it
diverges from the leader's (KIP-279: OffsetForLeaderEpoch for its latest epoch; the high watermark
when it knows no epoch), then fetches from its log end. Fetched batches are appended as they are
(offsets and epochs kept); each batch's leader epoch goes into the epoch cache; the high watermark
follows the leader's. Errors that mean "stale metadata" park the partition briefly; the manager
moves it when the metadata changes. Neighbours: ``manager`` (owns fetchers), ``replica``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tidelog.broker.client import messages
from tidelog.broker.client.batches import iter_batches
from tidelog.broker.client.connection import Authenticator, BrokerConnection
from tidelog.broker.client.errors import BrokerConnectionError, RequestTimeoutError
from tidelog.broker.client.fetchwire import decode_fetch_response
from tidelog.broker.client.versions import ApiKey
from tidelog.broker.protocol.errors import KafkaError
from tidelog.broker.replication.epochs import UNDEFINED_EPOCH
from tidelog.broker.replication.replica import Replica

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
OFFSET_OUT_OF_RANGE = 1
_STALE = frozenset({3, 5, 6, 74, 75})
# UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED: logged as errors,
# retried slowly (connection.failed.authentication.delay.ms slows each attempt on the leader too)
_AUTHENTICATION = frozenset({33, 34, 58})
AUTH_FAILURE_BACKOFF_S = 5.0


@dataclass(frozen=True, slots=True)
class FetchSettings:
    replica_id: int
    max_wait_ms: int = 500  # replica.fetch.wait.max.ms
    partition_max_bytes: int = 1024 * 1024  # replica.fetch.max.bytes
    response_max_bytes: int = 10 * 1024 * 1024  # replica.fetch.response.max.bytes
    backoff_ms: int = 1000  # replica.fetch.backoff.ms
    ssl: ssl.SSLContext | None = None  # TLS to the leaders (an SSL inter-broker listener)
    authenticate: Authenticator | None = None  # SASL to the leaders (a SASL inter-broker listener)


class LeaderFetcher:
    """Copies the partitions that ``leader_id`` leads. Runs as one task until stopped."""

    def __init__(
        self,
        leader_id: int,
        address: Callable[[int], tuple[str, int] | None],
        settings: FetchSettings,
        appended: Callable[[Replica, memoryview], None],
        truncated: Callable[[Replica, int], None],
    ) -> None:
        self.leader_id = leader_id
        self.address = address
        self.settings = settings
        self.appended = appended
        self.truncated = truncated
        self.partitions: dict[TopicPartition, Replica] = {}
        self.needs_truncation: set[TopicPartition] = set()
        self.parked: dict[TopicPartition, float] = {}
        self._wake = asyncio.Event()
        self._conn: BrokerConnection | None = None
        self._task: asyncio.Task[None] | None = None

    def add(self, replica: Replica) -> None:
        tp = (replica.topic, replica.partition)
        self.partitions[tp] = replica
        self.needs_truncation.add(tp)
        self.parked.pop(tp, None)
        self._wake.set()

    def remove(self, tp: TopicPartition) -> None:
        self.partitions.pop(tp, None)
        self.needs_truncation.discard(tp)
        self.parked.pop(tp, None)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"replica-fetcher-{self.leader_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._disconnect()

    async def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def _connection(self) -> BrokerConnection:
        if self._conn is None or self._conn.closed:
            where = self.address(self.leader_id)
            if where is None:
                raise BrokerConnectionError(f"broker {self.leader_id} is not registered")
            self._conn = await BrokerConnection.open(
                where[0],
                where[1],
                client_id=f"tidelog-replica-{self.settings.replica_id}",
                connect_timeout=5.0,
                ssl=self.settings.ssl,
                authenticate=self.settings.authenticate,
            )
        return self._conn

    async def _run(self) -> None:
        while True:
            active = self._active()
            if not active and not self.needs_truncation:
                self._wake.clear()
                # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
                # arrives as the wait completes, and the task would never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._next_unpark()):
                        await self._wake.wait()
                continue
            try:
                conn = await self._connection()
                if self.needs_truncation:
                    await self._truncate(conn)
                active = self._active()
                if active:
                    await self._fetch(conn, active)
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                if exc.error_code not in _AUTHENTICATION:
                    log.info("replication from broker %d: %s; retrying", self.leader_id, exc)
                    backoff = self.settings.backoff_ms / 1000
                else:  # a wrong inter-broker login: nothing is copied until someone fixes it
                    log.error("replication from broker %d: cannot authenticate: %s; retrying", self.leader_id, exc)
                    backoff = max(self.settings.backoff_ms / 1000, AUTH_FAILURE_BACKOFF_S)
                await self._disconnect()
                await asyncio.sleep(backoff)
            except (BrokerConnectionError, RequestTimeoutError, OSError) as exc:
                log.info("replication from broker %d: %s; retrying", self.leader_id, exc)
                await self._disconnect()
                await asyncio.sleep(self.settings.backoff_ms / 1000)
            except Exception:
                log.exception("replication from broker %d failed; retrying", self.leader_id)
                await self._disconnect()
                await asyncio.sleep(self.settings.backoff_ms / 1000)

    def _active(self) -> dict[TopicPartition, Replica]:
        now = time.monotonic()
        for tp, until in list(self.parked.items()):
            if until <= now:
                del self.parked[tp]
        return {tp: r for tp, r in self.partitions.items() if tp not in self.parked and tp not in self.needs_truncation}

    def _next_unpark(self) -> float:
        if not self.parked:
            return 5.0
        return max(min(self.parked.values()) - time.monotonic(), 0.01)

    def _park(self, tp: TopicPartition) -> None:
        self.parked[tp] = time.monotonic() + self.settings.backoff_ms / 1000

    async def _truncate(self, conn: BrokerConnection) -> None:
        pending = {tp: self.partitions[tp] for tp in list(self.needs_truncation) if tp in self.partitions}
        ask = {tp: r for tp, r in pending.items() if r.epochs.latest_epoch != UNDEFINED_EPOCH}
        for tp, r in pending.items():
            if tp not in ask:
                self._truncate_to(r, r.high_watermark)
                self.needs_truncation.discard(tp)
        if not ask:
            return
        topics: dict[str, list[dict[str, int]]] = defaultdict(list)
        for (topic, partition), r in ask.items():
            topics[topic].append(
                {"partition": partition, "current_leader_epoch": r.leader_epoch, "leader_epoch": r.epochs.latest_epoch}
            )
        answer: Any = await conn.request(
            ApiKey.OFFSET_FOR_LEADER_EPOCH,
            {
                "replica_id": self.settings.replica_id,
                "topics": [{"topic": t, "partitions": ps} for t, ps in topics.items()],
            },
        )
        for topic in answer.topics:
            for p in topic.partitions:
                tp = (topic.topic, int(p.partition))
                asked = ask.get(tp)
                if asked is None or tp not in self.partitions:
                    continue
                r = asked
                if int(p.error_code) != 0:
                    log.info("OffsetForLeaderEpoch %s-%d: error %d; will retry", tp[0], tp[1], int(p.error_code))
                    self._park(tp)
                    continue
                self.needs_truncation.discard(tp)
                epoch, end = int(p.leader_epoch), int(p.end_offset)
                leo = r.log.log_end_offset
                if epoch == UNDEFINED_EPOCH or end < 0:
                    target = min(r.high_watermark, leo)
                elif epoch == r.epochs.latest_epoch:
                    target = min(end, leo)
                else:
                    target = min(end, r.epochs.end_offset_for(epoch, leo)[1])
                if target < leo:
                    log.warning(
                        "%s-%d: truncating from %d to %d (leader %d has epoch %d up to %d)",
                        tp[0], tp[1], leo, target, self.leader_id, epoch, end,
                    )  # fmt: skip
                self._truncate_to(r, target)

    async def _fetch(self, conn: BrokerConnection, active: dict[TopicPartition, Replica]) -> None:
        topics: dict[str, list[dict[str, int]]] = defaultdict(list)
        for (topic, partition), r in active.items():
            topics[topic].append(
                {
                    "partition": partition,
                    "current_leader_epoch": r.leader_epoch,
                    "fetch_offset": r.log.log_end_offset,
                    "last_fetched_epoch": r.epochs.latest_epoch,
                    "log_start_offset": r.log.log_start_offset,
                    "partition_max_bytes": self.settings.partition_max_bytes,
                }
            )
        fields = {
            "cluster_id": None,
            "replica_id": self.settings.replica_id,
            "max_wait": self.settings.max_wait_ms,
            "min_bytes": 1,
            "max_bytes": self.settings.response_max_bytes,
            "isolation_level": 0,
            "session_id": 0,
            "session_epoch": -1,
            "topics": [{"topic": t, "partitions": ps} for t, ps in topics.items()],
            "forgotten_topics_data": [],
            "rack_id": "",
        }
        version = conn.version(ApiKey.FETCH)
        payload = messages.build(messages.request_class(ApiKey.FETCH, version), fields)
        frame = await conn.request_frame(
            ApiKey.FETCH, payload, timeout_s=self.settings.max_wait_ms / 1000 + conn.request_timeout
        )
        answer = decode_fetch_response(frame, version)
        for name, partitions in answer.topics.items():
            for p in partitions:
                tp = (name, p.partition)
                held = self.partitions.get(tp)
                if held is None or held is not active.get(tp):
                    continue  # moved while the fetch was out
                r = held
                if p.error_code == 0:
                    self._append(r, p.records, p.high_watermark)
                    if p.log_start_offset > r.log.log_start_offset:  # DeleteRecords on the leader
                        r.log.advance_log_start_offset(min(p.log_start_offset, r.high_watermark))
                elif p.error_code == OFFSET_OUT_OF_RANGE:
                    self._out_of_range(r, p.log_start_offset)
                elif p.error_code in _STALE:
                    self._park(tp)
                else:
                    log.warning("replica fetch %s-%d: error %d", name, p.partition, p.error_code)
                    self._park(tp)

    def _append(self, r: Replica, data: memoryview | None, leader_hw: int) -> None:
        if data is not None and len(data):
            leo = r.log.log_end_offset
            pos = start = end = 0
            epochs: list[tuple[int, int]] = []
            for header, view in iter_batches(data):  # consecutive complete batches from 0
                if header.last_offset < leo:
                    start = pos + len(view)  # already have it (the answer began at the batch holding leo)
                else:
                    epochs.append((header.partition_leader_epoch, header.base_offset))
                pos += len(view)
                end = pos
            if end > start:
                r.log.append_as_follower(data[start:end])
                for epoch, base in epochs:
                    r.epochs.assign(epoch, base)
                self.appended(r, data[start:end])
        r.follower_high_watermark(leader_hw)

    def _truncate_to(self, r: Replica, offset: int) -> None:
        had = r.log.log_end_offset
        r.truncate_to(offset)
        if r.log.log_end_offset < had:
            self.truncated(r, r.log.log_end_offset)

    def _out_of_range(self, r: Replica, leader_log_start: int) -> None:
        if leader_log_start > r.log.log_end_offset:
            log.info("%s-%d: the leader's log starts at %d, past ours", r.topic, r.partition, leader_log_start)
            r.log.truncate_fully_and_start_at(leader_log_start)
            r.epochs.clear()
            r.high_watermark = leader_log_start
            self.truncated(r, leader_log_start)
        else:
            self.needs_truncation.add((r.topic, r.partition))

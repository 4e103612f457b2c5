"""The client's view of a cluster: bootstrap, metadata refresh, one connection per broker.

``KafkaClient`` is what the admin, offsets, producer and fetcher helpers share. It connects to the
first reachable bootstrap address, asks for Metadata, and opens (then reuses) one
``BrokerConnection`` per broker id. ``leader_for`` refreshes metadata with a short backoff while a
partition has no leader yet (just after CreateTopics, during a leader change), until a deadline.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from tidelog.broker.client.connection import Authenticator, BrokerConnection
from tidelog.broker.client.errors import BrokerConnectionError, RequestTimeoutError
from tidelog.broker.client.metadata import BrokerInfo, ClusterMetadata, TopicPartition, from_response
from tidelog.broker.client.versions import ApiKey
from tidelog.broker.protocol.errors import UnknownTopicOrPartitionError, for_code

RETRY_BACKOFF_S = 0.1
# How long a topic may be missing from metadata before it counts as unknown (creation propagates).
UNKNOWN_TOPIC_WAIT_S = 5.0


def parse_address(address: str, default_port: int = 9092) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``, or a bare host) as (host, port)."""
    address = address.strip()
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, default_port
    return host, int(port)


class KafkaClient:
    """Connections to a cluster reached through ``bootstrap`` (``host:port``, or several)."""

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        *,
        client_id: str | None = "tidelog",
        request_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        ssl: ssl_.SSLContext | None = None,
        authenticate: Authenticator | None = None,
    ) -> None:
        """``ssl``: TLS to every broker (SSL, SASL_SSL); ``authenticate``: a SASL login run on each new
        connection (e.g. ``tidelog.broker.security.sasl_client.SaslLogin.authenticate``)."""
        self.ssl = ssl
        self.authenticate = authenticate
        servers = [bootstrap] if isinstance(bootstrap, str) else list(bootstrap)
        self.bootstrap = [parse_address(a) for s in servers for a in s.split(",") if a.strip()]
        self.client_id = client_id
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.cluster: ClusterMetadata | None = None
        self._by_node: dict[int, BrokerConnection] = {}
        self._bootstrap_conn: BrokerConnection | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> KafkaClient:
        await self.refresh()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _open(self, host: str, port: int) -> BrokerConnection:
        return await BrokerConnection.open(
            host,
            port,
            client_id=self.client_id,
            connect_timeout=self.connect_timeout,
            request_timeout=self.request_timeout,
            ssl=self.ssl,
            authenticate=self.authenticate,
        )

    async def any_connection(self) -> BrokerConnection:
        """A live connection to some broker: a known one, else the first bootstrap that answers."""
        for conn in self._by_node.values():
            if not conn.closed:
                return conn
        if self._bootstrap_conn is not None and not self._bootstrap_conn.closed:
            return self._bootstrap_conn
        errors = []
        for host, port in self.bootstrap:
            try:
                self._bootstrap_conn = await self._open(host, port)
            except (BrokerConnectionError, RequestTimeoutError) as exc:
                errors.append(str(exc))
                continue
            return self._bootstrap_conn
        raise BrokerConnectionError("no bootstrap server reachable: " + "; ".join(errors or ["none given"]))

    async def request(self, api: ApiKey, fields: dict[str, Any], *, timeout_s: float | None = None) -> Any:
        """Send a request to any broker (for APIs that any broker answers or forwards)."""
        return await (await self.any_connection()).request(api, fields, timeout_s=timeout_s)

    async def refresh(self, topics: Iterable[str] | None = None, *, allow_auto_create: bool = False) -> ClusterMetadata:
        """Ask for Metadata (all topics when ``topics`` is None) and cache the answer."""
        fields = {
            "topics": None if topics is None else [{"name": t, "topic_id": None} for t in topics],
            "allow_auto_topic_creation": allow_auto_create,
            "include_topic_authorized_operations": False,
            "include_cluster_authorized_operations": False,
        }
        response = await self.request(ApiKey.METADATA, fields)
        cluster = from_response(response)
        if self.cluster is not None and topics is not None:
            merged = dict(self.cluster.topics)
            merged.update(cluster.topics)
            cluster = ClusterMetadata(cluster.cluster_id, cluster.controller_id, cluster.brokers, merged)
        self.cluster = cluster
        return cluster

    async def connection(self, node_id: int) -> BrokerConnection:
        """The (shared) connection to broker ``node_id``."""
        async with self._lock:
            conn = self._by_node.get(node_id)
            if conn is not None and not conn.closed:
                return conn
            broker = self.cluster.brokers.get(node_id) if self.cluster else None
            if broker is None:
                cluster = await self.refresh([])
                broker = cluster.brokers.get(node_id)
            if broker is None:
                raise BrokerConnectionError(f"broker {node_id} is not in the cluster metadata")
            conn = await self._open(broker.host, broker.port)
            self._by_node[node_id] = conn
            return conn

    async def controller(self) -> BrokerConnection:
        """A connection to the controller as Metadata names it (any broker forwards in KRaft)."""
        cluster = self.cluster or await self.refresh([])
        if cluster.controller_id in cluster.brokers:
            return await self.connection(cluster.controller_id)
        return await self.any_connection()

    async def leader_for(self, tp: TopicPartition, *, timeout_s: float | None = None) -> BrokerInfo:
        """The leader of ``tp``; refreshes metadata until one is known or ``timeout_s`` passes. A topic
        or partition the cluster does not know fails sooner (after ``UNKNOWN_TOPIC_WAIT_S``)."""
        limit = self.request_timeout if timeout_s is None else timeout_s
        start = time.monotonic()
        cluster = self.cluster
        while True:
            if cluster is not None:
                leader = cluster.leader(tp)
                if leader is not None:
                    return leader
            elapsed = time.monotonic() - start
            if cluster is not None and elapsed >= limit:
                raise RequestTimeoutError(f"{tp} has no leader after {limit:g}s")
            if cluster is not None and elapsed >= min(limit, UNKNOWN_TOPIC_WAIT_S):
                topic = cluster.topics.get(tp.topic)
                if topic is None or topic.error_code or tp.partition not in topic.partitions:
                    raise UnknownTopicOrPartitionError(f"{tp} is not in the cluster metadata")
            if cluster is not None:
                await asyncio.sleep(RETRY_BACKOFF_S)
            cluster = await self.refresh([tp.topic])

    async def partitions_for(self, topic: str, *, timeout_s: float = 0.0) -> list[int]:
        """The partition ids of ``topic``. Unknown topics raise UNKNOWN_TOPIC_OR_PARTITION, after
        retrying for ``timeout_s`` (a topic just created may take a moment to reach every broker)."""
        deadline = time.monotonic() + timeout_s
        info = self.cluster.topics.get(topic) if self.cluster else None
        while info is None or info.error_code or not info.partitions:
            info = (await self.refresh([topic])).topics.get(topic)
            if info is not None and not info.error_code and info.partitions:
                break
            if time.monotonic() >= deadline:
                code = info.error_code if info is not None else 0
                raise for_code(code or UnknownTopicOrPartitionError.error_code)(f"topic {topic!r}")
            await asyncio.sleep(RETRY_BACKOFF_S)
        return sorted(info.partitions)

    def invalidate(self) -> None:
        """Forget cached metadata (after NOT_LEADER_OR_FOLLOWER and the like)."""
        self.cluster = None

    async def close(self) -> None:
        """Close every connection."""
        conns = list(self._by_node.values())
        if self._bootstrap_conn is not None:
            conns.append(self._bootstrap_conn)
        self._by_node.clear()
        self._bootstrap_conn = None
        for conn in conns:
            await conn.close()

"""An in-process broker connection for tests that drive the server without sockets: a fake transport
records what the connection writes; ``feed`` delivers bytes the way the event loop would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tidelog.broker.api.context import BrokerContext, Settings, Waiters
from tidelog.broker.cluster.topics import TopicStore
from tidelog.broker.groups.coordinator import GroupCoordinator
from tidelog.broker.groups.idempotence import Idempotence
from tidelog.broker.groups.offsets_store import OffsetsStore
from tidelog.broker.log.config import LogConfig
from tidelog.broker.log.manager import LogManager
from tidelog.broker.replication.manager import ReplicaManager, ReplicationSettings
from tidelog.broker.server.connection import KafkaConnection


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.aborted = False
        self.closed = False

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def writelines(self, parts: list[bytes]) -> None:
        for p in parts:
            self.written += p

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def feed(conn: KafkaConnection, data: bytes) -> None:
    view = memoryview(data)
    while view:
        buf = conn.get_buffer(-1)
        n = min(len(buf), len(view))
        buf[:n] = view[:n]
        conn.buffer_updated(n)
        view = view[n:]


def new_connection(root: Path) -> tuple[KafkaConnection, FakeTransport, LogManager]:
    config = LogConfig(segment_bytes=1 << 20)
    topics = TopicStore(root, config)
    logs = LogManager.open(root, config, topic_config=topics.log_config)
    waiters = Waiters()
    replicas = ReplicaManager(
        ReplicationSettings(0),
        logs,
        None,
        has_partition=topics.has_partition,
        min_insync=topics.min_insync,
        notify=waiters.notify,
    )
    coordinator = GroupCoordinator(OffsetsStore(topics, logs, 3))
    ctx = BrokerContext(Settings(), topics, logs, Idempotence(root), coordinator, replicas, waiters)
    conn = KafkaConnection(ctx, 1 << 20, lambda _c: None, lambda _n, _v: None)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport, logs

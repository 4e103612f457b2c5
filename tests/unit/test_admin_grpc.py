"""The control-plane API end to end over real gRPC on loopback: server, client, errors, health, CLI.

The real ``grpc.aio`` server from ``start_admin_server`` runs on a free 127.0.0.1 port, backed by
``MemoryAdmin``, a small in-memory ``ClusterAdmin``: a test double for the transport layer only (the
real implementation lives in the cluster layer and has its own tests). Every RPC goes through
``AdminClient``; the CLI runs through ``main([...])`` in a worker thread (it starts its own loop).
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from tidelog.broker.admin.client import AdminClient, AdminUnavailableError
from tidelog.broker.admin.model import (
    BrokerDesc,
    ClusterDesc,
    Move,
    PartitionDesc,
    Plan,
    ReassignmentDesc,
    RestartCheck,
    TopicDesc,
)
from tidelog.broker.admin.pb import admin_pb2 as pb
from tidelog.broker.admin.pb import admin_pb2_grpc as pb_grpc
from tidelog.broker.admin.server import AdminServer, start_admin_server
from tidelog.broker.admin.service import ERROR_CODE_KEY, ERROR_NAME_KEY, status_for
from tidelog.broker.cli.main import main
from tidelog.broker.protocol.errors import KafkaError, for_code

pytestmark = pytest.mark.timeout(60)

BROKERS = [
    BrokerDesc(1, "b1.local", 9092, "rack-a", alive=True, state="running"),
    BrokerDesc(2, "b2.local", 9092, "rack-b", alive=True, state="shutting_down"),
    BrokerDesc(3, "b3.local", 9092, None, alive=False, state="offline"),
]


class MemoryAdmin:
    """An in-memory ``ClusterAdmin``: topics in a dict, reassignments in a dict, calls recorded."""

    def __init__(self) -> None:
        self.topics: dict[str, TopicDesc] = {}
        self.moving: dict[tuple[str, int], ReassignmentDesc] = {}
        self.calls: list[tuple[str, Any]] = []
        self.controller = True
        self.explode = False

    def last(self) -> tuple[str, Any]:
        """The latest recorded call: (method, its arguments as received)."""
        return self.calls[-1]

    def _topic(self, name: str) -> TopicDesc:
        if name not in self.topics:
            raise for_code(3)(f"topic {name!r} does not exist")
        return self.topics[name]

    async def describe_cluster(self) -> ClusterDesc:
        if self.explode:
            raise RuntimeError("secret internal state")
        return ClusterDesc("cluster-1", 1, BROKERS, under_replicated=2, offline=1)

    async def list_topics(self) -> list[str]:
        return list(self.topics)

    async def describe_topic(self, name: str) -> TopicDesc:
        return self._topic(name)

    async def create_topic(
        self,
        name: str,
        partitions: int,
        replication_factor: int,
        configs: dict[str, str],
        assignment: list[list[int]] | None = None,
        validate_only: bool = False,
    ) -> TopicDesc:
        self.calls.append(("create_topic", (partitions, replication_factor, assignment, validate_only)))
        if not self.controller:
            raise for_code(41)("broker 1 is not the controller; broker 2 is")
        if name in self.topics:
            raise for_code(36)(f"topic {name!r} already exists")
        if assignment is None:
            partitions = 1 if partitions == -1 else partitions
            replication_factor = 1 if replication_factor == -1 else replication_factor
            if partitions < 1:
                raise for_code(37)("partitions must be at least 1")
            if replication_factor > len(BROKERS):
                raise for_code(38)(f"replication factor {replication_factor} > {len(BROKERS)} brokers")
            assignment = [[(p + r) % len(BROKERS) + 1 for r in range(replication_factor)] for p in range(partitions)]
        if "bogus" in configs:
            raise for_code(40)("unknown config 'bogus'")
        parts = [PartitionDesc(p, rs[0], 0, rs, list(rs), [], []) for p, rs in enumerate(assignment)]
        topic = TopicDesc(name, uuid.uuid4().hex, dict(configs), parts)
        if not validate_only:
            self.topics[name] = topic
        return topic

    async def alter_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        replication_factor: int | None = None,
        set_configs: dict[str, str] | None = None,
        delete_configs: list[str] | None = None,
    ) -> TopicDesc:
        self.calls.append(("alter_topic", (partitions, replication_factor, set_configs, delete_configs)))
        topic = self._topic(name)
        if partitions is not None:
            if partitions < len(topic.partitions):
                raise for_code(37)(f"topic {name!r} has {len(topic.partitions)} partitions; cannot shrink")
            topic.partitions += [
                PartitionDesc(p, 1, 0, [1], [1], [], []) for p in range(len(topic.partitions), partitions)
            ]
        topic.configs.update(set_configs or {})
        for key in delete_configs or []:
            topic.configs.pop(key, None)
        return topic

    async def delete_topic(self, name: str) -> None:
        self._topic(name)
        del self.topics[name]

    async def reassign(self, moves: list[Move], throttle_bytes_per_s: int | None = None) -> None:
        self.calls.append(("reassign", (moves, throttle_bytes_per_s)))
        for move in moves:
            current = self._topic(move.topic).partitions[move.partition]
            key = (move.topic, move.partition)
            if not move.replicas:
                if self.moving.pop(key, None) is None:
                    raise for_code(85)(f"no reassignment of {move.topic}-{move.partition} in progress")
                continue
            adding = [r for r in move.replicas if r not in current.replicas]
            removing = [r for r in current.replicas if r not in move.replicas]
            self.moving[key] = ReassignmentDesc(move.topic, move.partition, move.replicas, adding, removing)

    async def list_reassignments(self) -> list[ReassignmentDesc]:
        return list(self.moving.values())

    async def drain(self, broker_id: int) -> Plan:
        if broker_id not in {b.id for b in BROKERS}:
            raise for_code(42)(f"no broker {broker_id}")
        moves = [
            Move(t.name, p.partition, [r for r in p.replicas if r != broker_id] or [4])
            for t in self.topics.values()
            for p in t.partitions
            if broker_id in p.replicas
        ]
        return Plan(
            moves, leader_changes=sum(1 for t in self.topics.values() for p in t.partitions if p.leader == broker_id)
        )

    async def rebalance(self) -> Plan:
        return Plan([Move("orders", 0, [2, 3])], leader_changes=2)

    async def can_restart(self, broker_id: int) -> RestartCheck:
        if broker_id == 1:
            return RestartCheck(1, ok=True, reasons=[])
        return RestartCheck(broker_id, ok=False, reasons=["orders-0: ISR [2] would fall below min.insync.replicas=2"])


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[MemoryAdmin, AdminServer]]:
    admin = MemoryAdmin()
    server = await start_admin_server(admin, "127.0.0.1", 0)
    try:
        yield admin, server
    finally:
        await server.stop(None)


@pytest_asyncio.fixture
async def client(served: tuple[MemoryAdmin, AdminServer]) -> AsyncIterator[AdminClient]:
    async with AdminClient(f"127.0.0.1:{served[1].port}", timeout=10) as c:
        yield c


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port bound on 127.0.0.1 but not listening: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# -- every RPC through the client ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_describe_cluster(client: AdminClient) -> None:
    cluster = await client.describe_cluster()
    assert cluster == ClusterDesc("cluster-1", 1, BROKERS, under_replicated=2, offline=1)
    assert cluster.brokers[2].rack is None  # unset, not ""


@pytest.mark.asyncio
async def test_topic_lifecycle(served: tuple[MemoryAdmin, AdminServer], client: AdminClient) -> None:
    admin, _ = served
    created = await client.create_topic("orders", 3, 2, {"retention.ms": "60000"})
    assert created == admin.topics["orders"]
    assert [p.replicas for p in created.partitions] == [[1, 2], [2, 3], [3, 1]]
    assert admin.last() == ("create_topic", (3, 2, None, False))
    assert await client.list_topics() == ["orders"]
    assert await client.describe_topic("orders") == created

    checked = await client.create_topic("dry", -1, -1, {}, assignment=[[3, 1], [1, 2]], validate_only=True)
    assert [p.replicas for p in checked.partitions] == [[3, 1], [1, 2]]
    assert admin.last() == ("create_topic", (-1, -1, [[3, 1], [1, 2]], True))
    assert "dry" not in admin.topics

    altered = await client.alter_topic("orders", partitions=5, set_configs={"cleanup.policy": "compact"})
    assert len(altered.partitions) == 5
    assert altered.configs == {"retention.ms": "60000", "cleanup.policy": "compact"}
    assert admin.last() == ("alter_topic", (5, None, {"cleanup.policy": "compact"}, None))
    altered = await client.alter_topic("orders", replication_factor=3, delete_configs=["retention.ms"])
    assert altered.configs == {"cleanup.policy": "compact"}
    assert admin.last() == ("alter_topic", (None, 3, None, ["retention.ms"]))

    await client.delete_topic("orders")
    assert await client.list_topics() == []


@pytest.mark.asyncio
async def test_reassignments(served: tuple[MemoryAdmin, AdminServer], client: AdminClient) -> None:
    admin, _ = served
    await client.create_topic("orders", 2, 2, {})
    await client.reassign([Move("orders", 0, [3, 2]), Move("orders", 1, [1, 3])], throttle_bytes_per_s=1 << 20)
    assert admin.last() == ("reassign", ([Move("orders", 0, [3, 2]), Move("orders", 1, [1, 3])], 1 << 20))
    assert await client.list_reassignments() == [
        ReassignmentDesc("orders", 0, [3, 2], adding=[3], removing=[1]),
        ReassignmentDesc("orders", 1, [1, 3], adding=[1], removing=[2]),
    ]
    await client.reassign([Move("orders", 0, [])])  # cancel
    assert admin.last() == ("reassign", ([Move("orders", 0, [])], None))
    assert [(r.topic, r.partition) for r in await client.list_reassignments()] == [("orders", 1)]
    with pytest.raises(KafkaError) as info:
        await client.reassign([Move("orders", 0, [])])
    assert info.value.error_code == 85
    assert "no reassignment of orders-0 in progress" in str(info.value)


@pytest.mark.asyncio
async def test_drain_rebalance_can_restart(client: AdminClient) -> None:
    await client.create_topic("orders", 2, 2, {})
    plan = await client.drain(2)
    assert plan == Plan([Move("orders", 0, [1]), Move("orders", 1, [3])], leader_changes=1)
    assert await client.rebalance() == Plan([Move("orders", 0, [2, 3])], leader_changes=2)
    assert await client.can_restart(1) == RestartCheck(1, ok=True, reasons=[])
    blocked = await client.can_restart(2)
    assert not blocked.ok
    assert blocked.reasons == ["orders-0: ISR [2] would fall below min.insync.replicas=2"]


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_unknown_topic_is_kafka_error_3(client: AdminClient) -> None:
    with pytest.raises(KafkaError) as info:
        await client.describe_topic("nope")
    assert info.value.error_code == 3
    assert info.value.name == "UNKNOWN_TOPIC_OR_PARTITION"
    assert type(info.value) is for_code(3)
    assert str(info.value) == "UNKNOWN_TOPIC_OR_PARTITION (3): topic 'nope' does not exist"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (3, grpc.StatusCode.NOT_FOUND),
        (36, grpc.StatusCode.ALREADY_EXISTS),
        (37, grpc.StatusCode.INVALID_ARGUMENT),
        (38, grpc.StatusCode.INVALID_ARGUMENT),
        (39, grpc.StatusCode.INVALID_ARGUMENT),
        (40, grpc.StatusCode.INVALID_ARGUMENT),
        (42, grpc.StatusCode.INVALID_ARGUMENT),
        (41, grpc.StatusCode.FAILED_PRECONDITION),  # retriable, but "ask another broker"
        (85, grpc.StatusCode.FAILED_PRECONDITION),
        (44, grpc.StatusCode.FAILED_PRECONDITION),  # POLICY_VIOLATION: other non-retriable
        (7, grpc.StatusCode.UNAVAILABLE),  # REQUEST_TIMED_OUT: retriable
        (-1, grpc.StatusCode.INTERNAL),
    ],
)
def test_status_for(code: int, status: grpc.StatusCode) -> None:
    assert status_for(for_code(code)("x")) == status


@pytest.mark.asyncio
async def test_errors_on_the_wire(served: tuple[MemoryAdmin, AdminServer]) -> None:
    """The raw gRPC answer: status code, message as details, Kafka code and name in the trailers."""
    admin, server = served
    await admin.create_topic("orders", 1, 1, {})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.AdminStub(channel)
        cases: list[tuple[Any, Any, grpc.StatusCode, int, str]] = [
            (stub.DescribeTopic, pb.DescribeTopicRequest(name="x"), grpc.StatusCode.NOT_FOUND, 3, "topic 'x'"),
            (stub.CreateTopic, pb.CreateTopicRequest(name="orders"), grpc.StatusCode.ALREADY_EXISTS, 36, "exists"),
            (
                stub.CreateTopic,
                pb.CreateTopicRequest(name="y", partitions=0),
                grpc.StatusCode.INVALID_ARGUMENT,
                37,
                "at least 1",
            ),
            (
                stub.CreateTopic,
                pb.CreateTopicRequest(name="y", partitions=1, replication_factor=4),
                grpc.StatusCode.INVALID_ARGUMENT,
                38,
                "replication factor 4",
            ),
            (
                stub.CreateTopic,
                pb.CreateTopicRequest(name="y", partitions=1, configs={"bogus": "1"}),
                grpc.StatusCode.INVALID_ARGUMENT,
                40,
                "bogus",
            ),
        ]
        for method, request, status, code, needle in cases:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await method(request)
            assert info.value.code() == status, request
            assert needle in (info.value.details() or "")
            trailers = dict(info.value.trailing_metadata() or ())
            assert trailers[ERROR_CODE_KEY] == str(code)
            assert trailers[ERROR_NAME_KEY] == for_code(code).name


@pytest.mark.asyncio
async def test_not_controller(served: tuple[MemoryAdmin, AdminServer], client: AdminClient) -> None:
    served[0].controller = False
    with pytest.raises(KafkaError) as info:
        await client.create_topic("orders", 1, 1, {})
    assert (info.value.error_code, info.value.retriable) == (41, True)
    assert "broker 2 is" in str(info.value)


@pytest.mark.asyncio
async def test_unexpected_exception_is_internal_and_does_not_leak(
    served: tuple[MemoryAdmin, AdminServer], client: AdminClient, caplog: pytest.LogCaptureFixture
) -> None:
    served[0].explode = True
    with pytest.raises(KafkaError) as info:
        await client.describe_cluster()
    assert info.value.error_code == -1
    assert "secret" not in str(info.value)
    assert "DescribeCluster failed on the server" in str(info.value)
    assert any("secret internal state" in (r.exc_text or "") for r in caplog.records), "traceback not logged"


@pytest.mark.asyncio
async def test_unreachable_server(refused_port: int) -> None:
    async with AdminClient(f"127.0.0.1:{refused_port}", timeout=5) as c:
        with pytest.raises(AdminUnavailableError) as info:
            await c.list_topics()
    assert isinstance(info.value, ConnectionError)
    assert info.value.status == grpc.StatusCode.UNAVAILABLE
    assert "\n" not in str(info.value)


# -- health ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_health(served: tuple[MemoryAdmin, AdminServer], client: AdminClient) -> None:
    _, server = served
    assert await client.health() == "SERVING"
    assert await client.health("tidelog.admin.v1.Admin") == "SERVING"
    await server.set_serving(False)
    assert await client.health() == "NOT_SERVING"
    assert await client.health("tidelog.admin.v1.Admin") == "NOT_SERVING"
    await server.set_serving(True)
    assert await client.health() == "SERVING"


# -- the CLI --------------------------------------------------------------------------------------


async def _cli(server: AdminServer, *args: str) -> int:
    return await asyncio.to_thread(main, ["cluster", *args, "--admin", f"127.0.0.1:{server.port}"])


@pytest.mark.asyncio
async def test_cli_end_to_end(served: tuple[MemoryAdmin, AdminServer], capsys: pytest.CaptureFixture[str]) -> None:
    admin, server = served

    assert await _cli(server, "describe") == 0
    out = capsys.readouterr().out
    assert "cluster cluster-1  controller 1  brokers 3" in out
    assert "under-replicated partitions 2  offline partitions 1" in out
    assert "b2.local:9092" in out
    assert "shutting_down" in out

    assert await _cli(server, "create-topic", "orders", "--replica-assignment", "1:2,2:3", "--config", "a=b") == 0
    out = capsys.readouterr().out
    assert "created topic orders" in out
    assert admin.topics["orders"].configs == {"a": "b"}
    assert [p.replicas for p in admin.topics["orders"].partitions] == [[1, 2], [2, 3]]

    assert await _cli(server, "topics", "--json") == 0
    assert json.loads(capsys.readouterr().out) == ["orders"]

    assert await _cli(server, "describe-topic", "orders", "--json") == 0
    described = json.loads(capsys.readouterr().out)
    assert described["name"] == "orders"
    assert [p["isr"] for p in described["partitions"]] == [[1, 2], [2, 3]]

    assert await _cli(server, "alter-topic", "orders", "--partitions", "3", "--delete-config", "a") == 0
    assert "altered topic orders" in capsys.readouterr().out
    assert admin.last() == ("alter_topic", (3, None, None, ["a"]))

    assert await _cli(server, "reassign", "--move", "orders:0=3,2", "--throttle", "1000") == 0
    assert "started 1 partition reassignment(s)" in capsys.readouterr().out
    assert admin.last() == ("reassign", ([Move("orders", 0, [3, 2])], 1000))
    assert await _cli(server, "reassignments") == 0
    out = capsys.readouterr().out
    assert "orders" in out
    assert "3,2" in out
    assert await _cli(server, "reassign", "--cancel", "orders:0") == 0
    assert "orders:0 cancelled" in capsys.readouterr().out
    assert admin.moving == {}

    assert await _cli(server, "drain", "2") == 0
    assert "draining broker 2: 2 partition move(s), 1 leader change(s)" in capsys.readouterr().out
    assert await _cli(server, "rebalance", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "moves": [{"topic": "orders", "partition": 0, "replicas": [2, 3]}],
        "leader_changes": 2,
    }

    assert await _cli(server, "can-restart", "1") == 0
    assert "broker 1 can restart now" in capsys.readouterr().out
    assert await _cli(server, "can-restart", "2") == 1
    assert "orders-0: ISR [2] would fall below" in capsys.readouterr().out

    assert await _cli(server, "delete-topic", "orders") == 0
    assert "deleted topic orders" in capsys.readouterr().out
    assert admin.topics == {}


@pytest.mark.asyncio
async def test_cli_errors_are_one_line(
    served: tuple[MemoryAdmin, AdminServer], refused_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    _, server = served
    assert await _cli(server, "describe-topic", "nope") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        "tidelog cluster describe-topic: UNKNOWN_TOPIC_OR_PARTITION (3): topic 'nope' does not exist"
    ]

    assert await _cli(server, "reassign") == 1
    assert "nothing to do" in capsys.readouterr().err

    code = await asyncio.to_thread(
        main, ["cluster", "topics", "--admin", f"127.0.0.1:{refused_port}", "--timeout", "5"]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "UNAVAILABLE" in err
    assert "Traceback" not in err

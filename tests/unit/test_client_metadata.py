"""Routing values without a broker: bootstrap addresses and leaders from cluster metadata."""

from __future__ import annotations

import pytest

from tidelog.broker.client.cluster import KafkaClient, parse_address
from tidelog.broker.client.metadata import BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo, TopicPartition


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9092", ("127.0.0.1", 9092)),
        ("localhost", ("localhost", 9092)),
        ("[::1]:19092", ("::1", 19092)),
        (" broker-0.kafka:9093 ", ("broker-0.kafka", 9093)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


def test_bootstrap_lists_are_split() -> None:
    client = KafkaClient(["a:1,b:2", "c:3"])
    assert client.bootstrap == [("a", 1), ("b", 2), ("c", 3)]


def test_leader_lookup() -> None:
    parts = {
        0: PartitionInfo(0, leader=2, leader_epoch=5, replicas=(1, 2), isr=(1, 2), offline=()),
        1: PartitionInfo(1, leader=-1, leader_epoch=5, replicas=(1, 2), isr=(), offline=(1, 2)),
    }
    cluster = ClusterMetadata(
        cluster_id="c",
        controller_id=1,
        brokers={1: BrokerInfo(1, "h1", 9092), 2: BrokerInfo(2, "h2", 9093)},
        topics={"t": TopicInfo("t", None, False, parts)},
    )
    leader = cluster.leader(TopicPartition("t", 0))
    assert leader is not None
    assert leader.address == "h2:9093"
    assert cluster.leader(TopicPartition("t", 1)) is None  # leaderless right now
    assert cluster.leader(TopicPartition("t", 7)) is None
    assert cluster.leader(TopicPartition("u", 0)) is None
    assert cluster.partition_count("t") == 2
    assert str(TopicPartition("t", 3)) == "t-3"

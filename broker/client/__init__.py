"""The project's own asyncio Kafka client, used by the CLI and (later) follower replication.

Modules, lowest first: ``errors`` (typed failures), ``versions`` (API keys, version negotiation),
``messages`` (kio glue, framing), ``connection`` (one broker connection, pipelined),
``metadata`` + ``cluster`` (bootstrap, routing to leaders), ``admin`` and ``offsets`` (admin
APIs, ListOffsets), ``partitioner`` (Java's murmur2), ``producer``, ``batches`` + ``fetcher``.
This package imports only ``tidelog.broker.protocol``, kio and the standard library.
"""

from tidelog.broker.client.admin import Admin, ConfigEntry, NewTopic, ResourceType
from tidelog.broker.client.cluster import KafkaClient
from tidelog.broker.client.connection import BrokerConnection
from tidelog.broker.client.errors import BrokerConnectionError, NoCommonVersionError, RequestTimeoutError
from tidelog.broker.client.fetcher import FetchedPartition, Fetcher
from tidelog.broker.client.metadata import TopicPartition
from tidelog.broker.client.offsets import EARLIEST, LATEST, MAX_TIMESTAMP, list_offsets
from tidelog.broker.client.partitioner import murmur2, partition_for_key
from tidelog.broker.client.producer import Producer, ProduceResult, ProducerRecord

__all__ = [
    "EARLIEST",
    "LATEST",
    "MAX_TIMESTAMP",
    "Admin",
    "BrokerConnection",
    "BrokerConnectionError",
    "ConfigEntry",
    "FetchedPartition",
    "Fetcher",
    "KafkaClient",
    "NewTopic",
    "NoCommonVersionError",
    "ProduceResult",
    "Producer",
    "ProducerRecord",
    "RequestTimeoutError",
    "ResourceType",
    "TopicPartition",
    "list_offsets",
    "murmur2",
    "partition_for_key",
]

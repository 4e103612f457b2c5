"""Admin calls: create, delete and grow topics; describe and incrementally alter configs.

Each call is one request to the controller (any broker forwards it in KRaft), one typed error per
failed topic or resource (``for_code``), and plain values back. Topic listing and description come
from Metadata (``cluster``). The controller answers CreateTopics, DeleteTopics, CreatePartitions
and IncrementalAlterConfigs once it has committed the change; brokers learn it a moment later.
With ``wait=True`` (the default) these calls return only when Metadata (or DescribeConfigs) shows
the change, so a ``describe`` or ``list`` right after sees it. :meth:`Admin.wait_for_topic` further
waits until every partition's leader serves requests (needed before an ``acks=0`` produce, whose
failures are silent).
Neighbours: ``offsets`` for ListOffsets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from tidelog.broker.client import offsets
from tidelog.broker.client.cluster import RETRY_BACKOFF_S, KafkaClient
from tidelog.broker.client.errors import RequestTimeoutError, raise_for_code
from tidelog.broker.client.metadata import TopicInfo, TopicPartition
from tidelog.broker.client.versions import ApiKey
from tidelog.broker.protocol.errors import KafkaError

DEFAULT_TIMEOUT_MS = 30_000


class ResourceType(IntEnum):
    """Config resource types (Kafka's ``ConfigResource.Type``)."""

    TOPIC = 2
    BROKER = 4


class ConfigOp(IntEnum):
    """IncrementalAlterConfigs operations."""

    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


class ConfigSource(IntEnum):
    """Where a described config value comes from."""

    UNKNOWN = 0
    DYNAMIC_TOPIC = 1
    DYNAMIC_BROKER = 2
    DYNAMIC_DEFAULT_BROKER = 3
    STATIC_BROKER = 4
    DEFAULT = 5
    DYNAMIC_BROKER_LOGGER = 6
    CLIENT_METRICS = 7
    GROUP = 8


@dataclass(frozen=True)
class NewTopic:
    """A topic to create. ``partitions``/``replication_factor`` of -1 take the broker's defaults."""

    name: str
    partitions: int = -1
    replication_factor: int = -1
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConfigEntry:
    name: str
    value: str | None
    source: int
    read_only: bool
    sensitive: bool

    @property
    def is_override(self) -> bool:
        """Set on this very resource (a topic's own config), not inherited from broker or cluster."""
        return self.source in _OWN_SOURCES

    @property
    def is_default(self) -> bool:
        return not self.is_override


_OWN_SOURCES = frozenset(
    {
        ConfigSource.DYNAMIC_TOPIC,
        ConfigSource.DYNAMIC_BROKER,
        ConfigSource.DYNAMIC_BROKER_LOGGER,
        ConfigSource.CLIENT_METRICS,
        ConfigSource.GROUP,
    }
)


class Admin:
    """Admin operations over a :class:`KafkaClient`."""

    def __init__(self, client: KafkaClient, *, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
        self.client = client
        self.timeout_ms = timeout_ms

    async def _controller_request(self, api: ApiKey, fields: Mapping[str, Any]) -> Any:
        conn = await self.client.controller()
        return await conn.request(api, fields, timeout_s=self.timeout_ms / 1000 + self.client.request_timeout)

    async def create_topics(
        self, topics: Sequence[NewTopic], *, validate_only: bool = False, wait: bool = True
    ) -> dict[str, int]:
        """Create ``topics``; returns name -> partition count. Raises the first topic's error."""
        fields = {
            "topics": [
                {
                    "name": t.name,
                    "num_partitions": t.partitions,
                    "replication_factor": t.replication_factor,
                    "assignments": [],
                    "configs": [{"name": k, "value": v} for k, v in t.configs.items()],
                }
                for t in topics
            ],
            "timeout": self.timeout_ms,
            "validate_only": validate_only,
        }
        response = await self._controller_request(ApiKey.CREATE_TOPICS, fields)
        created: dict[str, int] = {}
        for result in response.topics:
            raise_for_code(int(result.error_code), f"creating topic {result.name!r}", result.error_message)
            created[str(result.name)] = int(getattr(result, "num_partitions", -1))
        if wait and not validate_only:
            await self._await_metadata(
                list(created), lambda t: t is not None and bool(t.partitions) and not t.error_code, "created"
            )
        return created

    async def create_topic(
        self, name: str, partitions: int = -1, replication_factor: int = -1, configs: Mapping[str, str] | None = None
    ) -> int:
        """Create one topic; returns its partition count (-1 if the broker version does not say)."""
        created = await self.create_topics([NewTopic(name, partitions, replication_factor, dict(configs or {}))])
        return created.get(name, -1)

    async def delete_topics(self, names: Iterable[str], *, wait: bool = True) -> None:
        """Delete topics by name; raises the first failure (UNKNOWN_TOPIC_OR_PARTITION for a missing one)."""
        names = list(names)
        fields = {
            "topics": [{"name": n, "topic_id": None} for n in names],
            "topic_names": names,
            "timeout": self.timeout_ms,
        }
        response = await self._controller_request(ApiKey.DELETE_TOPICS, fields)
        for result in response.responses:
            raise_for_code(
                int(result.error_code), f"deleting topic {result.name!r}", getattr(result, "error_message", None)
            )
        if self.client.cluster is not None:
            for n in names:
                self.client.cluster.topics.pop(n, None)
        if wait:
            await self._await_metadata(names, lambda t: t is None or t.error_code != 0, "deleted")

    async def create_partitions(
        self, topic: str, total: int, *, validate_only: bool = False, wait: bool = True
    ) -> None:
        """Grow ``topic`` to ``total`` partitions (Kafka never shrinks a topic: INVALID_PARTITIONS)."""
        fields = {
            "topics": [{"name": topic, "count": total, "assignments": None}],
            "timeout": self.timeout_ms,
            "validate_only": validate_only,
        }
        response = await self._controller_request(ApiKey.CREATE_PARTITIONS, fields)
        for result in response.results:
            raise_for_code(int(result.error_code), f"adding partitions to {result.name!r}", result.error_message)
        self.client.invalidate()
        if wait and not validate_only:
            await self._await_metadata([topic], lambda t: t is not None and len(t.partitions) >= total, "grown")

    async def describe_configs(
        self, name: str, keys: Sequence[str] | None = None, *, resource: ResourceType = ResourceType.TOPIC
    ) -> dict[str, ConfigEntry]:
        """Configs of one topic (or broker: ``resource=BROKER``, ``name`` = broker id)."""
        fields = {
            "resources": [
                {"resource_type": int(resource), "resource_name": name, "configuration_keys": keys and list(keys)}
            ],
            "include_synonyms": False,
            "include_documentation": False,
        }
        response = await self._controller_request(ApiKey.DESCRIBE_CONFIGS, fields)
        entries: dict[str, ConfigEntry] = {}
        for result in response.results:
            raise_for_code(int(result.error_code), f"describing configs of {name!r}", result.error_message)
            for c in result.configs:
                source = int(getattr(c, "config_source", -1))
                if source < 0:  # v0 had is_default instead
                    source = ConfigSource.DEFAULT if getattr(c, "is_default", False) else ConfigSource.DYNAMIC_TOPIC
                entries[str(c.name)] = ConfigEntry(
                    str(c.name), c.value, source, bool(c.read_only), bool(c.is_sensitive)
                )
        return entries

    async def alter_configs(
        self,
        name: str,
        set_configs: Mapping[str, str] | None = None,
        delete: Iterable[str] = (),
        *,
        resource: ResourceType = ResourceType.TOPIC,
        validate_only: bool = False,
        wait: bool = True,
    ) -> None:
        """IncrementalAlterConfigs: set ``set_configs`` and reset ``delete`` to their defaults; with
        ``wait``, return once DescribeConfigs shows the change."""
        ops = [{"name": k, "config_operation": int(ConfigOp.SET), "value": v} for k, v in (set_configs or {}).items()]
        ops += [{"name": k, "config_operation": int(ConfigOp.DELETE), "value": None} for k in delete]
        fields = {
            "resources": [{"resource_type": int(resource), "resource_name": name, "configs": ops}],
            "validate_only": validate_only,
        }
        response = await self._controller_request(ApiKey.INCREMENTAL_ALTER_CONFIGS, fields)
        for result in response.responses:
            raise_for_code(int(result.error_code), f"altering configs of {name!r}", result.error_message)
        if wait and not validate_only:
            await self._await_configs(name, dict(set_configs or {}), list(delete), resource)

    async def _await_configs(
        self, name: str, wanted: Mapping[str, str], reset: Sequence[str], resource: ResourceType
    ) -> None:
        """Poll DescribeConfigs until the broker shows an altered config (its view lags the controller's)."""
        deadline = time.monotonic() + self.timeout_ms / 1000
        keys = [*wanted, *reset]
        while keys:
            seen = await self.describe_configs(name, keys, resource=resource)
            if all(k in seen and seen[k].value == v for k, v in wanted.items()) and all(
                k not in seen or not seen[k].is_override for k in reset
            ):
                return
            if time.monotonic() >= deadline:
                raise RequestTimeoutError(f"config changes of {name!r} not visible after {self.timeout_ms} ms")
            await asyncio.sleep(RETRY_BACKOFF_S)

    async def list_topics(self, *, include_internal: bool = False) -> list[str]:
        """Names of the topics in the cluster, sorted."""
        cluster = await self.client.refresh()
        return sorted(n for n, t in cluster.topics.items() if include_internal or not t.is_internal)

    async def describe_topic(self, name: str) -> TopicInfo:
        """Partitions, leaders, replicas and ISR of ``name`` (UNKNOWN_TOPIC_OR_PARTITION if missing)."""
        cluster = await self.client.refresh([name])
        info = cluster.topics.get(name)
        if info is None:
            raise_for_code(3, f"topic {name!r}")
        assert info is not None
        raise_for_code(info.error_code, f"topic {name!r}")
        return info

    async def _await_metadata(self, names: Sequence[str], done: Callable[[TopicInfo | None], bool], what: str) -> None:
        """Poll Metadata until ``done`` holds for every topic in ``names`` (or the admin timeout passes)."""
        deadline = time.monotonic() + self.timeout_ms / 1000
        while True:
            cluster = await self.client.refresh(names)
            if all(done(cluster.topics.get(n)) for n in names):
                return
            if time.monotonic() >= deadline:
                raise RequestTimeoutError(
                    f"topics {', '.join(names)} not {what} in metadata after {self.timeout_ms} ms"
                )
            await asyncio.sleep(RETRY_BACKOFF_S)

    async def wait_for_topic(self, name: str, *, timeout_s: float = 30.0) -> None:
        """Wait until every partition of ``name`` has a leader that serves ListOffsets."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                partitions = await self.client.partitions_for(name)
                await offsets.list_offsets(self.client, {TopicPartition(name, p): offsets.LATEST for p in partitions})
            except KafkaError as exc:
                if not exc.retriable or time.monotonic() >= deadline:
                    raise
                self.client.invalidate()
                await asyncio.sleep(RETRY_BACKOFF_S)
            else:
                return

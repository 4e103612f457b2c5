"""Topic metadata for a lone broker: names, ids, partition counts and config overrides, kept in
``<data>/tidelog-metadata.json`` (written atomically). The etcd and Kubernetes backends of the
replicated-cluster issue will offer the same operations over a consensus store.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tidelog.broker.log.config import InvalidConfigError, LogConfig
from tidelog.broker.log.io import DEFAULT_IO, FileIO
from tidelog.broker.protocol.errors import InvalidTopicError, KafkaError, for_code

METADATA_FILE = "tidelog-metadata.json"
MAX_TOPIC_NAME = 249
_LEGAL = re.compile(r"^[A-Za-z0-9._-]+$")

# Topic configs that belong to layers above the log; accepted and shown with Kafka's defaults.
EXTRA_TOPIC_CONFIGS: dict[str, str] = {
    "compression.type": "producer",
    "min.insync.replicas": "1",
    "unclean.leader.election.enable": "false",
    "preallocate": "false",
    "leader.replication.throttled.replicas": "",
    "follower.replication.throttled.replicas": "",
}
_EXTRA_CHECKS: dict[str, set[str] | None] = {
    "compression.type": {"producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"},
    "unclean.leader.election.enable": {"true", "false"},
    "preallocate": {"true", "false"},
}


def _error(code: int, message: str) -> KafkaError:
    return for_code(code)(message)


def validate_topic_name(name: str) -> None:
    if not name or name in (".", ".."):
        raise InvalidTopicError(f"topic name {name!r} is not allowed")
    if len(name) > MAX_TOPIC_NAME:
        raise InvalidTopicError(f"topic name is {len(name)} characters; the limit is {MAX_TOPIC_NAME}")
    if not _LEGAL.match(name):
        raise InvalidTopicError(f"topic name {name!r} may only contain ASCII letters, digits, '.', '_' and '-'")


def validate_configs(configs: dict[str, str], base: LogConfig) -> LogConfig:
    """Check every override (unknown names are INVALID_CONFIG); returns the resulting log config."""
    for name, value in configs.items():
        if name in LogConfig.PARSERS:
            continue
        if name not in EXTRA_TOPIC_CONFIGS:
            raise InvalidConfigError(f"unknown topic config {name!r}")
        allowed = _EXTRA_CHECKS.get(name)
        if allowed is not None and value not in allowed:
            raise InvalidConfigError(f"{name}={value!r}: must be one of {sorted(allowed)}")
        if name == "min.insync.replicas" and (not value.isdigit() or int(value) < 1):
            raise InvalidConfigError(f"{name}={value!r}: must be an integer >= 1")
    return LogConfig.from_properties(configs, base)


@dataclass(slots=True)
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)


class TopicStore:
    """The standalone metadata backend: one JSON file, rewritten atomically on every change."""

    def __init__(self, data_dir: Path, defaults: LogConfig, io: FileIO = DEFAULT_IO) -> None:
        self.path = data_dir / METADATA_FILE
        self.defaults = defaults
        self.io = io
        self.topics: dict[str, TopicInfo] = {}
        self.cluster_id = ""
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            self.cluster_id = _cluster_id()
            self._save()
            return
        data = json.loads(self.path.read_text())
        self.cluster_id = data["cluster_id"]
        for t in data["topics"]:
            self.topics[t["name"]] = TopicInfo(
                t["name"], uuid.UUID(t["topic_id"]), t["partitions"], t["replication_factor"], dict(t["configs"])
            )

    def _save(self) -> None:
        data = {
            "version": 1,
            "cluster_id": self.cluster_id,
            "topics": [
                {
                    "name": t.name,
                    "topic_id": str(t.topic_id),
                    "partitions": t.partitions,
                    "replication_factor": t.replication_factor,
                    "configs": t.configs,
                }
                for t in sorted(self.topics.values(), key=lambda t: t.name)
            ],
        }
        self.io.write_file_atomically(self.path, json.dumps(data, indent=1).encode())

    def has_partition(self, topic: str, partition: int) -> bool:
        info = self.topics.get(topic)
        return info is not None and 0 <= partition < info.partitions

    def log_config(self, name: str) -> LogConfig:
        info = self.topics.get(name)
        return LogConfig.from_properties(info.configs, self.defaults) if info else self.defaults

    def check_create(self, name: str, partitions: int, replication_factor: int, configs: dict[str, str]) -> None:
        """Everything CreateTopics checks, without creating (validate_only uses it too)."""
        validate_topic_name(name)
        if name in self.topics:
            raise _error(36, f"topic {name!r} already exists")
        if partitions < 1:
            raise _error(37, f"number of partitions must be at least 1, got {partitions}")
        if partitions > 100_000:
            raise _error(37, f"number of partitions {partitions} is above this broker's limit of 100000")
        if replication_factor != 1:
            raise _error(38, f"replication factor {replication_factor} is larger than the 1 available broker")
        validate_configs(configs, self.defaults)

    def create(self, name: str, partitions: int, replication_factor: int, configs: dict[str, str]) -> TopicInfo:
        self.check_create(name, partitions, replication_factor, configs)
        info = TopicInfo(name, uuid.uuid4(), partitions, replication_factor, dict(configs))
        self.topics[name] = info
        self._save()
        return info

    def delete(self, name: str) -> TopicInfo:
        info = self.topics.pop(name, None)
        if info is None:
            raise _error(3, f"topic {name!r} does not exist")
        self._save()
        return info

    def add_partitions(self, name: str, count: int, validate_only: bool = False) -> TopicInfo:
        info = self.topics.get(name)
        if info is None:
            raise _error(3, f"topic {name!r} does not exist")
        if count <= info.partitions:
            raise _error(37, f"topic {name!r} has {info.partitions} partitions; the new count must be larger")
        if not validate_only:
            info.partitions = count
            self._save()
        return info

    def set_configs(self, name: str, configs: dict[str, str], validate_only: bool = False) -> LogConfig:
        info = self.topics.get(name)
        if info is None:
            raise _error(3, f"topic {name!r} does not exist")
        config = validate_configs(configs, self.defaults)
        if not validate_only:
            info.configs = dict(configs)
            self._save()
        return config

    # The asynchronous face shared with the cluster catalog (handlers use these).

    async def create_topic(
        self,
        name: str,
        partitions: int,
        replication_factor: int,
        configs: dict[str, str],
        assignment: list[list[int]] | None = None,
    ) -> TopicInfo:
        if assignment and any(replicas != [0] for replicas in assignment):
            raise _error(39, f"a lone broker can only place replicas on itself, not {assignment}")
        return self.create(name, partitions, len(assignment[0]) if assignment else replication_factor, configs)

    async def delete_topic(self, name: str) -> TopicInfo:
        return self.delete(name)

    async def create_partitions(
        self, name: str, count: int, validate_only: bool = False, assignment: list[list[int]] | None = None
    ) -> TopicInfo:
        return self.add_partitions(name, count, validate_only)

    async def alter_configs(self, name: str, configs: dict[str, str], validate_only: bool = False) -> LogConfig:
        return self.set_configs(name, configs, validate_only)

    def auto_create(self, name: str, partitions: int, replication_factor: int) -> TopicInfo:
        self.check_create(name, partitions, replication_factor, {})
        return self.create(name, partitions, replication_factor, {})

    def min_insync(self, name: str) -> int:
        return 1


def _cluster_id() -> str:
    """A Kafka-style cluster id: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")

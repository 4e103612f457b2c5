"""The broker's Prometheus metrics, in a registry of their own, served on a separate port.

Requests and latency per API and version, errors per code, connections, bytes and records in per
topic, and (collected at scrape time) log size and end offset per partition. Topic labels are capped
(``max_topic_labels``): topics beyond the cap are counted under ``__other__``, so a client creating
many topics cannot blow up the series count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tidelog.broker.log.manager import LogManager

# Metric labels for the APIs the broker serves (this layer sits below the API registry).
API_NAMES = {
    0: "Produce",
    1: "Fetch",
    2: "ListOffsets",
    3: "Metadata",
    8: "OffsetCommit",
    9: "OffsetFetch",
    10: "FindCoordinator",
    11: "JoinGroup",
    12: "Heartbeat",
    13: "LeaveGroup",
    14: "SyncGroup",
    15: "DescribeGroups",
    16: "ListGroups",
    18: "ApiVersions",
    19: "CreateTopics",
    20: "DeleteTopics",
    21: "DeleteRecords",
    22: "InitProducerId",
    32: "DescribeConfigs",
    33: "AlterConfigs",
    37: "CreatePartitions",
    42: "DeleteGroups",
    44: "IncrementalAlterConfigs",
    47: "OffsetDelete",
    60: "DescribeCluster",
}


class _LogCollector(Collector):
    def __init__(self, logs: Callable[[], LogManager | None], topic_label: Callable[[str], str]) -> None:
        self._logs = logs
        self._topic_label = topic_label

    def collect(self) -> Iterator[GaugeMetricFamily]:
        size = GaugeMetricFamily("tidelog_log_size_bytes", "Bytes in a partition's log", labels=["topic", "partition"])
        end = GaugeMetricFamily("tidelog_log_end_offset", "A partition's log end offset", labels=["topic", "partition"])
        start = GaugeMetricFamily(
            "tidelog_log_start_offset", "A partition's log start offset", labels=["topic", "partition"]
        )
        manager = self._logs()
        if manager is not None:
            for (topic, partition), plog in manager:
                labels = [self._topic_label(topic), str(partition)]
                size.add_metric(labels, plog.size_bytes)
                end.add_metric(labels, plog.log_end_offset)
                start.add_metric(labels, plog.log_start_offset)
        yield from (size, end, start)


# (group, state, members, [(topic, partition, committed offset, log end offset)])
GroupRow = tuple[str, str, int, list[tuple[str, int, int, int]]]


class _GroupCollector(Collector):
    """Group states and consumer lag (log end offset minus committed offset), computed at scrape time
    from a snapshot the broker hands over: no separate exporter needed."""

    def __init__(self, rows: Callable[[], list[GroupRow]], label: Callable[[str], str]) -> None:
        self._rows = rows
        self._label = label

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = GaugeMetricFamily(
            "tidelog_group_state", "1 for the state a consumer group is in", labels=["group", "state"]
        )
        members = GaugeMetricFamily("tidelog_group_members", "Members of a consumer group", labels=["group"])
        lag = GaugeMetricFamily(
            "tidelog_consumer_lag",
            "Log end offset minus the group's committed offset",
            labels=["group", "topic", "partition"],
        )
        for group, group_state, count, partitions in self._rows():
            g = self._label(group)
            state.add_metric([g, group_state], 1)
            members.add_metric([g], count)
            for topic, partition, committed, end in partitions:
                lag.add_metric([g, self._label(topic), str(partition)], max(end - committed, 0))
        yield from (state, members, lag)


ReplicationRow = tuple[int, int, int, int, int, int]
"""(partitions held, partitions led, under-replicated led, under min ISR led, controller active (0/1),
offline partitions as the controller sees them); zeros on a lone broker's unknowns."""


class _ReplicationCollector(Collector):
    """Kafka's ReplicaManager / controller gauges, from a snapshot the broker provides."""

    NAMES = (
        ("tidelog_replica_partitions", "Partition replicas held by this broker"),
        ("tidelog_replica_leaders", "Partitions this broker leads"),
        ("tidelog_replica_under_replicated_partitions", "Led partitions whose ISR is smaller than their replicas"),
        ("tidelog_replica_under_min_isr_partitions", "Led partitions whose ISR is below min.insync.replicas"),
        ("tidelog_controller_active", "1 on the broker that is the controller"),
        ("tidelog_controller_offline_partitions", "Partitions without a live leader (controller only)"),
    )

    def __init__(self, row: Callable[[], ReplicationRow]) -> None:
        self._row = row

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for (name, text), value in zip(self.NAMES, self._row(), strict=True):
            yield GaugeMetricFamily(name, text, value=value)


class BrokerMetrics:
    def __init__(self, max_topic_labels: int = 1000) -> None:
        self.registry = CollectorRegistry()
        self.max_topic_labels = max_topic_labels
        self._topics: set[str] = set()
        r = self.registry
        self.requests = Counter("tidelog_requests", "Requests handled", ["api", "version"], registry=r)
        self.latency = Histogram(
            "tidelog_request_latency_seconds",
            "Time from a request's arrival to its response",
            ["api", "version"],
            registry=r,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5),
        )
        self.errors = Counter(
            "tidelog_errors", "Kafka error codes returned or causing a close", ["api", "code"], registry=r
        )
        self.unsupported = Counter(
            "tidelog_unsupported_requests", "Requests for unknown APIs or versions", ["api_key", "version"], registry=r
        )
        self.connections = Gauge("tidelog_connections", "Open client connections", registry=r)
        self.bytes_in = Counter("tidelog_bytes_in", "Record bytes appended", ["topic"], registry=r)
        self.records_in = Counter("tidelog_records_in", "Records appended", ["topic"], registry=r)
        self.bytes_out = Counter("tidelog_bytes_out", "Record bytes served to fetches", ["topic"], registry=r)
        self.records_out = Counter(
            "tidelog_records_out", "Records served to fetches (offsets from the fetch offset on)", ["topic"], registry=r
        )
        self.send_path = Counter(
            "tidelog_fetch_send_bytes", "Record bytes sent, by path (sendfile or copy)", ["path"], registry=r
        )
        self.rebalances = Counter("tidelog_group_rebalances", "Completed rebalances (new generations)", registry=r)
        self.commits = Counter("tidelog_offset_commits", "Offsets committed", registry=r)
        self.isr_changes = Counter(
            "tidelog_isr_changes", "ISR changes this broker made as leader", ["change"], registry=r
        )
        self._api_children: dict[tuple[int, int], tuple[Any, Any]] = {}
        self._topic_cache: dict[str, tuple[Any, Any, Any, Any]] = {}
        self.manager: LogManager | None = None
        self.group_rows: Callable[[], list[GroupRow]] = list
        r.register(_LogCollector(lambda: self.manager, self.topic_label))
        r.register(_GroupCollector(self._group_rows, self.topic_label))
        self.replication_row: Callable[[], ReplicationRow] = lambda: (0, 0, 0, 0, 0, 0)
        r.register(_ReplicationCollector(self._replication_row))

    def _group_rows(self) -> list[GroupRow]:
        return self.group_rows()

    def _replication_row(self) -> ReplicationRow:
        return self.replication_row()  # set by the broker after start-up

    def topic_label(self, topic: str) -> str:
        if topic in self._topics:
            return topic
        if len(self._topics) < self.max_topic_labels:
            self._topics.add(topic)
            return topic
        return "__other__"

    def observe(self, name: str, value: Any) -> None:
        """The single hook the server and handlers report through."""
        if name == "latency":
            api_version, seconds = value
            children = self._api_children.get(api_version)
            if children is None:  # ``labels()`` costs ~2 % of a busy broker: look children up once
                key, version = api_version
                api = API_NAMES.get(key, str(key))
                children = (self.requests.labels(api, str(version)), self.latency.labels(api, str(version)))
                self._api_children[api_version] = children
            children[0].inc()
            children[1].observe(seconds)
        elif name == "produced":
            topic, records, nbytes = value
            records_in, bytes_in, _, _ = self._topic_children(topic)
            records_in.inc(records)
            bytes_in.inc(nbytes)
        elif name == "fetched":
            topic, nbytes, records = value
            _, _, bytes_out, records_out = self._topic_children(topic)
            bytes_out.inc(nbytes)
            records_out.inc(records)
        elif name == "sent":
            sendfile, copied = value
            self.send_path.labels("sendfile").inc(sendfile)
            self.send_path.labels("copy").inc(copied)
        elif name == "error":
            key, code = value
            self.errors.labels(API_NAMES.get(key, str(key)), str(code)).inc()
        elif name == "unsupported":
            key, version = value
            self.unsupported.labels(
                str(key) if key in API_NAMES else "other", str(version) if 0 <= version <= 20 else "other"
            ).inc()
        elif name == "rebalance":
            self.rebalances.inc()
        elif name == "commit":
            self.commits.inc(value)
        elif name == "connections":
            self.connections.set(value)
        elif name == "isr":
            shrinks, expands = value
            if shrinks:
                self.isr_changes.labels("shrink").inc(shrinks)
            if expands:
                self.isr_changes.labels("expand").inc(expands)

    def _topic_children(self, topic: str) -> tuple[Any, Any, Any, Any]:
        children = self._topic_cache.get(topic)
        if children is None:
            label = self.topic_label(topic)
            children = (
                self.records_in.labels(label),
                self.bytes_in.labels(label),
                self.bytes_out.labels(label),
                self.records_out.labels(label),
            )
            if len(self._topic_cache) < 4 * self.max_topic_labels:
                self._topic_cache[topic] = children
        return children

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)

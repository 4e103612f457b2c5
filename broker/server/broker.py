"""The broker's life cycle: the one place that starts and stops everything.

Start: open the data directory (topics, then logs, recovering as needed), drop logs of topics that
no longer exist (an interrupted delete), start the metrics endpoint, the log manager's background
work and the listeners (IPv4, and the IPv6 loopback too when listening on 127.0.0.1: librdkafka may
resolve ``localhost`` to ::1). Stop: stop accepting, let in-flight requests finish up to
``shutdown.timeout.ms``, close connections, flush and checkpoint every log, release the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import time
import uuid

from tidelog.broker.admin.cluster_admin import MetadataAdmin
from tidelog.broker.admin.server import AdminServer, start_admin_server
from tidelog.broker.api.context import BrokerContext, Settings, Waiters
from tidelog.broker.cluster.catalog import ClusterCatalog
from tidelog.broker.cluster.controller import Controller
from tidelog.broker.cluster.metadata import ClusterMetadata
from tidelog.broker.cluster.state import BrokerInfo
from tidelog.broker.cluster.store import MetadataStore
from tidelog.broker.cluster.stores import open_store
from tidelog.broker.cluster.topics import TopicStore
from tidelog.broker.groups.coordinator import GroupCoordinator, GroupSettings
from tidelog.broker.groups.idempotence import Idempotence
from tidelog.broker.groups.offsets_store import OFFSETS_TOPIC, OffsetsStore, partition_for
from tidelog.broker.log.log import PartitionLog
from tidelog.broker.log.manager import LogManager, ManagerSettings
from tidelog.broker.metrics.broker_metrics import BrokerMetrics, GroupRow
from tidelog.broker.replication.fetcher import FetchSettings
from tidelog.broker.replication.manager import ReplicaManager, ReplicationSettings
from tidelog.broker.security.acl import Authorizer
from tidelog.broker.security.acl_store import AclStore, FileAcls, StoreAcls
from tidelog.broker.security.auth_limiter import FailedAuthLimiter
from tidelog.broker.security.credentials import FileCredentials, StoreCredentials
from tidelog.broker.security.sasl import SaslSession
from tidelog.broker.server.config import BrokerConfig
from tidelog.broker.server.connection import KafkaConnection
from tidelog.broker.server.listeners import Endpoint

log = logging.getLogger(__name__)


class Broker:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.metrics = BrokerMetrics()
        self.connections: set[KafkaConnection] = set()
        self.servers: list[asyncio.Server] = []
        self.logs: LogManager | None = None
        self.ctx: BrokerContext | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._snapshotter: asyncio.Task[None] | None = None
        self.store: MetadataStore | None = None
        self.meta: ClusterMetadata | None = None
        self.controller: Controller | None = None
        self.replicas: ReplicaManager | None = None
        self.incarnation = uuid.uuid4().hex[:12]
        self.admin: AdminServer | None = None
        self.authorizer = Authorizer(config.super_users, config.allow_everyone_if_no_acl) if config.authorizer else None
        self.acls: AclStore | None = None
        self.auth_limiter = FailedAuthLimiter(config.failed_auth_limit)

    async def _join_cluster(self) -> ClusterCatalog | None:
        """Open the metadata store and wait for the first full view of the cluster (members only)."""
        c = self.config
        self.store = open_store(c.metadata_store, c.metadata_session_timeout_ms / 1000)
        if self.store is None:
            return None
        await self.store.open()
        self.meta = ClusterMetadata(self.store)
        if self.authorizer is not None:  # mirrors acls/ from the first listing on
            self.acls = StoreAcls(self.store, self.meta, self.authorizer)
        await self.meta.start()
        log.info("joined cluster %s through %s", self.meta.cluster_id, c.metadata_store)
        return ClusterCatalog(self.meta, c.log_defaults, c.min_insync_replicas)

    async def start(self) -> None:
        c = self.config
        c.data_dir.mkdir(parents=True, exist_ok=True)
        catalog = await self._join_cluster()
        if self.authorizer is not None and self.acls is None:
            self.acls = FileAcls(c.data_dir, self.authorizer)
        topics: TopicStore | ClusterCatalog = catalog or TopicStore(c.data_dir, c.log_defaults)
        settings = ManagerSettings(
            max_open_files=c.max_open_files,
            retention_check_interval_ms=c.retention_check_interval_ms,
            checkpoint_interval_ms=c.checkpoint_interval_ms,
            cleaner_backoff_ms=c.cleaner_backoff_ms,
            cleaner_enable=c.cleaner_enable,
        )
        started = time.monotonic()
        self.logs = LogManager.open(
            c.data_dir, c.log_defaults, settings=settings, topic_config=topics.log_config, node_id=c.node_id
        )
        for topic, partition in list(self.logs.logs):
            if not self._keeps(topics, topic, partition):
                log.warning("removing the log of %s-%d: no replica of it belongs here any more", topic, partition)
                self.logs.delete(topic, partition)
        log.info("opened %d partition logs in %.2fs", len(self.logs.logs), time.monotonic() - started)
        self.metrics.manager = self.logs
        waiters = Waiters()
        self.replicas = ReplicaManager(
            ReplicationSettings(
                c.node_id,
                replica_lag_time_max_ms=c.replica_lag_time_max_ms,
                fetch=FetchSettings(
                    c.node_id,
                    max_wait_ms=c.replica_fetch_wait_max_ms,
                    partition_max_bytes=c.replica_fetch_max_bytes,
                    ssl=c.client_tls,
                    authenticate=c.inter_broker_sasl.authenticate if c.inter_broker_sasl is not None else None,
                ),
            ),
            self.logs,
            self.meta,
            has_partition=topics.has_partition,
            min_insync=topics.min_insync,
            notify=waiters.notify,
            observe=self.metrics.observe,
        )
        self.metrics.replication_row = self._replication_row
        idempotence = Idempotence(
            c.data_dir, c.producer_id_expiration_ms, node_id=c.node_id, cluster=self.meta is not None
        )
        self.replicas.copy_listeners.append(idempotence.follower_appended)
        self.replicas.truncation_listeners.append(idempotence.truncated)
        self.ctx = BrokerContext(
            Settings(
                node_id=c.node_id,
                host=c.advertised_host,
                port=c.advertised_port,
                listener=c.listeners.inter_broker,
                advertised_listeners=",".join(str(e) for e in c.listeners.advertised),
                rack=c.rack,
                auto_create_topics=c.auto_create_topics,
                num_partitions=c.num_partitions,
                default_replication_factor=c.default_replication_factor,
                fetch_max_bytes=c.fetch_max_bytes,
            ),
            topics,
            self.logs,
            idempotence,
            self._coordinator(topics),
            self.replicas,
            waiters,
            observe=self.metrics.observe,
            cluster=self.meta,
            credentials=StoreCredentials(self.store) if self.store is not None else FileCredentials(c.data_dir),
            authorizer=self.authorizer,
            acls=self.acls,
        )
        if c.metrics_port:
            self.metrics.serve(c.metrics_host, c.metrics_port)
            log.info("metrics on http://%s:%d/metrics", c.metrics_host, c.metrics_port)
        self.logs.start()
        if self.meta is not None:
            await self.meta.register(self._registration())
            self.controller = Controller(
                self.meta,
                c.node_id,
                unclean_default=c.unclean_leader_election,
                imbalance_interval_s=c.leader_imbalance_check_interval_s,
                auto_leader_rebalance=c.auto_leader_rebalance,
            )
            self.controller.start()
        self.replicas.start()
        await self._start_admin(topics)
        loop = asyncio.get_running_loop()
        for bound in c.listeners.bound:
            await self._listen(bound)
        self._reaper = loop.create_task(self._reap_idle(), name="idle-connections")
        self._snapshotter = loop.create_task(self._snapshot_producers(), name="producer-snapshots")
        log.info(
            "Tidelog broker %d listening on %s (advertised %s; inter-broker %s), data in %s",
            c.node_id,
            ",".join(str(e) for e in c.listeners.bound),
            ",".join(str(e) for e in c.listeners.advertised),
            c.listeners.inter_broker,
            c.data_dir,
        )

    async def _listen(self, bound: Endpoint) -> None:
        """Serve one listener; its connections answer with that listener's advertised addresses."""
        assert self.ctx is not None
        advertised = self.config.listeners.advertised_of(bound.name)
        ctx = dataclasses.replace(
            self.ctx,
            settings=dataclasses.replace(
                self.ctx.settings, host=advertised.host, port=advertised.port, listener=bound.name
            ),
        )
        mechanisms = self.config.sasl_mechanisms.get(bound.name)
        tls_context = self.config.server_tls.get(bound.name)
        # TLS encrypts in user space: no sendfile there (as in Kafka); records are copied through it.
        zero_copy = self.config.sendfile and tls_context is None
        loop = asyncio.get_running_loop()
        hosts = [bound.host]
        if bound.host == "127.0.0.1" and socket.has_ipv6:
            hosts.append("::1")
        for host in hosts:
            try:
                server = await loop.create_server(
                    lambda: self._new_connection(ctx, zero_copy, mechanisms),
                    host,
                    bound.port,
                    reuse_address=True,
                    ssl=tls_context,
                    ssl_handshake_timeout=10.0 if tls_context is not None else None,
                )
            except OSError as exc:
                if host == "::1":
                    log.info("not listening on [::1]:%d: %s", bound.port, exc)
                    continue
                raise
            self.servers.append(server)

    def _replication_row(self) -> tuple[int, int, int, int, int, int]:
        held, led, under, below = self.replicas.stats() if self.replicas is not None else (0, 0, 0, 0)
        active = self.controller is not None and self.controller.active
        offline = 0
        if active and self.meta is not None:
            parts = [p for t in list(self.meta.topics.values()) for p in t.partitions]
            offline = sum(1 for p in parts if p.leader not in self.meta.brokers)
        return held, led, under, below, int(active), offline

    def _registration(self, *, shutting_down: bool = False) -> BrokerInfo:
        c = self.config
        admin_port = self.admin.port if self.admin is not None else 0
        return BrokerInfo(
            c.node_id,
            c.advertised_host,
            c.advertised_port,
            c.rack,
            admin_port,
            shutting_down,
            self.incarnation,
            tuple((e.name, e.host, e.port) for e in c.listeners.advertised),
        )

    async def _start_admin(self, topics: TopicStore | ClusterCatalog) -> None:
        """The gRPC admin API (``admin.listener``), served by cluster members."""
        c = self.config
        if not c.admin_listener:
            return
        if self.meta is None or not isinstance(topics, ClusterCatalog):
            log.warning("admin.listener=%s ignored: the admin API serves cluster members only", c.admin_listener)
            return
        host, _, port = c.admin_listener.rpartition(":")
        security = c.admin_security
        self.admin = await start_admin_server(
            MetadataAdmin(self.meta, topics, self.ctx.credentials if self.ctx else None, self.acls),
            host or "127.0.0.1",
            int(port),
            tls=security.tls,
            tokens=security.tokens,
            health_address=security.health_listener or None,
        )
        log.info("admin API (gRPC) on %s:%d (%s)", host, self.admin.port, security.describe())
        if self.admin.health_port:
            log.info("admin health service (plain gRPC) on port %d", self.admin.health_port)
        if security.tokens is not None and security.tls is None:
            log.warning("admin API: bearer tokens over plain gRPC travel in clear (set admin.ssl.keystore.location)")
        await self.meta.register(self._registration())

    def _keeps(self, topics: TopicStore | ClusterCatalog, topic: str, partition: int) -> bool:
        if self.meta is None:
            return topics.has_partition(topic, partition)
        state = self.meta.topics.get(topic)
        return (
            state is not None
            and partition < len(state.partitions)
            and (self.config.node_id in state.partitions[partition].replicas)
        )

    async def _controlled_shutdown(self) -> None:
        """Tell the controller this broker is leaving and wait (bounded) until it leads nothing."""
        if self.meta is None or self.replicas is None or not self.config.controlled_shutdown:
            return
        try:
            await self.meta.register(self._registration(shutting_down=True))
        except Exception as exc:  # the store may be gone: shut down anyway
            log.warning("controlled shutdown: could not announce it: %s", exc)
            return
        deadline = time.monotonic() + self.config.controlled_shutdown_timeout_ms / 1000
        meta = self.meta
        while time.monotonic() < deadline and any(b != self.config.node_id for b in meta.live_brokers()):
            leading = [tp for tp, r in self.replicas.replicas.items() if r.is_leader and len(r.state.isr) > 1]
            if not leading:
                break
            await asyncio.sleep(0.1)
        still = sum(1 for r in self.replicas.replicas.values() if r.is_leader)
        log.info("controlled shutdown: leadership handed over (%d partitions still led here)", still)

    def _coordinator(self, topics: TopicStore | ClusterCatalog) -> GroupCoordinator:
        c = self.config
        assert self.logs is not None
        replicas = self.replicas
        cluster = self.meta is not None and replicas is not None

        def leader_log(partition: int) -> tuple[PartitionLog, int]:
            assert replicas is not None
            replica = replicas.leader(OFFSETS_TOPIC, partition)
            return replica.log, replica.leader_epoch

        def appended(partition: int) -> None:
            assert replicas is not None
            replica = replicas.replicas.get((OFFSETS_TOPIC, partition))
            if replica is not None:
                replicas.appended(replica)

        store = OffsetsStore(
            topics,
            self.logs,
            c.offsets_topic_partitions,
            replication_factor=c.offsets_topic_replication_factor,
            leader_log=leader_log if cluster else None,
            appended=appended if cluster else None,
        )
        coordinator = GroupCoordinator(
            store,
            GroupSettings(
                c.group_initial_rebalance_delay_ms,
                c.group_min_session_timeout_ms,
                c.group_max_session_timeout_ms,
            ),
            self.metrics.observe,
        )
        if cluster and replicas is not None:

            def owns(group_id: str) -> bool:
                replica = replicas.replicas.get((OFFSETS_TOPIC, partition_for(group_id, store.num_partitions)))
                return replica is not None and replica.is_leader

            def leadership(tp: tuple[str, int], leader: bool) -> None:
                if tp[0] != OFFSETS_TOPIC:
                    return
                if leader:
                    coordinator.load([tp[1]])
                else:
                    coordinator.unload(tp[1])

            coordinator.owns = owns
            replicas.leadership_listeners.append(leadership)
        else:
            coordinator.load()
        self.metrics.group_rows = lambda: _group_rows(coordinator, self.logs)
        return coordinator

    def _new_connection(
        self, ctx: BrokerContext, zero_copy: bool, mechanisms: tuple[str, ...] | None
    ) -> KafkaConnection:
        sasl = SaslSession(mechanisms, ctx.credentials) if mechanisms else None
        conn = KafkaConnection(
            ctx,
            self.config.socket_request_max_bytes,
            self._closed,
            self.metrics.observe,
            zero_copy,
            sasl,
            self.config.failed_auth_delay_ms / 1000,
            self.auth_limiter,
        )
        self.connections.add(conn)
        self.metrics.observe("connections", len(self.connections))
        return conn

    def _closed(self, conn: KafkaConnection) -> None:
        self.connections.discard(conn)
        self.metrics.observe("connections", len(self.connections))

    async def _reap_idle(self) -> None:
        idle = self.config.connections_max_idle_ms / 1000
        while True:
            await asyncio.sleep(min(idle / 4, 30))
            for conn in list(self.connections):
                conn.close_if_idle(idle)

    async def _snapshot_producers(self) -> None:
        """Producer state snapshots at the checkpoint interval (and once more at shutdown)."""
        while True:
            await asyncio.sleep(self.config.checkpoint_interval_ms / 1000)
            self._write_producer_snapshots()

    def _write_producer_snapshots(self) -> None:
        if self.ctx is not None and self.logs is not None:
            try:
                self.ctx.idempotence.snapshot(self.logs.logs, int(time.time() * 1000))
            except OSError as exc:
                log.error("producer state snapshot failed: %s", exc)

    async def stop(self) -> None:
        """Hand leadership over (cluster members), stop accepting, drain in-flight requests
        (bounded), close, flush and checkpoint, leave the cluster."""
        await self._controlled_shutdown()
        if self.admin is not None:
            await self.admin.stop(1)
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + self.config.shutdown_timeout_ms / 1000
        # Bounded polling of every connection's queue: simpler than an event per connection, and brief.
        while any(c.busy for c in self.connections) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.shutdown()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
        for task in (self._reaper, self._snapshotter):
            if task is not None:
                task.cancel()
        self._write_producer_snapshots()
        if self.controller is not None:
            await self.controller.stop()
        if self.replicas is not None:
            await self.replicas.close()
        if self.logs is not None:
            await self.logs.close()
        if self.meta is not None:
            await self.meta.close()
        if self.store is not None:
            await self.store.close()  # ends the session: the registration goes with it
        log.info("broker stopped: logs flushed and checkpointed")


def _group_rows(coordinator: GroupCoordinator, logs: LogManager | None) -> list[GroupRow]:
    """A snapshot of groups and their lag for the metrics thread (copies: the loop keeps mutating)."""
    rows: list[GroupRow] = []
    for group_id in list(coordinator.groups):
        group = coordinator.groups.get(group_id)
        if group is None:
            continue
        partitions = []
        for (topic, partition), entry in list(coordinator.store.offsets.get(group_id, {}).items()):
            plog = logs.get(topic, partition) if logs is not None else None
            if plog is not None:
                partitions.append((topic, partition, entry.offset, plog.log_end_offset))
        rows.append((group_id, group.state.value, len(group.members), partitions))
    return rows

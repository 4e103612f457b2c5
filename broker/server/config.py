"""Broker configuration from a Kafka-style properties file, then ``TIDELOG_*`` environment
variables, then command-line overrides (later wins). Names are Kafka's where Kafka has one.

Environment: ``TIDELOG_LOG_RETENTION_MS=1000`` sets ``log.retention.ms`` (upper case, dots as
underscores). Unknown names are refused with a clear message.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tidelog.broker.log.config import InvalidConfigError, LogConfig
from tidelog.broker.security import acl, sasl
from tidelog.broker.security.sasl_client import LOGIN_MODULES, SaslLogin
from tidelog.broker.server import admin_security, config_providers, tls
from tidelog.broker.server.listeners import Endpoint, Listeners, build_listeners

LOOPBACK = Endpoint("PLAINTEXT", "127.0.0.1", 9092)
_SASL_KEY = re.compile(r"^(listener\.name\.[a-z0-9_-]+\.)?sasl\.enabled\.mechanisms$")
_JAAS_KEY = re.compile(r"^(listener\.name\.[a-z0-9_-]+\.[a-z0-9-]+\.)?sasl\.jaas\.config$")

# broker property -> topic config it sets the default of
LOG_DEFAULTS = {
    "log.segment.bytes": "segment.bytes",
    "log.roll.ms": "segment.ms",
    "log.roll.jitter.ms": "segment.jitter.ms",
    "log.index.size.max.bytes": "segment.index.bytes",
    "log.index.interval.bytes": "index.interval.bytes",
    "log.retention.ms": "retention.ms",
    "log.retention.bytes": "retention.bytes",
    "log.cleanup.policy": "cleanup.policy",
    "log.cleaner.delete.retention.ms": "delete.retention.ms",
    "log.cleaner.min.compaction.lag.ms": "min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms": "max.compaction.lag.ms",
    "log.cleaner.min.cleanable.ratio": "min.cleanable.dirty.ratio",
    "log.flush.interval.messages": "flush.messages",
    "log.flush.interval.ms": "flush.ms",
    "message.max.bytes": "max.message.bytes",
    "log.message.timestamp.type": "message.timestamp.type",
    "log.message.timestamp.before.max.ms": "message.timestamp.before.max.ms",
    "log.message.timestamp.after.max.ms": "message.timestamp.after.max.ms",
    "log.segment.delete.delay.ms": "file.delete.delay.ms",
}
HOURS = {"log.retention.hours": "log.retention.ms", "log.roll.hours": "log.roll.ms"}
MINUTES = {"log.retention.minutes": "log.retention.ms"}

BROKER_KEYS = {
    "node.id",
    "broker.id",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "log.dirs",
    "log.dir",
    "num.partitions",
    "default.replication.factor",
    "auto.create.topics.enable",
    "socket.request.max.bytes",
    "connections.max.idle.ms",
    "metrics.port",
    "metrics.host",
    "broker.rack",
    "fetch.max.bytes",
    "log.retention.check.interval.ms",
    "log.flush.offset.checkpoint.interval.ms",
    "log.cleaner.enable",
    "log.cleaner.backoff.ms",
    "log.max.open.files",
    "shutdown.timeout.ms",
    "fetch.sendfile.enable",
    "producer.id.expiration.ms",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "metadata.store",
    "min.insync.replicas",
    "metadata.session.timeout.ms",
    "replica.lag.time.max.ms",
    "replica.fetch.wait.max.ms",
    "replica.fetch.max.bytes",
    "unclean.leader.election.enable",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "controlled.shutdown.enable",
    "controlled.shutdown.timeout.ms",
    "admin.listener",
    "connection.failed.authentication.delay.ms",
    "connection.failed.authentication.max.per.minute",
    "sasl.mechanism.inter.broker.protocol",
    "authorizer.class.name",
    "super.users",
    "allow.everyone.if.no.acl.found",
}
# authorizer.class.name values that turn on Tidelog's authorizer (Kafka's ACL semantics).
AUTHORIZERS = (
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
    "tidelog",
)


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    node_id: int = 0
    # listeners, advertised.listeners, listener.security.protocol.map, inter.broker.listener.name
    listeners: Listeners = field(
        default_factory=lambda: Listeners((LOOPBACK,), (LOOPBACK,), {"PLAINTEXT": "PLAINTEXT"}, "PLAINTEXT")
    )
    server_tls: dict[str, ssl.SSLContext] = field(default_factory=dict)  # SSL listener -> its context
    client_tls: ssl.SSLContext | None = None  # to other brokers, when the inter-broker listener is SSL
    sasl_mechanisms: dict[str, tuple[str, ...]] = field(default_factory=dict)  # SASL listener -> mechanisms
    failed_auth_delay_ms: int = 100  # connection.failed.authentication.delay.ms
    failed_auth_limit: int = 30  # connection.failed.authentication.max.per.minute (Tidelog's; 0 = no limit)
    inter_broker_sasl: SaslLogin | None = None  # this broker's login to the others (a SASL inter-broker listener)
    authorizer: bool = False  # authorizer.class.name set: ACLs are enforced
    super_users: frozenset[str] = frozenset()  # super.users
    allow_everyone_if_no_acl: bool = False  # allow.everyone.if.no.acl.found
    data_dir: Path = Path("data")
    num_partitions: int = 1
    default_replication_factor: int = 1
    auto_create_topics: bool = True
    socket_request_max_bytes: int = 104_857_600
    connections_max_idle_ms: int = 600_000
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9404  # 0 disables the endpoint
    rack: str | None = None
    fetch_max_bytes: int = 57_671_680
    retention_check_interval_ms: int = 300_000
    checkpoint_interval_ms: int = 60_000
    cleaner_enable: bool = True
    cleaner_backoff_ms: int = 15_000
    max_open_files: int = 1024
    shutdown_timeout_ms: int = 10_000
    sendfile: bool = True  # fetch.sendfile.enable (Tidelog's): zero-copy fetch responses
    producer_id_expiration_ms: int = 86_400_000
    offsets_topic_partitions: int = 50
    offsets_topic_replication_factor: int = 3
    group_initial_rebalance_delay_ms: int = 3000
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1_800_000
    # Cluster membership (Tidelog's names where Kafka has none): "standalone" (no store),
    # "etcd://HOST:PORT[,HOST:PORT]/CLUSTER" or "kubernetes://NAMESPACE/CLUSTER".
    metadata_store: str = "standalone"
    min_insync_replicas: int = 1  # min.insync.replicas: the default of topics that set none
    metadata_session_timeout_ms: int = 10_000
    replica_lag_time_max_ms: int = 30_000
    replica_fetch_wait_max_ms: int = 500
    replica_fetch_max_bytes: int = 1_048_576
    unclean_leader_election: bool = False
    auto_leader_rebalance: bool = True
    leader_imbalance_check_interval_s: int = 300
    controlled_shutdown: bool = True
    controlled_shutdown_timeout_ms: int = 30_000
    admin_listener: str = ""  # HOST:PORT of the gRPC admin API ("" = off)
    admin_security: admin_security.AdminSecurity = field(default_factory=admin_security.AdminSecurity)
    log_defaults: LogConfig = field(default_factory=LogConfig)

    # The inter-broker listener's addresses (the one a lone broker's messages and logs name).
    @property
    def listen_host(self) -> str:
        return self.listeners.bound_of(self.listeners.inter_broker).host

    @property
    def listen_port(self) -> int:
        return self.listeners.bound_of(self.listeners.inter_broker).port

    @property
    def advertised_host(self) -> str:
        return self.listeners.advertised_of(self.listeners.inter_broker).host

    @property
    def advertised_port(self) -> int:
        return self.listeners.advertised_of(self.listeners.inter_broker).port


def read_properties(path: Path) -> dict[str, str]:
    """Java properties, the subset Kafka's files use: ``key=value`` or ``key: value``, # and ! comments."""
    out: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidConfigError(f"{path}: {exc.strerror}") from None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if sep < 0:
            raise InvalidConfigError(f"{path}:{number}: expected key=value, got {raw!r}")
        out[line[:sep].strip()] = line[sep + 1 :].strip()
    return out


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``TIDELOG_LOG_RETENTION_MS`` -> ``log.retention.ms``. Only names of broker settings count:
    other ``TIDELOG_*`` variables (tools', tests') are none of the broker's business."""
    out = {}
    for key, value in environ.items():
        if key.startswith("TIDELOG_"):
            name = key[len("TIDELOG_") :].lower().replace("_", ".")
            if name in BROKER_KEYS or name in LOG_DEFAULTS or name in HOURS or name in MINUTES:
                out[name] = value
    return out


def _sasl_mechanisms(props: Mapping[str, str], listener: str) -> tuple[str, ...]:
    """``listener.name.<l>.sasl.enabled.mechanisms`` or ``sasl.enabled.mechanisms`` (default
    SCRAM-SHA-256,SCRAM-SHA-512: Kafka's GSSAPI default is not offered)."""
    value = props.get(
        f"listener.name.{listener.lower()}.sasl.enabled.mechanisms",
        props.get("sasl.enabled.mechanisms", "SCRAM-SHA-256,SCRAM-SHA-512"),
    )
    mechanisms = tuple(m.strip().upper() for m in value.split(",") if m.strip())
    unknown = [m for m in mechanisms if m not in sasl.SUPPORTED]
    if unknown or not mechanisms:
        raise InvalidConfigError(
            f"listener {listener}: sasl.enabled.mechanisms={value}: supported are {', '.join(sasl.SUPPORTED)}"
        )
    return mechanisms


def build(props: Mapping[str, str]) -> BrokerConfig:
    """Validate ``props`` (Kafka names) into a BrokerConfig; unknown names are INVALID_CONFIG."""
    props = dict(props)
    for name, target in HOURS.items():
        if name in props:
            props.setdefault(target, str(int(props.pop(name)) * 3_600_000))
    for name, target in MINUTES.items():
        if name in props:
            props.setdefault(target, str(int(props.pop(name)) * 60_000))
    unknown = sorted(
        k
        for k in props
        if k not in BROKER_KEYS
        and k not in LOG_DEFAULTS
        and not tls.is_tls_key(k)
        and not _SASL_KEY.match(k)
        and not _JAAS_KEY.match(k)
        and k not in admin_security.KEYS
    )
    if unknown:
        raise InvalidConfigError(f"unknown broker config: {', '.join(unknown)}")
    log_defaults = LogConfig.from_properties({LOG_DEFAULTS[k]: v for k, v in props.items() if k in LOG_DEFAULTS})
    listeners = build_listeners(
        props.get("listeners", "127.0.0.1:9092"),
        props.get("advertised.listeners"),
        props.get("listener.security.protocol.map"),
        props.get("inter.broker.listener.name"),
    )
    server_tls = {
        e.name: tls.server_context(tls.settings_for(props, e.name), e.name)
        for e in listeners.bound
        if listeners.protocols[e.name] in ("SSL", "SASL_SSL")
    }
    inter = listeners.inter_broker
    client_tls = tls.client_context(tls.settings_for(props, inter), inter) if inter in server_tls else None
    sasl_listeners = {
        e.name: _sasl_mechanisms(props, e.name)
        for e in listeners.bound
        if listeners.protocols[e.name].startswith("SASL_")
    }

    def integer(name: str, default: int) -> int:
        try:
            return int(props.get(name, default))
        except ValueError:
            raise InvalidConfigError(f"{name}={props[name]!r}: not an integer") from None

    def boolean(name: str, default: bool) -> bool:
        value = props.get(name, str(default).lower()).lower()
        if value not in ("true", "false"):
            raise InvalidConfigError(f"{name}={value!r}: expected true or false")
        return value == "true"

    return BrokerConfig(
        node_id=integer("node.id", integer("broker.id", 0)),
        listeners=listeners,
        server_tls=server_tls,
        client_tls=client_tls,
        sasl_mechanisms=sasl_listeners,
        failed_auth_delay_ms=integer("connection.failed.authentication.delay.ms", 100),
        failed_auth_limit=integer("connection.failed.authentication.max.per.minute", 30),
        inter_broker_sasl=_inter_broker_sasl(props, listeners, sasl_listeners),
        authorizer=_authorizer(props.get("authorizer.class.name", "")),
        super_users=_super_users(props.get("super.users", "")),
        allow_everyone_if_no_acl=boolean("allow.everyone.if.no.acl.found", False),
        data_dir=Path(props.get("log.dirs", props.get("log.dir", "data")).split(",")[0]),
        num_partitions=integer("num.partitions", 1),
        default_replication_factor=integer("default.replication.factor", 1),
        auto_create_topics=boolean("auto.create.topics.enable", True),
        socket_request_max_bytes=integer("socket.request.max.bytes", 104_857_600),
        connections_max_idle_ms=integer("connections.max.idle.ms", 600_000),
        metrics_host=props.get("metrics.host", "127.0.0.1"),
        metrics_port=integer("metrics.port", 9404),
        rack=props.get("broker.rack"),
        fetch_max_bytes=integer("fetch.max.bytes", 57_671_680),
        retention_check_interval_ms=integer("log.retention.check.interval.ms", 300_000),
        checkpoint_interval_ms=integer("log.flush.offset.checkpoint.interval.ms", 60_000),
        cleaner_enable=boolean("log.cleaner.enable", True),
        cleaner_backoff_ms=integer("log.cleaner.backoff.ms", 15_000),
        max_open_files=integer("log.max.open.files", 1024),
        shutdown_timeout_ms=integer("shutdown.timeout.ms", 10_000),
        sendfile=boolean("fetch.sendfile.enable", True),
        producer_id_expiration_ms=integer("producer.id.expiration.ms", 86_400_000),
        offsets_topic_partitions=integer("offsets.topic.num.partitions", 50),
        offsets_topic_replication_factor=integer("offsets.topic.replication.factor", 3),
        group_initial_rebalance_delay_ms=integer("group.initial.rebalance.delay.ms", 3000),
        group_min_session_timeout_ms=integer("group.min.session.timeout.ms", 6000),
        group_max_session_timeout_ms=integer("group.max.session.timeout.ms", 1_800_000),
        metadata_store=props.get("metadata.store", "standalone"),
        min_insync_replicas=integer("min.insync.replicas", 1),
        metadata_session_timeout_ms=integer("metadata.session.timeout.ms", 10_000),
        replica_lag_time_max_ms=integer("replica.lag.time.max.ms", 30_000),
        replica_fetch_wait_max_ms=integer("replica.fetch.wait.max.ms", 500),
        replica_fetch_max_bytes=integer("replica.fetch.max.bytes", 1_048_576),
        unclean_leader_election=boolean("unclean.leader.election.enable", False),
        auto_leader_rebalance=boolean("auto.leader.rebalance.enable", True),
        leader_imbalance_check_interval_s=integer("leader.imbalance.check.interval.seconds", 300),
        controlled_shutdown=boolean("controlled.shutdown.enable", True),
        controlled_shutdown_timeout_ms=integer("controlled.shutdown.timeout.ms", 30_000),
        admin_listener=props.get("admin.listener", ""),
        admin_security=admin_security.build(props),
        log_defaults=log_defaults,
    )


def _inter_broker_sasl(
    props: Mapping[str, str], listeners: Listeners, mechanisms: Mapping[str, tuple[str, ...]]
) -> SaslLogin | None:
    """The brokers' own login when they replicate over SASL: ``sasl.mechanism.inter.broker.protocol``
    and ``listener.name.<l>.<mechanism>.sasl.jaas.config`` (or ``sasl.jaas.config``)."""
    inter = listeners.inter_broker
    protocol = listeners.protocols[inter]
    if not protocol.startswith("SASL_"):
        return None
    mechanism = props.get("sasl.mechanism.inter.broker.protocol", "").strip().upper()
    if not mechanism:
        raise InvalidConfigError(
            f"inter.broker.listener.name={inter} is {protocol}: set sasl.mechanism.inter.broker.protocol "
            f"(one of {', '.join(mechanisms[inter])}) and the brokers' login in "
            f"listener.name.{inter.lower()}.<mechanism>.sasl.jaas.config"
        )
    if mechanism not in mechanisms[inter]:
        raise InvalidConfigError(
            f"sasl.mechanism.inter.broker.protocol={mechanism}: not enabled on listener {inter} "
            f"(sasl.enabled.mechanisms: {', '.join(mechanisms[inter])})"
        )
    key = f"listener.name.{inter.lower()}.{mechanism.lower()}.sasl.jaas.config"
    what = key if props.get(key) else "sasl.jaas.config"
    jaas = props.get(what)
    if not jaas:
        raise InvalidConfigError(
            f"inter.broker.listener.name={inter} is {protocol}: the brokers' own login is missing: set {key} "
            f"(or sasl.jaas.config) to '{LOGIN_MODULES.get(mechanism, '...')} required "
            'username="..." password="...";\''
        )
    return SaslLogin.from_jaas(mechanism, jaas, what)


def _authorizer(name: str) -> bool:
    if name and name not in AUTHORIZERS:
        raise InvalidConfigError(f"authorizer.class.name={name}: supported are {', '.join(AUTHORIZERS)}")
    return bool(name)


def _super_users(value: str) -> frozenset[str]:
    try:
        return acl.parse_principals(value)
    except ValueError as exc:
        raise InvalidConfigError(str(exc)) from None


def load(
    properties_files: Path | Sequence[Path] | None,
    overrides: Mapping[str, str],
    environ: Mapping[str, str] = os.environ,
) -> BrokerConfig:
    """Files (later ones win), then ``TIDELOG_*`` variables, then ``overrides``; then the config
    providers' variables (``${file:...}``, ``${env:...}``) are resolved."""
    files = [properties_files] if isinstance(properties_files, Path) else list(properties_files or ())
    props: dict[str, str] = {}
    for path in files:
        props.update(read_properties(path))
    props.update(from_environment(environ))
    props.update(overrides)
    return build(config_providers.resolve(props, environ, read_properties))

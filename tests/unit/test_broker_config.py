"""Broker configuration: properties file, then environment, then flags; Kafka's names; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidelog.broker.log.config import InvalidConfigError
from tidelog.broker.server import config


def test_properties_environment_and_overrides_layer(tmp_path: Path) -> None:
    props = tmp_path / "server.properties"
    props.write_text(
        "# a comment\nnode.id=3\nlisteners=PLAINTEXT://127.0.0.1:9500\nlog.dirs=/var/tmp/x\n"
        "log.retention.hours=2\nlog.segment.bytes=2097152\nnum.partitions: 4\nauto.create.topics.enable=false\n"
    )
    cfg = config.load(props, {"num.partitions": "6"}, environ={"TIDELOG_LOG_CLEANUP_POLICY": "compact"})
    assert (cfg.node_id, cfg.listen_host, cfg.listen_port) == (3, "127.0.0.1", 9500)
    assert cfg.data_dir == Path("/var/tmp/x")
    assert cfg.num_partitions == 6  # flag beats file
    assert cfg.auto_create_topics is False
    assert cfg.log_defaults.retention_ms == 2 * 3_600_000
    assert cfg.log_defaults.segment_bytes == 2 * 1024 * 1024
    assert cfg.log_defaults.cleanup_policy == frozenset({"compact"})
    assert (cfg.advertised_host, cfg.advertised_port) == ("127.0.0.1", 9500)


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"no.such.setting": "1"}, "unknown broker config: no.such.setting"),
        ({"num.partitions": "many"}, "not an integer"),
        ({"auto.create.topics.enable": "yes"}, "expected true or false"),
        ({"listeners": "nowhere"}, "expected NAME://HOST:PORT"),
        ({"log.segment.bytes": "10"}, "segment.bytes=10"),
        ({"log.cleanup.policy": "shred"}, "cleanup.policy"),
    ],
)
def test_bad_settings_are_refused_clearly(props: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        config.build(props)


def test_all_interfaces_advertise_loopback() -> None:
    cfg = config.build({"listeners": "PLAINTEXT://0.0.0.0:9092"})
    assert cfg.listen_host == "0.0.0.0"  # noqa: S104 - parsing only, nothing binds
    assert cfg.advertised_host == "127.0.0.1"


def test_cluster_settings_use_kafka_names() -> None:
    cfg = config.build(
        {
            "metadata.store": "etcd://127.0.0.1:2379/prod",
            "min.insync.replicas": "2",
            "replica.lag.time.max.ms": "10000",
            "unclean.leader.election.enable": "true",
            "admin.listener": "127.0.0.1:9093",
        }
    )
    assert cfg.metadata_store == "etcd://127.0.0.1:2379/prod"
    assert (cfg.min_insync_replicas, cfg.replica_lag_time_max_ms, cfg.unclean_leader_election) == (2, 10_000, True)
    assert cfg.admin_listener == "127.0.0.1:9093"


FILE_PROVIDER = {
    "config.providers": "file,env",
    "config.providers.file.class": "org.apache.kafka.common.config.provider.FileConfigProvider",
    "config.providers.env.class": "org.apache.kafka.common.config.provider.EnvVarConfigProvider",
}


def test_later_files_win_and_config_providers_resolve(tmp_path: Path) -> None:
    shared, own, ports = tmp_path / "server.properties", tmp_path / "broker-2.properties", tmp_path / "ext.properties"
    shared.write_text("num.partitions=3\nlisteners=INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9094\n")
    own.write_text("num.partitions=5\n")
    ports.write_text("broker.2.port=31002\n")
    overrides = {
        **FILE_PROVIDER,
        "listener.security.protocol.map": "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
        "advertised.listeners": f"INTERNAL://b2.svc:9092,EXTERNAL://${{env:HOST_IP}}:${{file:{ports}:broker.2.port}}",
    }
    cfg = config.load([shared, own], overrides, environ={"HOST_IP": "10.1.2.3"})
    assert cfg.num_partitions == 5
    assert [str(e) for e in cfg.listeners.advertised] == ["INTERNAL://b2.svc:9092", "EXTERNAL://10.1.2.3:31002"]


@pytest.mark.parametrize(
    ("value", "providers", "message"),
    [
        ("${file:/no/such/file:k}", FILE_PROVIDER, "/no/such/file: No such file or directory"),
        ("${env:NOT_SET_ANYWHERE}", FILE_PROVIDER, "no environment variable NOT_SET_ANYWHERE"),
        ("${vault:secret:k}", FILE_PROVIDER, "no config provider 'vault' is declared"),
        ("x", {"config.providers": "x", "config.providers.x.class": "com.example.X"}, "supported are"),
        ("x", {"config.providers": "x"}, "config.providers.x.class is not set"),
    ],
)
def test_unresolvable_variables_are_refused(value: str, providers: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        config.load(None, {**providers, "broker.rack": value}, environ={})

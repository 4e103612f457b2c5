"""``tidelog broker``: run a broker until SIGTERM or SIGINT: standalone by default, or a cluster
member with ``--metadata etcd://...`` / ``kubernetes://...`` (SIGTERM then hands leadership over
before exiting)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
from pathlib import Path

import uvloop

from tidelog.broker.server import config as broker_config
from tidelog.broker.server.broker import Broker

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("broker", help="run a standalone Kafka-compatible broker")
    p.add_argument(
        "--config",
        type=Path,
        action="append",
        default=[],
        help="a Kafka-style server.properties file (repeatable: later files win)",
    )
    p.add_argument("--data-dir", help="where partition logs live (log.dirs)")
    p.add_argument(
        "--listen",
        help="listeners: HOST:PORT or NAME://HOST:PORT[,NAME://HOST:PORT...], default 127.0.0.1:9092",
    )
    p.add_argument(
        "--advertise", help="advertised.listeners: the address clients are told, per listener name (same syntax)"
    )
    p.add_argument("--metrics-port", help="Prometheus port (metrics.port, default 9404; 0 turns it off)")
    p.add_argument("--node-id", "--broker-id", dest="node_id", help="node.id (default 0)")
    p.add_argument(
        "--metadata",
        help="metadata.store: standalone (default), etcd://HOST:PORT[,HOST:PORT]/CLUSTER or kubernetes://NAMESPACE/CLUSTER",
    )
    p.add_argument("--admin", help="HOST:PORT of the gRPC admin API (admin.listener; off by default)")
    p.add_argument("--rack", help="broker.rack")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any broker property")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, str] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"tidelog broker: --set {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = value.strip()
    for flag, key in (
        ("data_dir", "log.dirs"),
        ("listen", "listeners"),
        ("advertise", "advertised.listeners"),
        ("metrics_port", "metrics.port"),
        ("node_id", "node.id"),
        ("metadata", "metadata.store"),
        ("admin", "admin.listener"),
        ("rack", "broker.rack"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = str(value)
    cfg = broker_config.load(args.config, overrides)
    uvloop.run(_serve(cfg))
    return 0


async def _serve(cfg: broker_config.BrokerConfig) -> None:
    broker = Broker(cfg)
    await broker.start()
    gc.freeze()  # start-up objects never need collecting: keep them out of the collector's way
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await broker.stop()

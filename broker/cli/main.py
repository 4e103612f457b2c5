"""The ``tidelog`` command: entry point and sub-command dispatch.

Sub-commands so far (the Kafka server arrives with the standalone-broker issue):

* ``tidelog log open --data-dir DIR``: open (and recover) every partition log in DIR, print a
  summary per partition, and keep the directory's background work running until interrupted.
* ``tidelog log dump SEGMENT.log``: print every batch header of a segment file, like Kafka's
  ``kafka-dump-log``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tidelog.broker.log import scan
from tidelog.broker.log.manager import LogManager
from tidelog.broker.protocol.errors import KafkaError


def _summary(manager: LogManager) -> None:
    print(f"data directory {manager.data_dir}: {len(manager.logs)} partition log(s)")
    for (topic, partition), plog in sorted(manager.logs.items()):
        print(
            f"  {topic}-{partition}: offsets [{plog.log_start_offset}, {plog.log_end_offset}) "
            f"segments={len(plog.segments)} bytes={plog.size_bytes} recovery_point={plog.recovery_point}"
        )


async def _serve_logs(data_dir: Path) -> None:
    manager = LogManager.open(data_dir)
    _summary(manager)
    manager.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("log manager running (the Kafka listener is not built yet); Ctrl-C to stop", flush=True)
    await stop.wait()
    await manager.close()
    print("flushed and checkpointed; bye")


def _dump(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        try:
            for pos, header in scan.verified(fd, 0, size, 1 << 30):
                print(
                    f"position={pos} baseOffset={header.base_offset} lastOffset={header.last_offset} "
                    f"count={header.records_count} size={header.size} codec={header.compression} "
                    f"maxTimestamp={header.max_timestamp} epoch={header.partition_leader_epoch} "
                    f"producerId={header.producer_id} crc={header.crc:#010x}"
                )
        except scan.TornBatchError as exc:
            print(f"stopped: {exc}", file=sys.stderr)
            return 1
    finally:
        os.close(fd)
    return 0


def _open(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_logs(args.data_dir))
    return 0


def _dump_cmd(args: argparse.Namespace) -> int:
    return _dump(args.segment)


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree. Each sub-command sets ``func(args) -> exit code``."""
    parser = argparse.ArgumentParser(prog="tidelog", description="Tidelog: a Kafka-compatible streaming log")
    sub = parser.add_subparsers(dest="command", required=True)
    log_cmd = sub.add_parser("log", help="work with partition logs on disk")
    log_sub = log_cmd.add_subparsers(dest="action", required=True)
    open_cmd = log_sub.add_parser("open", help="open and recover a data directory, then run its background work")
    open_cmd.add_argument("--data-dir", type=Path, default=Path("data"))
    open_cmd.set_defaults(func=_open)
    dump_cmd = log_sub.add_parser("dump", help="print the batches of a segment file")
    dump_cmd.add_argument("segment", type=Path)
    dump_cmd.set_defaults(func=_dump_cmd)
    for module in _command_modules():
        module.register(sub)
    return parser


def _command_modules() -> list[Any]:
    """Sub-command modules that exist in this build (each has ``register(subparsers)``)."""
    # gRPC's core, unless told otherwise before it loads, prints INFO lines on stderr (a failed TLS
    # handshake: the CLI's own one-line error says it); the CLI's and the broker's logs suffice.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    modules = []
    # tidelog.operator.main: `tidelog operator` (imported by name: it loads kopf only when it runs).
    names = ("tidelog.broker.cli.clientcmds", "tidelog.broker.cli.brokercmd", "tidelog.broker.cli.clustercmds",
             "tidelog.operator.main")  # fmt: skip
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return modules


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (KafkaError, OSError) as exc:
        print(f"tidelog: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

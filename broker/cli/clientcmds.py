"""Client sub-commands of ``tidelog``: ``topics``, ``produce``, ``consume``, over the Kafka protocol.

Each command is a thin shell around ``tidelog.broker.client``: parse arguments, run one coroutine,
print the outcome, exit 0 on success. Failures print one line (``tidelog: ...``) and exit non-zero.

* ``tidelog topics create NAME [--partitions N] [--replication-factor R] [--config K=V ...]``
* ``tidelog topics list`` / ``describe [NAME ...]`` / ``delete NAME ...``
* ``tidelog topics alter NAME [--partitions N] [--config K=V ...] [--delete-config K ...]``
* ``tidelog produce TOPIC [--key K] [--partition P] [--acks N] [--compression C]``: one record
  per stdin line
* ``tidelog consume TOPIC [--from-beginning|--offset N|--timestamp T] [--partition P]
  [--max-messages N] [--timeout-ms MS] [--print-key] [--print-offset]``

All take ``--bootstrap HOST:PORT`` (default 127.0.0.1:9092).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from tidelog.broker.cli import client_config
from tidelog.broker.client import (
    EARLIEST,
    LATEST,
    Admin,
    Fetcher,
    KafkaClient,
    Producer,
    ProducerRecord,
    TopicPartition,
    list_offsets,
)
from tidelog.broker.protocol import codecs
from tidelog.broker.protocol.errors import KafkaError, for_code

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
PRODUCE_BATCH = 1000

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _run(command: Command) -> Callable[[argparse.Namespace], int]:
    """Wrap an async command: run it, turn expected failures into one line and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(command(args))
        except KeyboardInterrupt:
            return 130
        except (KafkaError, OSError, ValueError) as exc:
            print(f"tidelog {args.command}: {exc}", file=sys.stderr)
            return 1

    return run


def _config_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _client(args: argparse.Namespace) -> KafkaClient:
    security = client_config.load(args.command_config) if args.command_config else client_config.ClientSecurity()
    bootstrap = args.bootstrap or security.bootstrap or DEFAULT_BOOTSTRAP
    return KafkaClient(bootstrap, request_timeout=args.request_timeout_ms / 1000, ssl=security.ssl,
                       authenticate=security.authenticate)  # fmt: skip


# -- topics -----------------------------------------------------------------------------------


async def _topics_create(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        count = await Admin(client).create_topic(args.name, args.partitions, args.replication_factor, dict(args.config))
    print(f"created topic {args.name}" + (f" with {count} partition(s)" if count > 0 else ""))
    return 0


async def _topics_list(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        for name in await Admin(client).list_topics(include_internal=args.internal):
            print(name)
    return 0


async def _topics_describe(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        admin = Admin(client)
        names = args.names or await admin.list_topics()
        for name in names:
            info = await admin.describe_topic(name)
            configs = await admin.describe_configs(name)
            overrides = ",".join(f"{c.name}={c.value}" for c in configs.values() if c.is_override)
            topic_id = info.topic_id or "-"
            print(f"Topic: {name}\tTopicId: {topic_id}\tPartitionCount: {len(info.partitions)}\tConfigs: {overrides}")
            for p in sorted(info.partitions.values(), key=lambda p: p.partition):
                replicas = ",".join(map(str, p.replicas))
                isr = ",".join(map(str, p.isr))
                print(
                    f"\tTopic: {name}\tPartition: {p.partition}\tLeader: {p.leader}\tReplicas: {replicas}\tIsr: {isr}"
                )
    return 0


async def _topics_delete(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        await Admin(client).delete_topics(args.names)
    for name in args.names:
        print(f"deleted topic {name}")
    return 0


async def _topics_alter(args: argparse.Namespace) -> int:
    if args.partitions is None and not args.config and not args.delete_config:
        raise ValueError("nothing to alter: give --partitions, --config or --delete-config")
    async with _client(args) as client:
        admin = Admin(client)
        if args.partitions is not None:
            await admin.create_partitions(args.name, args.partitions)
            print(f"topic {args.name} now has {args.partitions} partition(s)")
        if args.config or args.delete_config:
            await admin.alter_configs(args.name, dict(args.config), args.delete_config)
            print(f"altered configs of topic {args.name}")
    return 0


# -- produce ----------------------------------------------------------------------------------


def _chunks(stream: BinaryIO, size: int) -> Iterator[list[bytes]]:
    """Lines of ``stream`` (newline stripped) in lists of up to ``size``; one by one on a terminal."""
    size = 1 if stream.isatty() else size
    chunk: list[bytes] = []
    for line in stream:
        chunk.append(line.rstrip(b"\r\n") if line.endswith(b"\n") else line)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _produce(args: argparse.Namespace) -> int:
    key = args.key.encode() if args.key is not None else None
    separator = args.key_separator.encode() if args.key_separator else None
    total = 0
    async with _client(args) as client:
        producer = Producer(client, acks=args.acks, compression=args.compression, timeout_ms=args.request_timeout_ms)
        loop = asyncio.get_running_loop()
        chunks = _chunks(sys.stdin.buffer, PRODUCE_BATCH)
        while True:
            chunk = await loop.run_in_executor(None, next, chunks, None)
            if chunk is None:
                break
            records = []
            for line in chunk:
                record_key = key
                if separator is not None and separator in line:
                    record_key, line = line.split(separator, 1)  # noqa: PLW2901
                records.append(ProducerRecord(line, record_key, args.partition))
            await producer.send(args.topic, records)
            total += len(records)
    print(f"produced {total} record(s) to {args.topic}", file=sys.stderr)
    return 0


# -- consume ----------------------------------------------------------------------------------


async def _start_offsets(client: KafkaClient, args: argparse.Namespace) -> dict[TopicPartition, int]:
    partitions = [args.partition] if args.partition is not None else await client.partitions_for(args.topic)
    tps = [TopicPartition(args.topic, p) for p in partitions]
    if args.offset is not None:
        return dict.fromkeys(tps, args.offset)
    query = EARLIEST if args.from_beginning else LATEST
    if args.timestamp is not None:
        query = args.timestamp
    found = await list_offsets(client, dict.fromkeys(tps, query))
    if args.timestamp is not None:
        # No record at or after the timestamp: start at the end (nothing to read yet).
        ends = await list_offsets(client, dict.fromkeys(tps, LATEST))
        return {tp: found[tp].offset if found[tp].offset >= 0 else ends[tp].offset for tp in tps}
    return {tp: found[tp].offset for tp in tps}


async def _consume(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    seen = 0
    async with _client(args) as client:
        positions = await _start_offsets(client, args)
        fetcher = Fetcher(client, max_wait_ms=min(500, args.timeout_ms) if args.timeout_ms else 500)
        last_data = time.monotonic()
        while args.max_messages is None or seen < args.max_messages:
            got = False
            for tp, part in sorted((await fetcher.fetch(positions, raise_errors=False)).items()):
                if part.error_code:
                    error = for_code(part.error_code)
                    if not error.retriable:
                        raise error(f"Fetch {tp} at offset {positions[tp]}")
                    continue  # leadership moving: the fetcher refreshed metadata, ask again
                for record in part.records():
                    if args.max_messages is not None and seen >= args.max_messages:
                        break
                    prefix = b""
                    if args.print_offset:
                        prefix += f"{tp.partition}:{record.offset}\t".encode()
                    if args.print_key:
                        prefix += (record.key if record.key is not None else b"null") + b"\t"
                    out.write(prefix + (record.value if record.value is not None else b"null") + b"\n")
                    seen += 1
                    got = True
                    positions[tp] = record.offset + 1
                else:
                    positions[tp] = max(positions[tp], part.next_offset)
            out.flush()
            now = time.monotonic()
            if got:
                last_data = now
            elif args.timeout_ms is not None and (now - last_data) * 1000 >= args.timeout_ms:
                break
    print(f"consumed {seen} record(s)", file=sys.stderr)
    return 0


# -- registration -----------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help=f"a broker to start from (default: the config's bootstrap.servers, else {DEFAULT_BOOTSTRAP})",
    )
    parser.add_argument(
        "--command-config",
        type=Path,
        metavar="FILE",
        help="Kafka client properties: security.protocol, sasl.mechanism, sasl.jaas.config, ssl.*",
    )
    parser.add_argument("--request-timeout-ms", type=int, default=30_000, metavar="MS", help="per-request deadline")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``topics``, ``produce`` and ``consume`` to the ``tidelog`` command tree."""
    topics = sub.add_parser("topics", help="create, list, describe, alter and delete topics")
    tsub = topics.add_subparsers(dest="action", required=True)

    create = tsub.add_parser("create", help="create a topic")
    create.add_argument("name")
    create.add_argument("--partitions", type=int, default=-1, help="default: the broker's num.partitions")
    create.add_argument("--replication-factor", type=int, default=-1, help="default: the broker's default")
    create.add_argument("--config", type=_config_pair, action="append", default=[], metavar="NAME=VALUE")
    create.set_defaults(func=_run(_topics_create))

    lst = tsub.add_parser("list", help="list topic names")
    lst.add_argument("--internal", action="store_true", help="include internal topics")
    lst.set_defaults(func=_run(_topics_list))

    describe = tsub.add_parser("describe", help="partitions, leaders, replicas and config overrides")
    describe.add_argument("names", nargs="*", metavar="NAME", help="default: every topic")
    describe.set_defaults(func=_run(_topics_describe))

    delete = tsub.add_parser("delete", help="delete topics")
    delete.add_argument("names", nargs="+", metavar="NAME")
    delete.set_defaults(func=_run(_topics_delete))

    alter = tsub.add_parser("alter", help="add partitions, set or reset configs")
    alter.add_argument("name")
    alter.add_argument("--partitions", type=int, help="new total partition count (grow only)")
    alter.add_argument("--config", type=_config_pair, action="append", default=[], metavar="NAME=VALUE")
    alter.add_argument("--delete-config", action="append", default=[], metavar="NAME", help="reset to default")
    alter.set_defaults(func=_run(_topics_alter))

    for parser in (create, lst, describe, delete, alter):
        _common(parser)

    produce = sub.add_parser("produce", help="send stdin lines as records, one per line")
    produce.add_argument("topic")
    produce.add_argument("--key", help="key of every record")
    produce.add_argument("--key-separator", metavar="SEP", help="split each line at SEP into key and value")
    produce.add_argument("--partition", type=int, help="default: by key (Java's murmur2), else round-robin")
    produce.add_argument("--acks", type=int, choices=(0, 1, -1), default=-1)
    produce.add_argument("--compression", choices=sorted(codecs.BY_NAME), default="none")
    _common(produce)
    produce.set_defaults(func=_run(_produce))

    consume = sub.add_parser("consume", help="print records of a topic")
    consume.add_argument("topic")
    start = consume.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="start at the earliest offset")
    start.add_argument("--offset", type=int, help="start at this offset (with --partition, or in every partition)")
    start.add_argument("--timestamp", type=int, metavar="MS", help="start at the first record at or after MS")
    consume.add_argument("--partition", type=int, help="default: every partition")
    consume.add_argument("--max-messages", type=int, metavar="N", help="stop after N records")
    consume.add_argument("--timeout-ms", type=int, metavar="MS", help="stop after MS without a record")
    consume.add_argument("--print-key", action="store_true")
    consume.add_argument("--print-offset", action="store_true", help="prefix PARTITION:OFFSET")
    _common(consume)
    consume.set_defaults(func=_run(_consume))

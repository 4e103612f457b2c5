"""``tidelog cluster ...``: the control-plane commands, over the gRPC admin API.

Each command is a thin shell around ``tidelog.broker.admin.client.AdminClient``: parse arguments,
make one call, print a table (or ``--json``), exit 0. Failures print one line with the Kafka error
name (``tidelog cluster describe-topic: UNKNOWN_TOPIC_OR_PARTITION (3): ...``) and exit 1;
``can-restart`` also exits 1 when the broker may not restart now. Neighbours: ``main`` (which calls
``register``), ``clientcmds`` (the same shape for the Kafka-protocol commands).

* ``describe`` / ``topics`` / ``describe-topic NAME`` / ``reassignments``
* ``create-topic NAME [--partitions N] [--replication-factor R] [--config K=V ...]
  [--replica-assignment 1:2,2:3] [--validate-only]``
* ``alter-topic NAME [--partitions N] [--replication-factor R] [--config K=V ...] [--delete-config K ...]``
* ``delete-topic NAME``
* ``reassign [--move TOPIC:PARTITION=1,2,3 ...] [--cancel TOPIC:PARTITION ...] [--file PLAN.json]
  [--throttle BYTES_PER_S]`` (the file in kafka-reassign-partitions' JSON format)
* ``drain BROKER_ID`` / ``rebalance`` / ``can-restart BROKER_ID``
* ``set-user NAME [--mechanism SCRAM-SHA-512] [--iterations N]`` (the password on standard input, so
  it never shows in a process list) / ``delete-user NAME`` / ``users``: SCRAM users
* ``set-acls PRINCIPAL --file ACLS.json`` (exactly these bindings; ``[]`` removes them all) /
  ``acls [--principal PRINCIPAL]``; a binding is ``{"resourceType": "TOPIC", "resourceName":
  "orders", "patternType": "LITERAL", "operation": "READ", "permission": "ALLOW", "host": "*"}``

All take ``--admin HOST:PORT`` (default 127.0.0.1:9093), ``--timeout SECONDS`` and ``--json``; and,
for a protected admin API, ``--admin-ca FILE`` (turns TLS on), ``--admin-cert FILE`` /
``--admin-key FILE`` (mutual TLS; the key may sit in the cert file), ``--admin-server-name NAME`` and
``--admin-token-file FILE``. Each defaults to an environment variable: ``TIDELOG_ADMIN``,
``TIDELOG_ADMIN_CA``, ``TIDELOG_ADMIN_CERT``, ``TIDELOG_ADMIN_KEY``, ``TIDELOG_ADMIN_SERVER_NAME``,
``TIDELOG_ADMIN_TOKEN_FILE``. A refused token or a failed TLS handshake is one line and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from tidelog.broker.admin import model
from tidelog.broker.admin.client import AdminClient, ClientTls
from tidelog.broker.protocol.errors import KafkaError

DEFAULT_ADMIN = "127.0.0.1:9093"

Command = Callable[[AdminClient, argparse.Namespace], Coroutine[Any, Any, int]]


def _run(command: Command) -> Callable[[argparse.Namespace], int]:
    """Wrap an async command: open a client, run it, turn expected failures into one line, exit 1."""

    async def call(args: argparse.Namespace) -> int:
        async with _client(args) as admin:
            return await command(admin, args)

    def run(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(call(args))
        except KeyboardInterrupt:
            return 130
        except (KafkaError, OSError, ValueError) as exc:
            message = " ".join(str(exc).split())
            print(f"tidelog cluster {args.action}: {message}", file=sys.stderr)
            return 1

    return run


def _client(args: argparse.Namespace) -> AdminClient:
    """An ``AdminClient`` from ``--admin*`` flags: TLS if any of CA, certificate or server name is given."""
    tls = None
    if args.admin_ca or args.admin_cert or args.admin_key or args.admin_server_name:
        tls = ClientTls(
            Path(args.admin_ca) if args.admin_ca else None,
            Path(args.admin_cert) if args.admin_cert else None,
            Path(args.admin_key) if args.admin_key else None,
            args.admin_server_name or None,
        )
    token_file = Path(args.admin_token_file) if args.admin_token_file else None
    return AdminClient(args.admin, timeout=args.timeout, tls=tls, token_file=token_file)


def _print_json(value: Any) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    print(json.dumps(value, indent=2))


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _ids(ids: Sequence[int]) -> str:
    return ",".join(map(str, ids)) or "-"


def _int_list(text: str) -> list[int]:
    """``1,2,3`` (or ``1:2:3``) -> [1, 2, 3]; empty -> []."""
    try:
        return [int(part) for part in text.replace(":", ",").split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected broker ids like 1,2,3, got {text!r}") from None


def _config_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _topic_partition(text: str) -> tuple[str, int]:
    topic, sep, partition = text.rpartition(":")
    if not sep or not topic or not partition.isdigit():
        raise argparse.ArgumentTypeError(f"expected TOPIC:PARTITION, got {text!r}")
    return topic, int(partition)


def _move(text: str) -> model.Move:
    where, sep, replicas = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected TOPIC:PARTITION=BROKER,BROKER,..., got {text!r}")
    topic, partition = _topic_partition(where)
    return model.Move(topic, partition, _int_list(replicas))


def _assignment(text: str) -> list[list[int]]:
    """Kafka's ``--replica-assignment``: partitions separated by commas, replicas by colons."""
    try:
        return [[int(r) for r in part.split(":")] for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BROKER:BROKER,BROKER:BROKER,..., got {text!r}") from None


def _moves_from_file(path: Path) -> list[model.Move]:
    """kafka-reassign-partitions' JSON: ``{"version": 1, "partitions": [{"topic", "partition", "replicas"}]}``."""
    try:
        plan = json.loads(path.read_text())
        return [
            model.Move(p["topic"], int(p["partition"]), [int(r) for r in p["replicas"]]) for p in plan["partitions"]
        ]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a reassignment plan ({exc.__class__.__name__}: {exc})") from None


# -- commands -------------------------------------------------------------------------------------


async def _describe(admin: AdminClient, args: argparse.Namespace) -> int:
    cluster = await admin.describe_cluster()
    if args.json:
        _print_json(cluster)
        return 0
    print(f"cluster {cluster.cluster_id}  controller {cluster.controller_id}  brokers {len(cluster.brokers)}")
    print(f"under-replicated partitions {cluster.under_replicated}  offline partitions {cluster.offline}")
    rows = [
        [b.id, f"{b.host}:{b.port}", b.rack or "-", "yes" if b.alive else "no", b.state]
        + (["*"] if b.id == cluster.controller_id else [""])
        for b in cluster.brokers
    ]
    _print_table(["ID", "ADDRESS", "RACK", "ALIVE", "STATE", "CONTROLLER"], rows)
    return 0


async def _topics(admin: AdminClient, args: argparse.Namespace) -> int:
    names = sorted(await admin.list_topics())
    if args.json:
        _print_json(names)
    else:
        for name in names:
            print(name)
    return 0


def _show_topic(topic: model.TopicDesc) -> None:
    configs = ",".join(f"{k}={v}" for k, v in sorted(topic.configs.items())) or "-"
    print(f"topic {topic.name}  id {topic.topic_id}  partitions {len(topic.partitions)}  configs {configs}")
    rows = [
        [p.partition, p.leader, p.leader_epoch, _ids(p.replicas), _ids(p.isr), _ids(p.adding), _ids(p.removing)]
        for p in topic.partitions
    ]
    _print_table(["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "ADDING", "REMOVING"], rows)


async def _describe_topic(admin: AdminClient, args: argparse.Namespace) -> int:
    topic = await admin.describe_topic(args.name)
    if args.json:
        _print_json(topic)
    else:
        _show_topic(topic)
    return 0


async def _create_topic(admin: AdminClient, args: argparse.Namespace) -> int:
    topic = await admin.create_topic(
        args.name,
        args.partitions,
        args.replication_factor,
        dict(args.config),
        assignment=args.replica_assignment,
        validate_only=args.validate_only,
    )
    if args.json:
        _print_json(topic)
    else:
        print(("valid: would create" if args.validate_only else "created") + f" topic {topic.name}")
        _show_topic(topic)
    return 0


async def _alter_topic(admin: AdminClient, args: argparse.Namespace) -> int:
    topic = await admin.alter_topic(
        args.name,
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        set_configs=dict(args.config) or None,
        delete_configs=args.delete_config or None,
    )
    if args.json:
        _print_json(topic)
    else:
        print(f"altered topic {topic.name}")
        _show_topic(topic)
    return 0


async def _delete_topic(admin: AdminClient, args: argparse.Namespace) -> int:
    await admin.delete_topic(args.name)
    print(json.dumps({"deleted": args.name}) if args.json else f"deleted topic {args.name}")
    return 0


async def _reassign(admin: AdminClient, args: argparse.Namespace) -> int:
    moves = list(args.move) + [model.Move(t, p, []) for t, p in args.cancel]
    if args.file is not None:
        moves += _moves_from_file(args.file)
    if not moves:
        raise ValueError("nothing to do: give --move, --cancel or --file")
    await admin.reassign(moves, args.throttle)
    if args.json:
        _print_json([dataclasses.asdict(m) for m in moves])
    else:
        for m in moves:
            target = f"-> {_ids(m.replicas)}" if m.replicas else "cancelled"
            print(f"{m.topic}:{m.partition} {target}")
        print(f"started {len(moves)} partition reassignment(s)")
    return 0


async def _reassignments(admin: AdminClient, args: argparse.Namespace) -> int:
    found = await admin.list_reassignments()
    if args.json:
        _print_json([dataclasses.asdict(r) for r in found])
    elif not found:
        print("no reassignments in progress")
    else:
        rows = [[r.topic, r.partition, _ids(r.replicas), _ids(r.adding), _ids(r.removing)] for r in found]
        _print_table(["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"], rows)
    return 0


def _show_plan(what: str, plan: model.Plan, as_json: bool) -> None:
    if as_json:
        _print_json(plan)
        return
    print(f"{what}: {len(plan.moves)} partition move(s), {plan.leader_changes} leader change(s)")
    if plan.moves:
        _print_table(["TOPIC", "PARTITION", "REPLICAS"], [[m.topic, m.partition, _ids(m.replicas)] for m in plan.moves])


async def _drain(admin: AdminClient, args: argparse.Namespace) -> int:
    _show_plan(f"draining broker {args.broker_id}", await admin.drain(args.broker_id), args.json)
    return 0


async def _rebalance(admin: AdminClient, args: argparse.Namespace) -> int:
    _show_plan("rebalancing", await admin.rebalance(), args.json)
    return 0


async def _can_restart(admin: AdminClient, args: argparse.Namespace) -> int:
    check = await admin.can_restart(args.broker_id)
    if args.json:
        _print_json(check)
    elif check.ok:
        print(f"broker {check.broker_id} can restart now")
    else:
        print(f"broker {check.broker_id} cannot restart now:")
        for reason in check.reasons:
            print(f"  {reason}")
    return 0 if check.ok else 1


async def _set_user(admin: AdminClient, args: argparse.Namespace) -> int:
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise ValueError("no password on standard input")
    await admin.set_scram_user(args.name, args.mechanism, password, args.iterations)
    print(f"user {args.name}: {args.mechanism} credential set")
    return 0


async def _delete_user(admin: AdminClient, args: argparse.Namespace) -> int:
    deleted = await admin.delete_scram_user(args.name)
    print(f"user {args.name}: {'credentials deleted' if deleted else 'had no credentials'}")
    return 0


async def _users(admin: AdminClient, args: argparse.Namespace) -> int:
    users = await admin.list_scram_users()
    if args.json:
        _print_json([dataclasses.asdict(u) for u in users])
    else:
        _print_table(["USER", "MECHANISMS"], [[u.name, ",".join(u.mechanisms)] for u in users])
    return 0


ACL_KEYS = {"resourceType": "resource_type", "resourceName": "resource_name", "patternType": "pattern_type",
            "principal": "principal", "host": "host", "operation": "operation", "permission": "permission"}  # fmt: skip


def _acl_from_json(raw: Any, principal: str) -> model.AclDesc:
    if not isinstance(raw, dict) or not {"resourceType", "resourceName", "operation"} <= raw.keys():
        raise ValueError(f"an ACL needs resourceType, resourceName and operation: {raw!r}")
    unknown = set(raw) - set(ACL_KEYS)
    if unknown:
        raise ValueError(f"unknown ACL keys {sorted(unknown)} (known: {', '.join(ACL_KEYS)})")
    fields = {"pattern_type": "LITERAL", "host": "*", "permission": "ALLOW", "principal": principal}
    fields.update({ACL_KEYS[k]: str(v) for k, v in raw.items()})
    return model.AclDesc(**fields)


async def _set_acls(admin: AdminClient, args: argparse.Namespace) -> int:
    raw = json.loads(args.file.read_text())
    if not isinstance(raw, list):
        raise ValueError(f"{args.file}: a JSON list of bindings")  # noqa: TRY004 - reported as bad input, exit 1
    added, removed = await admin.set_acls(args.principal, [_acl_from_json(a, args.principal) for a in raw])
    print(f"{args.principal}: {added} binding(s) added, {removed} removed")
    return 0


async def _acls(admin: AdminClient, args: argparse.Namespace) -> int:
    found = await admin.list_acls(args.principal)
    if args.json:
        _print_json([{k: getattr(a, v) for k, v in ACL_KEYS.items()} for a in found])
    else:
        rows = [[a.principal, a.permission, a.operation, a.resource_type, a.pattern_type, a.resource_name, a.host]
                for a in found]  # fmt: skip
        _print_table(["PRINCIPAL", "PERMISSION", "OPERATION", "RESOURCE", "PATTERN", "NAME", "HOST"], rows)
    return 0


# -- the command tree -----------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``cluster`` and its actions to the ``tidelog`` command tree."""
    cluster = sub.add_parser("cluster", help="control-plane commands over the admin API (gRPC)")
    csub = cluster.add_subparsers(dest="action", required=True)

    def action(name: str, command: Command, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = csub.add_parser(name, help=help_text)
        env = os.environ.get
        parser.add_argument(
            "--admin", default=env("TIDELOG_ADMIN", DEFAULT_ADMIN), metavar="HOST:PORT", help="the admin API address"
        )
        protection = parser.add_argument_group("a protected admin API")
        protection.add_argument("--admin-ca", default=env("TIDELOG_ADMIN_CA"), metavar="FILE",
                                help="PEM CA bundle to check the broker's certificate with (turns TLS on)")  # fmt: skip
        protection.add_argument("--admin-cert", default=env("TIDELOG_ADMIN_CERT"), metavar="FILE",
                                help="PEM client certificate chain for mutual TLS (may hold the key too)")  # fmt: skip
        protection.add_argument("--admin-key", default=env("TIDELOG_ADMIN_KEY"), metavar="FILE",
                                help="PEM private key of --admin-cert")  # fmt: skip
        protection.add_argument("--admin-server-name", default=env("TIDELOG_ADMIN_SERVER_NAME"), metavar="NAME",
                                help="the name the broker's certificate must carry (if not the host)")  # fmt: skip
        protection.add_argument("--admin-token-file", default=env("TIDELOG_ADMIN_TOKEN_FILE"), metavar="FILE",
                                help="file whose first line is the bearer token to send")  # fmt: skip
        parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="per call")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        parser.set_defaults(func=_run(command))
        return parser

    action("describe", _describe, "brokers, controller, under-replicated and offline partitions")
    action("topics", _topics, "list topic names")
    action("describe-topic", _describe_topic, "partitions, leaders, replicas, ISR, configs").add_argument("name")

    create = action("create-topic", _create_topic, "create a topic")
    create.add_argument("name")
    create.add_argument("--partitions", type=int, default=-1, help="default: the cluster's num.partitions")
    create.add_argument("--replication-factor", type=int, default=-1, help="default: the cluster's default")
    create.add_argument("--config", type=_config_pair, action="append", default=[], metavar="NAME=VALUE")
    create.add_argument("--replica-assignment", type=_assignment, metavar="B:B,B:B", help="replicas per partition")
    create.add_argument("--validate-only", action="store_true", help="check, do not create")

    alter = action("alter-topic", _alter_topic, "grow partitions, change replication factor, set/reset configs")
    alter.add_argument("name")
    alter.add_argument("--partitions", type=int, help="new total partition count (grow only)")
    alter.add_argument("--replication-factor", type=int, help="new replication factor (a reassignment)")
    alter.add_argument("--config", type=_config_pair, action="append", default=[], metavar="NAME=VALUE")
    alter.add_argument("--delete-config", action="append", default=[], metavar="NAME", help="reset to default")

    action("delete-topic", _delete_topic, "delete a topic").add_argument("name")

    reassign = action("reassign", _reassign, "move partitions to new replicas, or cancel moves")
    reassign.add_argument("--move", type=_move, action="append", default=[], metavar="TOPIC:PARTITION=B,B,B")
    reassign.add_argument("--cancel", type=_topic_partition, action="append", default=[], metavar="TOPIC:PARTITION")
    reassign.add_argument("--file", type=Path, help="a plan in kafka-reassign-partitions' JSON format")
    reassign.add_argument("--throttle", type=int, metavar="BYTES_PER_S", help="replication throttle while moving")

    action("reassignments", _reassignments, "reassignments in progress")
    action("drain", _drain, "move every replica and leadership off a broker").add_argument("broker_id", type=int)
    action("rebalance", _rebalance, "even out replicas and leaders across brokers")
    restart = action("can-restart", _can_restart, "exit 0 if a broker can restart without going below min ISR")
    restart.add_argument("broker_id", type=int)

    set_user = action("set-user", _set_user, "create or replace a SCRAM user (the password on standard input)")
    set_user.add_argument("name")
    set_user.add_argument("--mechanism", choices=("SCRAM-SHA-256", "SCRAM-SHA-512"), default="SCRAM-SHA-512")
    set_user.add_argument("--iterations", type=int, default=0, help="4096..16384 (default 4096)")
    action("delete-user", _delete_user, "delete a user's SCRAM credentials").add_argument("name")
    action("users", _users, "list SCRAM users")
    set_acls = action("set-acls", _set_acls, "give a principal exactly the ACL bindings of a JSON file")
    set_acls.add_argument("principal", help="User:<name>")
    set_acls.add_argument("--file", type=Path, required=True, help="a JSON list of bindings")
    action("acls", _acls, "list ACL bindings").add_argument("--principal", help="only this principal's")

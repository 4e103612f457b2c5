"""DescribeConfigs (32), AlterConfigs (33), IncrementalAlterConfigs (44) for topic configs under
Kafka's names and defaults; broker configs are described (read-only: they come from the broker's
properties at start)."""

from __future__ import annotations

from typing import Any

from tidelog.broker.api.context import BrokerContext, Outcome, Reply
from tidelog.broker.cluster.topics import EXTRA_TOPIC_CONFIGS
from tidelog.broker.log.config import InvalidConfigError
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.errors import KafkaError, UnknownTopicOrPartitionError, for_code
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.security.acl import Operation

TOPIC, BROKER = 2, 4
SOURCE_DYNAMIC_TOPIC, SOURCE_STATIC_BROKER, SOURCE_DEFAULT = 1, 4, 5
TYPE_BOOLEAN, TYPE_STRING, TYPE_LONG, TYPE_LIST = 1, 2, 5, 7
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


def _type_of(name: str, value: str) -> int:
    if value in ("true", "false"):
        return TYPE_BOOLEAN
    if name == "cleanup.policy":
        return TYPE_LIST
    if value.lstrip("-").isdigit():
        return TYPE_LONG
    return TYPE_STRING


def _entry(name: str, value: str, source: int, read_only: bool = False) -> dict[str, Any]:
    return dict(
        name=name,
        value=value,
        read_only=read_only,
        config_source=source,
        is_sensitive=False,
        synonyms=[],
        config_type=_type_of(name, value),
        documentation=None,
        is_default=source == SOURCE_DEFAULT,
    )


def _topic_entries(ctx: BrokerContext, topic: str, keys: list[str] | None) -> list[dict[str, Any]]:
    info = ctx.topics.topics.get(topic)
    if info is None:
        raise UnknownTopicOrPartitionError(f"topic {topic!r} does not exist")
    values = ctx.topics.defaults.to_properties() | EXTRA_TOPIC_CONFIGS
    entries = []
    for name, default in sorted(values.items()):
        if keys is not None and name not in keys:
            continue
        if name in info.configs:
            entries.append(_entry(name, info.configs[name], SOURCE_DYNAMIC_TOPIC))
        else:
            entries.append(_entry(name, default, SOURCE_DEFAULT))
    return entries


def _broker_entries(ctx: BrokerContext, name: str, keys: list[str] | None) -> list[dict[str, Any]]:
    if name not in ("", str(ctx.settings.node_id)):
        raise for_code(42)(f"this broker is node {ctx.settings.node_id}, not {name}")
    s = ctx.settings
    values = {
        "node.id": str(s.node_id),
        "broker.id": str(s.node_id),
        "log.dirs": str(ctx.logs.data_dir),
        "num.partitions": str(s.num_partitions),
        "default.replication.factor": str(s.default_replication_factor),
        "auto.create.topics.enable": str(s.auto_create_topics).lower(),
        "advertised.listeners": s.advertised_listeners or f"PLAINTEXT://{s.host}:{s.port}",
    }
    return [
        _entry(k, v, SOURCE_STATIC_BROKER, read_only=True)
        for k, v in sorted(values.items())
        if keys is None or k in keys
    ]


def describe_configs(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    version = header.api_version
    request = messages.decode_request(32, version, body)
    results: list[dict[str, Any]] = []
    for res in request.resources:
        rtype = int(res.resource_type)
        keys = list(res.configuration_keys) if res.configuration_keys is not None else None
        result: dict[str, Any] = dict(
            error_code=0, error_message=None, resource_type=rtype, resource_name=res.resource_name, configs=[]
        )
        try:
            if rtype == TOPIC:
                ctx.check_topic(Operation.DESCRIBE_CONFIGS, res.resource_name)
                result["configs"] = _topic_entries(ctx, res.resource_name, keys)
            elif rtype == BROKER:
                ctx.check_cluster(Operation.DESCRIBE_CONFIGS)
                result["configs"] = _broker_entries(ctx, res.resource_name, keys)
            else:
                raise for_code(42)(f"resource type {rtype} is not supported")
        except KafkaError as exc:
            result.update(error_code=exc.error_code, error_message=str(exc))
        results.append(result)
    response = messages.build(messages.response_type(32, version), throttle_time=0, results=results)
    return Reply.of(messages.encode_response(response))


async def _apply(ctx: BrokerContext, topic: str, configs: dict[str, str], validate_only: bool) -> None:
    if topic not in ctx.topics.topics:
        raise UnknownTopicOrPartitionError(f"topic {topic!r} does not exist")
    config = await ctx.topics.alter_configs(topic, configs, validate_only)
    if not validate_only:
        ctx.logs.update_config(topic, config)


async def _alter(ctx: BrokerContext, header: RequestHeader, body: memoryview, incremental: bool) -> Outcome:
    key = 44 if incremental else 33
    version = header.api_version
    request = messages.decode_request(key, version, body)
    responses: list[dict[str, Any]] = []
    for res in request.resources:
        rtype = int(res.resource_type)
        out: dict[str, Any] = dict(
            error_code=0, error_message=None, resource_type=rtype, resource_name=res.resource_name
        )
        try:
            if rtype == TOPIC:
                ctx.check_topic(Operation.ALTER_CONFIGS, res.resource_name)
            else:
                ctx.check_cluster(Operation.ALTER_CONFIGS)
                raise for_code(42)("only topic configs can be altered on this broker; broker configs are static")
            info = ctx.topics.topics.get(res.resource_name)
            if info is None:
                raise UnknownTopicOrPartitionError(f"topic {res.resource_name!r} does not exist")
            configs = dict(info.configs) if incremental else {}
            for c in res.configs:
                op = int(c.config_operation) if incremental else SET
                if op == SET and c.value is not None:
                    configs[c.name] = c.value
                elif op == DELETE or (op == SET and c.value is None):
                    configs.pop(c.name, None)
                elif op in (APPEND, SUBTRACT):
                    if c.name != "cleanup.policy":
                        raise InvalidConfigError(f"{c.name} is not a list config: APPEND/SUBTRACT do not apply")
                    current = [v for v in configs.get(c.name, "delete").split(",") if v]
                    items = [v for v in (c.value or "").split(",") if v]
                    merged = (
                        current + [v for v in items if v not in current]
                        if op == APPEND
                        else [v for v in current if v not in items]
                    )
                    configs[c.name] = ",".join(merged)
                else:
                    raise InvalidConfigError(f"unknown config operation {op}")
            await _apply(ctx, res.resource_name, configs, bool(request.validate_only))
        except KafkaError as exc:
            out.update(error_code=exc.error_code, error_message=str(exc))
        responses.append(out)
    response = messages.build(messages.response_type(key, version), throttle_time=0, responses=responses)
    return Reply.of(messages.encode_response(response))


async def alter_configs(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    return await _alter(ctx, header, body, incremental=False)


async def incremental_alter_configs(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    return await _alter(ctx, header, body, incremental=True)

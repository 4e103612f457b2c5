"""The one table of supported APIs: it drives dispatch and the ApiVersions answer alike.

Ranges follow ../shared/notes/kafka-protocol.md's recommended first advertisement (Produce from v0,
as Kafka 4.0.1+ advertises it, with v0-2 answered UNSUPPORTED_VERSION). Consumer groups use the
classic protocol (KIP-848 is not advertised); transactions are not advertised; InitProducerId serves
idempotent producers only.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidelog.broker.api import (
    acls,
    admin_configs,
    admin_topics,
    api_versions,
    delete_records,
    describe_cluster,
    fetch,
    group_admin,
    group_membership,
    group_offsets,
    init_producer_id,
    list_offsets,
    metadata,
    offset_for_leader_epoch,
    produce,
    reassignments,
    sasl_api,
    scram_admin,
)
from tidelog.broker.api.context import Handler


@dataclass(frozen=True, slots=True)
class ApiSpec:
    key: int
    name: str
    min_version: int
    max_version: int
    handler: Handler


APIS: dict[int, ApiSpec] = {
    spec.key: spec
    for spec in (
        ApiSpec(0, "Produce", 0, 11, produce.handle),
        ApiSpec(1, "Fetch", 4, 12, fetch.handle),
        ApiSpec(2, "ListOffsets", 1, 7, list_offsets.handle),
        ApiSpec(3, "Metadata", 0, 12, metadata.handle),
        ApiSpec(8, "OffsetCommit", 2, 9, group_offsets.offset_commit),
        ApiSpec(9, "OffsetFetch", 1, 9, group_offsets.offset_fetch),
        ApiSpec(10, "FindCoordinator", 0, 4, group_admin.find_coordinator),
        ApiSpec(11, "JoinGroup", 0, 9, group_membership.join_group),
        ApiSpec(12, "Heartbeat", 0, 4, group_membership.heartbeat),
        ApiSpec(13, "LeaveGroup", 0, 5, group_membership.leave_group),
        ApiSpec(14, "SyncGroup", 0, 5, group_membership.sync_group),
        ApiSpec(15, "DescribeGroups", 0, 5, group_admin.describe_groups),
        ApiSpec(16, "ListGroups", 0, 5, group_admin.list_groups),
        ApiSpec(18, "ApiVersions", 0, 4, api_versions.handle),
        ApiSpec(19, "CreateTopics", 2, 7, admin_topics.create_topics),
        ApiSpec(20, "DeleteTopics", 1, 6, admin_topics.delete_topics),
        ApiSpec(21, "DeleteRecords", 0, 2, delete_records.handle),
        ApiSpec(22, "InitProducerId", 0, 4, init_producer_id.handle),
        ApiSpec(23, "OffsetForLeaderEpoch", 2, 4, offset_for_leader_epoch.handle),
        ApiSpec(32, "DescribeConfigs", 1, 4, admin_configs.describe_configs),
        ApiSpec(33, "AlterConfigs", 0, 2, admin_configs.alter_configs),
        ApiSpec(37, "CreatePartitions", 0, 3, admin_topics.create_partitions),
        ApiSpec(42, "DeleteGroups", 0, 2, group_admin.delete_groups),
        ApiSpec(44, "IncrementalAlterConfigs", 0, 1, admin_configs.incremental_alter_configs),
        ApiSpec(45, "AlterPartitionReassignments", 0, 1, reassignments.alter),
        ApiSpec(46, "ListPartitionReassignments", 0, 0, reassignments.list_ongoing),
        ApiSpec(47, "OffsetDelete", 0, 0, group_offsets.offset_delete),
        ApiSpec(60, "DescribeCluster", 0, 1, describe_cluster.handle),
        ApiSpec(17, "SaslHandshake", 1, 1, sasl_api.handshake_not_here),
        ApiSpec(36, "SaslAuthenticate", 0, 2, sasl_api.authenticate_not_here),
        ApiSpec(29, "DescribeAcls", 1, 3, acls.describe),
        ApiSpec(30, "CreateAcls", 1, 3, acls.create),
        ApiSpec(31, "DeleteAcls", 1, 3, acls.delete),
        ApiSpec(50, "DescribeUserScramCredentials", 0, 0, scram_admin.describe),
        ApiSpec(51, "AlterUserScramCredentials", 0, 0, scram_admin.alter),
    )
}


def supported(api_key: int, version: int) -> bool:
    spec = APIS.get(api_key)
    return spec is not None and spec.min_version <= version <= spec.max_version


def version_ranges() -> list[tuple[int, int, int]]:
    return [(s.key, s.min_version, s.max_version) for s in sorted(APIS.values(), key=lambda s: s.key)]

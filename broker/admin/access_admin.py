"""The access half of ``ClusterAdmin``: SCRAM users and ACL bindings, as the operator's ``User``
resource manages them through the control plane.

Credentials go to the same ``CredentialStore`` Kafka's AlterUserScramCredentials writes (the broker
salts the password it is given and keeps only StoredKey and ServerKey); bindings to the same
``AclStore`` CreateAcls writes, so either way of managing them sees the other's work. ``set_acls`` is
declarative: the principal ends up with exactly the bindings given, which is how an operator reverts
drift (bindings someone added or removed by hand).
"""

from __future__ import annotations

from typing import Any

from tidelog.broker.admin.model import AclDesc, ScramUserDesc
from tidelog.broker.protocol.errors import KafkaError, for_code
from tidelog.broker.security import scram
from tidelog.broker.security.acl import (
    AclBinding,
    AclFilter,
    InvalidAclError,
    Operation,
    PatternType,
    Permission,
    ResourceType,
)

INVALID_REQUEST, SECURITY_DISABLED, UNSUPPORTED_SASL_MECHANISM, UNACCEPTABLE_CREDENTIAL = 42, 54, 33, 93
DEFAULT_ITERATIONS = 4096  # Kafka's default for SCRAM credentials


def _error(code: int, message: str) -> KafkaError:
    return for_code(code)(message)


def to_binding(a: AclDesc) -> AclBinding:
    """A binding from its names; INVALID_REQUEST for an unknown name or a binding Kafka refuses."""
    try:
        binding = AclBinding(
            ResourceType[a.resource_type.upper()],
            a.resource_name,
            PatternType[a.pattern_type.upper()],
            a.principal,
            a.host or "*",
            Operation[a.operation.upper()],
            Permission[a.permission.upper()],
        )
        binding.validate()
    except KeyError as exc:
        raise _error(INVALID_REQUEST, f"unknown name {exc} in ACL {a}") from None
    except InvalidAclError as exc:
        raise _error(INVALID_REQUEST, f"ACL {a}: {exc}") from None
    return binding


def to_desc(b: AclBinding) -> AclDesc:
    return AclDesc(b.resource_type.name, b.resource_name, b.pattern_type.name, b.principal, b.host,
                   b.operation.name, b.permission.name)  # fmt: skip


class AccessAdmin:
    def __init__(self, credentials: Any, acls: Any) -> None:
        self.credentials = credentials  # a CredentialStore
        self.acls = acls  # an AclStore, or None when the brokers run no authorizer

    async def set_scram_user(self, user: str, mechanism: str, password: str, iterations: int = 0) -> None:
        if mechanism not in scram.MECHANISM_IDS:
            raise _error(UNSUPPORTED_SASL_MECHANISM, f"{mechanism}: SCRAM-SHA-256 or SCRAM-SHA-512")
        iterations = iterations or DEFAULT_ITERATIONS
        if not scram.MIN_ITERATIONS <= iterations <= scram.MAX_ITERATIONS:
            raise _error(UNACCEPTABLE_CREDENTIAL, f"iterations {iterations}: between {scram.MIN_ITERATIONS} and "
                         f"{scram.MAX_ITERATIONS}")  # fmt: skip
        if not user or not password:
            raise _error(UNACCEPTABLE_CREDENTIAL, "an empty user name or password")
        credential = scram.make_credential(mechanism, password, iterations)
        await self.credentials.set(user, mechanism, credential)

    async def delete_scram_user(self, user: str) -> bool:
        mechanisms = list(await self.credentials.get(user))
        for mechanism in mechanisms:
            await self.credentials.set(user, mechanism, None)
        return bool(mechanisms)

    async def list_scram_users(self) -> list[ScramUserDesc]:
        users = await self.credentials.users()
        return [ScramUserDesc(name, sorted(creds)) for name, creds in sorted(users.items())]

    def _acls(self) -> Any:
        if self.acls is None:
            raise _error(SECURITY_DISABLED, "no authorizer is configured on the brokers (authorizer.class.name)")
        return self.acls

    async def set_acls(self, principal: str, acls: list[AclDesc]) -> tuple[int, int]:
        store = self._acls()
        wanted = {to_binding(a) for a in acls}
        strangers = [b for b in wanted if b.principal != principal]
        if strangers:
            raise _error(INVALID_REQUEST, f"ACL {strangers[0]} does not name principal {principal}")
        current = {b for b in store.bindings() if b.principal == principal}
        extra = current - wanted
        if extra:
            exact = [AclFilter(b.resource_type, b.resource_name, b.pattern_type, b.principal, b.host, b.operation,
                               b.permission) for b in extra]  # fmt: skip
            await store.remove(exact)
        missing = wanted - current
        if missing:
            await store.add(sorted(missing, key=str))
        return len(missing), len(extra)

    async def list_acls(self, principal: str | None = None) -> list[AclDesc]:
        bindings = self._acls().bindings()
        return sorted((to_desc(b) for b in bindings if principal is None or b.principal == principal), key=str)

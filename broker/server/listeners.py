"""Named listeners, as Kafka configures them: which sockets a broker opens and which address it
tells clients of each one.

- ``listeners=INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9094`` (a bare ``HOST:PORT`` is the
  listener ``PLAINTEXT``); names are unique, and so are ports.
- ``advertised.listeners=INTERNAL://broker-0.svc:9092,EXTERNAL://203.0.113.7:31000``: what clients
  are told, per listener; a listener left out advertises its own address (all interfaces:
  127.0.0.1, Tidelog's choice for a laptop; Kafka would use the host name).
- ``listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT``: the protocol of each
  name (PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL map to themselves by default); all four are
  served (TLS: ``tls``; SASL: ``tidelog.broker.security.sasl``), and all four can carry replication
  (a SASL one needs the brokers' own login: ``tidelog.broker.security.sasl_client``, checked in
  ``config``).
- ``inter.broker.listener.name``: the listener brokers replicate over (default: the first one).

A client's Metadata/FindCoordinator/DescribeCluster answer carries the addresses of the listener
its request arrived on, so a client outside Kubernetes is sent to external addresses and a pod to
in-cluster ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tidelog.broker.log.config import InvalidConfigError

DEFAULT_PROTOCOLS = {p: p for p in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")}
SERVED_PROTOCOLS = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One listener's address (``host`` "0.0.0.0" = every interface, when bound)."""

    name: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.name}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Listeners:
    """The bound and advertised endpoints (same names, same order) and the inter-broker name."""

    bound: tuple[Endpoint, ...]
    advertised: tuple[Endpoint, ...]
    protocols: dict[str, str]
    inter_broker: str

    def advertised_of(self, name: str) -> Endpoint:
        return next(e for e in self.advertised if e.name == name)

    def bound_of(self, name: str) -> Endpoint:
        return next(e for e in self.bound if e.name == name)


def parse_endpoints(value: str, setting: str) -> list[Endpoint]:
    """``NAME://HOST:PORT,...`` (``[v6]`` hosts, an empty host = every interface; a bare
    ``HOST:PORT`` is named PLAINTEXT) -> endpoints, names unique."""
    out: list[Endpoint] = []
    for item in (i.strip() for i in value.split(",")):
        if not item:
            continue
        name, sep, address = item.partition("://")
        if not sep:
            name, address = "PLAINTEXT", item
        if not _NAME.match(name):
            raise InvalidConfigError(f"{setting}: listener name {name!r}: letters, digits, '_' and '-' only")
        host, colon, port = address.rpartition(":")
        if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise InvalidConfigError(f"{setting}={value!r}: expected NAME://HOST:PORT, got {item!r}")
        host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - an empty host means all interfaces, as Kafka
        if any(e.name == name.upper() for e in out):
            raise InvalidConfigError(f"{setting}: listener {name.upper()} is named twice")
        out.append(Endpoint(name.upper(), host, int(port)))
    if not out:
        raise InvalidConfigError(f"{setting}={value!r}: no listener")
    return out


def parse_protocol_map(value: str | None) -> dict[str, str]:
    if value is None:
        return dict(DEFAULT_PROTOCOLS)
    out: dict[str, str] = {}
    for item in (i.strip() for i in value.split(",")):
        if not item:
            continue
        name, sep, protocol = item.partition(":")
        if not sep or protocol.strip().upper() not in DEFAULT_PROTOCOLS:
            raise InvalidConfigError(
                f"listener.security.protocol.map: {item!r}: expected NAME:PROTOCOL, PROTOCOL one of "
                + ", ".join(DEFAULT_PROTOCOLS)
            )
        out[name.strip().upper()] = protocol.strip().upper()
    return out


def build_listeners(
    listeners: str, advertised: str | None, protocol_map: str | None, inter_broker: str | None
) -> Listeners:
    """Validate the four settings together (clear INVALID_CONFIG messages naming the setting)."""
    bound = parse_endpoints(listeners, "listeners")
    ports = [e.port for e in bound if e.port]
    if len(set(ports)) != len(ports):
        raise InvalidConfigError(f"listeners={listeners!r}: two listeners on one port")
    protocols = parse_protocol_map(protocol_map)
    for e in bound:
        protocol = protocols.get(e.name)
        if protocol is None:
            raise InvalidConfigError(
                f"listener {e.name} has no security protocol: add {e.name}:PLAINTEXT to listener.security.protocol.map"
            )
        if protocol not in SERVED_PROTOCOLS:
            raise InvalidConfigError(
                f"listener {e.name}: security protocol {protocol} is not supported yet (PLAINTEXT and SSL only); "
                "refusing to serve it in plain text"
            )
    names = [e.name for e in bound]
    given = {e.name: e for e in parse_endpoints(advertised, "advertised.listeners")} if advertised else {}
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise InvalidConfigError(f"advertised.listeners names {', '.join(unknown)}: not in listeners ({listeners})")
    adv: list[Endpoint] = []
    for e in bound:
        a = given.get(e.name, e)
        if a.host in ("0.0.0.0", "::"):  # noqa: S104
            a = Endpoint(a.name, "127.0.0.1", a.port)
        adv.append(a)
    inter = (inter_broker or names[0]).upper()
    if inter not in names:
        raise InvalidConfigError(f"inter.broker.listener.name={inter_broker}: not in listeners ({listeners})")
    return Listeners(tuple(bound), tuple(adv), {n: protocols[n] for n in names}, inter)

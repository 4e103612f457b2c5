"""Named listeners: parsing and validation of Kafka's four listener settings, and registrations."""

from __future__ import annotations

import pytest

from tidelog.broker.cluster.state import BrokerInfo
from tidelog.broker.log.config import InvalidConfigError
from tidelog.broker.server.listeners import Endpoint, build_listeners


def test_names_protocols_advertised_and_inter_broker() -> None:
    ls = build_listeners(
        "INTERNAL://0.0.0.0:9092,external://[::]:9094",
        "EXTERNAL://203.0.113.7:31000",
        "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
        "internal",
    )
    assert ls.bound == (Endpoint("INTERNAL", "0.0.0.0", 9092), Endpoint("EXTERNAL", "::", 9094))  # noqa: S104
    # INTERNAL is not in advertised.listeners: its own address, all interfaces shown as loopback.
    assert ls.advertised == (Endpoint("INTERNAL", "127.0.0.1", 9092), Endpoint("EXTERNAL", "203.0.113.7", 31000))
    assert ls.inter_broker == "INTERNAL"
    assert str(ls.bound[1]) == "EXTERNAL://[::]:9094"


def test_a_bare_address_is_the_plaintext_listener() -> None:
    ls = build_listeners("127.0.0.1:9500", "broker-0.svc:9092", None, None)
    assert ls.bound == (Endpoint("PLAINTEXT", "127.0.0.1", 9500),)
    assert ls.advertised == (Endpoint("PLAINTEXT", "broker-0.svc", 9092),)
    assert (ls.inter_broker, ls.protocols) == ("PLAINTEXT", {"PLAINTEXT": "PLAINTEXT"})


@pytest.mark.parametrize(
    ("listeners", "advertised", "protocols", "inter", "message"),
    [
        ("A://h:1,A://h:2", None, "A:PLAINTEXT", None, "listener A is named twice"),
        ("A://h:1,B://h:1", None, "A:PLAINTEXT,B:PLAINTEXT", None, "two listeners on one port"),
        ("A://h:70000", None, None, None, "expected NAME://HOST:PORT"),
        ("A B://h:1", None, None, None, "letters, digits"),
        ("", None, None, None, "no listener"),
        ("A://h:1", None, None, None, "add A:PLAINTEXT to listener.security.protocol.map"),
        ("A://h:1", None, "A:TLS", None, "expected NAME:PROTOCOL"),
        ("A://h:1", "B://x:2", "A:PLAINTEXT", None, "advertised.listeners names B"),
        ("A://h:1", None, "A:PLAINTEXT", "C", "inter.broker.listener.name=C"),
    ],
)
def test_bad_listener_settings_are_refused(
    listeners: str, advertised: str | None, protocols: str | None, inter: str | None, message: str
) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        build_listeners(listeners, advertised, protocols, inter)


def test_registrations_carry_every_listener_and_old_ones_still_decode() -> None:
    info = BrokerInfo(
        1, "b1.internal", 9092, endpoints=(("INTERNAL", "b1.internal", 9092), ("EXTERNAL", "1.2.3.4", 31001))
    )
    again = BrokerInfo.decode(info.encode())
    assert again == info
    assert again.endpoint("EXTERNAL") == ("1.2.3.4", 31001)
    assert again.endpoint("OTHER") is None
    old = BrokerInfo.decode(b'{"id": 2, "host": "b2", "port": 9092}')
    assert old.endpoint("EXTERNAL") == ("b2", 9092)  # before named listeners: one address for all

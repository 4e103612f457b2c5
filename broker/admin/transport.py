"""TLS for the control plane, both ends, from PEM files: the broker's key and certificate chain, the
CA bundle it checks client certificates against (mutual TLS), and the client's CA bundle, optional
certificate and key.

gRPC takes PEM bytes, not an ``ssl.SSLContext``: a Kafka-style PEM keystore (private key and
certificate chain in one file) is split into its key block and its certificate blocks here. gRPC
cannot read an encrypted private key and this project carries no crypto library to decrypt one,
so an encrypted key is refused with the command that decrypts it.

Neighbours: ``auth`` (the bearer token, the other way to protect the API), ``server`` and ``client``
(which take what this module builds). The broker validates its settings with the Kafka listeners'
loaders first (``tidelog.broker.server.admin_security``), so a bad file is refused with the same
messages as an SSL listener's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import grpc

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----[ \t]*\r?\n?", re.S)
_KEY_KINDS = {b"PRIVATE KEY", b"EC PRIVATE KEY", b"RSA PRIVATE KEY"}


class AdminTlsError(ValueError):
    """A PEM file that cannot be used (missing, unreadable, no key, an encrypted key, no certificate)."""


def read_pem(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AdminTlsError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise AdminTlsError(f"{what} {path}: {exc.strerror or exc}") from None
    if not _BLOCK.search(data):
        raise AdminTlsError(f"{what} {path}: no PEM block in it")
    return data


def split_keystore(data: bytes, where: str) -> tuple[bytes | None, bytes]:
    """(the private key block or None, the certificate blocks) of a PEM file."""
    key: bytes | None = None
    certs: list[bytes] = []
    for match in _BLOCK.finditer(data):
        kind, block = match.group(1), match.group(0)
        if kind == b"ENCRYPTED PRIVATE KEY" or (kind in _KEY_KINDS and b"Proc-Type:" in block):
            raise AdminTlsError(
                f"{where}: the private key is encrypted, which gRPC cannot read; "
                "decrypt it (openssl pkey -in KEY.pem -out KEY-plain.pem) and protect the file instead"
            )
        if kind in _KEY_KINDS:
            if key is not None:
                raise AdminTlsError(f"{where}: more than one private key")
            key = block if block.endswith(b"\n") else block + b"\n"
        elif kind == b"CERTIFICATE":
            certs.append(block if block.endswith(b"\n") else block + b"\n")
    return key, b"".join(certs)


@dataclass(frozen=True)
class ServerTls:
    """The admin server's TLS: its key and chain; with ``client_ca``, client certificates signed by
    it are required (gRPC offers "required" or "not asked", nothing between)."""

    key: bytes = field(repr=False)
    chain: bytes
    client_ca: bytes | None = None

    @classmethod
    def from_files(cls, keystore: Path, client_ca: Path | None, *, require_client_auth: bool) -> ServerTls:
        key, chain = split_keystore(read_pem(keystore, "keystore"), f"keystore {keystore}")
        if key is None:
            raise AdminTlsError(f"keystore {keystore}: no private key (it must hold the key and the certificate chain)")
        if not chain:
            raise AdminTlsError(f"keystore {keystore}: no certificate")
        if require_client_auth and client_ca is None:
            raise AdminTlsError("client certificates are required but no truststore names their CAs")
        ca = read_pem(client_ca, "truststore") if require_client_auth and client_ca is not None else None
        return cls(key, chain, ca)

    @property
    def require_client_auth(self) -> bool:
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.chain)], root_certificates=self.client_ca, require_client_auth=self.client_ca is not None
        )


@dataclass(frozen=True)
class ClientTls:
    """What a client of the admin API trusts and shows: ``ca`` (None: the system's roots), an
    optional client certificate (``cert``; ``key`` may be omitted when the cert file holds it),
    ``server_name`` to check instead of the host connected to (an address without a DNS name)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        roots = read_pem(self.ca, "CA file") if self.ca is not None else None
        if self.cert is None:
            if self.key is not None:
                raise AdminTlsError("a client key without a client certificate")
            return grpc.ssl_channel_credentials(root_certificates=roots)
        cert_key, chain = split_keystore(read_pem(self.cert, "client certificate"), f"client certificate {self.cert}")
        if not chain:
            raise AdminTlsError(f"client certificate {self.cert}: no certificate in it")
        key = cert_key
        if self.key is not None:
            key, _ = split_keystore(read_pem(self.key, "client key"), f"client key {self.key}")
        if key is None:
            raise AdminTlsError(f"client certificate {self.cert}: no private key with it (give the key file)")
        return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)

    def options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

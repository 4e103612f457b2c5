"""Test certificates made with the ``openssl`` command: a CA, a broker certificate for the loopback
names (127.0.0.1, 127.0.0.2, localhost), client certificates signed by that CA, and a second,
foreign CA with a client of its own. PEM files, as Kafka's ``ssl.keystore.type=PEM`` reads them
(the keystore: private key + certificate chain in one file)."""

from __future__ import annotations

import datetime
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr}")


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate (truststore)
    broker: Path  # the broker's key + certificate chain
    client: Path  # key + certificate of client "CN=alice,O=tidelog-tests", signed by ``ca``
    client_key: Path
    client_cert: Path
    foreign_ca: Path
    foreign_client_key: Path  # "CN=mallory", signed by ``foreign_ca``
    foreign_client_cert: Path
    expired_client_key: Path  # "CN=expired", signed by ``ca``, valid only in 2020
    expired_client_cert: Path


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)  # fmt: skip


def _leaf(d: Path, ca: str, name: str, subject: str, san: str | None) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", subject,
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)  # fmt: skip
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", "2", "-extfile", ext.name, "-out", f"{name}.crt", cwd=d)  # fmt: skip
    (d / f"{name}.keystore.pem").write_text((d / f"{name}.key").read_text() + (d / f"{name}.crt").read_text())


def _expired_leaf(d: Path, ca: str, name: str) -> None:
    """A client certificate signed by ``ca`` whose validity ended in 2020 (openssl 3.0's ``x509`` cannot
    backdate one, so ``cryptography`` signs it)."""
    ca_key = serialization.load_pem_private_key((d / f"{ca}.key").read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate((d / f"{ca}.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2020, 1, 2, tzinfo=datetime.UTC))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    (d / f"{name}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (d / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_pki(d: Path) -> Pki:
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "test-ca")
    _ca(d, "foreign-ca")
    _leaf(d, "test-ca", "broker", "/CN=tidelog-broker", "IP:127.0.0.1,IP:127.0.0.2,DNS:localhost")
    _leaf(d, "test-ca", "alice", "/O=tidelog-tests/CN=alice", None)
    _leaf(d, "foreign-ca", "mallory", "/CN=mallory", None)
    _expired_leaf(d, "test-ca", "expired")
    return Pki(
        ca=d / "test-ca.pem",
        broker=d / "broker.keystore.pem",
        client=d / "alice.keystore.pem",
        client_key=d / "alice.key",
        client_cert=d / "alice.crt",
        foreign_ca=d / "foreign-ca.pem",
        foreign_client_key=d / "mallory.key",
        foreign_client_cert=d / "mallory.crt",
        expired_client_key=d / "expired.key",
        expired_client_cert=d / "expired.crt",
    )

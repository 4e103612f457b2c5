"""The cluster CA and the broker certificates as PEM text, made with ``cryptography``.

Job: pure functions of their arguments (``now`` is passed in, so tests control time): make a CA,
issue a certificate signed by it, and read back what the operator needs from a PEM certificate
(expiry, SANs, fingerprint). Neighbours: ``desired_tls`` decides what to issue and builds the
Secrets; ``certificates`` reads and writes them.

Keys are ECDSA P-256 (instant to make, accepted by OpenSSL, librdkafka and Java clients); signatures
SHA-256. Key material only ever leaves here as PEM strings headed for a Secret: never log them.
A broker certificate is for both server and client auth (brokers replicate over mutual TLS) and
never outlives the CA that signs it.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ORGANIZATION = "tidelog.dev"
BACKDATE = timedelta(minutes=5)  # clock skew between the operator and the clients


@dataclass(frozen=True)
class KeyPair:
    """A private key and its certificate, PEM. ``repr`` hides the key."""

    key_pem: str
    cert_pem: str

    def __repr__(self) -> str:
        return f"KeyPair(cert={fingerprint(self.cert_pem)}, key=<hidden>)"


@dataclass(frozen=True)
class CertInfo:
    """What the operator reads back from a certificate."""

    not_before: datetime
    not_after: datetime
    sans: frozenset[str]
    subject: str
    issuer: str
    fingerprint: str
    is_ca: bool


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def new_ca(common_name: str, now: datetime, days: int) -> KeyPair:
    """A self-signed CA valid ``days`` from ``now`` that signs leaf certificates only (pathlen 0)."""
    key = _new_key()
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM).decode())


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue(ca: KeyPair, common_name: str, sans: Iterable[str], now: datetime, days: int) -> KeyPair:
    """A certificate for ``sans`` (DNS names or IP addresses) signed by ``ca``, valid ``days`` from
    ``now`` but never past the CA's own expiry; server and client auth."""
    ca_key = serialization.load_pem_private_key(ca.key_pem.encode(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("the CA key is not an EC key")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    key = _new_key()
    names = sorted(set(sans))
    not_after = min(now + timedelta(days=days), ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    )
    if names:  # (a client certificate names no hosts: no SAN extension, which may not be empty)
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
    cert = (
        builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM).decode())


def fingerprint(cert_pem: str) -> str:
    """The first 16 hex digits of the SHA-256 of the (first) certificate's DER."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()[:16]


def info(cert_pem: str) -> CertInfo:
    """Expiry, SANs, names and fingerprint of the (first) certificate in ``cert_pem``."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = frozenset(
            [*ext.get_values_for_type(x509.DNSName), *(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))]
        )
    except x509.ExtensionNotFound:
        sans = frozenset()
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return CertInfo(
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sans=sans,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        fingerprint=fingerprint(cert_pem),
        is_ca=is_ca,
    )


def verify_signed_by(cert_pem: str, ca_pem: str) -> bool:
    """Whether ``ca_pem``'s key signed ``cert_pem`` (and the issuer names agree)."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def certificates(bundle: str) -> list[str]:
    """The PEM certificates in ``bundle``, in order."""
    end = "-----END CERTIFICATE-----"
    return [part.strip() + "\n" + end + "\n" for part in bundle.split(end) if "BEGIN CERTIFICATE" in part]


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

"""A local CA and the server certificate it signs (`flame up --tls`), made with `cryptography`."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 397  # what browsers accept for a server certificate
RENEW_BEFORE = datetime.timedelta(days=30)  # a server certificate this close to its end is re-made
DEFAULT_HOSTS = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class LocalCerts:
    """The files of a local CA and the server certificate it signed (PEM)."""

    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def cert_file(self) -> Path:
        return self.directory / "server.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "server.key"


def _write(path: Path, data: bytes, *, secret: bool) -> None:
    """Write a new file in one go; key files are created 0600 (never readable by others)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Flame local stack"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _make_ca(certs: LocalCerts, now: datetime.datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"Flame local CA {socket.gethostname()}")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(certs.ca_key, _key_pem(key), secret=True)
    _write(certs.ca_file, cert.public_bytes(serialization.Encoding.PEM), secret=False)


def _make_server(certs: LocalCerts, hosts: Sequence[str], now: datetime.datetime) -> None:
    ca_key = serialization.load_pem_private_key(certs.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{certs.ca_key} is not the EC key of a Flame local CA")
    ca = x509.load_pem_x509_certificate(certs.ca_file.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(certs.key_file, _key_pem(key), secret=True)
    _write(certs.cert_file, cert.public_bytes(serialization.Encoding.PEM), secret=False)


def _server_current(certs: LocalCerts, hosts: Sequence[str], now: datetime.datetime) -> bool:
    """The server certificate exists, was signed by the CA, names `hosts` and is not ending."""
    if not (certs.cert_file.is_file() and certs.key_file.is_file()):
        return False
    cert = x509.load_pem_x509_certificate(certs.cert_file.read_bytes())
    ca = x509.load_pem_x509_certificate(certs.ca_file.read_bytes())
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    named = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(named) >= set(_san(hosts)) and cert.not_valid_after_utc - now > RENEW_BEFORE


def ensure_local_certs(directory: Path, hosts: Sequence[str] = DEFAULT_HOSTS) -> LocalCerts:
    """The local CA and a server certificate for `hosts` under `directory`, made when missing.

    An existing CA is kept (clients that trust it keep working); the server certificate is
    re-made when it is missing, not signed by that CA, lacks a host or ends within 30 days.
    Key files are mode 0600.
    """
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or address")
    certs = LocalCerts(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    now = datetime.datetime.now(datetime.UTC)
    if not (certs.ca_file.is_file() and certs.ca_key.is_file()):
        _make_ca(certs, now)
    if not _server_current(certs, hosts, now):
        _make_server(certs, hosts, now)
    return certs

"""Certificates for the Graph emulator: a small CA, a loopback server certificate, app certificates.

msal refuses ``http://`` authorities, so the emulator must speak HTTPS.  It signs its own
server certificate (SAN ``127.0.0.1``, ``::1`` and ``localhost``) with a CA it creates in a
directory the caller chooses; clients trust that CA through a ``ca_bundle`` path.  The CA is
reused when the directory already holds one, so a ``ca_bundle`` stays valid across restarts.

Also makes RSA certificates an app registration can use for client-assertion sign-in.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["ServerFiles", "AppCertificate", "ensure_server_files", "make_app_certificate"]

_CA_CERT = "ca.pem"
_CA_KEY = "ca-key.pem"
_SERVER_CERT = "server.pem"
_SERVER_KEY = "server-key.pem"


@frozen
class ServerFiles:
    """PEM files of the emulator's TLS identity."""

    ca_cert: Path
    """The CA certificate: what clients put in ``ca_bundle`` / ``verify=``."""
    server_cert: Path
    server_key: Path

    def server_pem(self) -> bytes:
        """Server certificate followed by its key, as Twisted's ``PrivateCertificate.loadPEM`` wants."""
        return self.server_cert.read_bytes() + self.server_key.read_bytes()


@frozen
class AppCertificate:
    """An app credential certificate: PEM key and certificate plus the thumbprints Entra uses."""

    private_key_pem: bytes
    certificate_pem: bytes
    sha1_thumbprint: str
    """Upper-case hex SHA-1 thumbprint (``customKeyIdentifier``, msal's ``thumbprint``)."""
    sha256_thumbprint: str


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _make_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dirgw Graph emulator CA")])
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(directory / _CA_KEY, _key_pem(key))
    (directory / _CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate((directory / _CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / _CA_KEY).read_bytes(), None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if cert.not_valid_after_utc < _now() + datetime.timedelta(days=30):
        return None
    return cert, key


def ensure_server_files(directory: Path | str, hosts: tuple[str, ...] = ()) -> ServerFiles:
    """Create (or reuse) the CA in ``directory`` and issue a fresh server certificate.

    The server certificate always covers ``127.0.0.1``, ``::1`` and ``localhost``, plus ``hosts``
    (IP addresses or DNS names).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    loaded = _load_ca(directory)
    ca_cert, ca_key = loaded if loaded is not None else _make_ca(directory)

    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in ("localhost", "127.0.0.1", "::1", *hosts):
        if host in seen:
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))

    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(directory / _SERVER_KEY, _key_pem(key))
    (directory / _SERVER_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ServerFiles(
        ca_cert=directory / _CA_CERT,
        server_cert=directory / _SERVER_CERT,
        server_key=directory / _SERVER_KEY,
    )


def make_app_certificate(
    common_name: str = "dirgw", days: int = 365, key_size: int = 2048
) -> AppCertificate:
    """A self-signed RSA certificate for an app registration's ``keyCredentials``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return AppCertificate(
        private_key_pem=_key_pem(key),
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM),
        sha1_thumbprint=cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303
        sha256_thumbprint=cert.fingerprint(hashes.SHA256()).hex().upper(),
    )

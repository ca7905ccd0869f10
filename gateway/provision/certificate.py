"""The app's credential certificate: made here, its private key never leaves this machine.

A self-signed RSA certificate (Entra's ``keyCredentials`` take RSA ``AsymmetricX509Cert``);
only the certificate (public) is uploaded.  The PEM file holds the private key and the
certificate together, as the gateway's ``certificate = "..."`` expects, at mode 0600.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.provision.files import write_private

__all__ = ["CredentialCertificate", "generate_certificate", "read_certificate", "certificate_info"]


@frozen
class CredentialCertificate:
    private_key_pem: bytes
    certificate_pem: bytes
    certificate_der: bytes
    sha1_thumbprint: str
    """Upper-case hex: Entra's ``customKeyIdentifier``, the portal's "Thumbprint"."""
    not_before: datetime.datetime
    not_after: datetime.datetime
    subject: str

    def pem_file(self) -> bytes:
        return self.private_key_pem + self.certificate_pem

    def write(self, path: Path) -> None:
        write_private(path, self.pem_file())


def generate_certificate(common_name: str, days: int, now: float) -> CredentialCertificate:
    """A self-signed RSA-2048 certificate valid from ``now`` (epoch seconds) for ``days``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    start = datetime.datetime.fromtimestamp(int(now), datetime.timezone.utc) - datetime.timedelta(minutes=5)
    end = start + datetime.timedelta(days=days, minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CredentialCertificate(
        private_key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()),
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM),
        certificate_der=cert.public_bytes(serialization.Encoding.DER),
        sha1_thumbprint=cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 (Entra's thumbprint)
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        subject=cert.subject.rfc4514_string(),
    )


def read_certificate(path: Path) -> x509.Certificate:
    """The (first) certificate in a PEM file; ValueError or OSError when there is none."""
    text = Path(path).read_bytes()
    match = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
    if match is None:
        raise ValueError(f"{path} holds no PEM certificate")
    return x509.load_pem_x509_certificate(match.group(0))


def certificate_info(path: Path) -> tuple[str, float]:
    """(SHA-1 thumbprint, notAfter as epoch seconds) of the certificate in ``path``."""
    cert = read_certificate(path)
    return cert.fingerprint(hashes.SHA1()).hex().upper(), cert.not_valid_after_utc.timestamp()  # noqa: S303

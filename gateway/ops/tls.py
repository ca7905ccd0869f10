"""TLS for the LDAP listeners: LDAPS (``ssl:`` endpoints) and StartTLS, TLS 1.2 minimum, reloadable.

``ReloadableTLS(certificate, key)`` reads a PEM certificate chain and a PEM private key and
checks that they belong together.  It is a connection creator for Twisted's TLS layer, so one
object serves both uses:

* LDAPS: ``tls.endpoint(reactor, "ssl:636")`` (an ``SSL4ServerEndpoint`` using this object), or
  ``tls.wrap(factory)`` (a ``TLSMemoryBIOFactory``) for a plain TCP endpoint;
* StartTLS: ``connection.transport.startTLS(tls)`` after answering the extended request.

``reload()`` re-reads the files (on SIGHUP).  Each new TLS connection asks for the current
context, so new connections get the new certificate while established ones keep theirs.  A
broken new pair raises ``TLSConfigError`` and the old pair stays in use.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from OpenSSL import SSL, crypto
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IOpenSSLContextFactory, IOpenSSLServerConnectionCreator
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

__all__ = ["TLSConfigError", "TLSIdentity", "ReloadableTLS", "load_identity", "server_options", "parse_ssl_endpoint"]

log = Logger()

MINIMUM_VERSION = TLSVersion.TLSv1_2


class TLSConfigError(Exception):
    """A certificate or key cannot be used: ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class TLSIdentity:
    """A parsed certificate chain and its private key."""

    def __init__(self, chain: list[x509.Certificate], key: Any, certificate_path: str, key_path: str) -> None:
        self.chain = chain
        self.key = key
        self.certificate_path = certificate_path
        self.key_path = key_path

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def not_after(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint, colon-separated upper-case hex (as ``openssl x509 -fingerprint``)."""
        return ":".join(f"{b:02X}" for b in self.certificate.fingerprint(hashes.SHA256()))

    def describe(self) -> str:
        subject = self.certificate.subject.rfc4514_string() or "(empty subject)"
        return f"{subject}, valid until {self.not_after:%Y-%m-%d}, SHA-256 {self.fingerprint[:23]}..."


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise TLSConfigError(path, f"{what} file not found")
    except PermissionError:
        raise TLSConfigError(path, f"{what} file not readable by this user (uid {os.getuid()})")
    except IsADirectoryError:
        raise TLSConfigError(path, f"{what} path is a directory, expected a PEM file")
    except OSError as e:
        raise TLSConfigError(path, f"cannot read the {what}: {e.strerror}")


def _public_der(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_identity(certificate_path: str, key_path: str) -> TLSIdentity:
    """Read and check a PEM certificate chain (server certificate first) and its PEM private key."""
    cert_data = _read(certificate_path, "certificate")
    key_data = _read(key_path, "private key")
    if b"-----BEGIN CERTIFICATE-----" not in cert_data:
        hint = " (this looks like a private key)" if b"PRIVATE KEY-----" in cert_data else ""
        raise TLSConfigError(certificate_path, f"no PEM certificate (-----BEGIN CERTIFICATE-----) found{hint}")
    try:
        chain = x509.load_pem_x509_certificates(cert_data)
    except ValueError as e:
        raise TLSConfigError(certificate_path, f"not a valid PEM certificate chain: {e}")
    if b"PRIVATE KEY-----" not in key_data:
        hint = " (this looks like a certificate)" if b"BEGIN CERTIFICATE" in key_data else ""
        raise TLSConfigError(key_path, f"no PEM private key (-----BEGIN ... PRIVATE KEY-----) found{hint}")
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        raise TLSConfigError(key_path, "the private key is encrypted; dirgw needs an unencrypted key "
                                       "(protect it with file permissions instead)")
    except Exception as e:  # cryptography raises ValueError or UnsupportedAlgorithm
        raise TLSConfigError(key_path, f"not a usable PEM private key: {e}")
    if _public_der(chain[0].public_key()) != _public_der(key.public_key()):
        raise TLSConfigError(
            key_path,
            f"this private key does not belong to the certificate in {certificate_path} "
            f"({chain[0].subject.rfc4514_string()}); the first certificate in the chain must be the server's",
        )
    identity = TLSIdentity(chain, key, certificate_path, key_path)
    now = datetime.datetime.now(datetime.timezone.utc)
    if identity.not_after < now:
        log.warn("TLS certificate {path} expired on {when:%Y-%m-%d}; clients will refuse it",
                 path=certificate_path, when=identity.not_after)
    elif identity.certificate.not_valid_before_utc > now:
        log.warn("TLS certificate {path} is not valid before {when:%Y-%m-%d %H:%M}Z",
                 path=certificate_path, when=identity.certificate.not_valid_before_utc)
    return identity


def server_options(identity: TLSIdentity) -> CertificateOptions:
    """Server-side CertificateOptions for ``identity``, TLS 1.2 or newer only."""
    try:
        try:
            # current pyOpenSSL takes cryptography objects (and deprecates its own X509/PKey)
            options = _options(identity.key, identity.certificate, identity.chain[1:])
        except TypeError:
            options = _options(
                crypto.PKey.from_cryptography_key(identity.key),
                crypto.X509.from_cryptography(identity.certificate),
                [crypto.X509.from_cryptography(c) for c in identity.chain[1:]],
            )
    except (SSL.Error, crypto.Error, ValueError, TypeError) as e:
        raise TLSConfigError(identity.certificate_path, f"OpenSSL refused the certificate or key: {e}")
    return options


def _options(key: Any, certificate: Any, extra: list[Any]) -> CertificateOptions:
    options = CertificateOptions(
        privateKey=key, certificate=certificate, extraCertChain=extra, raiseMinimumTo=MINIMUM_VERSION
    )
    options.getContext()  # build it now, so OpenSSL's objections surface here, not per connection
    return options


def split_endpoint(description: str) -> list[str]:
    """Split a Twisted endpoint string on unescaped colons (``\\:`` is a literal colon)."""
    parts, current, escaped = [], [], False
    for ch in description:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_ssl_endpoint(description: str) -> dict[str, Any]:
    """``ssl:636:interface=0.0.0.0:backlog=50`` -> ``{"port": 636, "interface": "0.0.0.0", "backlog": 50}``.

    Certificate arguments (``privateKey=``, ``certKey=``...) are refused: an ``ssl:`` listener
    uses ``[ldap] tls_certificate`` and ``tls_key``.  ``\\:`` escapes a colon (IPv6 interfaces).
    """
    parts = split_endpoint(description)
    if parts[0] != "ssl":
        raise ValueError(f"not an ssl: endpoint: {description!r}")
    result: dict[str, Any] = {"port": None, "interface": "", "backlog": 50}
    positional = []
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        if not eq:
            positional.append(part)
        elif key in ("port", "interface", "backlog"):
            result[key] = value
        elif key in ("privateKey", "certKey", "extraCertChain", "sslmethod", "dhParameters"):
            raise ValueError(f"{description!r}: {key}= is not used here; set [ldap] tls_certificate and tls_key")
        else:
            raise ValueError(f"{description!r}: unknown option {key}=")
    if result["port"] is None and positional:
        result["port"] = positional.pop(0)
    if positional or result["port"] is None:
        raise ValueError(f"{description!r}: expected ssl:PORT[:interface=ADDRESS][:backlog=N]")
    try:
        result["port"] = int(result["port"])
        result["backlog"] = int(result["backlog"])
    except ValueError:
        raise ValueError(f"{description!r}: port and backlog must be numbers")
    return result


@implementer(IOpenSSLServerConnectionCreator, IOpenSSLContextFactory)
class ReloadableTLS:
    """The server's TLS identity; reload() swaps it for new connections only."""

    def __init__(self, certificate_path: str, key_path: str) -> None:
        self.certificate_path = certificate_path
        self.key_path = key_path
        self.identity = load_identity(certificate_path, key_path)
        self._options = server_options(self.identity)

    def reload(self) -> bool:
        """Re-read the files; True when the certificate changed.

        On any problem raises ``TLSConfigError`` and keeps serving the previous certificate.
        """
        identity = load_identity(self.certificate_path, self.key_path)
        options = server_options(identity)
        changed = identity.fingerprint != self.identity.fingerprint
        self.identity, self._options = identity, options
        if changed:
            log.info("TLS certificate reloaded: {what}", what=identity.describe())
        return changed

    # -- what Twisted's TLS layer calls ---------------------------------------

    def serverConnectionForTLS(self, protocol: Any) -> SSL.Connection:
        """A connection on the current context (IOpenSSLServerConnectionCreator)."""
        return self._options.serverConnectionForTLS(protocol)

    def getContext(self) -> SSL.Context:
        """The current context (IOpenSSLContextFactory, for APIs that want a context factory)."""
        return self._options.getContext()

    # -- listeners -------------------------------------------------------------

    def wrap(self, factory: Any) -> TLSMemoryBIOFactory:
        """``factory`` behind TLS, for a plain TCP listening endpoint."""
        return TLSMemoryBIOFactory(self, False, factory)

    def endpoint(self, reactor: Any, description: str) -> SSL4ServerEndpoint:
        """A listening endpoint for an ``ssl:PORT[:interface=...]`` description using this identity."""
        args = parse_ssl_endpoint(description)
        return SSL4ServerEndpoint(reactor, args["port"], self, backlog=args["backlog"], interface=args["interface"])

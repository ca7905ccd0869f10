"""State of one emulated Entra tenant: its contacts, app registrations and credentials.

Pure values with no I/O.  Times are seconds on the emulator's clock (``GraphEmulator.now()``).

Built to grow into app provisioning (issue 6): an `App` already has an object id, a
service-principal id, password and key credentials with validity windows, and granted roles
(what ``appRoleAssignedTo`` will manage).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable

from attrs import define, field
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gateway.testing.contacts import ContactStore

__all__ = ["Tenant", "App", "PasswordCredential", "KeyCredential", "GRAPH_APP_ID",
           "ORG_CONTACT_READ_ALL", "CONTACT_READ_ROLES", "new_secret"]

#: appId of the Microsoft Graph resource (graph.md §1).
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
#: The application permission the contact sync needs.
ORG_CONTACT_READ_ALL = "OrgContact.Read.All"
#: Roles any of which lets an app read orgContacts (least privilege first).
CONTACT_READ_ROLES = frozenset({ORG_CONTACT_READ_ALL, "Directory.Read.All", "Directory.ReadWrite.All"})


def new_secret() -> str:
    """A client secret looking like Entra's (40 characters, with a ``~``)."""
    return secrets.token_urlsafe(27)[:3] + "8Q~" + secrets.token_urlsafe(30)[:34]


def _new_id() -> str:
    return str(uuid.uuid4())


@define
class PasswordCredential:
    """A client secret (``passwordCredentials`` entry)."""

    secret_text: str
    key_id: str = field(factory=_new_id)
    display_name: str = ""
    start: float | None = None
    end: float | None = None

    def valid_at(self, now: float) -> bool:
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)


@define
class KeyCredential:
    """A certificate (``keyCredentials`` entry, type ``AsymmetricX509Cert``)."""

    certificate: x509.Certificate
    key_id: str = field(factory=_new_id)
    display_name: str = ""

    @classmethod
    def from_pem(cls, pem: bytes | str, display_name: str = "") -> KeyCredential:
        data = pem.encode("ascii") if isinstance(pem, str) else pem
        return cls(x509.load_pem_x509_certificate(data), display_name=display_name)

    @property
    def sha1(self) -> bytes:
        return self.certificate.fingerprint(hashes.SHA1())  # noqa: S303 (Entra's x5t)

    @property
    def sha256(self) -> bytes:
        return self.certificate.fingerprint(hashes.SHA256())

    def valid_at_wall_clock(self, now: float) -> bool:
        cert = self.certificate
        return cert.not_valid_before_utc.timestamp() <= now < cert.not_valid_after_utc.timestamp()


@define
class App:
    """An app registration together with its service principal in one tenant."""

    client_id: str
    display_name: str
    object_id: str = field(factory=_new_id)
    service_principal_id: str = field(factory=_new_id)
    roles: set[str] = field(factory=set)
    """Granted application permissions (app role values), carried in tokens as ``roles``."""
    passwords: list[PasswordCredential] = field(factory=list)
    keys: list[KeyCredential] = field(factory=list)

    def add_secret(self, secret: str | None = None, start: float | None = None,
                   end: float | None = None, display_name: str = "") -> PasswordCredential:
        credential = PasswordCredential(secret or new_secret(), display_name=display_name,
                                        start=start, end=end)
        self.passwords.append(credential)
        return credential

    def add_certificate(self, pem: bytes | str, display_name: str = "") -> KeyCredential:
        credential = KeyCredential.from_pem(pem, display_name)
        self.keys.append(credential)
        return credential

    def find_key(self, sha1: bytes | None, sha256: bytes | None) -> KeyCredential | None:
        for key in self.keys:
            if (sha256 is not None and key.sha256 == sha256) or (sha1 is not None and key.sha1 == sha1):
                return key
        return None


@define
class Tenant:
    """One emulated tenant, addressed by its GUID or its domain."""

    tenant_id: str
    domain: str
    contacts: ContactStore = field(factory=ContactStore)
    apps: dict[str, App] = field(factory=dict)
    delta_expiry_epoch: int = 0
    """Bumped by ``expire_delta_tokens``: older delta/skip tokens get 400 syncStateNotFound."""
    delta_reset_epoch: int = 0
    """Bumped by ``reset_delta_sync``: older delta/skip tokens get 410 Gone."""
    token_generation: int = 0
    """Bumped by ``revoke_tokens``: older access tokens get 401."""

    def matches(self, name: str) -> bool:
        """True when ``name`` (GUID or domain, any case) addresses this tenant."""
        name = name.lower()
        return name in (self.tenant_id.lower(), self.domain.lower())

    def register_app(self, client_id: str | None = None, secret: str | None = None,
                     certificate: bytes | str | None = None,
                     roles: Iterable[str] = (ORG_CONTACT_READ_ALL,),
                     display_name: str = "dirgw") -> App:
        """Register an app (replacing one with the same client id) and grant it ``roles``."""
        app = App(client_id or _new_id(), display_name, roles=set(roles))
        if secret is not None:
            app.add_secret(secret)
        if certificate is not None:
            app.add_certificate(certificate)
        self.apps[app.client_id] = app
        return app

    def app(self, client_id: str) -> App | None:
        return self.apps.get(client_id)

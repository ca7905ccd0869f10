"""State of one emulated Entra tenant: its contacts, app registrations and credentials.

Pure values with no I/O.  Times are seconds on the emulator's clock (``GraphEmulator.now()``).

App provisioning (issue 6, graph.md §10): an `App` is an application object together with its
(optional) service principal, password and key credentials with validity windows, and granted
app roles (``roles`` set directly through the emulator's API, ``assignments`` made through
``appRoleAssignedTo``).  Objects created through Graph carry the emulator time from which they
are visible (``visible_at``, ``sp_visible_at``) and credentials the time from which the token
endpoint accepts them (``usable_at``): Entra's replication delay.  A tenant also has directory
users (with directory roles, for the device-code sign-in of an admin), pending device codes,
refresh tokens and soft-deleted applications.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable

from attrs import define, field
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gateway.testing.contacts import ContactStore

__all__ = ["Tenant", "App", "PasswordCredential", "KeyCredential", "RoleAssignment", "DirectoryUser",
           "DeviceCode", "RefreshGrant", "GRAPH_APP_ID", "GRAPH_APP_ROLES", "DIRECTORY_ROLES",
           "ORG_CONTACT_READ_ALL", "CONTACT_READ_ROLES", "MICROSOFT_SERVICES_TENANT", "new_secret"]

#: appId of the Microsoft Graph resource (graph.md §1).
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
#: The application permission the contact sync needs.
ORG_CONTACT_READ_ALL = "OrgContact.Read.All"
#: Roles any of which lets an app read orgContacts (least privilege first).
CONTACT_READ_ROLES = frozenset({ORG_CONTACT_READ_ALL, "Directory.Read.All", "Directory.ReadWrite.All"})
#: appOwnerOrganizationId of Microsoft's first-party service principals.
MICROSOFT_SERVICES_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"

#: Application permissions (``appRoles``) of the Microsoft Graph service principal: value → id
#: (graph.md §1; ids are the same in every tenant).
GRAPH_APP_ROLES = {
    "OrgContact.Read.All": "e1a88a34-94c4-4418-be12-c87b00e26bea",
    "Contacts.Read": "089fe4d0-434a-44c5-8827-41ba8a0b17f5",
    "User.Read.All": "df021288-bdef-4463-88db-98f22de89214",
    "Directory.Read.All": "7ab1d382-f21e-4acd-a863-ba3e13f7da61",
    "Directory.ReadWrite.All": "19dbc75e-c2e2-444c-a770-ec69d8559fc7",
    "Application.Read.All": "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
    "Application.ReadWrite.All": "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9",
    "Application.ReadWrite.OwnedBy": "18a4783c-866b-4cc7-a460-3d5e5662c884",
    "AppRoleAssignment.ReadWrite.All": "06b708a9-e830-4db3-a914-8e69da51d44f",
}

#: Directory roles an admin may hold: name → role template id (the ``wids`` token claim).
DIRECTORY_ROLES = {
    "Global Administrator": "62e90394-69f5-4237-9190-012177145e10",
    "Privileged Role Administrator": "e8611ab8-c189-46e8-94e1-60213ab1f814",
    "Application Administrator": "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
    "Cloud Application Administrator": "158c047a-c907-4556-b7ef-446551a6b5f7",
    "Application Developer": "cf1c38e5-3621-4004-a7cb-879624dced7c",
}
_NEVER = float("-inf")


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
    usable_at: float = _NEVER
    """Emulator time from which the token endpoint accepts it (replication delay)."""

    def valid_at(self, now: float) -> bool:
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)

    @property
    def hint(self) -> str:
        return self.secret_text[:3]


@define
class KeyCredential:
    """A certificate (``keyCredentials`` entry, type ``AsymmetricX509Cert``)."""

    certificate: x509.Certificate
    key_id: str = field(factory=_new_id)
    display_name: str = ""
    start: float | None = None
    """``startDateTime`` (default: the certificate's notBefore)."""
    end: float | None = None
    """``endDateTime`` (default: the certificate's notAfter)."""
    usable_at: float = _NEVER
    """Emulator time from which the token endpoint accepts it (replication delay)."""

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

    @property
    def start_time(self) -> float:
        return self.start if self.start is not None else self.certificate.not_valid_before_utc.timestamp()

    @property
    def end_time(self) -> float:
        return self.end if self.end is not None else self.certificate.not_valid_after_utc.timestamp()


@define
class RoleAssignment:
    """An app role assignment made through ``appRoleAssignedTo`` (admin consent to an app role)."""

    id: str
    app_role_id: str
    value: str
    resource_id: str
    resource_display_name: str
    created: float
    effective_at: float
    """Emulator time from which new tokens carry the role (replication delay)."""


@define
class App:
    """An app registration together with its service principal in one tenant.

    Apps registered through the emulator's API exist with a service principal from the start;
    apps created through ``POST /applications`` get one by ``POST /servicePrincipals``.
    """

    client_id: str
    display_name: str
    object_id: str = field(factory=_new_id)
    service_principal_id: str = field(factory=_new_id)
    roles: set[str] = field(factory=set)
    """Application permissions granted through the emulator's API (app role values)."""
    passwords: list[PasswordCredential] = field(factory=list)
    keys: list[KeyCredential] = field(factory=list)
    assignments: list[RoleAssignment] = field(factory=list)
    """App role assignments made through Graph (``appRoleAssignedTo``)."""
    service_principal: bool = True
    visible_at: float = _NEVER
    """Emulator time from which the application object can be found (replication delay)."""
    sp_visible_at: float = _NEVER
    created: float | None = None
    sign_in_audience: str = "AzureADMyOrg"
    required_resource_access: list[dict[str, object]] = field(factory=list)
    notes: str | None = None
    tags: list[str] = field(factory=list)
    owner_id: str | None = None
    """Object id of the user who created it through Graph (its owner)."""
    deleted: float | None = None
    """Emulator time of the (soft) deletion."""

    def visible(self, now: float) -> bool:
        return self.visible_at <= now

    def sp_visible(self, now: float) -> bool:
        return self.service_principal and self.sp_visible_at <= now and self.visible(now)

    def granted_roles(self, now: float) -> set[str]:
        """Role values a token issued at ``now`` carries."""
        return set(self.roles) | {a.value for a in self.assignments if a.effective_at <= now}

    def set_roles(self, roles: Iterable[str]) -> None:
        """Grant exactly ``roles`` (dropping Graph-made assignments of other roles)."""
        self.roles = set(roles)
        self.assignments = [a for a in self.assignments if a.value in self.roles]

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
class DirectoryUser:
    """A user who can sign in with the device code flow, holding directory ``roles`` (names)."""

    upn: str
    roles: set[str] = field(factory=set)
    object_id: str = field(factory=_new_id)
    display_name: str = ""

    def has_any(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))

    def wids(self) -> list[str]:
        """Role template ids for the ``wids`` claim (plus the default user role)."""
        ids = [DIRECTORY_ROLES[r] for r in sorted(self.roles) if r in DIRECTORY_ROLES]
        return ids + ["b79fbf4d-3ef9-4689-8143-76b194e85509"]


@define
class DeviceCode:
    """A device-code sign-in (RFC 8628) waiting for, or given, the user's approval."""

    device_code: str
    user_code: str
    client_id: str
    scopes: list[str]
    """Scopes as requested, e.g. ``https://graph.microsoft.com/Application.ReadWrite.All``."""
    issued: float
    expires_at: float
    status: str = "pending"
    """``pending``, ``approved``, ``declined`` or ``redeemed``."""
    user: DirectoryUser | None = None


@define
class RefreshGrant:
    """What a refresh token stands for."""

    user: DirectoryUser
    client_id: str
    scopes: list[str]


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
    graph_sp_id: str = field(factory=_new_id)
    """Object id of the Microsoft Graph service principal in this tenant."""
    users: dict[str, DirectoryUser] = field(factory=dict)
    """Directory users by lower-case UPN; ``admin@<domain>`` is a Global Administrator."""
    device_codes: dict[str, DeviceCode] = field(factory=dict)
    refresh_tokens: dict[str, RefreshGrant] = field(factory=dict)
    deleted_apps: dict[str, App] = field(factory=dict)
    """Soft-deleted applications by object id (``/directory/deletedItems``)."""
    users_can_register_apps: bool = True
    """Entra's "Users can register applications" (default yes): users without a role may too."""

    def __attrs_post_init__(self) -> None:
        if not self.users:
            self.add_user(f"admin@{self.domain}", ["Global Administrator"], "Tenant Admin")

    def add_user(self, upn: str, roles: Iterable[str] = (), display_name: str = "") -> DirectoryUser:
        """Add a user, or set the roles of an existing one."""
        unknown = set(roles) - set(DIRECTORY_ROLES)
        if unknown:
            raise ValueError(f"unknown directory roles {sorted(unknown)}; known: {sorted(DIRECTORY_ROLES)}")
        user = self.users.get(upn.lower())
        if user is None:
            user = DirectoryUser(upn, set(roles), display_name=display_name or upn.split("@")[0])
            self.users[upn.lower()] = user
        else:
            user.roles = set(roles)
        return user

    def user_by_id(self, object_id: str) -> DirectoryUser | None:
        return next((u for u in self.users.values() if u.object_id == object_id), None)

    def app_by_object_id(self, object_id: str) -> App | None:
        return next((a for a in self.apps.values() if a.object_id == object_id), None)

    def app_by_sp_id(self, sp_id: str) -> App | None:
        return next((a for a in self.apps.values()
                     if a.service_principal and a.service_principal_id == sp_id), None)

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

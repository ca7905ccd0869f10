"""A fake Microsoft 365 tenant: Entra token endpoint plus Graph ``/contacts``, over loopback HTTPS.

`GraphEmulator` runs on a Twisted reactor (real or fake) and is driven through its Python API
(seed and change contacts, register apps, inject faults, expire delta tokens, approve an admin's
device-code sign-in, set the replication delay of app provisioning, read the request log) or
over HTTP through the admin API under ``/_emulator/`` (``admin.py``), which
``dirgw emulator`` and the subprocess harness (``process.py``) use.  Call its methods on the
reactor thread.

Layout: ``tenant.py``/``contacts.py`` hold the pure state, ``entra.py`` and ``graph.py`` turn a
request into a `Reply`, ``web.py`` routes, applies faults and latency on the reactor clock and
writes replies, ``provisioning.py`` answers ``/applications`` and ``/servicePrincipals``,
``tls.py`` makes the certificates; this module holds it together.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from attrs import define
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IReactorTCP
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.server import Site

from gateway.testing.contacts import ContactStore
from gateway.testing.faults import Fault, FaultPlan
from gateway.testing.tenant import ORG_CONTACT_READ_ALL, App, DeviceCode, DirectoryUser, Tenant
from gateway.testing.tls import ensure_server_files
from gateway.testing.web import EmulatorResource, RequestRecord

__all__ = ["GraphEmulator", "Settings", "RequestRecord"]


@define
class Settings:
    """Knobs of the emulator; change them at any time."""

    page_size: int = 100
    """Items per delta page and default ``$top`` of list pages."""
    latency: float = 0.0
    """Response time (reactor clock) of every Graph page: from the request's arrival to its
    answer, the time the emulator takes to make the page included (see ``web.py``)."""
    token_lifetime: int = 3599
    """``expires_in`` of access tokens (msal re-acquires below 300)."""
    delta_token_lifetime: float = 7 * 86400
    """Age (emulator clock) after which skip/delta tokens get 400 syncStateNotFound."""
    replication_delay: float = 0.0
    """Seconds (emulator clock) before objects created through Graph can be found, new
    credentials are accepted by the token endpoint and new grants show in tokens."""
    device_code_interval: int = 5
    """Polling interval the device code endpoint advises (msal sleeps it between polls)."""
    device_code_lifetime: int = 900
    """``expires_in`` of device codes."""

    _NAMES = ("page_size", "latency", "token_lifetime", "delta_token_lifetime", "replication_delay",
              "device_code_interval", "device_code_lifetime")

    def update(self, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            if name not in self._NAMES:
                raise ValueError(f"unknown setting {name!r}")
            setattr(self, name, type(getattr(self, name))(value))
        if self.page_size < 1 or self.latency < 0 or self.token_lifetime < 1:
            raise ValueError("page_size and token_lifetime must be positive, latency not negative")
        if self.replication_delay < 0 or self.device_code_interval < 1 or self.device_code_lifetime < 1:
            raise ValueError("replication_delay must not be negative, device code interval and "
                             "lifetime must be positive")

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._NAMES}


class _TrackingSite(Site):
    """A Site that knows its open connections, so `GraphEmulator.stop` can close them."""

    def __init__(self, resource: Any) -> None:
        super().__init__(resource)
        self.displayTracebacks = False
        self.channels: dict[Any, Deferred[None]] = {}
        """Open connections, each with a Deferred that fires when it is closed."""

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 (Twisted's name)
        channel = super().buildProtocol(addr)
        if channel is None:
            return None
        closed: Deferred[None] = Deferred()
        self.channels[channel] = closed
        lost = channel.connectionLost

        def connection_lost(reason: Any) -> None:
            self.channels.pop(channel, None)
            try:
                lost(reason)
            finally:
                closed.callback(None)

        channel.connectionLost = connection_lost
        return channel


class GraphEmulator:
    """One emulator process-worth of tenants, settings, faults and a request log.

    ``reactor`` provides the clock for delays and token times and the TCP listener;
    ``state_dir`` receives the CA and server certificate (``ca.pem`` is the ``ca_bundle``).
    A default tenant (``domain``/``tenant_id``) exists from the start.  ``other_phone_types``
    accepts phone types orgContact lacks (e.g. ``home``) instead of rejecting such contacts.
    """

    def __init__(self, reactor: Any, state_dir: Path | str, *,
                 domain: str = "contoso.onmicrosoft.com", tenant_id: str | None = None,
                 page_size: int = 100, latency: float = 0.0, token_lifetime: int = 3599,
                 delta_token_lifetime: float = 7 * 86400, other_phone_types: bool = False) -> None:
        self._reactor = reactor
        self._other_phone_types = other_phone_types
        self.state_dir = Path(state_dir)
        self.settings = Settings(page_size, latency, token_lifetime, delta_token_lifetime)
        self.settings.update({})  # validate
        self._initial_settings = self.settings.to_json()
        self.faults = FaultPlan()
        self.requests: list[RequestRecord] = []
        self.tenants: list[Tenant] = []
        self.signing_key = secrets.token_bytes(32)
        """HS256 key of the access tokens this emulator issues and accepts."""
        self.state_key = secrets.token_bytes(32)
        """HMAC key of the opaque skip/delta tokens."""
        self._clock_offset = 0.0
        self._port: IListeningPort | None = None
        self._scheme = "https"
        self._host = "127.0.0.1"
        self.resource = EmulatorResource(self)
        self.site = _TrackingSite(self.resource)
        self.add_tenant(domain, tenant_id)

    # -- time ---------------------------------------------------------------------------------

    def now(self) -> float:
        """The emulator's clock: the reactor's plus every `advance_clock`."""
        return float(self._reactor.seconds()) + self._clock_offset

    def call_later(self, seconds: float, f: Any) -> Any:
        """Run ``f`` after ``seconds`` on the reactor clock (not shifted by `advance_clock`)."""
        return self._reactor.callLater(seconds, f)

    def advance_clock(self, seconds: float) -> float:
        """Move the emulator's clock forward (access and delta tokens age); returns `now`."""
        self._clock_offset += seconds
        return self.now()

    # -- tenants, contacts, apps ----------------------------------------------------------------

    @property
    def tenant(self) -> Tenant:
        """The default tenant."""
        return self.tenants[0]

    def add_tenant(self, domain: str, tenant_id: str | None = None) -> Tenant:
        """Another tenant, addressed by ``domain`` or its GUID."""
        tenant = Tenant(tenant_id or str(uuid.uuid4()), domain,
                        ContactStore(other_phone_types=self._other_phone_types))
        if any(t.matches(tenant.tenant_id) or t.matches(domain) for t in self.tenants):
            raise ValueError(f"tenant {domain} / {tenant.tenant_id} exists already")
        self.tenants.append(tenant)
        return tenant

    def find_tenant(self, name: str) -> Tenant | None:
        """The tenant with this GUID or domain, or None."""
        return next((t for t in self.tenants if t.matches(name)), None)

    def _tenant(self, tenant: Tenant | str | None) -> Tenant:
        if tenant is None:
            return self.tenant
        if isinstance(tenant, Tenant):
            return tenant
        found = self.find_tenant(tenant)
        if found is None:
            raise KeyError(f"no tenant {tenant!r}")
        return found

    def seed_contacts(self, contacts: Iterable[Mapping[str, Any]] | Mapping[str, Any],
                      tenant: Tenant | str | None = None) -> list[dict[str, Any]]:
        """Replace all contacts (removing the others) by ``contacts`` (a list or ``{"value": [...]}``)."""
        store = self._tenant(tenant).contacts
        keep = {c.get("id") for c in (contacts.get("value", [contacts]) if isinstance(contacts, Mapping)
                                      else contacts)}
        for existing in store.all():
            if existing["id"] not in keep:
                store.remove(existing["id"])
        return store.upsert_many(contacts)

    def add_contacts(self, contacts: Iterable[Mapping[str, Any]] | Mapping[str, Any],
                     tenant: Tenant | str | None = None) -> list[dict[str, Any]]:
        """Add or replace contacts (a list or ``{"value": [...]}``); returns them in full shape."""
        return self._tenant(tenant).contacts.upsert_many(contacts)

    def add_contact(self, contact: Mapping[str, Any], tenant: Tenant | str | None = None) -> dict[str, Any]:
        """Add or replace one contact; returns it in full Graph shape (with its id)."""
        return self._tenant(tenant).contacts.upsert(contact)

    def change_contact(self, contact_id: str, changes: Mapping[str, Any] | None = None,
                       tenant: Tenant | str | None = None, **more: Any) -> dict[str, Any]:
        """Change properties of a contact (``phones`` replaces all its phones)."""
        return self._tenant(tenant).contacts.update(contact_id, {**(changes or {}), **more})

    def remove_contact(self, contact_id: str, permanent: bool = False,
                       tenant: Tenant | str | None = None) -> None:
        """Remove a contact: ``@removed`` reason ``changed`` (soft) or ``deleted`` (permanent)."""
        self._tenant(tenant).contacts.remove(contact_id, permanent)

    def contacts(self, tenant: Tenant | str | None = None) -> list[dict[str, Any]]:
        return self._tenant(tenant).contacts.all()

    def add_user(self, upn: str, roles: Iterable[str] = (), tenant: Tenant | str | None = None,
                 display_name: str = "") -> DirectoryUser:
        """Add a directory user (or set its roles): names from `tenant.DIRECTORY_ROLES`."""
        return self._tenant(tenant).add_user(upn, roles, display_name)

    def pending_device_codes(self) -> list[tuple[Tenant, DeviceCode]]:
        """Device codes waiting for approval, oldest first."""
        now = self.now()
        found = [(t, c) for t in self.tenants for c in t.device_codes.values()
                 if c.status == "pending" and now < c.expires_at]
        return sorted(found, key=lambda tc: tc[1].issued)

    def _device_code(self, user_code: str | None) -> tuple[Tenant, DeviceCode]:
        pending = self.pending_device_codes()
        if user_code is not None:
            pending = [tc for tc in pending if tc[1].user_code.upper() == user_code.strip().upper()]
        if not pending:
            raise KeyError(f"no pending device code {user_code or ''}".strip())
        return pending[-1]

    def approve_device_code(self, user_code: str | None = None, user: str | None = None,
                            roles: Iterable[str] | None = None) -> DeviceCode:
        """Sign a user in on a pending device code (the latest one when ``user_code`` is None).

        ``user`` is a UPN (default ``admin@<domain>``, a Global Administrator); ``roles``, when
        given, become that user's directory roles (``[]``: an ordinary user).
        """
        tenant, code = self._device_code(user_code)
        upn = user or f"admin@{tenant.domain}"
        existing = tenant.users.get(upn.lower())
        if roles is not None or existing is None:
            existing = tenant.add_user(upn, roles or ())
        code.user = existing
        code.status = "approved"
        return code

    def decline_device_code(self, user_code: str | None = None) -> DeviceCode:
        """The user declines the sign-in: polling gets ``authorization_declined``."""
        _, code = self._device_code(user_code)
        code.status = "declined"
        return code

    def register_app(self, client_id: str | None = None, secret: str | None = None,
                     certificate: bytes | str | None = None,
                     roles: Iterable[str] = (ORG_CONTACT_READ_ALL,),
                     tenant: Tenant | str | None = None,
                     secret_expires_in: float | None = None, display_name: str = "dirgw") -> App:
        """Register an app with a secret and/or a PEM certificate, granted ``roles``."""
        app = self._tenant(tenant).register_app(client_id, None, certificate, roles, display_name)
        if secret is not None:
            end = None if secret_expires_in is None else self.now() + secret_expires_in
            app.add_secret(secret, start=None, end=end)
        return app

    def delete_app(self, client_id: str, tenant: Tenant | str | None = None) -> None:
        """Delete an app registration (soft: it moves to the deleted items), with its SP."""
        t = self._tenant(tenant)
        app = t.apps.pop(client_id)
        app.deleted = self.now()
        t.deleted_apps[app.object_id] = app

    # -- delta state, tokens, faults, log ---------------------------------------------------------

    def expire_delta_tokens(self, tenant: Tenant | str | None = None) -> None:
        """Every skip/delta token issued so far gets 400 ``syncStateNotFound``."""
        self._tenant(tenant).delta_expiry_epoch += 1

    def reset_delta_sync(self, tenant: Tenant | str | None = None) -> None:
        """Every skip/delta token issued so far gets 410 Gone with a Location header."""
        self._tenant(tenant).delta_reset_epoch += 1

    def revoke_tokens(self, tenant: Tenant | str | None = None) -> None:
        """Every access token issued so far gets 401 on Graph."""
        self._tenant(tenant).token_generation += 1

    def inject(self, kind: str, fault: Fault, count: int = 1) -> None:
        """The next ``count`` requests of ``kind`` (see `faults.REQUEST_KINDS`) get ``fault``."""
        self.faults.add(kind, fault, count)

    def clear_faults(self) -> None:
        self.faults.clear()

    def count(self, kind: str | None = None, status: int | None = None) -> int:
        """How many recorded requests match ``kind`` and ``status``."""
        return sum(1 for r in self.requests
                   if (kind is None or r.kind == kind) and (status is None or r.status == status))

    def clear_requests(self) -> None:
        self.requests.clear()

    def reset(self, contacts: Iterable[Mapping[str, Any]] | Mapping[str, Any] | None = None) -> None:
        """Back to a fresh start, keeping tenants and apps: new contacts, settings, no faults.

        Delta tokens from before get 410 Gone.
        """
        for tenant in self.tenants:
            tenant.contacts = ContactStore(other_phone_types=self._other_phone_types)
            tenant.delta_reset_epoch += 1
        if contacts is not None:
            self.tenant.contacts.upsert_many(contacts)
        self.settings.update(self._initial_settings)
        self.faults.clear()
        self.requests.clear()
        self._clock_offset = 0.0

    # -- serving --------------------------------------------------------------------------------

    async def start(self, port: int = 0, host: str = "127.0.0.1", tls: bool = True) -> None:
        """Listen on ``host:port`` (0 picks a free port), over HTTPS unless ``tls`` is False."""
        reactor: IReactorTCP = self._reactor
        endpoint_type = TCP6ServerEndpoint if ":" in host else TCP4ServerEndpoint
        endpoint = endpoint_type(reactor, port, interface=host)
        factory: Any = self.site
        if tls:
            files = ensure_server_files(self.state_dir, hosts=(host,))
            options = ssl.PrivateCertificate.loadPEM(files.server_pem()).options()
            factory = TLSMemoryBIOFactory(options, False, self.site)
        self._scheme = "https" if tls else "http"
        self._host = host
        self._port = await endpoint.listen(factory)

    async def stop(self) -> None:
        """Stop listening and abort the connections still open."""
        if self._port is not None:
            port, self._port = self._port, None
            await port.stopListening()
        waiting = []
        for channel, closed in list(self.site.channels.items()):
            # Site wraps each HTTPChannel in a _GenericHTTPChannelProtocol
            inner = getattr(channel, "_channel", channel)
            transport = getattr(inner, "transport", None)
            if transport is not None:
                waiting.append(closed)
                transport.abortConnection()
        for closed in waiting:
            await closed

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator is not listening")
        return int(self._port.getHost().port)

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT``: both the authority host and the Graph URL."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{self._scheme}://{host}:{self.port}"

    @property
    def ca_bundle(self) -> Path:
        return self.state_dir / "ca.pem"

    def source_config(self, client_id: str, secret_file: str | Path | None = None,
                      tenant: Tenant | str | None = None) -> dict[str, str]:
        """Values for a gateway ``m365_mail_contacts`` source pointed at this emulator."""
        config = {"tenant_id": self._tenant(tenant).domain, "client_id": client_id,
                  "authority_host": self.base_url, "graph_url": self.base_url,
                  "ca_bundle": str(self.ca_bundle)}
        if secret_file is not None:
            config["client_secret_file"] = str(secret_file)
        return config

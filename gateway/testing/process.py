"""Run ``dirgw emulator`` in a child process and drive it with blocking calls (for tests).

The emulator gets its own process and reactor, so a test process can use real msal (blocking,
``requests``), stdlib HTTP or a reactor of its own against it, and start it once per test
session.  Everything the Python API of `GraphEmulator` offers is reachable through the admin
API; this class wraps it::

    with EmulatorProcess.start(tmp_path, contacts=[...], page_size=50) as emu:
        emu.inject("delta", status=429, retry_after=2, count=3)
        session = emu.requests_session()       # requests.Session trusting the emulator's CA
        ...
"""

from __future__ import annotations

import http.client
import json
import select
import ssl
import subprocess
import sys
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["EmulatorProcess", "AdminError"]


class AdminError(RuntimeError):
    """The admin API answered an error."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"admin API answered {status}: {body}")
        self.status = status
        self.body = body


class EmulatorProcess:
    """A running ``python -m gateway.testing.emulator_cli --json`` child process."""

    def __init__(self, process: subprocess.Popen[str], values: Mapping[str, Any]) -> None:
        self.process = process
        self.values = dict(values)
        self.base_url: str = values["base_url"]
        self.port: int = int(values["port"])
        self.host: str = urllib.parse.urlsplit(self.base_url).hostname or "127.0.0.1"
        self.tenant_domain: str = values["tenant_domain"]
        self.tenant_guid: str = values["tenant_guid"]
        self.client_id: str = values["client_id"]
        self.secret_file = Path(values["client_secret_file"])
        self.client_secret: str = self.secret_file.read_text(encoding="utf-8").strip()
        self.ca_bundle = Path(values["ca_bundle"])
        self.state_dir = Path(values["state_dir"])
        self._ssl = ssl.create_default_context(cafile=str(self.ca_bundle))

    @classmethod
    def start(cls, state_dir: Path | str, contacts: Any = None, *, page_size: int = 100,
              latency: float = 0.0, token_lifetime: int = 3599, port: int = 0,
              extra_args: Iterable[str] = (), timeout: float = 30.0) -> EmulatorProcess:
        """Start the emulator (certificates and logs go to ``state_dir``) and wait until it listens."""
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "gateway.testing.emulator_cli", "--json",
                "--state-dir", str(state_dir), "--port", str(port), "--page-size", str(page_size),
                "--latency", str(latency), "--token-lifetime", str(token_lifetime), *extra_args]
        if contacts is not None:
            seed = state_dir / "seed-contacts.json"
            seed.write_text(json.dumps(contacts), encoding="utf-8")
            argv += ["--contacts", str(seed)]
        log = open(state_dir / "emulator.log", "w", encoding="utf-8")  # noqa: SIM115 (child owns it)
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        line = process.stdout.readline() if ready else ""
        if not line:
            process.kill()
            process.wait()
            raise RuntimeError("the emulator did not start: "
                               + (state_dir / "emulator.log").read_text(encoding="utf-8"))
        return cls(process, json.loads(line))

    def stop(self) -> None:
        """Terminate the child process (SIGTERM stops its reactor) and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- plain HTTPS --------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """An SSL context trusting only the emulator's CA."""
        return self._ssl

    def requests_session(self) -> Any:
        """A ``requests.Session`` trusting the emulator's CA and ignoring REQUESTS_CA_BUNDLE.

        Pass it to msal as ``http_client=`` (graph.md §9.5: with ``trust_env`` on, requests
        ignores ``verify=`` when REQUESTS_CA_BUNDLE is set).
        """
        import requests

        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca_bundle)
        return session

    def call(self, method: str, url: str, body: bytes | None = None,
             headers: Mapping[str, str] | None = None, timeout: float = 10.0
             ) -> tuple[int, dict[str, str], bytes]:
        """One HTTPS request (``url`` absolute or a path); (status, lower-cased headers, body)."""
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or self.host
        port = parts.port or self.port
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = http.client.HTTPSConnection(host, port, context=self._ssl, timeout=timeout)
        try:
            conn.request(method, target, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            conn.close()

    # -- admin API ----------------------------------------------------------------------------

    def admin(self, method: str, path: str, body: Any = None, tenant: str | None = None,
              query: Mapping[str, str] | None = None) -> Any:
        """Call ``/_emulator/{path}``; returns the parsed JSON, raises `AdminError` on 4xx/5xx."""
        params = dict(query or {})
        if tenant is not None:
            params["tenant"] = tenant
        url = f"/_emulator/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        data = None if body is None else json.dumps(body).encode("utf-8")
        status, _, raw = self.call(method, url, data, {"Content-Type": "application/json"})
        value = json.loads(raw) if raw.strip() else None
        if status >= 400:
            raise AdminError(status, value)
        return value

    def reset(self, contacts: Any = None) -> None:
        """Fresh contacts (none unless given), default settings, no faults, empty request log."""
        self.admin("POST", "reset", {"contacts": contacts} if contacts is not None else None)

    def state(self) -> Any:
        return self.admin("GET", "state")

    def add_contacts(self, contacts: Any, tenant: str | None = None) -> list[dict[str, Any]]:
        return list(self.admin("POST", "contacts", contacts, tenant)["value"])

    def change_contact(self, contact_id: str, tenant: str | None = None, **changes: Any) -> dict[str, Any]:
        return dict(self.admin("PATCH", f"contacts/{urllib.parse.quote(contact_id)}", changes, tenant))

    def remove_contact(self, contact_id: str, permanent: bool = False, tenant: str | None = None) -> None:
        self.admin("DELETE", f"contacts/{urllib.parse.quote(contact_id)}", None, tenant,
                   {"permanent": "true"} if permanent else None)

    def contacts(self, tenant: str | None = None) -> list[dict[str, Any]]:
        return list(self.admin("GET", "contacts", None, tenant)["value"])

    def register_app(self, tenant: str | None = None, **spec: Any) -> dict[str, Any]:
        """Register an app: ``client_id``, ``secret``, ``certificate`` (PEM str), ``roles``,
        ``secret_expires_in``."""
        return dict(self.admin("POST", "apps", spec, tenant))

    def delete_app(self, client_id: str, tenant: str | None = None) -> None:
        self.admin("DELETE", f"apps/{client_id}", None, tenant)

    def set_roles(self, client_id: str, roles: Iterable[str], tenant: str | None = None) -> None:
        self.admin("PATCH", f"apps/{client_id}", {"roles": list(roles)}, tenant)

    # -- app provisioning ------------------------------------------------------------------------

    def approve_device_code(self, user_code: str | None = None, user: str | None = None,
                            roles: Iterable[str] | None = None) -> dict[str, Any]:
        """Sign ``user`` (default ``admin@<domain>``, Global Administrator) in on a pending
        device code (default: the latest); ``roles`` replace the user's directory roles."""
        spec: dict[str, Any] = {}
        if user_code is not None:
            spec["user_code"] = user_code
        if user is not None:
            spec["user"] = user
        if roles is not None:
            spec["roles"] = list(roles)
        return dict(self.admin("POST", "devicecode/approve", spec))

    def decline_device_code(self, user_code: str | None = None) -> dict[str, Any]:
        return dict(self.admin("POST", "devicecode/decline",
                               {"user_code": user_code} if user_code else {}))

    def device_codes(self) -> list[dict[str, Any]]:
        """Pending device codes (user_code, client_id, scopes, tenant)."""
        return list(self.admin("GET", "devicecode")["value"])

    def directory(self, tenant: str | None = None) -> dict[str, Any]:
        """Apps (with service principal, credentials, grants), deleted apps and users of a tenant."""
        return dict(self.admin("GET", "directory", None, tenant))

    def add_user(self, upn: str, roles: Iterable[str] = (), tenant: str | None = None) -> dict[str, Any]:
        return dict(self.admin("POST", "users", {"upn": upn, "roles": list(roles)}, tenant))

    def set_tenant_options(self, tenant: str | None = None, **options: Any) -> dict[str, Any]:
        """E.g. ``users_can_register_apps=False``."""
        return dict(self.admin("PATCH", "tenant", options, tenant))

    def add_tenant(self, domain: str, tenant_id: str | None = None) -> dict[str, Any]:
        spec = {"domain": domain, **({"tenant_id": tenant_id} if tenant_id else {})}
        return dict(self.admin("POST", "tenants", spec))

    def inject(self, kind: str, count: int = 1, **fault: Any) -> None:
        """Queue a fault (fields of `gateway.testing.faults.Fault`) for the next ``count`` requests."""
        self.admin("POST", "faults", {"kind": kind, "count": count, **fault})

    def clear_faults(self) -> None:
        self.admin("DELETE", "faults")

    def requests(self) -> list[dict[str, Any]]:
        """The request log: dicts with method, path, query, kind, status, fault."""
        return list(self.admin("GET", "requests")["value"])

    def clear_requests(self) -> None:
        self.admin("DELETE", "requests")

    def settings(self, **changes: Any) -> dict[str, Any]:
        """Change settings (page_size, latency, token_lifetime, delta_token_lifetime,
        replication_delay, device_code_interval, device_code_lifetime); returns all."""
        if changes:
            return dict(self.admin("PATCH", "settings", changes))
        return dict(self.admin("GET", "settings"))

    def advance_clock(self, seconds: float) -> float:
        return float(self.admin("POST", "clock", {"advance": seconds})["now"])

    def expire_delta_tokens(self, tenant: str | None = None) -> None:
        self.admin("POST", "delta/expire", None, tenant)

    def reset_delta_sync(self, tenant: str | None = None) -> None:
        self.admin("POST", "delta/reset", None, tenant)

    def revoke_tokens(self, tenant: str | None = None) -> None:
        self.admin("POST", "tokens/revoke", None, tenant)

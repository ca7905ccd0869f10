"""Configuration keys of an ``m365_mail_contacts`` source.

Secrets are referenced (a file, an environment variable, a certificate
path), never written into the configuration or any log line.
"""

from __future__ import annotations

import os
import re
from typing import Any

from attrs import frozen

__all__ = ["M365Options", "CLOUDS", "parse_m365_options"]

#: Authority host and Graph root per cloud (graph.md §2).
CLOUDS = {
    "global": ("https://login.microsoftonline.com", "https://graph.microsoft.com"),
    "usgov": ("https://login.microsoftonline.us", "https://graph.microsoft.us"),
    "usgov-dod": ("https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
    "china": ("https://login.partner.microsoftonline.cn", "https://microsoftgraph.chinacloudapi.cn"),
}

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


@frozen(repr=False)
class M365Options:
    """Where and how one Microsoft 365 tenant is read."""

    tenant_id: str
    client_id: str
    client_secret_file: str | None
    client_secret_env: str | None
    certificate: str | None
    cloud: str
    authority_host: str
    graph_url: str
    ca_bundle: str | None
    proxy: str | None
    interval: float
    page_size: int | None
    request_timeout: float

    def __repr__(self) -> str:  # never shows secret material (there is none here, only references)
        return f"M365Options(tenant_id={self.tenant_id!r}, client_id={self.client_id!r}, graph_url={self.graph_url!r})"

    @property
    def credential_kind(self) -> str:
        return "certificate" if self.certificate else "secret"

    def identity(self) -> tuple[str, str, str]:
        """What, when changed, invalidates the saved delta state."""
        return (self.tenant_id.lower(), self.client_id.lower(), self.graph_url)


def _url(t: Any, name: str, default: str) -> str:
    value = t.get(name, str, default, "an https URL")
    if not re.match(r"^https?://[^/\s]+", value):
        raise t.error(name, f"expected an https URL, got {value!r}")
    return value.rstrip("/")


def parse_m365_options(t: Any, base: str) -> dict[str, Any]:
    """Read the Microsoft 365 keys of a source table; returns {"m365": M365Options}."""
    from gateway.config import parse_duration

    tenant = t.get("tenant_id", str, None, "a tenant GUID or domain (contoso.onmicrosoft.com)")
    if tenant is None:
        raise t.error("tenant_id", "missing; the tenant GUID or its domain (contoso.onmicrosoft.com)")
    if not (_GUID.match(tenant) or _DOMAIN.match(tenant)):
        raise t.error("tenant_id", f"expected a tenant GUID or domain, got {tenant!r}")
    client_id = t.get("client_id", str, None, "the application (client) id, a GUID")
    if client_id is None:
        raise t.error("client_id", "missing; the application (client) id (dirgw app generate writes it)")
    if not _GUID.match(client_id):
        raise t.error("client_id", f"expected a GUID, got {client_id!r}")
    secret_file = t.get("client_secret_file", str, None, "a file path")
    secret_env = t.get("client_secret_env", str, None, "an environment variable name")
    certificate = t.get("certificate", str, None, "a PEM file path")
    given = [k for k, v in (("client_secret_file", secret_file), ("client_secret_env", secret_env),
                            ("certificate", certificate)) if v is not None]
    if len(given) != 1:
        raise t.error(
            "client_secret_file",
            "exactly one of client_secret_file, client_secret_env or certificate is needed"
            + (f" (got {', '.join(given)})" if given else ""),
        )
    if secret_file is not None:
        secret_file = os.path.normpath(os.path.join(base, secret_file))
    if certificate is not None:
        certificate = os.path.normpath(os.path.join(base, certificate))
    if secret_env is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", secret_env):
        raise t.error("client_secret_env", f"expected an environment variable name, got {secret_env!r}")
    cloud = t.get("cloud", str, "global", " | ".join(CLOUDS))
    if cloud not in CLOUDS:
        raise t.error("cloud", f"expected one of {' | '.join(CLOUDS)}, got {cloud!r}")
    authority_default, graph_default = CLOUDS[cloud]
    ca_bundle = t.get("ca_bundle", str, None, "a PEM file path")
    if ca_bundle is not None:
        ca_bundle = os.path.normpath(os.path.join(base, ca_bundle))
    proxy = t.get("proxy", str, None, "a proxy URL like http://proxy.example:3128")
    if proxy is not None and not re.match(r"^https?://[^/\s]+", proxy):
        raise t.error("proxy", f"expected a proxy URL like http://proxy.example:3128, got {proxy!r}")
    interval_raw = t.get("interval", (str, int, float), "5m", "a duration such as \"5m\"")
    try:
        interval = parse_duration(interval_raw)
    except ValueError as e:
        raise t.error("interval", f"expected {e}, got {interval_raw!r}")
    if interval < 1:
        raise t.error("interval", "expected at least 1s")
    page_size = t.get("page_size", int, None, "an integer from 1 to 999")
    if page_size is not None and not 1 <= page_size <= 999:
        raise t.error("page_size", f"expected an integer from 1 to 999, got {page_size}")
    timeout_raw = t.get("request_timeout", (str, int, float), "60s", "a duration")
    try:
        timeout = parse_duration(timeout_raw)
    except ValueError as e:
        raise t.error("request_timeout", f"expected {e}, got {timeout_raw!r}")
    options = M365Options(
        tenant_id=tenant,
        client_id=client_id,
        client_secret_file=secret_file,
        client_secret_env=secret_env,
        certificate=certificate,
        cloud=cloud,
        authority_host=_url(t, "authority_host", authority_default),
        graph_url=_url(t, "graph_url", graph_default),
        ca_bundle=ca_bundle,
        proxy=proxy,
        interval=interval,
        page_size=page_size,
        request_timeout=timeout,
    )
    return {"m365": options}

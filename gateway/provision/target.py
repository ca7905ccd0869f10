"""Which tenant, endpoints and files a ``dirgw app`` command works on.

Read from the source's ``[[sources]]`` table in the configuration file (raw TOML: the table may
still lack ``client_id`` and the credential before ``app generate``), with command-line
overrides for the tenant, ``authority_host``, ``graph_url``, ``ca_bundle`` and ``proxy``.
"""

from __future__ import annotations

import os
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

from attrs import frozen

from gateway.m365config import CLOUDS
from gateway.provision.errors import EXIT_ERROR, EXIT_USAGE, ProvisionError

__all__ = ["Target", "resolve_target", "read_sources", "app_link", "api_permissions_link",
           "admin_consent_link", "is_microsoft_host", "M365_TYPE", "CREDENTIAL_KEYS"]

M365_TYPE = "m365_mail_contacts"
#: The keys that reference a credential; exactly one is set in a working source.
CREDENTIAL_KEYS = ("client_secret_file", "client_secret_env", "certificate")

_MICROSOFT_HOSTS = {
    "login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "sts.windows.net",
    "login.chinacloudapi.cn", "login.partner.microsoftonline.cn", "login.microsoftonline.de",
    "login-us.microsoftonline.com", "login.microsoftonline.us", "login.usgovcloudapi.net",
}
_PORTALS = {"global": "https://entra.microsoft.com", "usgov": "https://portal.azure.us",
            "usgov-dod": "https://portal.azure.us", "china": "https://portal.azure.cn"}
_BLADE = "#view/Microsoft_AAD_RegisteredApps/ApplicationMenuBlade/~"


def is_microsoft_host(url: str) -> bool:
    """True for Entra's own hosts (msal validates those by instance discovery)."""
    return (urllib.parse.urlsplit(url).hostname or "").lower() in _MICROSOFT_HOSTS


def app_link(cloud: str, app_id: str) -> str:
    """The app registration in the Entra admin center (graph.md §10.4; a deep link, not a contract)."""
    if cloud == "global":
        return f"{_PORTALS['global']}/{_BLADE}/Overview/appId/{app_id}"
    return f"{_PORTALS.get(cloud, _PORTALS['global'])}/{_BLADE}/Overview/appId/{app_id}/isMSAApp~/false"


def api_permissions_link(cloud: str, app_id: str) -> str:
    if cloud == "global":
        return f"{_PORTALS['global']}/{_BLADE}/CallAnAPI/appId/{app_id}"
    return f"{_PORTALS.get(cloud, _PORTALS['global'])}/{_BLADE}/CallAnAPI/appId/{app_id}/isMSAApp~/false"


def admin_consent_link(authority_host: str, tenant: str, app_id: str) -> str:
    """Tenant-wide admin consent, the manual alternative to ``appRoleAssignedTo``."""
    return f"{authority_host}/{tenant}/adminconsent?client_id={app_id}"


@frozen
class Target:
    """One source of one configuration file, and where its tenant is."""

    config_path: Path
    source: str
    table: dict[str, Any] | None
    """The source's table as parsed, or None when the file or the source does not exist yet."""
    tenant: str | None
    cloud: str
    authority_host: str
    graph_url: str
    ca_bundle: str | None
    """Absolute path of extra trust roots, if any."""
    proxy: str | None
    written_overrides: dict[str, str]
    """Overrides given on the command line, as they should appear in the source's table."""

    @property
    def config_dir(self) -> Path:
        return self.config_path.parent

    def get(self, key: str) -> Any:
        return None if self.table is None else self.table.get(key)

    def config_relative(self, path: str | None) -> Path | None:
        """A path from the source's table, relative to the configuration file."""
        if not path:
            return None
        return Path(os.path.normpath(self.config_dir / path))


def read_sources(path: Path) -> list[dict[str, Any]] | None:
    """The ``[[sources]]`` tables of ``path`` (None when the file does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ProvisionError(f"cannot read {path}: {e}", EXIT_ERROR) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProvisionError(f"{path} is not valid TOML: {e}", EXIT_ERROR) from None
    sources = data.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, dict) for s in sources):
        raise ProvisionError(f"{path}: sources must be an array of tables [[sources]]", EXIT_ERROR)
    return sources


def _url(value: str, what: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ProvisionError(f"{what}: expected an https URL, got {value!r}", EXIT_USAGE)
    return value.rstrip("/")


def resolve_target(config: str | Path, source: str, *, tenant: str | None = None,
                   authority_host: str | None = None, graph_url: str | None = None,
                   ca_bundle: str | None = None, proxy: str | None = None,
                   must_exist: bool = True) -> Target:
    """The `Target` for ``source`` in ``config`` with the command line's overrides."""
    path = Path(config).absolute()
    sources = read_sources(path)
    if sources is None and must_exist:
        raise ProvisionError(f"configuration file {path} does not exist", EXIT_USAGE)
    table = next((s for s in sources or [] if s.get("name") == source), None)
    if table is None and must_exist:
        names = ", ".join(str(s.get("name")) for s in sources or []) or "none"
        raise ProvisionError(f"{path} has no source named {source!r} (sources: {names})", EXIT_USAGE)
    if table is not None and table.get("type") != M365_TYPE:
        raise ProvisionError(f"source {source!r} is of type {table.get('type')!r}; dirgw app "
                             f"works on {M365_TYPE} sources", EXIT_USAGE)
    table_get = (table or {}).get
    cloud = str(table_get("cloud", "global"))
    if cloud not in CLOUDS:
        raise ProvisionError(f"source {source!r}: unknown cloud {cloud!r}", EXIT_USAGE)
    written: dict[str, str] = {}
    if authority_host:
        authority_host = _url(authority_host, "--authority-host")
        written["authority_host"] = authority_host
    if graph_url:
        graph_url = _url(graph_url, "--graph-url")
        written["graph_url"] = graph_url
    bundle: str | None = None
    if ca_bundle:
        bundle = os.path.abspath(ca_bundle)
        written["ca_bundle"] = bundle
    elif table_get("ca_bundle"):
        bundle = os.path.normpath(os.path.join(path.parent, str(table_get("ca_bundle"))))
    if bundle is not None and not os.path.isfile(bundle):
        raise ProvisionError(f"ca_bundle {bundle} does not exist", EXIT_USAGE)
    if proxy:
        written["proxy"] = proxy
    written = {k: v for k, v in written.items() if table_get(k) != v}
    return Target(
        config_path=path,
        source=source,
        table=table,
        tenant=tenant or (str(table_get("tenant_id")) if table_get("tenant_id") else None),
        cloud=cloud,
        authority_host=authority_host or str(table_get("authority_host") or CLOUDS[cloud][0]).rstrip("/"),
        graph_url=graph_url or str(table_get("graph_url") or CLOUDS[cloud][1]).rstrip("/"),
        ca_bundle=bundle,
        proxy=proxy or (str(table_get("proxy")) if table_get("proxy") else None),
        written_overrides=written,
    )

"""Access tokens for Microsoft Graph from msal, off the reactor thread.

msal blocks (its constructor does tenant discovery over HTTP, token calls
use ``requests``), so every msal call runs in the reactor's thread pool.
A token is reused until shortly before it expires, measured on the
injected clock.  Secrets are read from their reference when needed and
never logged.
"""

from __future__ import annotations

import os
import re
import ssl
import threading
import urllib.request
from typing import Any, Callable, Protocol

from twisted.internet.threads import deferToThreadPool

from gateway.m365config import M365Options

__all__ = ["TokenProvider", "TokenError", "MsalTokenProvider", "load_credential", "requests_session", "resolve_proxy"]

#: Renew this many seconds before a token expires.
RENEW_MARGIN = 300.0

_WELL_KNOWN = {
    "login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "sts.windows.net",
    "login.chinacloudapi.cn", "login.partner.microsoftonline.cn", "login.microsoftonline.de",
    "login-us.microsoftonline.com", "login.microsoftonline.us", "login.usgovcloudapi.net",
}


class TokenError(Exception):
    """No token could be had; ``code`` is Entra's error (invalid_client, ...), or 'unreachable'."""

    def __init__(self, code: str, description: str, transient: bool = False, retry_after: float | None = None):
        self.code = code
        self.description = description
        self.transient = transient
        self.retry_after = retry_after
        super().__init__(f"{code}: {description}")


class TokenProvider(Protocol):
    async def token(self) -> str: ...

    def invalidate(self) -> None: ...


def load_credential(options: M365Options) -> Any:
    """The msal client_credential for a source: a secret string or a certificate dict."""
    if options.certificate:
        try:
            with open(options.certificate, "rb") as f:
                pem = f.read().decode("ascii")
        except OSError as e:
            raise TokenError("credential_unreadable", f"cannot read certificate file {options.certificate}: {e.strerror}")
        keys = re.findall(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", pem, re.S)
        certs = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem, re.S)
        if not keys or not certs:
            raise TokenError(
                "credential_unreadable",
                f"{options.certificate} must hold the private key and the certificate (PEM)",
            )
        return {"private_key": keys[0], "public_certificate": certs[0]}
    if options.client_secret_env:
        secret = os.environ.get(options.client_secret_env, "")
        if not secret:
            raise TokenError("credential_unreadable", f"environment variable {options.client_secret_env} is not set")
        return secret
    assert options.client_secret_file
    try:
        with open(options.client_secret_file, encoding="utf-8") as f:
            secret = f.read().strip()
    except OSError as e:
        raise TokenError(
            "credential_unreadable", f"cannot read secret file {options.client_secret_file}: {e.strerror}"
        )
    if not secret:
        raise TokenError("credential_unreadable", f"secret file {options.client_secret_file} is empty")
    return secret


def resolve_proxy(configured: str | None, url: str) -> str | None:
    """The proxy for ``url``: the configured one, else HTTPS_PROXY unless NO_PROXY exempts the host."""
    if configured:
        return configured
    host = re.sub(r"^https?://", "", url).split("/", 1)[0]
    if urllib.request.proxy_bypass(host.split(":", 1)[0]):
        return None
    return urllib.request.getproxies().get("https")


def requests_session(ca_bundle: str | None, proxy: str | None):
    """A requests session for msal that trusts the system roots plus ``ca_bundle``.

    ``trust_env`` is off so that REQUESTS_CA_BUNDLE cannot silently replace
    our trust roots; the proxy is resolved by us (see resolve_proxy).
    """
    import requests
    from requests.adapters import HTTPAdapter

    class _Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> Any:
            context = ssl.create_default_context()
            if ca_bundle:
                context.load_verify_locations(cafile=ca_bundle)
            kwargs["ssl_context"] = context
            return super().init_poolmanager(*args, **kwargs)

        def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
            context = ssl.create_default_context()
            if ca_bundle:
                context.load_verify_locations(cafile=ca_bundle)
            kwargs["ssl_context"] = context
            return super().proxy_manager_for(*args, **kwargs)

    session = requests.Session()
    session.trust_env = False
    session.mount("https://", _Adapter())
    if proxy:
        session.proxies = {"https": proxy, "http": proxy}
    return session


class MsalTokenProvider:
    """Client-credential tokens for one tenant and app."""

    def __init__(self, options: M365Options, reactor: Any, now: Callable[[], float] | None = None) -> None:
        self._options = options
        self._reactor = reactor
        self._now = now or reactor.seconds
        self._app: Any = None
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self.roles: tuple[str, ...] = ()

    @property
    def scope(self) -> str:
        return self._options.graph_url + "/.default"

    def invalidate(self) -> None:
        """Forget the cached token (after a 401), so the next call asks Entra."""
        self._token = None
        self._expires = 0.0
        with self._lock:
            if self._app is not None:
                try:
                    self._app.remove_tokens_for_client()
                except Exception:  # older msal
                    self._app = None

    async def token(self) -> str:
        if self._token is not None and self._now() < self._expires - RENEW_MARGIN:
            return self._token
        result = await deferToThreadPool(self._reactor, self._reactor.getThreadPool(), self._acquire)
        token = result.get("access_token")
        if not token:
            raise _token_error(result)
        self._token = token
        self._expires = self._now() + float(result.get("expires_in", 3599))
        return token

    def _build_app(self) -> Any:
        import msal

        options = self._options
        authority = f"{options.authority_host}/{options.tenant_id}"
        host = re.sub(r"^https?://", "", options.authority_host).split("/", 1)[0].split(":", 1)[0]
        proxy = resolve_proxy(options.proxy, options.authority_host)
        return msal.ConfidentialClientApplication(
            options.client_id,
            client_credential=load_credential(options),
            authority=authority,
            http_client=requests_session(options.ca_bundle, proxy),
            instance_discovery=host in _WELL_KNOWN,
            timeout=options.request_timeout,
        )

    def _acquire(self) -> dict[str, Any]:
        """Runs in a worker thread."""
        import msal
        import requests

        try:
            with self._lock:
                if self._app is None:
                    self._app = self._build_app()
                app = self._app
            return app.acquire_token_for_client([self.scope])
        except TokenError:
            raise
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            self._app = None
            raise TokenError("unreachable", f"cannot reach {self._options.authority_host}: {type(e).__name__}",
                             transient=True)
        except msal.exceptions.MsalServiceError as e:
            self._app = None
            raise TokenError("service_error", str(e)[:200], transient=True)
        except ValueError as e:
            # msal raises ValueError for discovery problems (unknown tenant, bad authority)
            self._app = None
            raise TokenError("tenant_not_found", str(e)[:300], transient=True)


def _token_error(result: dict[str, Any]) -> TokenError:
    code = str(result.get("error", "unknown_error"))
    description = str(result.get("error_description", "")).split("\r\n", 1)[0].split("\n", 1)[0]
    transient = code in ("temporarily_unavailable", "server_error")
    return TokenError(code, description[:300], transient=transient)

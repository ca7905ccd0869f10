"""The admin's side of Graph: device-code sign-in (msal) and the provisioning REST calls.

Blocking (``requests`` through `gateway.auth.requests_session`, so ``ca_bundle`` and ``proxy``
apply as for the gateway itself): ``dirgw app`` is a command, not part of the service.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

from attrs import frozen

from gateway.auth import requests_session, resolve_proxy
from gateway.provision.errors import (EXIT_SIGN_IN, EXIT_USAGE, GraphError, ProvisionError,
                                      Unreachable)
from gateway.provision.runtime import Printer
from gateway.provision.target import Target, is_microsoft_host

_TIMEOUT = 30.0

__all__ = ["AdminSession", "GraphAdmin", "sign_in", "http_session", "ADMIN_CLIENT_ID",
           "ADMIN_SCOPES", "GRAPH_APP_ID", "ORG_CONTACT_READ_ALL", "ORG_CONTACT_READ_ALL_ID"]

#: Microsoft Graph Command Line Tools, a public client in every tenant (graph.md §1, §10.5).
ADMIN_CLIENT_ID = "14d82eec-204b-4c2f-b7e8-296a70dab67e"
#: Delegated permissions the admin signs in with (graph.md §10.1).
ADMIN_SCOPES = ("Application.ReadWrite.All", "AppRoleAssignment.ReadWrite.All")
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
ORG_CONTACT_READ_ALL = "OrgContact.Read.All"
ORG_CONTACT_READ_ALL_ID = "e1a88a34-94c4-4418-be12-c87b00e26bea"


def http_session(target: Target, url: str, timeout: float = _TIMEOUT) -> Any:
    """A requests session trusting ``ca_bundle``, going through the proxy for ``url``, with a
    default timeout on every request (msal passes none when given an ``http_client``)."""
    session = requests_session(target.ca_bundle, resolve_proxy(target.proxy, url))
    plain = session.request

    def request(method: str, request_url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", timeout)
        return plain(method, request_url, **kwargs)

    session.request = request
    return session


def network_problem(target: Target, url: str, error: Exception) -> Unreachable:
    import requests

    host = urllib.parse.urlsplit(url).netloc
    if isinstance(error, requests.exceptions.SSLError):
        hint = " (a TLS-inspecting proxy? set ca_bundle or pass --ca-bundle)"
        return Unreachable(f"TLS handshake with {host} failed{hint}: {_first_line(error)}")
    if isinstance(error, requests.exceptions.ProxyError):
        return Unreachable(f"the proxy refused the connection to {host}: {_first_line(error)}")
    if isinstance(error, requests.exceptions.Timeout):
        return Unreachable(f"{host} did not answer in time")
    return Unreachable(f"cannot connect to {host}: {_first_line(error)}")


def _first_line(error: Exception) -> str:
    text = str(error)
    return text.splitlines()[0][:240] if text else type(error).__name__


@frozen
class AdminSession:
    access_token: str
    user: str
    tenant_guid: str | None


def sign_in(target: Target, out: Printer, client_id: str = ADMIN_CLIENT_ID) -> AdminSession:
    """Device-code sign-in of an administrator (prints the URL and code; works headless)."""
    import msal
    import requests

    if not target.tenant:
        raise ProvisionError("no tenant: pass --tenant (the tenant's domain or GUID)", EXIT_USAGE)
    authority = f"{target.authority_host}/{target.tenant}"
    scopes = [f"{target.graph_url}/{scope}" for scope in ADMIN_SCOPES]
    try:
        app = msal.PublicClientApplication(
            client_id, authority=authority,
            http_client=http_session(target, target.authority_host),
            instance_discovery=is_microsoft_host(target.authority_host), timeout=_TIMEOUT)
        flow = app.initiate_device_flow(scopes=scopes)
    except requests.exceptions.RequestException as e:
        raise network_problem(target, target.authority_host, e) from None
    except ValueError as e:  # msal: tenant discovery failed (unknown tenant, bad authority)
        raise Unreachable(f"tenant {target.tenant} not found at {target.authority_host}: "
                          f"{_first_line(e)}") from None
    if "user_code" not in flow:
        raise ProvisionError(f"sign-in could not start: {flow.get('error')}: "
                             f"{_first_line(Exception(flow.get('error_description', '')))}", EXIT_SIGN_IN)
    out(flow.get("message") or f"To sign in, open {flow['verification_uri']} and enter the code "
                                 f"{flow['user_code']}.")
    out("Waiting for the sign-in to complete...")
    try:
        result = app.acquire_token_by_device_flow(flow)
    except requests.exceptions.RequestException as e:
        raise network_problem(target, target.authority_host, e) from None
    if "access_token" not in result:
        error = result.get("error", "unknown_error")
        description = str(result.get("error_description", "")).split("\r\n", 1)[0].split("\n", 1)[0]
        hint = {"authorization_declined": "the sign-in was declined",
                "expired_token": "the code expired before the sign-in completed"}.get(error, "")
        raise ProvisionError(f"sign-in failed: {hint or error}: {description}".rstrip(": "),
                             EXIT_SIGN_IN)
    claims = result.get("id_token_claims") or {}
    user = str(claims.get("preferred_username") or claims.get("upn") or claims.get("name") or "?")
    return AdminSession(result["access_token"], user, claims.get("tid"))


class GraphAdmin:
    """Graph calls with the admin's delegated token; errors become `GraphError`/`Unreachable`."""

    def __init__(self, target: Target, access_token: str, session: Any = None) -> None:
        self._target = target
        self._base = target.graph_url
        self._session = session or http_session(target, target.graph_url)
        self._session.headers["Authorization"] = f"Bearer {access_token}"

    def call(self, method: str, path: str, body: Any = None,
             query: Mapping[str, str] | None = None) -> Any:
        """``method`` on ``/v1.0{path}``; the parsed JSON answer (None for 204)."""
        import requests

        url = f"{self._base}/v1.0{path}"
        if query:
            url += "?" + "&".join(f"{k}={urllib.parse.quote(v, safe=chr(39) + '(),=$')}"
                                  for k, v in query.items())
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode("utf-8")
        try:
            response = self._session.request(method, url, data=data, headers=headers, timeout=_TIMEOUT)
        except requests.exceptions.RequestException as e:
            raise network_problem(self._target, url, e) from None
        text = response.text
        if response.status_code >= 400:
            code, message = "unknown", text[:200]
            try:
                error = json.loads(text)["error"]
                code, message = str(error.get("code", code)), str(error.get("message", message))
            except (ValueError, KeyError, TypeError, AttributeError):
                pass
            retry_after = None
            try:
                retry_after = float(response.headers.get("Retry-After", ""))
            except ValueError:
                pass
            raise GraphError(method, path, response.status_code, code, message, retry_after)
        if response.status_code == 204 or not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise GraphError(method, path, response.status_code, "invalidResponse",
                             "the answer is not JSON") from None

    # -- the calls of graph.md §10.2 ------------------------------------------------------------

    def graph_service_principal(self) -> dict[str, Any]:
        found = self.call("GET", "/servicePrincipals", query={
            "$filter": f"appId eq '{GRAPH_APP_ID}'", "$select": "id,appId,displayName,appRoles"})
        values = (found or {}).get("value") or []
        if not values:
            raise GraphError("GET", "/servicePrincipals", 404, "Request_ResourceNotFound",
                             "the Microsoft Graph service principal was not found in the tenant")
        return dict(values[0])

    def create_application(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.call("POST", "/applications", spec))

    def get_application(self, app_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/applications(appId='{app_id}')",
                              query={"$select": "id,appId,displayName,passwordCredentials,keyCredentials"}))

    def set_key_credentials(self, object_id: str, keys: list[dict[str, Any]]) -> None:
        self.call("PATCH", f"/applications/{object_id}", {"keyCredentials": keys})

    def add_password(self, object_id: str, display_name: str, end: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/applications/{object_id}/addPassword",
                              {"passwordCredential": {"displayName": display_name, "endDateTime": end}}))

    def create_service_principal(self, app_id: str) -> dict[str, Any]:
        return dict(self.call("POST", "/servicePrincipals", {"appId": app_id}))

    def role_assignments(self, resource_sp_id: str) -> list[dict[str, Any]]:
        found = self.call("GET", f"/servicePrincipals/{resource_sp_id}/appRoleAssignedTo")
        return list((found or {}).get("value") or [])

    def assign_role(self, resource_sp_id: str, principal_sp_id: str, app_role_id: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/servicePrincipals/{resource_sp_id}/appRoleAssignedTo",
                              {"principalId": principal_sp_id, "resourceId": resource_sp_id,
                               "appRoleId": app_role_id}))

    def delete_application(self, object_id: str) -> None:
        self.call("DELETE", f"/applications/{object_id}")

    def purge_deleted(self, object_id: str) -> None:
        self.call("DELETE", f"/directory/deletedItems/{object_id}")

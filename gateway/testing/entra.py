"""The Entra (login.microsoftonline.com) side of the emulator: discovery and the token endpoint.

Pure functions from request data to a `Reply`; the web layer (``emulator.py``) supplies the
base URL the client used, the time and the tenant directory.  Grants: client credentials
(secret in the body or HTTP Basic, or a certificate ``client_assertion``), device code
(``/devicecode`` plus approval through the emulator's API, for an admin's delegated token)
and refresh token.  Apps and credentials still inside their replication window are treated
as unknown, as Entra does right after creation (graph.md §10.3).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from attrs import frozen

from gateway.testing.jwt import (JWTError, b64url_decode, b64url_encode, encode_hs256, split_unverified,
                                 verify_rsa_signature)
from gateway.testing.replies import ENTRA_JSON, Reply, entra_error, json_reply
from gateway.testing.tenant import GRAPH_APP_ID, App, DeviceCode, DirectoryUser, RefreshGrant, Tenant

__all__ = ["TokenPolicy", "openid_configuration", "instance_discovery", "token_endpoint",
           "device_code_endpoint", "GRAPH_RESOURCES", "JWT_BEARER", "DEVICE_CODE_GRANT",
           "VERIFICATION_URI"]

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
VERIFICATION_URI = "https://microsoft.com/devicelogin"
_OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
_USER_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

#: Resources a client-credentials ``scope`` may name (besides the emulator's own base URL).
GRAPH_RESOURCES = frozenset({
    GRAPH_APP_ID,
    "https://graph.microsoft.com",
    "https://graph.microsoft.us",
    "https://dod-graph.microsoft.us",
    "https://microsoftgraph.chinacloudapi.cn",
})
#: ``aud`` of every access token the emulator issues.
TOKEN_AUDIENCE = "https://graph.microsoft.com"
_LOGIN_HOSTS = frozenset({"login.microsoftonline.com", "login.microsoftonline.us",
                          "login.partner.microsoftonline.cn", "login.chinacloudapi.cn"})
_GENERIC_TENANTS = frozenset({"common", "organizations", "consumers"})


@frozen
class TokenPolicy:
    """What the token endpoint needs from the emulator."""

    lifetime: int
    """``expires_in`` of issued tokens, seconds."""
    signing_key: bytes
    """HS256 key of the access tokens (the Graph side verifies with it)."""
    device_code_lifetime: int = 900
    """``expires_in`` of device codes, seconds."""
    device_code_interval: int = 5
    """Polling ``interval`` the device code endpoint advises, seconds."""


def _tenant_not_found(name: str, correlation_id: str | None, status: int = 400,
                      error: str = "invalid_request") -> Reply:
    return entra_error(
        status, error, 90002,
        f"Tenant '{name}' not found. Check to make sure you have the correct tenant ID and are "
        "signing into the correct cloud. Check with your subscription administrator, this may "
        "happen if there are no active subscriptions for the tenant.",
        correlation_id)


def openid_configuration(base: str, path_tenant: str, tenant: Tenant | None,
                         correlation_id: str | None = None) -> Reply:
    """``GET /{tenant}/v2.0/.well-known/openid-configuration``; endpoints on ``base``."""
    if tenant is None and path_tenant.lower() not in _GENERIC_TENANTS:
        return _tenant_not_found(path_tenant, correlation_id, error="invalid_tenant")
    t = tenant.tenant_id if tenant is not None else "{tenant}"
    doc = {
        "token_endpoint": f"{base}/{t}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                  "client_secret_basic"],
        "jwks_uri": f"{base}/{t}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{t}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{base}/oidc/userinfo",
        "authorization_endpoint": f"{base}/{t}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/{t}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/{t}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                             "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat",
                             "auth_time", "acr", "nonce", "preferred_username", "name", "tid",
                             "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": f"{base}/{t}/kerberos",
        "tenant_region_scope": "WW",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": urllib.parse.urlsplit(base).netloc,
        "rbac_url": "https://pas.windows.net",
    }
    return json_reply(200, doc, ENTRA_JSON, {"Cache-Control": "max-age=86400, private"})


def instance_discovery(base: str, authorization_endpoint: str | None) -> Reply:
    """``GET /common/discovery/instance`` (§9.1), listing the emulator's own host as an instance."""
    host = urllib.parse.urlsplit(base).netloc
    discovery = f"{base}/common/v2.0/.well-known/openid-configuration"
    if authorization_endpoint:
        parts = urllib.parse.urlsplit(authorization_endpoint)
        segments = [s for s in parts.path.split("/") if s]
        if parts.scheme and parts.netloc and segments:
            discovery = (f"{parts.scheme}://{parts.netloc}/{segments[0]}"
                         "/v2.0/.well-known/openid-configuration")
    metadata = [
        {"preferred_network": host, "preferred_cache": host, "aliases": [host]},
        {"preferred_network": "login.microsoftonline.com", "preferred_cache": "login.windows.net",
         "aliases": ["login.microsoftonline.com", "login.windows.net", "login.microsoft.com",
                     "sts.windows.net"]},
        {"preferred_network": "login.partner.microsoftonline.cn",
         "preferred_cache": "login.partner.microsoftonline.cn",
         "aliases": ["login.partner.microsoftonline.cn", "login.chinacloudapi.cn"]},
        {"preferred_network": "login.microsoftonline.de", "preferred_cache": "login.microsoftonline.de",
         "aliases": ["login.microsoftonline.de"]},
        {"preferred_network": "login.microsoftonline.us", "preferred_cache": "login.microsoftonline.us",
         "aliases": ["login.microsoftonline.us", "login.usgovcloudapi.net"]},
        {"preferred_network": "login-us.microsoftonline.com",
         "preferred_cache": "login-us.microsoftonline.com",
         "aliases": ["login-us.microsoftonline.com"]},
    ]
    doc = {"tenant_discovery_endpoint": discovery, "api-version": "1.1", "metadata": metadata}
    return json_reply(200, doc, ENTRA_JSON, {"Cache-Control": "max-age=86400, private"})


def _form_value(form: Mapping[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)


def _audience_ok(aud: Any, base: str, tenant: Tenant) -> bool:
    candidates = aud if isinstance(aud, list) else [aud]
    own_host = urllib.parse.urlsplit(base).netloc.lower()
    for candidate in candidates:
        if not isinstance(candidate, str):
            continue
        parts = urllib.parse.urlsplit(candidate)
        segments = [s for s in parts.path.split("/") if s]
        if (parts.scheme == "https" and parts.netloc.lower() in _LOGIN_HOSTS | {own_host}
                and len(segments) >= 3 and tenant.matches(segments[0])
                and segments[1:] in (["oauth2", "v2.0", "token"], ["oauth2", "token"])):
            return True
    return False


def _check_assertion(assertion: str, app: App, tenant: Tenant, base: str, now: float, wall_now: float,
                     correlation_id: str | None) -> Reply | None:
    """None when ``assertion`` proves possession of one of the app's certificates."""
    def reject(code: int, text: str) -> Reply:
        return entra_error(401, "invalid_client", code, text, correlation_id)

    try:
        header, claims, signature, signing_input = split_unverified(assertion)
        sha1 = b64url_decode(header["x5t"]) if isinstance(header.get("x5t"), str) else None
        sha256 = (b64url_decode(header["x5t#S256"])
                  if isinstance(header.get("x5t#S256"), str) else None)
    except JWTError:
        return reject(50027, "JWT token is invalid or malformed.")
    key = app.find_key(sha1, sha256)
    if key is not None and key.usable_at > now:
        key = None  # not replicated yet
    if key is None:
        thumb = (sha256 or sha1 or b"").hex().upper()
        return reject(700027, "The certificate with identifier used to sign the client assertion "
                      f"is not registered on application. [Reason - The key was not found., "
                      f"Thumbprint of key used by client: '{thumb}']")
    try:
        verify_rsa_signature(key.certificate, str(header.get("alg")), signing_input, signature)
    except JWTError:
        return reject(700027, "Client assertion failed signature validation.")
    if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
        return reject(700023, "Client assertion audience claim does not match Realm issuer, or "
                      "iss/sub is not the client id.")
    if not _audience_ok(claims.get("aud"), base, tenant):
        return reject(700212, f"No matching federated identity record found for presented "
                      f"assertion audience '{claims.get('aud')}'.")
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
    if not isinstance(exp, int | float) or exp <= wall_now - 300 or (
            isinstance(nbf, int | float) and nbf > wall_now + 300):
        return reject(700024, "Client assertion is not within its valid time range.")
    if not key.valid_at_wall_clock(wall_now):
        return reject(700027, "Client assertion contains an expired certificate.")
    return None


def _resource_of(scope: str | None, base: str) -> str | None:
    if not scope:
        return None
    parts = scope.split()
    if len(parts) != 1 or not parts[0].endswith("/.default"):
        return None
    return parts[0][: -len("/.default")]


def _resource_known(resource: str, base: str) -> bool:
    resource = resource.rstrip("/")
    if resource in GRAPH_RESOURCES:
        return True
    own = urllib.parse.urlsplit(base)
    parts = urllib.parse.urlsplit(resource)
    return parts.scheme == "https" and parts.netloc.lower() == own.netloc.lower()


def token_endpoint(
    *,
    base: str,
    path_tenant: str,
    tenant: Tenant | None,
    form: Mapping[str, list[str]],
    authorization: str | None,
    correlation_id: str | None,
    now: float,
    wall_now: float,
    policy: TokenPolicy,
    on_issued: Callable[[App, dict[str, Any]], None] | None = None,
) -> Reply:
    """``POST /{tenant}/oauth2/v2.0/token``: client credentials, device code, refresh token."""
    if tenant is None:
        return _tenant_not_found(path_tenant, correlation_id)
    grant = _form_value(form, "grant_type")
    if grant == DEVICE_CODE_GRANT:
        return _device_code_grant(base, tenant, form, correlation_id, now, policy)
    if grant == "refresh_token":
        return _refresh_grant(base, tenant, form, correlation_id, now, policy)
    if grant != "client_credentials":
        return entra_error(400, "unsupported_grant_type", 70003,
                           f"The app requested an unsupported grant type '{grant}'.", correlation_id)
    basic = _basic_auth(authorization)
    client_id = _form_value(form, "client_id") or (basic[0] if basic else None)
    if not client_id:
        return entra_error(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: 'client_id'.",
                           correlation_id)
    app = tenant.app(client_id)
    if app is None or not app.visible(now):
        return entra_error(
            400, "unauthorized_client", 700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{tenant.domain}'. This can happen if the application has not been installed by "
            "the administrator of the tenant or consented to by any user in the tenant. You may "
            "have sent your authentication request to the wrong tenant.", correlation_id)

    secret = _form_value(form, "client_secret") or (basic[1] if basic else None)
    assertion = _form_value(form, "client_assertion")
    if assertion is not None:
        if _form_value(form, "client_assertion_type") != JWT_BEARER:
            return entra_error(400, "invalid_request", 50027,
                               "client_assertion_type must be " + JWT_BEARER, correlation_id)
        rejected = _check_assertion(assertion, app, tenant, base, now, wall_now, correlation_id)
        if rejected is not None:
            return rejected
        method = "2"
    elif secret is not None:
        matching = [p for p in app.passwords
                    if secrets.compare_digest(p.secret_text, secret) and p.usable_at <= now]
        if not matching:
            return entra_error(
                401, "invalid_client", 7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{client_id}'.", correlation_id)
        if not any(p.valid_at(now) for p in matching):
            return entra_error(
                401, "invalid_client", 7000222,
                f"The provided client secret keys for app '{client_id}' are expired. Visit the "
                "Azure portal to create new keys for your app.", correlation_id)
        method = "1"
    else:
        return entra_error(
            401, "invalid_client", 7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the "
            "'client_credentials' grant type.", correlation_id)

    scope = _form_value(form, "scope")
    resource = _resource_of(scope, base)
    if resource is None:
        return entra_error(
            400, "invalid_scope", 1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must "
            "have a scope value with /.default suffixed to the resource identifier "
            "(application ID URI).", correlation_id)
    if not _resource_known(resource, base):
        return entra_error(
            400, "invalid_resource", 500011,
            f"The resource principal named {resource} was not found in the tenant named "
            f"{tenant.domain}. This can happen if the application has not been installed by the "
            "administrator of the tenant or consented to by any user in the tenant. You might "
            "have sent your authentication request to the wrong tenant.", correlation_id)

    issued = int(now)
    claims: dict[str, Any] = {
        "aud": TOKEN_AUDIENCE,
        "iss": f"https://sts.windows.net/{tenant.tenant_id}/",
        "iat": issued,
        "nbf": issued,
        "exp": issued + policy.lifetime,
        "appid": app.client_id,
        "appidacr": method,
        "idp": f"https://sts.windows.net/{tenant.tenant_id}/",
        "idtyp": "app",
        "oid": app.service_principal_id,
        "sub": app.service_principal_id,
        "tid": tenant.tenant_id,
        "uti": secrets.token_urlsafe(16),
        "ver": "1.0",
        "xms_gen": tenant.token_generation,
    }
    roles = app.granted_roles(now)
    if roles:
        claims["roles"] = sorted(roles)
    token = encode_hs256(claims, policy.signing_key)
    if on_issued is not None:
        on_issued(app, claims)
    body = {"token_type": "Bearer", "expires_in": policy.lifetime,
            "ext_expires_in": policy.lifetime, "access_token": token}
    return json_reply(200, body, ENTRA_JSON, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})


# -- device code and delegated tokens ---------------------------------------------------------------


def _split_scopes(scope: str | None, base: str) -> tuple[list[str], list[str]] | None:
    """(resource scopes as requested, OIDC scopes), or None when a resource is unknown."""
    resource_scopes: list[str] = []
    oidc: list[str] = []
    for item in (scope or "").split():
        if item in _OIDC_SCOPES:
            oidc.append(item)
            continue
        resource, _, name = item.rpartition("/")
        if not name or (resource and not _resource_known(resource, base)):
            return None
        resource_scopes.append(item)
    return resource_scopes, oidc


def _scope_names(scopes: list[str]) -> list[str]:
    """``Application.ReadWrite.All`` from ``https://graph.microsoft.com/Application.ReadWrite.All``."""
    return sorted({s.rpartition("/")[2] for s in scopes})


def device_code_endpoint(*, base: str, path_tenant: str, tenant: Tenant | None,
                         form: Mapping[str, list[str]], correlation_id: str | None, now: float,
                         policy: TokenPolicy) -> Reply:
    """``POST /{tenant}/oauth2/v2.0/devicecode``: a new device code, pending until approved."""
    if tenant is None:
        return _tenant_not_found(path_tenant, correlation_id)
    client_id = _form_value(form, "client_id")
    if not client_id:
        return entra_error(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: 'client_id'.",
                           correlation_id)
    split = _split_scopes(_form_value(form, "scope"), base)
    if split is None or not split[0]:
        return entra_error(400, "invalid_scope", 70011,
                           f"The provided value for the input parameter 'scope' is not valid. "
                           f"The scope {_form_value(form, 'scope')} is not valid.", correlation_id)
    user_code = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
    device_code = "DAQABAAEAAAD--" + secrets.token_urlsafe(48)
    tenant.device_codes[device_code] = DeviceCode(
        device_code, user_code, client_id, split[0], issued=now,
        expires_at=now + policy.device_code_lifetime)
    body = {
        "user_code": user_code,
        "device_code": device_code,
        "verification_uri": VERIFICATION_URI,
        "expires_in": policy.device_code_lifetime,
        "interval": policy.device_code_interval,
        "message": (f"To sign in, use a web browser to open the page {VERIFICATION_URI} and enter "
                    f"the code {user_code} to authenticate."),
    }
    return json_reply(200, body, ENTRA_JSON, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})


def _device_code_grant(base: str, tenant: Tenant, form: Mapping[str, list[str]],
                       correlation_id: str | None, now: float, policy: TokenPolicy) -> Reply:
    code = _form_value(form, "device_code") or _form_value(form, "code")
    flow = tenant.device_codes.get(code or "")
    if flow is None or flow.client_id != _form_value(form, "client_id") or flow.status == "redeemed":
        return entra_error(400, "invalid_grant", 70000,
                           "Provided grant is invalid or malformed.", correlation_id)
    if now >= flow.expires_at:
        return entra_error(400, "expired_token", 70020,
                           "The provided value for the input parameter 'device_code' is not valid. "
                           "This device code has expired.", correlation_id)
    if flow.status == "declined":
        return entra_error(400, "authorization_declined", 70000,
                           "The user denied the authorization request.", correlation_id)
    if flow.status != "approved" or flow.user is None:
        return entra_error(400, "authorization_pending", 70016,
                           "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                           correlation_id)
    flow.status = "redeemed"
    return _delegated_tokens(base, tenant, flow.user, flow.client_id, flow.scopes, now, policy)


def _refresh_grant(base: str, tenant: Tenant, form: Mapping[str, list[str]],
                   correlation_id: str | None, now: float, policy: TokenPolicy) -> Reply:
    grant = tenant.refresh_tokens.get(_form_value(form, "refresh_token") or "")
    if grant is None or grant.client_id != _form_value(form, "client_id"):
        return entra_error(400, "invalid_grant", 9002313,
                           "Invalid request. Request is malformed or invalid.", correlation_id)
    split = _split_scopes(_form_value(form, "scope"), base)
    scopes = split[0] if split is not None and split[0] else grant.scopes
    if not set(_scope_names(scopes)) <= set(_scope_names(grant.scopes)):
        return entra_error(400, "invalid_grant", 65001,
                           "The user or administrator has not consented to use the application.",
                           correlation_id)
    return _delegated_tokens(base, tenant, grant.user, grant.client_id, scopes, now, policy)


def _unsigned_jwt(claims: dict[str, Any]) -> str:
    header = b64url_encode(b'{"typ":"JWT","alg":"none"}')
    return f"{header}.{b64url_encode(_json_bytes(claims))}."


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _delegated_tokens(base: str, tenant: Tenant, user: DirectoryUser, client_id: str,
                      scopes: list[str], now: float, policy: TokenPolicy) -> Reply:
    """Access, refresh and ID token for ``user`` signed in to the public client ``client_id``."""
    issued = int(now)
    names = _scope_names(scopes)
    claims: dict[str, Any] = {
        "aud": TOKEN_AUDIENCE,
        "iss": f"https://sts.windows.net/{tenant.tenant_id}/",
        "iat": issued,
        "nbf": issued,
        "exp": issued + policy.lifetime,
        "appid": client_id,
        "appidacr": "0",
        "idtyp": "user",
        "name": user.display_name,
        "oid": user.object_id,
        "scp": " ".join(names),
        "sub": user.object_id,
        "tid": tenant.tenant_id,
        "unique_name": user.upn,
        "upn": user.upn,
        "uti": secrets.token_urlsafe(16),
        "ver": "1.0",
        "wids": user.wids(),
        "xms_gen": tenant.token_generation,
    }
    refresh = "1.AQ" + secrets.token_urlsafe(64)
    tenant.refresh_tokens[refresh] = RefreshGrant(user, client_id, list(scopes))
    id_token = _unsigned_jwt({
        "aud": client_id, "iss": f"{base}/{tenant.tenant_id}/v2.0", "iat": issued, "nbf": issued,
        "exp": issued + 3600, "name": user.display_name, "oid": user.object_id,
        "preferred_username": user.upn, "sub": user.object_id, "tid": tenant.tenant_id, "ver": "2.0"})
    client_info = b64url_encode(_json_bytes({"uid": user.object_id, "utid": tenant.tenant_id}))
    body = {"token_type": "Bearer", "scope": " ".join([*scopes, "openid", "profile"]),
            "expires_in": policy.lifetime, "ext_expires_in": policy.lifetime,
            "access_token": encode_hs256(claims, policy.signing_key), "refresh_token": refresh,
            "id_token": id_token, "client_info": client_info}
    return json_reply(200, body, ENTRA_JSON, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

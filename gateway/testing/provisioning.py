"""The Graph side of app provisioning: ``/applications``, ``/servicePrincipals``, app role
assignments and ``/directory/deletedItems`` (graph.md §10.2, §11).

Pure functions from request data to a `Reply`, like ``graph.py``.  What they model:

- **Authorization.**  A delegated (device-code) token needs the scope for the operation
  (``Application.Read.All``/``Application.ReadWrite.All`` to read, ``Application.ReadWrite.All``
  to create, change and delete apps and service principals, ``AppRoleAssignment.ReadWrite.All``
  to grant app roles) *and* a directory role: creating an app needs none while the tenant lets
  users register apps (Entra's default), otherwise Application Administrator, Cloud Application
  Administrator, Application Developer or Global Administrator; changing or deleting one needs
  ownership or one of the administrator roles; granting a **Microsoft Graph** app role needs
  Privileged Role Administrator or Global Administrator (graph.md §10.1).  Otherwise 403
  ``Authorization_RequestDenied``.  App-only tokens use the matching application permissions.
- **Replication delay** (§10.3).  Objects created here are not found (404
  ``Request_ResourceNotFound``, absent from lists) until ``replication_delay`` seconds of
  emulator time have passed; a service principal for a not-yet-visible app gets 400 "does not
  reference a valid application object", an assignment to a not-yet-visible principal 400
  "Not a valid reference update."; new credentials and grants reach the token endpoint after
  the same delay (``tenant.py``).
- Duplicate grants get 400; deleting an application soft-deletes it (``deletedItems``) and
  takes its service principal and grants with it.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from attrs import frozen
from cryptography import x509

from gateway.testing.graph import GraphContext
from gateway.testing.jwt import b64url_encode
from gateway.testing.replies import Reply, json_reply
from gateway.testing.tenant import (GRAPH_APP_ID, GRAPH_APP_ROLES, MICROSOFT_SERVICES_TENANT, App,
                                    DirectoryUser, KeyCredential, RoleAssignment, Tenant, new_secret)

__all__ = ["Caller", "handle", "parse_time", "format_time", "APP_ADMIN_ROLES", "GRANT_GRAPH_ROLES"]

#: Directory roles that may manage any app registration and enterprise app.
APP_ADMIN_ROLES = ("Global Administrator", "Application Administrator", "Cloud Application Administrator")
#: Directory roles that may create app registrations when users may not.
CREATE_APP_ROLES = (*APP_ADMIN_ROLES, "Application Developer")
#: Directory roles that may grant Microsoft Graph app roles (application permissions).
GRANT_GRAPH_ROLES = ("Global Administrator", "Privileged Role Administrator")

_READ = ("Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All",
         "Directory.ReadWrite.All")
_WRITE = ("Application.ReadWrite.All",)
_ASSIGN = ("AppRoleAssignment.ReadWrite.All",)
_TWO_YEARS = 2 * 365 * 86400
_DENIED = "Insufficient privileges to complete the operation."
_ALTERNATE_KEY = re.compile(r"^(applications|servicePrincipals)\(appId='([^']*)'\)$")
_FILTER = re.compile(r"^\s*(appId|displayName|id|principalId)\s+eq\s+'([^']*)'\s*$")
_APPLICATION_KEYS = {"displayName", "signInAudience", "requiredResourceAccess", "notes", "tags",
                     "keyCredentials", "description", "isFallbackPublicClient", "web", "publicClient",
                     "api", "identifierUris", "info"}
_AUDIENCES = ("AzureADMyOrg", "AzureADMultipleOrgs", "AzureADandPersonalMicrosoftAccount",
              "PersonalMicrosoftAccount")


def format_time(seconds: float) -> str:
    """Graph's ``2024-05-18T15:37:21Z`` for emulator time ``seconds``."""
    when = datetime.datetime.fromtimestamp(max(0.0, seconds), datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    """Seconds since the epoch from an ISO 8601 time (``Z`` or an offset; 7 fraction digits ok)."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text.strip())
    if not match:
        raise ValueError(f"not an ISO 8601 date and time: {text!r}")
    fraction = (match.group(2) or "")[:7]
    zone = match.group(3) or "Z"
    parsed = datetime.datetime.fromisoformat(match.group(1) + fraction
                                             + ("+00:00" if zone == "Z" else zone))
    return parsed.timestamp()


@frozen
class Caller:
    """Who is calling: a signed-in user (delegated scopes) or an app (application roles)."""

    user: DirectoryUser | None
    app_id: str
    scopes: frozenset[str]
    roles: frozenset[str]

    @classmethod
    def from_claims(cls, tenant: Tenant, claims: Mapping[str, Any]) -> Caller | None:
        if claims.get("idtyp") == "user" or "scp" in claims:
            user = tenant.user_by_id(str(claims.get("oid", "")))
            if user is None:
                return None
            return cls(user, str(claims.get("appid", "")),
                       frozenset(str(claims.get("scp", "")).split()), frozenset())
        return cls(None, str(claims.get("appid", "")), frozenset(),
                   frozenset(claims.get("roles") or ()))

    def granted(self, permissions: Iterable[str]) -> bool:
        return bool((self.scopes | self.roles) & set(permissions))

    def may_manage(self, app: App) -> bool:
        """May change or delete ``app`` (given the scope): an admin role, or its owner."""
        if self.user is None:
            return "Application.ReadWrite.All" in self.roles
        return self.user.has_any(*APP_ADMIN_ROLES) or (app.owner_id == self.user.object_id)


class _Answer(Exception):
    """Raised with the reply to send (errors deep inside a handler)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


@frozen
class _Request:
    tenant: Tenant
    caller: Caller
    method: str
    query: Mapping[str, str]
    body: bytes
    ctx: GraphContext
    delay: float

    @property
    def now(self) -> float:
        return self.ctx.now

    def fail(self, status: int, code: str, message: str) -> _Answer:
        return _Answer(self.ctx.error(status, code, message))

    def denied(self) -> _Answer:
        return self.fail(403, "Authorization_RequestDenied", _DENIED)

    def not_found(self, object_id: str) -> _Answer:
        return self.fail(404, "Request_ResourceNotFound",
                         f"Resource '{object_id}' does not exist or one of its queried "
                         "reference-property objects are not present.")

    def bad(self, message: str, code: str = "Request_BadRequest") -> _Answer:
        return self.fail(400, code, message)

    def json(self) -> dict[str, Any]:
        if not self.body.strip():
            return {}
        try:
            value = json.loads(self.body)
        except ValueError:
            raise self.bad("Unable to read JSON request payload. Please ensure Content-Type header "
                           "is set and payload is of valid JSON format.", "BadRequest") from None
        if not isinstance(value, dict):
            raise self.bad("The request payload must be a JSON object.", "BadRequest")
        return value

    def require(self, permissions: Iterable[str]) -> None:
        if not self.caller.granted(permissions):
            raise self.denied()

    def context(self, fragment: str) -> str:
        return f"{self.ctx.base}/v1.0/$metadata#{fragment}"


def handle(tenant: Tenant, claims: Mapping[str, Any], method: str, segments: list[str],
           query: Mapping[str, str], body: bytes, ctx: GraphContext, replication_delay: float) -> Reply:
    """Answer a provisioning request; ``segments`` follow ``v1.0``."""
    caller = Caller.from_claims(tenant, claims)
    if caller is None:
        return ctx.error(401, "InvalidAuthenticationToken", "Access token validation failure.")
    request = _Request(tenant, caller, method, query, body, ctx, replication_delay)
    try:
        return _route(request, segments)
    except _Answer as answer:
        return answer.reply


def _route(r: _Request, segments: list[str]) -> Reply:
    head, rest = segments[0], segments[1:]
    alternate = _ALTERNATE_KEY.match(head)
    if alternate:
        head = alternate.group(1)
    if head == "applications":
        if alternate:
            return _application_item(r, _app_by_app_id(r, alternate.group(2)), rest)
        if not rest:
            if r.method == "GET":
                return _list_applications(r)
            if r.method == "POST":
                return _create_application(r)
            raise _method_not_allowed(r)
        return _application_item(r, _app_by_object_id(r, rest[0]), rest[1:])
    if head == "servicePrincipals":
        if alternate:
            return _service_principal_item(r, _sp_by_app_id(r, alternate.group(2)), rest)
        if not rest:
            if r.method == "GET":
                return _list_service_principals(r)
            if r.method == "POST":
                return _create_service_principal(r)
            raise _method_not_allowed(r)
        return _service_principal_item(r, _sp_by_id(r, rest[0]), rest[1:])
    if head == "directory" and rest[:1] == ["deletedItems"] and len(rest) == 2:
        return _deleted_item(r, rest[1])
    raise r.bad(f"Resource not found for the segment '{head}'.", "BadRequest")


def _method_not_allowed(r: _Request) -> _Answer:
    return r.fail(405, "Request_BadRequest", f"The method {r.method} is not allowed here.")


# -- lookups ------------------------------------------------------------------------------------------

_GRAPH = "graph"


def _app_by_object_id(r: _Request, object_id: str) -> App:
    r.require(_READ)
    app = r.tenant.app_by_object_id(object_id)
    if app is None or not app.visible(r.now):
        raise r.not_found(object_id)
    return app


def _app_by_app_id(r: _Request, app_id: str) -> App:
    r.require(_READ)
    app = r.tenant.app(app_id)
    if app is None or not app.visible(r.now):
        raise r.not_found(app_id)
    return app


def _sp_by_id(r: _Request, sp_id: str) -> App | str:
    """The app whose service principal has ``sp_id``, or ``_GRAPH`` for Microsoft Graph."""
    r.require(_READ)
    if sp_id == r.tenant.graph_sp_id:
        return _GRAPH
    app = r.tenant.app_by_sp_id(sp_id)
    if app is None or not app.sp_visible(r.now):
        raise r.not_found(sp_id)
    return app


def _sp_by_app_id(r: _Request, app_id: str) -> App | str:
    r.require(_READ)
    if app_id == GRAPH_APP_ID:
        return _GRAPH
    app = r.tenant.app(app_id)
    if app is None or not app.sp_visible(r.now):
        raise r.not_found(app_id)
    return app


def _filter(r: _Request) -> tuple[str, str] | None:
    text = r.query.get("$filter")
    if text is None:
        return None
    match = _FILTER.match(text)
    if not match:
        raise r.bad(f"Unsupported or invalid query filter clause specified: {text!r}.",
                    "Request_UnsupportedQuery")
    return match.group(1), match.group(2)


def _select(r: _Request, value: dict[str, Any]) -> dict[str, Any]:
    text = r.query.get("$select")
    if not text:
        return value
    names = {n.strip() for n in text.split(",") if n.strip()} | {"id"}
    return {k: v for k, v in value.items() if k in names or k.startswith("@odata")}


# -- JSON shapes ----------------------------------------------------------------------------------------


def _password_json(app: App, now: float, p: Any) -> dict[str, Any]:
    start = p.start if p.start is not None else (app.created if app.created is not None else now)
    end = p.end if p.end is not None else start + _TWO_YEARS
    return {"customKeyIdentifier": None, "displayName": p.display_name or None,
            "endDateTime": format_time(end), "hint": p.hint, "keyId": p.key_id, "secretText": None,
            "startDateTime": format_time(start)}


def _key_json(k: KeyCredential) -> dict[str, Any]:
    return {"customKeyIdentifier": k.sha1.hex().upper(), "displayName": k.display_name or None,
            "endDateTime": format_time(k.end_time), "key": None, "keyId": k.key_id,
            "startDateTime": format_time(k.start_time), "type": "AsymmetricX509Cert",
            "usage": "Verify"}


def _application_json(r: _Request, app: App) -> dict[str, Any]:
    return {
        "id": app.object_id,
        "deletedDateTime": format_time(app.deleted) if app.deleted is not None else None,
        "appId": app.client_id,
        "applicationTemplateId": None,
        "createdDateTime": format_time(app.created if app.created is not None else r.now),
        "description": None,
        "displayName": app.display_name,
        "identifierUris": [],
        "isFallbackPublicClient": None,
        "notes": app.notes,
        "publisherDomain": r.tenant.domain,
        "signInAudience": app.sign_in_audience,
        "tags": list(app.tags),
        "requiredResourceAccess": app.required_resource_access,
        "keyCredentials": [_key_json(k) for k in app.keys],
        "passwordCredentials": [_password_json(app, r.now, p) for p in app.passwords],
    }


def _graph_sp_json(r: _Request) -> dict[str, Any]:
    return {
        "id": r.tenant.graph_sp_id,
        "deletedDateTime": None,
        "accountEnabled": True,
        "appDisplayName": "Microsoft Graph",
        "appId": GRAPH_APP_ID,
        "appOwnerOrganizationId": MICROSOFT_SERVICES_TENANT,
        "appRoleAssignmentRequired": False,
        "displayName": "Microsoft Graph",
        "servicePrincipalNames": ["https://graph.microsoft.com", GRAPH_APP_ID],
        "servicePrincipalType": "Application",
        "signInAudience": "AzureADMultipleOrgs",
        "tags": [],
        "appRoles": [
            {"allowedMemberTypes": ["Application"],
             "description": f"Allows the app to use {value} without a signed-in user.",
             "displayName": value, "id": role_id, "isEnabled": True, "origin": "Application",
             "value": value}
            for value, role_id in GRAPH_APP_ROLES.items()],
    }


def _sp_json(r: _Request, sp: App | str) -> dict[str, Any]:
    if sp == _GRAPH:
        return _graph_sp_json(r)
    assert isinstance(sp, App)
    return {
        "id": sp.service_principal_id,
        "deletedDateTime": None,
        "accountEnabled": True,
        "appDisplayName": sp.display_name,
        "appId": sp.client_id,
        "appOwnerOrganizationId": r.tenant.tenant_id,
        "appRoleAssignmentRequired": False,
        "displayName": sp.display_name,
        "servicePrincipalNames": [sp.client_id],
        "servicePrincipalType": "Application",
        "signInAudience": sp.sign_in_audience,
        "tags": [],
        "appRoles": [],
    }


def _synthetic_assignments(r: _Request, app: App) -> list[RoleAssignment]:
    """Grants made through the emulator's API, shown as assignments with stable ids."""
    made = {a.value for a in app.assignments}
    out = []
    for value in sorted(app.roles - made):
        if value not in GRAPH_APP_ROLES:
            continue
        digest = hashlib.sha256(f"{app.client_id}/{value}".encode()).digest()
        out.append(RoleAssignment(b64url_encode(digest)[:43], GRAPH_APP_ROLES[value], value,
                                  r.tenant.graph_sp_id, "Microsoft Graph",
                                  app.created if app.created is not None else 0.0, float("-inf")))
    return out


def _assignment_json(app: App, a: RoleAssignment) -> dict[str, Any]:
    return {"id": a.id, "deletedDateTime": None, "appRoleId": a.app_role_id,
            "createdDateTime": format_time(a.created), "principalDisplayName": app.display_name,
            "principalId": app.service_principal_id, "principalType": "ServicePrincipal",
            "resourceDisplayName": a.resource_display_name, "resourceId": a.resource_id}


def _assignments_of(r: _Request, app: App) -> list[RoleAssignment]:
    return [*app.assignments, *_synthetic_assignments(r, app)]


# -- applications ---------------------------------------------------------------------------------------


def _list_applications(r: _Request) -> Reply:
    r.require(_READ)
    wanted = _filter(r)
    values = []
    for app in r.tenant.apps.values():
        if not app.visible(r.now):
            continue
        if wanted is not None:
            field_name, expected = wanted
            actual = {"appId": app.client_id, "displayName": app.display_name, "id": app.object_id}.get(field_name)
            if actual is None or actual.lower() != expected.lower():
                continue
        values.append(_select(r, _application_json(r, app)))
    return json_reply(200, {"@odata.context": r.context("applications"), "value": values})


def _parse_required_resource_access(r: _Request, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise r.bad("requiredResourceAccess must be a collection.")
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("resourceAppId"), str) \
                or not isinstance(item.get("resourceAccess"), list):
            raise r.bad("Invalid value specified for property 'requiredResourceAccess' of resource "
                        "'Application'.")
        accesses = []
        for access in item["resourceAccess"]:
            if not isinstance(access, dict) or access.get("type") not in ("Role", "Scope") \
                    or not isinstance(access.get("id"), str):
                raise r.bad("Invalid value specified for property 'resourceAccess' of resource "
                            "'RequiredResourceAccess'.")
            accesses.append({"id": access["id"], "type": access["type"]})
        out.append({"resourceAppId": item["resourceAppId"], "resourceAccess": accesses})
    return out


def _load_certificate(r: _Request, key: Any) -> x509.Certificate:
    if not isinstance(key, str):
        raise r.bad("Invalid certificate: key value is missing.")
    try:
        data = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise r.bad("Invalid certificate: key value is not base64.") from None
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise r.bad("Invalid certificate: key value is invalid certificate") from None


def _parse_key_credentials(r: _Request, value: Any, existing: list[KeyCredential]) -> list[KeyCredential]:
    if not isinstance(value, list):
        raise r.bad("keyCredentials must be a collection.")
    keys = []
    for item in value:
        if not isinstance(item, dict) or item.get("type") != "AsymmetricX509Cert" \
                or item.get("usage") != "Verify":
            raise r.bad("Only keyCredentials of type AsymmetricX509Cert with usage Verify are "
                        "supported by the emulator.")
        certificate = _load_certificate(r, item.get("key"))
        not_before = certificate.not_valid_before_utc.timestamp()
        not_after = certificate.not_valid_after_utc.timestamp()
        try:
            start = parse_time(item["startDateTime"]) if item.get("startDateTime") else None
            end = parse_time(item["endDateTime"]) if item.get("endDateTime") else None
        except ValueError as e:
            raise r.bad(str(e)) from None
        if (start is not None and start < not_before - 1) or (end is not None and end > not_after + 1):
            raise r.bad("Key credential end date is invalid.")
        credential = KeyCredential(certificate, display_name=str(item.get("displayName") or ""),
                                   start=start, end=end, usable_at=r.now + r.delay)
        if isinstance(item.get("keyId"), str):
            credential.key_id = item["keyId"]
        same = next((k for k in existing if k.sha1 == credential.sha1), None)
        if same is not None:
            credential.usable_at = same.usable_at
            credential.key_id = same.key_id
        thumbprint = item.get("customKeyIdentifier")
        if thumbprint and str(thumbprint).upper() != credential.sha1.hex().upper():
            raise r.bad("The customKeyIdentifier does not match the certificate's thumbprint.")
        keys.append(credential)
    return keys


def _check_application_body(r: _Request, body: Mapping[str, Any]) -> None:
    unknown = sorted(set(body) - _APPLICATION_KEYS)
    if unknown:
        if "passwordCredentials" in unknown:
            raise r.bad("passwordCredentials cannot be set here; use addPassword.")
        raise r.bad(f"Property '{unknown[0]}' does not exist on type 'microsoft.graph.application'.")
    if "displayName" in body and (not isinstance(body["displayName"], str)
                                  or not body["displayName"].strip()):
        raise r.bad("Invalid value specified for property 'displayName' of resource 'Application'.")
    if "signInAudience" in body and body["signInAudience"] not in _AUDIENCES:
        raise r.bad("Invalid value specified for property 'signInAudience' of resource 'Application'.")
    for name in ("notes",):
        if name in body and body[name] is not None and not isinstance(body[name], str):
            raise r.bad(f"Invalid value specified for property '{name}' of resource 'Application'.")
    if "tags" in body and (not isinstance(body["tags"], list)
                           or not all(isinstance(t, str) for t in body["tags"])):
        raise r.bad("Invalid value specified for property 'tags' of resource 'Application'.")


def _create_application(r: _Request) -> Reply:
    r.require(_WRITE)
    user = r.caller.user
    if user is not None and not r.tenant.users_can_register_apps and not user.has_any(*CREATE_APP_ROLES):
        raise r.denied()
    body = r.json()
    _check_application_body(r, body)
    if "displayName" not in body:
        raise r.bad("Property 'displayName' is required.")
    app = App(_new_guid(), body["displayName"].strip(), service_principal=False,
              visible_at=r.now + r.delay, created=r.now,
              sign_in_audience=body.get("signInAudience", "AzureADMyOrg"),
              notes=body.get("notes"), tags=list(body.get("tags") or []),
              owner_id=user.object_id if user is not None else None)
    if "requiredResourceAccess" in body:
        app.required_resource_access = _parse_required_resource_access(r, body["requiredResourceAccess"])
    if "keyCredentials" in body:
        app.keys = _parse_key_credentials(r, body["keyCredentials"], [])
    r.tenant.apps[app.client_id] = app
    return json_reply(201, {"@odata.context": r.context("applications/$entity"),
                            **_application_json(r, app)})


def _new_guid() -> str:
    return str(uuid.uuid4())


def _application_item(r: _Request, app: App, rest: list[str]) -> Reply:
    if not rest:
        if r.method == "GET":
            return json_reply(200, {"@odata.context": r.context("applications/$entity"),
                                    **_select(r, _application_json(r, app))})
        if r.method == "PATCH":
            return _patch_application(r, app)
        if r.method == "DELETE":
            r.require(_WRITE)
            if not r.caller.may_manage(app):
                raise r.denied()
            app.deleted = r.now
            del r.tenant.apps[app.client_id]
            r.tenant.deleted_apps[app.object_id] = app
            return Reply(204)
        raise _method_not_allowed(r)
    if rest == ["addPassword"] and r.method == "POST":
        return _add_password(r, app)
    if rest == ["removePassword"] and r.method == "POST":
        r.require(_WRITE)
        if not r.caller.may_manage(app):
            raise r.denied()
        key_id = r.json().get("keyId")
        kept = [p for p in app.passwords if p.key_id != key_id]
        if len(kept) == len(app.passwords):
            raise r.bad(f"No password credential found with keyId {key_id}.")
        app.passwords = kept
        return Reply(204)
    raise r.bad(f"Resource not found for the segment '{rest[0]}'.", "BadRequest")


def _patch_application(r: _Request, app: App) -> Reply:
    r.require(_WRITE)
    if not r.caller.may_manage(app):
        raise r.denied()
    body = r.json()
    _check_application_body(r, body)
    keys = _parse_key_credentials(r, body["keyCredentials"], app.keys) if "keyCredentials" in body else None
    access = (_parse_required_resource_access(r, body["requiredResourceAccess"])
              if "requiredResourceAccess" in body else None)
    if "displayName" in body:
        app.display_name = body["displayName"].strip()
    if "signInAudience" in body:
        app.sign_in_audience = body["signInAudience"]
    if "notes" in body:
        app.notes = body["notes"]
    if "tags" in body:
        app.tags = list(body["tags"])
    if keys is not None:
        app.keys = keys
    if access is not None:
        app.required_resource_access = access
    return Reply(204)


def _add_password(r: _Request, app: App) -> Reply:
    r.require(_WRITE)
    if not r.caller.may_manage(app):
        raise r.denied()
    spec = r.json().get("passwordCredential") or {}
    if not isinstance(spec, dict):
        raise r.bad("Invalid value specified for property 'passwordCredential'.")
    try:
        start = parse_time(spec["startDateTime"]) if spec.get("startDateTime") else r.now
        end = parse_time(spec["endDateTime"]) if spec.get("endDateTime") else start + _TWO_YEARS
    except ValueError as e:
        raise r.bad(str(e)) from None
    if end <= start:
        raise r.bad("Password credential end date must be after its start date.")
    credential = app.add_secret(new_secret(), start=start, end=end,
                                display_name=str(spec.get("displayName") or ""))
    credential.usable_at = r.now + r.delay
    body = {"@odata.context": r.context("microsoft.graph.passwordCredential"),
            **_password_json(app, r.now, credential), "secretText": credential.secret_text}
    return json_reply(200, body)


# -- service principals and app role assignments ----------------------------------------------------------


def _list_service_principals(r: _Request) -> Reply:
    r.require(_READ)
    wanted = _filter(r)
    candidates: list[App | str] = [_GRAPH, *[a for a in r.tenant.apps.values() if a.sp_visible(r.now)]]
    values = []
    for sp in candidates:
        value = _sp_json(r, sp)
        if wanted is not None:
            field_name, expected = wanted
            actual = value.get(field_name)
            if not isinstance(actual, str) or actual.lower() != expected.lower():
                continue
        values.append(_select(r, value))
    return json_reply(200, {"@odata.context": r.context("servicePrincipals"), "value": values})


def _create_service_principal(r: _Request) -> Reply:
    r.require(_WRITE)
    app_id = r.json().get("appId")
    if not isinstance(app_id, str) or not app_id:
        raise r.bad("Property 'appId' is required.")
    if app_id == GRAPH_APP_ID:
        raise r.fail(409, "Request_MultipleObjectsWithSameKeyValue",
                     f"The service principal cannot be created, updated, or restored because the "
                     f"service principal name {app_id} is already in use.")
    app = r.tenant.app(app_id)
    if app is None or not app.visible(r.now):
        raise r.bad(f"The appId '{app_id}' of the service principal does not reference a valid "
                    "application object.")
    if not r.caller.may_manage(app):
        raise r.denied()
    if app.service_principal:
        raise r.fail(409, "Request_MultipleObjectsWithSameKeyValue",
                     f"The service principal cannot be created, updated, or restored because the "
                     f"service principal name {app_id} is already in use.")
    app.service_principal = True
    app.sp_visible_at = r.now + r.delay
    return json_reply(201, {"@odata.context": r.context("servicePrincipals/$entity"), **_sp_json(r, app)})


def _service_principal_item(r: _Request, sp: App | str, rest: list[str]) -> Reply:
    if not rest:
        if r.method == "GET":
            return json_reply(200, {"@odata.context": r.context("servicePrincipals/$entity"),
                                    **_select(r, _sp_json(r, sp))})
        if r.method == "DELETE":
            r.require(_WRITE)
            if sp == _GRAPH or not r.caller.may_manage(sp):  # type: ignore[arg-type]
                raise r.denied()
            assert isinstance(sp, App)
            sp.service_principal = False
            sp.assignments = []
            sp.roles = set()
            return Reply(204)
        raise _method_not_allowed(r)
    if rest[0] == "appRoleAssignedTo":
        if len(rest) == 1 and r.method == "GET":
            return _list_assigned_to(r, sp)
        if len(rest) == 1 and r.method == "POST":
            return _assign(r, sp)
        if len(rest) == 2 and r.method == "DELETE":
            return _unassign(r, sp, rest[1])
    if rest == ["appRoleAssignments"] and r.method == "GET":
        if sp == _GRAPH:
            values: list[dict[str, Any]] = []
        else:
            assert isinstance(sp, App)
            values = [_assignment_json(sp, a) for a in _assignments_of(r, sp)]
        return json_reply(200, {"@odata.context": r.context("appRoleAssignments"), "value": values})
    if r.method not in ("GET", "POST", "DELETE"):
        raise _method_not_allowed(r)
    raise r.bad(f"Resource not found for the segment '{rest[0]}'.", "BadRequest")


def _assignments_to(r: _Request, resource: App | str) -> list[tuple[App, RoleAssignment]]:
    if resource != _GRAPH:
        return []
    return [(app, a) for app in r.tenant.apps.values() if app.sp_visible(r.now)
            for a in _assignments_of(r, app) if a.resource_id == r.tenant.graph_sp_id]


def _list_assigned_to(r: _Request, resource: App | str) -> Reply:
    wanted = _filter(r)
    values = []
    for app, a in _assignments_to(r, resource):
        if wanted is not None and (wanted[0] != "principalId" or app.service_principal_id != wanted[1]):
            continue
        values.append(_assignment_json(app, a))
    return json_reply(200, {"@odata.context": r.context("appRoleAssignments"), "value": values})


def _assign(r: _Request, resource: App | str) -> Reply:
    r.require(_ASSIGN)
    body = r.json()
    resource_id = r.tenant.graph_sp_id if resource == _GRAPH else resource.service_principal_id  # type: ignore[union-attr]
    principal_id, app_role_id = body.get("principalId"), body.get("appRoleId")
    if not isinstance(principal_id, str) or not isinstance(app_role_id, str):
        raise r.bad("Properties 'principalId' and 'appRoleId' are required.")
    if body.get("resourceId", resource_id) != resource_id:
        raise r.bad("The resourceId in the body does not match the resource in the URL.")
    if resource != _GRAPH:
        raise r.bad(f"Permission being assigned was not found on application '{resource.client_id}'.")  # type: ignore[union-attr]
    value = next((v for v, i in GRAPH_APP_ROLES.items() if i == app_role_id), None)
    if value is None:
        raise r.bad(f"Permission being assigned was not found on application '{GRAPH_APP_ID}'.")
    user = r.caller.user
    if user is not None and not user.has_any(*GRANT_GRAPH_ROLES):
        raise r.denied()
    principal = r.tenant.app_by_sp_id(principal_id)
    if principal is None:
        raise r.not_found(principal_id)
    if not principal.sp_visible(r.now):
        raise r.bad("Not a valid reference update.")
    if any(a.app_role_id == app_role_id and a.resource_id == resource_id
           for a in _assignments_of(r, principal)):
        raise r.bad("Permission being assigned already exists on the object.")
    assignment = RoleAssignment(secrets.token_urlsafe(32)[:43], app_role_id, value, resource_id,
                                "Microsoft Graph", r.now, r.now + r.delay)
    principal.assignments.append(assignment)
    fragment = f"servicePrincipals('{resource_id}')/appRoleAssignedTo/$entity"
    return json_reply(201, {"@odata.context": r.context(fragment), **_assignment_json(principal, assignment)})


def _unassign(r: _Request, resource: App | str, assignment_id: str) -> Reply:
    r.require(_ASSIGN)
    user = r.caller.user
    if user is not None and not user.has_any(*GRANT_GRAPH_ROLES):
        raise r.denied()
    for app, a in _assignments_to(r, resource):
        if a.id == assignment_id:
            if a in app.assignments:
                app.assignments.remove(a)
            app.roles.discard(a.value)
            return Reply(204)
    raise r.not_found(assignment_id)


# -- deleted items -------------------------------------------------------------------------------------------


def _deleted_item(r: _Request, object_id: str) -> Reply:
    r.require(_READ)
    if object_id == "microsoft.graph.application" and r.method == "GET":
        values = [_select(r, _application_json(r, a)) for a in r.tenant.deleted_apps.values()]
        return json_reply(200, {"@odata.context": r.context("directory/deletedItems/microsoft.graph.application"),
                                "value": values})
    app = r.tenant.deleted_apps.get(object_id)
    if app is None:
        raise r.not_found(object_id)
    if r.method == "GET":
        return json_reply(200, {"@odata.context": r.context("directory/deletedItems/$entity"),
                                "@odata.type": "#microsoft.graph.application",
                                **_select(r, _application_json(r, app))})
    if r.method == "DELETE":
        r.require(_WRITE)
        if not r.caller.may_manage(app):
            raise r.denied()
        del r.tenant.deleted_apps[object_id]
        return Reply(204)
    raise _method_not_allowed(r)

"""The emulator's admin API under ``/_emulator/`` (JSON in, JSON out; no authentication).

It mirrors the Python API of `GraphEmulator` for a running ``dirgw emulator`` process (the
demo, the subprocess harness in ``process.py``).  ``?tenant=NAME`` selects a tenant (default:
the first).

=========================================  ===================================================
``GET    /_emulator/state``                 tenants, settings, pending faults
``POST   /_emulator/reset``                 fresh start (body: optional contacts)
``GET    /_emulator/contacts``              ``{"value": [...]}``
``POST   /_emulator/contacts``              upsert a contact, a list or ``{"value": [...]}``
``PUT    /_emulator/contacts``              replace all contacts
``PATCH  /_emulator/contacts/{id}``         change properties, e.g. ``{"displayName": "..."}``
``DELETE /_emulator/contacts/{id}``         remove (``?permanent=true``: reason ``deleted``)
``POST   /_emulator/apps``                  register ``{client_id?, secret?, certificate?, roles?,
                                            secret_expires_in?}``
``PATCH  /_emulator/apps/{client_id}``      ``{"roles": [...]}``
``DELETE /_emulator/apps/{client_id}``      delete the app (as an admin would: soft-deleted)
``POST   /_emulator/tenants``               ``{"domain": ..., "tenant_id"?: ...}``
``PATCH  /_emulator/tenant``                ``{"users_can_register_apps": false}``
``GET    /_emulator/directory``             apps (with service principal, credentials, grants),
                                            soft-deleted apps, users, Graph SP id
``POST   /_emulator/users``                 ``{"upn": ..., "roles": [directory role names]}``
``GET    /_emulator/devicecode``            pending device codes
``POST   /_emulator/devicecode/approve``    ``{"user_code"?, "user"?: UPN, "roles"?: [...]}``
                                            (default: the latest code, ``admin@<domain>``)
``POST   /_emulator/devicecode/decline``    ``{"user_code"?}``
``POST   /_emulator/faults``                ``{"kind": ..., "count"?: n, <Fault fields>}``
``DELETE /_emulator/faults``                drop pending faults
``GET    /_emulator/requests``              the request log; ``DELETE`` clears it
``GET    /_emulator/settings``              settings; ``PATCH`` changes some
``POST   /_emulator/clock``                 ``{"advance": seconds}``
``POST   /_emulator/delta/expire``          delta tokens so far → 400 syncStateNotFound
``POST   /_emulator/delta/reset``           delta tokens so far → 410 Gone
``POST   /_emulator/tokens/revoke``         access tokens so far → 401
=========================================  ===================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway.testing.faults import Fault
from gateway.testing.replies import Reply, json_reply
from gateway.testing.tenant import ORG_CONTACT_READ_ALL, App, DeviceCode, DirectoryUser, Tenant

if TYPE_CHECKING:
    from gateway.testing.emulator import GraphEmulator

__all__ = ["handle"]

_JSON = "application/json"


class _Problem(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _ok(value: Any, status: int = 200) -> Reply:
    return json_reply(status, value, _JSON)


def _app_json(app: App, tenant: Tenant, now: float | None = None) -> dict[str, Any]:
    value = {"client_id": app.client_id, "object_id": app.object_id,
             "service_principal_id": app.service_principal_id, "tenant_id": tenant.tenant_id,
             "domain": tenant.domain, "roles": sorted(app.roles),
             "secrets": [p.secret_text for p in app.passwords],
             "certificates": [k.sha1.hex().upper() for k in app.keys],
             "display_name": app.display_name, "has_service_principal": app.service_principal,
             "assigned_roles": sorted(a.value for a in app.assignments),
             "password_ends": [p.end for p in app.passwords], "deleted": app.deleted,
             "sign_in_audience": app.sign_in_audience,
             "required_resource_access": app.required_resource_access}
    if now is not None:
        value["granted_roles"] = sorted(app.granted_roles(now))
        value["visible"] = app.visible(now)
    return value


def _user_json(user: DirectoryUser) -> dict[str, Any]:
    return {"upn": user.upn, "object_id": user.object_id, "roles": sorted(user.roles)}


def _device_code_json(tenant: Tenant, code: DeviceCode) -> dict[str, Any]:
    return {"user_code": code.user_code, "client_id": code.client_id, "scopes": code.scopes,
            "status": code.status, "tenant": tenant.domain,
            "user": code.user.upn if code.user is not None else None}


def _tenant_json(tenant: Tenant) -> dict[str, Any]:
    return {"tenant_id": tenant.tenant_id, "domain": tenant.domain,
            "contacts": len(tenant.contacts), "sequence": tenant.contacts.sequence,
            "apps": sorted(tenant.apps)}


def handle(emulator: GraphEmulator, method: str, path: list[str], query: Mapping[str, str],
           body: bytes) -> Reply:
    """Answer one admin request; ``path`` is what follows ``/_emulator/``."""
    try:
        data = json.loads(body) if body.strip() else None
    except ValueError:
        return _ok({"error": "body is not JSON"}, 400)
    try:
        tenant = emulator._tenant(query.get("tenant"))
    except KeyError as e:
        return _ok({"error": str(e)}, 404)
    try:
        return _handle(emulator, tenant, method, path, query, data)
    except _Problem as e:
        return _ok({"error": str(e)}, e.status)
    except KeyError as e:
        return _ok({"error": f"not found: {e}"}, 404)
    except (ValueError, TypeError) as e:
        return _ok({"error": str(e)}, 400)


def _object(data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _Problem(400, "expected a JSON object")
    return data


def _handle(emulator: GraphEmulator, tenant: Tenant, method: str, path: list[str],
            query: Mapping[str, str], data: Any) -> Reply:
    route = (method, *path)
    if route == ("GET", "state"):
        return _ok({"tenants": [_tenant_json(t) for t in emulator.tenants],
                    "settings": emulator.settings.to_json(), "now": emulator.now(),
                    "faults_pending": emulator.faults.pending()})
    if route == ("POST", "reset"):
        contacts = data.get("contacts", data) if isinstance(data, dict) and "contacts" in data else data
        emulator.reset(contacts)
        return _ok({"contacts": len(emulator.tenant.contacts)})
    if path[:1] == ["contacts"]:
        return _contacts(emulator, tenant, method, path[1:], query, data)
    if route == ("POST", "apps"):
        spec = _object(data)
        app = emulator.register_app(
            client_id=spec.get("client_id"), secret=spec.get("secret"),
            certificate=spec.get("certificate"),
            roles=spec.get("roles", [ORG_CONTACT_READ_ALL]), tenant=tenant,
            secret_expires_in=spec.get("secret_expires_in"),
            display_name=spec.get("display_name", "dirgw"))
        return _ok(_app_json(app, tenant), 201)
    if method == "PATCH" and len(path) == 2 and path[0] == "apps":
        app = tenant.app(path[1])
        if app is None:
            raise KeyError(path[1])
        spec = _object(data)
        if "roles" in spec:
            app.set_roles(spec["roles"])
        return _ok(_app_json(app, tenant))
    if method == "DELETE" and len(path) == 2 and path[0] == "apps":
        emulator.delete_app(path[1], tenant)
        return Reply(204, b"", {})
    if route == ("POST", "tenants"):
        spec = _object(data)
        added = emulator.add_tenant(str(spec["domain"]), spec.get("tenant_id"))
        return _ok(_tenant_json(added), 201)
    if route == ("PATCH", "tenant"):
        spec = _object(data)
        if "users_can_register_apps" in spec:
            tenant.users_can_register_apps = bool(spec["users_can_register_apps"])
        return _ok({**_tenant_json(tenant), "users_can_register_apps": tenant.users_can_register_apps})
    if route == ("GET", "directory"):
        now = emulator.now()
        return _ok({"tenant_id": tenant.tenant_id, "domain": tenant.domain,
                    "graph_service_principal_id": tenant.graph_sp_id,
                    "users_can_register_apps": tenant.users_can_register_apps,
                    "applications": [_app_json(a, tenant, now) for a in tenant.apps.values()],
                    "deleted": [_app_json(a, tenant, now) for a in tenant.deleted_apps.values()],
                    "users": [_user_json(u) for u in tenant.users.values()]})
    if route == ("POST", "users"):
        spec = _object(data)
        user = emulator.add_user(str(spec["upn"]), spec.get("roles", []), tenant,
                                 str(spec.get("display_name", "")))
        return _ok(_user_json(user), 201)
    if route == ("GET", "devicecode"):
        return _ok({"value": [_device_code_json(t, c) for t, c in emulator.pending_device_codes()]})
    if route == ("POST", "devicecode", "approve"):
        spec = _object(data)
        code = emulator.approve_device_code(spec.get("user_code"), spec.get("user"), spec.get("roles"))
        owner = next(t for t in emulator.tenants if code.device_code in t.device_codes)
        return _ok(_device_code_json(owner, code))
    if route == ("POST", "devicecode", "decline"):
        code = emulator.decline_device_code(_object(data).get("user_code"))
        owner = next(t for t in emulator.tenants if code.device_code in t.device_codes)
        return _ok(_device_code_json(owner, code))
    if route == ("POST", "faults"):
        spec = dict(_object(data))
        kind = spec.pop("kind", None)
        count = int(spec.pop("count", 1))
        emulator.inject(str(kind), Fault.from_json(spec), count)
        return _ok({"pending": emulator.faults.pending()})
    if route == ("DELETE", "faults"):
        emulator.clear_faults()
        return _ok({"pending": 0})
    if route == ("GET", "requests"):
        return _ok({"value": [r.to_json() for r in emulator.requests]})
    if route == ("DELETE", "requests"):
        emulator.clear_requests()
        return _ok({"value": []})
    if route == ("GET", "settings"):
        return _ok(emulator.settings.to_json())
    if route == ("PATCH", "settings"):
        emulator.settings.update(_object(data))
        return _ok(emulator.settings.to_json())
    if route == ("POST", "clock"):
        return _ok({"now": emulator.advance_clock(float(_object(data).get("advance", 0)))})
    if route == ("POST", "delta", "expire"):
        emulator.expire_delta_tokens(tenant)
        return _ok({"delta_expiry_epoch": tenant.delta_expiry_epoch})
    if route == ("POST", "delta", "reset"):
        emulator.reset_delta_sync(tenant)
        return _ok({"delta_reset_epoch": tenant.delta_reset_epoch})
    if route == ("POST", "tokens", "revoke"):
        emulator.revoke_tokens(tenant)
        return _ok({"token_generation": tenant.token_generation})
    raise _Problem(404, f"no admin route {method} /_emulator/{'/'.join(path)}")


def _contacts(emulator: GraphEmulator, tenant: Tenant, method: str, rest: list[str],
              query: Mapping[str, str], data: Any) -> Reply:
    if not rest:
        if method == "GET":
            return _ok({"value": emulator.contacts(tenant)})
        if method == "POST":
            if data is None:
                raise _Problem(400, "send a contact, a list or {\"value\": [...]}")
            return _ok({"value": emulator.add_contacts(data, tenant)})
        if method == "PUT":
            return _ok({"value": emulator.seed_contacts(data or [], tenant)})
    elif len(rest) == 1:
        contact_id = rest[0]
        if method == "GET":
            contact = tenant.contacts.get(contact_id)
            if contact is None:
                raise KeyError(contact_id)
            return _ok(contact)
        if method == "PATCH":
            return _ok(emulator.change_contact(contact_id, _object(data), tenant))
        if method == "DELETE":
            permanent = query.get("permanent", "").lower() in ("1", "true", "yes")
            emulator.remove_contact(contact_id, permanent, tenant)
            return Reply(204, b"", {})
    raise _Problem(405, f"{method} is not allowed here")

"""The Microsoft Graph side of the emulator: ``/v1.0/contacts``, ``/contacts/{id}``, delta.

Pure functions from request data to a `Reply`.  Paging and delta state live in opaque,
HMAC-signed tokens (``$skiptoken`` / ``$deltatoken``) that carry the tenant, the change-log
cursor, the round's upper bound, the ``$select`` of the first request and the epochs that
`Tenant` bumps to expire or reset delta state.  Links are absolute URLs on the base URL the
client used.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any

from attrs import frozen

from gateway.testing.contacts import UnknownProperty, parse_select, select_properties
from gateway.testing.jwt import JWTError, b64url_decode, b64url_encode, decode_hs256
from gateway.testing.replies import Reply, graph_error, json_reply
from gateway.testing.tenant import CONTACT_READ_ROLES, GRAPH_APP_ID, Tenant

__all__ = ["GraphContext", "authenticate", "authorize", "list_contacts", "get_contact", "count_contacts", "delta",
           "fault_reply", "SYNC_STATE_NOT_FOUND_MESSAGE"]

SYNC_STATE_NOT_FOUND_MESSAGE = ("The sync state generation is not found. The delta token is "
                                "expired and data must be synchronized again.")
_WWW_AUTHENTICATE = ('Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                     f'oauth2/authorize", client_id="{GRAPH_APP_ID}"')
_DELTA_UNSUPPORTED = ("$top", "$orderby", "$expand", "$search", "$filter", "$count")
_LIST_UNSUPPORTED = ("$orderby", "$expand", "$search", "$filter")


@frozen
class GraphContext:
    """Per-request facts a Graph handler needs."""

    base: str
    """Scheme, host and port the client used, e.g. ``https://127.0.0.1:8443``."""
    now: float
    request_id: str
    client_request_id: str | None
    page_size: int
    delta_token_lifetime: float
    state_key: bytes

    def error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
              inner: dict[str, Any] | None = None) -> Reply:
        return graph_error(status, code, message, self.client_request_id, self.request_id,
                           headers, inner)

    def sign(self, state: dict[str, Any]) -> str:
        payload = b64url_encode(json.dumps(state, separators=(",", ":")).encode())
        mac = hmac.new(self.state_key, payload.encode(), hashlib.sha256).digest()[:16]
        return f"{payload}.{b64url_encode(mac)}"

    def unsign(self, token: str) -> dict[str, Any] | None:
        payload, _, mac = token.partition(".")
        expected = hmac.new(self.state_key, payload.encode(), hashlib.sha256).digest()[:16]
        try:
            if not hmac.compare_digest(b64url_decode(mac), expected):
                return None
            state = json.loads(b64url_decode(payload))
        except (JWTError, ValueError):
            return None
        return state if isinstance(state, dict) else None


def authorize(authorization: str | None, find_tenant: Callable[[str], Tenant | None],
              signing_key: bytes, ctx: GraphContext) -> tuple[Tenant, dict[str, Any]] | Reply:
    """The tenant and claims of a bearer token allowed to read contacts, or the 401/403."""
    authenticated = authenticate(authorization, find_tenant, signing_key, ctx)
    if isinstance(authenticated, Reply):
        return authenticated
    if not CONTACT_READ_ROLES & set(authenticated[1].get("roles") or ()):
        return ctx.error(403, "Authorization_RequestDenied",
                         "Insufficient privileges to complete the operation.")
    return authenticated


def authenticate(authorization: str | None, find_tenant: Callable[[str], Tenant | None],
                 signing_key: bytes, ctx: GraphContext) -> tuple[Tenant, dict[str, Any]] | Reply:
    """The tenant and claims of a valid bearer token, or the 401 Graph would answer."""
    def unauthorized(message: str) -> Reply:
        return ctx.error(401, "InvalidAuthenticationToken", message,
                         {"WWW-Authenticate": _WWW_AUTHENTICATE})

    if not authorization or not authorization.lower().startswith("bearer ") or not authorization[7:].strip():
        return unauthorized("Access token is empty.")
    token = authorization[7:].strip()
    if token.count(".") != 2:
        return unauthorized("CompactToken parsing failed with error code: 80049217")
    try:
        claims = decode_hs256(token, signing_key)
    except JWTError:
        return unauthorized("Access token validation failure.")
    tenant = find_tenant(str(claims.get("tid", "")))
    if tenant is None:
        return unauthorized("Access token validation failure.")
    if claims.get("aud") not in ("https://graph.microsoft.com", GRAPH_APP_ID):
        return unauthorized("Access token validation failure. Invalid audience.")
    exp, nbf = claims.get("exp"), claims.get("nbf", 0)
    if (not isinstance(exp, int | float) or exp <= ctx.now or not isinstance(nbf, int | float)
            or nbf > ctx.now + 300 or claims.get("xms_gen") != tenant.token_generation):
        return unauthorized("Access token has expired or is not yet valid.")
    return tenant, claims


def _bad_select(ctx: GraphContext, error: UnknownProperty) -> Reply:
    return ctx.error(400, "Request_BadRequest",
                     f"Could not find a property named '{error.name}' on type "
                     "'microsoft.graph.orgContact'.")


def _unsupported(ctx: GraphContext, query: Mapping[str, str], names: tuple[str, ...]) -> Reply | None:
    for name in names:
        if name in query:
            return ctx.error(400, "Request_UnsupportedQuery",
                             f"The query option '{name}' is not supported by the emulator on this "
                             "resource.")
    return None


def _context_url(ctx: GraphContext, select: tuple[str, ...] | None, entity: bool = False) -> str:
    selected = f"({','.join(('id',) + select)})" if select else ""
    return f"{ctx.base}/v1.0/$metadata#contacts{selected}{'/$entity' if entity else ''}"


def list_contacts(tenant: Tenant, query: Mapping[str, str], ctx: GraphContext) -> Reply:
    """``GET /v1.0/contacts`` with ``$select``, ``$top``, ``$count`` and ``$skiptoken`` paging."""
    bad = _unsupported(ctx, query, _LIST_UNSUPPORTED)
    if bad is not None:
        return bad
    store = tenant.contacts
    if "$skiptoken" in query:
        state = ctx.unsign(query["$skiptoken"])
        if state is None or state.get("k") != "l" or state.get("t") != tenant.tenant_id:
            return ctx.error(400, "Request_BadRequest", "Invalid skip token.")
        select = tuple(state["sel"]) if state["sel"] is not None else None
        cursor, upto, top = state["c"], state["u"], state["top"]
        first = False
    else:
        try:
            select = parse_select(query.get("$select"))
        except UnknownProperty as e:
            return _bad_select(ctx, e)
        top = ctx.page_size
        if "$top" in query:
            try:
                top = int(query["$top"])
            except ValueError:
                top = 0
            if not 1 <= top <= 999:
                return ctx.error(400, "Request_BadRequest",
                                 f"Invalid page size specified: '{query['$top']}'. Must be between "
                                 "1 and 999 inclusive.")
        cursor, upto, first = 0, store.sequence, True
    changes, following = store.page(cursor, upto, top, include_removed=False)
    body: dict[str, Any] = {"@odata.context": _context_url(ctx, select)}
    if first and query.get("$count", "").lower() == "true":
        body["@odata.count"] = len(store)
    if following is not None:
        token = ctx.sign({"k": "l", "t": tenant.tenant_id, "c": following, "u": upto,
                          "sel": list(select) if select is not None else None, "top": top})
        body["@odata.nextLink"] = f"{ctx.base}/v1.0/contacts?$skiptoken={token}"
    body["value"] = [select_properties(c.contact, select) for c in changes if c.contact is not None]
    return json_reply(200, body)


def get_contact(tenant: Tenant, contact_id: str, query: Mapping[str, str], ctx: GraphContext) -> Reply:
    """``GET /v1.0/contacts/{id}``."""
    try:
        select = parse_select(query.get("$select"))
    except UnknownProperty as e:
        return _bad_select(ctx, e)
    contact = tenant.contacts.get(contact_id)
    if contact is None:
        return ctx.error(404, "Request_ResourceNotFound",
                         f"Resource '{contact_id}' does not exist or one of its queried "
                         "reference-property objects are not present.")
    body = {"@odata.context": _context_url(ctx, select, entity=True),
            **select_properties(contact, select)}
    return json_reply(200, body)


def count_contacts(tenant: Tenant, consistency_level: str | None, ctx: GraphContext) -> Reply:
    """``GET /v1.0/contacts/$count`` (needs ``ConsistencyLevel: eventual``)."""
    if (consistency_level or "").lower() != "eventual":
        return ctx.error(400, "Request_BadRequest",
                         "Count is not currently supported without ConsistencyLevel: eventual.")
    return Reply(200, str(len(tenant.contacts)).encode(), {"Content-Type": "text/plain"})


def _initial_delta_url(ctx: GraphContext, select: list[str] | None) -> str:
    return f"{ctx.base}/v1.0/contacts/delta" + (f"?$select={','.join(select)}" if select else "")


def delta(tenant: Tenant, query: Mapping[str, str], ctx: GraphContext,
          empty_page: bool = False) -> Reply:
    """``GET /v1.0/contacts/delta``: an initial round, a ``$skiptoken`` page or a deltaLink round."""
    store = tenant.contacts
    token = query.get("$skiptoken") or query.get("$deltatoken") or None
    if token is None:
        bad = _unsupported(ctx, query, _DELTA_UNSUPPORTED)
        if bad is not None:
            return bad
        try:
            parsed = parse_select(query.get("$select"))
        except UnknownProperty as e:
            return _bad_select(ctx, e)
        select = list(parsed) if parsed is not None else None
        since, cursor, upto = 0, 0, store.sequence
    elif token == "latest" and "$deltatoken" in query:
        try:
            parsed = parse_select(query.get("$select"))
        except UnknownProperty as e:
            return _bad_select(ctx, e)
        select = list(parsed) if parsed is not None else None
        since = cursor = upto = store.sequence
    else:
        state = ctx.unsign(token)
        if state is None or state.get("t") != tenant.tenant_id or state.get("k") not in ("s", "d"):
            return ctx.error(400, "syncStateNotFound", SYNC_STATE_NOT_FOUND_MESSAGE)
        select = state["sel"]
        if state["re"] != tenant.delta_reset_epoch:
            return ctx.error(410, "resyncRequired",
                             "The delta token is no longer valid, and the app must reset the sync "
                             "state.", {"Location": _initial_delta_url(ctx, select)})
        if state["ee"] != tenant.delta_expiry_epoch or ctx.now - state["iat"] > ctx.delta_token_lifetime:
            return ctx.error(400, "syncStateNotFound", SYNC_STATE_NOT_FOUND_MESSAGE)
        if state["k"] == "d":
            since = cursor = state["c"]
            upto = store.sequence
        else:
            since, cursor, upto = state["s"], state["c"], state["u"]

    if empty_page:
        changes, following = [], cursor
    else:
        changes, following = store.page(cursor, upto, ctx.page_size, include_removed=since > 0)
    sel = tuple(select) if select is not None else None
    value = [select_properties(c.contact, sel) if c.contact is not None
             else {"id": c.id, "@removed": {"reason": c.removed_reason}} for c in changes]
    common = {"t": tenant.tenant_id, "sel": select, "ee": tenant.delta_expiry_epoch,
              "re": tenant.delta_reset_epoch, "iat": ctx.now}
    body: dict[str, Any] = {"@odata.context": _context_url(ctx, None)}
    if following is not None:
        link = ctx.sign({"k": "s", "s": since, "c": following, "u": upto, **common})
        body["@odata.nextLink"] = f"{ctx.base}/v1.0/contacts/delta?$skiptoken={link}"
    else:
        link = ctx.sign({"k": "d", "c": upto, **common})
        body["@odata.deltaLink"] = f"{ctx.base}/v1.0/contacts/delta?$deltatoken={link}"
    body["value"] = value
    return json_reply(200, body)


_FAULT_ERRORS = {
    400: ("badRequest", "The request is malformed or incorrect."),
    401: ("InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
    403: ("Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
    404: ("Request_ResourceNotFound", "Resource does not exist."),
    410: ("resyncRequired", "The delta token is no longer valid, and the app must reset the sync state."),
    429: ("TooManyRequests", "Please retry again later."),
    500: ("generalException", "General exception while processing."),
    502: ("UnknownError", "Bad gateway."),
    503: ("serviceNotAvailable", "The service is temporarily unavailable. Please retry after a delay."),
    504: ("UnknownError", "Gateway timeout."),
}


def fault_reply(status: int, code: str | None, retry_after: str | None, ctx: GraphContext) -> Reply:
    """The error an injected fault answers on a Graph path."""
    default_code, message = _FAULT_ERRORS.get(status, ("UnknownError", "Injected fault."))
    code = code or default_code
    if code.lower() == "syncstatenotfound":
        message = SYNC_STATE_NOT_FOUND_MESSAGE
    headers: dict[str, str] = {}
    inner: dict[str, Any] = {}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    if status == 429:
        headers["x-ms-throttle-scope"] = "Tenant_Application/ReadWrite/emulator/emulator"
        headers["x-ms-throttle-information"] = "ResourceUnitLimitExceeded"
        inner = {"code": "429", "message": "Please retry after", "status": "429"}
    if status == 401:
        headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
    if status == 410:
        headers["Location"] = _initial_delta_url(ctx, None)
    return ctx.error(status, code, message, headers, inner)

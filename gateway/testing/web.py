"""The emulator's HTTP face: routes each request, applies faults and latency, writes replies.

`EmulatorResource` is a leaf ``twisted.web`` resource over a `GraphEmulator`; delays wait on
the emulator's reactor clock (``callLater``), so a test with a fake clock advances them by hand.

A Graph page's ``latency`` is its response time, as a real server's: the time from the request's
arrival (after an injected fault's delay, if any) to its answer.  The reply is made first and
only what is left of the latency is waited (nothing when making it took longer), so the
emulator's own work does not add to every page.  A page therefore shows the contacts as they
were when it was made, at arrival, not as they are when it is sent.
"""

from __future__ import annotations

import time
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Any, Callable

from attrs import define
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from gateway.testing import admin, entra, graph, provisioning
from gateway.testing.faults import Fault
from gateway.testing.replies import ENTRA_JSON, Reply, entra_error, graph_error

if TYPE_CHECKING:
    from gateway.testing.emulator import GraphEmulator

__all__ = ["EmulatorResource", "RequestRecord"]

_GRAPH_KINDS = ("delta", "contacts")
"""Graph requests answered ``latency`` seconds after they arrive."""
_GRAPH_REPLY_KINDS = ("delta", "contacts", "directory")
"""Graph requests: Graph's error bodies for faults, OData headers."""
_DIRECTORY_ROOTS = ("applications", "servicePrincipals", "directory")
_log = Logger()


@define
class RequestRecord:
    """One request the emulator received (admin requests are not recorded)."""

    method: str
    path: str
    query: str
    kind: str
    """``token``, ``devicecode``, ``discovery``, ``delta``, ``contacts``, ``directory`` (app
    provisioning: /applications, /servicePrincipals, /directory) or ``other``."""
    time: float
    client_request_id: str | None = None
    status: int | None = None
    """Status answered; 0 when the connection was dropped; None while pending or if the client left."""
    fault: str | None = None
    """The injected fault applied, if any (its action, ``delay:S`` or ``status:NNN``)."""

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "query": self.query, "kind": self.kind,
                "time": self.time, "client_request_id": self.client_request_id,
                "status": self.status, "fault": self.fault}


def _describe(fault: Fault) -> str:
    if fault.status is not None:
        return f"status:{fault.status}"
    return fault.action if fault.action != "respond" else f"delay:{fault.delay:g}"


@define
class _Route:
    kind: str
    segments: list[str]
    query: dict[str, str]


class EmulatorResource(Resource):
    """Every path of the emulator (Entra, Graph, ``/_emulator`` admin) in one leaf resource."""

    isLeaf = True

    def __init__(self, emulator: GraphEmulator) -> None:
        super().__init__()
        self._emulator = emulator

    def render(self, request: Request) -> Any:
        self._receive(request)
        return NOT_DONE_YET

    def _route(self, request: Request) -> _Route:
        raw_path = request.path.decode("latin-1")
        segments = [urllib.parse.unquote(s) for s in raw_path.split("/") if s]
        query_text = urllib.parse.urlsplit(request.uri.decode("latin-1")).query
        query = {k: v[0] for k, v in urllib.parse.parse_qs(query_text, keep_blank_values=True).items()}
        method = request.method.decode("latin-1")
        kind = "other"
        if segments[:1] == ["_emulator"]:
            kind = "admin"
        elif len(segments) == 4 and segments[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            kind = "discovery"
        elif segments == ["common", "discovery", "instance"]:
            kind = "discovery"
        elif len(segments) == 4 and segments[1:] == ["oauth2", "v2.0", "token"] and method == "POST":
            kind = "token"
        elif len(segments) == 4 and segments[1:] == ["oauth2", "v2.0", "devicecode"] and method == "POST":
            kind = "devicecode"
        elif segments[:1] == ["v1.0"] and len(segments) > 1 and segments[1].split("(", 1)[0] in _DIRECTORY_ROOTS:
            kind = "directory"
        elif segments[:2] == ["v1.0", "contacts"] and len(segments) <= 3 and method == "GET":
            kind = "delta" if segments[2:] == ["delta"] else "contacts"
        return _Route(kind, segments, query)

    def _receive(self, request: Request) -> None:
        route = self._route(request)
        client_request_id = _header(request, "client-request-id")
        request_id = str(uuid.uuid4())
        if route.kind == "admin":
            body = request.content.read() if request.content is not None else b""
            reply = admin.handle(self._emulator, request.method.decode("latin-1"),
                                 route.segments[1:], route.query, body)
            self._write(request, reply, request_id, client_request_id, None)
            return
        record = RequestRecord(request.method.decode("latin-1"), request.path.decode("latin-1"),
                               urllib.parse.urlsplit(request.uri.decode("latin-1")).query,
                               route.kind, self._emulator.now(), client_request_id)
        self._emulator.requests.append(record)
        fault = self._emulator.faults.take(route.kind) if route.kind != "other" else None
        if fault is not None:
            record.fault = _describe(fault)
        delay = fault.delay if fault is not None else 0.0
        latency = self._emulator.settings.latency if route.kind in _GRAPH_KINDS else 0.0
        if delay <= 0 and latency <= 0:
            self._prepare_answer(request, route, fault, record, request_id, client_request_id)()
            return
        gone: list[bool] = []
        waiting: list[IDelayedCall] = []

        def build() -> None:
            # The latency is the time from here to the answer, as a server's response time is:
            # the reply is made first, and only what is left of the latency is waited.
            started = self._emulator.now()
            send = self._prepare_answer(request, route, fault, record, request_id, client_request_id)
            left = latency - (self._emulator.now() - started)
            if left <= 0:
                send()
            else:
                waiting.append(self._emulator.call_later(left, lambda: gone or send()))

        def client_left(_: object) -> None:
            gone.append(True)
            for call in waiting:
                if call.active():
                    call.cancel()

        request.notifyFinish().addErrback(client_left)
        if delay > 0:  # a slow-answer fault: the request waits its delay before it is looked at
            waiting.append(self._emulator.call_later(delay, lambda: gone or build()))
        else:
            build()

    def _base(self, request: Request) -> str:
        """Scheme and authority the client used: links and discovery documents point back to it."""
        host = _header(request, "host")
        if host is None:
            return self._emulator.base_url
        return f"{'https' if request.isSecure() else 'http'}://{host}"

    def _prepare_answer(self, request: Request, route: _Route, fault: Fault | None,
                        record: RequestRecord, request_id: str,
                        client_request_id: str | None) -> Callable[[], None]:
        """Make the reply to ``request`` now; returns what sends it (or drops the connection)."""
        if fault is not None and fault.action == "drop":
            def drop() -> None:
                record.status = 0
                transport = request.channel.transport if request.channel is not None else None
                if transport is not None:
                    transport.abortConnection()
            return drop
        base = self._base(request)
        if fault is not None and fault.status is not None:
            retry_after = fault.retry_after_header(time.time())
            if route.kind in _GRAPH_REPLY_KINDS:
                reply = graph.fault_reply(fault.status, fault.code, retry_after,
                                          self._graph_context(base, request_id, client_request_id))
            else:
                reply = _entra_fault(fault, retry_after, client_request_id)
        else:
            empty = fault is not None and fault.action == "empty_page"
            try:
                reply = self._dispatch(request, route, base, request_id, client_request_id, empty)
            except Exception:  # noqa: BLE001 (a bug in the emulator must still answer)
                _log.failure("emulator failed on {path}", path=record.path)
                reply = graph_error(500, "generalException", "The emulator failed; see its log.",
                                    client_request_id, request_id)
            if fault is not None:
                reply = _transform(reply, fault.action, route.kind)
        cut = fault is not None and fault.action == "cut"

        def send() -> None:
            record.status = reply.status
            self._write(request, reply, request_id, client_request_id, route.kind, cut=cut)
        return send

    def _graph_context(self, base: str, request_id: str,
                       client_request_id: str | None) -> graph.GraphContext:
        emulator = self._emulator
        return graph.GraphContext(base, emulator.now(), request_id, client_request_id,
                                  emulator.settings.page_size, emulator.settings.delta_token_lifetime,
                                  emulator.state_key)

    def _token_policy(self) -> entra.TokenPolicy:
        settings = self._emulator.settings
        return entra.TokenPolicy(settings.token_lifetime, self._emulator.signing_key,
                                 settings.device_code_lifetime, settings.device_code_interval)

    def _dispatch(self, request: Request, route: _Route, base: str, request_id: str,
                  client_request_id: str | None, empty_page: bool) -> Reply:
        segments, query, emulator = route.segments, route.query, self._emulator
        if route.kind == "devicecode":
            body = request.content.read() if request.content is not None else b""
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            return entra.device_code_endpoint(
                base=base, path_tenant=segments[0], tenant=emulator.find_tenant(segments[0]),
                form=form, correlation_id=client_request_id, now=emulator.now(),
                policy=self._token_policy())
        if route.kind == "discovery":
            if segments[0] == "common" and segments[1] == "discovery":
                return entra.instance_discovery(base, query.get("authorization_endpoint"))
            return entra.openid_configuration(base, segments[0], emulator.find_tenant(segments[0]),
                                              client_request_id)
        if route.kind == "token":
            body = request.content.read() if request.content is not None else b""
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            return entra.token_endpoint(
                base=base, path_tenant=segments[0], tenant=emulator.find_tenant(segments[0]),
                form=form, authorization=_header(request, "authorization"),
                correlation_id=client_request_id, now=emulator.now(), wall_now=time.time(),
                policy=self._token_policy())
        ctx = self._graph_context(base, request_id, client_request_id)
        if route.kind == "directory":
            authenticated = graph.authenticate(_header(request, "authorization"), emulator.find_tenant,
                                               emulator.signing_key, ctx)
            if isinstance(authenticated, Reply):
                return authenticated
            body = request.content.read() if request.content is not None else b""
            return provisioning.handle(authenticated[0], authenticated[1],
                                       request.method.decode("latin-1"), segments[1:], query, body,
                                       ctx, emulator.settings.replication_delay)
        if route.kind in _GRAPH_KINDS:
            authorized = graph.authorize(_header(request, "authorization"), emulator.find_tenant,
                                         emulator.signing_key, ctx)
            if isinstance(authorized, Reply):
                return authorized
            tenant, _claims = authorized
            if route.kind == "delta":
                return graph.delta(tenant, query, ctx, empty_page)
            if len(segments) == 2:
                return graph.list_contacts(tenant, query, ctx)
            if segments[2] == "$count":
                return graph.count_contacts(tenant, _header(request, "consistencylevel"), ctx)
            return graph.get_contact(tenant, segments[2], query, ctx)
        if segments[:1] == ["v1.0"]:
            name = segments[1] if len(segments) > 1 else ""
            return ctx.error(400, "BadRequest", f"Resource not found for the segment '{name}'.")
        return ctx.error(404, "NotFound", "The emulator does not serve this path.")

    def _write(self, request: Request, reply: Reply, request_id: str,
               client_request_id: str | None, kind: str | None, cut: bool = False) -> None:
        request.setResponseCode(reply.status)
        for name, value in reply.headers.items():
            request.setHeader(name, value)
        request.setHeader("request-id", request_id)
        request.setHeader("client-request-id", client_request_id or request_id)
        if kind in _GRAPH_REPLY_KINDS:
            request.setHeader("OData-Version", "4.0")
            request.setHeader("x-ms-ags-diagnostic",
                              '{"ServerInfo":{"DataCenter":"Loopback","Slice":"E","Ring":"0"}}')
        request.setHeader("Content-Length", str(len(reply.body)))
        if cut:
            request.write(reply.body[: len(reply.body) // 2])
            request.loseConnection()  # the channel's: unregisters it as producer, so TLS closes
            return
        request.write(reply.body)
        request.finish()


def _header(request: Request, name: str) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _entra_fault(fault: Fault, retry_after: str | None, correlation_id: str | None) -> Reply:
    status = fault.status or 500
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    if status in (400, 401):
        return entra_error(status, fault.code or "invalid_client", 7000215,
                           "Injected fault: invalid client.", correlation_id, headers)
    return entra_error(status, fault.code or "temporarily_unavailable", 90033,
                       "A transient error has occurred. Please try again.", correlation_id, headers)


def _transform(reply: Reply, action: str, kind: str) -> Reply:
    if action == "truncate":
        return Reply(reply.status, reply.body[: max(1, len(reply.body) // 2)], reply.headers)
    if action == "malformed":
        return Reply(reply.status, b'{"value": [{"id": <html><body>Bad Gateway</body></html>',
                     reply.headers)
    if action == "wrong_shape":
        if kind == "token":
            return Reply(reply.status, b'{"token_type":"Bearer","expires_in":"soon"}',
                         {"Content-Type": ENTRA_JSON})
        return Reply(reply.status, b'{"@odata.context":"x","value":{"id":"not-a-list"}}',
                     reply.headers)
    return reply

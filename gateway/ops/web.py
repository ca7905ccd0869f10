"""The admin HTTP endpoint: ``/status``, ``/metrics``, ``/healthz`` and ``/readyz`` (twisted.web).

Everything comes in as callables, so the resource tree has no globals and tests can drive it
in memory::

    root = admin_resource(status=lambda: gateway_status(), metrics=metrics.render,
                          ready=lambda: gateway.directory.ready)
    site = admin_site(root)     # serverFromString(reactor, config.admin.listen).listen(site)

Only GET (and HEAD) are allowed: anything else is 405 with an ``Allow`` header; unknown paths
are 404.  Request logging goes to twisted.logger at debug level only.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import Resource

from gateway.ops.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

__all__ = ["admin_resource", "admin_site", "AdminSite"]

log = Logger()

_ALLOWED = (b"GET", b"HEAD")


def _plain(request: Any, code: int, text: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return (text + "\n").encode("utf-8")


class _Endpoint(Resource):
    """A leaf answering GET/HEAD only, at its exact path (a trailing slash is tolerated)."""

    isLeaf = True

    def render(self, request: Any) -> bytes:
        request.setHeader(b"cache-control", b"no-store")
        if request.postpath not in ([], [b""]):
            return _plain(request, 404, "not found")
        if request.method not in _ALLOWED:
            request.setHeader(b"allow", b", ".join(_ALLOWED))
            return _plain(request, 405, "method not allowed")
        try:
            return self.answer(request)
        except Exception:  # the admin endpoint must not take anything down with it
            log.failure("admin endpoint {path} failed", path=request.path.decode("ascii", "replace"))
            return _plain(request, 500, "internal error (see the log)")

    def answer(self, request: Any) -> bytes:
        raise NotImplementedError


class _Status(_Endpoint):
    def __init__(self, status: Callable[[], dict]) -> None:
        super().__init__()
        self._status = status

    def answer(self, request: Any) -> bytes:
        body = json.dumps(self._status(), indent=2, ensure_ascii=False) + "\n"
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return body.encode("utf-8")


class _Metrics(_Endpoint):
    def __init__(self, metrics: Callable[[], bytes]) -> None:
        super().__init__()
        self._metrics = metrics

    def answer(self, request: Any) -> bytes:
        body = self._metrics()
        request.setHeader(b"content-type", METRICS_CONTENT_TYPE.encode("ascii"))
        return body


class _Health(_Endpoint):
    def answer(self, request: Any) -> bytes:
        return _plain(request, 200, "ok")


class _Ready(_Endpoint):
    def __init__(self, ready: Callable[[], bool]) -> None:
        super().__init__()
        self._ready = ready

    def answer(self, request: Any) -> bytes:
        if self._ready():
            return _plain(request, 200, "ready")
        return _plain(request, 503, "not ready: the index is loading or LDAP is not listening yet")


class _Root(Resource):
    def getChild(self, path: bytes, request: Any) -> Resource:
        return _NotFound()

    def render(self, request: Any) -> bytes:
        return _NotFound().render(request)


class _NotFound(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        return _plain(request, 404, "not found; try /status, /metrics, /healthz or /readyz")


def admin_resource(
    status: Callable[[], dict],
    metrics: Callable[[], bytes],
    ready: Callable[[], bool],
) -> Resource:
    """The admin resource tree.

    ``status()``: the ``/status`` document (``gateway.ops.status.build_status``);
    ``metrics()``: Prometheus text (``Metrics.render``); ``ready()``: True once the index is
    loaded and LDAP listens.
    """
    root = _Root()
    root.putChild(b"status", _Status(status))
    root.putChild(b"metrics", _Metrics(metrics))
    root.putChild(b"healthz", _Health())
    root.putChild(b"readyz", _Ready(ready))
    return root


class AdminSite(server.Site):
    """A Site that logs requests at debug level through twisted.logger (not one line each at info)."""

    noisy = False

    def log(self, request: Any) -> None:  # type: ignore[override]
        log.debug(
            "admin {method} {path} -> {code}",
            method=request.method.decode("ascii", "replace"),
            path=request.uri.decode("ascii", "replace"),
            code=request.code,
        )


def admin_site(resource: Resource) -> AdminSite:
    """A Site for the admin listener: ``serverFromString(reactor, "tcp:8389:interface=127.0.0.1").listen(site)``."""
    site = AdminSite(resource)
    site.displayTracebacks = False
    return site

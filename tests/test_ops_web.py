"""The admin endpoint, in memory through treq's StubTreq (the whole twisted.web stack, no sockets)."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.web.test.requesthelper import DummyRequest

from gateway.ops.metrics import Metrics
from gateway.ops.status import build_status
from gateway.ops.web import AdminSite, admin_resource, admin_site


class Admin:
    def __init__(self):
        self.metrics = Metrics(index_counts=lambda: {"file": 2})
        self.is_ready = False
        self.status_calls = 0
        self.root = admin_resource(self.status, self.metrics.render, lambda: self.is_ready)
        self.http = StubTreq(self.root)

    def status(self):
        self.status_calls += 1
        return build_status(0.0, [{"name": "file", "type": "json_file", "state": "idle", "contacts": 2}],
                            {"file": 2}, 1.0, self.metrics.ldap_summary())

    def request(self, method, path):
        out = []
        d = self.http.request(method, "http://127.0.0.1:8389" + path)
        d.addCallback(lambda r: (out.append(r), r.content())[1])
        d.addCallback(out.append)
        assert len(out) == 2, "StubTreq answers synchronously"
        response, body = out
        return response.code, response.headers, body


def header(headers, name):
    values = headers.getRawHeaders(name)
    return values[0] if values else None


def test_status_is_json():
    admin = Admin()
    admin.metrics.search_done("name", 0.001)
    code, headers, body = admin.request("GET", "/status")
    assert code == 200
    assert header(headers, "content-type") == "application/json; charset=utf-8"
    assert header(headers, "cache-control") == "no-store"
    doc = json.loads(body)
    assert doc["sources"][0]["name"] == "file"
    assert doc["ldap"]["requests"] == {"search": 1}
    assert admin.request("GET", "/status/")[0] == 200


def test_metrics_is_prometheus_text():
    admin = Admin()
    admin.metrics.search_done("caller_id", 0.0002)
    code, headers, body = admin.request("GET", "/metrics")
    assert code == 200
    assert header(headers, "content-type").startswith("text/plain; version=0.0.4")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"dirgw_ldap_search_seconds", "dirgw_index_contacts"} <= names
    assert b'dirgw_index_contacts{source="file"} 2.0' in body


def test_healthz_and_readyz():
    admin = Admin()
    assert admin.request("GET", "/healthz")[::2] == (200, b"ok\n")
    code, _, body = admin.request("GET", "/readyz")
    assert code == 503 and b"not ready" in body
    admin.is_ready = True
    assert admin.request("GET", "/readyz")[::2] == (200, b"ready\n")


def test_head_is_allowed():
    admin = Admin()
    code, _, body = admin.request("HEAD", "/healthz")
    assert code == 200 and body == b""


def test_unknown_paths_are_404():
    admin = Admin()
    for path in ("/", "/nope", "/status/extra", "/metrics/x", "/healthz/a/b"):
        assert admin.request("GET", path)[0] == 404, path


def test_other_methods_are_405_with_allow():
    admin = Admin()
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        code, headers, _ = admin.request(method, "/status")
        assert code == 405, method
        assert header(headers, "allow") == "GET, HEAD"
    assert admin.status_calls == 0


def test_a_failing_provider_is_a_500_not_a_crash():
    def broken():
        raise RuntimeError("boom")

    http = StubTreq(admin_resource(broken, lambda: b"", lambda: True))
    out = []
    http.get("http://admin/status").addCallback(out.append)
    assert out[0].code == 500  # and the traceback goes to the log, not to the client


def test_dummy_request_traversal():
    from twisted.web.resource import getChildForRequest

    root = admin_resource(lambda: {"x": 1}, lambda: b"", lambda: True)
    request = DummyRequest([b"status"])
    request.method = b"GET"
    body = getChildForRequest(root, request).render(request)
    assert json.loads(body) == {"x": 1}


def test_site_logs_requests_at_debug_only():
    from twisted.logger import LogLevel, globalLogPublisher

    site = admin_site(admin_resource(lambda: {}, lambda: b"", lambda: True))
    assert isinstance(site, AdminSite)
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        request = DummyRequest([b"healthz"])
        request.method = b"GET"
        request.uri = b"/healthz"
        request.code = 200
        site.log(request)
    finally:
        globalLogPublisher.removeObserver(events.append)
    mine = [e for e in events if e.get("log_format", "").startswith("admin ")]
    assert mine and all(e["log_level"] == LogLevel.debug for e in mine)

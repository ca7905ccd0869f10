"""``dirgw status``: output, exit codes and the admin URL, with a fake fetch (and one real HTTP server)."""

from __future__ import annotations

import http.server
import io
import json
import threading
import urllib.error

import pytest

from gateway.ops.status import build_status, m365_status
from gateway.ops.status_cli import admin_url, format_status, human_duration, progress_bar, status_main
from gateway.sync.m365 import SyncState

NOW = 1_714_557_600.0
LDAP = {"connections": 2, "connections_total": 9, "requests": {"search": 1234}, "requests_total": 1234}


class _Source:
    def __init__(self, name, **state):
        self.name = name
        self.state = SyncState()
        for k, v in state.items():
            setattr(self.state, k, v)


def importing_doc():
    sources = [
        m365_status(_Source("m365", state="importing", pages=58, imported=58_000, import_started=NOW - 48.333),
                    total=100_000),
        {"name": "phonebook", "type": "json_file", "state": "idle", "contacts": 120},
    ]
    return build_status(NOW, sources, {"m365": 58_000, "phonebook": 120}, 250.0, LDAP)


def run(doc=None, argv=(), fetch=None):
    seen = []

    def fake(url, timeout):
        seen.append(url)
        return json.dumps(doc).encode()

    out, err = io.StringIO(), io.StringIO()
    code = status_main(list(argv), out, err, fetch=fetch or fake)
    return code, out.getvalue(), err.getvalue(), seen


def test_importing_shows_a_progress_bar_rate_and_eta():
    code, out, err, seen = run(importing_doc(), ["--url", "http://127.0.0.1:8389"])
    assert code == 0, err
    assert seen == ["http://127.0.0.1:8389/status"]
    lines = out.splitlines()
    assert lines[0] == "m365       importing [######------]  58% 58,000/100,000 contacts, 1,200/s, ETA 35s"
    assert lines[1].startswith("phonebook  idle: 120 contacts")
    assert lines[-1] == "index: 58,120 contacts; snapshot: 4m 10s old; LDAP: 2 open connections, 1,234 requests"


def test_estimated_total_and_unknown_total():
    raws = [m365_status(_Source("a", state="importing", pages=10, imported=25_000, import_started=NOW - 25)),
            m365_status(_Source("b", state="importing", pages=3, imported=3_000, import_started=NOW - 10))]
    text = format_status(build_status(NOW, raws, {"a": 100_000, "b": 3_000}, None, {}))
    a, b, summary = text.splitlines()
    assert a == "a  importing [###---------]  25% 25,000/~100,000 contacts, 1,000/s, ETA 1m 15s"
    assert b == "b  importing 3,000 contacts so far (total unknown), page 3, 300/s"
    assert "snapshot: none yet" in summary


def test_idle_backing_off_and_failed_lines_and_exit_1():
    raws = [
        m365_status(_Source("ok", state="idle", delta_link="x", last_success=NOW - 180, next_sync=NOW + 120,
                            throttled=3)),
        m365_status(_Source("slow", state="backing_off", delta_link="x", backoff_until=NOW + 42,
                            last_error="throttled (429), Retry-After 42")),
        m365_status(_Source("bad", state="failed", reason="permission missing: OrgContact.Read.All",
                            delta_link="x")),
    ]
    doc = build_status(NOW, raws, {"ok": 10, "slow": 20, "bad": 30}, 5.0, LDAP)
    code, out, _, _ = run(doc, ["--url", "http://x"])
    assert code == 1
    ok, slow, bad, _ = out.splitlines()
    assert ok == ("ok    idle: 10 contacts, last sync 2024-05-01 09:57:00Z (3m ago), "
                  "next 2024-05-01 10:02:00Z (in 2m), throttled 3x")
    assert slow == "slow  backing off until 2024-05-01 10:00:42Z (in 42s): throttled (429), Retry-After 42"
    assert bad == ("bad   FAILED: permission missing: OrgContact.Read.All; "
                   "serving 30 contacts from the last good data")


def test_backing_off_while_importing():
    raw = m365_status(_Source("m", state="backing_off", pages=5, imported=5_000, import_started=NOW - 5,
                              backoff_until=NOW + 30, last_error="throttled (429)"), total=10_000)
    line = format_status(build_status(NOW, [raw], {}, None, {})).splitlines()[0]
    assert line.startswith("m  importing, backing off [######------]  50% 5,000/10,000 contacts, 1,000/s, ETA 5s")
    assert line.endswith("; retrying at 2024-05-01 10:00:30Z (in 30s): throttled (429)")


def test_json_prints_the_document():
    doc = importing_doc()
    code, out, _, _ = run(doc, ["--json", "--url", "http://x/"])
    assert code == 0
    assert json.loads(out) == doc


def test_url_from_the_config(tmp_path):
    config = tmp_path / "dirgw.toml"
    config.write_text('[admin]\nlisten = "tcp:9999:interface=127.0.0.2"\n[ldap]\nlisten = ["tcp:389"]\n')
    code, _, err, seen = run(importing_doc(), ["--config", str(config)])
    assert code == 0, err
    assert seen == ["http://127.0.0.2:9999/status"]
    config.write_text("[ldap]\n")  # no [admin]: the default
    assert run(importing_doc(), ["--config", str(config)])[3] == ["http://127.0.0.1:8389/status"]


def test_config_problems_exit_2(tmp_path):
    code, _, err, _ = run(importing_doc(), ["--config", str(tmp_path / "missing.toml")])
    assert code == 2 and "no such file" in err
    bad = tmp_path / "bad.toml"
    bad.write_text("[admin\n")
    code, _, err, _ = run(importing_doc(), ["--config", str(bad)])
    assert code == 2 and "not valid TOML" in err
    unix = tmp_path / "unix.toml"
    unix.write_text('[admin]\nlisten = "unix:/run/dirgw.sock"\n')
    code, _, err, _ = run(importing_doc(), ["--config", str(unix)])
    assert code == 2 and "--url" in err


@pytest.mark.parametrize(
    "listen, url",
    [
        ("tcp:8389:interface=127.0.0.1", "http://127.0.0.1:8389"),
        ("tcp:8389", "http://127.0.0.1:8389"),
        ("tcp:port=8390:interface=0.0.0.0", "http://127.0.0.1:8390"),
        ("tcp6:8389:interface=\\:\\:1", "http://[::1]:8389"),
        ("tcp6:8389", "http://[::1]:8389"),
        ("tcp:8389:interface=10.0.0.5:backlog=10", "http://10.0.0.5:8389"),
    ],
)
def test_admin_url(listen, url):
    assert admin_url(listen) == url


@pytest.mark.parametrize("listen", ["unix:/x", "ssl:8389", "tcp:0", "tcp:abc", "tcp"])
def test_admin_url_refuses(listen):
    with pytest.raises(ValueError):
        admin_url(listen)


def test_unreachable_exits_2_with_a_clear_message():
    def refused(url, timeout):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    code, out, err, _ = run(fetch=refused, argv=["--url", "http://127.0.0.1:1"])
    assert code == 2 and out == ""
    assert err == ("dirgw status: cannot reach the admin endpoint at http://127.0.0.1:1: "
                   "Connection refused; is dirgw running?\n")

    def http_error(url, timeout):
        raise urllib.error.HTTPError(url, 500, "Internal Server Error", {}, None)

    code, _, err, _ = run(fetch=http_error, argv=["--url", "http://x"])
    assert code == 2 and "answered 500" in err

    def not_json(url, timeout):
        return b"<html>"

    code, _, err, _ = run(fetch=not_json, argv=["--url", "http://x"])
    assert code == 2 and "unexpected answer" in err


def test_usage_errors_go_to_the_given_stderr():
    code, _, err, _ = run(importing_doc(), ["--bogus"])
    assert code == 2 and "unrecognized arguments" in err


def test_helpers():
    assert progress_bar(0.58) == "[######------]"
    assert progress_bar(0) == "[------------]"
    assert progress_bar(1.5) == "[############]"
    assert human_duration(35.4) == "35s"
    assert human_duration(250) == "4m 10s"
    assert human_duration(7500) == "2h 5m"
    assert human_duration(3 * 86400 + 4 * 3600) == "3d 4h"


def test_real_http_with_the_default_fetch():
    """The urllib path against a tiny real server on loopback, and a closed port."""
    doc = importing_doc()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(doc).encode()
            self.send_response(200 if self.path == "/status" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        out, err = io.StringIO(), io.StringIO()
        assert status_main(["--url", f"http://127.0.0.1:{port}", "--json"], out, err) == 0, err.getvalue()
        assert json.loads(out.getvalue()) == doc
    finally:
        server.shutdown()
        server.server_close()
    out, err = io.StringIO(), io.StringIO()
    assert status_main(["--url", f"http://127.0.0.1:{port}", "--timeout", "2"], out, err) == 2
    assert "cannot reach the admin endpoint" in err.getvalue()

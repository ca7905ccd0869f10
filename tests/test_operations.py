"""Running dirgw as an admin would: status and metrics over HTTP, LDAPS and StartTLS, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.testing.tls import ensure_server_files
from tests.support import ROOT, ServerProcess, contact, parse_ldif, write_contacts

BASE = "dc=example,dc=com"

CONFIG = """
[ldap]
listen = ["tcp:0:interface=127.0.0.1", "ssl:0:interface=127.0.0.1"]
base_dn = "dc=example,dc=com"
size_limit = {size_limit}
tls_certificate = "tls/server.pem"
tls_key = "tls/server-key.pem"

[admin]
listen = "tcp:0:interface=127.0.0.1"

[[sources]]
name = "demo"
type = "json_file"
path = "contacts.json"
"""


def write_config(directory, size_limit=1000, extra=""):
    (directory / "dirgw.toml").write_text(CONFIG.format(size_limit=size_limit) + extra)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ops")
    files = ensure_server_files(directory / "tls")
    write_contacts(directory / "contacts.json", [
        contact(f"c-{i}", given="Anna", surname=f"Meyer{i}", phones=[("business", f"+49 89 1234-{200 + i}")])
        for i in range(5)
    ])
    write_config(directory)
    proc = ServerProcess(str(directory / "dirgw.toml"))
    proc.directory = directory
    proc.ca = str(files.ca_cert)
    yield proc
    proc.stop()


def ldapsearch(service, url, *args):
    env = dict(os.environ, LDAPTLS_CACERT=service.ca, LDAPTLS_REQCERT="demand")
    cmd = ["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", url, "-b", BASE, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)


def get(service, path):
    url = f"http://127.0.0.1:{service.admin_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def test_starttls_with_ldapsearch(service):
    """ldapsearch -ZZ upgrades a plain connection with StartTLS and searches over TLS."""
    result = ldapsearch(service, f"ldap://127.0.0.1:{service.ports[0]}", "-ZZ", "(sn=Meyer1)", "cn")
    assert result.returncode == 0, result.stderr
    assert parse_ldif(result.stdout)[0]["cn"] == ["Anna Meyer1"]


def test_ldaps_with_ldapsearch(service):
    """An ssl: listener serves ldaps:// with the configured certificate."""
    result = ldapsearch(service, f"ldaps://127.0.0.1:{service.ports[1]}", "(sn=Meyer2)", "cn")
    assert result.returncode == 0, result.stderr
    assert "Anna Meyer2" in result.stdout


def test_root_dse_lists_starttls(service):
    result = ldapsearch(service, f"ldap://127.0.0.1:{service.ports[0]}", "-b", "", "-s", "base",
                        "(objectClass=*)", "supportedExtension")
    assert "1.3.6.1.4.1.1466.20037" in result.stdout


def test_status_document(service):
    """GET /status describes each source, the index and the LDAP side."""
    ldapsearch(service, f"ldap://127.0.0.1:{service.ports[0]}", "(sn=Meyer*)", "cn")
    code, content_type, body = get(service, "/status")
    assert code == 200 and content_type.startswith("application/json")
    status = json.loads(body)
    (source,) = status["sources"]
    assert source["name"] == "demo" and source["state"] == "idle" and source["contacts"] == 5
    assert json.dumps(status)  # serializable as it came


def test_metrics_parse(service):
    """GET /metrics is Prometheus text that prometheus_client parses, with search latency by kind."""
    ldapsearch(service, f"ldap://127.0.0.1:{service.ports[0]}", "(telephoneNumber=+49891234201)", "cn")
    ldapsearch(service, f"ldap://127.0.0.1:{service.ports[0]}", "(|(cn=ann*)(sn=ann*))", "cn")
    code, _, body = get(service, "/metrics")
    assert code == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    search = families["dirgw_ldap_search_seconds"]
    kinds = {s.labels.get("kind") for s in search.samples if s.name.endswith("_count") and s.value > 0}
    assert {"caller_id", "name"} <= kinds
    contacts = families["dirgw_index_contacts"]
    assert any(s.labels.get("source") == "demo" and s.value == 5 for s in contacts.samples)


def test_health_and_readiness(service):
    assert get(service, "/healthz")[0] == 200
    assert get(service, "/readyz")[0] == 200
    assert get(service, "/nothing")[0] == 404


def test_dirgw_status_cli(service):
    """dirgw status prints one line per source."""
    result = subprocess.run([os.path.join(ROOT, ".venv", "bin", "dirgw"), "status", "--url",
                             f"http://127.0.0.1:{service.admin_port}"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "demo" in result.stdout and "idle" in result.stdout


def _wait_for_log(proc, text, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in proc.read_output():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged:\n{proc.output[-2000:]}")


def test_sighup_reload_valid_and_invalid(tmp_path):
    """SIGHUP applies a valid configuration without a restart and refuses an invalid one."""
    ensure_server_files(tmp_path / "tls")
    write_contacts(tmp_path / "contacts.json", [contact(f"c-{i}", given="Anna", surname=f"Meyer{i}") for i in range(5)])
    write_config(tmp_path, size_limit=1000)
    proc = ServerProcess(str(tmp_path / "dirgw.toml"))
    try:
        url = f"ldap://127.0.0.1:{proc.ports[0]}"
        run = lambda: subprocess.run(["ldapsearch", "-x", "-LLL", "-H", url, "-b", BASE, "(sn=Meyer*)", "cn"],
                                     capture_output=True, text=True, timeout=30)
        assert run().returncode == 0
        write_config(tmp_path, size_limit=2)
        proc.proc.send_signal(signal.SIGHUP)
        _wait_for_log(proc, "configuration reloaded")
        assert run().returncode == 4  # the server's size limit now applies
        (tmp_path / "dirgw.toml").write_text("[ldap]\nsize_limit = \"lots\"\n")
        proc.proc.send_signal(signal.SIGHUP)
        _wait_for_log(proc, "configuration reload refused")
        assert run().returncode == 4  # still serving with the last good configuration
    finally:
        assert proc.stop() == 0


def test_sigterm_exits_cleanly(tmp_path):
    """SIGTERM stops the service with exit code 0."""
    ensure_server_files(tmp_path / "tls")
    write_contacts(tmp_path / "contacts.json", [contact("c-1", given="A", surname="B")])
    write_config(tmp_path)
    proc = ServerProcess(str(tmp_path / "dirgw.toml"))
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(30) == 0


def test_require_tls(tmp_path):
    """require_tls refuses binds and searches before StartTLS with confidentialityRequired (13)."""
    files = ensure_server_files(tmp_path / "tls")
    write_contacts(tmp_path / "contacts.json", [contact("c-1", given="Anna", surname="Meyer")])
    write_config(tmp_path, extra="")
    text = (tmp_path / "dirgw.toml").read_text().replace("size_limit = 1000", "size_limit = 1000\nrequire_tls = true")
    (tmp_path / "dirgw.toml").write_text(text)
    proc = ServerProcess(str(tmp_path / "dirgw.toml"))
    try:
        env = dict(os.environ, LDAPTLS_CACERT=str(files.ca_cert))
        url = f"ldap://127.0.0.1:{proc.ports[0]}"
        plain = subprocess.run(["ldapsearch", "-x", "-H", url, "-b", BASE, "(sn=Meyer)"], capture_output=True,
                               text=True, env=env, timeout=30)
        assert plain.returncode == 13
        secure = subprocess.run(["ldapsearch", "-x", "-ZZ", "-H", url, "-b", BASE, "(sn=Meyer)", "cn"],
                                capture_output=True, text=True, env=env, timeout=30)
        assert secure.returncode == 0 and "Anna Meyer" in secure.stdout
    finally:
        proc.stop()


def test_sighup_reloads_certificate_without_dropping_connections(tmp_path):
    """A new certificate is used for new connections after SIGHUP; an open LDAPS connection keeps working."""
    import ssl

    import ldap3

    files = ensure_server_files(tmp_path / "tls")
    write_contacts(tmp_path / "contacts.json", [contact("c-1", given="Anna", surname="Meyer")])
    write_config(tmp_path)
    proc = ServerProcess(str(tmp_path / "dirgw.toml"))
    try:
        port = proc.ports[1]
        before = ssl.get_server_certificate(("127.0.0.1", port))
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(files.ca_cert))
        conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=port, use_ssl=True, tls=tls, get_info=ldap3.NONE),
                                auto_bind=True)
        ensure_server_files(tmp_path / "tls")  # a fresh server certificate from the same CA
        proc.proc.send_signal(signal.SIGHUP)
        _wait_for_log(proc, "TLS certificate reloaded")
        after = ssl.get_server_certificate(("127.0.0.1", port))
        assert after != before
        assert conn.search(BASE, "(sn=Meyer)", attributes=["cn"]) and len(conn.entries) == 1  # still open
        conn.unbind()
    finally:
        proc.stop()


def test_json_log_format(tmp_path):
    """--log-format json writes one JSON object per line."""
    ensure_server_files(tmp_path / "tls")
    write_contacts(tmp_path / "contacts.json", [contact("c-1", given="A", surname="B")])
    write_config(tmp_path)
    proc = subprocess.Popen([os.path.join(ROOT, ".venv", "bin", "dirgw"), "serve", "--config",
                             str(tmp_path / "dirgw.toml"), "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "dirgw: ready" in line:
                break
        events = [json.loads(line) for line in lines if line.strip()]
        assert any(e.get("log_format", "").startswith("dirgw: ready") for e in events)
    finally:
        proc.terminate()
        assert proc.wait(30) == 0

"""Helpers shared by tests: a real ``dirgw serve`` process and ldapsearch."""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTENING = re.compile(r"LDAP listening on ([0-9.]+):(\d+)")
ADMIN_LISTENING = re.compile(r"admin HTTP listening on ([0-9.]+):(\d+)")


def write_contacts(path, contacts):
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"value": contacts}, f, ensure_ascii=False)


def contact(id, display="", given="", surname="", company="", phones=(), mail="", department="", title=""):
    return {
        "id": id,
        "displayName": display or " ".join(p for p in (given, surname) if p) or company,
        "givenName": given or None,
        "surname": surname or None,
        "companyName": company or None,
        "department": department or None,
        "jobTitle": title or None,
        "mail": mail or None,
        "phones": [{"type": t, "number": n} for t, n in phones],
    }


CONFIG = """
[ldap]
listen = ["tcp:0:interface=127.0.0.1"]
base_dn = "dc=example,dc=com"
size_limit = {size_limit}
anonymous = {anonymous}

[admin]
listen = "tcp:0:interface=127.0.0.1"

[numbers]
country = "DE"
area_code = "89"
outside_line = "0"
main_number = "+49 89 1234-0"

[[sources]]
name = "demo"
type = "json_file"
path = "{contacts}"
"""


class ServerProcess:
    """``dirgw serve`` in a subprocess; ``port`` is where it listens."""

    def __init__(self, config_path: str, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", config_path],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.output = ""
        self.port = self._wait_for_port(timeout)
        self._drain()

    def _wait_for_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        buf = b""
        while time.monotonic() < deadline:
            if not sel.select(timeout=deadline - time.monotonic()):
                break
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            text = buf.decode("utf-8", "replace")
            if "dirgw: ready" in text:
                self.output = text
                self.ports = [int(m.group(2)) for m in LISTENING.finditer(text)]
                admin = ADMIN_LISTENING.search(text)
                self.admin_port = int(admin.group(2)) if admin else None
                return self.ports[0]
        self.stop()
        raise RuntimeError("dirgw serve did not start:\n" + buf.decode("utf-8", "replace"))

    def _drain(self) -> None:
        """Keep reading the process's output so that a chatty server never blocks on a full pipe."""
        import threading

        self._chunks: list[bytes] = []
        self._lock = threading.Lock()

        def run() -> None:
            fd = self.proc.stdout.fileno()
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                with self._lock:
                    self._chunks.append(chunk)

        threading.Thread(target=run, daemon=True).start()

    def read_output(self) -> str:
        """Everything the process printed so far."""
        with self._lock:
            chunks, self._chunks = self._chunks, []
        if chunks:
            self.output += b"".join(chunks).decode("utf-8", "replace")
        return self.output

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(tmp_path, contacts, size_limit=1000, anonymous=True) -> ServerProcess:
    contacts_path = tmp_path / "contacts.json"
    write_contacts(contacts_path, contacts)
    config_path = tmp_path / "dirgw.toml"
    config_path.write_text(
        CONFIG.format(size_limit=size_limit, anonymous=str(anonymous).lower(), contacts=contacts_path.name)
    )
    return ServerProcess(str(config_path))


def ldapsearch(port: int, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    """Run OpenLDAP's ldapsearch (-x, LDIF without wrapping) against 127.0.0.1:port."""
    cmd = ["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", f"ldap://127.0.0.1:{port}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=check)


def parse_ldif(text: str) -> list[dict[str, list[str]]]:
    """Entries of ldapsearch -LLL output (base64 values decoded)."""
    import base64

    entries = []
    for block in text.strip().split("\n\n"):
        entry: dict[str, list[str]] = {}
        for line in block.splitlines():
            if not line or line.startswith("#") or ":" not in line:
                continue
            if ":: " in line:
                attr, value = line.split(":: ", 1)
                value = base64.b64decode(value).decode("utf-8")
            else:
                attr, _, value = line.partition(": ")
            entry.setdefault(attr, []).append(value)
        if entry:
            entries.append(entry)
    return entries

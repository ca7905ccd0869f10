"""Shared pieces of the benchmarks: data, processes, ldapload."""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_BENCH = os.path.normpath(os.path.join(ROOT, "..", "shared", "bench"))
DATA = os.path.join(ROOT, "bench-data")
PY = sys.executable


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def dataset(n: int) -> str:
    """Directory with the generator's output for ``n`` contacts (generated once, cached)."""
    name = f"{n // 1000}k" if n % 1000 == 0 else str(n)
    out = os.path.join(DATA, name)
    if os.path.exists(os.path.join(out, "queries.json")):
        return out
    gen = os.path.join(SHARED_BENCH, "gen_contacts.py")
    if not os.path.exists(gen):
        raise SystemExit(f"bench: the contact generator is missing ({gen})")
    log(f"generating {n} contacts into {out}")
    subprocess.run([PY, gen, "-n", str(n), "-o", out], check=True, stdout=subprocess.DEVNULL)
    return out


def caller_id_filters(data_dir: str) -> str:
    """A filter file of caller-ID lookups as phones send them: (|(telephoneNumber=N)(mobile=N))."""
    path = os.path.join(data_dir, "filters", "callerid_phone_form.txt")
    if not os.path.exists(path):
        with open(os.path.join(data_dir, "queries.json"), encoding="utf-8") as f:
            queries = json.load(f)
        with open(path, "w", encoding="utf-8") as f:
            for q in queries["phone"]:
                if q.get("kind") == "phone":
                    n = q["input"]
                    f.write(f"(|(telephoneNumber={n})(mobile={n}))\n")
    return path


def pin(pid: int, cpus: str) -> None:
    """Keep a running process on ``cpus`` (as ``taskset`` does for a new one), where there are that many."""
    wanted = {int(c) for c in cpus.split(",")}
    if hasattr(os, "sched_setaffinity") and wanted <= os.sched_getaffinity(0):
        os.sched_setaffinity(pid, wanted)


def taskset(cpus: str | None) -> list[str]:
    if cpus and shutil.which("taskset"):
        return ["taskset", "-c", cpus]
    return []


class Gateway:
    """``dirgw serve`` in a child process, with its log lines collected."""

    LISTENING = re.compile(r"LDAP listening on [0-9.]+:(\d+)")
    READY = re.compile(r"dirgw: ready \((\d+) contacts\)")

    def __init__(self, config: str, cpus: str | None = "0", start_timeout: float = 120.0) -> None:
        """Start ``dirgw serve``; returns once LDAP listens (json_file sources are loaded before that)."""
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            taskset(cpus) + [os.path.join(ROOT, ".venv", "bin", "dirgw"), "serve", "--config", config],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, bufsize=0,
        )
        self.lines: list[tuple[float, str]] = []
        self._partial = b""
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stderr, selectors.EVENT_READ)
        try:
            line = self.wait_for(self.LISTENING, start_timeout)
        except BaseException:
            self.stop()
            raise
        self.port = int(self.LISTENING.search(line).group(1))

    def wait_ready(self, timeout: float) -> tuple[float, int]:
        """Wait for ``dirgw: ready``; returns (seconds from start to ready, contacts served)."""
        line = self.wait_for(self.READY, timeout)
        at = [t for t, l in self.lines if l == line][0]
        return at - self.started, int(self.READY.search(line).group(1))

    def poll(self, timeout: float = 0.0) -> None:
        """Collect the log lines written so far (waiting up to ``timeout`` for the first).

        Reads the pipe with os.read: a buffered readline() could keep lines in its buffer that
        select() then never reports (dirgw often writes several lines at once).
        """
        while self._sel.get_map() and self._sel.select(timeout):
            chunk = os.read(self.proc.stderr.fileno(), 1 << 16)
            now = time.monotonic()
            if not chunk:  # dirgw closed its stderr (exited)
                self._sel.unregister(self.proc.stderr)
                if self._partial:
                    self.lines.append((now, self._partial.decode("utf-8", "replace")))
                    self._partial = b""
                return
            *complete, self._partial = (self._partial + chunk).split(b"\n")
            self.lines.extend((now, line.decode("utf-8", "replace") + "\n") for line in complete)
            timeout = 0

    def wait_for(self, pattern: re.Pattern, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for _, line in self.lines[seen:]:
                if pattern.search(line):
                    return line
            seen = len(self.lines)
            if self.proc.poll() is not None:
                self.poll(0)
                if any(pattern.search(line) for _, line in self.lines[seen:]):
                    continue
                raise RuntimeError("dirgw serve exited:\n" + "".join(l for _, l in self.lines[-20:]))
            self.poll(0.2)
            if not self._sel.get_map():
                time.sleep(0.2)
        raise TimeoutError(f"no log line matching {pattern.pattern!r}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def ldapload(port: int, filters: str, conns: int = 8, duration: float = 10.0, warmup: float = 1.0,
             cpus: str | None = "1", sizelimit: int = 50, server_pid: int | None = None,
             base: str = "dc=example,dc=com", depth: int = 1) -> dict:
    cmd = taskset(cpus) + [PY, os.path.join(SHARED_BENCH, "ldapload.py"), "-p", str(port), "-f", filters,
                           "-b", base, "-c", str(conns), "-d", str(depth), "-t", str(duration), "-w", str(warmup),
                           "-z", str(sizelimit), "--json"]
    if server_pid:
        cmd += ["--server-pid", str(server_pid)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"ldapload failed (exit {out.returncode}) on port {port} with {os.path.basename(filters)}: "
                           f"{(out.stderr or out.stdout).strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


_FILE_SOURCE_CONFIG = """\
[ldap]
listen = ["tcp:0:interface=127.0.0.1"]
base_dn = "dc=example,dc=com"
answer_cache = {answer_cache}
[numbers]
country = "DE"
other_countries = ["AT", "CH", "US", "GB", "FR", "NL"]
[admin]
listen = ""
[[sources]]
name = "bench"
type = "json_file"
path = {path}
"""


def write_file_source_config(config: str, contacts_json: str, answer_cache: int = 8192) -> None:
    """A gateway configuration serving ``contacts_json`` on a free loopback port, as benchmarks use it."""
    with open(config, "w") as f:
        f.write(_FILE_SOURCE_CONFIG.format(path=json.dumps(contacts_json), answer_cache=answer_cache))

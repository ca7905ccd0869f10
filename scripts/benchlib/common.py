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


def taskset(cpus: str | None) -> list[str]:
    if cpus and shutil.which("taskset"):
        return ["taskset", "-c", cpus]
    return []


class Gateway:
    """``dirgw serve`` in a child process, with its log lines collected."""

    LISTENING = re.compile(r"LDAP listening on [0-9.]+:(\d+)")

    def __init__(self, config: str, cpus: str | None = "0") -> None:
        self.proc = subprocess.Popen(
            taskset(cpus) + [os.path.join(ROOT, ".venv", "bin", "dirgw"), "serve", "--config", config],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        self.lines: list[tuple[float, str]] = []
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stderr, selectors.EVENT_READ)
        line = self.wait_for(self.LISTENING, 120)
        self.port = int(self.LISTENING.search(line).group(1))

    def poll(self, timeout: float = 0.0) -> None:
        while self._sel.select(timeout):
            line = self.proc.stderr.readline()
            if not line:
                return
            self.lines.append((time.monotonic(), line))
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
                raise RuntimeError("dirgw serve exited:\n" + "".join(l for _, l in self.lines[-20:]))
            self.poll(0.2)
        raise TimeoutError(f"no log line matching {pattern.pattern!r}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def ldapload(port: int, filters: str, conns: int = 8, duration: float = 10.0, warmup: float = 1.0,
             cpus: str | None = "1", sizelimit: int = 50, server_pid: int | None = None,
             base: str = "dc=example,dc=com") -> dict:
    cmd = taskset(cpus) + [PY, os.path.join(SHARED_BENCH, "ldapload.py"), "-p", str(port), "-f", filters,
                           "-b", base, "-c", str(conns), "-d", "1", "-t", str(duration), "-w", str(warmup),
                           "-z", str(sizelimit), "--json"]
    if server_pid:
        cmd += ["--server-pid", str(server_pid)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

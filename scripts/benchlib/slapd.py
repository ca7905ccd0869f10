"""A throwaway OpenLDAP slapd (back-mdb) on 127.0.0.1 for the benchmarks.

The same setup as ../shared/bench/slapd_run.sh (the baseline in its README):
core, cosine and inetorgperson schemas, ``database mdb``, ``index objectClass
eq`` and ``index cn,sn,telephoneNumber,mobile eq,sub``, ``loglevel 0``,
``threads 16``, anonymous read; the database is built with ``slapadd -q``.
Ported to Python so that the port is chosen here and slapd is stopped by the
PID it wrote, also when the benchmark fails half-way.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

from common import log, taskset

SUFFIX = "dc=example,dc=com"
CONTACTS_BASE = "ou=contacts," + SUFFIX
ROOTDN = "cn=admin," + SUFFIX
ROOTPW = "secret"

CONF = """\
include         /etc/ldap/schema/core.schema
include         /etc/ldap/schema/cosine.schema
include         /etc/ldap/schema/inetorgperson.schema
pidfile         {dir}/slapd.pid
argsfile        {dir}/slapd.args
modulepath      /usr/lib/ldap
moduleload      back_mdb
loglevel        0
threads         {threads}
sizelimit       500
access to * by * read

database        mdb
maxsize         4294967296
suffix          "{suffix}"
rootdn          "{rootdn}"
rootpw          {rootpw}
directory       {dir}/db
index           objectClass eq
index           cn,sn,telephoneNumber,mobile eq,sub
"""

_PROGRAMS = ("slapd", "slapadd", "ldapsearch")


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


def missing() -> list[str]:
    return [p for p in _PROGRAMS if not _which(p)] + [
        f for f in ("/etc/ldap/schema/inetorgperson.schema", "/usr/lib/ldap/back_mdb.so") if not os.path.exists(f)]


def ensure_installed() -> str | None:
    """Install Debian's slapd and ldap-utils when missing; returns None when ready, else why not."""
    if not missing():
        return None
    if not shutil.which("apt-get"):
        return f"slapd is not installed ({', '.join(missing())} missing) and apt-get is not available"
    if os.geteuid() != 0:
        return f"slapd is not installed ({', '.join(missing())} missing); installing it needs root"
    log("installing Debian's slapd and ldap-utils (apt-get update; apt-get install -y slapd ldap-utils)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "slapd", "ldap-utils"]):
        out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if out.returncode != 0:
            tail = "\n".join(out.stdout.strip().splitlines()[-8:])
            return f"{' '.join(cmd)} failed (exit {out.returncode}):\n{tail}"
    still = missing()
    if still:
        return f"slapd is still not usable after apt-get install ({', '.join(still)} missing)"
    return None


def version() -> str:
    out = subprocess.run([_which("slapd") or "slapd", "-VV"], capture_output=True, text=True)
    lines = (out.stderr or out.stdout).strip().splitlines()
    return lines[0].strip() if lines else "slapd (version unknown)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return False
    return data[data.rindex(b")") + 2:][:1] not in (b"Z", b"X")


class Slapd:
    """slapd serving ``ldif`` from a fresh mdb database in ``workdir`` (wiped first)."""

    def __init__(self, ldif: str, workdir: str, cpus: str | None = "0", threads: int = 16,
                 port: int | None = None) -> None:
        self.ldif = os.path.abspath(ldif)
        self.dir = os.path.abspath(workdir)
        self.cpus = cpus
        self.threads = threads
        self.port = port or free_port()
        self.pid: int | None = None
        self.slapadd_s: float | None = None
        self.entries: int | None = None
        self.db_mib: float | None = None

    def start(self, timeout: float = 60.0) -> "Slapd":
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "db"))
        conf = os.path.join(self.dir, "slapd.conf")
        with open(conf, "w") as f:
            f.write(CONF.format(dir=self.dir, threads=self.threads, suffix=SUFFIX, rootdn=ROOTDN, rootpw=ROOTPW))
        started = time.monotonic()
        out = subprocess.run([_which("slapadd"), "-q", "-f", conf, "-l", self.ldif], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"slapadd failed (exit {out.returncode}):\n{out.stderr.strip()[-2000:]}")
        self.slapadd_s = time.monotonic() - started
        self.db_mib = sum(os.stat(os.path.join(self.dir, "db", n)).st_blocks * 512  # data.mdb is sparse
                          for n in os.listdir(os.path.join(self.dir, "db"))) / 2**20
        # slapd forks into the background and writes its PID file; taskset's CPU list is inherited
        out = subprocess.run(taskset(self.cpus) + [_which("slapd"), "-f", conf, "-h", f"ldap://127.0.0.1:{self.port}/",
                                                   "-s", "0"], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"slapd did not start (exit {out.returncode}):\n{out.stderr.strip()[-2000:]}")
        pidfile = os.path.join(self.dir, "slapd.pid")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid is None and os.path.exists(pidfile):
                with open(pidfile) as f:
                    text = f.read().strip()
                if text:
                    self.pid = int(text)
            if self.pid is not None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    break
                except OSError:
                    pass
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"slapd did not listen on 127.0.0.1:{self.port} within {timeout:.0f} s")
        self.entries = self.count()
        return self

    def count(self) -> int:
        """Entries under ou=contacts (as the root DN, so that no size limit applies)."""
        out = subprocess.run([_which("ldapsearch"), "-x", "-H", f"ldap://127.0.0.1:{self.port}", "-D", ROOTDN,
                              "-w", ROOTPW, "-b", CONTACTS_BASE, "-s", "one", "-z", "0", "-LLL", "1.1"],
                             capture_output=True, text=True)
        return sum(1 for line in out.stdout.splitlines() if line.startswith("dn:"))

    def stop(self, remove: bool = True) -> None:
        pid, self.pid = self.pid, None
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Slapd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

"""scripts/soak: many phones against dirgw for a fixed time while a Microsoft 365 sync runs (issue 10).

What runs, all on loopback:

- ``../shared/bench/gen_contacts.py`` generates the contacts and the phone queries;
- the Graph emulator (``gateway.testing.process.EmulatorProcess``) serves them;
- ``dirgw serve`` syncs them with an ``m365_mail_contacts`` source (delta rounds every
  ``--interval``) and answers LDAP;
- ``--connections`` phones (spread over 127.0.0.2, 127.0.0.3, ... 50 per address, as phones
  come from many addresses) each bind anonymously and send the phone query mix in a closed
  loop: caller ID as phones send it ``(|(telephoneNumber=N)(mobile=N))`` and Snom's
  ``(&(telephoneNumber=N)(sn=*))`` with N in dialling format (``0…``, ``+49…``, ``0049…``),
  Superfecta's suffix ``(|(telephoneNumber=*N)(mobile=*N))``, and name prefixes
  ``(|(cn=mey*)(sn=mey*))`` / ``(|(givenName=jo*)(sn=jo*))``, sizeLimit 50;
- every ``--change-every`` seconds a contact is added, one changed and an older one removed
  through the emulator's admin API; a monitor connection measures how long each change takes
  to show in LDAP (so delta rounds really apply under load);
- ``--think`` makes each phone pause (±50 %) between an answer and its next query; the default
  0 is a closed loop at full speed, so latency then measures the server's queue;
- ``--slow`` connections send a valid search one byte every ``--slow-rate`` seconds, and
  ``--never-read`` connections pipeline searches and never read an answer;
- the server's RSS is sampled every ``--sample`` seconds.

Errors (must be 0): result codes other than success (0) and sizeLimitExceeded (4), a failed
bind, a connection closed by the server, an answer that takes longer than ``--timeout``,
malformed BER, a change not visible in LDAP before the end, a monitor search that fails.
RSS must not grow: the last sample must be within ``--rss-tolerance`` (10 %) of the first
sample after ``--warmup``.  Exit status 0 when both hold, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from gateway.ldap import ber  # noqa: E402
from gateway.ldap.filter_text import parse_filter  # noqa: E402
from tests import fuzzing as F  # noqa: E402

SHARED_BENCH = os.path.normpath(os.path.join(ROOT, "..", "shared", "bench"))
BASE = "dc=example,dc=com"
ATTRS = ["cn", "sn", "givenName", "displayName", "o", "telephoneNumber", "mobile", "homePhone"]

CONFIG = """\
[ldap]
listen = ["tcp:0:interface=127.0.0.1"]
base_dn = "dc=example,dc=com"

[admin]
listen = ""

[numbers]
country = "DE"
other_countries = ["AT", "CH", "US", "GB", "FR", "NL"]

[[sources]]
name = "m365"
type = "m365_mail_contacts"
tenant_id = {tenant}
client_id = {client_id}
client_secret_file = {secret}
authority_host = {base}
graph_url = {base}
ca_bundle = {ca}
interval = {interval}
"""


def log(message: str) -> None:
    print(f"[soak] {message}", file=sys.stderr, flush=True)


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


# --------------------------------------------------------------------------
# Processes


class Gateway:
    """``dirgw serve`` in a child process; its output is drained into ``lines``."""

    LISTENING = re.compile(r"LDAP listening on [0-9.]+:(\d+)")

    def __init__(self, config: str, timeout: float = 120.0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", config],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()
        line = self.wait_for(re.compile(r"dirgw: ready"), timeout)
        del line
        listening = [m for _, l in self.lines if (m := self.LISTENING.search(l))]
        self.port = int(listening[0].group(1))

    def _drain(self) -> None:
        partial = b""
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            *lines, partial = (partial + chunk).split(b"\n")
            now = time.monotonic()
            with self._lock:
                self.lines += [(now, l.decode("utf-8", "replace")) for l in lines]

    def wait_for(self, pattern: re.Pattern, timeout: float, since: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for _, line in self.lines[since:]:
                    if pattern.search(line):
                        return line
            if self.proc.poll() is not None:
                raise RuntimeError("dirgw serve exited:\n" + "\n".join(l for _, l in self.lines[-30:]))
            time.sleep(0.05)
        raise TimeoutError(f"no log line matching {pattern.pattern!r}:\n"
                           + "\n".join(l for _, l in self.lines[-30:]))

    def count(self, pattern: re.Pattern) -> int:
        with self._lock:
            return sum(1 for _, l in self.lines if pattern.search(l))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --------------------------------------------------------------------------
# The query mix


def query_mix(data_dir: str, seed: int) -> list[tuple[str, bytes]]:
    """(kind, encoded SearchRequest op) for the phone query mix, shuffled with ``seed``."""
    with open(os.path.join(data_dir, "queries.json"), encoding="utf-8") as f:
        queries = json.load(f)
    rng = random.Random(seed)

    def esc(v: str) -> str:
        return "".join("\\%02x" % ord(c) if c in "()*\\\x00" else c for c in v)

    texts: list[tuple[str, str]] = []
    for q in queries["phone"]:
        n = esc(q["input"])
        r = rng.random()
        if r < 0.6:
            texts.append(("callerid", f"(|(telephoneNumber={n})(mobile={n}))"))
        elif r < 0.8:
            texts.append(("callerid", f"(&(telephoneNumber={n})(sn=*))"))
        else:
            digits = "".join(c for c in q["input"] if c.isdigit())[-9:]
            texts.append(("suffix", f"(|(telephoneNumber=*{digits})(mobile=*{digits}))"))
    for q in queries["name"]:
        p = esc(q["input"])
        if rng.random() < 0.7:
            texts.append(("name", f"(|(cn={p}*)(sn={p}*))"))
        else:
            texts.append(("name", f"(|(givenName={p}*)(sn={p}*))"))
    rng.shuffle(texts)
    out = []
    for kind, text in texts:
        flt = F.encode_filter(parse_filter(text))
        out.append((kind, F.search_op(BASE, 2, 0, 50, 0, False, flt, ATTRS)))
    return out


# --------------------------------------------------------------------------
# The phones (one epoll loop)


class Phone:
    __slots__ = ("sock", "buf", "sent_at", "mid", "kind", "entries", "bound", "address", "due")

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.sent_at = 0.0
        self.mid = 0
        self.kind = ""
        self.entries = 0
        self.bound = False
        self.address = address
        self.due = 0.0  # with a think time: when to send the next query (0: not waiting)


def _responses(buf: bytearray):
    """Yield (message id, op tag, result code or None) of complete messages; consumes them."""
    pos = 0
    n = len(buf)
    out = []
    while n - pos >= 2:
        b1 = buf[pos + 1]
        if b1 < 0x80:
            p = pos + 2
            end = p + b1
        else:
            k = b1 & 0x7F
            if n - pos < 2 + k:
                break
            p = pos + 2 + k
            end = p + int.from_bytes(buf[pos + 2 : p], "big")
        if end > n:
            break
        if buf[pos] != 0x30 or buf[p] != 0x02:
            raise ber.BERError(f"malformed response at offset {pos}")
        il = buf[p + 1]
        q = p + 2 + il
        mid = int.from_bytes(buf[p + 2 : q], "big")
        tag = buf[q]
        code = None
        if tag in (0x61, 0x65, 0x78):
            lb = buf[q + 1]
            r = q + 2 + ((lb & 0x7F) if lb & 0x80 else 0)
            if buf[r] != 0x0A:
                raise ber.BERError("response without a resultCode")
            code = buf[r + 2]
        out.append((mid, tag, code))
        pos = end
    del buf[:pos]
    return out


class Load:
    """Closed-loop phones plus slow and never-reading clients, all on one epoll."""

    def __init__(self, port: int, mix: list[tuple[str, bytes]], connections: int, timeout: float,
                 slow: int, slow_rate: float, never_read: int, think: float = 0.0) -> None:
        self.port = port
        self.think = think
        self.mix = mix
        self.timeout = timeout
        self.cursor = 0
        self.latencies: dict[str, list[float]] = collections.defaultdict(list)
        self.codes: collections.Counter = collections.Counter()
        self.errors: collections.Counter = collections.Counter()
        self.error_samples: list[str] = []
        self.hits: collections.Counter = collections.Counter()
        self.ep = select.epoll()
        self.rng = random.Random(1)
        self.phones: dict[int, Phone] = {}
        for i in range(connections):
            address = f"127.0.0.{2 + i // 50}"
            sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(address, 0))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            phone = Phone(sock, address)
            self.phones[sock.fileno()] = phone
            self.ep.register(sock.fileno(), select.EPOLLIN)
            if i % 40 == 39:
                time.sleep(0.01)  # the listen backlog is 50: let the server accept
        self.slow_rate = slow_rate
        self.slow: list[dict] = []
        for i in range(slow):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.250", 0))
            sock.setblocking(False)
            data = F.message(1, self.mix[i % len(self.mix)][1])
            self.slow.append({"sock": sock, "data": data, "sent": 0, "answered": False, "closed": False,
                              "next": time.monotonic(), "buf": bytearray()})
        self.never: list[dict] = []
        for i in range(never_read):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.251", 0))
            sock.setblocking(False)
            self.never.append({"sock": sock, "sent": 0, "closed": False})
        self._pipeline = b"".join(F.message(k + 1, op) for k, (_, op) in enumerate(self.mix[:500]))

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{kind}: {detail}")

    def _send_next(self, phone: Phone, now: float) -> None:
        kind, op = self.mix[self.cursor % len(self.mix)]
        self.cursor += 1
        phone.mid = phone.mid % 1_000_000 + 1
        phone.kind = kind
        phone.entries = 0
        phone.sent_at = now
        try:
            phone.sock.send(ber.wrap_message(phone.mid, op))
        except OSError as e:
            self._lost(phone, f"send failed: {e}")

    def _next(self, phone: Phone, now: float) -> None:
        if self.think:
            phone.due = now + self.rng.uniform(0.5, 1.5) * self.think
            phone.sent_at = float("inf")  # not waiting for an answer
        else:
            self._send_next(phone, now)

    def _lost(self, phone: Phone, why: str) -> None:
        self.error("connection closed", f"{phone.address}: {why}")
        try:
            self.ep.unregister(phone.sock.fileno())
        except (OSError, ValueError):
            pass
        self.phones.pop(phone.sock.fileno(), None)
        phone.sock.close()

    def start(self) -> None:
        now = time.perf_counter()
        for phone in list(self.phones.values()):
            phone.mid = 1
            phone.sent_at = now
            phone.kind = "bind"
            try:
                phone.sock.send(F.message(1, F.bind_op(3)))
            except OSError as e:
                self._lost(phone, f"bind send failed: {e}")

    def step(self, until: float, measuring: bool) -> None:
        """Run the loop until ``until`` (perf_counter)."""
        while True:
            now = time.perf_counter()
            if now >= until:
                return
            events = self.ep.poll(min(0.05, until - now))
            now = time.perf_counter()
            for fd, _ in events:
                phone = self.phones.get(fd)
                if phone is None:
                    continue
                try:
                    data = phone.sock.recv(1 << 18)
                except BlockingIOError:
                    continue
                except OSError as e:
                    self._lost(phone, str(e))
                    continue
                if not data:
                    self._lost(phone, "closed by the server")
                    continue
                phone.buf += data
                try:
                    responses = _responses(phone.buf)
                except ber.BERError as e:
                    self.error("malformed BER", str(e))
                    self._lost(phone, "malformed BER")
                    continue
                for mid, tag, code in responses:
                    if mid != phone.mid:
                        self.error("unexpected message", f"id {mid} tag 0x{tag:02x}")
                        continue
                    if tag == 0x64:
                        phone.entries += 1
                        continue
                    if tag == 0x61:
                        if code != 0:
                            self.error("bind failed", f"resultCode {code}")
                        phone.bound = True
                        self._next(phone, now)
                        continue
                    if tag != 0x65:
                        self.error("unexpected response", f"tag 0x{tag:02x} code {code}")
                        continue
                    if measuring:
                        self.latencies[phone.kind].append(now - phone.sent_at)
                        self.codes[code] += 1
                        if phone.entries:
                            self.hits[phone.kind] += 1
                    if code not in (0, 4):
                        self.error(f"resultCode {code}", phone.kind)
                    self._next(phone, now)
            if self.think:
                for phone in list(self.phones.values()):
                    if phone.due and phone.due <= now:
                        phone.due = 0.0
                        self._send_next(phone, now)
            self._overdue(now)
            self._trickle()
            self._flood()

    def _overdue(self, now: float) -> None:
        for phone in list(self.phones.values()):
            if phone.sent_at != float("inf") and now - phone.sent_at > self.timeout:
                self.error("timeout", f"{phone.kind} unanswered after {self.timeout:g}s")
                phone.sent_at = now  # count once per timeout period

    def _trickle(self) -> None:
        now = time.monotonic()
        for s in self.slow:
            if s["closed"] or s["answered"]:
                continue
            try:
                data = s["sock"].recv(65536)
                if data == b"":
                    s["closed"] = True
                    continue
                s["buf"] += data
                if any(tag == 0x65 for _, tag, _ in _responses(s["buf"])):
                    s["answered"] = True
            except BlockingIOError:
                pass
            except OSError:
                s["closed"] = True
                continue
            if s["sent"] < len(s["data"]) and now >= s["next"]:
                try:
                    s["sock"].send(s["data"][s["sent"] : s["sent"] + 1])
                    s["sent"] += 1
                except BlockingIOError:
                    pass
                except OSError:
                    s["closed"] = True
                s["next"] = now + self.slow_rate

    def _flood(self) -> None:
        for n in self.never:
            if n["closed"]:
                continue
            try:
                n["sent"] += n["sock"].send(self._pipeline)
            except BlockingIOError:
                pass
            except OSError:
                n["closed"] = True

    def close(self) -> None:
        for phone in self.phones.values():
            try:
                phone.sock.send(F.message(phone.mid + 1, F.unbind_op()))
            except OSError:
                pass
            phone.sock.close()
        for s in self.slow + self.never:
            s["sock"].close()
        self.ep.close()


# --------------------------------------------------------------------------
# Changes through the emulator, and a monitor that waits for them in LDAP


class Changes(threading.Thread):
    """Adds, changes and removes contacts every ``every`` seconds; a monitor connection measures
    how long each takes to show in LDAP."""

    def __init__(self, emu, port: int, contacts: list[dict], every: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.emu = emu
        self.port = port
        self.every = every
        self.rng = random.Random(seed)
        self.existing = [c["id"] for c in contacts]
        self.rng.shuffle(self.existing)  # changed without replacement: a later change never hides an earlier one
        self.stop_event = threading.Event()
        self.pending: list[tuple] = []  # (filter, "present"/"absent", injected at, id of an added contact)
        self.delays: list[float] = []
        self.injected = 0
        self.failures: list[str] = []
        self.added: list[tuple[str, str]] = []  # (id, filter) of added contacts seen in LDAP
        self.lock = threading.Lock()

    def run(self) -> None:
        monitor = threading.Thread(target=self._monitor, daemon=True)
        monitor.start()
        k = 0
        next_change = time.monotonic()
        while not self.stop_event.wait(max(0.0, next_change - time.monotonic())):
            next_change += self.every
            k += 1
            try:
                self._change(k)
            except Exception as e:  # noqa: BLE001
                self.failures.append(f"change {k}: {type(e).__name__}: {e}")
        monitor.join(5)

    def _change(self, k: int) -> None:
        now = time.monotonic()
        cid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self.emu.add_contacts([{
            "id": cid, "displayName": f"Soak Probe{k}", "givenName": "Soak", "surname": f"Soakprobe{k}",
            "companyName": "Soak GmbH", "phones": [{"type": "business", "number": f"+49 89 5550{k:05d}"}],
        }])
        changed = self.existing.pop()
        self.emu.change_contact(changed, surname=f"Soakchanged{k}")
        with self.lock:
            self.pending.append((f"(sn=Soakprobe{k})", "present", now, cid))
            self.pending.append((f"(sn=Soakchanged{k})", "present", now, None))
            self.injected += 2
            # remove an added contact once LDAP has shown it (keep the three newest)
            removable = len(self.added) > 3
        if removable:
            old_id, old_filter = self.added.pop(0)
            self.emu.remove_contact(old_id)
            with self.lock:
                self.pending.append((old_filter, "absent", time.monotonic(), None))
                self.injected += 1

    def _monitor(self) -> None:
        session = None
        while not self.stop_event.is_set() or self.pending:
            if self.stop_event.is_set() and time.monotonic() > self.final_deadline:
                return
            try:
                if session is None:
                    session = F.Session(self.port, timeout=10)
                    if session.bind() != 0:
                        self.failures.append("monitor: bind failed")
                with self.lock:
                    pending = list(self.pending)
                for item in pending:
                    flt, want, at, added_id = item
                    code, dns = session.search(flt, ["cn"])
                    if code != 0:
                        self.failures.append(f"monitor: {flt} answered {code}")
                    if (want == "present") == bool(dns):
                        with self.lock:
                            self.pending.remove(item)
                            self.delays.append(time.monotonic() - at)
                            if added_id is not None:
                                self.added.append((added_id, flt))
            except (OSError, TimeoutError, F.Closed, ber.BERError) as e:
                self.failures.append(f"monitor: {type(e).__name__}: {e}")
                if session is not None:
                    session.close()
                session = None
            time.sleep(0.2)

    final_deadline = float("inf")

    def finish(self, grace: float) -> None:
        """Stop changing; give the monitor ``grace`` seconds for the last changes to show."""
        self.final_deadline = time.monotonic() + grace
        self.stop_event.set()
        self.join(grace + 10)


# --------------------------------------------------------------------------
# The run


def run(duration: float = 60.0, connections: int = 200, contacts: int = 2000, interval: str = "2s",
        change_every: float = 3.0, sample: float = 2.0, warmup: float | None = None, timeout: float = 5.0,
        slow: int = 20, slow_rate: float = 1.0, never_read: int = 0, think: float = 0.0, seed: int = 42,
        rss_tolerance: float = 0.10, workdir: str | None = None) -> dict:
    """Run the soak; returns the report (``report["ok"]``: no errors and no RSS growth)."""
    from gateway.testing.process import EmulatorProcess

    if warmup is None:
        warmup = min(10.0, duration / 5)
    work = workdir or tempfile.mkdtemp(prefix="dirgw-soak-")
    data = os.path.join(work, "data")
    gen = os.path.join(SHARED_BENCH, "gen_contacts.py")
    log(f"generating {contacts} contacts into {data}")
    subprocess.run([sys.executable, gen, "-n", str(contacts), "-o", data, "--seed", str(seed),
                    "--queries", str(max(500, min(5000, contacts)))], check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(data, "contacts.json"), encoding="utf-8") as f:
        people = json.load(f)
    mix = query_mix(data, seed)
    log("starting the Graph emulator")
    emu = EmulatorProcess.start(os.path.join(work, "emulator"), people, page_size=100,
                                extra_args=["--allow-other-phone-types"], timeout=120)
    gw = None
    load = None
    changes = None
    try:
        config = os.path.join(work, "dirgw.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(tenant=json.dumps(emu.tenant_domain), client_id=json.dumps(emu.client_id),
                                  secret=json.dumps(str(emu.secret_file)), base=json.dumps(emu.base_url),
                                  ca=json.dumps(str(emu.ca_bundle)), interval=json.dumps(interval)))
        log("starting dirgw serve (initial import)")
        gw = Gateway(config)
        pid = gw.proc.pid
        log(f"dirgw ready on port {gw.port}; {connections} phones, {slow} slow, {never_read} never reading, "
            f"{duration:g}s")
        load = Load(gw.port, mix, connections, timeout, slow, slow_rate, never_read, think)
        rounds = re.compile(r"delta round: (\d+) added or changed, (\d+) removed")
        rounds_before = gw.count(rounds)
        changes = Changes(emu, gw.port, people["value"], change_every, seed)
        samples: list[tuple[float, int]] = []
        started = time.perf_counter()
        cpu0 = (_cpu(pid), _own_cpu())
        load.start()
        changes.start()
        next_sample = started
        end = started + duration
        while True:
            now = time.perf_counter()
            if now >= next_sample:
                samples.append((round(now - started, 1), rss_kib(pid)))
                next_sample += sample
            if now >= end:
                break
            if gw.proc.poll() is not None:
                load.error("server exited", f"exit status {gw.proc.returncode}")
                break
            load.step(min(end, next_sample), measuring=True)
        samples.append((round(time.perf_counter() - started, 1), rss_kib(pid)))
        elapsed = time.perf_counter() - started
        cpu = {"server_pct": round(100 * (_cpu(pid) - cpu0[0]) / elapsed, 1),
               "client_pct": round(100 * (_own_cpu() - cpu0[1]) / elapsed, 1), "cpus": os.cpu_count()}
        changes.finish(grace=max(20.0, 8 * _seconds(interval)))
        load.step(time.perf_counter() + 0.5, measuring=False)  # slow clients: last bytes
        applied = [m for _, l in gw.lines if (m := rounds.search(l)) and (int(m.group(1)) or int(m.group(2)))]
        report = _report(load, changes, samples, elapsed, warmup, rss_tolerance, connections, duration,
                         gw.count(rounds) - rounds_before, len(applied))
        report["cpu"] = cpu
        report["think_s"] = think
        report["server_alive"] = gw.proc.poll() is None
        if not report["server_alive"]:
            report["ok"] = False
        report["workdir"] = work
        return report
    finally:
        if load is not None:
            load.close()
        if changes is not None and changes.is_alive():
            changes.stop_event.set()
        if gw is not None:
            gw.stop()
        emu.stop()


def _cpu(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0.0
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _seconds(text: str) -> float:
    from gateway.config import parse_duration

    return parse_duration(text)


def _report(load: Load, changes: Changes, samples, elapsed, warmup, tolerance, connections, duration,
            rounds, applied) -> dict:
    all_lat = sorted(x for v in load.latencies.values() for x in v)
    ops = len(all_lat)
    by_kind = {}
    for kind, values in sorted(load.latencies.items()):
        values.sort()
        by_kind[kind] = {"ops": len(values), "p50_ms": round(percentile(values, 0.5) * 1e3, 2),
                         "p99_ms": round(percentile(values, 0.99) * 1e3, 2),
                         "hit_rate": round(load.hits[kind] / len(values), 3) if values else None}
    errors = dict(load.errors)
    if changes.failures:
        errors["sync monitor"] = len(changes.failures)
    if changes.pending:
        errors["changes not visible"] = len(changes.pending)
        changes.failures.append("not visible in LDAP at the end: "
                                + ", ".join(f"{flt} {want}" for flt, want, *_ in changes.pending))
    rss = [kib for _, kib in samples]
    warm = next((kib for t, kib in samples if t >= warmup), rss[-1] if rss else 0)
    growth = (rss[-1] - warm) / warm if warm else 0.0
    delays = sorted(changes.delays)
    report = {
        "connections": connections,
        "duration_s": round(elapsed, 1),
        "ops": ops,
        "ops_s": round(ops / elapsed, 1) if elapsed else 0.0,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "error_samples": (load.error_samples + changes.failures)[:20],
        "p50_ms": round(percentile(all_lat, 0.5) * 1e3, 2),
        "p90_ms": round(percentile(all_lat, 0.9) * 1e3, 2),
        "p99_ms": round(percentile(all_lat, 0.99) * 1e3, 2),
        "max_ms": round(all_lat[-1] * 1e3, 2) if all_lat else None,
        "by_kind": by_kind,
        "result_codes": {str(k): v for k, v in sorted(load.codes.items())},
        "rss_kib": {"first": rss[0] if rss else None, "after_warmup": warm, "max": max(rss) if rss else None,
                    "last": rss[-1] if rss else None, "growth_after_warmup": round(growth, 4),
                    "warmup_s": warmup, "samples": samples},
        "sync": {"delta_rounds": rounds, "rounds_with_changes": applied, "changes_injected": changes.injected,
                 "changes_seen": len(delays), "visible_p50_s": round(percentile(delays, 0.5), 2) if delays else None,
                 "visible_max_s": round(delays[-1], 2) if delays else None},
        "slow_clients": {"count": len(load.slow), "bytes_sent": sum(s["sent"] for s in load.slow),
                         "answered": sum(s["answered"] for s in load.slow),
                         "closed_by_server": sum(s["closed"] for s in load.slow)},
        "never_reading_clients": {"count": len(load.never), "kib_sent": sum(n["sent"] for n in load.never) // 1024,
                                  "closed_by_server": sum(n["closed"] for n in load.never)},
    }
    report["rss_ok"] = growth <= tolerance
    report["ok"] = report["errors"] == 0 and report["rss_ok"] and ops > 0 and applied > 0
    return report


def format_report(r: dict) -> str:
    rss = r["rss_kib"]
    lines = [
        f"soak: {r['connections']} connections{' (think ' + str(r['think_s']) + ' s)' if r.get('think_s') else ''}, "
        f"{r['duration_s']}s: {r['ops']} searches ({r['ops_s']}/s), errors {r['errors']} {r['error_kinds'] or ''}",
        f"  CPU: server {r['cpu']['server_pct']}%, load generator {r['cpu']['client_pct']}% "
        f"(of one core; {r['cpu']['cpus']} cores)",
        f"  latency p50 {r['p50_ms']} ms, p90 {r['p90_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms; "
        f"result codes {r['result_codes']}",
    ]
    for kind, k in r["by_kind"].items():
        lines.append(f"    {kind:9} {k['ops']:8} ops  p50 {k['p50_ms']} ms  p99 {k['p99_ms']} ms  hits {k['hit_rate']}")
    lines += [
        f"  RSS KiB first {rss['first']}, after {rss['warmup_s']:g}s warm-up {rss['after_warmup']}, max {rss['max']}, "
        f"last {rss['last']} ({rss['growth_after_warmup'] * 100:+.1f}% after warm-up; "
        f"{'ok' if r['rss_ok'] else 'GROWS'})",
        "  RSS over time: " + " ".join(f"{t:g}s={kib // 1024}M" for t, kib in rss["samples"]),
        f"  sync: {r['sync']['delta_rounds']} delta rounds ({r['sync']['rounds_with_changes']} with changes), "
        f"{r['sync']['changes_injected']} changes injected, {r['sync']['changes_seen']} seen in LDAP "
        f"(p50 {r['sync']['visible_p50_s']} s, max {r['sync']['visible_max_s']} s)",
        f"  slow clients: {r['slow_clients']}; never reading: {r['never_reading_clients']}",
    ]
    if r["error_samples"]:
        lines.append("  first errors: " + "; ".join(r["error_samples"][:5]))
    lines.append("  result: " + ("OK" if r["ok"] else "FAILED"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    p.add_argument("--connections", type=int, default=200, help="concurrent phones (default 200)")
    p.add_argument("--contacts", type=int, default=2000, help="generated contacts (default 2000)")
    p.add_argument("--interval", default="2s", help="the m365 source's delta interval (default 2s)")
    p.add_argument("--change-every", type=float, default=3.0, help="seconds between contact changes (default 3)")
    p.add_argument("--sample", type=float, default=2.0, help="seconds between RSS samples (default 2)")
    p.add_argument("--warmup", type=float, default=None, help="seconds before the RSS reference (default "
                   "duration/5, at most 10)")
    p.add_argument("--timeout", type=float, default=5.0, help="an answer slower than this is an error (default 5)")
    p.add_argument("--slow", type=int, default=20, help="clients sending a search a byte at a time (default 20)")
    p.add_argument("--slow-rate", type=float, default=1.0, help="seconds between their bytes (default 1)")
    p.add_argument("--never-read", type=int, default=0, help="clients that pipeline and never read (default 0)")
    p.add_argument("--think", type=float, default=0.0, help="seconds a phone waits between an answer and its next "
                   "query, +-50%% (default 0: closed loop, as fast as the server answers)")
    p.add_argument("--rss-tolerance", type=float, default=0.10, help="allowed RSS growth after warm-up (0.10)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH")
    args = p.parse_args(argv)
    report = run(duration=args.duration, connections=args.connections, contacts=args.contacts,
                 interval=args.interval, change_every=args.change_every, sample=args.sample, warmup=args.warmup,
                 timeout=args.timeout, slow=args.slow, slow_rate=args.slow_rate, never_read=args.never_read,
                 think=args.think, seed=args.seed, rss_tolerance=args.rss_tolerance)
    print(format_report(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Hostile clients against a real ``dirgw serve`` (issue 10): fuzzing, slow clients, limits.

The fuzz test sends seeded random and mutated BER for every LDAP operation over
several connections for a bounded time.  Each case must be answered or its
connection closed before a deadline; a correct client on other connections
keeps getting the right answer throughout, the server's RSS stays bounded and
its log shows no traceback.

Reproduce a run: ``DIRGW_FUZZ_SEED=<seed> pytest tests/test_fuzz_ldap.py -s``;
a single case: ``tests.fuzzing.case_for(seed, worker, index)``.  Other knobs:
``DIRGW_FUZZ_SECONDS`` (default 12), ``DIRGW_FUZZ_WORKERS`` (default 6),
``DIRGW_FUZZ_REPORT`` (write the case counts as JSON to this path).

Slow clients are simulated structurally, not with sleeps: hundreds of
connections stopped halfway through a request, and connections that pipeline
requests and never read.
"""

from __future__ import annotations

import collections
import json
import os
import random
import select
import socket
import threading
import time

import pytest

from gateway.ldap import ber
from tests import fuzzing as F
from tests.support import CONFIG, ServerProcess, contact, start_server, write_contacts

BASE = "dc=example,dc=com"
SEED = int(os.environ.get("DIRGW_FUZZ_SEED", "20240610"))
SECONDS = float(os.environ.get("DIRGW_FUZZ_SECONDS", "12"))
WORKERS = int(os.environ.get("DIRGW_FUZZ_WORKERS", "6"))
CASE_DEADLINE = 10.0  # seconds for one case to be answered or closed
CORRECT_DEADLINE = 3.0  # seconds for the correct client's bind + search
RSS_BUDGET_KIB = 100 * 1024


# --------------------------------------------------------------------------
# Helpers


def directory_contacts(n: int = 300) -> list[dict]:
    """``n`` contacts (ids c-0..c-(n-1)) plus three "Kontrollmann" the correct client looks for."""
    rng = random.Random(7)
    given = ["Anna", "Jürgen", "Zoë", "Hans", "Łukasz", "Maria", "Peter", "Fatma", "Olaf", "Ines"]
    sur = ["Meyer", "Müller", "Öztürk", "Meier", "Dvořák", "Schmidt", "Schneider", "Fischer", "Weber", "Wagner"]
    out = []
    for i in range(n):
        out.append(contact(
            f"c-{i}", given=rng.choice(given), surname=rng.choice(sur), company=rng.choice(["Köhler GmbH", "", "ACME"]),
            phones=[("business", f"+49 89 {rng.randint(1000, 9999)}-{rng.randint(10, 999)}"),
                    ("mobile", f"0171 {rng.randint(1000000, 9999999)}")],
            mail=f"p{i}@example.com",
        ))
    for i in range(3):
        out.append(contact(f"k-{i}", given=f"Kurt{i}", surname="Kontrollmann", phones=[("business", f"+49 89 555-{i}")]))
    return out


KONTROLL = sorted(f"uid=demo.k-{i},{BASE}" for i in range(3))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class LogDrain(threading.Thread):
    """Reads the server's output (stdout+stderr) so its log writes never block on a full pipe."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.fd = server.proc.stdout.fileno()
        self.lines: collections.deque[str] = collections.deque(maxlen=5000)
        self.count = 0
        self.problems: list[str] = []  # tracebacks and unhandled errors
        self._partial = ""
        self._context: collections.deque[str] = collections.deque(maxlen=30)
        self.start()

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            text = self._partial + chunk.decode("utf-8", "replace")
            *lines, self._partial = text.split("\n")
            for line in lines:
                self.count += 1
                self.lines.append(line)
                self._context.append(line)
                if "Traceback" in line or "Unhandled Error" in line or "Unhandled error" in line:
                    if len(self.problems) < 20:
                        self.problems.append(line)
                elif self.problems and len(self.problems) < 200 and line.startswith((" ", "\t")):
                    self.problems.append(line)

    def matching(self, *words: str) -> int:
        return sum(1 for line in self.lines if all(w in line for w in words))


def correct_check(port: int, session: F.Session | None = None, deadline: float = CORRECT_DEADLINE) -> float:
    """Bind + search with a known answer on a fresh (or the given) connection: seconds taken."""
    started = time.monotonic()
    own = session is None
    s = session or F.Session(port, timeout=deadline)
    try:
        if own:
            assert s.bind() == 0
        code, dns = s.search("(|(sn=kontrollmann)(cn=kurt*))", ["cn", "telephoneNumber"])
        assert code == 0 and sorted(dns) == KONTROLL, (code, dns)
        code, dns = s.search("(telephoneNumber=+4989555-1)")
        assert code == 0 and dns == [f"uid=demo.k-1,{BASE}"], (code, dns)
    finally:
        if own:
            s.close()
    return time.monotonic() - started


def server_with(tmp_path, contacts, **ldap_options) -> ServerProcess:
    """``dirgw serve`` like ``start_server``, with extra [ldap] keys (e.g. limits)."""
    contacts_path = tmp_path / "contacts.json"
    write_contacts(contacts_path, contacts)
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in ldap_options.items())
    text = CONFIG.format(size_limit=1000, anonymous="true", contacts=contacts_path.name)
    text = text.replace("[ldap]\n", "[ldap]\n" + extra, 1)
    config_path = tmp_path / "dirgw.toml"
    config_path.write_text(text)
    return ServerProcess(str(config_path))


def stop(server: ServerProcess, grace: float = 2.0) -> None:
    """Terminate; kill after ``grace`` seconds (a server still chewing on a flood need not finish)."""
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(grace)
        except Exception:  # noqa: BLE001 (TimeoutExpired)
            server.proc.kill()
            server.proc.wait()


@pytest.fixture
def server(tmp_path):
    proc = start_server(tmp_path, directory_contacts())
    drain = LogDrain(proc)
    proc.drain = drain
    yield proc
    stop(proc)


# --------------------------------------------------------------------------
# The fuzz test


class Worker(threading.Thread):
    """One fuzzing connection: cases in sequence, reconnecting after each close."""

    def __init__(self, index: int, port: int, stop: threading.Event, failures: list) -> None:
        super().__init__(daemon=True)
        self.index = index
        self.port = port
        self.stop_event = stop
        self.failures = failures
        self.rng = F.worker_rng(SEED, index)
        self.cases = 0
        self.counts: collections.Counter = collections.Counter()  # (category, result)
        self.connections = 0

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        return sock

    def run(self) -> None:
        sock = None
        try:
            while not self.stop_event.is_set() and len(self.failures) < 20:
                case = F.make_case(self.rng)
                index = self.cases
                self.cases += 1
                if sock is None:
                    sock = self._connect()
                outcome = F.exchange(sock, case, time.monotonic() + CASE_DEADLINE)
                self.counts[(case.category, outcome.result)] += 1
                if outcome.error:
                    self.failures.append(
                        f"seed {SEED} worker {self.index} case {index} [{case.category}] {case.note}: "
                        f"{outcome.error}; expect={case.expect} framing={outcome.framing}; "
                        f"{len(case.data)} bytes {case.data[:48].hex()}"
                    )
                if outcome.result != "answered":
                    sock.close()
                    sock = None
        except Exception as e:  # noqa: BLE001 (a broken worker is a failure, not a hang)
            self.failures.append(f"seed {SEED} worker {self.index} case {self.cases - 1}: {type(e).__name__}: {e}")
        finally:
            if sock is not None:
                sock.close()


def test_fuzz(server):
    """Seeded random and mutated BER for every operation: answered or closed, never a hang or a
    crash; a correct client keeps its answers; RSS stays within +100 MB; no traceback logged."""
    pid = server.proc.pid
    correct_check(server.port)
    baseline = rss_kib(pid)
    keeper = F.Session(server.port, timeout=CORRECT_DEADLINE)  # a long-lived correct connection
    assert keeper.bind() == 0
    stop = threading.Event()
    failures: list[str] = []
    workers = [Worker(i, server.port, stop, failures) for i in range(WORKERS)]
    for w in workers:
        w.start()
    rss = [baseline]
    checks = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < SECONDS and len(failures) < 20:
            stop.wait(0.25)
            assert server.proc.poll() is None, f"seed {SEED}: the server exited with {server.proc.returncode}"
            try:
                checks.append(correct_check(server.port))
                checks.append(correct_check(server.port, keeper))
            except (AssertionError, OSError, TimeoutError, F.Closed) as e:
                failures.append(f"seed {SEED}: the correct client failed after {time.monotonic() - started:.1f}s: "
                                f"{type(e).__name__}: {e}")
            rss.append(rss_kib(pid))
    finally:
        stop.set()
        for w in workers:
            w.join(CASE_DEADLINE + 5)
    keeper.close()
    hung = [w.index for w in workers if w.is_alive()]
    correct_check(server.port)
    rss.append(rss_kib(pid))
    assert server.proc.poll() is None, f"seed {SEED}: the server exited with {server.proc.returncode}"

    counts: dict[str, dict[str, int]] = {}
    for w in workers:
        for (category, result), n in w.counts.items():
            c = counts.setdefault(category, {"cases": 0, "answered": 0, "closed": 0, "hang": 0})
            c["cases"] += n
            c[result] += n
    total = sum(c["cases"] for c in counts.values())
    report = {
        "seed": SEED,
        "seconds": round(time.monotonic() - started, 1),
        "workers": WORKERS,
        "cases": total,
        "connections": sum(w.connections for w in workers),
        "categories": dict(sorted(counts.items())),
        "correct_client": {"checks": len(checks), "max_ms": round(max(checks) * 1000, 1) if checks else None},
        "rss_kib": {"baseline": baseline, "max": max(rss), "last": rss[-1]},
        "server_log_lines": server.drain.count,
    }
    print(f"\nfuzz: seed {SEED}, {total} cases in {report['seconds']}s on {WORKERS} workers, "
          f"{report['connections']} connections; correct client {len(checks)} checks, max "
          f"{report['correct_client']['max_ms']} ms; RSS {baseline} -> max {max(rss)} KiB")
    for category, c in sorted(counts.items()):
        print(f"  {category:28} {c['cases']:6}  answered {c['answered']:6}  closed {c['closed']:6}")
    if os.environ.get("DIRGW_FUZZ_REPORT"):
        with open(os.environ["DIRGW_FUZZ_REPORT"], "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)

    assert not hung, f"seed {SEED}: workers {hung} did not finish"
    assert not failures, f"seed {SEED} (DIRGW_FUZZ_SEED={SEED} to reproduce):\n" + "\n".join(failures[:20])
    assert not server.drain.problems, f"seed {SEED}: the server logged errors:\n" + "\n".join(server.drain.problems[:60])
    assert max(rss) - baseline < RSS_BUDGET_KIB, f"seed {SEED}: RSS grew from {baseline} to {max(rss)} KiB"
    assert total >= 200, f"seed {SEED}: only {total} cases ran"
    missing = [name for name in F.CATEGORIES if not any(k.startswith(name) for k in counts)]
    assert not missing, f"seed {SEED}: categories never generated: {missing}"


# --------------------------------------------------------------------------
# Limits that exist: the PDU size, filter depth and items


def test_refused_before_allocation(server):
    """A 4 GB length field is refused from its header (Notice of Disconnection, close), at once."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"\x30\x84\xff\xff\xff\xff\x02\x01\x01")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    (notice,) = F.Reader().feed(data)
    assert (notice.message_id, notice.tag, notice.code) == (0, ber.OP_EXTENDED_RESPONSE, 2)
    assert ber.OID_NOTICE_OF_DISCONNECTION.encode() in notice.raw
    correct_check(server.port)


def test_filter_depth_and_items(server):
    """Too deep or too many items: adminLimitExceeded (11) on the search; the connection stays usable."""
    from gateway.ldap.filter import Equality, Or

    deep = F._nested(random.Random(1), 20000)
    wide = Or(tuple(Equality("cn", str(i)) for i in range(5000)))
    with F.Session(server.port) as s:
        for flt in (deep, wide):
            mid = s.send(F.search_op(BASE, filter_ber=F.encode_filter(flt)))
            (done,) = s._until(mid, ber.OP_SEARCH_RESULT_DONE)
            assert done.code == 11
        correct_check(server.port, s)


# --------------------------------------------------------------------------
# Slow clients


HALF_REQUESTS = [
    b"\x30",                                          # one byte
    b"\x30\x84",                                      # a length that never ends
    b"\x30\x83\x03\xff\xf0",                          # 262 KB announced (just under max_pdu), nothing sent
    b"\x30\x82\x10\x00\x02\x01\x05\x63\x82\x0f\xf9",  # a 4 KB search, header only
]


def _half_request(i: int) -> bytes:
    head = HALF_REQUESTS[i % len(HALF_REQUESTS)]
    if i % 5 == 4:  # half of a real search request
        full = F.message(i + 1, F.search_op(BASE, filter_ber=F.encode_filter(F._nested(random.Random(i), 50))))
        return full[: len(full) // 2]
    return head


def test_half_sent_requests_do_not_block(server):
    """200 connections stopped halfway through a request: a correct client is answered quickly and
    the server's memory does not move."""
    pid = server.proc.pid
    correct_check(server.port)
    baseline = rss_kib(pid)
    socks = []
    try:
        for i in range(200):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.sendall(_half_request(i))
            socks.append(s)
            if i % 40 == 39:
                # let the server's accept queue (listen backlog 50) drain: faster than a SYN retry
                correct_check(server.port)
        times = [correct_check(server.port) for _ in range(20)]
        assert max(times) < 1.0, times
        assert rss_kib(pid) - baseline < 50 * 1024
    finally:
        for s in socks:
            s.close()
    correct_check(server.port)


def _flood(port: int, pid: int, baseline: int, connections: int = 10, budget: float = 4.0,
           stall: float = 0.3, rss_cap_kib: int = 300 * 1024) -> dict:
    """``connections`` clients pipeline searches that return every entry and never read.

    Stops when every connection's writes have stalled for ``stall`` seconds (the server pushes
    back), or after ``budget`` seconds, or as soon as the server's RSS passes baseline +
    ``rss_cap_kib`` (so a server without back-pressure fails fast instead of eating the machine).
    Meanwhile a correct client on its own connection searches every 0.2 s.
    """
    request = b"".join(F.message(i % 100000 + 1, F.search_op(BASE, filter_ber=F.tlv(0x87, b"objectClass")))
                       for i in range(1000))  # ~50 KB of requests, each answered with ~100 KB
    socks = []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setblocking(False)
        socks.append(s)
    sent = [0] * connections
    closed = [False] * connections
    started = time.monotonic()
    last_progress = started
    latencies = []
    next_check = started
    max_rss = baseline
    reason = "budget"
    try:
        while True:
            now = time.monotonic()
            if now - started > budget:
                break
            if now - last_progress > stall:
                reason = "stalled"
                break
            rss = rss_kib(pid)
            max_rss = max(max_rss, rss)
            if rss - baseline > rss_cap_kib:
                reason = "rss cap"
                break
            if now >= next_check:
                try:
                    latencies.append(correct_check(port, deadline=1.5))
                except (AssertionError, OSError, TimeoutError, F.Closed) as e:
                    latencies.append(float("inf"))
                    reason = f"correct client failed: {type(e).__name__}: {e}"
                    break
                next_check = time.monotonic() + 0.2
            live = [s for s, c in zip(socks, closed) if not c]
            if not live:
                reason = "all closed"
                break
            _, writable, _ = select.select([], live, [], 0.05)
            for s in writable:
                i = socks.index(s)
                try:
                    n = s.send(request)
                except BlockingIOError:
                    continue
                except OSError:
                    closed[i] = True
                    last_progress = time.monotonic()
                    continue
                if n:
                    sent[i] += n
                    last_progress = time.monotonic()
        latencies.append(correct_check(port) if reason in ("stalled", "budget", "all closed") else float("inf"))
        return {"reason": reason, "sent_kib": sum(sent) // 1024, "closed": sum(closed), "max_rss": max_rss,
                "rss_after": rss_kib(pid), "max_latency": max(latencies), "checks": len(latencies)}
    finally:
        for s in socks:
            s.close()


def test_pipelines_never_read_are_bounded(server):
    """10 clients pipeline searches and never read the answers: the server stops reading from
    them (or closes them) instead of buffering every answer, keeps answering a correct client
    within 1 s, and its RSS grows by less than 100 MB."""
    pid = server.proc.pid
    correct_check(server.port)
    baseline = rss_kib(pid)
    result = _flood(server.port, pid, baseline)
    print(f"\nflood: {result}")
    assert result["reason"] in ("stalled", "all closed", "budget"), result
    assert result["max_latency"] < 1.0, result
    assert result["max_rss"] - baseline < 100 * 1024, result
    correct_check(server.port)


# --------------------------------------------------------------------------
# Connection limits and the idle timeout (configured small to test them quickly)


def _closed_promptly(sock: socket.socket, timeout: float) -> bool:
    """The server closes ``sock`` within ``timeout`` (a Notice of Disconnection before is fine)."""
    sock.settimeout(timeout)
    reader = F.Reader()
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
            for r in reader.feed(data):
                if r.message_id != 0:
                    return False  # an answer to something: not a refusal
    except (ConnectionError, OSError) as e:
        return not isinstance(e, socket.timeout)


def _usable(port: int, source: str) -> bool:
    try:
        with F.Session(port, source=source, timeout=3) as s:
            return s.bind() == 0 and s.search("(sn=kontrollmann)")[1] == KONTROLL
    except (OSError, TimeoutError, F.Closed):
        return False


def test_connection_limits(tmp_path):
    """Beyond max_connections_per_address (per client IP) or max_connections (in total) a new
    connection is closed at once (optionally after a Notice of Disconnection, unavailable/busy);
    the existing ones keep working and a freed slot can be used again."""
    server = server_with(tmp_path, directory_contacts(50), max_connections=12, max_connections_per_address=5)
    LogDrain(server)
    held = []
    try:
        for _ in range(5):
            held.append(F.Session(server.port, source="127.0.0.2"))
        assert all(s.bind() == 0 for s in held)
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=("127.0.0.2", 0))
        assert _closed_promptly(extra, 2.0), "the 6th connection from 127.0.0.2 was not closed"
        extra.close()
        assert _usable(server.port, "127.0.0.3")  # another address is not affected
        for source in ("127.0.0.3", "127.0.0.4"):
            for _ in range(5 if source == "127.0.0.3" else 2):
                held.append(F.Session(server.port, source=source))
        assert len(held) == 12
        assert all(s.bind() == 0 for s in held)
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=("127.0.0.5", 0))
        assert _closed_promptly(extra, 2.0), "connection 13 (max_connections 12) was not closed"
        extra.close()
        held.pop().close()
        held.pop(0).close()
        deadline = time.monotonic() + 3
        while not (_usable(server.port, "127.0.0.2") and _usable(server.port, "127.0.0.5")):
            assert time.monotonic() < deadline, "freed slots were not reused"
        assert all(s.search("(sn=kontrollmann)")[1] == KONTROLL for s in held)
    finally:
        for s in held:
            s.close()
        stop(server)


def test_idle_timeout(tmp_path):
    """idle_timeout closes a connection that sends nothing, and one stuck inside a request, after
    that time (optionally after a Notice of Disconnection); an active connection is not closed."""
    server = server_with(tmp_path, directory_contacts(50), idle_timeout="200ms")
    LogDrain(server)
    try:
        idle = F.Session(server.port)
        assert idle.bind() == 0
        stuck = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        stuck.sendall(b"\x30\x82\x01\x00\x02")
        started = time.monotonic()
        assert _closed_promptly(stuck, 3.0), "a connection stuck inside a request was not closed"
        assert _closed_promptly(idle.sock, 3.0), "an idle connection was not closed"
        took = time.monotonic() - started
        assert took >= 0.1, f"closed after {took:.2f}s, before the idle timeout"
        with F.Session(server.port) as active:  # a fresh connection works normally
            assert active.bind() == 0
            correct_check(server.port, active)
    finally:
        stop(server)


def test_message_id_zero(server):
    """messageID 0 is reserved for unsolicited notifications (RFC 4511 4.1.1.1): a request that
    carries it, whatever the operation, gets a Notice of Disconnection (protocolError) and a close."""
    for op in (F.bind_op(3), F.search_op(BASE), F.del_op(BASE), F.unbind_op()):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(F.message(0, op) + F.probe())
            data = b""
            sock.settimeout(3)
            try:
                while chunk := sock.recv(65536):
                    data += chunk
            except TimeoutError:
                pytest.fail(f"op 0x{op[0]:02x} with messageID 0: the connection stayed open")
        responses = F.Reader().feed(data)
        assert [(r.message_id, r.tag, r.code) for r in responses] == [(0, ber.OP_EXTENDED_RESPONSE, 2)], op[0]

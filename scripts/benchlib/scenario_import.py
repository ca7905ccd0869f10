"""Initial import of N contacts from the Graph emulator against its floor (issue 4, 9).

The emulator answers every delta page after ``latency`` seconds; the floor is pages x latency.
The import runs twice against the same emulator, each time into a fresh gateway (pinned to CPU 0;
the lookups and the emulator, which plays Microsoft 365, to CPU 1):

1. With caller-ID lookups at a fixed, realistic rate (``rate``, default 200/s on 8 connections,
   open loop: a lookup's latency counts from when it was due).  Issue 9's targets are measured
   here: ``import_s`` <= 1.1 x ``floor_s``, and ``callerid_p99_during_ms`` <= 2 x
   ``callerid_p99_idle_ms`` (the same rate on the idle gateway afterwards).  The lookups run for
   the whole import.  200/s is generous for caller ID: one lookup per ringing phone, i.e. a site
   taking 20 calls a second into 10-phone hunt groups.

   Latency from when a lookup was due includes the client's own delays: sending late (``late_*``:
   the emulator shares its core) and reading the answer late.  ``*_wire_*`` counts from the
   send to when the kernel queued the answer on the client's socket (SO_TIMESTAMPNS), which is
   the gateway's part alone; both are reported.
2. With ldapload saturating the gateway (8 connections, closed loop, as phones never do), as the
   issue first measured it (``saturated_*``).  A saturating load takes all the CPU the import
   leaves: the import then competes with it for the one core, and every lookup waits for the
   import's slices, so these numbers show throughput under contention, not the targets.

At a low rate the idle p99 is higher than under saturation (1.5-1.7 ms against 0.35 ms on the
2-vCPU VM of November 2026): a lookup that finds the server's CPU idle pays for waking it up.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

from common import DATA, PY, SHARED_BENCH, Gateway, caller_id_filters, dataset, ldapload, log, pin, taskset

from gateway.testing.process import EmulatorProcess

RATE = 200.0

CONFIG = """
[ldap]
listen = ["tcp:0:interface=127.0.0.1"]
base_dn = "dc=example,dc=com"
[numbers]
country = "DE"
[[sources]]
name = "m365"
type = "m365_mail_contacts"
tenant_id = "{tenant}"
client_id = "{client_id}"
client_secret_file = "{secret}"
authority_host = "{base}"
graph_url = "{base}"
ca_bundle = "{ca}"
interval = "1h"
"""


def run(n: int, latency: float, page_size: int = 100, rate: float = RATE) -> dict:
    data = dataset(n)
    filters = caller_id_filters(data)
    work = tempfile.mkdtemp(prefix="import-", dir=DATA)
    with open(os.path.join(data, "contacts.json"), encoding="utf-8") as f:
        contacts = json.load(f)
    log(f"import: starting the emulator with {n} contacts, {page_size} per page, {latency * 1000:.0f} ms per page")
    emu = EmulatorProcess.start(os.path.join(work, "emulator"), contacts, page_size=page_size, latency=latency,
                                extra_args=["--allow-other-phone-types"], timeout=300)
    pin(emu.process.pid, "1")  # Microsoft 365's part: off the gateway's core, with the lookups
    # ... and behind them on that core: Microsoft's servers do not take the phones' CPU, and a
    # lookup delayed in the client while the emulator builds a page is not the gateway's latency.
    # SCHED_IDLE, not nice 19: the scheduler lets a nice 19 task finish its slice (up to a few ms)
    # before a woken client runs, and pre-empts a SCHED_IDLE one at once.
    os.sched_setscheduler(emu.process.pid, os.SCHED_IDLE, os.sched_param(0))
    pages = -(-n // page_size)
    floor = pages * latency
    try:
        config = os.path.join(work, "dirgw.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(tenant=emu.tenant_domain, client_id=emu.client_id, secret=emu.secret_file,
                                  base=emu.base_url, ca=emu.ca_bundle))
        log(f"import: with {rate:g} caller-ID lookups/s")
        took, during, idle = _import(config, floor, lambda gw: PacedLookups(
            gw.port, filters, rate, duration=floor * 10 + 120, warmup=1.0, server_pid=gw.proc.pid),
            lambda gw: paced_lookups(gw.port, filters, rate, duration=5.0, warmup=1.0, server_pid=gw.proc.pid))
        log("import: with ldapload saturating the gateway")
        sat_took, sat_during, sat_idle = _import(config, floor, lambda gw: _Saturating(gw, filters, floor),
                                                 lambda gw: ldapload(gw.port, filters, conns=8, duration=5.0,
                                                                     warmup=1.0, server_pid=gw.proc.pid))
    finally:
        emu.stop()
    p99_during, p99_idle = during.get("p99_ms"), idle.get("p99_ms")
    return {
        "contacts": n, "pages": pages, "latency_ms": latency * 1000, "floor_s": round(floor, 2),
        "import_s": round(took, 2), "ratio": round(took / floor, 3) if floor else None,
        "callerid_rate": rate,
        "callerid_p99_during_ms": p99_during, "callerid_p99_idle_ms": p99_idle,
        "callerid_p99_ratio": round(p99_during / p99_idle, 2) if p99_during and p99_idle else None,
        "callerid_p50_during_ms": during.get("p50_ms"), "callerid_max_during_ms": during.get("max_ms"),
        "callerid_p99_wire_during_ms": during.get("p99_wire_ms"), "callerid_p99_wire_idle_ms": idle.get("p99_wire_ms"),
        "callerid_p99_wire_ratio": (round(during["p99_wire_ms"] / idle["p99_wire_ms"], 2)
                                    if during.get("p99_wire_ms") and idle.get("p99_wire_ms") else None),
        "callerid_late_p99_during_ms": during.get("late_p99_ms"),
        "server_cpu_during_pct": during.get("server_cpu_pct"),
        "saturated_import_s": round(sat_took, 2), "saturated_ratio": round(sat_took / floor, 3) if floor else None,
        "saturated_p99_during_ms": sat_during.get("p99_ms"), "saturated_p99_idle_ms": sat_idle.get("p99_ms"),
        "saturated_ops_during": sat_during.get("ops_s"), "saturated_ops_idle": sat_idle.get("ops_s"),
        "hits_per_op_idle": sat_idle.get("entries_per_op"),
    }


class _Saturating:
    """ldapload on 8 connections, closed loop, for the first 60% of the floor (as issue 9 measured)."""

    def __init__(self, gw: Gateway, filters: str, floor: float) -> None:
        self._out: dict = {}
        self._thread = threading.Thread(target=lambda: self._out.update(
            ldapload(gw.port, filters, conns=8, duration=max(2.0, floor * 0.6), warmup=1.0, server_pid=gw.proc.pid)))
        self._thread.start()

    def result(self) -> dict:
        self._thread.join()
        return self._out


def _import(config: str, floor: float, start_load, idle_load) -> tuple[float, dict, dict]:
    """One import into a fresh gateway under ``start_load(gw)``; then ``idle_load(gw)``."""
    gw = Gateway(config)
    try:
        start_line = gw.wait_for(re.compile("full import started"), 60)
        started = [t for t, l in gw.lines if l == start_line][0]
        load = start_load(gw)
        done_line = gw.wait_for(re.compile("full import done"), floor * 10 + 120)
        finished = [t for t, l in gw.lines if l == done_line][0]
        during = load.result()
        idle = idle_load(gw)
    finally:
        gw.stop()
    return finished - started, during, idle


ATTRS = ["cn", "sn", "givenName", "displayName", "o", "telephoneNumber", "mobile", "homePhone"]


class PacedLookups:
    """Caller-ID lookups at a fixed rate (open loop) in a child process on ``cpus``, like ldapload;
    ``result()`` ends them early (after ``warmup`` + ``duration`` at the latest) and reads them."""

    def __init__(self, port: int, filters: str, rate: float, conns: int = 8, duration: float = 10.0,
                 warmup: float = 1.0, cpus: str | None = "1", server_pid: int | None = None) -> None:
        cmd = taskset(cpus) + [PY, os.path.abspath(__file__), "--paced", str(port), filters, str(rate), str(conns),
                               str(duration), str(warmup), str(server_pid or 0)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self, stop: bool = True) -> dict:
        if stop and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        stdout, stderr = self.proc.communicate(timeout=120)
        if self.proc.returncode != 0:
            raise RuntimeError(f"paced lookups failed (exit {self.proc.returncode}): "
                               f"{(stderr or stdout).strip()[-2000:]}")
        return json.loads(stdout.strip().splitlines()[-1])


def paced_lookups(port: int, filters: str, rate: float, **kwargs) -> dict:
    """``PacedLookups`` run to their end."""
    return PacedLookups(port, filters, rate, **kwargs).result(stop=False)


def _paced_main(port: int, filters_path: str, rate: float, nconns: int, duration: float, warmup: float,
                server_pid: int) -> dict:
    """Send one lookup every 1/rate seconds, round-robin over ``nconns`` connections (pipelined when
    a connection still waits for an answer); a lookup's latency counts from when it was due, so a
    stalled server is not hidden by requests that were sent late.  Also measured: from the send to
    when the kernel queued the answer on the socket (``wire``), and how late the sends were."""
    import select
    import socket
    import struct

    SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux

    sys.path.insert(0, SHARED_BENCH)
    import ldapload as ll

    searches = [ll.search_op("dc=example,dc=com", "sub", ll.encode_filter(f), ATTRS, 50, 0, False)
                for f in ll.load_filters(filters_path)]
    socks, bufs, pending = [], {}, {}
    for _ in range(nconns):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(ll.message(1, ll.BIND_OP))
        s.recv(1 << 16)  # the BindResponse (anonymous bind: one small message)
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        socks.append(s)
        bufs[s.fileno()] = b""
        pending[s.fileno()] = {}
    fds = [s.fileno() for s in socks]
    by_fd = {s.fileno(): s for s in socks}
    ancillary = socket.CMSG_SPACE(16)
    perf = time.perf_counter
    interval = 1.0 / rate
    start = perf()
    measure_from, end = start + warmup, start + warmup + duration
    due, sent, msgid = start, 0, 1
    lat: list[float] = []  # from when due to when read
    lat_wire: list[float] = []  # from the send to when the answer reached the socket
    late: list[float] = []  # from when due to the send
    entries = 0
    cpu0 = None
    stop = []
    signal.signal(signal.SIGINT, lambda signum, frame: stop.append(perf()))
    while True:
        now = perf()
        if stop and end > stop[0]:
            end = max(measure_from, stop[0])  # told to stop: the answers still due are awaited
        if cpu0 is None and now >= measure_from:
            cpu0 = ll.proc_cpu_seconds(server_pid) if server_pid else 0.0
        while due <= now and due < end:
            s = socks[sent % nconns]
            msgid = msgid % 2_000_000_000 + 1
            pending[s.fileno()][msgid] = (due, time.time())  # wall clock, as the kernel's timestamps
            if due >= measure_from:
                late.append(perf() - due)
            s.sendall(ll.message(msgid, searches[sent % len(searches)]))
            sent += 1
            due += interval
        if due >= end and not any(pending.values()):
            break
        # select, not epoll: epoll's timeout is in whole milliseconds (rounded up), which sent
        # lookups up to 1 ms after they were due, and that wait was counted as the server's
        ready, _, _ = select.select(fds, [], [], max(0.0, min(due, end + 5) - perf()))
        for fd in ready:
            chunk, cmsgs, _, _ = by_fd[fd].recvmsg(1 << 18, ancillary)
            tnow = perf()
            data = bufs[fd] + chunk
            arrived = None  # when the kernel queued the last of these bytes on the socket
            for level, kind, value in cmsgs:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = struct.unpack("qq", value[:16])
                    arrived = sec + nsec * 1e-9
            pos = 0
            while len(data) - pos >= 2:
                b1 = data[pos + 1]
                if b1 < 0x80:
                    p, end_msg = pos + 2, pos + 2 + b1
                else:
                    p = pos + 2 + (b1 & 0x7F)
                    if len(data) < p:
                        break
                    end_msg = p + int.from_bytes(data[pos + 2:p], "big")
                if end_msg > len(data):
                    break
                il = data[p + 1]
                tag = data[p + 2 + il]
                if tag == 0x64:
                    entries += 1
                elif tag == 0x65:
                    times = pending[fd].pop(int.from_bytes(data[p + 2:p + 2 + il], "big"), None)
                    if times is not None and times[0] >= measure_from:
                        lat.append(tnow - times[0])
                        if arrived is not None:
                            lat_wire.append(arrived - times[1])
                pos = end_msg
            bufs[fd] = data[pos:]
        if perf() > end + 5:
            break  # answers overdue by 5 s: count what came
    duration = max(1e-6, end - measure_from)
    server_cpu = (ll.proc_cpu_seconds(server_pid) - cpu0) if server_pid and cpu0 is not None else None
    for s in socks:
        s.close()
    for values in (lat, lat_wire, late):
        values.sort()

    def ms(values: list[float], q: float) -> float | None:
        return round(ll.percentile(values, q) * 1e3, 3) if values else None

    return {"rate": rate, "conns": nconns, "ops": len(lat), "ops_s": round(len(lat) / duration, 1),
            "p50_ms": ms(lat, 0.50), "p90_ms": ms(lat, 0.90), "p99_ms": ms(lat, 0.99), "max_ms": ms(lat, 1.0),
            "p50_wire_ms": ms(lat_wire, 0.50), "p99_wire_ms": ms(lat_wire, 0.99),
            "late_p50_ms": ms(late, 0.50), "late_p99_ms": ms(late, 0.99),
            "duration_s": round(duration, 2), "entries_per_op": round(entries / max(1, sent), 2),
            "server_cpu_pct": round(100 * server_cpu / duration, 1) if server_cpu is not None else None}


if __name__ == "__main__" and sys.argv[1:2] == ["--paced"]:
    a = sys.argv[2:]
    print(json.dumps(_paced_main(int(a[0]), a[1], float(a[2]), int(a[3]), float(a[4]), float(a[5]), int(a[6]))))

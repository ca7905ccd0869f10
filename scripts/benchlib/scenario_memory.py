"""dirgw's memory per contact and its time to ready (issue 9).

``dirgw serve`` is started with a json_file source of N generated contacts
(contacts.json from ../shared/bench/gen_contacts.py) and, for the base, with
an empty one.  Per contact = (RSS after ready - RSS of the empty gateway) / N.
Peak RSS (VmHWM) is reported too, as loading may need more than it keeps.

Then the way a Microsoft 365 tenant is served (``import_*``): the same contacts imported from
the Graph emulator into a gateway with snapshots, which restarts itself from its snapshot once
the import is saved (``[snapshot] restart_after_import``).  RSS when the import is done, when it
restarts, once the restarted process is ready, and after 5 s of caller-ID lookups.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import time

import scenario_import
from common import DATA, Gateway, caller_id_filters, dataset, ldapload, log, pin, rss_kib, write_file_source_config

def label(n: int) -> str:
    return f"{n // 1000}k" if n and n % 1000 == 0 else str(n)


def hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def measure(contacts_json: str, n: int, work: str) -> dict:
    """Start dirgw serving ``contacts_json``; RSS and peak RSS after ready, and the time to ready."""
    os.makedirs(work, exist_ok=True)
    config = os.path.join(work, f"dirgw-{label(n)}.toml")
    write_file_source_config(config, contacts_json)
    timeout = 300 + n * 0.01  # numbers are normalized at start; generous
    gw = Gateway(config, cpus="0", start_timeout=timeout)
    try:
        ready_s, count = gw.wait_ready(60)
        return {"ready_s": ready_s, "contacts": count, "rss_kib": rss_kib(gw.proc.pid),
                "hwm_kib": hwm_kib(gw.proc.pid)}
    finally:
        gw.stop()


def run(sizes: list[int]) -> dict:
    work = os.path.join(DATA, "memory")
    os.makedirs(work, exist_ok=True)
    empty = os.path.join(work, "empty.json")
    with open(empty, "w") as f:
        f.write('{"value": []}\n')
    base = measure(empty, 0, work)
    log(f"memory: empty gateway RSS {base['rss_kib']} KiB, ready after {base['ready_s']:.2f} s")
    result: dict = {"empty_rss_mib": round(base["rss_kib"] / 1024, 1), "empty_ready_s": round(base["ready_s"], 2)}
    for n in sizes:
        data = dataset(n)
        log(f"memory: dirgw serve with {n} contacts")
        m = measure(os.path.join(data, "contacts.json"), n, work)
        if m["contacts"] != n:
            log(f"memory: WARNING: dirgw serves {m['contacts']} contacts, expected {n}")
        per = (m["rss_kib"] - base["rss_kib"]) * 1024 / max(1, m["contacts"])
        key = label(n)
        result[f"{key}_ready_s"] = round(m["ready_s"], 2)
        result[f"{key}_rss_mib"] = round(m["rss_kib"] / 1024, 1)
        result[f"{key}_peak_rss_mib"] = round(m["hwm_kib"] / 1024, 1)
        result[f"{key}_bytes_per_contact"] = round(per)
        log(f"memory: {n} contacts: RSS {m['rss_kib'] / 1024:.0f} MiB ({per:.0f} B/contact above empty), "
            f"peak {m['hwm_kib'] / 1024:.0f} MiB, ready after {m['ready_s']:.1f} s")
        m = measure_import(data, n, base["rss_kib"])
        for name, value in m.items():
            result[f"{key}_import_{name}"] = value
        log(f"memory: {n} contacts imported from the emulator: RSS {m['done_rss_mib']} MiB when done, "
            f"{m['restarted_rss_mib']} MiB after the restart ({m['restarted_bytes_per_contact']} B/contact), "
            f"{m['after_lookups_rss_mib']} MiB after lookups")
    result["target"] = "<= 1024 B/contact at 1M (issue 9)"
    return result


#: the import scenario's gateway, with snapshots, restarting from its snapshot after any import
IMPORT_CONFIG = scenario_import.CONFIG + """
[snapshot]
directory = "{var}"
restart_after_import = 1
"""


class _Lookup:
    """One caller-ID lookup with ldapsearch, started now in a thread; ``result()`` says how it
    ended, and after how long."""

    def __init__(self, port: int, filters_path: str) -> None:
        with open(filters_path, encoding="utf-8") as f:
            wanted = f.readline().strip()
        cmd = ["ldapsearch", "-x", "-LLL", "-H", f"ldap://127.0.0.1:{port}", "-b", "dc=example,dc=com", wanted, "cn"]
        self._out = ""
        started = time.monotonic()

        def run() -> None:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            took = time.monotonic() - started
            if done.returncode == 0 and "cn:" in done.stdout:
                self._out = f"answered after {took:.2f} s"
            else:
                self._out = f"failed after {took:.2f} s: {(done.stderr.strip().splitlines() or ['no answer'])[-1]}"
        self._thread = threading.Thread(target=run)
        self._thread.start()

    def result(self) -> str:
        self._thread.join()
        return self._out


def measure_import(data: str, n: int, empty_rss_kib: int | None = None) -> dict:
    """Import ``data``'s contacts from the emulator (no latency) into a gateway with snapshots;
    its memory when the import is done, and after it restarted itself from the snapshot."""
    import json

    from gateway.testing.process import EmulatorProcess

    work = tempfile.mkdtemp(prefix="memory-import-", dir=DATA)
    with open(os.path.join(data, "contacts.json"), encoding="utf-8") as f:
        contacts = json.load(f)
    emu = EmulatorProcess.start(os.path.join(work, "emulator"), contacts, page_size=999, latency=0.0,
                                extra_args=["--allow-other-phone-types"], timeout=600)
    del contacts
    pin(emu.process.pid, "1")
    config = os.path.join(work, "dirgw.toml")
    with open(config, "w") as f:
        f.write(IMPORT_CONFIG.format(var=os.path.join(work, "var"), tenant=emu.tenant_domain,
                                     client_id=emu.client_id, secret=emu.secret_file, base=emu.base_url,
                                     ca=emu.ca_bundle))
    gw = Gateway(config, cpus="0")
    try:
        timeout = 600 + n * 0.002
        gw.wait_for(re.compile("full import done"), timeout)
        done = rss_kib(gw.proc.pid)
        line = gw.wait_for(re.compile("restarting from the snapshot"), timeout)
        at = [t for t, l in gw.lines if l == line][0]
        meanwhile = _Lookup(gw.port, caller_id_filters(data))  # made while the process changes
        peak = hwm_kib(gw.proc.pid)
        before = rss_kib(gw.proc.pid)
        since = len(gw.lines)
        deadline = time.monotonic() + timeout
        while (ready := next(((t, l) for t, l in gw.lines[since:] if Gateway.READY.search(l)), None)) is None:
            if gw.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dirgw did not get ready after its restart:\n" +
                                   "".join(l for _, l in gw.lines[-20:]))
            gw.poll(0.5)
        restarted = rss_kib(gw.proc.pid)
        during_restart = meanwhile.result()
        port = int(next(Gateway.LISTENING.search(l).group(1) for _, l in gw.lines[since:]
                        if Gateway.LISTENING.search(l)))
        ldapload(port, caller_id_filters(data), conns=8, duration=5.0, warmup=1.0, server_pid=gw.proc.pid)
        after = rss_kib(gw.proc.pid)
        until = time.monotonic() + 20.0  # a snapshot written after the first delta round takes a while at 1M
        while time.monotonic() < until and gw.proc.poll() is None:
            gw.poll(0.5)  # keeps dirgw's log pipe drained meanwhile
        later = rss_kib(gw.proc.pid)
    finally:
        gw.stop()
        emu.stop()
    base = empty_rss_kib if empty_rss_kib is not None else 0
    return {
        "done_rss_mib": round(done / 1024, 1), "peak_rss_mib": round(peak / 1024, 1),
        "before_restart_rss_mib": round(before / 1024, 1),
        "restart_to_ready_s": round(ready[0] - at, 2),
        "lookup_during_restart": during_restart,
        "restarted_rss_mib": round(restarted / 1024, 1),
        "restarted_bytes_per_contact": round((restarted - base) * 1024 / max(1, n)),
        "after_lookups_rss_mib": round(after / 1024, 1),
        "20s_later_rss_mib": round(later / 1024, 1),
        "20s_later_bytes_per_contact": round((later - base) * 1024 / max(1, n)),
    }

"""dirgw's memory per contact and its time to ready (issue 9).

``dirgw serve`` is started with a json_file source of N generated contacts
(contacts.json from ../shared/bench/gen_contacts.py) and, for the base, with
an empty one.  Per contact = (RSS after ready - RSS of the empty gateway) / N.
Peak RSS (VmHWM) is reported too, as loading may need more than it keeps.
"""

from __future__ import annotations

import os

from common import DATA, Gateway, dataset, log, rss_kib, write_file_source_config

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
    result["target"] = "<= 1024 B/contact at 1M (issue 9)"
    return result

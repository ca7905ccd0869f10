"""OpenLDAP slapd and dirgw side by side on the lookups desk phones make (issue 9).

Both servers get the generator's contacts (slapd: contacts.ldif with slapadd,
dirgw: contacts.json as a json_file source), are pinned to the same core and
get the same load from ../shared/bench/ldapload.py on the other core:

* caller ID ``(|(telephoneNumber=N)(mobile=N))``: for dirgw N as phones send
  it (queries.json), for slapd N as stored (filters/phone_eq.txt), because
  slapd cannot match the other notations;
* name prefix ``(|(cn=p*)(sn=p*))`` with p from filters/name_prefix.txt;
* mixed: filters/mixed.txt (the two kinds alternating, numbers as stored);

each with 1 and 8 connections, sizeLimit 50 and ldapload's default attribute
list.  The repeat loop is outermost and the servers take turns cell by cell,
so a noisy period hits both.  Every run goes to bench-results/ldap-*.jsonl;
the table shows medians.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time

import slapd as slapd_mod
from common import (DATA, ROOT, Gateway, caller_id_filters, dataset, ldapload, log, rss_kib,
                    write_file_source_config)

RESULTS = os.path.join(ROOT, "bench-results")
SERVER_CPUS = "0"
CLIENT_CPUS = "1"
BASES = {"slapd": slapd_mod.CONTACTS_BASE, "dirgw": "dc=example,dc=com"}
WORKLOADS = ("caller ID", "name prefix", "mixed")


def _derive(data: str, name: str, source: str, convert) -> str:
    path = os.path.join(data, "filters", name)
    src = os.path.join(data, "filters", source)
    if not os.path.exists(path) or os.path.getmtime(path) < os.path.getmtime(src):
        with open(src, encoding="utf-8") as f, open(path + ".tmp", "w", encoding="utf-8") as out:
            for line in f:
                line = line.strip()
                if line:
                    out.write(convert(line) + "\n")
        os.replace(path + ".tmp", path)
    return path


def filter_files(data: str) -> dict[str, dict[str, str]]:
    """Per workload, the filter file each server gets."""

    def stored_or(line: str) -> str:  # (telephoneNumber=v) -> (|(telephoneNumber=v)(mobile=v))
        v = line[len("(telephoneNumber="):-1]
        return f"(|(telephoneNumber={v})(mobile={v}))"

    def name_or(line: str) -> str:  # (cn=p*) -> (|(cn=p*)(sn=p*))
        v = line[len("(cn="):-1]
        return f"(|(cn={v})(sn={v}))"

    stored = _derive(data, "callerid_stored.txt", "phone_eq.txt", stored_or)
    names = _derive(data, "name_prefix_or.txt", "name_prefix.txt", name_or)
    mixed = os.path.join(data, "filters", "mixed.txt")
    return {
        "caller ID": {"slapd": stored, "dirgw": caller_id_filters(data)},
        "name prefix": {"slapd": names, "dirgw": names},
        "mixed": {"slapd": mixed, "dirgw": mixed},
    }


def expected_callerid_hits(data: str) -> float:
    """Entries per phone-form caller-ID query if every expected contact is found (queries.json)."""
    with open(os.path.join(data, "queries.json"), encoding="utf-8") as f:
        phone = [q for q in json.load(f)["phone"] if q.get("kind") == "phone"]
    return sum(len(q["expect"]) for q in phone) / max(1, len(phone))


def ready_timeout(n: int) -> float:
    """Generous: stored numbers are normalized at start (~0.5 ms per number, 2-3 numbers per contact)."""
    return 300 + n * 0.01


def start_gateway(data: str, n: int, work: str) -> tuple[Gateway, float, int]:
    os.makedirs(work, exist_ok=True)
    config = os.path.join(work, "dirgw.toml")
    # DIRGW_BENCH_ANSWER_CACHE=0 measures without remembered answers (every search computed)
    write_file_source_config(config, os.path.join(data, "contacts.json"),
                             answer_cache=int(os.environ.get("DIRGW_BENCH_ANSWER_CACHE", "8192")))
    log(f"ldap: starting dirgw serve with {n} contacts (pinned to CPU {SERVER_CPUS})")
    gw = Gateway(config, cpus=SERVER_CPUS, start_timeout=ready_timeout(n))
    try:
        ready_s, count = gw.wait_ready(60)
    except BaseException:
        gw.stop()
        raise
    return gw, ready_s, count


def _cpu_times() -> dict[str, tuple[int, int, int]]:
    """Per /proc/stat line (cpu, cpu0, cpu1, ...): (total, busy, steal) jiffies."""
    times = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *v = line.split()
            v = [int(x) for x in v[:8]]
            times[name] = (sum(v), sum(v) - v[3] - v[4] - v[7], v[7])  # minus idle, iowait, steal
    return times


def _busy(seconds: float = 0.5) -> float:
    """The busiest of the server's and the client's core (%) over ``seconds``, between runs (servers idle)."""
    a = _cpu_times()
    time.sleep(seconds)
    b = _cpu_times()
    worst = 0.0
    for cpu in (SERVER_CPUS, CLIENT_CPUS):
        name = f"cpu{cpu}"
        if name in a and name in b:
            total = b[name][0] - a[name][0]
            worst = max(worst, 100 * (b[name][1] - a[name][1]) / max(1, total))
    return worst


class QuietGate:
    """Before each run, wait (within a budget) until other processes leave both cores alone.

    The benchmark shares the machine; a compiler or test run on the server's core halves its numbers.
    """

    def __init__(self, budget: float, per_run: float = 60.0, threshold: float = 15.0) -> None:
        self.budget, self.per_run, self.threshold = budget, per_run, threshold
        self.waited = 0.0
        self.warned = False

    def wait(self) -> dict:
        started = time.monotonic()
        busy = _busy()
        while busy > self.threshold and self.waited + (time.monotonic() - started) < self.budget \
                and time.monotonic() - started < self.per_run:
            if not self.warned:
                log(f"ldap: other processes keep a core {busy:.0f} % busy; waiting for a quiet moment "
                    f"(up to {self.per_run:.0f} s per run, {self.budget:.0f} s in all)")
                self.warned = True
            time.sleep(1.5)
            busy = _busy()
        waited = time.monotonic() - started
        self.waited += waited
        return {"busy_before_pct": round(busy, 1), "quiet_wait_s": round(waited, 1)}


def _load(before: dict, after: dict, r: dict) -> dict:
    """Steal, and the CPU others used on the server's and the client's core while the run lasted."""
    def delta(name: str) -> tuple[int, int, int]:
        return tuple(a - b for a, b in zip(after.get(name, (0, 0, 0)), before.get(name, (0, 0, 0))))

    total, _, steal = delta("cpu")
    out = {"steal_pct": round(100 * steal / max(1, total), 1)}
    for key, cpu, own in (("other_cpu_server_core_pct", SERVER_CPUS, "server_cpu_pct"),
                          ("other_cpu_client_core_pct", CLIENT_CPUS, "client_cpu_pct")):
        t, busy, _ = delta(f"cpu{cpu}")
        if t and r.get(own) is not None:
            out[key] = round(max(0.0, 100 * busy / t - r[own]), 1)
    return out


def _git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout
        return rev.strip() + ("+dirty" if dirty.strip() else "")
    except OSError:
        return "?"


def run(sizes: list[int], runs: int = 3, duration: float = 6.0, warmup: float = 1.5,
        conns: tuple[int, ...] = (1, 8), quiet_budget: float = 600.0) -> dict:
    problem = slapd_mod.ensure_installed()
    if problem:
        log("ldap: WARNING: OpenLDAP slapd is not available, so only dirgw is measured.\n" + problem)
    os.makedirs(RESULTS, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_path = os.path.join(RESULTS, f"ldap-{stamp}.jsonl")
    meta = {
        "kind": "meta", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "nproc": os.cpu_count(),
        "kernel": platform.release(), "python": platform.python_version(), "dirgw": _git_rev(),
        "slapd": None if problem else slapd_mod.version(), "slapd_problem": problem,
        "server_cpus": SERVER_CPUS, "client_cpus": CLIENT_CPUS, "runs": runs, "duration_s": duration,
        "warmup_s": warmup, "conns": list(conns), "quiet_budget_s": quiet_budget, "sizes": sizes, "sizelimit": 50,
    }
    gate = QuietGate(quiet_budget)
    records: list[dict] = []
    starts: list[dict] = []
    expected: dict[int, float] = {}
    with open(out_path, "w") as out:

        def emit(record: dict) -> None:
            out.write(json.dumps(record) + "\n")
            out.flush()

        emit(meta)
        for n in sizes:
            data = dataset(n)
            files = filter_files(data)
            expected[n] = expected_callerid_hits(data)
            servers: dict[str, tuple[int, int]] = {}  # name -> (port, pid)
            sd = gw = None
            try:
                if not problem:
                    log(f"ldap: slapadd of {n} contacts, then slapd (pinned to CPU {SERVER_CPUS})")
                    sd = slapd_mod.Slapd(os.path.join(data, "contacts.ldif"), os.path.join(DATA, f"slapd-{n}"),
                                         cpus=SERVER_CPUS).start()
                    start = {"kind": "start", "server": "slapd", "contacts": n, "slapadd_s": round(sd.slapadd_s, 2),
                             "db_mib": round(sd.db_mib, 1), "entries": sd.entries, "pid": sd.pid,
                             "rss_kib": rss_kib(sd.pid)}
                    starts.append(start)
                    emit(start)
                    log(f"ldap: slapd pid {sd.pid} on port {sd.port}: {sd.entries} entries, "
                        f"slapadd {sd.slapadd_s:.1f} s")
                    if sd.entries != n:
                        log(f"ldap: WARNING: slapd holds {sd.entries} contacts, expected {n}")
                    servers["slapd"] = (sd.port, sd.pid)
                gw, ready_s, count = start_gateway(data, n, os.path.join(DATA, f"ldap-{n}"))
                start = {"kind": "start", "server": "dirgw", "contacts": n, "ready_s": round(ready_s, 2),
                         "dirgw": _git_rev(),  # the tree may change between sizes; dirgw runs what was there
                         "entries": count, "pid": gw.proc.pid, "rss_kib": rss_kib(gw.proc.pid)}
                starts.append(start)
                emit(start)
                log(f"ldap: dirgw pid {gw.proc.pid} on port {gw.port}: ready with {count} contacts "
                    f"after {ready_s:.1f} s")
                servers["dirgw"] = (gw.port, gw.proc.pid)
                order = list(servers)
                for rep in range(runs):
                    for workload in WORKLOADS:
                        for c in conns:
                            for server in (order if rep % 2 == 0 else order[::-1]):
                                port, pid = servers[server]
                                quiet = gate.wait()
                                s0 = _cpu_times()
                                try:
                                    r = ldapload(port, files[workload][server], conns=c, duration=duration,
                                                 warmup=warmup, cpus=CLIENT_CPUS, sizelimit=50, server_pid=pid,
                                                 base=BASES[server])
                                except RuntimeError as e:  # one failed run must not lose the others
                                    log(f"ldap: {server} {workload} c={c} rep={rep} failed: {e}")
                                    emit({"kind": "error", "server": server, "contacts": n, "workload": workload,
                                          "conns": c, "rep": rep, "error": str(e)})
                                    continue
                                s1 = _cpu_times()
                                if gw is not None:
                                    gw.poll()  # keep dirgw's log pipe drained
                                if r.get("server_cpu_pct") is not None and r["ops_s"]:
                                    r["server_cpu_us_per_op"] = round(r["server_cpu_pct"] * 1e4 / r["ops_s"], 1)
                                r.update(kind="run", server=server, contacts=n, workload=workload, rep=rep,
                                         base=BASES[server], **quiet, **_load(s0, s1, r))
                                records.append(r)
                                emit(r)
                                log(f"  {server:5} {n:>7} {workload:11} c={c} rep={rep}: {r['ops_s']:>8.0f} ops/s "
                                    f"p50={r['p50_ms']}ms p99={r['p99_ms']}ms e/op={r['entries_per_op']} "
                                    f"srv={r.get('server_cpu_pct')}% cli={r['client_cpu_pct']}% "
                                    f"steal={r['steal_pct']}% others={r.get('other_cpu_server_core_pct')}%/"
                                    f"{r.get('other_cpu_client_core_pct')}%")
                if gw is not None:
                    rss = rss_kib(gw.proc.pid)
                    emit({"kind": "end", "server": "dirgw", "contacts": n, "rss_kib": rss})
            finally:
                if gw is not None:
                    gw.stop()
                if sd is not None:
                    sd.stop()
    table = summarize(records, starts, expected, meta)
    return {"table": table, "results_file": os.path.relpath(out_path, ROOT)}


def label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _median(rs: list[dict], key: str) -> float | None:
    values = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(values) if values else None


def _fmt(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def summarize(records: list[dict], starts: list[dict], expected: dict[int, float], meta: dict) -> str:
    cells: dict[tuple, dict[str, list[dict]]] = {}
    for r in records:
        if "server_cpu_us_per_op" not in r and r.get("server_cpu_pct") is not None and r["ops_s"]:
            r["server_cpu_us_per_op"] = round(r["server_cpu_pct"] * 1e4 / r["ops_s"], 1)
        cells.setdefault((r["contacts"], r["workload"], r["conns"]), {}).setdefault(r["server"], []).append(r)
    keys = sorted(cells, key=lambda k: (k[0], WORKLOADS.index(k[1]), k[2]))
    lines = [
        "| contacts | workload | conns | slapd ops/s | dirgw ops/s | dirgw/slapd | slapd p99 ms | dirgw p99 ms "
        "| slapd entries/op | dirgw entries/op | slapd CPU % | dirgw CPU % | slapd CPU µs/op | dirgw CPU µs/op "
        "| others % |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in keys:
        s, d = cells[key].get("slapd", []), cells[key].get("dirgw", [])
        so, do = _median(s, "ops_s"), _median(d, "ops_s")
        ratio = f"{do / so:.2f}x" if so and do is not None else "-"
        size = label(key[0])
        lines.append(
            f"| {size} | {key[1]} | {key[2]} | {_fmt(so)} | {_fmt(do)} | {ratio} | {_fmt(_median(s, 'p99_ms'), 2)} "
            f"| {_fmt(_median(d, 'p99_ms'), 2)} | {_fmt(_median(s, 'entries_per_op'), 2)} "
            f"| {_fmt(_median(d, 'entries_per_op'), 2)} | {_fmt(_median(s, 'server_cpu_pct'))} "
            f"| {_fmt(_median(d, 'server_cpu_pct'))} | {_fmt(_median(s, 'server_cpu_us_per_op'))} "
            f"| {_fmt(_median(d, 'server_cpu_us_per_op'))} | {_fmt(_median(s + d, 'other_cpu_server_core_pct'))} |")
    notes = [
        "",
        "CPU µs/op = server CPU time per search (less sensitive to other load on the machine than ops/s); "
        "others % = CPU that other processes took on the server's core during the row's runs (median; ~0 when "
        "the machine was quiet).",
        "caller ID: `(|(telephoneNumber=N)(mobile=N))`; slapd: N as stored (filters/phone_eq.txt, e.g. "
        "`+49 (0)89 1234-567`), as slapd cannot match other notations; dirgw: N as phones send it "
        "(queries.json, e.g. `0891234567`, `+49...`, `0049...`; filters/callerid_phone_form.txt)"
        + "; queries.json expects " + ", ".join(f"{v:.2f} ({label(n)})" for n, v in sorted(expected.items()))
        + " contacts per phone-form query over all four phone attributes (this filter covers telephoneNumber "
        "and mobile only; slapd's stored-notation filters are business numbers).",
        "name prefix: `(|(cn=p*)(sn=p*))` from filters/name_prefix.txt; mixed: filters/mixed.txt "
        "(numbers as stored, alternating with name prefixes); the same filters for both servers.",
    ]
    for st in starts:
        n = st["contacts"]
        if st["server"] == "slapd":
            notes.append(f"slapd {label(n)}: slapadd {st['slapadd_s']} s, mdb {st['db_mib']} MiB, "
                         f"{st['entries']} entries.")
        else:
            notes.append(f"dirgw {label(n)}: ready {st['ready_s']} s after start, {st['entries']} contacts, "
                         f"RSS {st['rss_kib'] / 1024:.0f} MiB" + (f", tree {st['dirgw']}." if st.get("dirgw") else "."))
    steal = _median(records, "steal_pct")
    other_s = _median(records, "other_cpu_server_core_pct")
    other_c = _median(records, "other_cpu_client_core_pct")
    notes.append(
        f"Medians of {meta['runs']} run(s) of {meta['duration_s']} s after {meta['warmup_s']} s warm-up; sizeLimit 50, "
        f"ldapload's default attributes; servers pinned to CPU {meta['server_cpus']}, ldapload to CPU "
        f"{meta['client_cpus']}; CPU % is of one core; {meta['slapd'] or 'slapd not measured'}; Python "
        f"{meta['python']}; dirgw {meta['dirgw']}; {meta['nproc']} vCPU; median steal {_fmt(steal, 1)} %; "
        f"median CPU used by other processes: {_fmt(other_s)} % of the server's core, {_fmt(other_c)} % of the "
        f"client's (should be ~0; if not, the machine was busy and the numbers are low); "
        f"waited {_fmt(sum(r.get('quiet_wait_s', 0) for r in records))} s in all for quiet cores.")
    if meta.get("slapd_problem"):
        notes.append("slapd was not measured: " + meta["slapd_problem"].splitlines()[0])
    return "\n".join(lines + notes)


if __name__ == "__main__":  # summarize a saved run: python scenario_ldap.py bench-results/ldap-*.jsonl
    recs, sts, meta0 = [], [], {}
    with open(sys.argv[1]) as f:
        for line in f:
            rec = json.loads(line)
            {"run": recs, "start": sts}.get(rec.get("kind"), []).append(rec)
            if rec.get("kind") == "meta":
                meta0 = rec
    exp = {n: expected_callerid_hits(dataset(n)) for n in sorted({r["contacts"] for r in recs})}
    print(summarize(recs, sts, exp, meta0))

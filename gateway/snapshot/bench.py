"""Snapshot timings on synthetic contacts (for ``scripts/bench`` and the closing notes).

``python -m gateway.snapshot.bench 100000 1000000`` prints one JSON line per size.
``python -m gateway.snapshot.bench --load DIR`` loads the snapshot in DIR and prints the time (what a
starting ``dirgw serve`` does before it listens).
``python -m gateway.snapshot.bench --restart 100000 1000000`` saves a snapshot of N contacts of a
Microsoft 365 source, starts ``dirgw serve`` on it and prints the seconds from the start of the
process to "ready" and to the first answered search, and the process's RSS then.
"""

from __future__ import annotations

import gc
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

from gateway.model import Contact, Phone
from gateway.snapshot.codec import SourceSnapshot, decode, encode_parts
from gateway.snapshot.store import FileSnapshotStore
from gateway.service import BASE_EXTENSION

__all__ = ["synthetic_contacts", "bench", "load_in_fresh_process", "restart"]

_GIVEN = ("Jürgen Jörg Björn Günter Sören Uwe Klaus Hans-Peter Michael Thomas Andreas Stefan Anna Maria Sabine "
          "Petra Käthe Bärbel Zoë Łukasz Małgorzata Jiří François Chloé Søren Åsa Siobhán María José Wei "
          "Hiroshi Priya Ngozi Olga Anh Noémie Ümit Özlem").split()
_SURNAMES = ("Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer "
             "Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Meier Maier Mayer Mayr "
             "Müller-Lüdenscheidt Özdemir Öztürk Yılmaz Şahin Nowak Wójcik Dvořák Horváth Rossi García "
             "O'Brien MacDonald Søndergaard Åberg Nguyen Tanaka Patel Cohen Papadopoulos Núñez").split()
_DEPARTMENTS = ("", "", "Vertrieb", "Einkauf", "Buchhaltung", "IT", "Geschäftsleitung", "Technik", "Support")
_TITLES = ("", "", "Sachbearbeiter", "Leiterin Einkauf", "Geschäftsführer", "Projektleiter", "Dr.",
           "Account Manager")
_NOTATIONS = ("+49 (0)89 {a}-{b}", "089/{a}{b}", "0049-89-{a}-{b}", "+49 89 {a} {b}", "(089) {a} {b}",
              "+43 1 {a}{b}", "+1 (212) 555-{b:0>4.4}", "0171 {a} {b}")


def synthetic_contacts(n: int, source: str = "bench", seed: int = 42) -> list[Contact]:
    """``n`` deterministic, realistic-looking contacts: GUID ids, unique display names and mails, names
    with diacritics, 85% in one of n/20 companies, 1-4 phones in mixed notations."""
    rnd = random.Random(seed)
    companies = [f"{rnd.choice(_SURNAMES)} {rnd.choice(('GmbH', 'AG', 'KG', '& Söhne KG', 'Ltd.', 'Inc.'))} {i}"
                 for i in range(max(1, n // 20))]
    kinds = ("business", "mobile", "home", "businessFax")
    out = []
    for i in range(n):
        given = rnd.choice(_GIVEN)
        surname = rnd.choice(_SURNAMES)
        company = rnd.choice(companies) if rnd.random() < 0.85 else ""
        phones = tuple(
            Phone(kinds[k], rnd.choice(_NOTATIONS).format(a=rnd.randrange(1000, 9999), b=str(rnd.randrange(10, 999))))
            for k in range(rnd.randint(1, 4))
        )
        out.append(Contact(
            source=source,
            id=str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            display_name=f"{given} {surname} {i}",
            given_name=given,
            surname=surname,
            company=company,
            department=rnd.choice(_DEPARTMENTS),
            job_title=rnd.choice(_TITLES),
            mail=f"{given.lower()}.{surname.lower()}{i}@example.com",
            phones=phones,
        ))
    return out


def _timed(fn: Any) -> tuple[Any, float, float]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def load_in_fresh_process(directory: str) -> dict[str, Any]:
    """Load the snapshot in ``directory`` in a new Python process: wall and CPU seconds, peak RSS."""
    out = subprocess.run([sys.executable, "-m", "gateway.snapshot.bench", "--load", directory],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _load(directory: str) -> dict[str, Any]:
    (snapshot, problems), wall, cpu = _timed(lambda: FileSnapshotStore(directory).load())
    if snapshot is None or problems:
        raise SystemExit(f"no valid snapshot in {directory}: {problems}")
    return {"load_s": round(wall, 3), "load_cpu_s": round(cpu, 3),
            "contacts": sum(len(s.contacts) for s in snapshot.sources.values()),
            "max_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    """Peak RSS of this process (VmHWM: unlike ru_maxrss, not inherited from the parent across fork/exec)."""
    try:
        return _status_mb("self", "VmHWM")
    except OSError:  # pragma: no cover - not Linux
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _status_mb(pid: int | str, field: str) -> float:
    """A size field (VmRSS, VmHWM) of /proc/PID/status, in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def bench(n: int, fresh_process: bool = True) -> dict[str, Any]:
    """Encode, save, decode and load ``n`` synthetic contacts of one source.

    Seconds are wall-clock (``_s``) and CPU (``_cpu_s``; the wall time includes waiting for the CPU on a
    busy machine).  ``decode`` decodes bytes in this process, which also holds the ``n`` source
    contacts; ``load`` (with ``fresh_process``) reads, verifies and decodes the file in a new process,
    as a starting service does.
    """
    contacts = tuple(synthetic_contacts(n))
    sync = {"delta_link": "https://graph.microsoft.com/v1.0/contacts/delta?$deltatoken=" + "x" * 200,
            "next_link": None, "identity": ["tenant", "client"], "last_success": time.time()}
    sources = {"bench": SourceSnapshot(contacts=contacts, sync=sync)}
    parts, encode_s, encode_cpu = _timed(lambda: encode_parts(sources, created=time.time()))
    size = sum(map(len, parts))
    result: dict[str, Any] = {"contacts": n, "bytes": size, "bytes_per_contact": round(size / max(1, n), 1),
                              "encode_s": round(encode_s, 3), "encode_cpu_s": round(encode_cpu, 3)}
    with tempfile.TemporaryDirectory(prefix="dirgw-snapshot-bench-") as directory:
        data = b"".join(parts)
        _, save_s, _ = _timed(lambda: FileSnapshotStore(directory).save(parts))  # empties parts
        result["save_s"] = round(save_s, 3)
        snapshot, decode_s, decode_cpu = _timed(lambda: decode(data))
        assert len(snapshot.sources["bench"].contacts) == n
        del snapshot, data
        result.update(decode_s=round(decode_s, 3), decode_cpu_s=round(decode_cpu, 3))
        if fresh_process:
            loaded = load_in_fresh_process(directory)
            result.update(load_s=loaded["load_s"], load_cpu_s=loaded["load_cpu_s"],
                          load_max_rss_mb=loaded["max_rss_mb"])
    return result


_RESTART_CONFIG = """\
[ldap]
listen = ["tcp:{port}:interface=127.0.0.1"]
base_dn = "dc=example,dc=com"
[admin]
listen = ""
[numbers]
country = "DE"
[snapshot]
directory = "snapshots"
[[sources]]
name = "bench"
type = "m365_mail_contacts"
tenant_id = "contoso.example"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret_file = "secret"
authority_host = "{graph}"
graph_url = "{graph}"
"""


def restart(n: int, timeout: float = 1800.0, base: bool = True, lookups: int = 0) -> dict[str, Any]:
    """Seconds from starting ``dirgw serve`` on a snapshot of ``n`` contacts to its first answer.

    The snapshot is what the service saves once an import is done: the contacts and, with
    ``base``, the index's compact base, made here as the service makes it (this takes a while
    for a million contacts).  The source's Graph address is a closed loopback port: the sync
    fails and retries in the background, as during an outage, while the snapshot is served.
    ``lookups``: caller-ID searches for that many random contacts' numbers after the first
    answer, then the memory again (``rss_after_lookups_mb``: with the entries searches made).
    """
    import os
    import signal
    import socket

    contacts = tuple(synthetic_contacts(n))
    graph = "https://127.0.0.1:9"
    sync = {"delta_link": graph + "/v1.0/contacts/delta?$deltatoken=" + "x" * 200, "next_link": None,
            "identity": ["contoso.example", "11111111-2222-3333-4444-555555555555", graph],
            "last_success": time.time()}
    result: dict[str, Any] = {"contacts": n}
    with tempfile.TemporaryDirectory(prefix="dirgw-restart-bench-") as directory:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with open(os.path.join(directory, "secret"), "w") as f:
            f.write("not-a-real-secret\n")
        config = os.path.join(directory, "dirgw.toml")
        with open(config, "w") as f:
            f.write(_RESTART_CONFIG.format(port=port, graph=graph))
        extensions = {}
        if base:
            made, result["base_build_s"], _ = _timed(lambda: _base_of(config, contacts))
            extensions[BASE_EXTENSION] = made.to_bytes()
            result["base_bytes"] = sum(len(p) for p in extensions[BASE_EXTENSION])
            del made
        parts = encode_parts({"bench": SourceSnapshot(contacts=contacts, sync=sync)}, created=time.time(),
                             extensions=extensions)
        del extensions
        result["snapshot_bytes"] = sum(map(len, parts))
        FileSnapshotStore(os.path.join(directory, "snapshots")).save(parts)
        del parts
        wanted = contacts[n // 2]
        request = _search_request(1, "dc=example,dc=com", "cn", wanted.display_name)
        rng = random.Random(7)
        asked = [c.phones[0].number for c in rng.sample(contacts, min(lookups, n)) if c.phones]
        del contacts
        log = open(os.path.join(directory, "serve.log"), "wb")
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", config], stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            answered = None
            while answered is None:
                if time.perf_counter() - started > timeout:
                    raise SystemExit(f"no answer within {timeout:g} s")
                if proc.poll() is not None:
                    raise SystemExit(open(os.path.join(directory, "serve.log")).read()[-3000:])
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                        sock.sendall(request)
                        data = _read_answer(sock)
                        if wanted.display_name.encode() in data:
                            answered = time.perf_counter() - started
                except OSError:
                    time.sleep(0.02)
            result["first_answer_s"] = round(answered, 2)
            with open(os.path.join(directory, "serve.log"), "rb") as f:
                text = f.read().decode("utf-8", "replace")
            result["rss_mb"] = _status_mb(proc.pid, "VmRSS")
            result["ready_logged"] = "dirgw: ready" in text
            if asked:
                hits, seconds = _caller_ids(port, asked)
                result.update(lookups=len(asked), lookup_hits=hits, lookups_per_s=round(len(asked) / seconds),
                              rss_after_lookups_mb=_status_mb(proc.pid, "VmRSS"))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            log.close()
    return result


def _base_of(config_path: str, contacts: tuple[Contact, ...]) -> Any:
    """The compact base the service makes of ``contacts`` with the configuration at ``config_path``."""
    from gateway.config import load_config
    from gateway.graph.parse import Upsert
    from gateway.index import ContactIndex
    from gateway.service import source_profile

    config = load_config(config_path)
    index = ContactIndex([source_profile(config, s) for s in config.sources])
    index.apply([Upsert(c) for c in contacts])
    base = index.make_base()
    del index
    gc.collect()
    return base


def _caller_ids(port: int, numbers: list[str]) -> tuple[int, float]:
    """(answers with an entry, seconds) for a caller-ID search of each number, one after the other."""
    import socket

    from ldaptor.protocols import pureldap

    hits = 0
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        for i, number in enumerate(numbers, 1):
            either = [pureldap.LDAPFilter_equalityMatch(attributeDesc=pureldap.LDAPAttributeDescription(a),
                                                        assertionValue=pureldap.LDAPAssertionValue(number))
                      for a in ("telephoneNumber", "mobile")]
            request = pureldap.LDAPSearchRequest(
                baseObject="dc=example,dc=com", scope=pureldap.LDAP_SCOPE_wholeSubtree,
                filter=pureldap.LDAPFilter_or(either), attributes=["cn"])
            sock.sendall(pureldap.LDAPMessage(request, id=i).toWire())
            if _entries_in(_read_answer(sock)):
                hits += 1
    return hits, time.perf_counter() - started


def _entries_in(data: bytes) -> int:
    """The SearchResultEntry messages in an answer's bytes."""
    from gateway.ldap import ber

    count = pos = 0
    while pos < len(data):
        size = ber.frame(data[pos:], 1 << 24)
        if size is None:
            break
        count += ber.decode_message(data[pos:pos + size]).op_tag == 0x64
        pos += size
    return count


def _read_answer(sock) -> bytes:
    """The bytes of one search's answer: messages up to its SearchResultDone (or the end)."""
    from gateway.ldap import ber

    data = b""
    pos = 0
    while True:
        size = ber.frame(data[pos:], 1 << 24)
        if size is None:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
            continue
        if ber.decode_message(data[pos:pos + size]).op_tag == 0x65:
            return data
        pos += size


def _search_request(message_id: int, base: str, attr: str, value: str) -> bytes:
    """A subtree SearchRequest for (attr=value), asking for ``attr``, as a phone would send it."""
    from ldaptor.protocols import pureldap

    request = pureldap.LDAPSearchRequest(
        baseObject=base, scope=pureldap.LDAP_SCOPE_wholeSubtree,
        filter=pureldap.LDAPFilter_equalityMatch(attributeDesc=pureldap.LDAPAttributeDescription(attr),
                                                 assertionValue=pureldap.LDAPAssertionValue(value)),
        attributes=[attr])
    return pureldap.LDAPMessage(request, id=message_id).toWire()


def main(argv: list[str]) -> None:  # pragma: no cover - a command
    if argv[:1] in (["--restart"], ["--restart-without-base"]):
        lookups = 0
        if "--lookups" in argv:
            at = argv.index("--lookups")
            lookups = int(argv[at + 1])
            argv = argv[:at] + argv[at + 2:]
        for arg in argv[1:] or ["100000"]:
            print(json.dumps(restart(int(arg), base=argv[0] == "--restart", lookups=lookups)), flush=True)
        return
    if argv[:1] == ["--load"]:
        print(json.dumps(_load(argv[1])), flush=True)
        return
    for arg in argv or ["100000"]:
        print(json.dumps(bench(int(arg))), flush=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

"""Snapshots with a real ``dirgw serve``: restart serves at once, kill -9 loses nothing.

The Graph emulator runs in its own process; the gateway is killed with
SIGKILL at seeded random points of the import and of snapshot writes, then
restarted, and must converge to the emulator's contacts with nothing lost
and nothing duplicated.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from gateway.testing.process import EmulatorProcess
from tests.support import LISTENING, ServerProcess, contact, ldapsearch, parse_ldif

BASE = "dc=example,dc=com"
SEED = int(os.environ.get("DIRGW_KILL_SEED", "20261127"))


def people(n):
    return [contact(f"p-{i:05d}", given=f"Given{i}", surname=f"Surname{i}", company="Acme GmbH",
                    phones=[("business", f"+49 89 {100000 + i}")]) for i in range(n)]


def write_config(tmp_path, emu, pages=5, interval=None, restart_after_import=None):
    extra = f'interval = "{interval}"\n' if interval else ""
    if restart_after_import is not None:
        extra += f"restart_after_import = {restart_after_import}\n"
    (tmp_path / "dirgw.toml").write_text(f"""
[ldap]
listen = ["tcp:0:interface=127.0.0.1"]
base_dn = "{BASE}"
size_limit = 100000
[admin]
listen = ""
[snapshot]
directory = "var"
pages = {pages}
{extra}
[[sources]]
name = "m365"
type = "m365_mail_contacts"
tenant_id = "{emu.tenant_domain}"
client_id = "{emu.client_id}"
client_secret_file = "{emu.secret_file}"
authority_host = "{emu.base_url}"
graph_url = "{emu.base_url}"
ca_bundle = "{emu.ca_bundle}"
interval = "1s"
""")
    return str(tmp_path / "dirgw.toml")


def uids(proc):
    result = ldapsearch(proc.port, "-b", BASE, "-z", "0", "(objectClass=person)", "uid")
    assert result.returncode == 0, result.stderr
    return [e["uid"][0] for e in parse_ldif(result.stdout)]


def wait_for(proc, text, timeout=60.0, since=0):
    texts = (text,) if isinstance(text, str) else tuple(text)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = proc.read_output()
        if any(t in out[since:] for t in texts):
            return len(out)
        if proc.proc.poll() is not None:
            raise AssertionError(f"dirgw exited:\n{out[-3000:]}")
        time.sleep(0.02)
    raise AssertionError(f"{text!r} not logged:\n{proc.read_output()[-3000:]}")


@pytest.fixture
def emulator(tmp_path):
    emu = EmulatorProcess.start(tmp_path / "emulator", people(400), page_size=20, latency=0.02)
    yield emu
    emu.stop()


def test_restart_serves_from_snapshot_and_continues_with_delta(tmp_path, emulator):
    """After a restart the snapshot answers before any Graph request, and sync continues from the delta link."""
    config = write_config(tmp_path, emulator)
    proc = ServerProcess(config)
    try:
        wait_for(proc, "full import done")
        wait_for(proc, "delta round")  # a delta round saves too
    finally:
        assert proc.stop() == 0  # SIGTERM saves a last snapshot
    emulator.clear_requests()
    proc = ServerProcess(config)
    try:
        assert len(set(uids(proc))) == 400  # served from the snapshot at once
        wait_for(proc, "delta round")
        kinds = [r for r in emulator.requests() if r["kind"] == "delta"]
        assert kinds and all("deltatoken" in r["query"].lower() for r in kinds)  # no re-import
        assert "full import started" not in proc.read_output()
    finally:
        proc.stop()


def test_kill_during_import_loses_nothing(tmp_path, emulator):
    """kill -9 at seeded random points of the import, repeatedly: each restart resumes and converges."""
    rng = random.Random(SEED)
    config = write_config(tmp_path, emulator, pages=3)
    for round_ in range(3):
        proc = ServerProcess(config)
        if "full import done" in proc.read_output():
            proc.stop()
            break
        try:
            time.sleep(rng.uniform(0.05, 0.3))  # a random point of the import
        finally:
            proc.proc.send_signal(signal.SIGKILL)
            proc.proc.wait()
        if "full import done" in proc.read_output():
            break
    proc = ServerProcess(config)
    try:
        wait_for(proc, ("full import done", "delta round"), timeout=120)
        found = uids(proc)
        assert len(found) == 400 and len(set(found)) == 400
        emulator.remove_contact("p-00007")
        emulator.add_contacts([contact("late", given="Spät", surname="Dazu")])
        since = len(proc.read_output())
        wait_for(proc, "delta round", since=since)
        wait_for(proc, "delta round", since=wait_for(proc, "delta round", since=since))
        found = uids(proc)
        assert len(found) == 400 and "m365.late" in found and "m365.p-00007" not in found
    finally:
        proc.stop()


def test_kill_during_snapshot_writes(tmp_path, emulator):
    """kill -9 while snapshots are being written (every page): the next start loads a good generation."""
    rng = random.Random(SEED + 1)
    config = write_config(tmp_path, emulator, pages=1, interval="1s")
    for _ in range(4):
        proc = ServerProcess(config)
        time.sleep(rng.uniform(0.05, 0.4))
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait()
        if (tmp_path / "var").exists():  # a crash mid-write never leaves a bad generation
            assert not any(".bad" in name for name in os.listdir(tmp_path / "var"))
    proc = ServerProcess(config)
    try:
        # the import finishes now, or finished before a kill and the snapshot says so
        wait_for(proc, ("full import done", "delta round"), timeout=120)
        found = uids(proc)
        assert len(found) == 400 and len(set(found)) == 400
    finally:
        proc.stop()


def test_bad_snapshot_never_stops_the_start(tmp_path, emulator):
    """A corrupted snapshot is moved aside with a clear reason; the service starts and re-imports."""
    config = write_config(tmp_path, emulator)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "snapshot.dgs").write_bytes(b"DIRGWSNP" + os.urandom(200))
    proc = ServerProcess(config)
    try:
        out = proc.read_output()
        assert "moved" in out or "aside" in out, out[-2000:]
        wait_for(proc, "full import done")
        assert len(uids(proc)) == 400
        assert any(".bad" in name for name in os.listdir(tmp_path / "var"))
    finally:
        proc.stop()


def test_unwritable_snapshot_directory_keeps_serving(tmp_path, emulator):
    """A snapshot directory that cannot be written is logged and retried; LDAP keeps answering."""
    config = write_config(tmp_path, emulator)
    (tmp_path / "var").write_text("a file where the directory should be")
    proc = ServerProcess(config)
    try:
        wait_for(proc, "full import done")
        wait_for(proc, "snapshot not saved")
        assert len(uids(proc)) == 400
    finally:
        proc.stop()


KILL_ROUNDS = int(os.environ.get("DIRGW_KILL_ROUNDS", "8"))


def test_kill_loop_converges(tmp_path, emulator):
    """kill -9 at seeded random points of imports, delta rounds and snapshot writes, again and again,
    with contact changes in between: the last start converges to exactly the emulator's contacts."""
    rng = random.Random(SEED + 2)
    config = write_config(tmp_path, emulator, pages=2, interval="1s")
    next_id = 0
    for _ in range(KILL_ROUNDS):
        proc = ServerProcess(config)
        time.sleep(rng.uniform(0.05, 0.6))  # somewhere in an import, a delta round or a save
        for _ in range(rng.randint(0, 3)):
            next_id += 1
            if rng.random() < 0.6:
                emulator.add_contacts([contact(f"k-{next_id}", given="Kill", surname=f"Loop{next_id}")])
            else:
                ids = [c["id"] for c in emulator.contacts()]
                emulator.remove_contact(rng.choice(ids), permanent=rng.random() < 0.5)
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait()
    expected = {f"m365.{c['id']}" for c in emulator.contacts()}
    proc = ServerProcess(config)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = uids(proc)
            if set(found) == expected:
                break
            time.sleep(0.2)
        assert len(found) == len(set(found))  # nothing duplicated
        assert set(found) == expected  # nothing lost, nothing stale
    finally:
        proc.stop()


def test_sigterm_saves_a_snapshot(tmp_path, emulator):
    """SIGTERM stops accepting, saves a snapshot and exits 0."""
    config = write_config(tmp_path, emulator)
    proc = ServerProcess(config)
    wait_for(proc, "full import done")
    path = tmp_path / "var" / "snapshot.dgs"
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    before = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert proc.stop() == 0
    assert path.stat().st_mtime_ns > before


def test_restart_serves_the_compact_base_with_the_changes_since(tmp_path, emulator):
    """Once the import is done a compact base of the index is made for snapshots, which keep it
    with the changes after it; a restart serves both at once, before any Graph request."""
    from gateway.service import BASE_EXTENSION, CHANGES_EXTENSION
    from gateway.snapshot.codec import decode
    from gateway.snapshot.inspect import format_inspect, inspect

    config = write_config(tmp_path, emulator)
    proc = ServerProcess(config)
    try:
        wait_for(proc, "a compact base of 400 contacts made for snapshots")
        emulator.remove_contact("p-00007")
        emulator.add_contacts([contact("late", given="Spät", surname="Dazu", phones=[("mobile", "0171 2233445")])])
        emulator.change_contact("p-00003", displayName="Umbenannt Drei")
        since = len(proc.read_output())
        wait_for(proc, "delta round", since=wait_for(proc, "delta round", since=since))
    finally:
        assert proc.stop() == 0  # SIGTERM saves a last snapshot
    saved = decode((tmp_path / "var" / "snapshot.dgs").read_bytes())
    assert set(saved.extensions) == {BASE_EXTENSION, CHANGES_EXTENSION}
    rows = inspect(str(tmp_path / "var"), time.time())
    assert set(rows[0]["extensions"]) == {BASE_EXTENSION, CHANGES_EXTENSION}
    assert rows[0]["extensions"][BASE_EXTENSION] > 0
    assert "current: index-base " in format_inspect(rows)
    emulator.clear_requests()
    proc = ServerProcess(config)
    try:
        assert "served from its compact base (400 contacts, 3 changed since it was made)" in proc.read_output()
        found = uids(proc)
        assert len(found) == 400 and "m365.late" in found and "m365.p-00007" not in found
        result = ldapsearch(proc.port, "-b", BASE, "(|(telephoneNumber=01712233445)(mobile=01712233445))", "cn")
        assert [e["cn"] for e in parse_ldif(result.stdout)] == [["Spät Dazu"]]
        result = ldapsearch(proc.port, "-b", BASE, "(cn=umbenannt*)", "uid")
        assert [e["uid"] for e in parse_ldif(result.stdout)] == [["m365.p-00003"]]
        result = ldapsearch(proc.port, "-b", BASE, "(telephoneNumber=089100042)", "uid")
        assert [e["uid"] for e in parse_ldif(result.stdout)] == [["m365.p-00042"]]  # from the base
        assert "full import started" not in proc.read_output()
    finally:
        proc.stop()


def test_after_a_large_import_the_process_restarts_from_its_snapshot(tmp_path, emulator):
    """With ``restart_after_import`` contacts or more imported, once the snapshot with the compact
    base is saved the process replaces itself (same PID) with one started from that snapshot, on
    the same listening socket (here: a port the system chose), which serves the base, continues
    with delta rounds and does not restart again."""
    config = write_config(tmp_path, emulator, restart_after_import=100)
    proc = ServerProcess(config)
    try:
        since = wait_for(proc, "restarting from the snapshot to give back the memory of importing 400 contacts")
        since = wait_for(proc, "dirgw: ready (400 contacts)", since=since)
        out = proc.read_output()
        assert "served from its compact base (400 contacts" in out[since - 2000:]
        assert proc.proc.poll() is None  # the same process, now running the new program
        ports = [int(m.group(2)) for m in LISTENING.finditer(out)]
        assert len(ports) == 2 and ports[0] == ports[1]  # the listening socket was handed over
        port = ports[-1]
        result = ldapsearch(port, "-b", BASE, "(telephoneNumber=089100042)", "uid")
        assert [e["uid"] for e in parse_ldif(result.stdout)] == [["m365.p-00042"]]  # from the base
        emulator.add_contacts([contact("late", given="Spät", surname="Dazu", phones=[("mobile", "0171 2233445")])])
        wait_for(proc, "delta round", since=wait_for(proc, "delta round", since=len(proc.read_output())))
        result = ldapsearch(port, "-b", BASE, "(|(telephoneNumber=01712233445)(mobile=01712233445))", "cn")
        assert [e["cn"] for e in parse_ldif(result.stdout)] == [["Spät Dazu"]]
        out = proc.read_output()
        assert out.count("restarting from the snapshot") == 1
        assert "full import started" not in out[since:]
    finally:
        assert proc.stop() == 0

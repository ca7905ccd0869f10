"""``dirgw snapshot inspect``: rows and the table."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from gateway.model import Contact
from gateway.snapshot.codec import SourceSnapshot, encode
from gateway.snapshot.inspect import format_inspect, inspect
from gateway.snapshot.store import CURRENT_NAME, FileSnapshotStore


def _save(store: FileSnapshotStore, created: float, count: int, importing: bool) -> None:
    contacts = tuple(Contact("tenant-a", str(i), display_name=f"P {i}") for i in range(count))
    sync_a = {"delta_link": None if importing else "https://graph/delta?token=secret",
              "next_link": "https://graph/next" if importing else None, "identity": ["tenant", "client"],
              "last_success": None if importing else created - 30}
    store.save(encode({"tenant-a": SourceSnapshot(contacts=contacts, sync=sync_a),
                       "files": SourceSnapshot(contacts=(Contact("files", "x"),), sync={})}, created))


def test_inspect_rows_and_table(tmp_path: Path) -> None:
    directory = tmp_path / "var"
    store = FileSnapshotStore(str(directory))
    base = time.time()
    _save(store, base - 100, 5, importing=True)
    _save(store, base, 7, importing=False)
    now = os.stat(directory / CURRENT_NAME).st_mtime + 125
    (directory / f"{CURRENT_NAME}.bad-20240101T000000Z").write_bytes(b"\0" * 10)

    rows = inspect(str(directory), now)
    json.dumps(rows)  # JSON-able for --json
    assert [r["generation"] for r in rows] == ["current", "previous", "bad"]
    current, previous, bad = rows
    assert current["ok"] and current["created"] == base and 124 <= current["age_s"] <= 126
    assert current["sources"]["tenant-a"] == {
        "contacts": 7, "delta_link": True, "importing": False, "last_success": base - 30,
        "last_success_age_s": round(now - (base - 30), 3), "identity": ["tenant", "client"]}
    assert previous["sources"]["tenant-a"]["importing"] and not previous["sources"]["tenant-a"]["delta_link"]
    assert current["sources"]["files"]["contacts"] == 1
    assert not bad["ok"] and bad["reason"] == "foreign"
    assert "secret" not in json.dumps(rows)  # links are reported as present, never printed

    table = format_inspect(rows, str(directory))
    lines = table.splitlines()
    assert lines[0] == f"snapshots in {directory}"
    assert lines[1].split() == ["GENERATION", "AGE", "SIZE", "STATUS", "SOURCE", "CONTACTS", "DELTA", "LINK",
                                "IMPORTING", "LAST", "SUCCESS"]
    assert lines[2].split()[:2] == ["current", "2m05s"]
    assert lines[2].split()[-6:] == ["ok", "files", "1", "no", "no", "-"]
    assert lines[3].split()[:-2] == ["tenant-a", "7", "yes", "no"]
    assert re.fullmatch(r"2m[345]\ds ago", " ".join(lines[3].split()[-2:]))
    assert lines[5].split() == ["tenant-a", "5", "no", "yes", "-"]
    assert any(line.startswith("previous") for line in lines)
    assert any(line.startswith("bad") and "foreign" in line for line in lines)
    assert f"{CURRENT_NAME}.bad-20240101T000000Z: foreign: not a dirgw snapshot" in table
    assert "secret" not in table


def test_inspect_empty_directory(tmp_path: Path) -> None:
    assert inspect(str(tmp_path / "missing"), 0.0) == []
    assert format_inspect([], str(tmp_path)) == f"no snapshots in {tmp_path}"


def test_inspect_full_decodes_contacts(tmp_path: Path) -> None:
    store = FileSnapshotStore(str(tmp_path))
    _save(store, 10.0, 3, importing=False)
    rows = inspect(str(tmp_path), 20.0, full=True)
    assert rows[0]["ok"] and rows[0]["sources"]["tenant-a"]["contacts"] == 3


def test_table_of_a_snapshot_without_sources(tmp_path: Path) -> None:
    store = FileSnapshotStore(str(tmp_path))
    store.save(encode({}, 1.0))
    table = format_inspect(inspect(str(tmp_path), os.stat(tmp_path / CURRENT_NAME).st_mtime + 3 * 86400))
    assert "(none)" in table and "3d00h" in table

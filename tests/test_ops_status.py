"""The /status document: its shape for each source state, and the adapters for the existing sources."""

from __future__ import annotations

import json

import pytest
from twisted.internet.task import Clock

from gateway.index import ContactIndex
from gateway.ops.status import (
    SourceStatus,
    build_status,
    iso,
    json_file_status,
    m365_status,
    source_status,
)
from gateway.sources.json_file import JsonFileSource
from gateway.sync.m365 import M365Source, SyncState

NOW = 1_714_557_600.0  # 2024-05-01T10:00:00Z
LDAP = {"connections": 3, "connections_total": 10, "requests": {"search": 40, "bind": 2}, "requests_total": 42}

SOURCE_KEYS = {"name", "type", "state", "contacts", "reason", "until", "progress", "last_success", "next_sync",
               "throttling_events", "last_error"}
PROGRESS_KEYS = {"pages", "contacts", "started", "elapsed_seconds", "rate", "total", "total_estimated", "percent",
                 "eta_seconds", "eta"}


def m365(state: str, **changes) -> M365Source:
    sync = SyncState()
    sync.state = state
    for key, value in changes.items():
        setattr(sync, key, value)
    return M365Source("m365", None, ContactIndex(), Clock(), "https://graph.example", 300.0,  # type: ignore[arg-type]
                      identity=("tenant", "client"), state=sync)


def one(raw, index_counts=None, snapshot_age=12.5):
    doc = build_status(NOW, [raw], index_counts or {}, snapshot_age, LDAP)
    json.dumps(doc)  # must be JSON-serialisable
    (source,) = doc["sources"]
    assert set(source) >= SOURCE_KEYS
    return doc, source


def test_iso():
    assert iso(NOW) == "2024-05-01T10:00:00Z"
    assert iso(None) is None


def test_importing_with_known_total_has_progress_rate_and_eta():
    raw = m365_status(m365("importing", pages=58, imported=58_000, import_started=NOW - 48.0,
                           next_sync=NOW + 300, throttled=2), total=100_000)
    doc, s = one(raw, {"m365": 58_000})
    assert s["state"] == "importing"
    assert s["contacts"] == 58_000
    p = s["progress"]
    assert set(p) == PROGRESS_KEYS
    assert p["pages"] == 58 and p["contacts"] == 58_000
    assert p["rate"] == pytest.approx(58_000 / 48, rel=1e-3)
    assert p["total"] == 100_000 and p["total_estimated"] is False
    assert p["percent"] == 58.0
    assert p["eta_seconds"] == pytest.approx(42_000 / (58_000 / 48), abs=0.1)
    assert p["started"] == "2024-05-01T09:59:12Z"
    assert s["throttling_events"] == 2
    assert s["until"] is None and s["reason"] is None
    assert doc["ok"] is True


def test_first_import_without_a_total_has_no_eta():
    raw = m365_status(m365("importing", pages=3, imported=3_000, import_started=NOW - 10.0))
    _, s = one(raw, {"m365": 3_000})
    p = s["progress"]
    assert p["total"] is None and p["percent"] is None and p["eta_seconds"] is None
    assert p["rate"] == 300.0


def test_re_import_estimates_the_total_from_the_old_data_in_the_index():
    raw = m365_status(m365("importing", pages=10, imported=25_000, import_started=NOW - 25.0))
    _, s = one(raw, {"m365": 100_000})
    p = s["progress"]
    assert p["total"] == 100_000 and p["total_estimated"] is True
    assert p["percent"] == 25.0
    assert p["eta_seconds"] == 75.0
    assert p["eta"] == "2024-05-01T10:01:15Z"
    assert s["contacts"] == 100_000  # what is being served


def test_backing_off_during_an_import_keeps_the_progress():
    raw = m365_status(m365("backing_off", pages=5, imported=5_000, import_started=NOW - 5.0,
                           backoff_until=NOW + 30, throttled=1, last_error="throttled (429), Retry-After 30"))
    _, s = one(raw)
    assert s["state"] == "backing_off"
    assert s["until"] == "2024-05-01T10:00:30Z"
    assert s["progress"]["contacts"] == 5_000
    assert s["last_error"].startswith("throttled")


def test_backing_off_in_a_delta_round_has_no_progress():
    raw = m365_status(m365("backing_off", delta_link="https://graph.example/delta?token=x",
                           backoff_until=NOW + 8, last_success=NOW - 600))
    _, s = one(raw, {"m365": 500})
    assert s["progress"] is None
    assert s["until"] == "2024-05-01T10:00:08Z"
    assert s["last_success"] == "2024-05-01T09:50:00Z"


def test_idle():
    raw = m365_status(m365("idle", delta_link="x", last_success=NOW - 60, next_sync=NOW + 240, throttled=4,
                           last_error="throttled (429), Retry-After 2"))
    doc, s = one(raw, {"m365": 1234})
    assert s == {
        "name": "m365",
        "type": "m365_mail_contacts",
        "state": "idle",
        "contacts": 1234,
        "reason": None,
        "until": None,
        "progress": None,
        "last_success": "2024-05-01T09:59:00Z",
        "next_sync": "2024-05-01T10:04:00Z",
        "throttling_events": 4,
        "last_error": "throttled (429), Retry-After 2",
    }
    assert doc["ok"] is True


def test_failed_has_the_reason_and_makes_the_document_not_ok():
    reason = "permission missing: the app needs OrgContact.Read.All"
    raw = m365_status(m365("failed", reason=reason, last_error=reason, delta_link="x", last_success=NOW - 3600))
    doc, s = one(raw, {"m365": 900})
    assert s["state"] == "failed"
    assert s["reason"] == reason
    assert s["contacts"] == 900  # still served from the last good data
    assert doc["ok"] is False


def test_whole_document():
    raws = [
        m365_status(m365("idle", delta_link="x", last_success=NOW - 10)),
        {"name": "file", "type": "json_file", "state": "idle", "contacts": 7},
    ]
    doc = build_status(NOW, raws, {"m365": 100, "file": 7}, None, LDAP)
    assert doc["generated"] == "2024-05-01T10:00:00Z"
    assert [s["name"] for s in doc["sources"]] == ["m365", "file"]
    assert doc["index"] == {"contacts": 107, "by_source": {"m365": 100, "file": 7}}
    assert doc["snapshot"] == {"age_seconds": None}
    assert doc["ldap"] == {"connections": 3, "connections_total": 10, "requests": {"search": 40, "bind": 2},
                           "requests_total": 42}
    doc = build_status(NOW, [], {}, 12.3456, {})
    assert doc["snapshot"]["age_seconds"] == 12.346
    assert doc["ldap"] == {"connections": 0, "connections_total": 0, "requests": {}, "requests_total": 0}


def test_json_file_adapter(tmp_path):
    path = tmp_path / "contacts.json"
    path.write_text(json.dumps({"value": [{"id": "1", "displayName": "Anna", "phones": []}]}), encoding="utf-8")
    index = ContactIndex()
    source = JsonFileSource("file", str(path), index.replace_source, Clock())
    source.load()
    raw = source_status(source)
    assert raw == json_file_status(source)
    _, s = one(raw)
    assert s["state"] == "idle" and s["contacts"] == 1 and s["type"] == "json_file"
    assert s["path"] == str(path)
    assert s["last_success"] is None
    path.write_text("{broken", encoding="utf-8")
    source.load()
    _, s = one(json_file_status(source), {"file": 1})
    assert s["state"] == "failed"
    assert "not valid JSON" in s["reason"]
    assert s["contacts"] == 1


def test_source_status_dispatch():
    class Custom:
        def status(self):
            return {"name": "x", "type": "custom", "state": "idle"}

    assert isinstance(Custom(), SourceStatus)
    assert source_status(Custom())["type"] == "custom"
    assert source_status(m365("idle"))["type"] == "m365_mail_contacts"
    with pytest.raises(TypeError):
        source_status(object())

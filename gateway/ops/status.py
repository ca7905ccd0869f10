"""The status document served as ``GET /status``.

Sources describe themselves as a flat dict of raw facts (``SourceStatus.status()``, or the
adapters ``m365_status`` / ``json_file_status`` for the existing source classes), with times as
epoch seconds.  ``build_status`` is pure: it turns those facts, the index counts, the snapshot
age and the LDAP counters into the JSON document, with ISO 8601 UTC times, import progress,
rate and ETA.

Raw source facts (all keys optional except ``name``, ``type`` and ``state``)::

    name, type, state        state: starting | importing | idle | backing_off | failed
    importing                True while a full import runs (also while it backs off)
    reason                   why the source failed
    contacts                 contacts the source holds (the index count wins when known)
    pages, imported          import progress: pages fetched, contacts staged so far
    import_started           when the running import started (epoch seconds)
    total                    expected contacts of the running import, when known
    last_success, next_sync, backoff_until   epoch seconds
    throttled                throttling events seen
    last_error               the last error message
    path                     (json_file) the file

The document::

    {"generated": ISO, "ok": bool, "sources": [source, ...],
     "index": {"contacts": N, "by_source": {name: N}},
     "snapshot": {"age_seconds": float | None},
     "ldap": {"connections": N, "connections_total": N, "requests": {op: N}, "requests_total": N}}

    source = {"name", "type", "state", "contacts", "reason", "until", "progress",
              "last_success", "next_sync", "throttling_events", "last_error"}
    progress = {"pages", "contacts", "started", "elapsed_seconds", "rate", "total",
                "total_estimated", "percent", "eta_seconds", "eta"}   (None unless importing)
"""

from __future__ import annotations

import datetime
from typing import Any, Iterable, Mapping, Protocol, runtime_checkable

__all__ = [
    "SourceStatus",
    "STATES",
    "build_status",
    "source_document",
    "iso",
    "m365_status",
    "json_file_status",
    "source_status",
]

STATES = ("starting", "importing", "idle", "backing_off", "failed")


@runtime_checkable
class SourceStatus(Protocol):
    """What a source exposes for the status document."""

    def status(self) -> dict[str, Any]:
        """Raw facts about the source (see the module docstring)."""


def iso(when: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC (``2024-05-01T10:00:00Z``), None for None."""
    if when is None:
        return None
    stamp = datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
    text = stamp.isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _progress(now: float, raw: Mapping[str, Any], index_count: int | None) -> dict[str, Any]:
    imported = int(raw.get("imported") or 0)
    started = _number(raw.get("import_started"))
    elapsed = max(0.0, now - started) if started is not None else None
    rate = imported / elapsed if elapsed and elapsed > 0 else None
    total = raw.get("total")
    estimated = False
    if total is None and index_count is not None and index_count > imported:
        # a re-import is staged while the old data stays in the index: its size is a fair estimate
        total = index_count
        estimated = True
    elif total is not None:
        estimated = bool(raw.get("total_estimated", False))
    percent = eta = None
    if total:
        total = int(total)
        done = min(imported, total)
        percent = round(100.0 * done / total, 1)
        if rate:
            eta = max(0.0, (total - done) / rate)
    return {
        "pages": int(raw.get("pages") or 0),
        "contacts": imported,
        "started": iso(started),
        "elapsed_seconds": round(elapsed, 3) if elapsed is not None else None,
        "rate": round(rate, 1) if rate is not None else None,
        "total": total if total else None,
        "total_estimated": estimated if total else False,
        "percent": percent,
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "eta": iso(now + eta) if eta is not None else None,
    }


def source_document(now: float, raw: Mapping[str, Any], index_count: int | None = None) -> dict[str, Any]:
    """One source's entry of the status document."""
    state = str(raw.get("state") or "starting")
    importing = bool(raw.get("importing", state == "importing"))
    contacts = index_count if index_count is not None else raw.get("contacts")
    return {
        "name": raw["name"],
        "type": raw.get("type"),
        "state": state,
        "contacts": int(contacts or 0),
        "reason": raw.get("reason") if state == "failed" else None,
        "until": iso(_number(raw.get("backoff_until"))) if state == "backing_off" else None,
        "progress": _progress(now, raw, index_count) if importing else None,
        "last_success": iso(_number(raw.get("last_success"))),
        "next_sync": iso(_number(raw.get("next_sync"))),
        "throttling_events": int(raw.get("throttled") or 0),
        "last_error": raw.get("last_error"),
        **({"path": raw["path"]} if raw.get("path") else {}),
    }


def build_status(
    now: float,
    sources: Iterable[Mapping[str, Any]],
    index_counts: Mapping[str, int],
    snapshot_age: float | None,
    ldap: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``GET /status`` document (pure: everything comes in as arguments).

    ``sources``: raw facts per source (``SourceStatus.status()``); ``index_counts``: contacts in
    the index per source; ``snapshot_age``: seconds since the last snapshot was saved (None:
    never); ``ldap``: ``Metrics.ldap_summary()``.
    """
    docs = [source_document(now, raw, index_counts.get(raw["name"])) for raw in sources]
    requests = dict(ldap.get("requests") or {})
    return {
        "generated": iso(now),
        "ok": not any(d["state"] == "failed" for d in docs),
        "sources": docs,
        "index": {"contacts": sum(index_counts.values()), "by_source": dict(index_counts)},
        "snapshot": {"age_seconds": round(snapshot_age, 3) if snapshot_age is not None else None},
        "ldap": {
            "connections": int(ldap.get("connections") or 0),
            "connections_total": int(ldap.get("connections_total") or 0),
            "requests": requests,
            "requests_total": int(ldap.get("requests_total", sum(requests.values())) or 0),
        },
    }


# -- adapters for the existing source classes (read-only) ----------------------


def m365_status(source: Any, total: int | None = None) -> dict[str, Any]:
    """Raw facts of an ``M365Source`` (reads ``source.name`` and ``source.state``, a ``SyncState``).

    ``total``: the expected size of a running import when the caller knows it (e.g. the count
    in the last snapshot); otherwise ``build_status`` estimates from the index during re-imports.
    """
    s = source.state
    importing = s.state == "importing" or (s.state == "backing_off" and s.delta_link is None)
    return {
        "name": source.name,
        "type": "m365_mail_contacts",
        "state": s.state,
        "importing": importing,
        "reason": s.reason,
        "contacts": s.imported if importing else None,
        "pages": s.pages,
        "imported": s.imported,
        "import_started": s.import_started,
        "total": total,
        "last_success": s.last_success,
        "next_sync": s.next_sync,
        "backoff_until": s.backoff_until,
        "throttled": s.throttled,
        "last_error": s.last_error,
    }


def json_file_status(source: Any) -> dict[str, Any]:
    """Raw facts of a ``JsonFileSource`` (``name``, ``path``, ``state``, ``last_error``, ``contacts``)."""
    return {
        "name": source.name,
        "type": "json_file",
        "state": source.state,
        "reason": source.last_error if source.state == "failed" else None,
        "contacts": source.contacts,
        "last_error": source.last_error,
        "path": getattr(source, "path", None),
    }


def source_status(source: Any) -> dict[str, Any]:
    """Raw facts of any source: its own ``status()`` if it has one, else the matching adapter."""
    if isinstance(source, SourceStatus):
        return source.status()
    from gateway.sources.json_file import JsonFileSource

    if isinstance(source, JsonFileSource):
        return json_file_status(source)
    if hasattr(getattr(source, "state", None), "import_started"):  # M365Source and its SyncState
        return m365_status(source)
    raise TypeError(f"no status adapter for {type(source).__name__}")

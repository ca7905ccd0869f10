"""``dirgw snapshot inspect``: the snapshot generations in a directory, as rows and as a table."""

from __future__ import annotations

from typing import Any

from gateway.snapshot.store import FileSnapshotStore, GenerationInfo

__all__ = ["inspect", "rows_of", "format_inspect"]


def rows_of(generations: list[GenerationInfo], now: float) -> list[dict[str, Any]]:
    """JSON-able rows, one per file (see :func:`inspect`)."""
    rows = []
    for g in generations:
        rows.append({
            "generation": g.generation,
            "path": g.path,
            "size": g.size,
            "mtime": g.mtime,
            "age_s": round(now - g.mtime, 3),
            "ok": g.ok,
            "reason": g.reason,
            "message": g.message,
            "created": g.created,
            "version": g.version,
            "sources": {
                name: {
                    "contacts": s.contacts,
                    "delta_link": s.delta_link,
                    "importing": s.importing,
                    "last_success": s.last_success,
                    "last_success_age_s": None if s.last_success is None else round(now - s.last_success, 3),
                    "identity": list(s.identity) if s.identity is not None else None,
                }
                for name, s in g.sources.items()
            },
            "extensions": dict(g.extensions),
        })
    return rows


def inspect(directory: str, now: float, full: bool = False) -> list[dict[str, Any]]:
    """One JSON-able row per snapshot file in ``directory``: generation, age, size, checksum, sources.

    ``generation`` is ``current``, ``previous``, ``bad`` (moved aside) or
    ``temp``; ``ok`` is False with ``reason`` and ``message`` for a file that
    is not a valid snapshot.  ``sources`` maps each source to its contact
    count and sync state (``delta_link``: it continues with delta rounds;
    ``importing``: an interrupted full import resumes; ``last_success``).
    ``extensions`` maps each extension to its size: ``index-base`` is the
    index's compact base a restart serves at once, ``index-changes`` the
    contacts changed since it was made.  ``full`` also decodes every contact
    (slower; the checksum already covers every byte).  Reads only; changes
    nothing.
    """
    return rows_of(FileSnapshotStore(directory).generations(full=full), now)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0:
        return "future"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def format_inspect(rows: list[dict[str, Any]], directory: str | None = None) -> str:
    """A readable table of :func:`inspect`'s rows (one line per source of each generation)."""
    if not rows:
        return f"no snapshots in {directory}" if directory else "no snapshots"
    header = ("GENERATION", "AGE", "SIZE", "STATUS", "SOURCE", "CONTACTS", "DELTA LINK", "IMPORTING", "LAST SUCCESS")
    lines: list[tuple[str, ...]] = []
    notes: list[str] = []
    for row in rows:
        first = (row["generation"], _age(row["age_s"]), _size(row["size"]))
        if not row["ok"]:
            status = row["reason"] or "bad"
            lines.append(first + (status, "-", "-", "-", "-", "-"))
            notes.append(f"{row['path']}: {row['reason']}: {row['message']}")
            continue
        sources = row["sources"]
        if not sources:
            lines.append(first + ("ok", "(none)", "0", "-", "-", "-"))
            continue
        for i, (name, s) in enumerate(sorted(sources.items())):
            lead = first + ("ok",) if i == 0 else ("", "", "", "")
            lines.append(lead + (name, str(s["contacts"]), _yes(s["delta_link"]), _yes(s["importing"]),
                                 _age(s["last_success_age_s"]) + (" ago" if s["last_success_age_s"] is not None
                                                                   else "")))
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    numeric = {1, 2, 5}
    out = []
    for r in [header, *lines]:
        cells = [c.rjust(w) if i in numeric and r is not header else c.ljust(w) for i, (c, w) in
                 enumerate(zip(r, widths))]
        out.append("  ".join(cells).rstrip())
    if directory:
        out.insert(0, f"snapshots in {directory}")
    for row in rows:
        if row.get("extensions"):
            parts = ", ".join(f"{name} {_size(size)}" for name, size in sorted(row["extensions"].items()))
            notes.insert(0, f"{row['generation']}: {parts}")
    if notes:
        out.append("")
        out.extend(notes)
    return "\n".join(out)

"""Configuration keys of an ``m365_mail_contacts`` source (filled in by the sync issue)."""

from __future__ import annotations

from typing import Any

__all__ = ["parse_m365_options"]


def parse_m365_options(table: Any, base: str) -> dict[str, Any]:
    """Read the Microsoft 365 keys of a source table (not yet supported)."""
    raise table.error("type", "m365_mail_contacts is not available yet in this version")

"""Decoded LDAP requests that dirgw answers itself, as plain values. Pure."""

from __future__ import annotations

from attrs import frozen

from gateway.ldap.filter import Filter

__all__ = ["Control", "SearchRequest", "SCOPE_BASE", "SCOPE_ONE", "SCOPE_SUB"]

SCOPE_BASE = 0
SCOPE_ONE = 1
SCOPE_SUB = 2


@frozen
class Control:
    """A request control: OID, criticality and the raw value (or None)."""

    oid: str
    critical: bool = False
    value: bytes | None = None


@frozen
class SearchRequest:
    """A SearchRequest (RFC 4511 §4.5.1)."""

    base: str
    scope: int
    filter: Filter
    attributes: tuple[str, ...] = ()
    size_limit: int = 0
    time_limit: int = 0
    types_only: bool = False
    deref_aliases: int = 0
    controls: tuple[Control, ...] = ()

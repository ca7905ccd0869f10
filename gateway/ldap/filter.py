"""Search filters as our own values (RFC 4511 §4.5.1), and their text form.

Pure.  Attribute names are kept as the client sent them; values are str
(decoded from UTF-8, or Latin-1 when the bytes are not UTF-8).  Evaluation
against entries lives in ``gateway.ldap.evaluate``.
"""

from __future__ import annotations

from typing import Union

from attrs import frozen

__all__ = [
    "And",
    "Or",
    "Not",
    "Equality",
    "Substrings",
    "Present",
    "GreaterOrEqual",
    "LessOrEqual",
    "Approx",
    "Extensible",
    "FuzzyName",
    "Filter",
    "decode_value",
    "to_text",
    "depth",
    "size",
]


@frozen
class And:
    items: tuple["Filter", ...]


@frozen
class Or:
    items: tuple["Filter", ...]


@frozen
class Not:
    item: "Filter"


@frozen
class Equality:
    attr: str
    value: str


@frozen
class Substrings:
    attr: str
    initial: str | None
    any: tuple[str, ...]
    final: str | None


@frozen
class Present:
    attr: str


@frozen
class GreaterOrEqual:
    attr: str
    value: str


@frozen
class LessOrEqual:
    attr: str
    value: str


@frozen
class Approx:
    attr: str
    value: str


@frozen
class Extensible:
    rule: str | None
    attr: str | None
    value: str
    dn_attributes: bool = False


@frozen
class FuzzyName:
    """A name item matched approximately: what the fuzzy fallback turns equality and initial
    substrings on names into.  Never decoded from the wire."""

    attr: str
    value: str
    prefix: bool = False
    threshold: float | None = None


Filter = Union[
    And, Or, Not, Equality, Substrings, Present, GreaterOrEqual, LessOrEqual, Approx, Extensible
]


def decode_value(raw: bytes) -> str:
    """Decode an assertion value: UTF-8, or Latin-1 for clients that send it."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _escape(value: str) -> str:
    out = []
    for ch in value:
        if ch in "*()\\" or ch == "\x00":
            out.append("\\%02x" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def to_text(f: Filter) -> str:
    """The RFC 4515 string form of a filter (for logs and tests)."""
    if isinstance(f, And):
        return "(&" + "".join(to_text(i) for i in f.items) + ")"
    if isinstance(f, Or):
        return "(|" + "".join(to_text(i) for i in f.items) + ")"
    if isinstance(f, Not):
        return "(!" + to_text(f.item) + ")"
    if isinstance(f, Equality):
        return f"({f.attr}={_escape(f.value)})"
    if isinstance(f, Substrings):
        parts = [_escape(f.initial or "")] + [_escape(a) for a in f.any] + [_escape(f.final or "")]
        return f"({f.attr}=" + "*".join(parts) + ")"
    if isinstance(f, Present):
        return f"({f.attr}=*)"
    if isinstance(f, GreaterOrEqual):
        return f"({f.attr}>={_escape(f.value)})"
    if isinstance(f, LessOrEqual):
        return f"({f.attr}<={_escape(f.value)})"
    if isinstance(f, Approx):
        return f"({f.attr}~={_escape(f.value)})"
    if isinstance(f, Extensible):
        head = (f.attr or "") + (":dn" if f.dn_attributes else "") + (f":{f.rule}" if f.rule else "")
        return f"({head}:={_escape(f.value)})"
    raise TypeError(f"not a filter: {f!r}")


def depth(f: Filter) -> int:
    """Nesting depth of a filter (a single item has depth 1)."""
    if isinstance(f, (And, Or)):
        return 1 + max((depth(i) for i in f.items), default=0)
    if isinstance(f, Not):
        return 1 + depth(f.item)
    return 1


def size(f: Filter) -> int:
    """Number of filter items, compound ones included."""
    if isinstance(f, (And, Or)):
        return 1 + sum(size(i) for i in f.items)
    if isinstance(f, Not):
        return 1 + size(f.item)
    return 1

"""Filter evaluation against entries, with RFC 4511 three-valued logic. Pure.

``True`` matches, ``False`` does not, ``None`` is Undefined (an unknown
attribute, say): it does not match, and NOT of Undefined is Undefined, so
one odd branch never spoils an OR.
"""

from __future__ import annotations

from typing import Protocol

from gateway.ldap import filter as F
from gateway.ldap.schema import OBJECT_CLASSES, PHONE_ATTRIBUTES, canonical_attribute
from gateway.numbers import StoredNumber
from gateway.fuzzy import expand_umlauts, query_variants
from gateway.text import fold

__all__ = ["AttributeView", "EntryView", "PhoneQueries", "evaluate", "substring_match"]

_OBJECT_CLASSES = frozenset(fold(c) for c in OBJECT_CLASSES)
_PHONES = frozenset(PHONE_ATTRIBUTES)
#: Extensible-match rules we understand (all equality-like on our syntaxes).
_EQUALITY_RULES = {None, "caseIgnoreMatch", "2.5.13.2", "caseExactMatch", "2.5.13.5",
                   "telephoneNumberMatch", "2.5.13.20", "distinguishedNameMatch", "2.5.13.1"}


class EntryView(Protocol):
    """What evaluation reads of an entry."""

    values: dict[str, tuple[str, ...]]
    folded: dict[str, tuple[str, ...]]
    numbers: dict[str, tuple[StoredNumber, ...]]


class PhoneQueries(Protocol):
    """How phone assertions are read; memoized per search by the caller."""

    def equality_keys(self, value: str) -> frozenset[str]: ...

    def substring_patterns(self, initial: str | None, any_: tuple[str, ...], final: str | None) -> object: ...

    def substring_matches(self, patterns: object, number: StoredNumber) -> bool: ...

    def ordering_key(self, value: str) -> str: ...


class AttributeView:
    """An entry given as (attribute, values) pairs (the base entry, the root DSE), for evaluation."""

    def __init__(self, attributes) -> None:
        self.values = {canonical_attribute(a) or a.lower(): tuple(v) for a, v in attributes}
        self.folded: dict = {}
        self.numbers: dict = {}


def substring_match(value: str, initial: str | None, any_: tuple[str, ...], final: str | None) -> bool:
    """Ordered substring match on already folded text."""
    pos = 0
    end = len(value)
    if initial:
        if not value.startswith(initial):
            return False
        pos = len(initial)
    if final:
        if len(value) - pos < len(final) or not value.endswith(final):
            return False
        end = len(value) - len(final)
    for part in any_:
        if not part:
            continue
        found = value.find(part, pos, end)
        if found < 0:
            return False
        pos = found + len(part)
    return True


def _text_values(entry: EntryView, attr: str) -> tuple[str, ...] | None:
    folded = entry.folded.get(attr)
    if folded is not None:
        return folded
    raw = entry.values.get(attr)
    if raw is None:
        return None
    return tuple(fold(v) for v in raw)


def evaluate(f: F.Filter, entry: EntryView, phones: PhoneQueries) -> bool | None:
    """Does ``entry`` match ``f``?  True, False or None (Undefined)."""
    if isinstance(f, F.And):
        result: bool | None = True
        for item in f.items:
            r = evaluate(item, entry, phones)
            if r is False:
                return False
            if r is None:
                result = None
        return result
    if isinstance(f, F.Or):
        result = False
        for item in f.items:
            r = evaluate(item, entry, phones)
            if r is True:
                return True
            if r is None:
                result = None
        return result
    if isinstance(f, F.Not):
        r = evaluate(f.item, entry, phones)
        return None if r is None else not r
    if isinstance(f, F.Extensible):
        if f.attr is None or f.rule not in _EQUALITY_RULES:
            return False
        return evaluate(F.Equality(f.attr, f.value), entry, phones)
    if isinstance(f, F.FuzzyName):  # the fuzzy fallback's items
        attr = canonical_attribute(f.attr)
        values = entry.values.get(attr, ()) if attr else ()
        if not values:
            return False
        return phones.fuzzy(f.value, values, prefix=f.prefix, threshold=f.threshold, key=entry.key)

    name = f.attr.split(";", 1)[0].strip().lower()
    attr = canonical_attribute(name)
    if attr is None:
        if name == "objectcategory":
            return _match_fixed(f, entry.values.get("objectCategory", ()))
        return None
    if attr == "objectClass":
        return _match_fixed(f, entry.values.get("objectClass", OBJECT_CLASSES))
    if attr in _PHONES:
        return _match_phone(f, attr, entry, phones)
    if isinstance(f, F.Present):
        return attr in entry.values
    values = _text_values(entry, attr)
    if values is None:
        return False
    if isinstance(f, F.Approx):
        fuzzy = getattr(phones, "fuzzy", None)
        if fuzzy is not None and attr != "mail":
            return fuzzy(f.value, entry.values.get(attr, ()), key=getattr(entry, "key", None))
        return fold(f.value) in values
    variants = entry.variants.get(attr) if hasattr(entry, "variants") else None
    if isinstance(f, F.Equality):
        if variants is None:
            return fold(f.value) in values
        return any(q in variants for q in query_variants(f.value))
    if isinstance(f, F.Substrings):
        pool = variants if variants is not None else values
        for initial, anys, final in _substring_variants(f, variants is not None):
            if any(substring_match(v, initial, anys, final) for v in pool):
                return True
        return False
    if isinstance(f, F.GreaterOrEqual):
        wanted = fold(f.value)
        return any(v >= wanted for v in values)
    if isinstance(f, F.LessOrEqual):
        wanted = fold(f.value)
        return any(v <= wanted for v in values)
    return None


def _substring_variants(f: F.Substrings, expand: bool):
    """The substring pattern folded, and (for variant attributes) with umlauts expanded."""
    base = (fold(f.initial) if f.initial else None, tuple(fold(a) for a in f.any), fold(f.final) if f.final else None)
    yield base
    if expand:
        parts = [f.initial or "", *f.any, f.final or ""]
        if any(not p.isascii() for p in parts):
            yield (
                fold(expand_umlauts(f.initial)) if f.initial else None,
                tuple(fold(expand_umlauts(a)) for a in f.any),
                fold(expand_umlauts(f.final)) if f.final else None,
            )


def _match_fixed(f: F.Filter, present: tuple[str, ...]) -> bool | None:
    folded = tuple(fold(v) for v in present)
    if isinstance(f, F.Present):
        return bool(folded)
    if isinstance(f, (F.Equality, F.Approx)):
        return fold(f.value) in folded
    if isinstance(f, F.Substrings):
        initial = fold(f.initial) if f.initial else None
        final = fold(f.final) if f.final else None
        anys = tuple(fold(a) for a in f.any)
        return any(substring_match(v, initial, anys, final) for v in folded)
    if isinstance(f, F.GreaterOrEqual):
        return any(v >= fold(f.value) for v in folded)
    if isinstance(f, F.LessOrEqual):
        return any(v <= fold(f.value) for v in folded)
    return None


def _match_phone(f: F.Filter, attr: str, entry: EntryView, phones: PhoneQueries) -> bool | None:
    numbers = entry.numbers.get(attr)
    if isinstance(f, F.Present):
        return bool(numbers)
    if not numbers:
        return False
    if isinstance(f, (F.Equality, F.Approx)):
        keys = phones.equality_keys(f.value)
        if any(k in keys for n in numbers for k in n.match_keys()):
            return True
        return any("alt:" + k in keys for n in numbers for k in n.alternative_keys())
    if isinstance(f, F.Substrings):
        patterns = phones.substring_patterns(f.initial, f.any, f.final)
        return any(phones.substring_matches(patterns, n) for n in numbers)
    if isinstance(f, F.GreaterOrEqual):
        wanted = phones.ordering_key(f.value)
        return any((n.e164 or n.digits) >= wanted for n in numbers)
    if isinstance(f, F.LessOrEqual):
        wanted = phones.ordering_key(f.value)
        return any((n.e164 or n.digits) <= wanted for n in numbers)
    return None

"""Substring filters on phone attributes, normalized the way phones send them.

Phones send prefixes while the user dials ("089*", "+4989*"), contains
("*1234*"), suffixes ("*4989123456", caller ID in FreePBX Superfecta) and
per-digit wildcards ("0*8*9*1*2*", AudioCodes).  :func:`substring_patterns`
turns the pieces of an LDAP substring assertion into digit patterns (with
variants for the outside line, the local area and "+"/"00");
:func:`substring_matches` tests them against
:meth:`StoredNumber.search_forms`.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from gateway.numbers.normalize import strip_separators
from gateway.numbers.settings import NumberSettings
from gateway.numbers.stored import StoredNumber

__all__ = ["Pattern", "match_pattern", "substring_matches", "substring_patterns"]

#: (initial, any pieces in order, final); None for a missing initial/final.
Pattern = tuple[str | None, tuple[str, ...], str | None]

_UNUSABLE = object()


def _clean(piece: str) -> str | object:
    """Digits of one piece (a leading "+" kept); :data:`_UNUSABLE` if not a number piece."""
    text = strip_separators(piece)
    plus = text.startswith("+")
    body = text[1:] if plus else text
    if not body.isdigit():
        return "" if not body and not plus else _UNUSABLE
    return ("+" if plus else "") + body


def _leading_variants(piece: str, settings: NumberSettings, allow_local: bool) -> list[str]:
    """The piece as sent, plus the readings the configuration allows for its start.

    "+49..." <-> "0049..." (international prefix), the outside line dropped
    ("0089" -> "089"), and, for a prefix, a local number completed with the
    area code ("1234" -> "0891234").
    """
    out = [piece]
    idd, trunk, line = settings.idd, settings.trunk, settings.outside_line
    if piece.startswith("+"):
        out.append(idd + piece[1:])
        return out
    if piece.startswith(idd):
        out.append("+" + piece[len(idd):])
    stripped = [piece]
    if line and piece.startswith(line):
        rest = piece[len(line):]
        stripped.append(rest)
        out.append(rest)
        if rest.startswith(idd):
            out.append("+" + rest[len(idd):])
    if allow_local and settings.area_code:
        for candidate in stripped:
            if not candidate:
                continue
            if (trunk and candidate.startswith(trunk)) or candidate.startswith(idd):
                continue
            out.append(trunk + settings.area_code + candidate)
    return list(dict.fromkeys(out))


def substring_patterns(
    initial: str | None,
    any_: Iterable[str],
    final: str | None,
    settings: NumberSettings,
) -> tuple[Pattern, ...]:
    """Normalize a substring assertion on a phone attribute into digit patterns.

    Separators are removed from every piece; empty pieces are dropped.  The
    leading piece (the initial, else a lone ``any`` or a lone final) gets the
    variants of :func:`_leading_variants`.  A piece that is not a number
    ("*abc*") gives no pattern at all: nothing matches.  Results are cached.
    """
    pieces = tuple(any_)
    try:
        return _patterns_cached(initial, pieces, final, settings)
    except TypeError:  # an unhashable piece: no cache
        return _patterns(initial, pieces, final, settings)


#: How many substring assertions :func:`substring_patterns` remembers.
PATTERNS_CACHE_SIZE = 4096


@lru_cache(maxsize=PATTERNS_CACHE_SIZE)
def _patterns_cached(
    initial: str | None, any_: tuple[str, ...], final: str | None, settings: NumberSettings
) -> tuple[Pattern, ...]:
    return _patterns(initial, any_, final, settings)


def _patterns(
    initial: str | None, any_: tuple[str, ...], final: str | None, settings: NumberSettings
) -> tuple[Pattern, ...]:
    ci = None if initial is None else _clean(initial)
    cf = None if final is None else _clean(final)
    anys = [_clean(piece) for piece in any_]
    if ci is _UNUSABLE or cf is _UNUSABLE or any(a is _UNUSABLE for a in anys):
        return ()
    ci = ci or None
    cf = cf or None
    pieces = tuple(a for a in anys if a)
    patterns: list[Pattern] = []
    if ci is not None:
        for variant in _leading_variants(ci, settings, allow_local=True):
            patterns.append((variant or None, pieces, cf))
    elif len(pieces) == 1 and cf is None:
        for variant in _leading_variants(pieces[0], settings, allow_local=False):
            if variant:
                patterns.append((None, (variant,), None))
    elif not pieces and cf is not None:
        for variant in _leading_variants(cf, settings, allow_local=False):
            if variant:
                patterns.append((None, (), variant))
    else:
        patterns.append((None, pieces, cf))
    return tuple(dict.fromkeys(patterns))


def match_pattern(pattern: Pattern, text: str) -> bool:
    """LDAP substring semantics: initial prefix, each piece in order after it, final suffix."""
    initial, pieces, final = pattern
    pos = 0
    if initial is not None:
        if not text.startswith(initial):
            return False
        pos = len(initial)
    for piece in pieces:
        found = text.find(piece, pos)
        if found < 0:
            return False
        pos = found + len(piece)
    if final is not None:
        return len(text) - len(final) >= pos and text.endswith(final)
    return True


def substring_matches(patterns: Iterable[Pattern], stored: StoredNumber) -> bool:
    """True when any pattern matches any search form of ``stored``."""
    forms = stored.search_forms()
    return any(match_pattern(pattern, form) for pattern in patterns for form in forms)

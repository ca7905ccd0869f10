"""Proximity search: the company head number a caller's number extends.

When a caller-ID lookup finds nothing, the caller may be calling from an
extension of a company whose head number is stored ("+49 89 1234-0" stored,
"+49 89 1234 999" calling).  :func:`proximity_candidates` lists the head keys
to probe; the index keeps company records under :attr:`StoredNumber.head`
(see :func:`proximity_keys`).
"""

from __future__ import annotations

import phonenumbers

from gateway.numbers.settings import DEFAULT_MAX_EXTENSION_DIGITS
from gateway.numbers.stored import StoredNumber

__all__ = ["MIN_HEAD_SUBSCRIBER_DIGITS", "proximity_candidates", "proximity_keys"]

#: A head keeps at least this many digits after the country code.
MIN_HEAD_SUBSCRIBER_DIGITS = 4


def proximity_candidates(
    e164: str, max_extension_digits: int = DEFAULT_MAX_EXTENSION_DIGITS
) -> tuple[str, ...]:
    """Head keys to probe for ``e164``: 1..max trailing digits removed, longest first.

    A candidate keeps at least the country code plus
    :data:`MIN_HEAD_SUBSCRIBER_DIGITS` digits.  Not an E.164 number (or an
    unknown country code): no candidates.
    """
    if not isinstance(e164, str) or not e164.startswith("+") or not e164[1:].isdigit():
        return ()
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    keep = 1 + len(str(number.country_code)) + MIN_HEAD_SUBSCRIBER_DIGITS
    out = []
    for cut in range(1, max(0, max_extension_digits) + 1):
        if len(e164) - cut < keep:
            break
        out.append(e164[:-cut])
    return tuple(out)


def proximity_keys(stored: StoredNumber) -> tuple[str, ...]:
    """Head keys under which ``stored`` is a proximity target.

    The head of a number written as head plus extension, or of the
    switchboard ("+49 89 1234-0" -> "+49891234").  The index decides which
    contacts qualify (the switchboard's contact, or a company record).
    """
    if stored.head and stored.e164 and stored.head != stored.e164:
        return (stored.head,)
    return ()

"""Numbers as stored in contacts: normalized once, at import.

:func:`parse_stored` reads a number as a person typed it ("+49 (0)89 1234-567",
"089/1234567", "-217", "+1 (415) 555-0100 x12", "tel:+4989...") and returns a
:class:`StoredNumber` that keeps the text, the E.164 form, a written extension,
where a company head number ends, and the digit strings used for substring
matching.  It never raises: a number that cannot be read gets ``e164=None``
and stays searchable by its digits.

A number written without country code is read in the PBX's country.  When
the contact (or its company) shows by its other numbers that it is in another
country, pass those regions as ``regions`` (see :func:`region_hints`): the
number is then also read there, the most plausible reading becomes ``e164``
and the others are kept as ``alternatives``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import phonenumbers
from attrs import frozen

from gateway.numbers.normalize import (
    digits_of,
    extension_key,
    head_of,
    region_prefixes,
    split_text,
    to_bare_national,
    to_number,
)
from gateway.numbers.settings import DEFAULT_MAX_EXTENSION_DIGITS, NumberSettings

__all__ = ["StoredNumber", "parse_stored", "region_hints", "search_forms_of"]

_E164 = phonenumbers.PhoneNumberFormat.E164


@frozen
class StoredNumber:
    """One stored number, normalized.

    ``raw``: as stored/typed.
    ``e164``: "+49891234567"; None when it cannot be normalized.
    ``extension``: an extension the E.164 does not include ("12" of "... x12").
    ``head``: E.164 of the company head number when the number is written as
    head plus extension ("+49 89 1234-567" -> "+49891234"), or belongs to the
    configured main number ("-217").
    ``is_head``: the number is the head/switchboard number itself ("+49 89 1234-0").
    ``digits``: the digits of ``raw``; the fallback key when ``e164`` is None.
    ``forms``: digit strings for substring matching (see :meth:`search_forms`).
    ``kind``: how it was read: international, national, local, extension, unreadable.
    ``problem``: why it could not be normalized (None when it could).
    ``alternatives``: other E.164 readings of a number written without country
    code, when the contact's country is in doubt (see ``regions`` of
    :func:`parse_stored`); lower-priority index keys.
    """

    raw: str
    e164: str | None
    extension: str | None
    head: str | None
    is_head: bool
    digits: str
    forms: tuple[str, ...] = ()
    kind: str = ""
    problem: str | None = None
    alternatives: tuple[str, ...] = ()

    def match_keys(self) -> tuple[str, ...]:
        """Exact-match index keys, E.164 first.

        A written extension that the E.164 does not include adds the key
        ``E164;ext=N`` (what :func:`dialled_readings` gives for a bare extension
        of a main number without direct dial-in).  A number that could not be
        normalized has its bare digits (no "+") as its only key.
        """
        if self.e164:
            if self.extension:
                return (self.e164, extension_key(self.e164, self.extension))
            return (self.e164,)
        return (self.digits,) if self.digits else ()

    def alternative_keys(self) -> tuple[str, ...]:
        """Lower-priority keys: probe them only when no reading hits a :meth:`match_keys` key."""
        return self.alternatives

    def search_forms(self) -> tuple[str, ...]:
        """Digit strings for prefix/contains/suffix matching.

        National ("0891234567", numbers of the PBX's own country), international
        with "+" and with the international prefix ("+49891234567",
        "0049891234567"), the internal extension for numbers of the own main
        number ("217"); the raw digits when the number is not normalized.
        """
        if self.forms:
            return self.forms
        return (self.digits,) if self.digits else ()


def _unreadable(raw: str, digits: str, problem: str, kind: str = "unreadable") -> StoredNumber:
    return StoredNumber(
        raw=raw,
        e164=None,
        extension=None,
        head=None,
        is_head=False,
        digits=digits,
        forms=(digits,) if digits else (),
        kind=kind,
        problem=problem,
    )


def _national_format_digits(e164: str) -> str | None:
    """Digits of the national format of a valid number ("13123456789" for a Chinese mobile)."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:  # pragma: no cover - e164 was parsed before
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return digits_of(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL))


def search_forms_of(e164: str, settings: NumberSettings, head: str | None = None) -> tuple[str, ...]:
    """The digit strings a stored E.164 number is matched against by substring filters."""
    forms = [e164, settings.idd + e164[1:]]
    cc = str(settings.country_code)
    if e164[1:].startswith(cc):  # country codes are prefix-free
        nsn = e164[1 + len(cc):]
        try:
            nsn = phonenumbers.national_significant_number(phonenumbers.parse(e164, None))
        except phonenumbers.NumberParseException:  # pragma: no cover - e164 was parsed before
            pass
        forms.insert(0, settings.trunk + nsn)
        if settings.national_prefix_optional:
            forms.append(nsn)
        else:
            national = _national_format_digits(e164)
            if national:
                forms.append(national)
    if (
        head is not None
        and head == settings.main_head
        and head != settings.main_e164
        and 0 < len(e164) - len(head) <= max(settings.extension_length, 1)
    ):
        forms.append(e164[len(head):])
    return tuple(dict.fromkeys(forms))


# Kinds of candidates written without national prefix (see to_bare_national).
_BARE = "bare national"
_BARE_LENIENT = "bare national (prefix optional)"


def _national_candidates(
    digits: str, region: str, settings: NumberSettings
) -> list[tuple[str, str, str]]:
    """Readings (text, region, kind) of digits written without country code in ``region``."""
    own = region == settings.country
    if own:
        idd, trunk = settings.idd, settings.trunk
        optional = settings.national_prefix_optional
    else:
        idd, trunk = region_prefixes(region)
        optional = phonenumbers.country_code_for_region(region) == 1 or not trunk
    if digits.startswith(idd):
        return []  # an international number; read elsewhere
    if trunk and digits.startswith(trunk):
        return [(digits, region, "national")]
    out = []
    if own and settings.area_code:
        out.append((trunk + settings.area_code + digits, region, "local"))
    out.append((digits, region, _BARE_LENIENT if optional else _BARE))
    return out


def _read(
    candidates: Iterable[tuple[str, str | None, str, int]],
) -> list[tuple[str, str, bool, int]]:
    """(e164, kind, valid, tier) of every usable candidate, distinct E.164s, in order."""
    out: dict[str, tuple[str, str, bool, int]] = {}
    for text, region, kind, tier in candidates:
        if kind in (_BARE, _BARE_LENIENT) and region is not None:
            number = to_bare_national(text, region, lenient=kind == _BARE_LENIENT)
            kind = "national"
        else:
            number = to_number(text, region)
        if number is None:
            continue
        e164 = phonenumbers.format_number(number, _E164)
        if e164 not in out:
            out[e164] = (e164, kind, phonenumbers.is_valid_number(number), tier)
    return list(out.values())


def parse_stored(
    raw: str, settings: NumberSettings, *, regions: Sequence[str] = ()
) -> StoredNumber:
    """Normalize a stored number; never raises (``e164=None`` when unreadable).

    ``regions``: other ISO regions the contact may be in (most likely first,
    e.g. from :func:`region_hints`).  A number written without country code
    is read in each of them, in ``settings.country`` and in
    ``settings.other_countries``.  The ``e164`` comes from the first of these
    tiers that gives any reading: the contact's regions, else the PBX's
    country, else the other countries; within a tier the first valid reading
    wins, else the first possible one.  All other readings become
    ``alternatives`` (lower-priority index keys).  Local completion and bare
    extensions use the PBX's own area code and main number only.
    """
    raw_text = raw if isinstance(raw, str) else ""
    digits = digits_of(raw_text)
    parts = split_text(raw_text)
    if parts is None:
        return _unreadable(raw_text, digits, "not a phone number" if raw_text.strip() else "empty")
    d = parts.digits
    candidates: list[tuple[str, str | None, str, int]] = []
    if parts.plus:
        candidates.append(("+" + d, None, "international", 0))
    elif d.startswith(settings.idd):
        candidates.append(("+" + d[len(settings.idd):], None, "international", 0))
    elif parts.leading_dash or len(d) <= settings.extension_length:
        if settings.main_head is None:
            return _unreadable(raw_text, digits, "extension without main number", "extension")
        if settings.main_head == settings.main_e164:
            # No dash in the main number: extensions are not direct-dial numbers
            # (typical outside Germany); they share the main number's E.164.
            return StoredNumber(
                raw=raw_text,
                e164=settings.main_e164,
                extension=d,
                head=settings.main_head,
                is_head=False,
                digits=digits,
                forms=search_forms_of(settings.main_e164, settings) + (d,),
                kind="extension",
            )
        candidates.append((settings.main_head + d, None, "extension", 0))
    else:
        tiers = [(region, 0) for region in regions]
        tiers += [(settings.country, 1)] + [(region, 2) for region in settings.other_countries]
        seen = set()
        for region, tier in tiers:
            if region in phonenumbers.SUPPORTED_REGIONS and region not in seen:
                seen.add(region)
                candidates.extend(
                    (*candidate, tier) for candidate in _national_candidates(d, region, settings)
                )
    readings = _read(candidates)
    if not readings:
        problem = "cannot be normalized"
        if candidates and all(c[2] in (_BARE, _BARE_LENIENT) for c in candidates):
            problem = "no national prefix, country or area code"
        return _unreadable(raw_text, digits, problem)
    first_tier = min(r[3] for r in readings)
    tier_readings = [r for r in readings if r[3] == first_tier]
    e164, kind = next((r for r in tier_readings if r[2]), tier_readings[0])[:2]
    alternatives = tuple(r[0] for r in readings if r[0] != e164)
    head, is_head = _head(e164, kind, parts.dash_group, settings)
    return StoredNumber(
        raw=raw_text,
        e164=e164,
        extension=parts.extension,
        head=head,
        is_head=is_head,
        digits=digits,
        forms=search_forms_of(e164, settings, head),
        kind=kind,
        alternatives=alternatives,
    )


def _head(
    e164: str, kind: str, dash_group: str | None, settings: NumberSettings
) -> tuple[str | None, bool]:
    """(head, is_head) of a normalized number.

    From the writing ("+49 89 1234-567": the digits after the last dash are
    the extension), else from the configured main number when the number
    extends its head by at most a few digits.
    """
    main_head, main_e164 = settings.main_head, settings.main_e164
    if kind == "extension":
        return main_head, e164 == main_e164
    head = head_of(e164, dash_group, DEFAULT_MAX_EXTENSION_DIGITS)
    if head is not None:
        return head, not dash_group.strip("0")
    if (
        main_head is not None
        and main_head != main_e164
        and e164.startswith(main_head)
        and 0 < len(e164) - len(main_head) <= DEFAULT_MAX_EXTENSION_DIGITS
    ):
        return main_head, e164 == main_e164
    return None, False


def region_hints(raws: Iterable[str], settings: NumberSettings) -> tuple[str, ...]:
    """Foreign regions shown by numbers written with a country code, most frequent first.

    Pass the numbers of a contact (and of its company's other contacts); the
    result is the ``regions`` argument of :func:`parse_stored` for the
    numbers written without country code.  A region is listed only when more
    numbers show it than show the PBX's own country, which is never listed
    (it is always tried).
    """
    counts: Counter[str] = Counter()
    for raw in raws:
        parts = split_text(raw) if isinstance(raw, str) else None
        if parts is None:
            continue
        if parts.plus:
            text = "+" + parts.digits
        elif parts.digits.startswith(settings.idd):
            text = "+" + parts.digits[len(settings.idd):]
        else:
            continue
        number = to_number(text, None)
        if number is None:
            continue
        if number.country_code == settings.country_code:
            counts[settings.country] += 1
            continue
        region = phonenumbers.region_code_for_number(number) or (
            phonenumbers.region_code_for_country_code(number.country_code)
        )
        if region and region in phonenumbers.SUPPORTED_REGIONS:
            counts[region] += 1
    own = counts.pop(settings.country, 0)
    return tuple(region for region, count in counts.most_common() if count > own)

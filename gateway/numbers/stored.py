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

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import phonenumbers
from attrs import frozen

from gateway.numbers import fastpn
from gateway.numbers.normalize import (
    _ACCEPTED,
    _TOO_SHORT,
    MAX_E164_DIGITS,
    MIN_WRITTEN_NSN,
    digits_of,
    extension_key,
    head_of,
    read_bare_national,
    read_in_region,
    read_international,
    region_prefixes,
    split_text,
    split_with_digits,
)
from gateway.numbers.settings import DEFAULT_MAX_EXTENSION_DIGITS, NumberSettings

__all__ = ["StoredNumber", "parse_stored", "reads_regions", "region_hints", "search_forms_of"]

#: How many results :func:`parse_stored` keeps per (settings, regions): the
#: numbers of a company repeat over its contacts, and an unchanged contact
#: is read again when a source is re-synchronized.
PARSE_CACHE_SIZE = 8192
#: For how many (settings, regions) :func:`parse_stored` keeps results.
PARSE_CACHES = 16

_LENGTH_TABLE = fastpn.LENGTH_TABLE
_KEEP_PREFIX = fastpn.KEEP_PREFIX
_MAX_NSN = fastpn.MAX_NSN
_MAX_INPUT = fastpn.MAX_INPUT


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
    number = fastpn.parse(e164, None)
    if number is None or not fastpn.is_valid(number):
        return None
    return digits_of(fastpn.format_national(number))


def search_forms_of(
    e164: str,
    settings: NumberSettings,
    head: str | None = None,
    *,
    number: fastpn.Number | None = None,
) -> tuple[str, ...]:
    """The digit strings a stored E.164 number is matched against by substring filters.

    ``number``: the pair ``e164`` was written from, when the caller has it.
    """
    forms = [e164, settings.idd + e164[1:]]
    cc = str(settings.country_code)
    if e164[1:].startswith(cc):  # country codes are prefix-free
        nsn = e164[1 + len(cc):]
        number = fastpn.reparse(number) if number is not None else fastpn.parse(e164, None)
        if number is not None:
            nsn = number[1]
        forms.insert(0, settings.trunk + nsn)
        if settings.national_prefix_optional:
            forms.append(nsn)
        elif number is not None:
            # The national format's digits are a form of their own only for a
            # valid number; most often they are forms[0] already, and then
            # validity does not matter (the cheaper test first).
            national = fastpn.national_digits(number)
            if national is None:
                national = digits_of(fastpn.format_national(number))
            if national and national not in forms and fastpn.is_valid(number):
                forms.append(national)
    if (
        head is not None
        and head == settings.main_head
        and head != settings.main_e164
        and 0 < len(e164) - len(head) <= max(settings.extension_length, 1)
    ):
        forms.append(e164[len(head):])
    distinct: list[str] = []
    for form in forms:
        if form not in distinct:
            distinct.append(form)
    return tuple(distinct)


# Kinds of candidates written without national prefix (see to_bare_national).
_BARE = "bare national"
_BARE_LENIENT = "bare national (prefix optional)"


#: How a region reads digits written without country code: (region, tier,
#: own, international prefix, national prefix, prefix optional, compiled
#: metadata, the metadata's national prefix, compiled metadata of its calling
#: code, what the written-out reading of :func:`_read` needs or None).
_RegionPlan = tuple[str, int, bool, str, str, bool, Any, str, Any, Any]


def _fast_reader(home: Any, home_trunk: str, main: Any) -> tuple | None:
    """What :func:`_read` needs to read digits in one region without calling
    :func:`read_in_region`, where the region's international prefix is plain
    digits, its national prefix for parsing is plain digits (or a choice of
    them, "0|180020") starting with the one of :func:`region_prefixes`, and
    no prefix transform applies; else None.

    Digits written with the national prefix ("0" + rest): whether
    phonenumbers strips the prefix or keeps it, what :func:`read_number`
    makes of them is the same, ``(cc, rest)`` (kept, the prefix is dropped by
    reading "+<cc><rest>", which strips no second prefix when ``rest`` does
    not start with one), if ``rest`` is of a length the calling code accepts.
    Only a few lengths (``rest`` shorter than 2 digits, the digits longer
    than 17) make the two ways differ.  Digits without the national prefix
    read as ``(cc, digits)`` if of a length the calling code accepts.

    Returns (the national prefix written, the national prefixes, what
    digits with the prefix must not start with, what digits without it must
    not start with, calling code, "+" and its text, ``prefixed``, ``bare``):
    ``prefixed[n]`` for a ``rest`` of ``n`` digits is True (``(cc, rest)``),
    False (no reading) or None (ask :func:`read_in_region`); ``bare[n]``
    tells whether ``n`` digits without prefix give ``(cc, digits)``.
    Digits starting with the international prefix or the calling code are
    left to :func:`read_in_region` (phonenumbers reads them otherwise).
    """
    prefixes = home.npp_prefixes
    if (
        home.idd_literal is None
        or prefixes is None
        or prefixes[0] != home_trunk
        or home.transform
        or main.npp_prefixes != prefixes
        or main.transform
    ):
        return None
    npp = home_trunk
    cc_text = home.cc_str
    prefixed: list[bool | None] = []
    bare: list[bool] = []
    for size in range(_LENGTH_TABLE):
        reason = main.by_length[size]
        possible = len(cc_text) + size <= MAX_E164_DIGITS and reason in _ACCEPTED
        accepted = possible or (
            len(cc_text) + size <= MAX_E164_DIGITS
            and reason == _TOO_SHORT
            and size >= MIN_WRITTEN_NSN
        )
        stripped = accepted if size <= _MAX_NSN else False  # else parse gives None
        # Kept: the digits must pass parse's length limit, then "+<cc><rest>"
        # is read (at least 3 digits, a national number of 2 digits or more).
        if len(npp) + size > _MAX_NSN or size < 2 or len(cc_text) + size <= 2:
            kept = False
        else:
            kept = accepted
        prefixed.append(stripped if stripped == kept else None)
        bare.append(2 <= size <= _MAX_NSN and possible)
    blocked = (home.idd_literal, cc_text)
    return (
        npp, prefixes, blocked, blocked + prefixes, home.cc, "+" + cc_text,
        tuple(prefixed), tuple(bare),
    )


@lru_cache(maxsize=1024)
def _region_plan(settings: NumberSettings, regions: tuple[str, ...]) -> tuple[_RegionPlan, ...]:
    """The regions a national number is read in, in order, with what reading there needs."""
    tiers = [(region, 0) for region in regions]
    tiers += [(settings.country, 1)] + [(region, 2) for region in settings.other_countries]
    seen = set()
    plan = []
    for region, tier in tiers:
        if region in phonenumbers.SUPPORTED_REGIONS and region not in seen:
            seen.add(region)
            own = region == settings.country
            if own:
                idd, trunk = settings.idd, settings.trunk
                optional = settings.national_prefix_optional
            else:
                idd, trunk = region_prefixes(region)
                optional = phonenumbers.country_code_for_region(region) == 1 or not trunk
            home = fastpn.region_meta(region)
            main = fastpn.cc_meta(home.cc)
            home_trunk = region_prefixes(region)[1]
            fast = _fast_reader(home, home_trunk, main)
            plan.append((region, tier, own, idd, trunk, optional, home, home_trunk, main, fast))
    return tuple(plan)


@lru_cache(maxsize=1024)
def _read_plan(settings: NumberSettings, regions: tuple[str, ...]) -> tuple[tuple, tuple | None]:
    """(:func:`_region_plan`, :func:`_usual_plan`) of these settings and regions."""
    plans = _region_plan(settings, regions)
    return plans, _usual_plan(plans, bool(settings.area_code))


def _usual_plan(plans: tuple[_RegionPlan, ...], area: bool) -> tuple | None:
    """:func:`_read`'s plan for digits starting with "0", where every region
    reads them with the tables of :func:`_fast_reader`; else None.

    A region whose national prefix (the plan's and the metadata's) is "0"
    reads them with the prefix (the digits cannot start with a calling code);
    one whose prefix does not start with "0" reads them without (and, the
    PBX's own, not completed by an area code).  Entries: (with the prefix,
    international prefix, what the digits must not start with, what the rest
    must not start with, calling code, "+" and its text, the table, tier,
    whether any number will do without the prefix, region).
    """
    usual = []
    for region, tier, own, idd, trunk, optional, home, home_trunk, main, fast in plans:
        if fast is None:
            return None
        npp, prefixes, blocked, bare_blocked, cc, plus_cc, prefixed, bare = fast
        if trunk == "0" and npp == "0":
            usual.append((True, idd, blocked, prefixes, cc, plus_cc, prefixed, tier, optional, region))
        elif not trunk.startswith("0") and not (own and area):
            usual.append((False, idd, bare_blocked, (), cc, plus_cc, bare, tier, optional, region))
        else:
            return None
    return tuple(usual) if usual else None


def _read(
    d: str, plans: Sequence[_RegionPlan], settings: NumberSettings, usual: tuple | None = None
) -> tuple[list[tuple[str, str, fastpn.Number, int]], bool, bool]:
    """The readings of digits ``d`` written without country code in each region.

    Returns (e164, kind, number, tier) of every usable reading, distinct
    E.164s, in order; whether there was any candidate reading; whether all
    were readings without national prefix.  A reading is
    :func:`read_number`'s (:func:`read_bare_national`'s without national
    prefix).  This is the hot loop of reading stored numbers, so the usual
    case of :func:`read_in_region` (digits with the region's national prefix
    and nothing else in front) is written out here.
    """
    out: dict[str, tuple[str, str, fastpn.Number, int]] = {}
    area = settings.area_code
    plain = 2 <= len(d) <= _MAX_INPUT and d.isascii() and d.isdigit()
    if usual is not None and plain and d[0] == "0" and len(d) < _LENGTH_TABLE:
        # The loop below for digits starting with "0", where every region
        # reads them without read_in_region (unless the tables say no).
        rest = d[1:]
        size = len(rest)
        any_candidate = False
        all_bare = True
        for prefixed, idd, blocked, prefixes, cc, plus_cc, table, tier, lenient, region in usual:
            if d.startswith(idd):
                continue
            any_candidate = True
            if prefixed:
                all_bare = False
                if d.startswith(blocked) or rest.startswith(prefixes):
                    break
                result = table[size]
                if result is None:
                    break
                if result:
                    e164 = plus_cc + rest
                    if e164 not in out:
                        out[e164] = (e164, "national", (cc, rest), tier)
            else:
                if d.startswith(blocked):
                    break
                if table[size + 1]:
                    number = (cc, d)
                    if not lenient:
                        number = read_bare_national(d, region, False, number)
                        if number is None:
                            continue
                    e164 = plus_cc + d if number[1] is d else f"+{number[0]}{number[1]}"
                    if e164 not in out:
                        out[e164] = (e164, "national", number, tier)
        else:
            return list(out.values()), any_candidate, all_bare
        out.clear()  # a region reads them otherwise: the loop below
    any_candidate = False
    all_bare = True
    read = read_in_region
    for region, tier, own, idd, trunk, optional, home, home_trunk, main, fast in plans:
        if d.startswith(idd):
            continue  # an international number; read elsewhere
        any_candidate = True
        if trunk and d.startswith(trunk):
            all_bare = False
            if fast is not None and plain and d.startswith(fast[0]):
                # The usual case, read_in_region written out: the digits
                # start with the national prefix (and with neither the
                # international prefix nor the calling code, which
                # parse_national reads otherwise).
                npp, prefixes, blocked, _, cc, plus_cc, prefixed, _ = fast
                rest = d[len(npp):]
                size = len(rest)
                if (
                    size < _LENGTH_TABLE
                    and not d.startswith(blocked)
                    and not rest.startswith(prefixes)
                ):
                    result = prefixed[size]
                    if result:
                        e164 = plus_cc + rest
                        if e164 not in out:
                            out[e164] = (e164, "national", (cc, rest), tier)
                        continue
                    if result is False:
                        continue
            number = read(d, region, home, home_trunk, main)
            kind = "national"
        else:
            if own and area:
                all_bare = False
                number = read(trunk + area + d, region, home, home_trunk, main)
                if number is not None:
                    e164 = f"+{number[0]}{number[1]}"
                    if e164 not in out:
                        out[e164] = (e164, "local", number, tier)
            if fast is not None and plain and len(d) < _LENGTH_TABLE and not d.startswith(fast[3]):
                # read_in_region written out: nothing to strip.
                number = (fast[4], d) if fast[7][len(d)] else None
            else:
                number = read(d, region, home, home_trunk, main)
            if not optional and number is not None:
                number = read_bare_national(d, region, False, number)
            kind = "national"
        if number is not None:
            e164 = f"+{number[0]}{number[1]}"
            if e164 not in out:
                out[e164] = (e164, kind, number, tier)
    return list(out.values()), any_candidate, all_bare


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

    Results are cached by ``(raw, settings, regions)``; a :class:`StoredNumber`
    is immutable, so equal inputs may share one.
    """
    if isinstance(raw, str):
        key_regions = regions if isinstance(regions, tuple) else tuple(regions)
        try:
            parse = _parser(settings, key_regions)
        except TypeError:  # unhashable regions: read without the cache
            pass
        else:
            return parse(raw)
    return _parse_stored(raw, settings, tuple(regions))


@lru_cache(maxsize=PARSE_CACHES)
def _parser(settings: NumberSettings, regions: tuple[str, ...]) -> Any:
    """:func:`_parse_stored` for these settings and regions, cached by the text.

    A text alone is its own cache key: no key tuple per number, which with
    hundreds of thousands of numbers would keep the garbage collector busy.
    """

    @lru_cache(maxsize=PARSE_CACHE_SIZE)
    def parse(raw: str) -> StoredNumber:
        return _parse_stored(raw, settings, regions)

    return parse


def reads_regions(raw: str, settings: NumberSettings) -> bool:
    """Whether :func:`parse_stored` looks at ``regions`` to read ``raw``: only for a number
    written without country code (no "+", no international prefix) that is no extension.
    The others read the same whatever a contact's company suggests."""
    parts, _ = split_with_digits(raw if isinstance(raw, str) else "")
    return parts is not None and _written_as(parts, settings) is None


def _written_as(parts: Any, settings: NumberSettings) -> str | None:
    """What the way a number is written says without regions: "international" (with "+" or
    the international prefix) or "extension"; None for a number to read in regions."""
    d = parts.digits
    if parts.plus or d.startswith(settings.idd):
        return "international"
    if parts.leading_dash or len(d) <= settings.extension_length:
        return "extension"
    return None


def _parse_stored(raw: str, settings: NumberSettings, regions: tuple[str, ...]) -> StoredNumber:
    raw_text = raw if isinstance(raw, str) else ""
    parts, digits = split_with_digits(raw_text)
    if parts is None:
        return _unreadable(raw_text, digits, "not a phone number" if raw_text.strip() else "empty")
    d = parts.digits
    text = None
    kind = "international"
    written = _written_as(parts, settings)  # None: read in the regions below (reads_regions)
    if written == "international" and parts.plus:
        text = "+" + d
    elif written == "international":
        text = "+" + d[len(settings.idd):]
    elif written == "extension":
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
        text, kind = settings.main_head + d, "extension"
    if text is not None:
        number = read_international(text)
        readings = [] if number is None else [(f"+{number[0]}{number[1]}", kind, number, 0)]
        any_candidate, all_bare = True, False
    else:
        plans, usual = _read_plan(settings, regions)
        readings, any_candidate, all_bare = _read(d, plans, settings, usual)
    if not readings:
        problem = "cannot be normalized"
        if any_candidate and all_bare:
            problem = "no national prefix, country or area code"
        return _unreadable(raw_text, digits, problem)
    if len(readings) == 1:
        e164, kind, number = readings[0][:3]
        alternatives = ()
    else:
        # Readings come in the order of the regions, and so of their tiers.
        first_tier = readings[0][3]
        if readings[1][3] != first_tier:
            e164, kind, number = readings[0][:3]
        else:
            # The first valid reading of the tier, else its first: validity
            # is needed only where the tier has a choice.
            tier_readings = [r for r in readings if r[3] == first_tier]
            e164, kind, number = next(
                (r for r in tier_readings if fastpn.is_valid(r[2])), tier_readings[0]
            )[:3]
        alternatives = tuple([r[0] for r in readings if r[0] != e164])
    if parts.dash_group is None and settings.main_head is None:
        head, is_head = None, False  # what _head finds: nothing to find a head with
    else:
        head, is_head = _head(e164, kind, parts.dash_group, settings, number)
    return StoredNumber(
        raw=raw_text,
        e164=e164,
        extension=parts.extension,
        head=head,
        is_head=is_head,
        digits=digits,
        forms=search_forms_of(e164, settings, head, number=number),
        kind=kind,
        alternatives=alternatives,
    )


def _head(
    e164: str,
    kind: str,
    dash_group: str | None,
    settings: NumberSettings,
    number: fastpn.Number | None = None,
) -> tuple[str | None, bool]:
    """(head, is_head) of a normalized number.

    From the writing ("+49 89 1234-567": the digits after the last dash are
    the extension), else from the configured main number when the number
    extends its head by at most a few digits.
    """
    main_head, main_e164 = settings.main_head, settings.main_e164
    if kind == "extension":
        return main_head, e164 == main_e164
    head = head_of(e164, dash_group, DEFAULT_MAX_EXTENSION_DIGITS, number=number)
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


def region_tally(raws: Iterable[str], settings: NumberSettings) -> tuple[int, tuple[str, ...]]:
    """What a contact's numbers written with a country code show, for its company's hints:
    (how many are of the PBX's own country, the foreign region of each other one, in order).

    ``hints_from_tallies`` of the tallies of a company's contacts (in their order) is
    ``region_hints`` of all their numbers, so a company's hints are summed from tallies kept
    per contact instead of reading every colleague's numbers again.
    """
    return _tally(_international_texts(raws, settings), settings)


def hints_from_tallies(tallies: Iterable[tuple[int, tuple[str, ...]]], settings: NumberSettings) -> tuple[str, ...]:
    """``region_hints`` from ``region_tally`` results (see there)."""
    own = 0
    counts: dict[str, int] = {}
    for own_count, regions in tallies:
        own += own_count
        for region in regions:
            counts[region] = counts.get(region, 0) + 1
    if not counts:
        return ()
    # Counter.most_common: by count, ties in first-seen order (a stable sort).
    ranked = sorted(counts.items(), key=lambda item: item[1], reverse=True)
    return tuple(region for region, count in ranked if count > own and region != settings.country)


def region_hints(raws: Iterable[str], settings: NumberSettings) -> tuple[str, ...]:
    """Foreign regions shown by numbers written with a country code, most frequent first.

    Pass the numbers of a contact (and of its company's other contacts); the
    result is the ``regions`` argument of :func:`parse_stored` for the
    numbers written without country code.  A region is listed only when more
    numbers show it than show the PBX's own country, which is never listed
    (it is always tried).
    """
    texts = _international_texts(raws, settings)
    own_prefix = f"+{settings.country_code}"
    if all(text.startswith(own_prefix) for text in texts):
        # Calling codes are prefix-free: every number is of the own country
        # (or none), so no region can outnumber it.
        return ()
    return hints_from_tallies((_tally(texts, settings),), settings)


def _international_texts(raws: Iterable[str], settings: NumberSettings) -> list[str]:
    """The numbers written with a country code ("+..." or the IDD), as "+" and digits."""
    idd = settings.idd
    texts = []
    for raw in raws:
        parts = split_text(raw) if isinstance(raw, str) else None
        if parts is None:
            continue
        if parts.plus:
            texts.append("+" + parts.digits)
        elif parts.digits.startswith(idd):
            texts.append("+" + parts.digits[len(idd):])
    return texts


def _tally(texts: list[str], settings: NumberSettings) -> tuple[int, tuple[str, ...]]:
    """(own-country count, foreign region of each other number) of international texts."""
    own_cc = settings.country_code
    own = 0
    regions = []
    for text in texts:
        number = read_international(text)
        if number is None:
            continue
        if number[0] == own_cc:
            own += 1
            continue
        region = fastpn.region_for_number(number) or (
            phonenumbers.region_code_for_country_code(number[0])
        )
        if region and region in phonenumbers.SUPPORTED_REGIONS:
            regions.append(region)
    return own, tuple(regions)

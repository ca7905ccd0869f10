"""Numbers as a phone or PBX dialled them: every reading the configuration allows.

A caller-ID lookup or an equality filter on a phone attribute carries the
number in dialling format: "+4989...", "0049...", "089..." (national),
"1234567" (local), "217" (extension), each possibly behind the PBX's
outside-line digit ("00891234567").  :func:`dialled_readings` lists the
E.164 keys those digits can stand for, most plausible first; the caller
probes its index with each and keeps the first that exists.
"""

from __future__ import annotations

from functools import lru_cache

from attrs import frozen

from gateway.numbers.normalize import (
    e164_of,
    extension_key,
    read_bare_national,
    split_text,
    to_e164,
)
from gateway.numbers.settings import NumberSettings

#: How many assertions :func:`dialled_readings` remembers (callers repeat).
READINGS_CACHE_SIZE = 4096

__all__ = ["Reading", "dialled_readings", "fallback_key"]


@frozen
class Reading:
    """One way to read a dialled number.

    ``e164``: the key to look up; an E.164 number, or ``E164;ext=N`` for an
    extension of a main number without direct dial-in (see :func:`extension_key`).
    ``how``: human text for ``dirgw numbers explain``.
    ``kind``: international, national, local or extension.
    ``outside_line``: the reading drops the PBX's outside-line prefix.
    """

    e164: str
    how: str
    kind: str = ""
    outside_line: bool = False


def _readings(digits: str, settings: NumberSettings, via_line: bool) -> list[Reading]:
    """Readings of a digit string without "+", with or without the outside line removed."""
    out: list[Reading] = []
    line = f"outside line {settings.outside_line} + " if via_line else ""

    def add(text: str, region: str | None, kind: str, how: str) -> None:
        e164 = to_e164(text, region)
        if e164 is not None:
            out.append(Reading(e164, f"{line}{how} -> {e164}", kind, via_line))

    short = len(digits) <= settings.extension_length
    if short and not via_line and settings.main_head is not None:
        if settings.main_head != settings.main_e164:
            add(
                settings.main_head + digits,
                None,
                "extension",
                f"extension {digits} of main number {settings.main_number}",
            )
        else:
            key = extension_key(settings.main_e164, digits)
            out.append(
                Reading(
                    key,
                    f"extension {digits} of main number {settings.main_number} -> {key}",
                    "extension",
                    False,
                )
            )
    idd, trunk = settings.idd, settings.trunk
    if digits.startswith(idd):
        rest = digits[len(idd):]
        add("+" + rest, None, "international", f"international prefix {idd} + {rest}")
        return out
    if trunk and digits.startswith(trunk):
        add(digits, settings.country, "national", f"national {digits}")
        return out
    if not short and settings.area_code:
        add(
            trunk + settings.area_code + digits,
            settings.country,
            "local",
            f"local {digits} in area {settings.area_code}",
        )
    if not short:
        number = read_bare_national(digits, settings.country, settings.national_prefix_optional)
        if number is not None:
            e164 = e164_of(number)
            how = f"national without prefix {digits} -> {e164}"
            out.append(Reading(e164, line + how, "national", via_line))
    return out


def dialled_readings(assertion: str, settings: NumberSettings) -> tuple[Reading, ...]:
    """Every reading of a dialled number that the configuration allows, most plausible first.

    Readings without the outside line come first, then those with it removed
    (only when ``outside_line`` is set and the digits start with it).  An
    extension reading needs ``main_number``, a local reading ``area_code``.
    Separators, "tel:", "(0)" after a country code are tolerated; anything
    that is not a number gives an empty tuple.  Duplicate keys are dropped.
    Results are cached by ``(assertion, settings)``.
    """
    if not isinstance(assertion, str):
        return ()
    return _readings_cached(assertion, settings)


@lru_cache(maxsize=READINGS_CACHE_SIZE)
def _readings_cached(assertion: str, settings: NumberSettings) -> tuple[Reading, ...]:
    parts = split_text(assertion)
    if parts is None:
        return ()
    digits = parts.digits
    readings: list[Reading] = []
    if parts.plus:
        e164 = to_e164("+" + digits, None)
        if e164 is not None:
            readings.append(Reading(e164, f"international +{digits} -> {e164}", "international"))
    else:
        readings.extend(_readings(digits, settings, via_line=False))
        line = settings.outside_line
        if line and digits.startswith(line) and len(digits) > len(line):
            readings.extend(_readings(digits[len(line):], settings, via_line=True))
    seen: set[str] = set()
    unique = []
    for reading in readings:
        if reading.e164 not in seen:
            seen.add(reading.e164)
            unique.append(reading)
    return tuple(unique)


def fallback_key(assertion: str) -> str | None:
    """The digits-only key matching stored numbers that could not be normalized.

    Probe it after all readings missed: it can only hit a stored number whose
    ``e164`` is None and whose digits equal the assertion's digits.
    """
    parts = split_text(assertion)
    if parts is None:
        return None
    return parts.digits

"""Writing numbers in results: e164, international, national, dialable or stored."""

from __future__ import annotations

import phonenumbers

from gateway.numbers.settings import OUTPUT_STYLES, NumberSettings
from gateway.numbers.stored import StoredNumber

__all__ = ["format_number"]

_INTERNATIONAL = phonenumbers.PhoneNumberFormat.INTERNATIONAL
_NATIONAL = phonenumbers.PhoneNumberFormat.NATIONAL


def _is_own_country(number: phonenumbers.PhoneNumber, settings: NumberSettings) -> bool:
    return number.country_code == settings.country_code


def _with_extension(text: str, stored: StoredNumber) -> str:
    return f"{text} ext. {stored.extension}" if stored.extension else text


def _grouped(number: phonenumbers.PhoneNumber, stored: StoredNumber, style: int) -> str:
    """phonenumbers' grouping; a head plus extension is written "head-extension"."""
    head = stored.head
    if head and stored.e164 and stored.e164.startswith(head) and stored.e164 != head:
        try:
            head_number = phonenumbers.parse(head, None)
        except phonenumbers.NumberParseException:  # pragma: no cover - head was parsed before
            head_number = None
        if head_number is not None:
            written = phonenumbers.format_number(head_number, style)
            if style == _NATIONAL and not written.lstrip("(").startswith("0"):
                written = None  # phonenumbers could not group the head; use the plain form
            if written:
                return f"{written}-{stored.e164[len(head):]}"
    text = phonenumbers.format_number(number, style)
    return text


def _national(number: phonenumbers.PhoneNumber, settings: NumberSettings) -> str:
    """National digits with the national prefix ("0891234567", "14155550100")."""
    return settings.trunk + phonenumbers.national_significant_number(number)


def _internal_extension(stored: StoredNumber, settings: NumberSettings) -> str | None:
    """The extension dialled inside the PBX for a direct-dial number of the main number."""
    if (
        stored.e164 is None
        or stored.head is None
        or stored.head != settings.main_head
        or settings.main_head == settings.main_e164
    ):
        return None
    extension = stored.e164[len(stored.head):]
    if not 0 < len(extension) <= settings.extension_length:
        return None
    if settings.outside_line and extension.startswith(settings.outside_line):
        return None  # "0" would seize the outside line, not reach the switchboard
    return extension


def format_number(stored: StoredNumber, settings: NumberSettings, style: str | None = None) -> str:
    """Write a stored number in ``style`` (default ``settings.output``).

    ``e164``: "+49891234567".  ``international``: "+49 89 1234-567" (a known
    head plus extension keeps its dash; phonenumbers' grouping otherwise).
    ``national``: "089 1234-567" for numbers of the PBX's country, the
    international form for others.  ``dialable``: digits only, as this PBX
    dials them, outside line included ("00891234567", "0000431234567"); an
    extension of the own main number is dialled as the extension itself.
    ``stored``: the text as stored.  Numbers that could not be normalized are
    always written as stored.
    """
    style = style or settings.output
    if style not in OUTPUT_STYLES:
        raise ValueError(f"unknown output style {style!r} (expected one of {', '.join(OUTPUT_STYLES)})")
    if style == "stored" or stored.e164 is None:
        return stored.raw
    try:
        number = phonenumbers.parse(stored.e164, None)
    except phonenumbers.NumberParseException:  # pragma: no cover - e164 was parsed before
        return stored.raw
    if style == "e164":
        return stored.e164
    if style == "international":
        return _with_extension(_grouped(number, stored, _INTERNATIONAL), stored)
    if style == "national":
        if _is_own_country(number, settings) and phonenumbers.is_valid_number(number):
            return _with_extension(_grouped(number, stored, _NATIONAL), stored)
        if _is_own_country(number, settings):
            return _with_extension(_national(number, settings), stored)
        return _with_extension(_grouped(number, stored, _INTERNATIONAL), stored)
    # dialable
    internal = _internal_extension(stored, settings)
    if internal is not None:
        return internal
    if stored.extension and stored.head == settings.main_e164 and stored.e164 == settings.main_e164:
        return stored.extension
    if _is_own_country(number, settings):
        return settings.outside_line + _national(number, settings)
    return settings.outside_line + settings.idd + stored.e164[1:]

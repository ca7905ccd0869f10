"""Location settings of the PBX: how numbers are completed, read and written.

A :class:`NumberSettings` is built from the ``[numbers]`` table of the
configuration (optionally overridden per source).  Every value is checked
when the object is made; a bad value raises :class:`ValueError` with a
message naming the setting.  Values derived from the settings (the
resolved prefixes, the country calling code, the E.164 form of the main
number and of its head) are computed once, here, and kept on the object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import phonenumbers
from attrs import field, frozen

from gateway.numbers.normalize import (
    head_of,
    region_prefixes,
    split_text,
    to_e164,
)

__all__ = [
    "DEFAULT_MAX_EXTENSION_DIGITS",
    "NumberSettings",
    "OUTPUT_STYLES",
    "SETTING_NAMES",
    "settings_from_config",
]

#: The styles a number can be written in results (``output`` setting).
OUTPUT_STYLES = ("e164", "international", "national", "dialable", "stored")

#: How many trailing digits after a dash may be an extension (Durchwahl)
#: of a head number; also the default of ``[proximity] max_extension_digits``.
DEFAULT_MAX_EXTENSION_DIGITS = 5


#: The configurable fields of :class:`NumberSettings` (the ``[numbers]`` keys).
SETTING_NAMES = (
    "country",
    "area_code",
    "outside_line",
    "main_number",
    "extension_length",
    "output",
    "international_prefix",
    "national_prefix",
    "other_countries",
)


def _check_country(_instance: Any, _attribute: Any, value: str) -> None:
    if not isinstance(value, str) or value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(
            f"numbers.country: unknown ISO region {value!r} (expected e.g. 'DE', 'AT', 'US')"
        )


def _digits_setting(name: str, *, optional: bool = False):
    """A validator: the value is a string of digits ("" allowed), or None if optional."""

    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str) or (value and not value.isdigit()):
            raise ValueError(f"numbers.{name}: must be digits only, got {value!r}")

    return check


def _check_area_code(instance: Any, attribute: Any, value: Any) -> None:
    _digits_setting("area_code")(instance, attribute, value)
    if value.startswith("0"):
        raise ValueError(
            f"numbers.area_code: write the area code without the national prefix "
            f"(e.g. '89' rather than '089'), got {value!r}"
        )


def _check_extension_length(_instance: Any, _attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 8:
        raise ValueError(f"numbers.extension_length: must be an integer 0..8, got {value!r}")


def _check_output(_instance: Any, _attribute: Any, value: Any) -> None:
    if value not in OUTPUT_STYLES:
        raise ValueError(
            f"numbers.output: must be one of {', '.join(OUTPUT_STYLES)}; got {value!r}"
        )


def _regions_tuple(value: Any) -> Any:
    if isinstance(value, str):
        value = [part for part in value.replace(",", " ").split() if part]
    if isinstance(value, (list, tuple)):
        return tuple(_upper(v) for v in value)
    return value


def _check_regions(_instance: Any, _attribute: Any, value: Any) -> None:
    if not isinstance(value, tuple):
        raise ValueError(f"numbers.other_countries: must be a list of ISO regions, got {value!r}")
    for region in value:
        if not isinstance(region, str) or region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"numbers.other_countries: unknown ISO region {region!r}")


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


@frozen(cache_hash=True)  # a cache key of parse_stored and dialled_readings
class NumberSettings:
    """Where the PBX is and how it dials; see the ``[numbers]`` configuration table.

    ``country``: ISO region of the PBX and of numbers stored without country code.
    ``area_code``: completes local numbers stored without area code (no national prefix).
    ``outside_line``: digit(s) the PBX puts in front of external numbers, "" if none.
    ``main_number``: completes bare extensions stored as "-217" or "217".  Write the
    switchboard's own extension after a dash ("+49 89 1234-0"): the part before the
    dash is the head that extensions are appended to (direct dial-in, as in
    Germany).  Without a dash, extensions are not dialled from outside: a bare
    extension is stored as the main number plus a written extension.
    ``extension_length``: internal numbers up to this many digits are extensions.
    ``output``: how numbers are written in results (see :data:`OUTPUT_STYLES`).
    ``international_prefix`` / ``national_prefix``: default from the country.
    ``other_countries``: countries whose national numbers contacts may hold
    without country code ("0316/12345" of an Austrian partner, "(415)
    555-0100"): such numbers are also read there.  The reading in ``country``
    (or a valid reading elsewhere, if that one is impossible or invalid) is
    the number's E.164; the others become lower-priority alternative keys.
    """

    country: str = field(default="DE", converter=_upper, validator=_check_country)
    area_code: str = field(default="", validator=_check_area_code)
    outside_line: str = field(default="", validator=_digits_setting("outside_line"))
    main_number: str = field(default="")
    extension_length: int = field(default=3, validator=_check_extension_length)
    output: str = field(default="e164", validator=_check_output)
    international_prefix: str | None = field(
        default=None, validator=_digits_setting("international_prefix", optional=True)
    )
    national_prefix: str | None = field(
        default=None, validator=_digits_setting("national_prefix", optional=True)
    )
    other_countries: tuple[str, ...] = field(
        default=(), converter=_regions_tuple, validator=_check_regions
    )

    # Derived values, computed once in __attrs_post_init__.
    idd: str = field(init=False, repr=False, eq=False)
    trunk: str = field(init=False, repr=False, eq=False)
    country_code: int = field(init=False, repr=False, eq=False)
    main_e164: str | None = field(init=False, repr=False, eq=False)
    main_head: str | None = field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        default_idd, default_trunk = region_prefixes(self.country)
        idd = self.international_prefix if self.international_prefix is not None else default_idd
        if not idd:
            raise ValueError(
                f"numbers.international_prefix: cannot be empty (country {self.country})"
            )
        trunk = self.national_prefix if self.national_prefix is not None else default_trunk
        object.__setattr__(self, "idd", idd)
        object.__setattr__(self, "trunk", trunk)
        object.__setattr__(
            self, "country_code", phonenumbers.country_code_for_region(self.country)
        )
        main_e164, main_head = self._parse_main_number()
        object.__setattr__(self, "main_e164", main_e164)
        object.__setattr__(self, "main_head", main_head)

    def _parse_main_number(self) -> tuple[str | None, str | None]:
        """Normalize ``main_number`` to (E.164, head E.164); raise ValueError if unusable."""
        if not isinstance(self.main_number, str):
            raise ValueError(f"numbers.main_number: must be a string, got {self.main_number!r}")
        if not self.main_number.strip():
            return None, None
        parts = split_text(self.main_number)
        problem = f"numbers.main_number: cannot read {self.main_number!r} as a phone number"
        if parts is None or parts.extension is not None:
            raise ValueError(problem)
        digits = parts.digits
        if parts.plus:
            text, region = "+" + digits, None
        elif digits.startswith(self.idd):
            text, region = "+" + digits[len(self.idd):], None
        elif self.trunk and digits.startswith(self.trunk):
            text, region = digits, self.country
        elif self.area_code:
            text, region = self.trunk + self.area_code + digits, self.country
        else:
            raise ValueError(problem + " (write it with country or area code)")
        e164 = to_e164(text, region)
        if e164 is None:
            raise ValueError(problem)
        head = head_of(e164, parts.dash_group, DEFAULT_MAX_EXTENSION_DIGITS)
        return e164, head or e164

    @property
    def national_prefix_optional(self) -> bool:
        """True where national numbers are also dialled without the national prefix.

        That is the case in the North American plan ("415 555 0100") and in
        countries without a national prefix at all (Italy, Spain).
        """
        return self.country_code == 1 or not self.trunk

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any] | None) -> NumberSettings:
        """Build settings from a configuration table (e.g. TOML ``[numbers]``).

        Unknown keys and bad values raise :class:`ValueError` naming the key.
        """
        table = dict(table or {})
        known = set(SETTING_NAMES)
        unknown = sorted(set(table) - known)
        if unknown:
            raise ValueError(
                f"numbers: unknown setting(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        try:
            return cls(**table)
        except TypeError as exc:  # e.g. a wrong type passed to a converter
            raise ValueError(f"numbers: {exc}") from exc

    def merged(self, overrides: Mapping[str, Any] | None) -> NumberSettings:
        """These settings with some values replaced (a source's ``[sources.numbers]``)."""
        if not overrides:
            return self
        base = {name: getattr(self, name) for name in SETTING_NAMES}
        base.update(overrides)
        return self.from_mapping(base)


def settings_from_config(config: Any) -> NumberSettings:
    """:class:`NumberSettings` from a configuration object or mapping; ValueError if bad.

    Takes the attributes/keys named in :data:`SETTING_NAMES` that ``config``
    has and ignores all others (e.g. ``answer_as_asked``, which concerns the
    LDAP layer).
    """
    if isinstance(config, Mapping):
        values = {k: v for k, v in config.items() if k in SETTING_NAMES}
    else:
        values = {k: getattr(config, k) for k in SETTING_NAMES if hasattr(config, k)}
    return NumberSettings.from_mapping(values)

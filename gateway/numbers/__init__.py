"""Phone number conversion: stored numbers, dialled numbers, substring patterns, output.

Pure functions and immutable values (no I/O): the LDAP search and the admin
tools build on them.  Stored numbers are normalized once, at import
(:func:`parse_stored`); a phone's assertion is read in every way the
configuration allows (:func:`dialled_readings`, :func:`substring_patterns`);
results are written with :func:`format_number`; a missed caller-ID lookup
falls back to :func:`proximity_candidates`.
"""

from gateway.numbers.dialled import Reading, dialled_readings, fallback_key
from gateway.numbers.normalize import extension_key
from gateway.numbers.output import format_number
from gateway.numbers.proximity import proximity_candidates, proximity_keys
from gateway.numbers.settings import (
    DEFAULT_MAX_EXTENSION_DIGITS,
    OUTPUT_STYLES,
    NumberSettings,
)
from gateway.numbers.stored import StoredNumber, parse_stored
from gateway.numbers.substrings import (
    Pattern,
    match_pattern,
    substring_matches,
    substring_patterns,
)

__all__ = [
    "DEFAULT_MAX_EXTENSION_DIGITS",
    "OUTPUT_STYLES",
    "NumberSettings",
    "Pattern",
    "Reading",
    "StoredNumber",
    "dialled_readings",
    "extension_key",
    "fallback_key",
    "format_number",
    "match_pattern",
    "parse_stored",
    "proximity_candidates",
    "proximity_keys",
    "substring_matches",
    "substring_patterns",
]

"""Phone number conversion: stored numbers, dialled numbers, substring patterns, output.

Pure functions and immutable values (no I/O): the LDAP search and the admin
tools build on them.  Stored numbers are normalized once, at import
(:func:`parse_stored`); a phone's assertion is read in every way the
configuration allows (:func:`dialled_readings`, :func:`substring_patterns`);
results are written with :func:`format_number`; a missed caller-ID lookup
falls back to :func:`proximity_candidates`.

Index keys: :meth:`StoredNumber.match_keys` (E.164, plus ``E164;ext=N`` for
a written extension; bare digits for a number that could not be
normalized), then the lower-priority :meth:`StoredNumber.alternative_keys`
(other readings of a number written without country code), then
:func:`fallback_key`.  A caller-ID lookup takes the first reading of
:func:`dialled_readings` found among match keys, else among alternative
keys, else the fallback key (see ``queries_check.lookup``).

Speed: the phonenumbers calls are made by :mod:`gateway.numbers.fastpn`
(the same results for the digit strings the core passes, about ten times
faster), and :func:`parse_stored`, :func:`dialled_readings` and
:func:`substring_patterns` cache their results.  ``python -m
gateway.numbers.bench`` measures them; ``tests/test_numbers_frozen.py``
holds them to results recorded before.
"""

from gateway.numbers.dialled import Reading, dialled_readings, fallback_key
from gateway.numbers.normalize import extension_key
from gateway.numbers.output import format_number
from gateway.numbers.proximity import proximity_candidates, proximity_keys
from gateway.numbers.settings import (
    DEFAULT_MAX_EXTENSION_DIGITS,
    OUTPUT_STYLES,
    SETTING_NAMES,
    NumberSettings,
    settings_from_config,
)
from gateway.numbers.stored import (
    StoredNumber,
    hints_from_tallies,
    parse_stored,
    reads_regions,
    region_hints,
    region_tally,
)
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
    "SETTING_NAMES",
    "StoredNumber",
    "dialled_readings",
    "extension_key",
    "fallback_key",
    "format_number",
    "match_pattern",
    "parse_stored",
    "reads_regions",
    "proximity_candidates",
    "proximity_keys",
    "region_hints",
    "region_tally",
    "hints_from_tallies",
    "settings_from_config",
    "substring_matches",
    "substring_patterns",
]

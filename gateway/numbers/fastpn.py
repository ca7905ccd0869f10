"""Fast, exact equivalents of the few phonenumbers calls the number core makes.

phonenumbers is written for any text a person may type; the number core only
ever hands it digit strings it has already cleaned ("+49891234567",
"0891234567").  For those, most of phonenumbers' work (Unicode and letter
normalization, extension and RFC 3966 handling, looking up regular
expressions by their text for every call) is wasted: one ``parse`` costs
about 15 µs.  This module follows phonenumbers' algorithm step by step for
digit strings only, with each region's metadata compiled once, and gives the
same results in a tenth of the time:

* :func:`parse` is ``phonenumbers.parse(text, region)``, returning the
  number as a ``(country code, national significant number)`` pair (or None
  where phonenumbers raises);
* :func:`possible_reason`, :func:`is_valid`, :func:`number_type`,
  :func:`region_for_number`, :func:`format_national`,
  :func:`format_international` and :func:`ndc_length` are the phonenumbers
  functions of (almost) the same names, taking that pair;
* :func:`parse_national`, :func:`parse_international` and :func:`reparse`
  are :func:`parse` with what the caller already knows (the compiled
  metadata of the region, the calling code), for the hot loops.

Regular expressions that phonenumbers tries one after the other (the number
types, the formats) are joined into one per length of number or first digit.

Anything outside that domain (text that is not ``[+]digits``, an unknown
region) is handed to phonenumbers itself, so the functions are exact for
every input.  ``tests/test_numbers_fastpn.py`` checks them against
phonenumbers on every region's example numbers and on random digit strings.
Pairs are used instead of ``PhoneNumber`` objects: ``to_phone_number`` makes
the object phonenumbers would have made.
"""

from __future__ import annotations

import re
from typing import Any

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType, ValidationResult
from phonenumbers import phonenumberutil as _pnu

try:  # the parser of regular expressions: which digits a pattern may start with
    from re import _constants as _sre_constants
    from re import _parser as _sre_parser
except ImportError:  # pragma: no cover - Python before 3.11
    import sre_constants as _sre_constants
    import sre_parse as _sre_parser

__all__ = [
    "Number",
    "cc_meta",
    "format_international",
    "format_national",
    "is_valid",
    "national_digits",
    "ndc_length",
    "number_type",
    "parse",
    "parse_international",
    "parse_national",
    "possible_reason",
    "region_for_number",
    "region_meta",
    "reparse",
    "to_phone_number",
]

#: (country calling code, national significant number with leading zeros).
Number = tuple[int, str]

_CC_TO_REGIONS: dict[int, tuple[str, ...]] = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
_SUPPORTED = phonenumbers.SUPPORTED_REGIONS
# phonenumbers' constants (private ones with the values they have had for years).
_NON_GEO = getattr(_pnu, "REGION_CODE_FOR_NON_GEO_ENTITY", "001")
_MIN_NSN = getattr(_pnu, "_MIN_LENGTH_FOR_NSN", 2)
_MAX_NSN = MAX_NSN = getattr(_pnu, "_MAX_LENGTH_FOR_NSN", 17)
_MAX_CC = getattr(_pnu, "_MAX_LENGTH_COUNTRY_CODE", 3)
_MAX_INPUT = MAX_INPUT = getattr(_pnu, "_MAX_INPUT_STRING_LENGTH", 250)
_FIRST_GROUP = getattr(_pnu, "_FIRST_GROUP_PATTERN", re.compile(r"(\\\d)"))
_NON_DIGITS = getattr(_pnu, "NON_DIGITS_PATTERN", re.compile(r"(?:\D+)"))

_TOO_SHORT = ValidationResult.TOO_SHORT
_TOO_LONG = ValidationResult.TOO_LONG
_POSSIBLE = ValidationResult.IS_POSSIBLE
_LOCAL_ONLY = ValidationResult.IS_POSSIBLE_LOCAL_ONLY
_INVALID_LENGTH = ValidationResult.INVALID_LENGTH
_INVALID_CC = ValidationResult.INVALID_COUNTRY_CODE
#: Length checks after which ``parse`` keeps a national prefix it could strip.
_KEEP_PREFIX = KEEP_PREFIX = frozenset({_TOO_SHORT, _LOCAL_ONLY, _INVALID_LENGTH})

_UNKNOWN = PhoneNumberType.UNKNOWN
_MOBILE = PhoneNumberType.MOBILE
_FIXED_LINE = PhoneNumberType.FIXED_LINE
_FIXED_OR_MOBILE = PhoneNumberType.FIXED_LINE_OR_MOBILE
#: The order in which phonenumbers' ``_number_type_helper`` tries the types.
_TYPE_ORDER = (
    ("premium_rate", PhoneNumberType.PREMIUM_RATE),
    ("toll_free", PhoneNumberType.TOLL_FREE),
    ("shared_cost", PhoneNumberType.SHARED_COST),
    ("voip", PhoneNumberType.VOIP),
    ("personal_number", PhoneNumberType.PERSONAL_NUMBER),
    ("pager", PhoneNumberType.PAGER),
    ("uan", PhoneNumberType.UAN),
    ("voicemail", PhoneNumberType.VOICEMAIL),
)

_DIGITS = frozenset("0123456789")


def _compiled(pattern: str | None) -> re.Pattern[str] | None:
    """A pattern phonenumbers ignores when empty."""
    return re.compile(pattern) if pattern else None


def _literal(pattern: str | None) -> str | None:
    """The pattern when it is ASCII digits only (it matches itself and nothing else)."""
    return pattern if pattern and pattern.isascii() and pattern.isdigit() else None


_DIGIT_ALTERNATIVES = re.compile(r"[0-9]+(?:\|[0-9]+)*")


def _literals(pattern: str | None) -> tuple[str, ...] | None:
    """The alternatives of a pattern that is plain digit strings separated by "|"."""
    if pattern and pattern.isascii() and _DIGIT_ALTERNATIVES.fullmatch(pattern):
        return tuple(pattern.split("|"))
    return None


def _compiled_if_set(pattern: str | None) -> re.Pattern[str] | None:
    """A pattern phonenumbers uses whenever it is not None (even "")."""
    return re.compile(pattern) if pattern is not None else None


class _Desc:
    """A PhoneNumberDesc: possible lengths and the national number pattern."""

    __slots__ = ("lengths", "pattern")

    def __init__(self, desc: Any) -> None:
        lengths = desc.possible_length if desc is not None else ()
        self.lengths = frozenset(lengths) if lengths else None
        self.pattern = _compiled(desc.national_number_pattern) if desc is not None else None

    def matches(self, nsn: str) -> bool:
        """phonenumbers' ``_is_number_matching_desc``."""
        if self.lengths is not None and len(nsn) not in self.lengths:
            return False
        return self.pattern is not None and self.pattern.fullmatch(nsn) is not None


#: Formatting patterns whose matches depend on nothing but the digits matched
#: (no anchors, lookarounds or word boundaries).
_CONTEXT_FREE = re.compile(r"(?:[^\\(^$]|\\d|\((?!\?)|\(\?:)*")
#: Templates made of literal text and single-digit group references only.
_SIMPLE_TEMPLATE = re.compile(r"(?:[^\\]|\\[1-9](?![0-9]))*")
_GROUP_REFERENCE = re.compile(r"\\([1-9])")


def _template(rule: str, pattern: re.Pattern[str]) -> tuple[str | int, ...] | None:
    """``rule`` as literal strings and group numbers, where that is all it is."""
    if not _SIMPLE_TEMPLATE.fullmatch(rule):
        return None
    parts: list[str | int] = []
    for i, piece in enumerate(_GROUP_REFERENCE.split(rule)):
        if i % 2:
            if int(piece) > pattern.groups:
                return None  # an error for re.sub: leave it to re.sub
            parts.append(int(piece))
        elif piece:
            parts.append(piece)
    return tuple(parts)


def _format_string(parts: tuple[str | int, ...] | None, digits_only: bool = False) -> str | None:
    """A template as a ``str.format`` string over ``match.groups("")``.

    ``digits_only``: the literal text reduced to its ASCII digits (the
    digits of the expansion are then the expansion of this string); None
    where a literal is not ASCII (Unicode normalization could make digits).
    """
    if parts is None:
        return None
    out = []
    for part in parts:
        if isinstance(part, int):
            out.append("{%d}" % (part - 1))
        elif digits_only:
            if not part.isascii():
                return None
            out.append("".join(ch for ch in part if "0" <= ch <= "9"))
        else:
            out.append(part.replace("{", "{{").replace("}", "}}"))
    return "".join(out)


def _shape(parts: tuple[str | int, ...] | None) -> tuple[int, bool] | None:
    """(groups, trailing text) of a template "[text]\\1 text \\2 ... \\k[text]".

    Where the groups come in order, each once, with text between each two of
    them and no digits in any text: splitting "+<cc> " and the filled-in
    template at non-digits then gives "", cc, the k groups (when none is
    empty) and, after trailing text, "".  None for other templates.
    """
    if not parts:
        return None
    refs = [part for part in parts if isinstance(part, int)]
    if not refs or refs != list(range(1, len(refs) + 1)):
        return None
    texts = [part for part in parts if isinstance(part, str)]
    if any(not text.isascii() or any("0" <= ch <= "9" for ch in text) for text in texts):
        return None
    previous = None
    for part in parts:
        if isinstance(part, int) and isinstance(previous, int):
            return None  # two groups without text between them
        previous = part
    return len(refs), isinstance(parts[-1], str)


class _Format:
    """A NumberFormat, with its patterns compiled and its national rule expanded."""

    __slots__ = (
        "leading", "pattern", "rule", "national_rule", "simple", "parts", "national_parts",
        "format", "national_format", "national_digits", "shape",
    )

    def __init__(self, fmt: Any) -> None:
        leading = fmt.leading_digits_pattern
        self.leading = re.compile(leading[-1]) if leading else None
        self.pattern = re.compile(fmt.pattern)
        self.rule = fmt.format
        npfr = fmt.national_prefix_formatting_rule
        self.national_rule = _FIRST_GROUP.sub(npfr, fmt.format, count=1) if npfr else fmt.format
        # Where the pattern can match neither an empty string nor depend on
        # context, a match of the whole number is the only one re.sub makes,
        # and the templates can be filled in directly.
        self.simple = bool(
            _CONTEXT_FREE.fullmatch(fmt.pattern) and self.pattern.match("") is None
        )
        self.parts = _template(self.rule, self.pattern)
        self.national_parts = _template(self.national_rule, self.pattern)
        self.format = _format_string(self.parts) if self.simple else None
        self.national_format = _format_string(self.national_parts) if self.simple else None
        self.national_digits = (
            _format_string(self.national_parts, digits_only=True) if self.simple else None
        )
        self.shape = _shape(self.parts) if self.simple else None

    def apply(self, nsn: str, national: bool) -> str:
        """``pattern.sub(rule, nsn)`` (the national rule if ``national``)."""
        template = self.national_format if national else self.format
        if template is not None:
            match = self.pattern.match(nsn)
            if match is not None and match.end() == len(nsn):
                # The only match re.sub makes: fill the template in.
                return template.format(*match.groups(""))
        return self.pattern.sub(self.national_rule if national else self.rule, nsn)

    def national_digits_of(self, nsn: str) -> str | None:
        """The ASCII digits of ``apply(nsn, True)``; None where only ``apply`` tells."""
        template = self.national_digits
        if template is not None:
            match = self.pattern.match(nsn)
            if match is not None and match.end() == len(nsn):
                return template.format(*match.groups(""))
        return None


def _choose(formats: list[_Format], nsn: str) -> _Format | None:
    """phonenumbers' ``_choose_formatting_pattern_for_number``."""
    for fmt in formats:
        if (fmt.leading is None or fmt.leading.match(nsn)) and fmt.pattern.fullmatch(nsn):
            return fmt
    return None


_ALL_DIGITS = frozenset("0123456789")
_DIGIT_CODES = range(ord("0"), ord("9") + 1)


def _first_digits(pattern: str) -> tuple[frozenset[str], bool]:
    """(digits a match of ``pattern`` may start with, whether it may be empty).

    An over-approximation, read from the parsed pattern: anything it does
    not know (lookarounds, anchors, back references) may start with any
    digit and may be empty.
    """
    try:
        return _first_of(_sre_parser.parse(pattern))
    except Exception:  # pragma: no cover - any doubt: no restriction
        return _ALL_DIGITS, True


def _first_of(items: Any) -> tuple[frozenset[str], bool]:
    first: set[str] = set()
    for op, av in items:
        digits, empty = _first_of_item(op, av)
        first |= digits
        if not empty:
            return frozenset(first), False
    return frozenset(first), True


def _first_of_item(op: Any, av: Any) -> tuple[frozenset[str], bool]:
    c = _sre_constants
    if op == c.LITERAL:
        return frozenset({chr(av)}) & _ALL_DIGITS, False
    if op == c.IN:
        return _charset_digits(av), False
    if op == c.ANY:
        return _ALL_DIGITS, False
    if op == c.BRANCH:
        first: set[str] = set()
        empty = False
        for branch in av[1]:
            digits, branch_empty = _first_of(branch)
            first |= digits
            empty = empty or branch_empty
        return frozenset(first), empty
    if op == c.SUBPATTERN:
        return _first_of(av[3])
    if op in (c.MAX_REPEAT, c.MIN_REPEAT) or op == getattr(c, "POSSESSIVE_REPEAT", None):
        low, _high, body = av
        digits, empty = _first_of(body)
        return digits, empty or low == 0
    return _ALL_DIGITS, True


def _charset_digits(items: Any) -> frozenset[str]:
    c = _sre_constants
    chars: set[str] = set()
    negate = False
    for op, av in items:
        if op == c.NEGATE:
            negate = True
        elif op == c.LITERAL:
            chars.add(chr(av))
        elif op == c.RANGE:
            chars.update(chr(code) for code in _DIGIT_CODES if av[0] <= code <= av[1])
        elif op == c.CATEGORY and av in (c.CATEGORY_DIGIT, c.CATEGORY_UNI_DIGIT):
            chars |= _ALL_DIGITS
        else:
            return _ALL_DIGITS  # not known: any digit
    return (_ALL_DIGITS - chars) if negate else (frozenset(chars) & _ALL_DIGITS)


class _Formats:
    """A region's list of formats, with :func:`_choose` as one regular expression.

    Alternative i is ``(?=LEADING_i)(?:PATTERN_i)`` in a named group: the
    first alternative that matches the whole number is the first format whose
    leading digits match at the start and whose pattern matches it all.  One
    expression per first digit of the number holds only the formats whose
    leading digits and pattern may start with that digit.
    """

    __slots__ = ("formats", "firsts", "by_digit")

    def __init__(self, formats: list[_Format]) -> None:
        self.formats = formats
        firsts = []
        for fmt in formats:
            allowed = set(_ALL_DIGITS)
            if fmt.leading is not None:
                digits, empty = _first_digits(fmt.leading.pattern)
                if not empty:
                    allowed &= digits
            digits, empty = _first_digits(fmt.pattern.pattern)
            if not empty:
                allowed &= digits
            firsts.append(frozenset(allowed))
        self.firsts = firsts
        self.by_digit: dict[str, Any] = {}

    def _combined(self, first: str) -> Any:
        parts = []
        for i, fmt in enumerate(self.formats):
            if first in _ALL_DIGITS and first not in self.firsts[i]:
                continue
            lead = f"(?={fmt.leading.pattern})" if fmt.leading is not None else ""
            parts.append(f"(?P<f{i}>{lead}(?:{fmt.pattern.pattern}))")
        if not parts:
            return None
        try:
            return re.compile("|".join(parts))
        except re.error:  # pragma: no cover - metadata patterns combine
            return False

    def choose(self, nsn: str) -> _Format | None:
        first = nsn[:1]
        try:
            combined = self.by_digit[first]
        except KeyError:
            combined = self.by_digit[first] = self._combined(first)
        if combined is None:
            return None
        if combined is False:  # pragma: no cover
            return _choose(self.formats, nsn)
        match = combined.fullmatch(nsn)
        if match is None:
            return None
        return self.formats[int(match.lastgroup[1:])]


class _Meta:
    """One region's PhoneMetadata, compiled for the functions below."""

    __slots__ = (
        "cc", "cc_str", "idd", "npp", "idd_literal", "npp_literal", "npp_prefixes", "transform", "general", "gd_match", "possible",
        "local_only", "by_length", "types", "fixed_line", "mobile", "same_mobile_and_fixed",
        "leading_digits", "national_formats", "intl_formats", "type_patterns",
    )

    def __init__(self, meta: Any) -> None:
        self.cc = meta.country_code
        self.cc_str = str(meta.country_code)
        # phonenumbers uses "NonMatch" as the IDD when none is set: it never
        # matches a digit string.
        self.idd = _compiled_if_set(meta.international_prefix)
        self.npp = _compiled(meta.national_prefix_for_parsing)
        # Prefixes written as plain digits ("00", "0"): ``startswith`` does
        # what matching them does.
        self.idd_literal = _literal(meta.international_prefix)
        self.npp_literal = _literal(meta.national_prefix_for_parsing)
        # "0|180020": matching it is finding the first of these the text starts with.
        self.npp_prefixes = _literals(meta.national_prefix_for_parsing)
        self.transform = meta.national_prefix_transform_rule or None
        general = meta.general_desc
        self.general = _Desc(general)
        self.gd_match = _compiled(general.national_number_pattern).fullmatch if (
            general is not None and general.national_number_pattern
        ) else None
        self.possible = tuple(general.possible_length)
        self.local_only = frozenset(general.possible_length_local_only or ())
        self.by_length = tuple(self._test_length(length) for length in range(_LENGTH_TABLE))
        self.types = [(_Desc(getattr(meta, name)), kind) for name, kind in _TYPE_ORDER
                      if getattr(meta, name) is not None]
        self.fixed_line = _Desc(meta.fixed_line) if meta.fixed_line is not None else None
        self.mobile = _Desc(meta.mobile) if meta.mobile is not None else None
        self.same_mobile_and_fixed = meta.same_mobile_and_fixed_line_pattern
        self.leading_digits = _compiled_if_set(meta.leading_digits)
        self.national_formats = _Formats([_Format(f) for f in meta.number_format])
        self.intl_formats = (
            _Formats([_Format(f) for f in meta.intl_number_format])
            if meta.intl_number_format else self.national_formats
        )
        self.type_patterns: dict[int, tuple[Any, tuple[int, ...]] | None] = {}

    # -- phonenumbers' private helpers, for this metadata ----------------------------

    def general_matches(self, number: str) -> bool:
        """``_match_national_number(number, general_desc, False)``."""
        return self.gd_match is not None and self.gd_match(number) is not None

    def test_length(self, nsn: str) -> int:
        """``_test_number_length(nsn, metadata)`` (type UNKNOWN: the general desc)."""
        actual = len(nsn)
        if actual < _LENGTH_TABLE:
            return self.by_length[actual]
        return self._test_length(actual)

    def _test_length(self, actual: int) -> int:
        if actual in self.local_only:
            return _LOCAL_ONLY
        possible = self.possible
        minimum = possible[0]
        if minimum == actual:
            return _POSSIBLE
        if minimum > actual:
            return _TOO_SHORT
        if possible[-1] < actual:
            return _TOO_LONG
        return _POSSIBLE if actual in possible[1:] else _INVALID_LENGTH

    def strip_national_prefix(self, number: str) -> str:
        """The number of ``_maybe_strip_national_prefix_carrier_code``."""
        npp = self.npp
        if not number or npp is None:
            return number
        match = npp.match(number)
        if not match:
            return number
        viable = self.general_matches(number)
        if self.transform is None or match.groups()[-1] is None:
            rest = number[match.end():]
            if viable and not self.general_matches(rest):
                return number
            return rest
        transformed = npp.sub(self.transform, number, count=1)
        if viable and not self.general_matches(transformed):
            return number
        return transformed

    def type_of(self, nsn: str) -> int:
        """``_number_type_helper``.

        The types are tried in phonenumbers' order; one regular expression per
        length of number tries them all at once (the first alternative that
        matches the whole number wins, as the first type that matches does).
        """
        if not self.general.matches(nsn):
            return _UNKNOWN
        length = len(nsn)
        try:
            combined = self.type_patterns[length]
        except KeyError:
            combined = self.type_patterns[length] = self._combine(length)
        if combined is None:
            return self._type_in_turn(nsn)
        pattern, kinds = combined
        match = pattern.fullmatch(nsn)
        if match is None:
            return _UNKNOWN
        kind = kinds[match.lastindex]
        if kind == _FIXED_LINE:
            if self.same_mobile_and_fixed:
                return _FIXED_OR_MOBILE
            if self.mobile is not None and self.mobile.matches(nsn):
                return _FIXED_OR_MOBILE
        return kind

    def _combine(self, length: int) -> tuple[Any, tuple[int, ...]] | None:
        """The descs a number of ``length`` digits may match, as one pattern.

        Group i (1-based) is the i-th alternative; ``kinds[i]`` its type
        (FIXED_LINE stands for "fixed line, mobile to be checked").  None
        where the patterns cannot be combined (then :meth:`_type_in_turn`).
        """
        descs = [(desc, kind) for desc, kind in self.types]
        if self.fixed_line is not None:
            descs.append((self.fixed_line, _FIXED_LINE))
        if not self.same_mobile_and_fixed and self.mobile is not None:
            descs.append((self.mobile, _MOBILE))
        parts, kinds = [], [_UNKNOWN]
        for desc, kind in descs:
            if desc.pattern is None or (desc.lengths is not None and length not in desc.lengths):
                continue
            if desc.pattern.groups:  # keep group numbers simple: only group-free patterns
                return None
            parts.append(f"({desc.pattern.pattern})")
            kinds.append(kind)
        if not parts:
            return _NEVER, (_UNKNOWN,)
        try:
            return re.compile("|".join(parts)), tuple(kinds)
        except re.error:  # pragma: no cover - metadata patterns combine
            return None

    def _type_in_turn(self, nsn: str) -> int:
        for desc, kind in self.types:
            if desc.matches(nsn):
                return kind
        if self.fixed_line is not None and self.fixed_line.matches(nsn):
            if self.same_mobile_and_fixed:
                return _FIXED_OR_MOBILE
            if self.mobile is not None and self.mobile.matches(nsn):
                return _FIXED_OR_MOBILE
            return _FIXED_LINE
        if not self.same_mobile_and_fixed and self.mobile is not None and self.mobile.matches(nsn):
            return _MOBILE
        return _UNKNOWN


#: Lengths of national numbers whose length check is tabled.
_LENGTH_TABLE = LENGTH_TABLE = 64
#: A pattern that matches no digit string.
_NEVER = re.compile(r"(?!)")

_BY_META: dict[int, _Meta] = {}
_BY_REGION: dict[str, _Meta | None] = {}
_BY_CC: dict[int, _Meta | None] = {}


def _wrap(meta: Any) -> _Meta | None:
    if meta is None:
        return None
    found = _BY_META.get(id(meta))
    if found is None:
        found = _BY_META[id(meta)] = _Meta(meta)
    return found


def _region_meta(region: str) -> _Meta | None:
    """Compiled metadata of a region code (as ``metadata_for_region``)."""
    try:
        return _BY_REGION[region]
    except KeyError:
        meta = _BY_REGION[region] = _wrap(PhoneMetadata.metadata_for_region(region, None))
        return meta


def _region_or_cc_meta(cc: int, region: str | None) -> _Meta | None:
    """``metadata_for_region_or_calling_code``."""
    if region == _NON_GEO:
        return _wrap(PhoneMetadata.metadata_for_nongeo_region(cc, None))
    return _region_meta(region) if region is not None else None


def cc_meta(cc: int) -> _Meta | None:
    """Compiled metadata of a calling code's main region."""
    return _cc_meta(cc)


def _cc_meta(cc: int) -> _Meta | None:
    """Metadata of a calling code's main region (what phonenumbers formats and measures with)."""
    try:
        return _BY_CC[cc]
    except KeyError:
        regions = _CC_TO_REGIONS.get(cc)
        meta = _BY_CC[cc] = _region_or_cc_meta(cc, regions[0]) if regions else None
        return meta


#: Calling codes by their digits, and the other way round.  They are
#: prefix-free and never start with "0".
_CC_BY_TEXT = {str(cc): cc for cc in _CC_TO_REGIONS}
_CC_TEXT = {cc: text for text, cc in _CC_BY_TEXT.items()}
assert _MAX_CC == 3 and max(map(len, _CC_BY_TEXT)) <= _MAX_CC
assert not any(text[:k] in _CC_BY_TEXT for text in _CC_BY_TEXT for k in range(1, len(text)))


def _extract_cc(number: str) -> tuple[int, str]:
    """``_extract_country_code`` of a digit string: (calling code, rest), or (0, number)."""
    get = _CC_BY_TEXT.get
    for size in (1, 2, 3):
        cc = get(number[:size])
        if cc is not None:
            return cc, number[size:]
    return 0, number


def _slow_parse(text: str, region: str | None) -> Number | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if number.extension:
        return None
    return number.country_code, phonenumbers.national_significant_number(number)


def parse(text: str, region: str | None) -> Number | None:
    """``phonenumbers.parse(text, region)`` as a (calling code, NSN) pair.

    None where phonenumbers raises NumberParseException or finds an
    extension.  Fast for "+<digits>" (any region) and "<digits>" with a
    supported region; anything else goes to phonenumbers.
    """
    if not text or len(text) > _MAX_INPUT:
        return _slow_parse(text, region)
    if text[0] == "+":
        full = text[1:]
        if region is not None or not (full.isascii() and full.isdigit()):
            return _slow_parse(text, region)
        if len(full) <= 2:  # not viable ("+", "+1", "+12") or too short after the "+"
            return None
        get = _CC_BY_TEXT.get
        cc = get(full[:1]) or get(full[:2]) or get(full[:3])
        if cc is None:
            return None  # unknown calling code; without the "+" there is no region to read in
        return _finish(cc, full[len(str(cc)):], _cc_meta(cc))
    home = _BY_REGION.get(region) if region is not None else None
    if home is None:
        if region is None or region not in _SUPPORTED:
            return _slow_parse(text, region)
        home = _region_meta(region)
    if not (text.isascii() and text.isdigit()):
        return _slow_parse(text, region)
    return parse_national(text, home)


def parse_international(cc: int, rest: str) -> Number | None:
    """:func:`parse` of ``f"+{cc}{rest}"`` (``cc`` a calling code, ``rest`` ASCII digits).

    Calling codes are prefix-free, so the calling code read is ``cc``
    itself; what is left is the end of ``parse``.
    """
    cc_text = _CC_TEXT.get(cc)
    if cc_text is None or len(cc_text) + len(rest) <= 2 or len(cc_text) + len(rest) >= _MAX_INPUT:
        return parse(f"+{cc}{rest}", None)
    return _finish(cc, rest, _cc_meta(cc))


def reparse(number: Number) -> Number | None:
    """:func:`parse` of the E.164 form of ``number`` (which need not give ``number`` back)."""
    return parse_international(number[0], number[1])


def region_meta(region: str) -> _Meta | None:
    """Compiled metadata of a supported region, for :func:`parse_national`."""
    return _BY_REGION.get(region) or _region_meta(region)


def parse_national(text: str, home: _Meta) -> Number | None:
    """:func:`parse` of ASCII digits ``text`` in the region of ``home`` (see :func:`region_meta`)."""
    if len(text) < _MIN_NSN:
        return None
    idd = home.idd
    match = idd.match(text) if idd is not None else None
    if match and (match.end() >= len(text) or text[match.end()] != "0"):
        rest = text[match.end():]
        if len(rest) <= 2:
            return None
        cc, nn = _extract_cc(rest)
        if cc == 0:
            return None
        return _finish(cc, nn, _cc_meta(cc))
    if text.startswith(home.cc_str):
        potential = home.strip_national_prefix(text[len(home.cc_str):])
        if (
            not home.general_matches(text) and home.general_matches(potential)
        ) or home.test_length(text) == _TOO_LONG:
            return _finish(home.cc, potential, _cc_meta(home.cc))
    return _finish(home.cc, text, home)


def _finish(cc: int, nn: str, meta: _Meta | None) -> Number | None:
    """The end of ``parse``: drop a national prefix where what is left is long enough."""
    if len(nn) < _MIN_NSN:
        return None
    if meta is not None:
        literal = meta.npp_literal
        if literal is not None:
            end = len(literal) if nn.startswith(literal) else -1
        else:
            npp = meta.npp
            match = npp.match(nn) if npp is not None else None
            end = match.end() if match else -1
        if end >= 0:  # strip_national_prefix, inlined for the common case
            if meta.transform is None:
                potential = nn[end:]
                gd = meta.gd_match
                if gd is not None and gd(nn) is not None and gd(potential) is None:
                    potential = nn
            else:
                potential = meta.strip_national_prefix(nn)
            size = len(potential)
            result = meta.by_length[size] if size < _LENGTH_TABLE else meta.test_length(potential)
            if result not in _KEEP_PREFIX:
                nn = potential
    if len(nn) > _MAX_NSN:
        return None
    return cc, nn


def to_phone_number(number: Number) -> phonenumbers.PhoneNumber:
    """The PhoneNumber that ``phonenumbers.parse`` gives for the same pair."""
    cc, nsn = number
    result = phonenumbers.PhoneNumber(country_code=cc, national_number=int(nsn))
    if len(nsn) > 1 and nsn[0] == "0":
        result.italian_leading_zero = True
        zeros = 1
        while zeros < len(nsn) - 1 and nsn[zeros] == "0":
            zeros += 1
        if zeros != 1:
            result.number_of_leading_zeros = zeros
    return result


def possible_reason(number: Number) -> int:
    """``is_possible_number_with_reason``."""
    cc, nsn = number
    if cc not in _CC_TO_REGIONS:
        return _INVALID_CC
    meta = _cc_meta(cc)
    if meta is None:  # pragma: no cover - calling codes have metadata
        return phonenumbers.is_possible_number_with_reason(to_phone_number(number))
    return meta.test_length(nsn)


def region_for_number(number: Number) -> str | None:
    """``region_code_for_number``."""
    cc, nsn = number
    regions = _CC_TO_REGIONS.get(cc)
    if regions is None:
        return None
    if len(regions) == 1:
        return regions[0]
    for region in regions:
        meta = _region_meta(region)
        if meta is None:
            continue
        if meta.leading_digits is not None:
            if meta.leading_digits.match(nsn):
                return region
        elif meta.type_of(nsn) != _UNKNOWN:
            return region
    return None


def number_type(number: Number) -> int:
    """``number_type``."""
    meta = _region_or_cc_meta(number[0], region_for_number(number))
    if meta is None:
        return _UNKNOWN
    return meta.type_of(number[1])


def is_valid(number: Number) -> bool:
    """``is_valid_number``."""
    cc, nsn = number
    region = region_for_number(number)
    if region is None:
        return False
    meta = _region_or_cc_meta(cc, region)
    if meta is None or (region != _NON_GEO and cc != meta.cc):
        return False
    return meta.type_of(nsn) != _UNKNOWN


def format_national(number: Number) -> str:
    """``format_number(number, NATIONAL)``."""
    cc, nsn = number
    meta = _cc_meta(cc) if cc in _CC_TO_REGIONS else None
    if meta is None:
        return nsn
    fmt = meta.national_formats.choose(nsn)
    if fmt is None:
        return nsn
    return fmt.apply(nsn, True)


def national_digits(number: Number) -> str | None:
    """The ASCII digits of :func:`format_national` where they come cheaper; else None."""
    cc, nsn = number
    meta = _cc_meta(cc) if cc in _CC_TO_REGIONS else None
    if meta is None:
        return None
    fmt = meta.national_formats.choose(nsn)
    if fmt is None:
        return nsn
    return fmt.national_digits_of(nsn)


def format_international(number: Number) -> str:
    """``format_number(number, INTERNATIONAL)``."""
    cc, nsn = number
    meta = _cc_meta(cc) if cc in _CC_TO_REGIONS else None
    if meta is None:
        return nsn
    fmt = meta.intl_formats.choose(nsn)
    formatted = nsn if fmt is None else fmt.apply(nsn, False)
    return f"+{cc} {formatted}"


def ndc_length(number: Number) -> int:
    """``length_of_national_destination_code``."""
    cc, nsn = number
    meta = _cc_meta(cc) if cc in _CC_TO_REGIONS else None
    fmt = meta.intl_formats.choose(nsn) if meta is not None else None
    if fmt is None:
        return 0  # "+<cc> <nsn>" or "<nsn>": no group after the calling code's
    shape = fmt.shape
    if shape is not None:
        match = fmt.pattern.match(nsn)
        if match is not None and match.end() == len(nsn):
            found = match.groups()
            if all(found):  # no empty group: the split is "", cc, the groups (, "")
                count, trailing = shape
                if 2 + count + trailing <= 3:
                    return 0
                second = found[1] if count >= 2 else ""
                if phonenumbers.country_mobile_token(cc) and number_type(number) == _MOBILE:
                    return len(found[0]) + len(second)
                return len(found[0])
    groups = _NON_DIGITS.split(format_international(number))
    if len(groups) <= 3:
        return 0
    if phonenumbers.country_mobile_token(number[0]) and number_type(number) == _MOBILE:
        return len(groups[2]) + len(groups[3])
    return len(groups[2])

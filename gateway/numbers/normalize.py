"""Low-level helpers shared by the number modules: cleaning text, parsing to E.164.

Nothing here knows the PBX settings; the functions take the region and
prefixes they need as arguments.  All of them are pure and never raise for
bad input: they return ``None`` instead.
"""

from __future__ import annotations

import operator
import re
import unicodedata
from functools import lru_cache
from typing import Any, NamedTuple

import phonenumbers

from gateway.numbers import fastpn

__all__ = [
    "SEPARATORS",
    "TextParts",
    "digits_of",
    "e164_of",
    "extension_key",
    "head_of",
    "read_bare_national",
    "read_in_region",
    "read_international",
    "read_number",
    "region_prefixes",
    "split_text",
    "split_with_digits",
    "strip_separators",
    "to_bare_national",
    "to_e164",
    "to_number",
]

#: Characters people put between the digits of a number.
SEPARATORS = frozenset(" \t\u00a0\u2007\u2009\u202f.-/()[]\u2010\u2011\u2012\u2013\u2014\u2212_")
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2212"

# "x12", "ext. 12", "Ext 12", "extension 12", "Durchwahl 12", "DW 12" at the end.
_EXTENSION = re.compile(
    r"(?:\s*[,;]?\s*(?:ext(?:ension|n)?\.?|x|durchwahl|dw\.?)\s*[:.]?\s*)(\d{1,8})\s*$",
    re.IGNORECASE,
)
# A label in front of the number: "Tel.:", "Mobil:", "Fax:".
_LABEL = re.compile(r"^\s*[^\W\d_][\w. ]{0,15}:\s*(?=[+\d(\[])")
# "(0)" or "[0]" after a country code: "+49 (0)89 ..."
_ZERO_AFTER_DIGITS = re.compile(r"(?<=\d)([\s.\-/]*)[(\[]\s*0\s*[)\]]")
#: The replacement of :data:`_ZERO_AFTER_DIGITS`: what ``r"\1"`` gives, without
#: re's template machinery (group 1 always takes part in a match).
_KEEP_SEPARATORS = operator.methodcaller("group", 1)


#: The ASCII characters that are not digits (deleted from encoded ASCII text).
_NOT_DIGIT_BYTES = bytes(i for i in range(128) if not 48 <= i <= 57)


def _ascii_digits(text: str) -> str:
    """The digits of ASCII ``text``."""
    return text.encode("ascii").translate(None, _NOT_DIGIT_BYTES).decode("ascii")


def digits_of(text: str) -> str:
    """Only the ASCII digits of ``text`` (after Unicode normalization)."""
    if text.isascii():  # NFKC leaves ASCII as it is
        return _ascii_digits(text)
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if "0" <= ch <= "9")


def extension_key(e164: str, extension: str) -> str:
    """Index key of an extension that is not part of the E.164 ("+14155550100;ext=12")."""
    return f"{e164};ext={extension}"


class TextParts(NamedTuple):
    """A written number cut into what matters (a named tuple: made for every number).

    ``plus``: the number is written with a leading "+".
    ``digits``: all digits of the number proper (no extension).
    ``extension``: digits of a written extension ("x12", ";ext=12"), else None.
    ``dash_group``: digits after the last dash, when the number ends in
    "<digits>-<digits>" (a German head number plus Durchwahl), else None.
    ``leading_dash``: the text starts with a dash ("-217": an extension).
    """

    plus: bool
    digits: str
    extension: str | None
    dash_group: str | None
    leading_dash: bool


#: Characters of the common writings ("+49 (0)89 1234-567", "089/1234567"):
#: ASCII without letters, so no "tel:", label or extension can occur.
_PLAIN_CHARS = frozenset("0123456789 \t\n\r\x0b\x0c+-./()[]_")
#: The characters a number's body may have, in plain text.
_PLAIN_SEPARATORS = SEPARATORS & frozenset(map(chr, range(128)))
_PLAIN_BODY = frozenset("0123456789") | _PLAIN_SEPARATORS


def split_text(raw: str) -> TextParts | None:
    """Cut a stored or asserted number into :class:`TextParts`; None for non-numbers.

    Accepts ``tel:`` URIs (with ``;ext=`` and other parameters), a leading label
    ("Tel.: "), the separators of :data:`SEPARATORS`, "(0)" after a country
    code and a trailing extension.  Anything else (letters, "*", "#") makes
    the text unreadable.  Results are cached (a contact's numbers are read
    for its region hints, then parsed).
    """
    if not isinstance(raw, str):
        return None
    return _split_cached(raw)[0]


def split_with_digits(raw: str) -> tuple[TextParts | None, str]:
    """(:func:`split_text`, :func:`digits_of`) of a stored text, from one cache."""
    return _split_cached(raw)


#: How many texts :func:`split_text` remembers: enough for the numbers of a
#: contact (read for its region hints, then parsed), few enough to leave
#: the garbage collector little to go through.
SPLIT_CACHE_SIZE = 256


@lru_cache(maxsize=SPLIT_CACHE_SIZE)
def _split_cached(raw: str) -> tuple[TextParts | None, str]:
    if _PLAIN_CHARS.issuperset(raw):
        return _split_plain(raw)
    return _split_general(raw), digits_of(raw)


def _split_plain(raw: str) -> tuple[TextParts | None, str]:
    """:func:`_split_general` and :func:`digits_of` for text of :data:`_PLAIN_CHARS` only.

    The same results, faster.
    """
    text = raw.strip()
    raw_digits = None  # digits_of(raw), when it differs from the digits of the number
    if "(" in text or "[" in text:
        cleaned = _ZERO_AFTER_DIGITS.sub(_KEEP_SEPARATORS, text).strip()
        if cleaned != text:
            raw_digits = _ascii_digits(raw)
            text = cleaned
    plus = text[:1] == "+"
    body = text[1:] if plus else text
    if not body or not _PLAIN_BODY.issuperset(body):
        return None, raw_digits if raw_digits is not None else _ascii_digits(raw)
    digits = _ascii_digits(body)
    if raw_digits is None:
        raw_digits = digits  # strip() and a leading "+" hold no digits
    if not digits:
        return None, raw_digits
    last = body.rfind("-")
    if last < 0:
        return TextParts(plus, digits, None, None, False), raw_digits
    leading_dash = body.lstrip()[:1] == "-"
    dash_group = None
    if last > 0 and not leading_dash and not _PLAIN_SEPARATORS.issuperset(body[:last]):
        # digits before the dash; after it, only digits (ASCII: isdigit is 0-9)
        group = body[last + 1:].strip()
        if group.isdigit():
            dash_group = group
    return TextParts(plus, digits, None, dash_group, leading_dash), raw_digits


def _split_general(raw: str) -> TextParts | None:
    text = unicodedata.normalize("NFKC", raw).strip()
    extension = None
    if text[:4].lower() == "tel:":
        text, *params = text[4:].split(";")
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "ext" and value.strip().isdigit():
                extension = value.strip()
    text = _LABEL.sub("", text, count=1)
    match = _EXTENSION.search(text)
    if match and extension is None and digits_of(text[: match.start()]):
        extension = match.group(1)
        text = text[: match.start()]
    text = _ZERO_AFTER_DIGITS.sub(_KEEP_SEPARATORS, text).strip()
    plus = text.startswith("+")
    body = text[1:] if plus else text
    if not body or any(not ("0" <= ch <= "9") and ch not in SEPARATORS for ch in body):
        return None
    digits = digits_of(body)
    if not digits:
        return None
    leading_dash = body.lstrip()[:1] in _DASHES
    dash_group = None
    last = max(body.rfind(d) for d in _DASHES)
    if last > 0 and digits_of(body[:last]) and not leading_dash:
        group = digits_of(body[last + 1:])
        if group and body[last + 1:].strip().isdigit():
            dash_group = group
    return TextParts(plus, digits, extension, dash_group, leading_dash)


def strip_separators(text: str) -> str:
    """Remove separators (and a "(0)" after a country code) from an assertion piece."""
    text = unicodedata.normalize("NFKC", text)
    text = _ZERO_AFTER_DIGITS.sub(_KEEP_SEPARATORS, text)
    return "".join(ch for ch in text if ch not in SEPARATORS)


@lru_cache(maxsize=512)
def region_prefixes(region: str) -> tuple[str, str]:
    """(international prefix, national prefix) of a region as dialled there.

    Patterns in the metadata (e.g. Australia's) fall back to the preferred
    prefix, else to "00".  A region without a national prefix gives "".
    """
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if meta is None:
        return "00", "0"
    idd = meta.international_prefix or ""
    if not idd.isdigit():
        idd = digits_of(meta.preferred_international_prefix or "") or "00"
    trunk = meta.national_prefix or ""
    if not trunk.isdigit():
        trunk = ""
    return idd, trunk


_ACCEPTED = frozenset(
    {
        phonenumbers.ValidationResult.IS_POSSIBLE,
        phonenumbers.ValidationResult.TOO_LONG,
        phonenumbers.ValidationResult.INVALID_LENGTH,
    }
)
_TOO_SHORT = phonenumbers.ValidationResult.TOO_SHORT
#: E.164 numbers have at most 15 digits.
MAX_E164_DIGITS = 15
#: A number written with its country code or national prefix is read even
#: when the metadata finds it too short, if it has this many national digits.
MIN_WRITTEN_NSN = 5


def read_number(text: str, region: str | None) -> fastpn.Number | None:
    """:func:`to_number` as a (country code, national significant number) pair.

    ``text``: "+<digits>" (region None) or digits (a region); the pair is
    what :mod:`gateway.numbers.fastpn` reads, exactly as phonenumbers would.
    """
    number = fastpn.parse(text, region)
    if number is None:
        return None
    cc, nsn = number
    trunk = None
    if region is not None and text.isdigit():
        # A national prefix that phonenumbers kept because the rest looked
        # impossible is dropped: "031 739 63 7974" (a Swiss number with a long
        # direct-dial extension) would otherwise become "+41031739637974".
        trunk = region_prefixes(region)[1]
        if trunk and text.startswith(trunk) and nsn.startswith(trunk):
            number = fastpn.parse(f"+{cc}{text[len(trunk):]}", None)
            if number is None:
                return None
            cc, nsn = number
    nsn_len = len(nsn)
    if len(str(cc)) + nsn_len > MAX_E164_DIGITS:
        return None
    reason = fastpn.possible_reason(number)
    if reason in _ACCEPTED:
        return number
    if reason == _TOO_SHORT and nsn_len >= MIN_WRITTEN_NSN:
        # Written with its country code ("+41 61 80304-0") or national prefix
        # ("031 802 67 0"): where the number starts is not in doubt.
        if region is None:
            return number
        if trunk is None:
            trunk = region_prefixes(region)[1]
        if trunk and text.startswith(trunk):
            return number
    return None


def read_in_region(
    text: str, region: str, home: Any, trunk: str, main: Any = None
) -> fastpn.Number | None:
    """:func:`read_number` of digits ``text`` in a supported region.

    This runs for every region a national number is read in, so the steps of
    :func:`read_number` and of ``fastpn.parse`` are written out here for the
    usual case (no international or country code in front), with what they
    look up given: ``home``, the region's :func:`fastpn.region_meta`;
    ``trunk``, its national prefix (``region_prefixes(region)[1]``);
    ``main``, the metadata of its calling code (``fastpn.cc_meta``).
    """
    if len(text) > fastpn.MAX_INPUT or not (text.isascii() and text.isdigit()):
        return read_number(text, region)
    idd = home.idd
    if (idd is not None and idd.match(text)) or text.startswith(home.cc_str) or home.transform:
        number = fastpn.parse_national(text, home)
        if number is None:
            return None
        cc, nsn = number
    else:
        # fastpn.parse_national and _finish: no calling code in front.
        if len(text) < 2:
            return None
        cc, nsn = home.cc, text
        npp = home.npp
        match = npp.match(text) if npp is not None else None
        if match:
            potential = text[match.end():]
            gd = home.gd_match
            if gd is None or gd(text) is None or gd(potential) is not None:
                size = len(potential)
                if size < fastpn.LENGTH_TABLE:
                    result = home.by_length[size]
                else:
                    result = home.test_length(potential)
                if result not in fastpn.KEEP_PREFIX:
                    nsn = potential
        if len(nsn) > fastpn.MAX_NSN:
            return None
    if main is None or cc != home.cc:
        main = fastpn.cc_meta(cc)
    if trunk and nsn.startswith(trunk) and text.startswith(trunk):
        number = fastpn.parse_international(cc, text[len(trunk):])
        if number is None:
            return None
        cc, nsn = number
    nsn_len = len(nsn)
    if len(str(cc)) + nsn_len > MAX_E164_DIGITS:
        return None
    reason = main.by_length[nsn_len] if nsn_len < fastpn.LENGTH_TABLE else main.test_length(nsn)
    if reason in _ACCEPTED:
        return cc, nsn
    if reason == _TOO_SHORT and nsn_len >= MIN_WRITTEN_NSN and trunk and text.startswith(trunk):
        return cc, nsn
    return None


@lru_cache(maxsize=SPLIT_CACHE_SIZE)
def read_international(text: str) -> fastpn.Number | None:
    """``read_number(text, None)``, cached: a contact's numbers are read for its
    region hints, then parsed."""
    return read_number(text, None)


def to_number(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    """Parse "+<digits>" (region None) or national digits of ``region``; None if unusable.

    Accepted: a known country code, not too short for its country (when
    written with country code or national prefix: at least
    :data:`MIN_WRITTEN_NSN` national digits), at most 15 digits in all.  The number need not be valid nor of a length the metadata
    knows: address books hold numbers with long direct-dial extensions
    ("+41 44 89180-988") and ranges the metadata does not (yet) know, and an
    explicit country code or national prefix leaves no doubt how to read them.
    """
    number = read_number(text, region)
    return None if number is None else fastpn.to_phone_number(number)


def read_bare_national(
    digits: str, region: str, lenient: bool, number: fastpn.Number | None | bool = False
) -> fastpn.Number | None:
    """:func:`to_bare_national` as a (country code, national significant number) pair.

    ``number``: ``read_number(digits, region)`` when the caller has it.
    """
    if number is False:
        number = read_number(digits, region)
    if number is None or lenient:
        return number
    # Valid, and written as its national format: both are needed; the
    # cheaper test first.
    if digits_of(fastpn.format_national(number)) != digits:
        return None
    return number if fastpn.is_valid(number) else None


def to_bare_national(
    digits: str, region: str, lenient: bool
) -> phonenumbers.PhoneNumber | None:
    """Read national digits written without the national prefix, where that is usual.

    ``lenient`` (North America, countries without a national prefix): any
    usable number.  Elsewhere only a valid number whose national format
    itself has no prefix (Chinese mobiles "131 2345 6789", Peru "912 345
    678"); "89 1234567" in Germany, where "089" is written, gives None.
    """
    number = read_bare_national(digits, region, lenient)
    return None if number is None else fastpn.to_phone_number(number)


def e164_of(number: fastpn.Number) -> str:
    """E.164 form of a (country code, national significant number) pair."""
    return f"+{number[0]}{number[1]}"


def to_e164(text: str, region: str | None) -> str | None:
    """E.164 string of :func:`to_number`'s result, or None."""
    number = read_number(text, region)
    return None if number is None else f"+{number[0]}{number[1]}"


def head_of(
    e164: str, group: str | None, max_digits: int, *, number: fastpn.Number | None = None
) -> str | None:
    """The head number of ``e164`` when its last ``group`` digits are an extension.

    The head is what is left after removing the group; it must still be a
    number of its own: longer than country code plus area/network code, and
    not too short for its country ("+1 415-555" is no head of "+1 415-555-0100").
    Mobile numbers have no head.  ``number``: the pair ``e164`` was written
    from, when the caller has it (saves reading ``e164`` again).
    """
    if not group or len(group) > max_digits or not e164.endswith(group):
        return None
    head = e164[: -len(group)]
    whole = fastpn.reparse(number) if number is not None else fastpn.parse(e164, None)
    if whole is None:
        return None
    nsn_len = len(head) - 1 - len(str(whole[0]))
    if nsn_len <= max(fastpn.ndc_length(whole), 1):
        return None
    head_number = fastpn.parse(head, None)
    if head_number is None:
        return None
    reason = fastpn.possible_reason(head_number)
    if fastpn.number_type(whole) == phonenumbers.PhoneNumberType.MOBILE:
        return None  # mobiles have no direct-dial extensions
    if reason in (
        phonenumbers.ValidationResult.TOO_SHORT,
        phonenumbers.ValidationResult.INVALID_COUNTRY_CODE,
    ):
        return None
    return head

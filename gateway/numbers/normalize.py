"""Low-level helpers shared by the number modules: cleaning text, parsing to E.164.

Nothing here knows the PBX settings; the functions take the region and
prefixes they need as arguments.  All of them are pure and never raise for
bad input: they return ``None`` instead.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import phonenumbers
from attrs import frozen

__all__ = [
    "SEPARATORS",
    "TextParts",
    "digits_of",
    "extension_key",
    "head_of",
    "region_prefixes",
    "split_text",
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


def digits_of(text: str) -> str:
    """Only the ASCII digits of ``text`` (after Unicode normalization)."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if "0" <= ch <= "9")


def extension_key(e164: str, extension: str) -> str:
    """Index key of an extension that is not part of the E.164 ("+14155550100;ext=12")."""
    return f"{e164};ext={extension}"


@frozen
class TextParts:
    """A written number cut into what matters.

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


def split_text(raw: str) -> TextParts | None:
    """Cut a stored or asserted number into :class:`TextParts`; None for non-numbers.

    Accepts ``tel:`` URIs (with ``;ext=`` and other parameters), a leading label
    ("Tel.: "), the separators of :data:`SEPARATORS`, "(0)" after a country
    code and a trailing extension.  Anything else (letters, "*", "#") makes
    the text unreadable.
    """
    if not isinstance(raw, str):
        return None
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
    text = _ZERO_AFTER_DIGITS.sub(r"\1", text).strip()
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
    text = _ZERO_AFTER_DIGITS.sub(r"\1", text)
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
#: E.164 numbers have at most 15 digits.
MAX_E164_DIGITS = 15
#: A number written with its country code or national prefix is read even
#: when the metadata finds it too short, if it has this many national digits.
MIN_WRITTEN_NSN = 5


def to_number(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    """Parse "+<digits>" (region None) or national digits of ``region``; None if unusable.

    Accepted: a known country code, not too short for its country (when
    written with country code or national prefix: at least
    :data:`MIN_WRITTEN_NSN` national digits), at most 15 digits in all.  The number need not be valid nor of a length the metadata
    knows: address books hold numbers with long direct-dial extensions
    ("+41 44 89180-988") and ranges the metadata does not (yet) know, and an
    explicit country code or national prefix leaves no doubt how to read them.
    """
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if number.extension:
        return None
    if region is not None and text.isdigit():
        number = _strip_kept_trunk(number, text, region)
        if number is None:
            return None
    nsn_len = len(phonenumbers.national_significant_number(number))
    if len(str(number.country_code)) + nsn_len > MAX_E164_DIGITS:
        return None
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason in _ACCEPTED:
        return number
    if reason == phonenumbers.ValidationResult.TOO_SHORT and nsn_len >= MIN_WRITTEN_NSN:
        # Written with its country code ("+41 61 80304-0") or national prefix
        # ("031 802 67 0"): where the number starts is not in doubt.
        trunk = region_prefixes(region)[1] if region is not None else ""
        if region is None or (trunk and text.startswith(trunk)):
            return number
    return None


def _strip_kept_trunk(
    number: phonenumbers.PhoneNumber, digits: str, region: str
) -> phonenumbers.PhoneNumber | None:
    """Drop a national prefix that phonenumbers kept because the rest looked impossible.

    phonenumbers strips the prefix only when what follows fits the country's
    number pattern; "031 739 63 7974" (a Swiss number with a long direct-dial
    extension) would otherwise become "+41031739637974".
    """
    _idd, trunk = region_prefixes(region)
    if not trunk or not digits.startswith(trunk):
        return number
    if not phonenumbers.national_significant_number(number).startswith(trunk):
        return number
    try:
        return phonenumbers.parse(f"+{number.country_code}{digits[len(trunk):]}", None)
    except phonenumbers.NumberParseException:
        return None


def to_bare_national(
    digits: str, region: str, lenient: bool
) -> phonenumbers.PhoneNumber | None:
    """Read national digits written without the national prefix, where that is usual.

    ``lenient`` (North America, countries without a national prefix): any
    usable number.  Elsewhere only a valid number whose national format
    itself has no prefix (Chinese mobiles "131 2345 6789", Peru "912 345
    678"); "89 1234567" in Germany, where "089" is written, gives None.
    """
    number = to_number(digits, region)
    if number is None or lenient:
        return number
    if not phonenumbers.is_valid_number(number):
        return None
    national = digits_of(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL))
    return number if national == digits else None


def to_e164(text: str, region: str | None) -> str | None:
    """E.164 string of :func:`to_number`'s result, or None."""
    number = to_number(text, region)
    if number is None:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=4096)
def _ndc_length(e164: str) -> tuple[int, int] | None:
    """(country code length, national destination code length) of an E.164 number."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    cc_len = len(str(number.country_code))
    ndc = phonenumbers.length_of_national_destination_code(number)
    return cc_len, ndc


def head_of(e164: str, group: str | None, max_digits: int) -> str | None:
    """The head number of ``e164`` when its last ``group`` digits are an extension.

    The head is what is left after removing the group; it must still be a
    number of its own: longer than country code plus area/network code, and
    not too short for its country ("+1 415-555" is no head of "+1 415-555-0100").
    Mobile numbers have no head.
    """
    if not group or len(group) > max_digits or not e164.endswith(group):
        return None
    head = e164[: -len(group)]
    sizes = _ndc_length(e164)
    if sizes is None:
        return None
    cc_len, ndc = sizes
    nsn_len = len(head) - 1 - cc_len
    if nsn_len <= max(ndc, 1):
        return None
    try:
        whole = phonenumbers.parse(e164, None)
        reason = phonenumbers.is_possible_number_with_reason(phonenumbers.parse(head, None))
    except phonenumbers.NumberParseException:
        return None
    if phonenumbers.number_type(whole) == phonenumbers.PhoneNumberType.MOBILE:
        return None  # mobiles have no direct-dial extensions
    if reason in (
        phonenumbers.ValidationResult.TOO_SHORT,
        phonenumbers.ValidationResult.INVALID_COUNTRY_CODE,
    ):
        return None
    return head

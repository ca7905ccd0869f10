"""Property tests (hypothesis) of the phone-number core over many regions.

Numbers are built from phonenumbers' example numbers with random trailing
digits and kept only when phonenumbers calls them valid.
"""

from __future__ import annotations

import os

import phonenumbers
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.numbers import (
    NumberSettings,
    dialled_readings,
    format_number,
    hints_from_tallies,
    parse_stored,
    proximity_candidates,
    region_hints,
    region_tally,
    substring_matches,
    substring_patterns,
)
from gateway.numbers.normalize import digits_of

PNF = phonenumbers.PhoneNumberFormat
PNT = phonenumbers.PhoneNumberType

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
TYPES = [PNT.FIXED_LINE, PNT.MOBILE, PNT.FIXED_LINE_OR_MOBILE, PNT.TOLL_FREE, PNT.VOIP]
#: Regions that matter most to the product, drawn more often.
CORE_REGIONS = ["DE", "AT", "CH", "US", "GB", "FR", "NL", "IT", "ES", "PL", "BE", "DK", "SE"]

#: Examples per property; raise it for a thorough run (NUMBERS_EXAMPLES=2000).
EXAMPLES = int(os.environ.get("NUMBERS_EXAMPLES", "60"))

PROPS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)


@st.composite
def valid_numbers(draw, regions=None):
    """(region, PhoneNumber): a valid number of a region, with random trailing digits."""
    region = draw(
        st.sampled_from(regions) if regions else st.one_of(st.sampled_from(CORE_REGIONS), st.sampled_from(REGIONS))
    )
    kind = draw(st.sampled_from(TYPES))
    example = phonenumbers.example_number_for_type(region, kind)
    assume(example is not None)
    nsn = phonenumbers.national_significant_number(example)
    keep = draw(st.integers(min_value=max(1, len(nsn) - 5), max_value=len(nsn)))
    tail = draw(st.text(alphabet="0123456789", min_size=len(nsn) - keep, max_size=len(nsn) - keep))
    candidate = f"+{example.country_code}{nsn[:keep]}{tail}"
    number = phonenumbers.parse(candidate, None)
    if not phonenumbers.is_valid_number(number) or phonenumbers.region_code_for_number(number) != region:
        number = example
    assume(phonenumbers.is_valid_number(number))
    assume(phonenumbers.region_code_for_number(number) == region)
    return region, number


def e164_of(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, PNF.E164)


def international_variants(number: phonenumbers.PhoneNumber, idd: str) -> list[str]:
    """Ways people write a number with its country code."""
    intl = phonenumbers.format_number(number, PNF.INTERNATIONAL)  # "+49 89 1234567"
    cc = str(number.country_code)
    rest = intl[len(cc) + 2:]
    nsn = phonenumbers.national_significant_number(number)
    variants = [
        intl,
        e164_of(number),
        f"{idd} {cc} {rest}",
        f"{idd}{cc}{nsn}",
        phonenumbers.format_number(number, PNF.RFC3966),  # "tel:+49-89-1234567"
        f"+{cc}-{rest.replace(' ', '-')}",
        f"+{cc} {rest.replace(' ', '.')}",
        f"+{cc} {rest.replace(' ', '/')}",
        f"+{cc} ({rest.split(' ')[0]}) {' '.join(rest.split(' ')[1:])}".rstrip(),
        f"  +{cc}\u00a0{rest}  ",
    ]
    _idd, trunk = _prefixes(number)
    if trunk == "0" and not nsn.startswith("0"):
        variants.append(f"+{cc} (0){rest}")
        variants.append(f"+{cc} (0) {rest}")
    return variants


def _prefixes(number):
    from gateway.numbers.normalize import region_prefixes

    return region_prefixes(phonenumbers.region_code_for_number(number))


def national_variants(number: phonenumbers.PhoneNumber) -> list[str]:
    """Ways people write a number of their own country."""
    national = phonenumbers.format_number(number, PNF.NATIONAL)
    groups = national.replace("(", "").replace(")", "").replace("-", " ").split()
    variants = [national, "".join(groups), "/".join(groups), "-".join(groups), ".".join(groups)]
    if len(groups) >= 2:
        variants.append(f"({groups[0]}) {' '.join(groups[1:])}")
        variants.append(f"{groups[0]}/{''.join(groups[1:])}")
    return variants


@PROPS
@given(valid_numbers())
def test_every_written_variant_normalizes_to_the_same_e164(region_number):
    region, number = region_number
    expected = e164_of(number)
    pbx = NumberSettings(country="DE")  # writer abroad: international forms only
    for text in international_variants(number, pbx.idd):
        assert parse_stored(text, pbx).e164 == expected, text
    local = NumberSettings(country=region)
    for text in international_variants(number, local.idd):
        assert parse_stored(text, local).e164 == expected, text
    for text in national_variants(number):
        assume(digits_of(text))
        assert parse_stored(text, local).e164 == expected, (region, text)


@PROPS
@given(valid_numbers(), st.sampled_from(["", "0", "9"]))
def test_caller_id_in_every_dialled_form_has_the_stored_reading(region_number, line):
    region, number = region_number
    own = NumberSettings(country=region, outside_line=line)
    expected = parse_stored(phonenumbers.format_number(number, PNF.INTERNATIONAL), own).e164
    assert expected == e164_of(number)
    cc = str(number.country_code)
    nsn = phonenumbers.national_significant_number(number)
    national = phonenumbers.format_number_for_mobile_dialing(number, region, False)
    if not national.isdigit():  # "" or "+1..." where phonenumbers knows no national dialling
        national = digits_of(phonenumbers.format_number(number, PNF.NATIONAL))
    forms = [national, f"+{cc}{nsn}", f"{own.idd}{cc}{nsn}"]
    if line:
        forms += [line + national, f"{line}{own.idd}{cc}{nsn}"]
    for form in forms:
        readings = [r.e164 for r in dialled_readings(form, own)]
        assert expected in readings, (region, form, readings)


@PROPS
@given(valid_numbers(regions=CORE_REGIONS), st.sampled_from(["DE", "AT", "US", "GB", "FR"]))
def test_caller_id_from_abroad_reads_the_stored_number(region_number, pbx_country):
    _region, number = region_number
    pbx = NumberSettings(country=pbx_country, outside_line="0")
    stored = parse_stored(phonenumbers.format_number(number, PNF.INTERNATIONAL), pbx)
    cc = str(number.country_code)
    nsn = phonenumbers.national_significant_number(number)
    for form in (f"+{cc}{nsn}", f"{pbx.idd}{cc}{nsn}", f"0{pbx.idd}{cc}{nsn}"):
        assert stored.e164 in [r.e164 for r in dialled_readings(form, pbx)], form


@PROPS
@given(valid_numbers())
def test_national_form_has_no_reading_beyond_the_config(region_number):
    region, number = region_number
    expected = e164_of(number)
    national = digits_of(phonenumbers.format_number(number, PNF.NATIONAL))
    assume(len(national) > 3)
    plain = NumberSettings(country=region)  # no outside line, area code or main number
    assert [r.e164 for r in dialled_readings(national, plain)] == [expected]
    # an international form never has a second reading, whatever the config
    busy = NumberSettings(country=region, outside_line="0", area_code="5", main_number="")
    assert [r.e164 for r in dialled_readings(expected, busy)] == [expected]
    # with an outside line, every other reading is marked as dropping it
    for reading in dialled_readings(national, busy):
        assert reading.e164 == expected or reading.outside_line or reading.kind == "local"


@PROPS
@given(valid_numbers(regions=CORE_REGIONS), st.data())
def test_dial_prefixes_contains_and_suffixes_match(region_number, data):
    region, number = region_number
    own = NumberSettings(country=region, outside_line="0")
    stored = parse_stored(phonenumbers.format_number(number, PNF.INTERNATIONAL), own)
    national = stored.search_forms()[0]
    e164 = stored.e164
    n = data.draw(st.integers(min_value=1, max_value=len(national)))
    assert substring_matches(substring_patterns(national[:n], (), None, own), stored)
    assert substring_matches(substring_patterns("0" + national[:n], (), None, own), stored)
    m = data.draw(st.integers(min_value=2, max_value=len(e164)))
    assert substring_matches(substring_patterns(e164[:m], (), None, own), stored)
    start = data.draw(st.integers(min_value=1, max_value=len(e164) - 1))
    piece = e164[start:start + data.draw(st.integers(min_value=1, max_value=6))]
    assert substring_matches(substring_patterns(None, (piece,), None, own), stored)
    assert substring_matches(substring_patterns(None, (), e164[start:], own), stored)
    per_digit = list(national)
    assert substring_matches(
        substring_patterns(per_digit[0], tuple(per_digit[1:-1]), per_digit[-1], own), stored
    )


@PROPS
@given(valid_numbers(), st.sampled_from(["", "0", "9"]))
def test_formatted_output_reads_back_to_the_same_number(region_number, line):
    region, number = region_number
    own = NumberSettings(country=region, outside_line=line)
    stored = parse_stored(phonenumbers.format_number(number, PNF.E164), own)
    for style in ("e164", "international", "national"):
        text = format_number(stored, own, style)
        assert parse_stored(text, own).e164 == stored.e164, (style, text)
    dialable = format_number(stored, own, "dialable")
    assert dialable.isdigit()
    assert stored.e164 in [r.e164 for r in dialled_readings(dialable, own)], dialable


@PROPS
@given(valid_numbers(), st.integers(min_value=0, max_value=8))
def test_proximity_candidates_are_shorter_prefixes(region_number, max_digits):
    _region, number = region_number
    e164 = e164_of(number)
    candidates = proximity_candidates(e164, max_digits)
    assert len(candidates) <= max_digits
    lengths = [len(c) for c in candidates]
    assert lengths == sorted(lengths, reverse=True)
    assert len(set(lengths)) == len(lengths)
    keep = 1 + len(str(number.country_code)) + 4
    for candidate in candidates:
        assert e164.startswith(candidate) and keep <= len(candidate) < len(e164)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=30))
def test_garbage_never_raises(text):
    de = NumberSettings(country="DE", area_code="89", outside_line="0", main_number="+49 89 1234-0")
    stored = parse_stored(text, de)
    assert stored.raw == text
    for reading in dialled_readings(text, de):
        assert reading.e164.startswith("+")
    substring_matches(substring_patterns(text, (text,), text, de), stored)
    format_number(stored, de, "dialable")


_WRITTEN = st.sampled_from([
    "+49 89 1234567", "0049 89 1234567", "089 1234567", "+43 1 5123456", "0043 664 1234567", "+41 44 123 45 67",
    "+1 (415) 555-0100 x12", "+44 (0)20 7946 0018", "+33 1 23 45 67 89", "00331 23456789", "+49 171 1234567",
    "+49 1", "+999 123", "0171 1234567", "tel:+43-1-5123456", "Tel.: +41 44 1234567", "", "abc", "+43",
])


@given(st.lists(st.lists(_WRITTEN, max_size=4), max_size=6), st.sampled_from(["DE", "AT", "CH", "US"]))
def test_company_hints_from_tallies_equal_hints_of_all_numbers(contacts, country):
    """A company's region hints summed from each contact's tally are the hints of all its numbers
    (counts, the majority over the own country, ties in first-seen order)."""
    settings = NumberSettings(country=country)
    everything = [raw for numbers in contacts for raw in numbers]
    tallies = [region_tally(numbers, settings) for numbers in contacts]
    assert hints_from_tallies(tallies, settings) == region_hints(everything, settings)

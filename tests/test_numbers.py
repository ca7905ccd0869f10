"""Example tests of the phone-number core (gateway.numbers), German and US PBX."""

from __future__ import annotations

import pytest

from gateway.numbers import (
    NumberSettings,
    Reading,
    dialled_readings,
    extension_key,
    fallback_key,
    format_number,
    parse_stored,
    proximity_candidates,
    proximity_keys,
    substring_matches,
    substring_patterns,
)
from gateway.numbers.stored import region_hints


@pytest.fixture(scope="module")
def de() -> NumberSettings:
    return NumberSettings(
        country="DE",
        area_code="89",
        outside_line="0",
        main_number="+49 89 1234-0",
        extension_length=3,
    )


@pytest.fixture(scope="module")
def us() -> NumberSettings:
    return NumberSettings(country="US", area_code="415", outside_line="9")


def keys(readings: tuple[Reading, ...]) -> list[str]:
    return [r.e164 for r in readings]


# --------------------------------------------------------------------------- settings


def test_settings_defaults_from_country():
    de = NumberSettings()
    assert (de.country, de.idd, de.trunk, de.country_code) == ("DE", "00", "0", 49)
    us = NumberSettings(country="us")
    assert (us.country, us.idd, us.trunk, us.country_code) == ("US", "011", "1", 1)
    assert NumberSettings(country="AU").idd == "0011"


def test_settings_main_number_head(de):
    assert de.main_e164 == "+498912340"
    assert de.main_head == "+49891234"
    plain = NumberSettings(country="US", main_number="+1 415 555 0100")
    assert plain.main_head == plain.main_e164 == "+14155550100"


def test_settings_main_number_completed_by_area_code():
    s = NumberSettings(country="DE", area_code="89", main_number="1234-0")
    assert (s.main_e164, s.main_head) == ("+498912340", "+49891234")


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"country": "XX"}, "country"),
        ({"area_code": "08x"}, "area_code"),
        ({"area_code": "089"}, "area_code"),
        ({"outside_line": "0a"}, "outside_line"),
        ({"output": "fancy"}, "output"),
        ({"main_number": "call us"}, "main_number"),
        ({"main_number": "1234-0"}, "main_number"),  # no area code to complete it
        ({"extension_length": -1}, "extension_length"),
        ({"international_prefix": "+"}, "international_prefix"),
        ({"national_prefix": "o"}, "national_prefix"),
        ({"other_countries": ["AT", "QQ"]}, "other_countries"),
    ],
)
def test_settings_bad_values_raise_value_error(kwargs, word):
    with pytest.raises(ValueError, match=word):
        NumberSettings(**kwargs)


def test_settings_from_mapping_and_merged():
    s = NumberSettings.from_mapping({"country": "AT", "area_code": "1", "other_countries": "DE, CH"})
    assert (s.country, s.area_code, s.other_countries) == ("AT", "1", ("DE", "CH"))
    with pytest.raises(ValueError, match="unknown setting"):
        NumberSettings.from_mapping({"contry": "DE"})
    merged = s.merged({"country": "CH"})
    assert (merged.country, merged.area_code) == ("CH", "1")
    assert s.merged(None) is s


def test_settings_explicit_prefixes():
    s = NumberSettings(country="DE", international_prefix="000", national_prefix="")
    assert (s.idd, s.trunk) == ("000", "")


# --------------------------------------------------------------------------- stored


@pytest.mark.parametrize(
    "raw",
    [
        "+49 (0)89 1234-567",
        "+49 (89) 1234-567",
        "0049 89 1234567",
        "089/1234567",
        "(089) 123 45 67",
        "089 - 123 45 67",
        "089.123.45.67",
        "1234567",
        "tel:+49-89-1234567",
        "tel:+49891234567",
        "+49-89-1234567",
        "Tel.: 089 1234567",
        "\u00a0+49\u00a089\u00a01234567 ",
        "+49 89 1234\u2013567",
        "+49 [0] 89 1234567",
    ],
)
def test_stored_forms_normalize_to_one_e164(de, raw):
    stored = parse_stored(raw, de)
    assert stored.e164 == "+49891234567"
    assert stored.raw == raw
    assert stored.problem is None
    assert stored.match_keys() == ("+49891234567",)


def test_stored_local_number_uses_area_code(de):
    stored = parse_stored("1234567", de)
    assert (stored.e164, stored.kind) == ("+49891234567", "local")


def test_stored_head_plus_extension(de):
    stored = parse_stored("+49 30 9876-55", de)
    assert stored.e164 == "+4930987655"
    assert stored.head == "+49309876"
    assert not stored.is_head
    assert proximity_keys(stored) == ("+49309876",)


def test_stored_head_number_itself(de):
    stored = parse_stored("+49 89 1234-0", de)
    assert (stored.e164, stored.head, stored.is_head) == ("+498912340", "+49891234", True)
    other = parse_stored("+49 30 9876-0", de)
    assert (other.head, other.is_head) == ("+49309876", True)


@pytest.mark.parametrize("raw", ["-217", "217", " - 217"])
def test_stored_bare_extension_of_main_number(de, raw):
    stored = parse_stored(raw, de)
    assert stored.e164 == "+49891234217"
    assert stored.head == "+49891234"
    assert stored.kind == "extension"
    assert not stored.is_head
    assert "217" in stored.search_forms()


def test_stored_switchboard_extension(de):
    stored = parse_stored("0", de)
    assert (stored.e164, stored.is_head) == ("+498912340", True)


def test_stored_extension_without_main_number_is_reported():
    stored = parse_stored("-217", NumberSettings(country="DE"))
    assert stored.e164 is None
    assert stored.problem == "extension without main number"
    assert stored.match_keys() == ("217",)
    assert stored.search_forms() == ("217",)


def test_stored_number_of_own_company_gets_main_head(de):
    stored = parse_stored("089 1234567", de)
    assert stored.head == "+49891234"
    assert "567" in stored.search_forms()


def test_stored_dash_that_is_no_extension(de):
    # area code - subscriber: the part before the dash is no number of its own
    for raw in ("06221-12345", "+49-6221-12345", "0171-1234567", "0171 12345-67"):
        stored = parse_stored(raw, de)
        assert stored.e164 is not None
        assert stored.head is None, raw


def test_stored_us_extension(de):
    stored = parse_stored("+1 (415) 555-0100 x12", de)
    assert stored.e164 == "+14155550100"
    assert stored.extension == "12"
    assert stored.head is None
    assert stored.match_keys() == ("+14155550100", extension_key("+14155550100", "12"))


@pytest.mark.parametrize(
    "raw, ext",
    [
        ("+1 415-555-0100 ext. 12", "12"),
        ("+1 415 555 0100 Ext 7", "7"),
        ("tel:+1-415-555-0100;ext=99", "99"),
        ("+1 415 555 0100 extension 5", "5"),
    ],
)
def test_stored_extension_spellings(de, raw, ext):
    stored = parse_stored(raw, de)
    assert (stored.e164, stored.extension) == ("+14155550100", ext)


@pytest.mark.parametrize("raw", ["", "   ", "n/a", "call Bob", "+", "+4989", "12*34", "#"])
def test_stored_garbage_never_raises(de, raw):
    stored = parse_stored(raw, de)
    assert stored.e164 is None
    assert stored.problem
    assert stored.raw == raw


def test_stored_non_string_never_raises(de):
    stored = parse_stored(None, de)  # type: ignore[arg-type]
    assert stored.e164 is None


def test_stored_search_forms(de):
    forms = parse_stored("+49 89 1234567", de).search_forms()
    assert forms[:3] == ("0891234567", "+49891234567", "0049891234567")
    foreign = parse_stored("+43 1 234567", de).search_forms()
    assert "+431234567" in foreign and "00431234567" in foreign
    assert not any(f.startswith("01") for f in foreign)


def test_stored_long_direct_dial_numbers_are_kept():
    de = NumberSettings(country="DE")
    # longer than the Swiss plan allows, but written unambiguously
    assert parse_stored("+41 44 89180-988", de).e164 == "+414489180988"
    assert parse_stored("+41 61 80304-0", de).e164 == "+4161803040"


def test_stored_number_without_prefix_is_not_guessed():
    de = NumberSettings(country="DE")
    stored = parse_stored("(415) 555-0100", de)
    assert stored.e164 is None
    assert stored.problem == "no national prefix, country or area code"


def test_stored_foreign_national_number_with_region_hint():
    de = NumberSettings(country="DE")
    hints = region_hints(["+43 316 123456", "+43 664 1234567"], de)
    assert hints == ("AT",)
    stored = parse_stored("0316/654321", de, regions=hints)
    assert stored.e164 == "+43316654321"
    assert "+49316654321" in stored.alternative_keys()


def test_region_hints_need_a_majority_over_own_country():
    de = NumberSettings(country="DE")
    assert region_hints(["+49 89 1234567", "+43 1 234567"], de) == ()
    assert region_hints(["089 1234567", "+41 44 123 45 67"], de) == ("CH",)
    assert region_hints(["garbage", "+49 89 12345"], de) == ()


def test_stored_other_countries_give_alternatives():
    de = NumberSettings(country="DE", other_countries=("AT", "US"))
    stored = parse_stored("0699 489 800", de)
    assert stored.e164 == "+49699489800"  # own country first
    assert "+43699489800" in stored.alternatives
    us_number = parse_stored("(415) 555-0100", de)
    assert us_number.e164 == "+14155550100"  # not readable in Germany


def test_stored_us_settings(us):
    for raw in ("(415) 555-0100", "415.555.0100", "1-415-555-0100", "555-0100", "+1 415 555 0100"):
        assert parse_stored(raw, us).e164 == "+14155550100", raw
    assert parse_stored("011 49 89 1234567", us).e164 == "+49891234567"
    assert parse_stored("212-555-0100 Ext 9", us).extension == "9"


def test_stored_us_extension_without_direct_dial():
    us = NumberSettings(country="US", main_number="+1 415 555 0100")
    stored = parse_stored("-217", us)
    assert (stored.e164, stored.extension) == ("+14155550100", "217")
    assert stored.match_keys() == ("+14155550100", "+14155550100;ext=217")
    assert keys(dialled_readings("217", us)) == ["+14155550100;ext=217"]


# --------------------------------------------------------------------------- dialled


@pytest.mark.parametrize(
    "assertion, first_kind, via_line",
    [
        ("+49891234567", "international", False),
        ("+49 (0)89 1234-567", "international", False),
        ("0049891234567", "international", False),
        ("0891234567", "national", False),
        ("089/123 45 67", "national", False),
        ("1234567", "local", False),
        ("00891234567", "national", True),
        ("00049891234567", "international", True),
        ("01234567", "local", True),
        ("tel:+49891234567", "international", False),
    ],
)
def test_dialled_forms_read_to_the_number(de, assertion, first_kind, via_line):
    readings = dialled_readings(assertion, de)
    matching = [r for r in readings if r.e164 == "+49891234567"]
    assert matching, readings
    assert matching[0].kind == first_kind
    assert matching[0].outside_line is via_line
    assert "+49891234567" in matching[0].how


def test_dialled_extension(de):
    readings = dialled_readings("217", de)
    assert keys(readings) == ["+49891234217"]
    assert readings[0].kind == "extension"
    assert "extension 217" in readings[0].how


def test_dialled_order_prefers_reading_without_outside_line(de):
    readings = dialled_readings("0891234567", de)
    assert keys(readings) == ["+49891234567", "+4989891234567"]
    assert [r.outside_line for r in readings] == [False, True]
    readings = dialled_readings("0049891234567", de)
    assert keys(readings)[0] == "+49891234567"


def test_dialled_no_reading_the_config_rules_out():
    plain = NumberSettings(country="DE")  # no outside line, area code, main number
    assert keys(dialled_readings("0891234567", plain)) == ["+49891234567"]
    assert dialled_readings("00891234567", plain) == ()  # +89 is no country
    assert dialled_readings("1234567", plain) == ()  # no area code
    assert dialled_readings("217", plain) == ()  # no main number
    assert all(not r.outside_line for r in dialled_readings("0049891234567", plain))


def test_dialled_plus_is_never_reinterpreted(de):
    assert keys(dialled_readings("+4930123456", de)) == ["+4930123456"]


@pytest.mark.parametrize("garbage", ["", "abc", "L0#04012345678", "12*", "+", "++49"])
def test_dialled_garbage_gives_nothing(de, garbage):
    assert dialled_readings(garbage, de) == ()


def test_dialled_us(us):
    for assertion in ("+14155550100", "01114155550100", "14155550100", "4155550100", "5550100"):
        assert "+14155550100" in keys(dialled_readings(assertion, us)), assertion
    for assertion in ("914155550100", "95550100", "9011 1 415 555 0100"):
        readings = dialled_readings(assertion, us)
        assert "+14155550100" in keys(readings), assertion
    assert "+49891234567" in keys(dialled_readings("011 49 89 1234567", us))


def test_fallback_key_matches_unnormalized_digits(de):
    stored = parse_stored("+4989", de)
    assert fallback_key("+49 89") in stored.match_keys()
    assert fallback_key("nonsense") is None


# --------------------------------------------------------------------------- substrings


def matches(settings, stored_raw, initial=None, any_=(), final=None):
    stored = parse_stored(stored_raw, settings)
    return substring_matches(substring_patterns(initial, tuple(any_), final, settings), stored)


@pytest.mark.parametrize(
    "initial, any_, final",
    [
        ("089", (), None),  # dial prefix, national
        ("+4989", (), None),  # dial prefix with +
        ("004989", (), None),  # dial prefix with 00
        ("0089", (), None),  # outside line + national prefix
        ("00049", (), None),  # outside line + international
        ("089 12", (), None),  # separators
        ("123", (), None),  # local prefix -> 089123...
        (None, ("1234",), None),  # contains
        (None, ("0891234",), None),
        (None, (), "4989123456" + "7"),  # suffix (Superfecta)
        (None, (), "1234567"),
        ("0", ("8", "9", "1", "2"), None),  # per-digit
        ("0", ("8", "9", "1", "2", "3", "4", "5", "6"), "7"),
    ],
)
def test_substring_shapes_match(de, initial, any_, final):
    assert matches(de, "+49 (0)89 1234-567", initial, any_, final)


@pytest.mark.parametrize(
    "initial, any_, final",
    [
        ("030", (), None),
        ("+4930", (), None),
        (None, ("9999",), None),
        (None, (), "1234568"),
        ("abc", (), None),
        (None, ("x",), None),
    ],
)
def test_substring_shapes_do_not_match(de, initial, any_, final):
    assert not matches(de, "+49 (0)89 1234-567", initial, any_, final)


def test_substring_internal_extension_prefix(de):
    assert matches(de, "-217", "21")
    assert matches(de, "-217", "217")


def test_substring_unnormalized_number_matches_by_digits(de):
    assert matches(de, "+4989", None, ("498",))


def test_substring_without_outside_line_config():
    plain = NumberSettings(country="DE")
    assert not matches(plain, "+49 89 1234567", "0089")
    assert matches(plain, "+49 89 1234567", "089")


def test_substring_empty_pieces(de):
    # "(telephoneNumber=*-*)": nothing left; matches every number with a form
    assert substring_patterns(None, ("-",), None, de) == ((None, (), None),)
    assert matches(de, "+49 89 1234567", None, ("-",))


def test_substring_us(us):
    assert matches(us, "(415) 555-0100", "415")
    assert matches(us, "(415) 555-0100", "1415")
    assert matches(us, "(415) 555-0100", "+1415")
    assert matches(us, "(415) 555-0100", "555")  # local prefix -> 1415555
    assert matches(us, "(415) 555-0100", None, (), "5550100")


# --------------------------------------------------------------------------- output


def test_format_styles_de(de):
    stored = parse_stored("+49 (0)30 9876-55", de)
    assert format_number(stored, de) == "+4930987655"
    assert format_number(stored, de, "e164") == "+4930987655"
    assert format_number(stored, de, "international") == "+49 30 9876-55"
    assert format_number(stored, de, "national") == "030 9876-55"
    assert format_number(stored, de, "dialable") == "0030987655"
    assert format_number(stored, de, "stored") == "+49 (0)30 9876-55"


def test_format_plain_number(de):
    stored = parse_stored("+49 30 12345678", de)
    assert format_number(stored, de, "international") == "+49 30 12345678"
    assert format_number(stored, de, "national") == "030 12345678"
    assert format_number(stored, de, "dialable") == "003012345678"


def test_format_own_extension_is_dialled_internally(de):
    stored = parse_stored("-217", de)
    assert format_number(stored, de, "dialable") == "217"
    assert format_number(stored, de, "international") == "+49 89 1234-217"
    switchboard = parse_stored("+49 89 1234-0", de)
    assert format_number(switchboard, de, "dialable") == "008912340"  # "0" is the outside line


def test_format_foreign_number(de):
    stored = parse_stored("+1 (415) 555-0100 x12", de)
    assert format_number(stored, de, "international") == "+1 415-555-0100 ext. 12"
    assert format_number(stored, de, "national") == "+1 415-555-0100 ext. 12"
    assert format_number(stored, de, "dialable") == "00014155550100"


def test_format_us(us):
    stored = parse_stored("(415) 555-0100", us)
    assert format_number(stored, us, "national") == "(415) 555-0100"
    assert format_number(stored, us, "dialable") == "914155550100"
    assert format_number(parse_stored("+49 89 1234567", us), us, "dialable") == "901149891234567"


def test_format_unnormalized_falls_back_to_raw(de):
    stored = parse_stored("call reception", de)
    for style in ("e164", "international", "national", "dialable", "stored"):
        assert format_number(stored, de, style) == "call reception"


def test_format_output_setting_and_bad_style(de):
    s = NumberSettings(country="DE", output="national")
    assert format_number(parse_stored("+49 30 12345678", s), s) == "030 12345678"
    with pytest.raises(ValueError, match="style"):
        format_number(parse_stored("+49 30 12345678", s), s, "weird")


# --------------------------------------------------------------------------- proximity


def test_proximity_candidates():
    assert proximity_candidates("+49891234999") == (
        "+4989123499",
        "+498912349",
        "+49891234",
        "+4989123",
        "+498912",
    )
    assert proximity_candidates("+49891234999", 2) == ("+4989123499", "+498912349")
    # never shorter than country code + 4 digits
    assert proximity_candidates("+4989123") == ("+498912",)
    assert proximity_candidates("+14155550100", 5)[-1] == "+141555"
    assert proximity_candidates("not a number") == ()
    assert proximity_candidates("+999123456") == ()


def test_proximity_finds_stored_head(de):
    head = parse_stored("+49 89 1234-0", de)
    assert head.head in proximity_candidates("+49891234999")
    assert proximity_keys(head) == ("+49891234",)
    assert proximity_keys(parse_stored("+49 30 12345678", de)) == ()


def test_settings_from_config_object_and_mapping():
    from types import SimpleNamespace

    from gateway.numbers import settings_from_config

    config = SimpleNamespace(
        country="DE",
        area_code="89",
        outside_line="0",
        main_number="+49 89 1234-0",
        extension_length=3,
        output="national",
        international_prefix=None,
        national_prefix=None,
        answer_as_asked=True,  # not a numbers-core setting: ignored
    )
    s = settings_from_config(config)
    assert (s.country, s.main_head, s.output) == ("DE", "+49891234", "national")
    assert settings_from_config({"country": "AT", "answer_as_asked": False}).country == "AT"
    with pytest.raises(ValueError, match="country"):
        settings_from_config({"country": "Germany"})

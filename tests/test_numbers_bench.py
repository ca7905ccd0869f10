"""Caller-ID lookups end to end over an index: benchmark data and small hand-made sets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, settings

from gateway.numbers import NumberSettings
from gateway.numbers.queries_check import build_index, check_queries, lookup, main
from tests.test_numbers_properties import valid_numbers

GEN = Path(__file__).resolve().parents[2] / "shared" / "bench" / "gen_contacts.py"
BENCH = NumberSettings(country="DE", other_countries=("AT", "CH", "US", "GB", "FR", "NL"))


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory) -> Path:
    if not GEN.exists():
        pytest.skip(f"{GEN} not found")
    out = tmp_path_factory.mktemp("gen")
    subprocess.run(
        [sys.executable, str(GEN), "-n", "1000", "--queries", "1000", "-o", str(out)],
        check=True,
        capture_output=True,
    )
    return out


def test_benchmark_every_known_number_found_no_wrong_contact(bench_dir):
    result = check_queries(bench_dir / "contacts.json", bench_dir / "queries.json", BENCH)
    assert result["known"] > 500
    assert result["missed"] == 0, result["miss_examples"]
    assert result["hit_rate"] == 1.0
    assert result["false_positive_queries"] == 0, result["false_positive_examples"]
    assert result["wrong_contacts"] == 0
    assert result["unknown_callers_matched"] == 0


def test_benchmark_without_other_countries_is_still_exact(bench_dir):
    result = check_queries(
        bench_dir / "contacts.json", bench_dir / "queries.json", NumberSettings(country="DE")
    )
    assert result["hit_rate"] > 0.95
    assert result["wrong_contacts"] == 0


def test_queries_check_command_line(bench_dir, capsys):
    assert main([str(bench_dir), "--other-countries", "AT,CH,US,GB,FR,NL"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["hit_rate"] == 1.0


def contacts(*numbers_per_contact):
    return [
        {"id": f"c{i}", "phones": [{"type": "business", "number": n} for n in numbers]}
        for i, numbers in enumerate(numbers_per_contact)
    ]


def test_lookup_prefers_primary_keys_and_falls_back_to_digits():
    de = NumberSettings(country="DE", other_countries=("AT",))
    primary, alternative, unreadable = build_index(
        contacts(["0699 489 800"], ["+49 69 9489800"], ["+4989"]), de
    )
    # "+49 69 9489800" is both c0's reading in Germany and c1's number
    assert lookup(primary, alternative, "069 9489800", de) == {"c0", "c1"}
    # the Austrian reading only exists as c0's alternative
    assert lookup(primary, alternative, "+43 699 489800", de) == {"c0"}
    assert lookup(primary, alternative, "+49 89", de) == {"c2"}
    assert [s.raw for s in unreadable] == ["+4989"]


def test_lookup_uses_the_first_reading_that_exists():
    de = NumberSettings(country="DE", area_code="89", outside_line="0")
    primary, alternative, _ = build_index(contacts(["089 1234567"], ["+49 89 89 1234567"]), de)
    assert lookup(primary, alternative, "0891234567", de) == {"c0"}
    assert lookup(primary, alternative, "00891234567", de) == {"c0"}
    assert lookup(primary, alternative, "+4989891234567", de) == {"c1"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(valid_numbers(), valid_numbers())
def test_no_query_returns_a_contact_with_a_different_number(a, b):
    (region, number_a), (_, number_b) = a, b
    e164_a = phonenumbers.format_number(number_a, phonenumbers.PhoneNumberFormat.E164)
    e164_b = phonenumbers.format_number(number_b, phonenumbers.PhoneNumberFormat.E164)
    assume(e164_a != e164_b)
    own = NumberSettings(country=region)
    intl = phonenumbers.PhoneNumberFormat.INTERNATIONAL
    primary, alternative, _ = build_index(
        contacts(
            [phonenumbers.format_number(number_a, intl)], [phonenumbers.format_number(number_b, intl)]
        ),
        own,
    )
    cc, nsn = str(number_a.country_code), phonenumbers.national_significant_number(number_a)
    national = "".join(
        ch for ch in phonenumbers.format_number(number_a, phonenumbers.PhoneNumberFormat.NATIONAL)
        if ch.isdigit()
    )
    for form in (e164_a, f"{own.idd}{cc}{nsn}", national):
        assert lookup(primary, alternative, form, own) == {"c0"}, form


def test_numbers_bench_measures_every_part():
    if not GEN.exists():
        pytest.skip(f"{GEN} not found")
    from gateway.numbers.bench import bench

    result = bench(300, repeat=1)
    assert result["contacts"] == 300 and result["stored_numbers"] > 300
    for key in ("stored_us", "stored_warm_us", "readings_us", "readings_warm_us", "patterns_us",
                "patterns_warm_us"):
        assert result[key] > 0, key
    assert result["stored_warm_us"] < result["stored_us"]


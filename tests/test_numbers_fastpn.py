"""The fast paths of the number core give exactly what phonenumbers and the plain code give.

``gateway.numbers.fastpn`` re-implements, for digit strings, the phonenumbers
calls the core makes; ``stored._read`` writes out ``read_number`` for the
usual national readings.  Both are checked here against the originals, on
every region's example numbers (with their digits changed) and on random
digit strings, deterministically (seeded).
"""

from __future__ import annotations

import os
import random

import phonenumbers
import pytest

from gateway.numbers import NumberSettings, fastpn
from gateway.numbers.normalize import (
    digits_of,
    read_in_region,
    read_number,
    region_prefixes,
    to_bare_national,
    to_number,
)
from gateway.numbers.stored import _BARE, _BARE_LENIENT, _read, _read_plan, _region_plan

PNF = phonenumbers.PhoneNumberFormat
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
TYPES = [
    getattr(phonenumbers.PhoneNumberType, name)
    for name in dir(phonenumbers.PhoneNumberType)
    if name.isupper() and name != "UNKNOWN"
]


def reference_parse(text: str, region: str | None):
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None, None
    if number.extension:
        return None, None
    return (number.country_code, phonenumbers.national_significant_number(number)), number


def texts(seed: int, per_type: int = 2) -> list[tuple[str, str | None]]:
    """(text, region) inputs: example numbers of every region and type, mangled, and noise."""
    rng = random.Random(seed)
    out: list[tuple[str, str | None]] = []
    for region in REGIONS:
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        idd = meta.preferred_international_prefix or (
            meta.international_prefix if (meta.international_prefix or "").isdigit() else "00"
        )
        trunk = meta.national_prefix or ""
        for kind in TYPES:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            cc = str(example.country_code)
            nsn = phonenumbers.national_significant_number(example)
            for _ in range(per_type):
                keep = rng.randint(0, len(nsn))
                body = nsn[:keep] + "".join(rng.choice("0123456789") for _ in range(len(nsn) - keep))
                body += "".join(rng.choice("0123456789") for _ in range(rng.choice([0, 0, 1, 3])))
                if rng.random() < 0.2:
                    body = body[: rng.randint(0, len(body))]
                for text in ("+" + cc + body, "+" + cc + trunk + body):
                    out.append((text, None))
                for text in (trunk + body, body, cc + body, idd + cc + body, "0" + body):
                    if text:
                        out.append((text, region))
                        out.append((text, rng.choice(REGIONS)))
    for _ in range(3000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 19)))
        if rng.random() < 0.5:
            out.append(("+" + digits, None))
        elif digits:
            out.append((digits, rng.choice(REGIONS)))
    return out


#: Rounds of random inputs; raise it for a thorough run (NUMBERS_FASTPN_ROUNDS=20).
ROUNDS = int(os.environ.get("NUMBERS_FASTPN_ROUNDS", "1"))


@pytest.mark.parametrize("seed", range(1, ROUNDS + 1))
def test_fastpn_equals_phonenumbers(seed):
    wrong = []
    for text, region in texts(seed, per_type=1):
        expected, number = reference_parse(text, region)
        got = fastpn.parse(text, region)
        if got != expected:
            wrong.append(("parse", text, region, expected, got))
            continue
        if got is None:
            continue
        checks = [
            ("object", fastpn.to_phone_number(got), number),
            ("possible", fastpn.possible_reason(got), phonenumbers.is_possible_number_with_reason(number)),
            ("valid", fastpn.is_valid(got), phonenumbers.is_valid_number(number)),
            ("type", fastpn.number_type(got), phonenumbers.number_type(number)),
            ("region", fastpn.region_for_number(got), phonenumbers.region_code_for_number(number)),
            ("national", fastpn.format_national(got), phonenumbers.format_number(number, PNF.NATIONAL)),
            ("international", fastpn.format_international(got),
             phonenumbers.format_number(number, PNF.INTERNATIONAL)),
            ("ndc", fastpn.ndc_length(got), phonenumbers.length_of_national_destination_code(number)),
            ("reparse", fastpn.reparse(got), reference_parse(
                phonenumbers.format_number(number, PNF.E164), None)[0]),
        ]
        digits = fastpn.national_digits(got)
        if digits is not None:
            checks.append(("national digits", digits, digits_of(fastpn.format_national(got))))
        wrong += [(what, text, region, want, have) for what, have, want in checks if have != want]
    assert not wrong, f"{len(wrong)} differ; first: {wrong[:5]}"


def test_fastpn_short_inputs_exhaustively():
    wrong = []
    for length in range(0, 5):
        for i in range(10**length if length else 1):
            digits = str(i).zfill(length) if length else ""
            cases = [("+" + digits, None)] + [
                (digits, region) for region in ("DE", "US", "GB", "AR", "BR", "IT", "RU", "CN", "AU")
            ]
            for text, region in cases:
                if fastpn.parse(text, region) != reference_parse(text, region)[0]:
                    wrong.append((text, region))
    assert not wrong, wrong[:10]


def reference_read(d: str, settings: NumberSettings, regions: tuple[str, ...]):
    """The national readings as the plain code reads them (no written-out paths)."""
    out = {}
    for region, tier, own, idd, trunk, optional, *_ in _region_plan(settings, regions):
        if d.startswith(idd):
            continue
        if trunk and d.startswith(trunk):
            candidates = [(d, "national")]
        else:
            candidates = []
            if own and settings.area_code:
                candidates.append((trunk + settings.area_code + d, "local"))
            candidates.append((d, _BARE_LENIENT if optional else _BARE))
        for text, kind in candidates:
            if kind in (_BARE, _BARE_LENIENT):
                number = to_bare_national(text, region, kind == _BARE_LENIENT)
                kind = "national"
            else:
                number = to_number(text, region)
            if number is None:
                continue
            e164 = phonenumbers.format_number(number, PNF.E164)
            if e164 not in out:
                out[e164] = (e164, kind, tier)
    return list(out.values())


@pytest.mark.parametrize(
    "settings",
    [
        NumberSettings(country="DE", other_countries=("AT", "CH", "US", "GB", "FR", "NL")),
        NumberSettings(country="GB", area_code="20", other_countries=("IE", "GG", "JE", "IM")),
        NumberSettings(country="US", area_code="415", other_countries=("CA", "MX", "DE")),
        NumberSettings(country="IT", other_countries=("SM", "VA", "AR", "BR", "AU")),
        NumberSettings(country="RU", area_code="495", other_countries=("KZ", "CN", "KR", "FI")),
        NumberSettings(country="DE", national_prefix="", international_prefix="000"),
        NumberSettings(country="FR", other_countries=("BE", "LU", "MC", "CH", "US", "JP")),
        NumberSettings(country="NL", area_code="20", other_countries=("BE", "DE")),
    ],
)
def test_written_out_readings_equal_the_plain_code(settings):
    rng = random.Random(settings.country)
    inputs = [fastpn_text for fastpn_text, region in texts(3, per_type=1) if region is not None]
    inputs = rng.sample(inputs, 1500) + [
        "0" * n + "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 18)))
        for n in (1, 1, 1, 2) for _ in range(150)
    ]
    wrong = []
    for d in inputs:
        regions = rng.choice([(), ("AT",), ("US", "CA"), ("CN",), ("BR", "AR"), ("GB", "GG")])
        want = reference_read(d, settings, regions)
        plans, usual = _read_plan(settings, regions)
        for plan_usual in (usual, None):  # with the loop for digits starting with "0", and without
            got = [(e164, kind, tier) for e164, kind, _, tier in _read(d, plans, settings, plan_usual)[0]]
            if got != want:
                wrong.append((d, regions, plan_usual is not None, want, got))
    assert not wrong, f"{len(wrong)} differ; first: {wrong[:3]}"


def test_read_in_region_equals_read_number():
    rng = random.Random(4)
    wrong = []
    for d, region in texts(5, per_type=1):
        if region is None or not d.isdigit():
            continue
        home = fastpn.region_meta(region)
        trunk = region_prefixes(region)[1]
        for main in (None, fastpn.cc_meta(home.cc)):
            if read_in_region(d, region, home, trunk, main) != read_number(d, region):
                wrong.append((d, region))
        if rng.random() < 0.1 and read_in_region(d + "\u0663", region, home, trunk) != read_number(
            d + "\u0663", region
        ):
            wrong.append((d + "\u0663", region))
    assert not wrong, wrong[:10]

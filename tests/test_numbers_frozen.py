"""Stored-number normalization is frozen: results equal a recorded copy.

``tests/data/numbers_frozen.json`` holds, for about 3,000 stored numbers of
the benchmark generator (``shared/bench/gen_contacts.py -n 10000``, sampled
deterministically) with the benchmark settings, every number of
``conf/demo-contacts.json`` with the settings of ``conf/demo.toml``, a
sample under a US and an Austrian PBX, and hand-picked odd writings: the
input ``(raw, settings, regions)`` and every field of the
:class:`StoredNumber` that :func:`parse_stored` gave, plus the
:func:`region_hints` of sampled contacts and companies.  The file was
recorded before the fast paths of ``gateway.numbers`` were written; any
change in results fails here.  Results depend on phonenumbers' metadata: the
file names the version it was recorded with, and the tests are skipped under
another one (``tests/test_numbers_fastpn.py`` still compares the fast paths
with the installed phonenumbers).

Regenerate only on purpose (a deliberate change of behaviour)::

    .venv/bin/python -m tests.test_numbers_frozen --write ../shared/bench/gen_contacts.py
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import phonenumbers
import pytest

from gateway.numbers import NumberSettings, parse_stored, region_hints
from gateway.numbers.stored import StoredNumber

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "numbers_frozen.json"

#: The settings the fixture was recorded with, by name.
SETTINGS = {
    "bench": NumberSettings(country="DE", other_countries=("AT", "CH", "US", "GB", "FR", "NL")),
    # conf/demo.toml [numbers]
    "demo": NumberSettings(
        country="DE",
        area_code="89",
        outside_line="0",
        main_number="+49 89 1234-0",
        extension_length=3,
        output="e164",
    ),
    "us": NumberSettings(
        country="US",
        area_code="415",
        outside_line="9",
        main_number="+1 415 555 0100",
        other_countries=("CA", "DE", "GB"),
    ),
    "at": NumberSettings(
        country="AT", area_code="1", outside_line="0", main_number="+43 1 4000-0",
        other_countries=("DE", "CH", "IT"),
    ),
    "plain": NumberSettings(country="DE"),
}

#: StoredNumber fields in the order they are recorded.
FIELDS = ("e164", "extension", "head", "is_head", "digits", "forms", "kind", "problem", "alternatives")

#: Odd writings, read under every settings.
ODD = [
    "", "   ", "n/a", "call Bob", "+", "+4989", "12*34", "#", "0", "00", "000", "1", "12",
    "217", "-217", " - 217", "-0", "1234567", "01234567", "0891234567", "00891234567",
    "+49 (0)89 1234-567", "+49 (89) 1234-567", "0049 89 1234567", "089/1234567",
    "(089) 123 45 67", "089.123.45.67", "tel:+49-89-1234567", "Tel.: 089 1234567",
    "\u00a0+49\u00a089\u00a01234567 ", "+49 89 1234\u2013567", "+49 [0] 89 1234567",
    "+49 30 9876-55", "+49 89 1234-0", "+49 30 9876-0", "06221-12345", "+49-6221-12345",
    "0171-1234567", "0171 12345-67", "+1 (415) 555-0100 x12", "+1 415-555-0100 ext. 12",
    "tel:+1-415-555-0100;ext=99", "+1 415 555 0100 extension 5", "+41 44 89180-988",
    "+41 61 80304-0", "(415) 555-0100", "415.555.0100", "1-415-555-0100", "555-0100",
    "011 49 89 1234567", "212-555-0100 Ext 9", "0699 489 800", "0316/654321",
    "+43 316 123456", "+43 664 1234567", "031 739 63 7974", "031 802 67 0",
    "131 2345 6789", "+86 131 2345 6789", "+39 06 1234 5678", "+39 312 345 6789",
    "+44 20 7946 0958", "+44 7700 900123", "020 7946 0958", "+7 495 123-45-67",
    "+54 9 11 1234-5678", "+55 11 91234-5678", "+800 1234 5678", "+999 123456",
    "+49 1234567890123456", "0049", "00 49 89", "+49 89 12", "Durchwahl 12",
    "089 1234567 DW 12", "0800 1234567", "+49 800 1234567", "+49 (0) 180 5 123456",
    "(0)89 1234567", "+1 800 FLOWERS", "\uff10\uff18\uff19 1234567", "089\u200b1234567",
    "+33 1 23 45 67 89", "01 23 45 67 89", "+31 20 123 4567", "020 123 4567",
    "+41 44 668 18 00", "044 668 18 00", "0664 1234567", "+43 1 58858-0", "01 58858-0",
]


def _record(stored: StoredNumber) -> list:
    return [list(v) if isinstance(v, tuple) else v for v in (getattr(stored, f) for f in FIELDS)]


def _company_hints(contacts: list[dict], settings: NumberSettings) -> dict[str, tuple[str, ...]]:
    by_company: dict[str, list[str]] = {}
    for contact in contacts:
        company = contact.get("companyName")
        if company:
            by_company.setdefault(company, []).extend(
                p.get("number") or "" for p in contact.get("phones") or ()
            )
    return {c: region_hints(nums, settings) for c, nums in by_company.items()}


def _phones(contact: dict) -> list[str]:
    return [p.get("number") or "" for p in contact.get("phones") or ()]


def build(gen_script: str | Path) -> dict:
    """Record today's results (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, str(gen_script), "-n", "10000", "-o", tmp],
            check=True,
            capture_output=True,
        )
        gen = json.loads((Path(tmp) / "contacts.json").read_text(encoding="utf-8"))["value"]
    demo = json.loads((ROOT / "conf" / "demo-contacts.json").read_text(encoding="utf-8"))["value"]
    cases: list[list] = []  # [settings, raw, regions, record]
    hints: list[list] = []  # [settings, raws, regions]

    def add(name: str, raw: str, regions: tuple[str, ...]) -> None:
        stored = parse_stored(raw, SETTINGS[name], regions=regions)
        cases.append([name, raw, list(regions), _record(stored)])

    def sample(name: str, contacts: list[dict], count: int, seed: int, hint_count: int) -> None:
        settings = SETTINGS[name]
        company = _company_hints(contacts, settings)
        rng = random.Random(seed)
        slots = [(i, j) for i, c in enumerate(contacts) for j in range(len(_phones(c)))]
        chosen = sorted(rng.sample(slots, min(count, len(slots))))
        for i, j in chosen:
            contact = contacts[i]
            own = region_hints(_phones(contact), settings)
            shared = company.get(contact.get("companyName") or "", ())
            raw = _phones(contact)[j]
            add(name, raw, own)  # as the index reads it (own numbers only)
            both = tuple(dict.fromkeys(own + shared))
            if both != own:  # as queries_check reads it (plus the company's)
                add(name, raw, both)
        for i in sorted(rng.sample(range(len(contacts)), min(hint_count, len(contacts)))):
            raws = _phones(contacts[i])
            hints.append([name, raws, list(region_hints(raws, settings))])
        companies = sorted({c.get("companyName") for c in contacts if c.get("companyName")})
        for company_name in rng.sample(companies, min(hint_count // 4, len(companies))):
            raws = [r for c in contacts if c.get("companyName") == company_name for r in _phones(c)]
            hints.append([name, raws, list(region_hints(raws, settings))])

    sample("bench", gen, 3000, 1, 200)
    sample("demo", demo, 10_000, 2, 100)  # every demo number
    sample("demo", gen, 250, 3, 0)
    sample("us", gen, 150, 4, 40)
    sample("at", gen, 150, 5, 40)
    sample("plain", gen, 100, 6, 0)
    for name in SETTINGS:
        for raw in ODD:
            add(name, raw, ())
            add(name, raw, ("AT", "US"))
    return {
        "phonenumbers": phonenumbers.__version__,
        "fields": list(FIELDS),
        "cases": cases,
        "hints": hints,
    }


def _dumps(data: dict) -> str:
    """JSON with one case per line (readable diffs)."""

    def dump(value) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    lines = ["{", f'"phonenumbers":{dump(data["phonenumbers"])},', f'"fields":{dump(data["fields"])},',
             '"cases":[']
    lines += [dump(case) + "," for case in data["cases"]]
    lines[-1] = lines[-1].rstrip(",")
    lines += ["],", '"hints":[']
    lines += [dump(hint) + "," for hint in data["hints"]]
    lines[-1] = lines[-1].rstrip(",")
    lines += ["]", "}"]
    return "\n".join(lines) + "\n"


def _load() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def frozen() -> dict:
    data = _load()
    if data["phonenumbers"] != phonenumbers.__version__:
        # Other metadata reads some numbers otherwise: the record says nothing.
        pytest.skip(
            f"recorded with phonenumbers {data['phonenumbers']}, installed "
            f"{phonenumbers.__version__}: compare with that version or record anew"
        )
    return data


def test_fixture_is_small_and_broad(frozen):
    assert FIXTURE.stat().st_size < 1_100_000
    names = {case[0] for case in frozen["cases"]}
    assert names == set(SETTINGS)
    assert sum(case[0] == "bench" for case in frozen["cases"]) >= 3000
    assert frozen["fields"] == list(FIELDS)


def test_parse_stored_equals_the_recorded_results(frozen):
    wrong = []
    for name, raw, regions, expected in frozen["cases"]:
        got = _record(parse_stored(raw, SETTINGS[name], regions=tuple(regions)))
        if got != expected:
            wrong.append((name, raw, regions, dict(zip(FIELDS, expected)), dict(zip(FIELDS, got))))
    assert not wrong, f"{len(wrong)} differ; first: {wrong[:3]}"


def test_parse_stored_is_stable_when_repeated(frozen):
    """A second reading (from any cache) gives the same results."""
    for name, raw, regions, expected in frozen["cases"][:500]:
        for _ in range(2):
            assert _record(parse_stored(raw, SETTINGS[name], regions=tuple(regions))) == expected


def test_region_hints_equal_the_recorded_results(frozen):
    wrong = [
        (name, raws, expected, got)
        for name, raws, expected in frozen["hints"]
        if list(got := region_hints(raws, SETTINGS[name])) != expected
    ]
    assert not wrong, f"{len(wrong)} differ; first: {wrong[:3]}"


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) != 3 or sys.argv[1] != "--write":
        raise SystemExit(__doc__)
    data = build(sys.argv[2])
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(_dumps(data), encoding="utf-8")
    print(f"{FIXTURE}: {len(data['cases'])} cases, {len(data['hints'])} hints, "
          f"{FIXTURE.stat().st_size} bytes")

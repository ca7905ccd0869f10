"""Measure caller-ID lookups on the benchmark data of ``shared/bench/gen_contacts.py``.

Loads ``contacts.json`` (Graph-like contacts with ``phones``) and
``queries.json`` (``kind == "phone"`` items with the dialled ``input`` and the
``expect``-ed contact ids), indexes every stored number by its match keys,
and answers each query the way the LDAP search does: the first reading of
:func:`dialled_readings` that exists in the index (then the digits fallback).

Run::

    python -m gateway.numbers.queries_check bench-data/10k --country DE
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.numbers.dialled import dialled_readings, fallback_key
from gateway.numbers.settings import NumberSettings
from gateway.numbers.stored import StoredNumber, parse_stored, region_hints

__all__ = ["build_index", "check_queries", "contact_regions", "lookup"]


def contact_regions(
    contacts: Sequence[dict[str, Any]], settings: NumberSettings
) -> list[tuple[str, ...]]:
    """Region hints per contact: its own numbers first, then its company's.

    A contact's numbers written with a foreign country code say where the
    contact is; so do those of its colleagues (same ``companyName``), which
    helps a contact whose only number is written nationally.
    """
    by_company: dict[str, list[str]] = {}
    for contact in contacts:
        company = contact.get("companyName")
        if company:
            by_company.setdefault(company, []).extend(
                p.get("number") or "" for p in contact.get("phones") or ()
            )
    out = []
    for contact in contacts:
        own = region_hints((p.get("number") or "" for p in contact.get("phones") or ()), settings)
        company = contact.get("companyName")
        shared = region_hints(by_company.get(company, ()), settings) if company else ()
        out.append(tuple(dict.fromkeys(own + shared)))
    return out


def build_index(
    contacts: Sequence[dict[str, Any]], settings: NumberSettings, *, use_hints: bool = True
) -> tuple[dict[str, set[str]], dict[str, set[str]], list[StoredNumber]]:
    """Index every stored number: (primary keys -> ids, alternative keys -> ids, unreadable)."""
    primary: dict[str, set[str]] = {}
    alternative: dict[str, set[str]] = {}
    unreadable: list[StoredNumber] = []
    hints = contact_regions(contacts, settings) if use_hints else [()] * len(contacts)
    for contact, regions in zip(contacts, hints):
        for phone in contact.get("phones") or ():
            stored = parse_stored(phone.get("number") or "", settings, regions=regions)
            if stored.e164 is None:
                unreadable.append(stored)
            for key in stored.match_keys():
                primary.setdefault(key, set()).add(contact["id"])
            for key in stored.alternative_keys():
                alternative.setdefault(key, set()).add(contact["id"])
    return primary, alternative, unreadable


def lookup(
    primary: dict[str, set[str]],
    alternative: dict[str, set[str]],
    assertion: str,
    settings: NumberSettings,
) -> set[str]:
    """Contacts for a caller-ID assertion.

    The first reading found among primary keys; else the first found among
    alternative keys; else the digits key of unnormalized numbers.
    """
    readings = dialled_readings(assertion, settings)
    for index in (primary, alternative):
        for reading in readings:
            hit = index.get(reading.e164)
            if hit:
                return set(hit)
    key = fallback_key(assertion)
    return set(primary.get(key, ())) if key else set()


def check_queries(
    contacts_json_path: str | Path,
    queries_json_path: str | Path,
    settings: NumberSettings,
    *,
    examples: int = 10,
    use_hints: bool = True,
) -> dict[str, Any]:
    """Hit rate and false positives of caller-ID lookups on benchmark data.

    Counts, over the ``kind == "phone"`` queries: ``known`` (queries with
    expected contacts), ``found`` (every expected contact returned),
    ``missed`` (some expected contact not returned), ``false_positive_queries``
    (queries that returned a contact not expected, including unknown
    callers that matched something) and ``wrong_contacts`` (how many such
    contacts in all); plus stored numbers that could not be normalized.
    """
    with open(contacts_json_path, encoding="utf-8") as f:
        data = json.load(f)
    contacts = data["value"] if isinstance(data, dict) else data
    with open(queries_json_path, encoding="utf-8") as f:
        queries = json.load(f)
    phone_queries = [q for q in queries.get("phone", ()) if q.get("kind") == "phone"]

    primary, alternative, unreadable = build_index(contacts, settings, use_hints=use_hints)
    known = found = missed = unknown = unknown_hits = 0
    false_positive_queries = wrong_contacts = 0
    miss_examples: list[dict[str, Any]] = []
    fp_examples: list[dict[str, Any]] = []
    for query in phone_queries:
        expect = set(query.get("expect") or ())
        got = lookup(primary, alternative, query["input"], settings)
        wrong = got - expect
        if expect:
            known += 1
            if expect <= got:
                found += 1
            else:
                missed += 1
                if len(miss_examples) < examples:
                    miss_examples.append({"input": query["input"], "e164": query.get("e164")})
        else:
            unknown += 1
            if got:
                unknown_hits += 1
        if wrong:
            false_positive_queries += 1
            wrong_contacts += len(wrong)
            if len(fp_examples) < examples:
                fp_examples.append(
                    {"input": query["input"], "e164": query.get("e164"), "wrong": sorted(wrong)}
                )
    stored_total = sum(len(c.get("phones") or ()) for c in contacts)
    return {
        "queries": len(phone_queries),
        "known": known,
        "found": found,
        "missed": missed,
        "hit_rate": found / known if known else 1.0,
        "unknown_callers": unknown,
        "unknown_callers_matched": unknown_hits,
        "false_positive_queries": false_positive_queries,
        "wrong_contacts": wrong_contacts,
        "stored_numbers": stored_total,
        "stored_unnormalized": len(unreadable),
        "unnormalized_problems": dict(Counter(s.problem for s in unreadable)),
        "miss_examples": miss_examples,
        "false_positive_examples": fp_examples,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: print the measures of :func:`check_queries` as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datadir", help="output folder of gen_contacts.py")
    parser.add_argument("--country", default="DE")
    parser.add_argument("--area-code", default="")
    parser.add_argument("--outside-line", default="")
    parser.add_argument("--main-number", default="")
    parser.add_argument("--extension-length", type=int, default=3)
    parser.add_argument(
        "--other-countries", default="", help="e.g. 'AT,CH,US': national numbers also read there"
    )
    parser.add_argument(
        "--no-hints", action="store_true", help="do not read numbers in the contact's countries"
    )
    args = parser.parse_args(argv)
    settings = NumberSettings(
        country=args.country,
        area_code=args.area_code,
        outside_line=args.outside_line,
        main_number=args.main_number,
        extension_length=args.extension_length,
        other_countries=args.other_countries,
    )
    folder = Path(args.datadir)
    result = check_queries(
        folder / "contacts.json", folder / "queries.json", settings, use_hints=not args.no_hints
    )
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

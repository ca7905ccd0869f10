"""Caller-ID hit rate and wrong contacts on the generator's queries (issue 3).

Every phone query of queries.json is sent through the real search path
(filter -> plan -> index -> evaluate) as ``(|(telephoneNumber=N)(mobile=N)
(homePhone=N)(facsimileTelephoneNumber=N))`` with N as the phone sends it;
the contacts found are compared with the expected ids.
"""

from __future__ import annotations

import json
import os
import time

from common import dataset

from gateway.graph.parse import Upsert, parse_page
from gateway.index import ContactIndex, SourceProfile
from gateway.ldap import filter as F
from gateway.ldap.messages import SCOPE_SUB, SearchRequest
from gateway.ldap.search import SearchSettings, run_search
from gateway.numbers import NumberSettings

ATTRS = ("telephoneNumber", "mobile", "homePhone", "facsimileTelephoneNumber")


def run(n: int, country: str = "DE", other_countries: tuple[str, ...] = ("AT", "CH", "US", "GB", "FR", "NL")) -> dict:
    data = dataset(n)
    with open(os.path.join(data, "contacts.json"), encoding="utf-8") as f:
        page = parse_page(json.load(f), "bench")
    with open(os.path.join(data, "queries.json"), encoding="utf-8") as f:
        queries = json.load(f)["phone"]
    numbers = NumberSettings(country=country, other_countries=other_countries)
    index = ContactIndex([SourceProfile("bench", 100, numbers, proximity=False)])
    started = time.perf_counter()
    index.apply(c for c in page.changes if isinstance(c, Upsert))
    build = time.perf_counter() - started
    settings = SearchSettings(base_dn="dc=example,dc=com", size_limit=1000, numbers=numbers, proximity=False)
    expected_hits = found = wrong = missed = unknown_ok = unknown_wrong = 0
    started = time.perf_counter()
    for q in queries:
        value = q["input"]
        f = F.Or(tuple(F.Equality(a, value) for a in ATTRS))
        result = run_search(index, SearchRequest("dc=example,dc=com", SCOPE_SUB, f), settings)
        got = {e.dn.split(",", 1)[0].split(".", 1)[1] for e in result.entries}
        expect = set(q["expect"])
        if expect:
            expected_hits += 1
            if expect <= got:
                found += 1
            else:
                missed += 1
            wrong += len(got - expect)
        else:
            if got:
                unknown_wrong += len(got)
            else:
                unknown_ok += 1
    per_query = (time.perf_counter() - started) / max(1, len(queries))
    return {
        "settings": f"country={country} other_countries={','.join(other_countries)}",
        "contacts": len(index), "queries": len(queries), "known_numbers": expected_hits,
        "found": found, "missed": missed, "hit_rate": round(found / max(1, expected_hits), 4),
        "wrong_contacts": wrong, "unknown_numbers_answered": unknown_wrong,
        "index_build_s": round(build, 2), "search_us_per_query": round(per_query * 1e6, 1),
    }

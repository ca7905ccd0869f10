"""Index-backed lookups: the cost of a caller-ID and a name-prefix search at 1k, 10k and 100k contacts.

In-process (no LDAP protocol): filter -> plan -> index -> evaluate -> rendered entries, as
the server runs it, so only the part that depends on the directory's size is measured.
"""

from __future__ import annotations

import json
import os
import time

from common import dataset, log

from gateway.graph.parse import Upsert, parse_page
from gateway.index import ContactIndex, SourceProfile
from gateway.ldap.filter_text import parse_filter
from gateway.ldap.messages import SCOPE_SUB, SearchRequest
from gateway.ldap.search import SearchSettings, run_search
from gateway.numbers import NumberSettings

ATTRS = ("cn", "sn", "givenName", "displayName", "o", "telephoneNumber", "mobile", "homePhone")


def _per_query(index, settings, filters, size_limit=50, repeat=2):
    requests = [SearchRequest("dc=example,dc=com", SCOPE_SUB, parse_filter(f), ATTRS, size_limit=size_limit)
                for f in filters]
    for r in requests[:200]:
        run_search(index, r, settings)  # warm the caches
    best = None
    for _ in range(repeat):
        started = time.perf_counter()
        for r in requests:
            run_search(index, r, settings)
        took = (time.perf_counter() - started) / len(requests)
        best = took if best is None else min(best, took)
    return round(best * 1e6, 1)


def run(sizes=(1000, 10000, 100000)) -> dict:
    out = {}
    numbers = NumberSettings(country="DE", other_countries=("AT", "CH", "US", "GB", "FR", "NL"))
    settings = SearchSettings(base_dn="dc=example,dc=com", numbers=numbers)
    big = dataset(max(sizes))
    with open(os.path.join(big, "contacts.json"), encoding="utf-8") as f:
        everything = parse_page(json.load(f), "bench").changes
    callers = [line.strip() for line in open(os.path.join(dataset(10000), "filters", "callerid_phone_form.txt"))][:2000]
    names = [line.strip() for line in open(os.path.join(dataset(10000), "filters", "name_prefix.txt"))][:1000]
    for n in sizes:
        index = ContactIndex([SourceProfile("bench", 100, numbers)])
        started = time.perf_counter()
        index.apply(c for c in everything[:n] if isinstance(c, Upsert))
        build = time.perf_counter() - started
        log(f"scaling: {n} contacts indexed in {build:.1f}s")
        out[f"{n}"] = {"index_build_s": round(build, 1),
                       "callerid_us": _per_query(index, settings, callers),
                       "name_prefix_us": _per_query(index, settings, names)}
    return out

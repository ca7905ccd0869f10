"""Name searches answered from the index's name buckets agree with evaluating the filter, while
contacts come, change and go (the buckets' joined texts must never go stale)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.graph.parse import Remove, Upsert, contact_from_graph
from gateway.index import ContactIndex
from gateway.ldap import filter as F
from gateway.ldap.messages import SCOPE_SUB, SearchRequest
from gateway.ldap.search import SearchSettings, Shape, run_search
from tests.support import contact

SETTINGS = SearchSettings(base_dn="dc=example,dc=com", size_limit=1000)
# few letters, so that names share buckets and prefixes of every length
SURNAMES = ["Müller", "Mueller", "Muller", "Müllner", "Mülheim", "Mü", "Mu", "Meier", "Meyer", "Mey",
            "Schmidt", "Schmitt", "Schmied", "Sch", "Schön", "Schoen", "Straße", "Strasse", "M\x00ller"]
GIVEN = ["Anna", "Jürgen", "Jurgen", "Änne", "", "Mia", "Max"]
PREFIXES = ["m", "mu", "mü", "mue", "mul", "mül", "müll", "mülle", "mueller", "muller", "mey", "meye",
            "s", "sc", "sch", "schm", "schmi", "schö", "schoe", "str", "stra", "straß", "strasse", "a", "an",
            "jü", "jur", "jürg", "m\x00", "x", "mül*", "ü", "anna", "anna m", "jurgen", "änne"]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("upsert"), st.integers(0, 11), st.sampled_from(GIVEN), st.sampled_from(SURNAMES)),
        st.tuples(st.just("remove"), st.integers(0, 11), st.just(""), st.just("")),
    ),
    min_size=1,
    max_size=30,
)


def _names(index: ContactIndex, f: F.Filter, size_limit: int = 0) -> tuple[int, list[str]]:
    request = SearchRequest(base="dc=example,dc=com", scope=SCOPE_SUB, filter=f, attributes=("cn",),
                            size_limit=size_limit)
    result = run_search(index, request, SETTINGS)
    return result.result_code, [e.dn for e in result.entries]


@settings(max_examples=150, deadline=None)
@given(operations, st.lists(st.integers(1, 5), min_size=1, max_size=4))
def test_bucket_answers_match_evaluation_through_changes(ops, batch_sizes):
    index = ContactIndex()
    batches, pos = [], 0
    for size in batch_sizes * 10:
        if pos >= len(ops):
            break
        batches.append(ops[pos:pos + size])
        pos += size
    for batch in batches:
        changes = []
        for op, i, given, surname in batch:
            if op == "upsert":
                changes.append(Upsert(contact_from_graph(contact(f"c{i}", given=given, surname=surname), "s")))
            else:
                changes.append(Remove(source="s", id=f"c{i}"))
        index.apply(changes)
        for prefix in PREFIXES:
            for items in ([F.Substrings("cn", prefix, (), None), F.Substrings("sn", prefix, (), None)],
                          [F.Equality("sn", prefix)]):
                fast = F.Or(tuple(items))
                assert Shape(fast).names is not None
                general = F.And((F.Present("objectClass"), fast))  # planned, then evaluated per contact
                for size_limit in (0, 1, 2, 3):
                    assert _names(index, fast, size_limit) == _names(index, general, size_limit), \
                        (prefix, size_limit, F.to_text(fast))

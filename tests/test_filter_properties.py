"""Filter evaluation and index-backed planning agree with a naive reference evaluator."""

from __future__ import annotations

import unicodedata

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.fuzzy import FuzzyMatcher, expand_umlauts, index_variants, query_variants
from gateway.graph.parse import Upsert, contact_from_graph
from gateway.index import ContactIndex
from gateway.ldap import filter as F
from gateway.ldap.messages import SCOPE_SUB, SearchRequest
from gateway.ldap.search import SearchSettings, run_search
from tests.support import contact

PEOPLE = [
    contact("1", given="Jürgen", surname="Müller", company="Köhler GmbH", mail="jm@k.example",
            phones=[("business", "+49 89 1234-567")]),
    contact("2", given="Anna", surname="Meyer", company="Köhler GmbH", phones=[("mobile", "0171 1234567")]),
    contact("3", given="Zoë", surname="Öztürk"),
    contact("4", company="Köhler GmbH", phones=[("business", "+49 89 1234-0")]),
    contact("5", given="Hans", surname="Meier", department="Einkauf", title="Leiter"),
    contact("6", given="Łukasz", surname="Dvořák", mail="ld@x.example"),
    contact("7", given="anna", surname="MEIER-Landrut"),
    contact("8", display="Straße & Söhne", company="Straße & Söhne KG"),
]
CONTACTS = [contact_from_graph(p, "s") for p in PEOPLE]


def _fold(text: str) -> str:
    # the reference folding: NFKD, drop marks, casefold, a few letters by hand
    table = {"ł": "l", "Ł": "l", "ß": "ss", "ø": "o"}
    text = "".join(table.get(c, c) for c in text)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(text.casefold().split())


ATTRS = {
    "cn": lambda c: [c.name],
    "commonname": lambda c: [c.name],
    "sn": lambda c: [c.surname or c.name],
    "surname": lambda c: [c.surname or c.name],
    "givenname": lambda c: [c.given_name] if c.given_name else [],
    "gn": lambda c: [c.given_name] if c.given_name else [],
    "o": lambda c: [c.company] if c.company else [],
    "mail": lambda c: [c.mail] if c.mail else [],
    "ou": lambda c: [c.department] if c.department else [],
    "title": lambda c: [c.job_title] if c.job_title else [],
}


_FUZZY = FuzzyMatcher(threshold=80)


def reference(f, c):
    """Naive RFC 4511 evaluation: True, False or None (Undefined)."""
    if isinstance(f, F.And):
        rs = [reference(i, c) for i in f.items]
        return False if False in rs else (None if None in rs else True)
    if isinstance(f, F.Or):
        rs = [reference(i, c) for i in f.items]
        return True if True in rs else (None if None in rs else False)
    if isinstance(f, F.Not):
        r = reference(f.item, c)
        return None if r is None else not r
    name = f.attr.lower()
    if name == "objectclass":
        values = ["top", "person", "organizationalperson", "inetorgperson"]
    elif name == "telephonenumber":
        if isinstance(f, F.Present):
            return any(p.kind == "business" for p in c.phones)
        return None
    elif name in ATTRS:
        values = [_fold(v) for v in ATTRS[name](c)]
        if name not in ("mail",) and isinstance(f, (F.Equality, F.Substrings)):
            # umlaut transcriptions meet: "Mueller" = "Müller" (gateway.fuzzy defines the variants)
            stored = [x for v in ATTRS[name](c) for x in index_variants(v)]
            if isinstance(f, F.Equality):
                return any(q in stored for q in query_variants(f.value))
            for transform in (lambda t: t, expand_umlauts):
                sub = F.Substrings(f.attr, transform(f.initial) if f.initial else None,
                                   tuple(transform(a) for a in f.any), transform(f.final) if f.final else None)
                if _substring(sub, stored):
                    return True
            return False
    else:
        return None
    if isinstance(f, F.Present):
        return bool(values)
    if isinstance(f, F.Approx) and name in ATTRS and name != "mail":
        return _FUZZY.score(f.value, ATTRS[name](c)) > 0  # rapidfuzz scoring is specified by gateway.fuzzy
    if isinstance(f, (F.Equality, F.Approx)):
        return _fold(f.value) in values
    if isinstance(f, F.GreaterOrEqual):
        return any(v >= _fold(f.value) for v in values)
    if isinstance(f, F.LessOrEqual):
        return any(v <= _fold(f.value) for v in values)
    if isinstance(f, F.Substrings):
        return _substring(f, values)
    raise AssertionError(f)


def _substring(f, values):
    if True:
        for v in values:
            rest = v
            if f.initial:
                if not rest.startswith(_fold(f.initial)):
                    continue
                rest = rest[len(_fold(f.initial)):]
            ok = True
            for part in f.any:
                i = rest.find(_fold(part))
                if i < 0:
                    ok = False
                    break
                rest = rest[i + len(_fold(part)):]
            if ok and f.final and not rest.endswith(_fold(f.final)):
                ok = False
            if ok:
                return True
        return False


names = st.sampled_from(["cn", "CN", "commonName", "sn", "surname", "givenName", "gn", "o", "mail", "ou",
                         "title", "objectClass", "fooBar", "telephoneNumber"])
_WORDS = sorted({w for c in CONTACTS for v in (c.name, c.surname, c.given_name, c.company, c.mail) for w in v.split()}
                | {c.name for c in CONTACTS} | {c.company for c in CONTACTS if c.company})
_PIECES = sorted({w[i:j] for w in _WORDS for i in (0, 1) for j in (2, 3, len(w)) if j > i})
fragments = st.one_of(
    st.sampled_from(_PIECES),
    st.sampled_from(["MEY", "ö", "strasse", "LUKASZ", "Meier-Landrut", "person", "top", "", "x", "ANNA",
                     "Mueller", "MUELL", "Koehler", "Sohne", "Soehne", "Zoe", "oeztuerk"]),
)
text_attrs = names.filter(lambda n: n.lower() != "telephonenumber")

leaf = st.one_of(
    st.builds(F.Equality, text_attrs, fragments),
    st.builds(F.Approx, text_attrs, fragments),
    st.builds(F.GreaterOrEqual, text_attrs, fragments),
    st.builds(F.LessOrEqual, text_attrs, fragments),
    st.builds(F.Present, names),
    st.builds(
        F.Substrings,
        text_attrs,
        st.one_of(st.none(), fragments.filter(bool)),
        st.lists(fragments.filter(bool), max_size=2).map(tuple),
        st.one_of(st.none(), fragments.filter(bool)),
    ).filter(lambda s: s.initial or s.any or s.final),
)
filters = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: F.And(tuple(xs))),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: F.Or(tuple(xs))),
        inner.map(F.Not),
    ),
    max_leaves=8,
)

INDEX = ContactIndex()
INDEX.apply(Upsert(c) for c in CONTACTS)
SETTINGS = SearchSettings(base_dn="dc=example,dc=com", size_limit=1000)


@settings(max_examples=1000, deadline=None)
@given(filters)
@example(F.Substrings("cn", "an", (), None))
@example(F.Or((F.Substrings("sn", "mey", (), None), F.Equality("fooBar", "x"))))
@example(F.And((F.Equality("o", "köhler gmbh"), F.Not(F.Present("givenName")))))
def test_search_matches_reference(f):
    """The planned, index-backed search returns exactly the contacts the reference evaluator accepts."""
    request = SearchRequest(base="dc=example,dc=com", scope=SCOPE_SUB, filter=f)
    result = run_search(INDEX, request, SETTINGS)
    got = sorted(e.dn.split(",")[0] for e in result.entries if e.dn != "dc=example,dc=com")
    expected = sorted(f"uid=s.{c.id}" for c in CONTACTS if reference(f, c) is True)
    assert got == expected, F.to_text(f)


@settings(max_examples=200, deadline=None)
@given(filters)
def test_not_is_three_valued(f):
    """NOT of an Undefined item stays Undefined: (!(f)) and (f) never both match."""
    request = SearchRequest(base="dc=example,dc=com", scope=SCOPE_SUB, filter=f)
    negated = SearchRequest(base="dc=example,dc=com", scope=SCOPE_SUB, filter=F.Not(f))
    a = {e.dn for e in run_search(INDEX, request, SETTINGS).entries}
    b = {e.dn for e in run_search(INDEX, negated, SETTINGS).entries}
    assert not (a & b)

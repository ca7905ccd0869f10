"""Caller-ID lookups answered straight from the number index agree with evaluating the filter.

``(|(telephoneNumber=N)(mobile=N))`` and its relatives take a fast path (``search._phone_matches``);
the same filter inside ``(&(objectClass=*)...)`` takes the general path (plan, then evaluate
each candidate).  Both must return the same entries in the same order, for numbers as phones
dial them, in every phone attribute, shared by several contacts, or unknown.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.graph.parse import Upsert, contact_from_graph
from gateway.index import ContactIndex, SourceProfile
from gateway.ldap import filter as F
from gateway.ldap.messages import SCOPE_SUB, SearchRequest
from gateway.ldap.schema import PHONE_ATTRIBUTES as PHONE_ATTRIBUTE_NAMES
from gateway.ldap.schema import canonical_attribute
from gateway.ldap.search import SearchSettings, Shape, run_search
from gateway.numbers import NumberSettings
from tests.support import contact

PEOPLE = [
    contact("1", given="Jürgen", surname="Müller", company="Köhler GmbH",
            phones=[("business", "+49 89 1234-567"), ("mobile", "0171 1234567")]),
    contact("2", given="Anna", surname="Meyer", company="Köhler GmbH",
            phones=[("business", "089 1234-0"), ("home", "0171 1234567")]),
    contact("3", company="Köhler GmbH", phones=[("business", "+49 89 1234-0"), ("businessFax", "+49 89 1234-99")]),
    contact("4", given="Zoë", surname="Öztürk", phones=[("home", "(089) 765 43 21"), ("mobile", "+43 664 1234567")]),
    contact("5", given="Hans", surname="Meier", phones=[("business", "01 5123456"), ("mobile", "0664 1234567")]),
    contact("6", given="Eve", surname="Odd", phones=[("business", "12345"), ("other", "+1 (415) 555-0100 x12")]),
    contact("7", given="Bob", surname="Twin", phones=[("mobile", "+49 89 1234-567")]),
]
CONTACTS = [contact_from_graph(p, "s") for p in PEOPLE]
NUMBERS = NumberSettings(country="DE", area_code="89", other_countries=("AT", "US"))
INDEX = ContactIndex([SourceProfile("s", 100, NUMBERS)])
INDEX.apply(Upsert(c) for c in CONTACTS)
SETTINGS = SearchSettings(base_dn="dc=example,dc=com", size_limit=1000, numbers=NUMBERS)

PHONE_ATTRIBUTES = ["telephoneNumber", "TelephoneNumber", "mobile", "mobile;x-option", "homePhone",
                    "facsimileTelephoneNumber", "otherTelephone", "pager", "cn"]
DIALLED = ["0891234567", "+49891234567", "004989123456", "00498912345677", "0171 1234567", "+491711234567",
           "01711234567", "0891234-0", "+4989123499", "7654321", "0897654321", "+436641234567", "006641234567",
           "06641234567", "015123456", "+4315123456", "12345", "+14155550100", "4155550100", "+4930999999",
           "0", "", "x", "+49 89 1234-567", "00043664 1234567"]

terms = st.tuples(st.sampled_from(PHONE_ATTRIBUTES), st.sampled_from(DIALLED))


def _search(f: F.Filter):
    request = SearchRequest(base="dc=example,dc=com", scope=SCOPE_SUB, filter=f,
                            attributes=("cn", "telephoneNumber", "mobile"))
    return run_search(INDEX, request, SETTINGS)


@settings(max_examples=400, deadline=None)
@given(st.lists(terms, min_size=1, max_size=3))
def test_fast_caller_id_path_equals_evaluation(items):
    equalities = [F.Equality(attr, value) for attr, value in items]
    fast = F.Or(tuple(equalities)) if len(equalities) > 1 else equalities[0]
    general = F.And((F.Present("objectClass"), F.Or(tuple(equalities))))
    assert (Shape(fast).phones is not None) == all(canonical_attribute(a) in PHONE_ATTRIBUTE_NAMES for a, _ in items)
    assert Shape(general).phones is None
    a, b = _search(fast), _search(general)
    assert (a.result_code, [(e.dn, e.attributes, e.approximate) for e in a.entries]) == \
        (b.result_code, [(e.dn, e.attributes, e.approximate) for e in b.entries]), F.to_text(fast)


def test_the_attribute_decides():
    """A number stored as home phone does not answer (telephoneNumber=N) but answers (homePhone=N)."""
    def uids(f):
        return [e.dn.split(",")[0] for e in _search(f).entries]

    assert uids(F.Equality("homePhone", "0897654321")) == ["uid=s.4"]
    assert uids(F.Equality("telephoneNumber", "0897654321")) != ["uid=s.4"]
    both = F.Or((F.Equality("telephoneNumber", "01711234567"), F.Equality("mobile", "01711234567")))
    assert uids(both) == ["uid=s.1"]  # Anna has it as her home phone only
    assert uids(F.Equality("homePhone", "01711234567")) == ["uid=s.2"]

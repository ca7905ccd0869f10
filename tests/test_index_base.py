"""An index serving a compact base (gateway.compact) answers exactly as the index it was made from.

The base is what a snapshot keeps: the index after a restart holds its contacts in a few
strings and arrays and makes full entries only for the contacts a search needs.  Every
lookup, every LDAP search, and every change applied afterwards must give what the
original index gives with the same changes.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.compact import CompactIndex
from gateway.graph.parse import Remove, Upsert
from gateway.index import ContactIndex, SourceProfile, build_base
from gateway.model import Contact, Phone
from gateway.numbers import NumberSettings
from tests.test_index_build import SETTINGS, answers, changed, check_hints_settled, mixed_batch, new_index, people


def based_on(index: ContactIndex) -> ContactIndex:
    """A fresh index serving the base of ``index``, through its byte form."""
    base = index.make_base()
    loaded = CompactIndex.from_bytes(b"".join(base.to_bytes()))
    out = ContactIndex(index.profiles.values())
    out.adopt_base(loaded)
    return out


def entries(index: ContactIndex, keys) -> dict:
    out = {}
    for key in keys:
        e = index.get(key)
        out[key] = None if e is None else (e.values, e.folded, e.variants, e.numbers, e.company_hints, e.sort_key,
                                           e.uid, e.caller_key, e.phone_keys())
    return out


def lookups(index: ContactIndex, contacts: list[Contact]) -> dict:
    """What the index's lookups answer for every key, number and name of ``contacts``."""
    keys = {c.key for c in contacts}
    live = [index.get(k) for k in keys]
    live = [e for e in live if e is not None]
    numbers = {n for e in live for n in e.all_numbers()}
    number_keys = {k for n in numbers for k in n.match_keys()} | {"+999"}
    alternative_keys = {k for n in numbers for k in n.alternative_keys()}
    heads = {n.head for n in numbers if n.head}
    forms = {f for n in numbers for f in n.search_forms()}
    prefixes = {v[:i] for e in live for vs in e.variants.values() for v in vs for i in (1, 2, 3, 5)} | {"zz"}
    mails = {e.contact.mail for e in live if e.contact.mail}
    return {
        "len": len(index),
        "count_by_source": index.count_by_source(),
        "contacts": sorted(c.key for c in index.contacts()),
        "contacts_s": sorted(c.key for c in index.contacts("s")),
        "entries": entries(index, keys),
        "uids": {e.uid: index.by_uid(e.uid.upper()).key for e in live},
        "has_number": {k: index.has_number(k) for k in number_keys},
        "with_number": {k: index.with_number(k) for k in number_keys},
        "with_alternative": {k: (index.first_number([k], alternative=True), index.with_alternative(k))
                             for k in alternative_keys},
        "with_head": {h: (index.has_head(h), index.with_head(h)) for h in heads | {"+999"}},
        "first_number": {(alternative, tuple(ks)): index.first_number(ks, alternative)
                         for alternative in (False, True)
                         for ks in [["+999", *sorted(number_keys)[:3]], ["+999", *sorted(alternative_keys)[:3]]]},
        "entries_with_number": {
            (k, bits, alternative): sorted(e.key for e in index.entries_with_number(k, bits, alternative))
            for k in number_keys | alternative_keys for bits in (1, 2, 3, 31) for alternative in (False, True)},
        "number_prefix": {f[:i]: index.number_prefix(f[:i]) for f in forms for i in (3, 6)},
        "name_prefix": {(a, p): index.name_prefix(a, p) for a in ("cn", "sn", "givenName", "o") for p in prefixes},
        "name_equal": {(a, p): index.name_equal(a, p) for a in ("sn", "o") for p in prefixes},
        "mail": {m[:i]: index.name_prefix("mail", m[:i]) for m in mails for i in (1, 4)},
        "names_in_order": {p: [e.key for e in index.names_in_order([("sn", p, True), ("givenName", p, True)])]
                           for p in prefixes},
        "names_equal_in_order": {p: [e.key for e in index.names_in_order([("sn", p, False), ("o", p, False)])]
                                 for p in prefixes},
        "names_first": {(p, n): [e.key for e in index.names_first([("sn", p, True), ("cn", p, True)], n)]
                        for p in prefixes for n in (1, 5)},
        "in_order": [e.key for e in index.in_order()],
        "ordered": [e.key for e in index.ordered(keys)],
        "ordered_lazily": [e.key for e in index.ordered_lazily(keys, 3)],
        "fuzzy": {q: sorted(index.fuzzy.search(q, limit=1000)) for q in ("Meyer", "Mueller Anna", "grub", "Zoe")},
        "fuzzy_prefix": {q: sorted(index.fuzzy.search(q, prefix=True, limit=1000)) for q in ("Schä", "Hu")},
    }


def same(a: ContactIndex, b: ContactIndex, contacts: list[Contact]) -> None:
    la, lb = lookups(a, contacts), lookups(b, contacts)
    for name in la:
        assert la[name] == lb[name], name
    assert answers(a, contacts) == answers(b, contacts)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_base_answers_as_its_index(seed):
    contacts = people(seed, 300)
    index = new_index()
    index.apply([Upsert(c) for c in contacts])
    based = based_on(index)
    assert len(based._by_key) == 0  # nothing read: every contact is served from the base
    same(index, based, contacts)
    check_hints_settled(based)


def test_changes_after_a_base_end_where_they_end_without_one():
    """Batches that add, change, remove and re-add contacts (moving them between companies,
    whose region hints then change) give the same index with a base as without."""
    rng = random.Random(11)
    contacts = people(6, 240)
    plain = new_index()
    plain.apply([Upsert(c) for c in contacts[:120]])
    based = based_on(plain)
    for start in range(120, len(contacts), 40):
        batch = mixed_batch(contacts, start, 40, 30, rng)
        assert plain.apply(batch) == based.apply(batch)
        check_hints_settled(based)
        same(plain, based, contacts)


def test_prepared_upserts_and_replace_source_over_a_base():
    contacts = people(8, 200)
    plain = new_index()
    plain.apply([Upsert(c) for c in contacts])
    based = based_on(plain)
    rng = random.Random(3)
    batch = [changed(c, rng) for c in contacts[:50]]
    for index in (plain, based):
        index.apply([index.prepare(c) for c in batch])
    same(plain, based, contacts)
    kept = contacts[100:] + batch[:10]
    assert plain.replace_source("s", kept) == based.replace_source("s", kept)
    same(plain, based, contacts)
    assert plain.drop_source("s") == based.drop_source("s") == len(kept)
    assert len(based) == 0 and list(based.contacts()) == [] and based.with_number("+4989") == set()


def test_a_source_left_out_or_with_other_settings():
    """A source not kept is not served; a source whose number settings changed since the base
    was made has its contacts read again, with the new settings."""
    contacts = people(9, 120)
    other = [Contact(source="t", id=f"t{i}", surname="Tee", phones=(Phone("business", "089 1234-5"),))
             for i in range(5)]
    plain = ContactIndex([SourceProfile("s", 100, SETTINGS), SourceProfile("t", 50, NumberSettings())])
    plain.apply([Upsert(c) for c in contacts + other])
    base = CompactIndex.from_bytes(b"".join(plain.make_base().to_bytes()))

    without_t = ContactIndex(plain.profiles.values())
    without_t.adopt_base(base, keep=["s"])
    assert without_t.count_by_source() == {"s": 120}
    assert without_t.name_equal("sn", "tee") == set() and without_t.get(("t", "t1")) is None

    moved = NumberSettings(country="AT")
    changed_t = ContactIndex([SourceProfile("s", 100, SETTINGS), SourceProfile("t", 50, moved)])
    changed_t.adopt_base(base)
    assert set(changed_t._by_key) == {c.key for c in other}  # read again: only source t
    fresh = ContactIndex([SourceProfile("s", 100, SETTINGS), SourceProfile("t", 50, moved)])
    fresh.apply([Upsert(c) for c in contacts + other])
    same(fresh, changed_t, contacts + other)


def test_bad_bytes_are_refused():
    index = new_index()
    index.apply([Upsert(c) for c in people(1, 20)])
    data = b"".join(index.make_base().to_bytes())
    for bad in (b"", data[:10], data[:-1], b"X" + data[1:], data + b"x"):
        with pytest.raises(ValueError, match="compact index"):
            CompactIndex.from_bytes(bad)
    with pytest.raises(ValueError, match="empty index"):
        new = new_index()
        new.apply([Upsert(people(2, 1)[0])])
        new.adopt_base(CompactIndex.from_bytes(data))


def test_a_base_made_from_an_index_with_a_base():
    """The next snapshot's base, made from an index serving a base and changes since, is the
    same again: contacts, companies' member order (ties of their regions) and all."""
    rng = random.Random(5)
    contacts = people(12, 200)
    plain = new_index()
    plain.apply([Upsert(c) for c in contacts[:150]])
    based = based_on(plain)
    batch = [Upsert(changed(c, rng)) for c in rng.sample(contacts[:150], 40)] + [Upsert(c) for c in contacts[150:]]
    batch += [Remove(source=c.source, id=c.id) for c in rng.sample(contacts[:150], 10)]
    plain.apply(batch)
    based.apply(batch)
    again = based_on(based)
    same(plain, again, contacts)
    batch = [Upsert(changed(c, rng)) for c in rng.sample(contacts, 60)]
    plain.apply(batch)
    again.apply(batch)
    same(plain, again, contacts)
    check_hints_settled(again)


def test_uids_of_any_case_and_dotted_sources():
    """A uid is found whatever its case: most are their key written "source.id" and not kept
    twice; ids with capitals, and sources with a dot in their name, are kept and found too."""
    contacts = [Contact(source="a.b", id="x1", surname="Dot"), Contact(source="a", id="b.x1", surname="Clash"),
                Contact(source="a", id="MiXed", surname="Case"), Contact(source="a", id="plain", surname="Plain")]
    plain = ContactIndex([SourceProfile("a", 100, SETTINGS), SourceProfile("a.b", 90, SETTINGS)])
    plain.apply([Upsert(c) for c in contacts])
    based = based_on(plain)
    for c in contacts:
        for asked in (f"{c.source}.{c.id}", f"{c.source}.{c.id}".upper()):
            assert based.by_uid(asked) is not None
            assert based.by_uid(asked).key == plain.by_uid(asked).key
    assert len(based._base.uids) == 1  # only "a.MiXed" is kept as a uid of its own
    assert based.by_uid("a.nobody") is None and based.by_uid("c.x1") is None


def test_an_attribute_equal_to_another_for_every_contact_is_kept_once():
    from gateway.compact import Row

    def row(rank, cn, display):
        names = {"cn": (cn,), "displayName": (display,)} if display else {"cn": (cn,)}
        return Row((rank,), ("s", str(rank)), f"s.{rank}", b"[]", names=names)

    same = CompactIndex.build([row(0, "anna", "anna"), row(1, "bert", "bert")], {"s": ""}, ["cn", "displayName"])
    assert same.aliases == {"displayName": "cn"} and same.names["displayName"] is same.names["cn"]
    differ = CompactIndex.build([row(0, "anna", "anna"), row(1, "bert", "")], {"s": ""}, ["cn", "displayName"])
    assert differ.aliases == {}
    loaded = CompactIndex.from_bytes(b"".join(differ.to_bytes()))
    table = loaded.names["displayName"]
    assert list(table.whole("anna", *table.bucket("ann"))) == [0]
    assert list(table.whole("bert", *table.bucket("ber"))) == []
    table = loaded.names["cn"]
    assert list(table.whole("bert", *table.bucket("ber"))) == [1]


def restored(index: ContactIndex) -> ContactIndex:
    """What a restart serves from a snapshot of ``index``: its snapshot base, then the changes
    since that base was made (as gateway.service saves and loads them)."""
    from gateway.index import decode_record

    base, removed, records = index.base_and_changes()
    out = ContactIndex(index.profiles.values())
    out.adopt_base(CompactIndex.from_bytes(b"".join(base.to_bytes())))
    out.apply([Remove(source=s, id=i) for s, i in removed] + [Upsert(decode_record(r)[0]) for r in records])
    return out


@pytest.mark.parametrize("seed", [14, 22, 25])
def test_a_snapshot_base_carries_the_changes_made_since_and_while_it_was_made(seed):
    """...in the order that keeps companies' members (and so ties between their regions) as they were."""
    rng = random.Random(seed)
    contacts = people(seed, 200)
    index = new_index()
    index.apply([Upsert(c) for c in contacts[:120]])
    assert index.snapshot_base is None
    make, since = index.base_maker()
    index.apply([Upsert(changed(c, rng)) for c in contacts[:10]])  # while the base is made (in a thread)
    index.keep_base(make(), since)
    assert index.snapshot_base is not None
    index.apply([Upsert(c) for c in contacts[120:]] + [Remove(source="s", id=c.id) for c in contacts[50:60]])
    _, removed, records = index.base_and_changes()
    # the changed ones (with colleagues re-read under new region hints), not all; removed ones have no record
    assert len(records) < len(removed) < len(contacts)
    again = restored(index)
    same(index, again, contacts)
    # the restored index carries its base with its own changes: a second restart ends the same
    again.apply([Upsert(changed(c, rng)) for c in contacts[100:130]])
    assert again.snapshot_base is not None
    third = restored(again)
    same(again, third, contacts)


def test_a_failed_base_leaves_nothing_behind():
    index = new_index()
    index.apply([Upsert(c) for c in people(15, 30)])
    make, since = index.base_maker()
    index.keep_base(None, since)
    assert index.snapshot_base is None and index._journal == []
    index.apply([Upsert(c) for c in people(16, 5)])
    assert since == set()  # no longer noted


def test_sorted_texts_leave_out_values_holding_a_nul():
    from gateway.compact import SortedTexts

    table = SortedTexts.build([("a\x00b", 0), ("ab", 1), ("abc", 2)])
    assert [table.value(i) for i in range(len(table))] == ["ab", "abc"]
    assert list(table.equal("ab")) == [1] and list(table.prefixed("ab")) == [1, 2]
    assert list(table.prefixed("a\x00")) == []


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.text("abc\u00e4", max_size=5), max_size=60), wanted=st.text("abc\u00e4", max_size=5),
       width=st.sampled_from([None, 1, 2, 3]), bounds=st.tuples(st.integers(0, 70), st.integers(0, 70)),
       fence=st.sampled_from([1, 2, 3, 7, 64]))
def test_sorted_text_searches_find_what_a_plain_bisect_finds(values, wanted, width, bounds, fence):
    """The fences (every FENCE-th value, bisected in C) never change where a search lands."""
    import bisect
    from unittest import mock

    import gateway.compact as compact

    with mock.patch.object(compact, "FENCE", fence):
        check_lower(compact, values, wanted, width, bounds)


def check_lower(compact, values, wanted, width, bounds):
    import bisect

    cut = (lambda v: v) if width is None else (lambda v: v[:width])
    values = sorted(values, key=cut)
    table = compact.SortedTexts.build([(v, i) for i, v in enumerate(values)])
    lo, hi = min(bounds), max(bounds)
    hi = min(hi, len(values))
    lo = min(lo, hi)
    keys = [cut(v) for v in values]
    assert table.lower(wanted, width, lo, hi) == bisect.bisect_left(keys, wanted, lo, hi)
    assert table.lower(wanted, width) == bisect.bisect_left(keys, wanted)


def test_equal_values_are_found_however_many():
    from gateway.compact import SortedTexts

    for count in (0, 1, 8, 9, 10, 200):
        table = SortedTexts.build(sorted([("a", 0), ("c", 1)] + [("b", 2 + i) for i in range(count)]))
        assert list(table.equal("b")) == list(range(2, 2 + count))
        assert list(table.equal("a")) == [0] and list(table.equal("c")) == [1] and list(table.equal("bb")) == []

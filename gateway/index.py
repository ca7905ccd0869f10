"""The in-memory contact index: lookups by DN, number, head number and name prefix.

Pure and synchronous.  A batch of changes is applied in one call, so a
search (which also runs on the reactor thread) never sees half a batch.
Numbers are normalized here, once, when a contact is added.
"""

from __future__ import annotations

import gc
import heapq
import json
import sys
from bisect import bisect_left
from contextlib import contextmanager
from functools import lru_cache
from itertools import islice
from operator import itemgetter
from collections.abc import Sequence
from typing import Callable, Iterable, Iterator

from sortedcontainers import SortedList

from gateway.compact import BUCKET, CompactIndex, Row, SortedTexts
from gateway.graph.parse import Change, Remove, Upsert
from gateway.ldap.schema import NAME_ATTRIBUTES, PHONE_ATTRIBUTES, contact_attribute_values, phone_attribute_for_kind
from gateway.model import Contact, Phone
from gateway.numbers import (
    NumberSettings,
    StoredNumber,
    hints_from_tallies,
    parse_stored,
    reads_regions,
    region_hints,
    region_tally,
)
from gateway.fuzzy import FrozenFuzzy, FuzzyMatcher, index_variants
from gateway.text import fold, fold_unique

#: Attributes matched under umlaut-transcription variants ("Mueller" finds "Müller").
VARIANT_ATTRIBUTES = frozenset(("cn", "sn", "givenName", "displayName", "o", "ou", "title"))
#: Contacts of the compact base kept as full entries once a search has needed them (some 7 KB
#: each, 115 MB when full: with a million contacts, 0.12 KB per contact).  Making an entry takes
#: some 120 µs (its numbers are read again), a search over entries kept some 15 µs: the caller-ID
#: benchmark's 5,000 numbers need about 9,300 entries at 100k contacts; with 4,096 kept every
#: lookup made two entries again (200 µs a lookup, against 19 µs with 16,384).
MATERIALIZED = 16384

#: Attributes whose words the fuzzy matcher knows.
FUZZY_ATTRIBUTES = ("cn", "sn", "givenName", "displayName", "o")

#: A batch of at least this many changes is applied with the cyclic garbage collector paused:
#: a bulk load makes millions of long-lived objects and no garbage, and the collector would
#: go through all of them again and again (a third of the build time).
PAUSE_COLLECTOR_AT = 1000

#: The bit of each phone attribute in the masks of ``IndexedContact.phone_keys``.
PHONE_BITS = {attr: 1 << i for i, attr in enumerate(PHONE_ATTRIBUTES)}
#: Tag of a lower-priority number key (another country's reading of a national number).
ALTERNATIVE = "alt:"

__all__ = ["IndexedContact", "ContactIndex", "SourceProfile", "Prepared", "PHONE_BITS", "ALTERNATIVE"]

ContactKey = tuple[str, str]
#: A contact's share of its company's region hints (``numbers.region_tally``).
Tally = tuple[int, tuple[str, ...]]
_NO_TALLY: Tally = (0, ())


class SourceProfile:
    """What the index needs to know about a source: priority, number settings, proximity."""

    __slots__ = ("name", "priority", "numbers", "proximity")

    def __init__(self, name: str, priority: int, numbers: NumberSettings, proximity: bool = True) -> None:
        self.name = name
        self.priority = priority
        self.numbers = numbers
        self.proximity = proximity


class IndexedContact:
    """A contact with everything a search needs precomputed."""

    __slots__ = ("contact", "uid", "sort_key", "caller_key", "values", "folded", "variants", "numbers",
                 "rendered", "company_hints", "_phone_keys")

    def __init__(self, contact: Contact, profile: SourceProfile, company_hints: tuple[str, ...] = ()) -> None:
        self.contact = contact
        self.company_hints = company_hints
        self.rendered: dict | None = None  # search results' cache (gateway.ldap.search)
        self._phone_keys: dict[str, int] | None = None
        values = contact_attribute_values(contact)
        self.values = values
        self.uid = _fold_alone(values["uid"][0])
        folded: dict[str, tuple[str, ...]] = {}
        variants: dict[str, tuple[str, ...]] = {}
        for attr in NAME_ATTRIBUTES:
            texts = values.get(attr)
            if texts is None:
                continue
            if attr not in VARIANT_ATTRIBUTES:
                folded[attr] = tuple([_fold_alone(v) for v in texts])  # mail addresses: seldom repeated
            elif len(texts) == 1:
                folded[attr], variants[attr] = _name_forms(texts[0])
            else:
                folded[attr] = tuple([fold(v) for v in texts])
                variants[attr] = tuple(dict.fromkeys([x for v in texts for x in _variants(v)]))
        self.folded = folded
        self.variants = variants
        # cn is the contact's name, always present
        self.sort_key = (-profile.priority, folded["cn"][0], contact.source, contact.id)
        #: the order of caller-ID answers: by priority, people before company records, then as sort_key
        self.caller_key = (self.sort_key[0], contact.is_company_record, self.sort_key)
        phones = contact.phones
        if not phones:
            self.numbers: dict[str, tuple[StoredNumber, ...]] = {}
            return
        settings = profile.numbers
        hints = _regions(contact, settings, company_hints)
        # values holds each phone attribute's numbers in the order of the phones; the attributes
        # are listed in the order they first occur
        self.numbers = {
            attr: tuple([parse_stored(raw, settings, regions=hints) for raw in values[attr]])
            for attr in dict.fromkeys([phone_attribute_for_kind(p.kind) for p in phones])
        }

    def with_company_hints(self, profile: SourceProfile, company_hints: tuple[str, ...]) -> IndexedContact:
        """This contact read with other company region hints: ``IndexedContact(self.contact,
        profile, company_hints)``, made by reading again only the numbers the hints can change
        (those written without country code; ``numbers.reads_regions``)."""
        new = IndexedContact.__new__(IndexedContact)
        new.contact, new.uid, new.sort_key, new.values = self.contact, self.uid, self.sort_key, self.values
        new.caller_key = self.caller_key
        new.folded, new.variants = self.folded, self.variants
        new.rendered = None
        new._phone_keys = None
        new.company_hints = company_hints
        if not self.numbers:
            new.numbers = self.numbers
            return new
        settings = profile.numbers
        hints = _regions(self.contact, settings, company_hints)
        new.numbers = {
            attr: tuple([parse_stored(n.raw, settings, regions=hints) if reads_regions(n.raw, settings) else n
                         for n in numbers])
            for attr, numbers in self.numbers.items()
        }
        return new

    @property
    def key(self) -> ContactKey:
        return self.contact.key

    def all_numbers(self) -> Iterator[StoredNumber]:
        for numbers in self.numbers.values():
            yield from numbers

    def phone_keys(self) -> dict[str, int]:
        """Each number key of the contact -> the phone attributes (``PHONE_BITS``) with a number
        of that key: match keys as they are, alternative readings' keys tagged ``ALTERNATIVE``.
        What a caller-ID lookup checks for each contact the number index gives it; worked out
        when first asked."""
        keys = self._phone_keys
        if keys is None:
            keys = {}
            for attr, numbers in self.numbers.items():
                bit = PHONE_BITS.get(attr, 0)
                for n in numbers:
                    for k in n.match_keys():
                        keys[k] = keys.get(k, 0) | bit
                    for k in n.alternative_keys():
                        k = ALTERNATIVE + k
                        keys[k] = keys.get(k, 0) | bit
            self._phone_keys = keys
        return keys


def _regions(contact: Contact, settings: NumberSettings, company_hints: tuple[str, ...]) -> tuple[str, ...]:
    """The regions a contact's numbers without country code are read in: its own numbers'
    countries, then its company's."""
    hints = region_hints([p.number for p in contact.phones], settings)
    if company_hints:
        hints = tuple(dict.fromkeys(hints + company_hints))
    return hints


#: Names repeat a lot (surnames, companies): their variants are worked out once.
_variants = lru_cache(maxsize=200_000)(index_variants)


def _fold_alone(text: str) -> str:
    """``fold(text)`` for a text that seldom repeats (an id, a mail address), bypassing fold's
    cache; ``text`` itself when it is folded already (most are), so that it is stored once."""
    folded = fold_unique(text)
    return text if folded == text else folded


@lru_cache(maxsize=200_000)
def _name_forms(text: str) -> tuple[tuple[str], tuple[str, ...]]:
    """((fold(text),), index variants of text): the ``folded`` and ``variants`` of a one-valued
    name attribute, shared by every contact with that name (the first variant is fold(text), so
    a name with no other variant has one tuple for both)."""
    variants = _variants(text)
    return (variants if len(variants) == 1 else variants[:1]), variants


def company_key(contact: Contact) -> tuple[str, str] | None:
    """Colleagues: contacts of one source with the same company name."""
    return (contact.source, fold(contact.company)) if contact.company else None


class Prepared:
    """An upsert whose expensive part (number parsing, folding) is already done."""

    __slots__ = ("entry",)

    def __init__(self, entry: IndexedContact) -> None:
        self.entry = entry


class ContactIndex:
    """All contacts of all sources, with secondary indexes."""

    def __init__(self, profiles: Iterable[SourceProfile] = (), fuzzy_threshold: float = 80.0) -> None:
        self.profiles: dict[str, SourceProfile] = {p.name: p for p in profiles}
        self._fuzzy = FuzzyMatcher(threshold=fuzzy_threshold, limit=200)
        self.fuzzy = IndexFuzzy(self)
        self._by_key: dict[ContactKey, IndexedContact] = {}
        self._sort_of: dict[ContactKey, tuple] = {}  # contact key -> its result-order key
        self._by_uid: dict[str, IndexedContact] = {}
        # number key -> the contact key having it, or a set of them when several do: most numbers
        # belong to one contact, and a set for each would be most of the index's memory
        self._by_number: dict[str, ContactKey | set[ContactKey]] = {}
        self._by_head: dict[str, ContactKey | set[ContactKey]] = {}
        self._by_alternative: dict[str, ContactKey | set[ContactKey]] = {}
        self._names: dict[str, SortedList] = {attr: SortedList() for attr in NAME_ATTRIBUTES}
        # (value[:BUCKET], sort key, value): within a bucket, contacts in result order, so a name
        # search can stop after the first page instead of collecting every match
        self._buckets: dict[str, SortedList] = {attr: SortedList() for attr in VARIANT_ATTRIBUTES}
        # (attribute, bucket) -> the bucket's values as one string, built when first searched and
        # dropped when the bucket changes: prefix matching in C instead of a Python step per value
        self._texts: dict[tuple[str, str], _BucketText] = {}
        self._number_forms = SortedList()
        self._sorted: SortedList = SortedList()
        self.generation = 0
        # phones of each company's contacts: where a company's numbers written with a country code
        # point abroad, its other numbers are read as that country's first ("region hints")
        self._companies: dict[tuple[str, str], dict[ContactKey, Tally]] = {}
        self._company_hints: dict[tuple[str, str], tuple[str, ...]] = {}
        self._dirty_companies: set[tuple[str, str]] = set()
        # contacts inserted by the batch being applied: their sorted-list entries are added in bulk
        # at its end
        self._pending: dict[ContactKey, IndexedContact] = {}
        # The compact base (gateway.compact, from a snapshot) holds the contacts not changed
        # since it was made; the structures above hold the others.  A base rank in _hidden is
        # removed or superseded; a base contact a search needs is made a full entry, kept in
        # _materialized for a while.
        self._base: CompactIndex | None = None
        self._base_fuzzy: FrozenFuzzy | None = None
        self._hidden: set[int] = set()
        self._base_counts: dict[str, int] = {}
        self._materialized: dict[int, IndexedContact] = {}
        self._rank_of_key: dict[ContactKey, int] = {}  # contact key -> base rank, as looked up (bounded)
        self._adopted: set[tuple[str, str]] = set()  # companies whose base members are in _companies
        # The base the next snapshot carries, with the keys changed since it was made; _journal
        # holds the sets that note changed keys (_touched, and those of bases being made).
        self._carrier: CompactIndex | None = None
        self._touched: set[ContactKey] = set()
        self._journal: list[set[ContactKey]] = []

    # -- changes ---------------------------------------------------------

    def set_profile(self, profile: SourceProfile) -> None:
        """Register or replace a source profile (re-index its contacts if settings changed)."""
        old = self.profiles.get(profile.name)
        self.profiles[profile.name] = profile
        if old is not None and (old.priority, old.numbers) != (profile.priority, profile.numbers):
            contacts = list(self.contacts(profile.name))
            with _collector_paused(len(contacts) >= PAUSE_COLLECTOR_AT):
                for contact in contacts:
                    self._remove(contact.key)
                    self._add(contact)
                self._settle_companies()
                self._flush()
                self.generation += 1

    def prepare(self, contact: Contact) -> Prepared:
        """Do the expensive part of an upsert now (may run in slices before ``apply``)."""
        return Prepared(self._entry(contact))

    def _entry(self, contact: Contact) -> IndexedContact:
        ckey = company_key(contact)
        if ckey:
            self._adopt_company(ckey)
        hints = self._company_hints.get(ckey, ()) if ckey else ()
        return IndexedContact(contact, self._profile(contact.source), hints)

    def unchanged(self, contact: Contact) -> bool:
        """True when the index already holds exactly this contact."""
        return self._contact_of(contact.key) == contact

    def _contact_of(self, key: ContactKey) -> Contact | None:
        """The contact held under ``key`` (a base contact is read, not made an entry)."""
        entry = self._by_key.get(key)
        if entry is not None:
            return entry.contact
        rank = self._live_rank(key)
        return None if rank is None else self._base_contact(rank)[0]

    def apply(self, changes: Iterable[Change | Prepared]) -> tuple[int, int]:
        """Apply a batch of changes in one go; returns (upserted, removed). Idempotent."""
        changes = list(changes)
        with _collector_paused(len(changes) >= PAUSE_COLLECTOR_AT):
            hints_before = self._plan_company_hints(changes)
            upserted = removed = 0
            for change in changes:
                if isinstance(change, Prepared):
                    entry = change.entry
                    if self._contact_of(entry.key) == entry.contact:
                        continue
                    self._remove(entry.key)
                    self._insert(entry)
                    upserted += 1
                elif isinstance(change, Upsert):
                    if self.unchanged(change.contact):
                        continue
                    self._remove(change.contact.key)
                    entry = self._entry(change.contact)
                    self._insert(entry)
                    upserted += 1
                elif isinstance(change, Remove):
                    if self._remove((change.source, change.id)):
                        removed += 1
            self._settle_companies(hints_before)
            self._flush()
            self.generation += 1
        return upserted, removed

    def _plan_company_hints(self, changes: list[Change | Prepared]) -> dict[tuple[str, str], tuple[str, ...]]:
        """Work out and store, before the batch is applied, the region hints of every company it
        touches as they will be after it; returns those companies' hints before the batch.

        So each contact of the batch is read once, with its company's final hints, rather than
        with the old ones and again when the batch has changed them (as ``_settle_companies``
        does for the other changes).  Walks the batch as ``apply`` will, keeping only the
        companies' members (in their order, which decides ties between regions), so that the
        hints are exactly those ``_settle_companies`` would find.
        """
        contact_now: dict[ContactKey, Contact | None] = {}  # contacts the batch has changed so far
        members_of: dict[tuple[str, str], dict[ContactKey, Tally]] = {}

        def members(ckey: tuple[str, str]) -> dict[ContactKey, Tally]:
            planned = members_of.get(ckey)
            if planned is None:
                self._adopt_company(ckey)
                planned = members_of[ckey] = dict(self._companies.get(ckey, {}))
            return planned

        for change in changes:
            if isinstance(change, (Prepared, Upsert)):
                contact: Contact | None = change.entry.contact if isinstance(change, Prepared) else change.contact
                key = contact.key
            elif isinstance(change, Remove):
                contact, key = None, (change.source, change.id)
            else:
                continue
            before = contact_now[key] if key in contact_now else self._contact_of(key)
            if before is None and contact is None:
                continue  # removing what is not there
            if contact is not None and before == contact:
                continue  # apply skips an unchanged contact
            if before is not None and before.company:
                members(company_key(before)).pop(key, None)
            if contact is not None and contact.company:
                members(company_key(contact))[key] = self._tally(contact)
            contact_now[key] = contact
        hints_before: dict[tuple[str, str], tuple[str, ...]] = {}
        for ckey, planned in members_of.items():
            old = hints_before[ckey] = self._company_hints.get(ckey, ())
            if not planned:
                continue  # no members left: _settle_companies forgets the company
            hints = _hints_of(planned, self._profile(ckey[0]))
            if hints != old:
                self._company_hints[ckey] = hints
        return hints_before

    def _tally(self, contact: Contact) -> Tally:
        """The contact's share of its company's region hints (read once, kept with the company)."""
        if not contact.phones:
            return _NO_TALLY
        return region_tally([p.number for p in contact.phones], self._profile(contact.source).numbers)

    def _settle_companies(
        self,
        hints_before: dict[tuple[str, str], tuple[str, ...]] | None = None,
    ) -> None:
        """Re-read the numbers of contacts whose company's region hints changed with this batch.

        ``hints_before``: the hints before the batch of the companies whose hints
        ``_plan_company_hints`` has already stored (the batch's contacts were read with them).
        """
        hints_before = hints_before or {}
        dirty, self._dirty_companies = self._dirty_companies, set()
        for ckey in dirty:
            members = self._companies.get(ckey)
            if not members:
                self._company_hints.pop(ckey, None)
                continue
            profile = self._profile(ckey[0])
            if ckey in hints_before:
                hints, old = self._company_hints.get(ckey, ()), hints_before[ckey]
            else:
                hints = _hints_of(members, profile)
                old = self._company_hints.get(ckey, ())
            if hints == old:
                continue
            self._company_hints[ckey] = hints
            for key in list(members):
                entry = self.get(key)
                if entry is not None and entry.company_hints != hints:
                    self._renumber(entry, profile, hints)
        self._dirty_companies.clear()

    def _renumber(self, entry: IndexedContact, profile: SourceProfile, hints: tuple[str, ...]) -> None:
        """Read a contact's numbers again with its company's new region hints, in place: it keeps
        its place among its colleagues and in the index, and its names are not touched.

        Not noted as a change for snapshot bases: it follows from its colleagues' changes, and a
        restart that applies them reads it again just so.
        """
        new = entry.with_company_hints(profile, hints)
        key = entry.key
        if key not in self._by_key:  # a base contact: it moves to this index's structures
            rank = self._live_rank(key)
            assert rank is not None
            self._hidden.add(rank)
            self._materialized.pop(rank, None)
            self._base_counts[key[0]] -= 1
            self._insert(new, note=False)  # its company keeps it where it is
            return
        self._by_key[key] = new
        self._by_uid[new.uid] = new
        if key in self._pending:  # its sorted-list entries are still to be added
            self._pending[key] = new
        if new.numbers == entry.numbers:
            return
        self._index_numbers(entry, key, _discard)
        self._index_numbers(new, key, _add_key)
        if key not in self._pending:
            old_forms, new_forms = _search_forms(entry), _search_forms(new)
            if old_forms != new_forms:
                for form in old_forms:
                    self._number_forms.discard((form, key))
                self._number_forms.update([(form, key) for form in new_forms])

    def _index_numbers(self, entry: IndexedContact, key: ContactKey, note: Callable) -> None:
        """``note(mapping, number key, contact key)`` for each number key of an entry."""
        company_record = entry.contact.is_company_record
        for number in entry.all_numbers():
            for k in number.match_keys():
                note(self._by_number, k, key)
            for k in number.alternative_keys():
                note(self._by_alternative, k, key)
            if number.head and (number.is_head or company_record):
                note(self._by_head, number.head, key)

    def replace_source(self, source: str, contacts: Iterable[Contact]) -> tuple[int, int]:
        """Make a source's contacts exactly ``contacts`` (a full import's result)."""
        incoming = {c.key: c for c in contacts}
        stale = [k for k in self._keys_of(source) if k not in incoming]
        changes: list[Change] = [Remove(source=k[0], id=k[1]) for k in stale]
        for key, contact in incoming.items():
            if self._contact_of(key) != contact:
                changes.append(Upsert(contact))
        return self.apply(changes)

    def drop_source(self, source: str) -> int:
        """Remove every contact of a source."""
        keys = list(self._keys_of(source))
        self.apply(Remove(source=k[0], id=k[1]) for k in keys)
        self.profiles.pop(source, None)
        return len(keys)

    def _profile(self, source: str) -> SourceProfile:
        profile = self.profiles.get(source)
        if profile is None:
            profile = self.profiles[source] = SourceProfile(source, 100, NumberSettings())
        return profile

    def _add(self, contact: Contact) -> None:
        self._insert(self._entry(contact))

    def _insert(self, entry: IndexedContact, note: bool = True) -> None:
        key = entry.key
        contact = entry.contact
        if self._journal and note:
            self._note(key)
        ckey = company_key(contact)
        if ckey is not None:
            self._adopt_company(ckey)
            self._companies.setdefault(ckey, {})[key] = self._tally(contact)
            self._dirty_companies.add(ckey)
        self._by_key[key] = entry
        self._by_uid[entry.uid] = entry
        self._sort_of[key] = entry.sort_key
        self._pending[key] = entry
        self._fuzzy.add(key, _fuzzy_texts(entry))
        self._index_numbers(entry, key, _add_key)

    def _flush(self) -> None:
        """Add the batch's sorted-list entries: one sort for a bulk load, single adds for a few.

        The entries are handed over sorted, so that the sorted lists' own sort only checks them.
        Sorting them here is cheaper: the contacts are put in result order and in key order once,
        and each list's entries are then sorted, stably, by their first item alone (full tuples
        compare slowly where first items tie, as names often do).
        """
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        first_item = itemgetter(0)
        in_result_order = sorted(pending.values(), key=_sort_key)
        self._sorted.update([entry.sort_key for entry in in_result_order])
        # (bucket, sort key, value): from contacts in result order with their values in order
        buckets: dict[str, list[tuple]] = {attr: [] for attr in self._buckets}
        for entry in in_result_order:
            sort_key = entry.sort_key
            for attr, values in _indexed_names(entry):
                items = buckets.get(attr)
                if items is not None:
                    if len(values) > 1:
                        values = sorted(values)
                    items.extend([(_bucket_of(value), sort_key, value) for value in values])
        for attr, items in buckets.items():
            if items:
                items.sort(key=first_item)
                self._buckets[attr].update(items)
                if self._texts:
                    for bucket in {item[0] for item in items}:
                        self._texts.pop((attr, bucket), None)
        # (value, contact key) and (search form, contact key): from contacts in key order
        names: dict[str, list[tuple]] = {attr: [] for attr in self._names}
        forms: list[tuple] = []
        for key in sorted(pending):
            entry = pending[key]
            for attr, values in _indexed_names(entry):
                names[attr].extend([(value, key) for value in values])
            forms.extend([(form, key) for form in _search_forms(entry)])
        for attr, items in names.items():
            if items:
                items.sort(key=first_item)
                self._names[attr].update(items)
        if forms:
            forms.sort(key=first_item)
            self._number_forms.update(forms)

    def _remove(self, key: ContactKey) -> bool:
        entry = self._by_key.pop(key, None)
        if entry is None:
            return self._remove_from_base(key)
        if self._journal:
            self._note(key)
        unsorted = self._pending.pop(key, None) is not None  # its sorted-list entries were never added
        ckey = company_key(entry.contact)
        if ckey is not None:
            self._leave_company(ckey, key)
        self._by_uid.pop(entry.uid, None)
        self._sort_of.pop(key, None)
        if not unsorted:
            self._sorted.discard(entry.sort_key)
            for attr, values in _indexed_names(entry):
                names = self._names[attr]
                for value in values:
                    names.discard((value, key))
                buckets = self._buckets.get(attr)
                if buckets is not None:
                    for value in values:
                        bucket = _bucket_of(value)
                        buckets.discard((bucket, entry.sort_key, value))
                        self._texts.pop((attr, bucket), None)
            for form in _search_forms(entry):
                self._number_forms.discard((form, key))
        self._fuzzy.remove(key)
        self._index_numbers(entry, key, _discard)
        return True

    # -- lookups ---------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_key) + sum(self._base_counts.values())

    @property
    def own_count(self) -> int:
        """How many contacts the index holds as full entries of its own (the rest it serves
        from its compact base)."""
        return len(self._by_key)

    def count_by_source(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for source, _ in self._by_key:
            counts[source] = counts.get(source, 0) + 1
        for source, count in self._base_counts.items():
            if count:
                counts[source] = counts.get(source, 0) + count
        return counts

    def get(self, key: ContactKey) -> IndexedContact | None:
        entry = self._by_key.get(key)
        if entry is not None or self._base is None:
            return entry
        rank = self._live_rank(key)
        return None if rank is None else self._base_entry(rank)

    def by_uid(self, uid: str) -> IndexedContact | None:
        """The contact whose ``uid`` RDN value is ``uid`` (case-insensitive)."""
        folded = fold(uid)
        entry = self._by_uid.get(folded)
        if entry is not None or self._base is None:
            return entry
        for rank in self._base.ranks_of_uid(folded):
            if rank not in self._hidden:
                return self._base_entry(rank)
        return None

    def contacts(self, source: str | None = None) -> Iterator[Contact]:
        for key, entry in list(self._by_key.items()):
            if source is None or key[0] == source:
                yield entry.contact
        for rank in self._base_ranks_of(source):
            yield self._base_contact(rank)[0]

    def in_order(self) -> Iterator[IndexedContact]:
        """Every contact, by source priority then name."""
        by_key = self._by_key
        own = (by_key[(k[2], k[3])] for k in list(self._sorted) if (k[2], k[3]) in by_key)
        if self._base is None:
            yield from own
            return
        hidden = self._hidden
        base = (self._base_entry(r, keep=False) for r in range(len(self._base)) if r not in hidden)
        yield from heapq.merge(own, base, key=_sort_key)

    def has_number(self, number_key: str) -> bool:
        return self._has(self._by_number, "numbers", number_key)

    def with_number(self, number_key: str) -> set[ContactKey]:
        """Contacts having a number whose match key is ``number_key``."""
        return self._with(self._by_number, "numbers", number_key)

    def first_number(self, number_keys: Iterable[str], alternative: bool = False) -> str | None:
        """The first of ``number_keys`` that ``has_number`` (that has contacts with it as an
        alternative reading, when ``alternative``)."""
        mapping = self._by_alternative if alternative else self._by_number
        if self._base is None:  # a plain loop: this runs for every caller-ID lookup
            for k in number_keys:
                if k in mapping:
                    return k
            return None
        table = "alternatives" if alternative else "numbers"
        return next((k for k in number_keys if self._has(mapping, table, k)), None)

    def entries_with_number(self, number_key: str, bits: int, alternative: bool = False) -> list[IndexedContact]:
        """The contacts with a number of key ``number_key`` (of an alternative reading, when
        ``alternative``) in one of the phone attributes ``bits`` (``PHONE_BITS``)."""
        tagged = ALTERNATIVE + number_key if alternative else number_key
        held = (self._by_alternative if alternative else self._by_number).get(number_key)
        base = self._base
        entries: Iterable[IndexedContact]
        if base is not None:  # the base's contacts of the number that are not hidden (changed or gone)
            hidden = self._hidden
            ranks = (base.alternatives if alternative else base.numbers).equal(number_key)
            found = [self._base_entry(r) for r in ranks if r not in hidden]
            found.extend(map(self._by_key.__getitem__, _keys_of(held)))
            entries = found
        elif held is None:
            return []
        elif type(held) is not set:
            entry = self._by_key[held]
            return [entry] if entry.phone_keys().get(tagged, 0) & bits else []
        else:
            entries = map(self._by_key.__getitem__, held)
        return [e for e in entries if e.phone_keys().get(tagged, 0) & bits]

    def with_alternative(self, number_key: str) -> set[ContactKey]:
        """Contacts with a lower-priority reading (another country's national format) of ``number_key``."""
        return self._with(self._by_alternative, "alternatives", number_key)

    def has_head(self, head: str) -> bool:
        return self._has(self._by_head, "heads", head)

    def with_head(self, head: str) -> set[ContactKey]:
        """Contacts that stand for the company of head number ``head``: its switchboard number's
        contacts and company records (no personal name) with a number under that head."""
        return self._with(self._by_head, "heads", head)

    def _has(self, mapping: dict[str, ContactKey | set[ContactKey]], table: str, k: str) -> bool:
        """Does ``k`` have contacts in ``mapping``, or in the base's ``table`` (not hidden)?"""
        return k in mapping or (self._base is not None and self._in_base(getattr(self._base, table), k))

    def _with(self, mapping: dict[str, ContactKey | set[ContactKey]], table: str, k: str) -> set[ContactKey]:
        keys = _keys_of(mapping.get(k))
        if self._base is None:
            return keys
        ranks = getattr(self._base, table).equal(k)
        if not ranks:
            return keys
        return keys | self._base_keys(ranks)

    def name_prefix(self, attr: str, folded_prefix: str) -> set[ContactKey]:
        """Contacts whose folded ``attr`` starts with ``folded_prefix``."""
        names = self._names.get(attr)
        if names is None:
            return set()
        keys = _keys_between(names, (folded_prefix,), (folded_prefix + "\U0010ffff",))
        if self._base is not None:
            keys |= self._base_keys(self._base_name_ranks(attr, folded_prefix, True))
        return keys

    def name_equal(self, attr: str, folded_value: str) -> set[ContactKey]:
        names = self._names.get(attr)
        if names is None:
            return set()
        keys = _keys_between(names, (folded_value,), (folded_value, ("\U0010ffff",)))
        if self._base is not None:
            keys |= self._base_keys(self._base_name_ranks(attr, folded_value, False))
        return keys

    def names_in_order(self, items: Iterable[tuple[str, str, bool]]) -> Iterator[IndexedContact]:
        """Contacts matching any (attribute, folded value, is prefix) item, lazily, in result order.

        Only for attributes in VARIANT_ATTRIBUTES.  Each bucket holds its contacts in result
        order, so merging the buckets a query touches yields matches best first; a search
        that needs 50 stops after 50 however many contacts match.  A prefix as long as the
        bucket's takes the whole bucket; a longer one is found in the bucket's text.
        """
        items = list(items)
        own = self._own_names_in_order(items)
        if self._base is None:
            return own
        hidden = self._hidden
        ranks = heapq.merge(*self._base_name_streams(items))
        base = (self._base_entry(r) for r in _distinct(ranks) if r not in hidden)
        return heapq.merge(own, base, key=_sort_key)

    def _own_names_in_order(self, items: list[tuple[str, str, bool]]) -> Iterator[IndexedContact]:
        streams = [iter(s) for s in self._name_streams(items)]
        by_key = self._by_key
        last = None
        for sort_key in heapq.merge(*streams):
            if sort_key == last:
                continue
            last = sort_key
            entry = by_key.get((sort_key[2], sort_key[3]))
            if entry is not None:
                yield entry

    def names_first(self, items: Iterable[tuple[str, str, bool]], count: int) -> list[IndexedContact]:
        """The first ``count`` contacts of ``names_in_order(items)``: the first ``count`` of each
        bucket (sliced in C for whole buckets) hold them, so they are merged by one sort."""
        items = list(items)
        heads: set[tuple] = set()
        for stream in self._name_streams(items):
            heads.update(_first_distinct(stream, count))
        by_key = self._by_key
        out = []
        for sort_key in sorted(heads)[:count]:
            entry = by_key.get((sort_key[2], sort_key[3]))
            if entry is None:  # never expected (buckets follow the contacts); the careful way then
                return list(islice(self.names_in_order(items), count))
            out.append(entry)
        if self._base is None:
            return out
        ranks: set[int] = set()
        for stream in self._base_name_streams(items):
            ranks.update(_first_ranks(stream, count, self._hidden))
        base = [self._base_entry(r) for r in sorted(ranks)[:count]]
        return list(heapq.merge(out, base, key=_sort_key))[:count]

    def _name_streams(self, items: Iterable[tuple[str, str, bool]]) -> list:
        """Per item, the sort keys of its matches in order: a list (a whole bucket), matches in a
        bucket's text, or an iterator."""
        streams: list = []
        for attr, wanted, prefix in items:
            entries = self._buckets[attr]
            if not prefix:
                streams.append(_bucket_equal_stream(entries, wanted))
            elif len(wanted) == BUCKET:
                streams.append(self._bucket_text(attr, wanted).sort_keys)
            elif len(wanted) > BUCKET:
                streams.append(_TextMatches(self._bucket_text(attr, wanted[:BUCKET]), wanted))
            else:  # a short prefix: every bucket that starts with it, whole
                position = entries.bisect_left((wanted,))
                end = entries.bisect_left((wanted + "\U0010ffff",))
                while position < end:
                    bucket = entries[position][0]
                    streams.append(self._bucket_text(attr, bucket).sort_keys)
                    position = entries.bisect_left((bucket, _AFTER_ALL))
        return streams

    def _bucket_text(self, attr: str, bucket: str) -> _BucketText:
        text = self._texts.get((attr, bucket))
        if text is None:
            entries = self._buckets[attr]
            start = entries.bisect_left((bucket,))
            stop = entries.bisect_left((bucket, _AFTER_ALL))
            text = self._texts[(attr, bucket)] = _BucketText(entries[start:stop])
        return text

    def number_prefix(self, prefix: str) -> set[ContactKey]:
        """Contacts with a number search form starting with ``prefix``."""
        keys = _keys_between(self._number_forms, (prefix,), (prefix + "\U0010ffff",))
        if self._base is not None:
            keys |= self._base_keys(self._base.forms.prefixed(prefix))
        return keys

    def ordered(self, keys: Iterable[ContactKey]) -> list[IndexedContact]:
        """The contacts of ``keys`` by source priority then name."""
        by_key = self._by_key
        if self._base is None:
            entries = [by_key[k] for k in keys if k in by_key]
        else:
            entries = [e for e in map(self.get, keys) if e is not None]
        entries.sort(key=_sort_key)
        return entries

    def ordered_lazily(self, keys: Iterable[ContactKey], first: int) -> Iterator[IndexedContact]:
        """Like ``ordered``, but sorts only the first ``first`` unless more are consumed."""
        if self._base is not None:
            yield from self.ordered(keys)
            return
        by_key = self._by_key
        if not isinstance(keys, (set, frozenset)):
            keys = set(keys)
        keys = keys & by_key.keys()
        if len(keys) <= first * 2:
            yield from self.ordered(keys)
            return
        sort_of = self._sort_of.__getitem__  # a C-level key: no Python call per candidate
        head = heapq.nsmallest(first, keys, key=sort_of)
        for key in head:
            yield by_key[key]
        rest = sorted(keys.difference(head), key=sort_of)
        for key in rest:
            entry = by_key.get(key)
            if entry is not None:
                yield entry

    # -- the compact base ------------------------------------------------

    def adopt_base(self, base: CompactIndex, keep: Iterable[str] | None = None) -> None:
        """Serve the contacts of ``base`` (made by ``make_base``, say from a snapshot) without
        reading them; only for an index that holds nothing yet.

        ``keep``: the sources to serve (default: all of the base's); the others' contacts
        are left out.  A kept source whose settings differ from those the base was made with
        has its contacts read again, as changes.
        """
        if self._by_key or self._base is not None:
            raise ValueError("a base can only be adopted by an empty index")
        kept = set(base.sources if keep is None else keep)
        self._base = self._carrier = base
        self._touched = set()
        self._journal = [self._touched]
        self._base_fuzzy = (FrozenFuzzy.from_bytes(base.fuzzy, threshold=self._fuzzy.threshold, limit=self._fuzzy.limit)
                            if base.fuzzy else None)
        reread: list[Contact] = []
        for source, fingerprint in base.sources.items():
            ranks = base.keys.prefixed(source + "\x1f")
            self._base_counts[source] = len(ranks)
            if source not in kept:
                self._hidden.update(ranks)
                self._base_counts[source] = 0
            elif fingerprint != self.fingerprint(source):
                reread.extend(self._base_contact(r)[0] for r in ranks)
                self._hidden.update(ranks)
                self._base_counts[source] = 0
        if reread:
            self.apply(Upsert(c) for c in reread)
        self.generation += 1

    @property
    def snapshot_base(self) -> CompactIndex | None:
        """The base the next snapshot carries (see ``base_and_changes``): the base served, or the
        last one made (``keep_base``); None before either."""
        return self._carrier

    def base_maker(self, sources: Iterable[str] = ()) -> tuple[Callable[[], CompactIndex], set[ContactKey]]:
        """(what makes a base of every contact held now, the keys changed from now on).

        The contacts are taken now (copies of what is held besides the base, which does not
        change); the base is made when called, in a thread if need be: base contacts are read
        there, one by one.  Hand both to ``keep_base`` then.  ``sources``: sources to list in
        the base even when they have no contacts.
        """
        own = list(self._by_key.values())
        base, hidden, adopted = self._base, set(self._hidden), set(self._adopted)
        companies = [list(members) for members in self._companies.values()]
        profiles = {name: self._profile(name) for name in set(sources) | set(self.count_by_source())}
        fingerprints = {s: self.fingerprint(s) for s in sorted(profiles)}
        since: set[ContactKey] = set()
        self._journal.append(since)

        def make() -> CompactIndex:
            entries = own
            if base is not None:
                entries = own + [_base_entry_of(base, rank, profiles) for rank in range(len(base))
                                 if rank not in hidden]
            return build_base(entries, fingerprints, _member_places(companies, base, hidden, adopted))
        return make, since

    def keep_base(self, base: CompactIndex | None, since: set[ContactKey]) -> None:
        """Carry ``base`` (made by ``base_maker``; None when making it failed) in the next
        snapshots, with the contacts changed since it was taken (``since``)."""
        self._journal = [s for s in self._journal if s is not since]
        if base is not None:
            self._journal = [s for s in self._journal if s is not self._touched]
            self._carrier, self._touched = base, since
            self._journal.append(since)

    def base_and_changes(self) -> tuple[CompactIndex, list[list[str]], list[bytes]]:
        """The snapshot base, the keys of the contacts changed or removed since it was made, and
        the records of those held now (``encode_record``): a snapshot's index without a new base."""
        assert self._carrier is not None
        touched = self._touched
        # records in the order the index holds them, which decides the order of companies' members
        records = [encode_record(e) for k, e in self._by_key.items() if k in touched]
        return self._carrier, [list(k) for k in sorted(touched)], records

    def contacts_view(self, source: str) -> Sequence[Contact]:
        """The contacts of a source as a sequence that reads base contacts when sliced: taken now,
        read later (in a snapshot's writing thread)."""
        own = [e.contact for k, e in self._by_key.items() if k[0] == source]
        if self._base is None:
            return tuple(own)
        return _ContactsView(own, self._base, list(self._base_ranks_of(source)))

    def fingerprint(self, source: str) -> str:
        """What a source's base rows depend on besides its contacts: its priority and number settings."""
        profile = self._profile(source)
        return f"{profile.priority}|{profile.numbers!r}"

    def make_base(self) -> CompactIndex:
        """A compact base of every contact held now (slow: see ``base_maker``)."""
        make, since = self.base_maker()
        try:
            return make()
        finally:
            self.keep_base(None, since)

    def _note(self, key: ContactKey) -> None:
        """Remember that ``key`` changed, for the bases being made or carried."""
        for changed in self._journal:
            changed.add(key)

    def _base_contact(self, rank: int) -> tuple[Contact, tuple[str, ...]]:
        """The contact of a base rank and its company's region hints, read from its record."""
        assert self._base is not None
        return decode_record(self._base.record(rank), self._base.key_of(rank))

    def _base_entry(self, rank: int, keep: bool = True) -> IndexedContact:
        entry = self._materialized.get(rank)
        if entry is None:
            contact, hints = self._base_contact(rank)
            entry = IndexedContact(contact, self._profile(contact.source), hints)
            if keep:
                materialized = self._materialized
                if len(materialized) >= MATERIALIZED:
                    del materialized[next(iter(materialized))]
                materialized[rank] = entry
        return entry

    def _live_rank(self, key: ContactKey) -> int | None:
        """The base rank of ``key``, None when the base does not serve it."""
        if self._base is None:
            return None
        rank = self._rank_of_key.get(key)
        if rank is None:
            rank = self._base.rank_of(key)
            if rank is None:
                return None
            self._remember_rank(key, rank)
        return None if rank in self._hidden else rank

    def _remember_rank(self, key: ContactKey, rank: int) -> None:
        ranks = self._rank_of_key
        if len(ranks) >= MATERIALIZED:
            del ranks[next(iter(ranks))]
        ranks[key] = rank

    def _base_keys(self, ranks: Iterable[int]) -> set[ContactKey]:
        """The keys of the base contacts of ``ranks`` still served."""
        hidden = self._hidden
        out = set()
        assert self._base is not None
        key_of = self._base.key_of
        for rank in ranks:
            if rank not in hidden:
                key = key_of(rank)
                self._remember_rank(key, rank)
                out.add(key)
        return out

    def _base_ranks_of(self, source: str | None) -> Iterator[int]:
        """The base ranks served, of one source or all."""
        if self._base is None:
            return
        hidden = self._hidden
        ranks = range(len(self._base)) if source is None else self._base.keys.prefixed(source + "\x1f")
        for rank in ranks:
            if rank not in hidden:
                yield rank

    def _keys_of(self, source: str) -> list[ContactKey]:
        """Every contact key of a source."""
        keys = [k for k in self._by_key if k[0] == source]
        if self._base is not None:
            keys.extend(self._base.key_of(r) for r in self._base_ranks_of(source))
        return keys

    def _in_base(self, table: SortedTexts | None, k: str) -> bool:
        if table is None:
            return False
        hidden = self._hidden
        return any(r not in hidden for r in table.equal(k))

    def _base_name_ranks(self, attr: str, wanted: str, prefix: bool) -> Iterable[int]:
        """Base ranks whose ``attr`` has a value equal to (or starting with) ``wanted``."""
        assert self._base is not None
        table = self._base.names.get(attr)
        if table is None:
            return ()
        if attr not in self._base.bucketed:
            return table.prefixed(wanted) if prefix else table.equal(wanted)
        return [r for stream in self._base_name_streams([(attr, wanted, prefix)]) for r in stream]

    def _base_name_streams(self, items: Iterable[tuple[str, str, bool]]) -> list:
        """Per item, the base ranks of its matches in result order (repeating where a contact has
        several matching variants)."""
        assert self._base is not None
        streams: list = []
        for attr, wanted, prefix in items:
            table = self._base.names.get(attr)
            if table is None or attr not in self._base.bucketed:
                continue
            if not prefix:
                streams.append(table.whole(wanted, *table.bucket(wanted[:BUCKET])))
            elif len(wanted) == BUCKET:
                lo, hi = table.bucket(wanted)
                streams.append(table.ranks[lo:hi])
            elif len(wanted) > BUCKET:
                streams.append(table.starting(wanted, *table.bucket(wanted[:BUCKET])))
            else:
                streams.extend(table.ranks[lo:hi] for lo, hi in table.buckets_under(wanted))
        return streams

    def _leave_company(self, ckey: tuple[str, str], key: ContactKey) -> None:
        """A contact is no longer among a company's members (its hints are settled after the batch)."""
        members = self._companies.get(ckey)
        if members is not None:
            members.pop(key, None)
            if not members:
                del self._companies[ckey]
        self._dirty_companies.add(ckey)

    def _remove_from_base(self, key: ContactKey) -> bool:
        rank = self._live_rank(key)
        if rank is None:
            return False
        self._note(key)
        ckey = company_key(self._base_contact(rank)[0])
        if ckey is not None:
            self._adopt_company(ckey)
            self._leave_company(ckey, key)
        self._hidden.add(rank)
        self._materialized.pop(rank, None)
        self._base_counts[key[0]] -= 1
        return True

    def _adopt_company(self, ckey: tuple[str, str]) -> None:
        """Bring the base members of a company (their tallies) into ``_companies`` before it changes."""
        if self._base is None or ckey in self._adopted:
            return
        self._adopted.add(ckey)
        hidden = self._hidden
        members: dict[ContactKey, Tally] = {}
        for rank in self._base.companies.equal(company_text(ckey)):
            if rank not in hidden:
                contact, hints = self._base_contact(rank)
                members[contact.key] = self._tally(contact)
                if ckey not in self._company_hints and hints:
                    self._company_hints[ckey] = hints
        if members:
            members.update(self._companies.get(ckey, {}))
            self._companies[ckey] = members


def _member_places(companies: list[list[ContactKey]], base: CompactIndex | None, hidden: set[int],
                   adopted: set[tuple[str, str]]) -> dict[ContactKey, int]:
    """Each company member's place among its colleagues (ties between their regions go by it):
    ``companies``' members lists, then the base's members of the companies not ``adopted``."""
    places: dict[ContactKey, int] = {}
    for members in companies:
        places.update((key, place) for place, key in enumerate(members))
    if base is not None:  # companies that have not changed since: their members in the base's order
        table, place, last = base.companies, 0, None
        for i, rank in enumerate(table.ranks):
            company = table.value(i)
            place = place + 1 if company == last else 0
            last = company
            if rank not in hidden and tuple(company.split("\x1f", 1)) not in adopted:
                places[base.key_of(rank)] = place
    return places


def _base_entry_of(base: CompactIndex, rank: int, profiles: dict[str, SourceProfile]) -> IndexedContact:
    """The full entry of a base contact, made with ``profiles`` (outside the index: in a thread)."""
    contact, hints = decode_record(base.record(rank), base.key_of(rank))
    profile = profiles.get(contact.source) or SourceProfile(contact.source, 100, NumberSettings())
    return IndexedContact(contact, profile, hints)


class _ContactsView(Sequence):
    """Contacts held as entries, then base contacts read from their records when asked for."""

    def __init__(self, own: list[Contact], base: CompactIndex, ranks: list[int]) -> None:
        self._own = own
        self._base = base
        self._ranks = ranks

    def __len__(self) -> int:
        return len(self._own) + len(self._ranks)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        own = len(self._own)
        if i < own:
            return self._own[i]
        rank = self._ranks[i - own]
        return decode_record(self._base.record(rank), self._base.key_of(rank))[0]


class IndexFuzzy:
    """Fuzzy name search over an index's own contacts and its base's, as one matcher."""

    def __init__(self, index: ContactIndex) -> None:
        self._index = index

    def search(self, query: str, *, prefix: bool = False, threshold: float | None = None,
               limit: int | None = None) -> list[tuple[ContactKey, float]]:
        index = self._index
        found = index._fuzzy.search(query, prefix=prefix, threshold=threshold, limit=limit)
        base = index._base_fuzzy
        if base is None:
            return found
        limit = index._fuzzy.limit if limit is None else limit
        more = base.search(query, prefix=prefix, threshold=threshold, limit=limit, skip=index._hidden)
        if not more:
            return found
        assert index._base is not None
        key_of = index._base.key_of
        merged = found + [(key_of(rank), score) for rank, score in more]
        merged.sort(key=lambda pair: -pair[1])  # stable: ties keep their order
        return merged[:limit]

    def score(self, query: str, text: str | Iterable[str], *, prefix: bool = False,
              threshold: float | None = None) -> float:
        return self._index._fuzzy.score(query, text, prefix=prefix, threshold=threshold)


def company_text(ckey: tuple[str, str]) -> str:
    """A company key as the base keeps it."""
    return f"{ckey[0]}\x1f{ckey[1]}"


def encode_record(entry: IndexedContact, with_key: bool = True) -> bytes:
    """A contact and its company's region hints as JSON (``decode_record``); the base keeps them
    without the key (its keys table has it)."""
    c = entry.contact
    fields = [c.display_name, c.given_name, c.surname, c.company, c.department, c.job_title, c.mail,
              [[p.kind, p.number] for p in c.phones], list(entry.company_hints)]
    if with_key:
        fields[:0] = [c.source, c.id]
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def decode_record(record: bytes | list, key: ContactKey | None = None) -> tuple[Contact, tuple[str, ...]]:
    """(contact, its company's region hints) of ``encode_record``'s JSON (or of the list it
    holds, when a larger document held it); ``key``: of a record kept without it."""
    fields = json.loads(record) if isinstance(record, (bytes, bytearray, str)) else record
    source, cid = fields[:2] if key is None else key
    display, given, surname, company, department, title, mail, phones, hints = fields[-9:]
    if len(fields) != (9 if key is not None else 11):
        raise ValueError(f"a contact record of {len(fields)} fields")
    contact = Contact(source, cid, display, given, surname, company, department, title, mail,
                      tuple([Phone(kind, number) for kind, number in phones]))
    return contact, tuple(hints)


def base_row(entry: IndexedContact, member: int = 0) -> Row:
    """What the base keeps of an entry (``member``: its place among its company's members)."""
    contact = entry.contact
    heads = []
    numbers: dict[str, None] = {}
    alternatives: dict[str, None] = {}
    for number in entry.all_numbers():
        numbers.update(dict.fromkeys(number.match_keys()))
        alternatives.update(dict.fromkeys(number.alternative_keys()))
        if number.head and (number.is_head or contact.is_company_record):
            heads.append(number.head)
    ckey = company_key(contact)
    return Row(entry.sort_key, contact.key, entry.uid, encode_record(entry, with_key=False), numbers, alternatives,
               dict.fromkeys(heads), _search_forms(entry), dict(_indexed_names(entry)),
               company_text(ckey) if ckey else "", member, _fuzzy_texts(entry))


def build_base(entries: Iterable[IndexedContact], sources: dict[str, str],
               members: dict[ContactKey, int] | None = None) -> CompactIndex:
    """The compact base of ``entries`` (``sources``: their sources' fingerprints; ``members``:
    their places among their companies' members, default their order)."""
    def fuzzy(ranked: list[Row]) -> bytes:
        texts = ((rank, row.fuzzy_texts) for rank, row in enumerate(ranked))
        return FrozenFuzzy.build(texts, size=len(ranked)).to_bytes()

    entries = list(entries)
    if members is None:
        members = {e.key: place for place, e in enumerate(entries)}
    return CompactIndex.build([base_row(e, members.get(e.key, 0)) for e in entries], sources,
                              VARIANT_ATTRIBUTES, fuzzy)


#: Compares greater than every sort key (their first item is an int).
_AFTER_ALL = (float("inf"),)


def _distinct(ranks: Iterable[int]) -> Iterator[int]:
    """Ranks in order without repeats (a sorted stream repeats a contact's rank once per variant)."""
    last = -1
    for rank in ranks:
        if rank != last:
            last = rank
            yield rank


def _first_ranks(stream: Iterable[int], count: int, hidden: set[int]) -> list[int]:
    """The first ``count`` distinct ranks of a stream that are not ``hidden``."""
    head: dict[int, None] = {}
    for rank in stream:
        if rank not in hidden:
            head[rank] = None
            if len(head) >= count:
                break
    return list(head)


def _fuzzy_texts(entry: IndexedContact) -> list[str]:
    """The names the fuzzy matcher knows a contact by."""
    values = entry.values
    return [v for attr in FUZZY_ATTRIBUTES for v in values.get(attr, ())]


def _first_distinct(stream, count: int) -> list[tuple]:
    """The first ``count`` distinct sort keys of a stream (a contact's name variants repeat its key)."""
    if isinstance(stream, _TextMatches):
        return stream.head(count)
    if isinstance(stream, list):
        take = count * 2
        while True:
            head = list(dict.fromkeys(stream[:take]))
            if len(head) >= count or take >= len(stream):
                return head[:count]
            take *= 2
    head = []
    seen = set()
    for sort_key in stream:
        if sort_key not in seen:
            seen.add(sort_key)
            head.append(sort_key)
            if len(head) >= count:
                break
    return head


class _BucketText:
    """One bucket's values joined into one string (NUL before each), with their sort keys."""

    __slots__ = ("text", "starts", "sort_keys")

    def __init__(self, chunk: list[tuple]) -> None:
        self.sort_keys = [sort_key for _, sort_key, _ in chunk]
        values = [value for _, _, value in chunk]
        starts = []
        position = 1
        for value in values:
            starts.append(position)
            position += len(value) + 1
        self.starts = starts
        self.text = "\x00" + "\x00".join(values) + "\x00"


def _text_stream(bucket: _BucketText, wanted: str) -> Iterator[tuple]:
    """Sort keys of a bucket's entries whose value starts with ``wanted``, in bucket order."""
    needle = "\x00" + wanted
    find = bucket.text.find
    starts = bucket.starts
    keys = bucket.sort_keys
    n = len(starts)
    at = find(needle)
    while at >= 0:
        i = bisect_left(starts, at + 1)
        if i < n and starts[i] == at + 1:  # a value's start, not a NUL inside a value
            yield keys[i]
        at = find(needle, at + 1)


class _TextMatches:
    """The entries of a bucket whose value starts with ``wanted``: iterated lazily, or the first
    few distinct sort keys at once (one loop, no generator between)."""

    __slots__ = ("bucket", "wanted")

    def __init__(self, bucket: _BucketText, wanted: str) -> None:
        self.bucket = bucket
        self.wanted = wanted

    def __iter__(self) -> Iterator[tuple]:
        return _text_stream(self.bucket, self.wanted)

    def head(self, count: int) -> list[tuple]:
        needle = "\x00" + self.wanted
        bucket = self.bucket
        find = bucket.text.find
        starts = bucket.starts
        keys = bucket.sort_keys
        n = len(starts)
        head: dict[tuple, None] = {}
        at = find(needle)
        while at >= 0:
            i = bisect_left(starts, at + 1)
            if i < n and starts[i] == at + 1:  # a value's start, not a NUL inside a value
                head[keys[i]] = None
                if len(head) >= count:
                    break
            at = find(needle, at + 1)
        return list(head)


def _bucket_equal_stream(entries: SortedList, wanted: str) -> Iterator[tuple]:
    """Sort keys of the entries of ``wanted``'s bucket whose value is ``wanted``."""
    bucket = wanted[:BUCKET]
    start = entries.bisect_left((bucket,))
    stop = entries.bisect_left((bucket, _AFTER_ALL))
    for _, sort_key, value in entries.islice(start, stop):
        if value == wanted:
            yield sort_key


def _keys_between(values: SortedList, low: tuple, high: tuple) -> set[ContactKey]:
    """The contact keys of the (value, key) pairs from ``low`` up to ``high``, by slicing."""
    start = values.bisect_left(low)
    stop = values.bisect_left(high)
    if stop <= start:
        return set()
    return {pair[1] for pair in values[start:stop]}


def _sort_key(entry: IndexedContact) -> tuple:
    return entry.sort_key


def _keys_of(held: ContactKey | set[ContactKey] | None) -> set[ContactKey]:
    """The contact keys a number-keyed mapping holds for one number (see ``_add_key``)."""
    if held is None:
        return _NO_KEYS
    if type(held) is set:
        return held
    return {held}


_NO_KEYS: set[ContactKey] = frozenset()  # type: ignore[assignment]  # shared: callers only read


def _add_key(mapping: dict[str, ContactKey | set[ContactKey]], k: str, key: ContactKey) -> None:
    """Note that contact ``key`` has number key ``k``: the contact key alone, a set once there
    are several."""
    held = mapping.get(k)
    if held is None:
        mapping[k] = key
    elif type(held) is set:
        held.add(key)
    elif held != key:
        mapping[k] = {held, key}


def _discard(mapping: dict[str, ContactKey | set[ContactKey]], k: str, key: ContactKey) -> None:
    held = mapping.get(k)
    if held is None:
        return
    if type(held) is set:
        held.discard(key)
        if len(held) == 1:
            mapping[k] = next(iter(held))
        elif not held:
            del mapping[k]
    elif held == key:
        del mapping[k]


def _indexed_names(entry: IndexedContact) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(attribute, the distinct values it is indexed under) of each name attribute of a contact:
    the variants where the attribute has them, else the folded values."""
    variants = entry.variants
    for attr, folded in entry.folded.items():
        values = variants.get(attr)
        if values is None:
            values = folded if len(folded) == 1 else tuple(dict.fromkeys(folded))
        yield attr, values


def _search_forms(entry: IndexedContact) -> Iterable[str]:
    """The distinct search forms of a contact's numbers."""
    numbers = entry.numbers
    if not numbers:
        return ()
    forms: dict[str, None] = {}
    for number in entry.all_numbers():
        forms.update(dict.fromkeys(number.search_forms()))
    return forms


def _bucket_of(value: str) -> str:
    """The bucket of a name value: its prefix, one string object for all values that share it."""
    return sys.intern(value[:BUCKET])


def _hints_of(members: dict[ContactKey, Tally], profile: SourceProfile) -> tuple[str, ...]:
    """The region hints of a company, from its members' tallies (in member order: ties)."""
    return hints_from_tallies(members.values(), profile.numbers)


@contextmanager
def _collector_paused(pause: bool) -> Iterator[None]:
    """Pause the cyclic garbage collector for the block if ``pause`` (and it is running).

    What the block made is then frozen (``gc.freeze``): it is the index, long-lived and free
    of cycles, and the first collection after the block would otherwise go through all of it
    (1.5 s for 100k contacts, on the reactor thread).
    """
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        gc.enable()

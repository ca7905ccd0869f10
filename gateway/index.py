"""The in-memory contact index: lookups by DN, number, head number and name prefix.

Pure and synchronous.  A batch of changes is applied in one call, so a
search (which also runs on the reactor thread) never sees half a batch.
Numbers are normalized here, once, when a contact is added.
"""

from __future__ import annotations

import heapq
from functools import lru_cache
from typing import Iterable, Iterator

from sortedcontainers import SortedList

from gateway.graph.parse import Change, Remove, Upsert
from gateway.ldap.schema import NAME_ATTRIBUTES, contact_attribute_values, phone_attribute_for_kind
from gateway.model import Contact
from gateway.numbers import NumberSettings, StoredNumber, parse_stored, region_hints
from gateway.fuzzy import FuzzyMatcher, index_variants
from gateway.text import fold

#: Attributes matched under umlaut-transcription variants ("Mueller" finds "Müller").
VARIANT_ATTRIBUTES = frozenset(("cn", "sn", "givenName", "displayName", "o", "ou", "title"))
#: Length of the value prefix that groups name entries for searches in result order.
BUCKET = 3

#: Attributes whose words the fuzzy matcher knows.
FUZZY_ATTRIBUTES = ("cn", "sn", "givenName", "displayName", "o")

__all__ = ["IndexedContact", "ContactIndex", "SourceProfile", "Prepared"]

ContactKey = tuple[str, str]


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

    __slots__ = ("contact", "uid", "sort_key", "values", "folded", "variants", "numbers", "rendered",
                 "company_hints")

    def __init__(self, contact: Contact, profile: SourceProfile, company_hints: tuple[str, ...] = ()) -> None:
        self.contact = contact
        self.company_hints = company_hints
        self.rendered: dict | None = None  # search results' cache (gateway.ldap.search)
        values = contact_attribute_values(contact)
        self.values = values
        self.uid = fold(values["uid"][0])
        self.sort_key = (-profile.priority, fold(contact.name), contact.source, contact.id)
        self.folded = {attr: tuple(fold(v) for v in values[attr]) for attr in NAME_ATTRIBUTES if attr in values}
        self.variants = {
            attr: tuple(dict.fromkeys(x for v in values[attr] for x in _variants(v)))
            for attr in VARIANT_ATTRIBUTES
            if attr in values
        }
        numbers: dict[str, list[StoredNumber]] = {}
        hints = region_hints((p.number for p in contact.phones), profile.numbers) if contact.phones else ()
        if company_hints:
            hints = tuple(dict.fromkeys(hints + company_hints))
        for phone in contact.phones:
            numbers.setdefault(phone_attribute_for_kind(phone.kind), []).append(
                parse_stored(phone.number, profile.numbers, regions=hints)
            )
        self.numbers = {attr: tuple(ns) for attr, ns in numbers.items()}

    @property
    def key(self) -> ContactKey:
        return self.contact.key

    def all_numbers(self) -> Iterator[StoredNumber]:
        for numbers in self.numbers.values():
            yield from numbers


#: Names repeat a lot (surnames, companies): their variants are worked out once.
_variants = lru_cache(maxsize=200_000)(index_variants)


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
        self.fuzzy = FuzzyMatcher(threshold=fuzzy_threshold, limit=200)
        self._by_key: dict[ContactKey, IndexedContact] = {}
        self._sort_of: dict[ContactKey, tuple] = {}  # contact key -> its result-order key
        self._by_uid: dict[str, IndexedContact] = {}
        self._by_number: dict[str, set[ContactKey]] = {}
        self._by_head: dict[str, set[ContactKey]] = {}
        self._by_alternative: dict[str, set[ContactKey]] = {}
        self._names: dict[str, SortedList] = {attr: SortedList() for attr in NAME_ATTRIBUTES}
        # (value[:BUCKET], sort key, value): within a bucket, contacts in result order, so a name
        # search can stop after the first page instead of collecting every match
        self._buckets: dict[str, SortedList] = {attr: SortedList() for attr in VARIANT_ATTRIBUTES}
        self._number_forms = SortedList()
        self._sorted: SortedList = SortedList()
        self.generation = 0
        # numbers of each company's contacts: where a company's numbers written with a country code
        # point abroad, its other numbers are read as that country's first ("region hints")
        self._companies: dict[tuple[str, str], dict[ContactKey, tuple[str, ...]]] = {}
        self._company_hints: dict[tuple[str, str], tuple[str, ...]] = {}
        self._dirty_companies: set[tuple[str, str]] = set()
        # sorted-list entries of contacts inserted by the batch being applied: added in bulk at its end
        self._pending: dict[ContactKey, list[tuple[SortedList, tuple]]] = {}

    # -- changes ---------------------------------------------------------

    def set_profile(self, profile: SourceProfile) -> None:
        """Register or replace a source profile (re-index its contacts if settings changed)."""
        old = self.profiles.get(profile.name)
        self.profiles[profile.name] = profile
        if old is not None and (old.priority, old.numbers) != (profile.priority, profile.numbers):
            contacts = [e.contact for e in self._by_key.values() if e.contact.source == profile.name]
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
        hints = self._company_hints.get(ckey, ()) if ckey else ()
        return IndexedContact(contact, self._profile(contact.source), hints)

    def unchanged(self, contact: Contact) -> bool:
        """True when the index already holds exactly this contact."""
        current = self._by_key.get(contact.key)
        return current is not None and current.contact == contact

    def apply(self, changes: Iterable[Change | Prepared]) -> tuple[int, int]:
        """Apply a batch of changes in one go; returns (upserted, removed). Idempotent."""
        upserted = removed = 0
        for change in changes:
            if isinstance(change, Prepared):
                entry = change.entry
                current = self._by_key.get(entry.key)
                if current is not None and current.contact == entry.contact:
                    continue
                self._remove(entry.key)
                self._insert(entry)
                upserted += 1
            elif isinstance(change, Upsert):
                if self.unchanged(change.contact):
                    continue
                self._remove(change.contact.key)
                self._add(change.contact)
                upserted += 1
            elif isinstance(change, Remove):
                if self._remove((change.source, change.id)):
                    removed += 1
        self._settle_companies()
        self._flush()
        self.generation += 1
        return upserted, removed

    def _settle_companies(self) -> None:
        """Re-read the numbers of contacts whose company's region hints changed with this batch."""
        dirty, self._dirty_companies = self._dirty_companies, set()
        for ckey in dirty:
            members = self._companies.get(ckey)
            if not members:
                self._company_hints.pop(ckey, None)
                continue
            profile = self._profile(ckey[0])
            hints = region_hints((raw for raws in members.values() for raw in raws), profile.numbers)
            if hints == self._company_hints.get(ckey, ()):
                continue
            self._company_hints[ckey] = hints
            for key in list(members):
                entry = self._by_key.get(key)
                if entry is not None and entry.company_hints != hints:
                    self._remove(key)
                    self._insert(IndexedContact(entry.contact, profile, hints))
        self._dirty_companies.clear()

    def replace_source(self, source: str, contacts: Iterable[Contact]) -> tuple[int, int]:
        """Make a source's contacts exactly ``contacts`` (a full import's result)."""
        incoming = {c.key: c for c in contacts}
        stale = [k for k, e in self._by_key.items() if k[0] == source and k not in incoming]
        changes: list[Change] = [Remove(source=k[0], id=k[1]) for k in stale]
        for key, contact in incoming.items():
            current = self._by_key.get(key)
            if current is None or current.contact != contact:
                changes.append(Upsert(contact))
        return self.apply(changes)

    def drop_source(self, source: str) -> int:
        """Remove every contact of a source."""
        keys = [k for k in self._by_key if k[0] == source]
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

    def _insert(self, entry: IndexedContact) -> None:
        key = entry.key
        ckey = company_key(entry.contact)
        if ckey is not None:
            self._companies.setdefault(ckey, {})[key] = tuple(p.number for p in entry.contact.phones)
            self._dirty_companies.add(ckey)
        self._by_key[key] = entry
        self._by_uid[entry.uid] = entry
        self._sort_of[key] = entry.sort_key
        pending = self._pending.setdefault(key, [])
        pending.append((self._sorted, entry.sort_key))
        for attr, folded in entry.folded.items():
            names = self._names[attr]
            variants = set(entry.variants.get(attr, folded))
            for value in variants:
                pending.append((names, (value, key)))
            buckets = self._buckets.get(attr)
            if buckets is not None:
                for value in variants:
                    pending.append((buckets, (value[:BUCKET], entry.sort_key, value)))
        self.fuzzy.add(key, [v for attr in FUZZY_ATTRIBUTES for v in entry.values.get(attr, ())])
        forms: set[str] = set()
        for number in entry.all_numbers():
            for k in number.match_keys():
                self._by_number.setdefault(k, set()).add(key)
            for k in number.alternative_keys():
                self._by_alternative.setdefault(k, set()).add(key)
            if number.head and (number.is_head or entry.contact.is_company_record):
                self._by_head.setdefault(number.head, set()).add(key)
            forms.update(number.search_forms())
        for form in forms:
            pending.append((self._number_forms, (form, key)))

    def _flush(self) -> None:
        """Add the batch's sorted-list entries: one sort for a bulk load, single adds for a few."""
        if not self._pending:
            return
        by_list: dict[int, tuple[SortedList, list]] = {}
        for items in self._pending.values():
            for target, item in items:
                slot = by_list.get(id(target))
                if slot is None:
                    slot = by_list[id(target)] = (target, [])
                slot[1].append(item)
        self._pending = {}
        for target, items in by_list.values():
            target.update(items)

    def _remove(self, key: ContactKey) -> bool:
        entry = self._by_key.pop(key, None)
        if entry is None:
            return False
        unsorted = self._pending.pop(key, None) is not None  # its sorted-list entries were never added
        ckey = company_key(entry.contact)
        if ckey is not None:
            members = self._companies.get(ckey)
            if members is not None:
                members.pop(key, None)
                if not members:
                    del self._companies[ckey]
            self._dirty_companies.add(ckey)
        self._by_uid.pop(entry.uid, None)
        self._sort_of.pop(key, None)
        if not unsorted:
            self._sorted.discard(entry.sort_key)
            for attr, folded in entry.folded.items():
                names = self._names[attr]
                variants = set(entry.variants.get(attr, folded))
                for value in variants:
                    names.discard((value, key))
                buckets = self._buckets.get(attr)
                if buckets is not None:
                    for value in variants:
                        buckets.discard((value[:BUCKET], entry.sort_key, value))
        self.fuzzy.remove(key)
        forms: set[str] = set()
        for number in entry.all_numbers():
            for k in number.match_keys():
                _discard(self._by_number, k, key)
            for k in number.alternative_keys():
                _discard(self._by_alternative, k, key)
            if number.head and (number.is_head or entry.contact.is_company_record):
                _discard(self._by_head, number.head, key)
            forms.update(number.search_forms())
        if not unsorted:
            for form in forms:
                self._number_forms.discard((form, key))
        return True

    # -- lookups ---------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_key)

    def count_by_source(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for source, _ in self._by_key:
            counts[source] = counts.get(source, 0) + 1
        return counts

    def get(self, key: ContactKey) -> IndexedContact | None:
        return self._by_key.get(key)

    def by_uid(self, uid: str) -> IndexedContact | None:
        """The contact whose ``uid`` RDN value is ``uid`` (case-insensitive)."""
        return self._by_uid.get(fold(uid))

    def contacts(self, source: str | None = None) -> Iterator[Contact]:
        for key, entry in self._by_key.items():
            if source is None or key[0] == source:
                yield entry.contact

    def in_order(self) -> Iterator[IndexedContact]:
        """Every contact, by source priority then name."""
        by_key = self._by_key
        for sort_key in list(self._sorted):
            entry = by_key.get((sort_key[2], sort_key[3]))
            if entry is not None:
                yield entry

    def has_number(self, number_key: str) -> bool:
        return number_key in self._by_number

    def with_number(self, number_key: str) -> set[ContactKey]:
        """Contacts having a number whose match key is ``number_key``."""
        return self._by_number.get(number_key, set())

    def has_alternative(self, number_key: str) -> bool:
        return number_key in self._by_alternative

    def with_alternative(self, number_key: str) -> set[ContactKey]:
        """Contacts with a lower-priority reading (another country's national format) of ``number_key``."""
        return self._by_alternative.get(number_key, set())

    def with_head(self, head: str) -> set[ContactKey]:
        """Contacts that stand for the company of head number ``head``: its switchboard number's
        contacts and company records (no personal name) with a number under that head."""
        return self._by_head.get(head, set())

    def name_prefix(self, attr: str, folded_prefix: str) -> set[ContactKey]:
        """Contacts whose folded ``attr`` starts with ``folded_prefix``."""
        names = self._names.get(attr)
        if names is None:
            return set()
        return _keys_between(names, (folded_prefix,), (folded_prefix + "\U0010ffff",))

    def name_equal(self, attr: str, folded_value: str) -> set[ContactKey]:
        names = self._names.get(attr)
        if names is None:
            return set()
        return _keys_between(names, (folded_value,), (folded_value, ("\U0010ffff",)))

    def names_in_order(self, items: Iterable[tuple[str, str, bool]]) -> Iterator[IndexedContact]:
        """Contacts matching any (attribute, folded value, is prefix) item, lazily, in result order.

        Only for attributes in VARIANT_ATTRIBUTES.  Each bucket holds its contacts in result
        order, so merging the buckets a query touches yields matches best first; a search
        that needs 50 stops after 50 however many contacts match.
        """
        streams = []
        for attr, wanted, prefix in items:
            entries = self._buckets[attr]
            if len(wanted) >= BUCKET or not prefix:
                streams.append(_bucket_stream(entries, wanted[:BUCKET], wanted, prefix))
                continue
            position = entries.bisect_left((wanted,))
            end = entries.bisect_left((wanted + "\U0010ffff",))
            while position < end:
                bucket = entries[position][0]
                streams.append(_bucket_stream(entries, bucket, wanted, True))
                position = entries.bisect_left((bucket, _AFTER_ALL))
        by_key = self._by_key
        last = None
        for sort_key in heapq.merge(*streams):
            if sort_key == last:
                continue
            last = sort_key
            entry = by_key.get((sort_key[2], sort_key[3]))
            if entry is not None:
                yield entry

    def number_prefix(self, prefix: str) -> set[ContactKey]:
        """Contacts with a number search form starting with ``prefix``."""
        return _keys_between(self._number_forms, (prefix,), (prefix + "\U0010ffff",))

    def ordered(self, keys: Iterable[ContactKey]) -> list[IndexedContact]:
        """The contacts of ``keys`` by source priority then name."""
        by_key = self._by_key
        entries = [by_key[k] for k in keys if k in by_key]
        entries.sort(key=_sort_key)
        return entries

    def ordered_lazily(self, keys: Iterable[ContactKey], first: int) -> Iterator[IndexedContact]:
        """Like ``ordered``, but sorts only the first ``first`` unless more are consumed."""
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


#: Compares greater than every sort key (their first item is an int).
_AFTER_ALL = (float("inf"),)


def _bucket_stream(entries: SortedList, bucket: str, wanted: str, prefix: bool) -> Iterator[tuple]:
    """Sort keys of one bucket's entries whose value starts with (or equals) ``wanted``."""
    start = entries.bisect_left((bucket,))
    stop = entries.bisect_left((bucket, _AFTER_ALL))
    if prefix:
        for _, sort_key, value in entries.islice(start, stop):
            if value.startswith(wanted):
                yield sort_key
    else:
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


def _discard(mapping: dict[str, set[ContactKey]], k: str, key: ContactKey) -> None:
    keys = mapping.get(k)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del mapping[k]

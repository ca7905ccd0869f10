"""The in-memory contact index: lookups by DN, number, head number and name prefix.

Pure and synchronous.  A batch of changes is applied in one call, so a
search (which also runs on the reactor thread) never sees half a batch.
Numbers are normalized here, once, when a contact is added.
"""

from __future__ import annotations

import gc
import heapq
import sys
from bisect import bisect_left
from contextlib import contextmanager
from functools import lru_cache
from itertools import islice
from operator import itemgetter
from typing import Iterable, Iterator

from sortedcontainers import SortedList

from gateway.graph.parse import Change, Remove, Upsert
from gateway.ldap.schema import NAME_ATTRIBUTES, contact_attribute_values, phone_attribute_for_kind
from gateway.model import Contact
from gateway.numbers import NumberSettings, StoredNumber, hints_from_tallies, parse_stored, region_hints, region_tally
from gateway.fuzzy import FuzzyMatcher, index_variants
from gateway.text import fold, fold_unique

#: Attributes matched under umlaut-transcription variants ("Mueller" finds "Müller").
VARIANT_ATTRIBUTES = frozenset(("cn", "sn", "givenName", "displayName", "o", "ou", "title"))
#: Length of the value prefix that groups name entries for searches in result order.
BUCKET = 3

#: Attributes whose words the fuzzy matcher knows.
FUZZY_ATTRIBUTES = ("cn", "sn", "givenName", "displayName", "o")

#: A batch of at least this many changes is applied with the cyclic garbage collector paused:
#: a bulk load makes millions of long-lived objects and no garbage, and the collector would
#: go through all of them again and again (a third of the build time).
PAUSE_COLLECTOR_AT = 1000

__all__ = ["IndexedContact", "ContactIndex", "SourceProfile", "Prepared"]

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

    __slots__ = ("contact", "uid", "sort_key", "values", "folded", "variants", "numbers", "rendered",
                 "company_hints")

    def __init__(self, contact: Contact, profile: SourceProfile, company_hints: tuple[str, ...] = ()) -> None:
        self.contact = contact
        self.company_hints = company_hints
        self.rendered: dict | None = None  # search results' cache (gateway.ldap.search)
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
        phones = contact.phones
        if not phones:
            self.numbers: dict[str, tuple[StoredNumber, ...]] = {}
            return
        settings = profile.numbers
        hints = region_hints([p.number for p in phones], settings)
        if company_hints:
            hints = tuple(dict.fromkeys(hints + company_hints))
        # values holds each phone attribute's numbers in the order of the phones; the attributes
        # are listed in the order they first occur
        self.numbers = {
            attr: tuple([parse_stored(raw, settings, regions=hints) for raw in values[attr]])
            for attr in dict.fromkeys([phone_attribute_for_kind(p.kind) for p in phones])
        }

    @property
    def key(self) -> ContactKey:
        return self.contact.key

    def all_numbers(self) -> Iterator[StoredNumber]:
        for numbers in self.numbers.values():
            yield from numbers


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
        self.fuzzy = FuzzyMatcher(threshold=fuzzy_threshold, limit=200)
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

    # -- changes ---------------------------------------------------------

    def set_profile(self, profile: SourceProfile) -> None:
        """Register or replace a source profile (re-index its contacts if settings changed)."""
        old = self.profiles.get(profile.name)
        self.profiles[profile.name] = profile
        if old is not None and (old.priority, old.numbers) != (profile.priority, profile.numbers):
            contacts = [e.contact for e in self._by_key.values() if e.contact.source == profile.name]
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
        hints = self._company_hints.get(ckey, ()) if ckey else ()
        return IndexedContact(contact, self._profile(contact.source), hints)

    def unchanged(self, contact: Contact) -> bool:
        """True when the index already holds exactly this contact."""
        current = self._by_key.get(contact.key)
        return current is not None and current.contact == contact

    def apply(self, changes: Iterable[Change | Prepared]) -> tuple[int, int]:
        """Apply a batch of changes in one go; returns (upserted, removed). Idempotent."""
        changes = list(changes)
        with _collector_paused(len(changes) >= PAUSE_COLLECTOR_AT):
            hints_before = self._plan_company_hints(changes)
            read_with_planned_hints: dict[ContactKey, IndexedContact] = {}
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
                    entry = self._entry(change.contact)
                    self._insert(entry)
                    read_with_planned_hints[entry.key] = entry
                    upserted += 1
                elif isinstance(change, Remove):
                    if self._remove((change.source, change.id)):
                        removed += 1
            self._settle_companies(hints_before, read_with_planned_hints)
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
                planned = members_of[ckey] = dict(self._companies.get(ckey, {}))
            return planned

        by_key = self._by_key
        for change in changes:
            if isinstance(change, (Prepared, Upsert)):
                contact: Contact | None = change.entry.contact if isinstance(change, Prepared) else change.contact
                key = contact.key
            elif isinstance(change, Remove):
                contact, key = None, (change.source, change.id)
            else:
                continue
            if key in contact_now:
                before = contact_now[key]
            else:
                entry = by_key.get(key)
                before = entry.contact if entry is not None else None
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
        read_with_planned_hints: dict[ContactKey, IndexedContact] | None = None,
    ) -> None:
        """Re-read the numbers of contacts whose company's region hints changed with this batch.

        ``hints_before``: the hints before the batch of the companies whose hints
        ``_plan_company_hints`` has already stored; ``read_with_planned_hints``: the batch's
        contacts that were read with them.
        """
        hints_before = hints_before or {}
        read_with_planned_hints = read_with_planned_hints or {}
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
                entry = self._by_key.get(key)
                if entry is None:
                    continue
                if entry.company_hints != hints:
                    self._remove(key)
                    self._insert(IndexedContact(entry.contact, profile, hints))
                elif read_with_planned_hints.get(key) is entry:
                    # Read with the new hints already; moved behind its colleagues as re-reading
                    # it would have moved it (read with the old hints, then again), so that the
                    # order of a company's members (ties between regions) and of the contacts
                    # stays what it always was.
                    members[key] = members.pop(key)
                    self._by_key[key] = self._by_key.pop(key)
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
        contact = entry.contact
        ckey = company_key(contact)
        if ckey is not None:
            self._companies.setdefault(ckey, {})[key] = self._tally(contact)
            self._dirty_companies.add(ckey)
        self._by_key[key] = entry
        self._by_uid[entry.uid] = entry
        self._sort_of[key] = entry.sort_key
        self._pending[key] = entry
        self.fuzzy.add(key, [v for attr in FUZZY_ATTRIBUTES for v in entry.values.get(attr, ())])
        by_number, by_alternative = self._by_number, self._by_alternative
        for number in entry.all_numbers():
            for k in number.match_keys():
                _add_key(by_number, k, key)
            for k in number.alternative_keys():
                _add_key(by_alternative, k, key)
            if number.head and (number.is_head or contact.is_company_record):
                _add_key(self._by_head, number.head, key)

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
        self.fuzzy.remove(key)
        for number in entry.all_numbers():
            for k in number.match_keys():
                _discard(self._by_number, k, key)
            for k in number.alternative_keys():
                _discard(self._by_alternative, k, key)
            if number.head and (number.is_head or entry.contact.is_company_record):
                _discard(self._by_head, number.head, key)
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
        return _keys_of(self._by_number.get(number_key))

    def has_alternative(self, number_key: str) -> bool:
        return number_key in self._by_alternative

    def with_alternative(self, number_key: str) -> set[ContactKey]:
        """Contacts with a lower-priority reading (another country's national format) of ``number_key``."""
        return _keys_of(self._by_alternative.get(number_key))

    def with_head(self, head: str) -> set[ContactKey]:
        """Contacts that stand for the company of head number ``head``: its switchboard number's
        contacts and company records (no personal name) with a number under that head."""
        return _keys_of(self._by_head.get(head))

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
        that needs 50 stops after 50 however many contacts match.  A prefix as long as the
        bucket's takes the whole bucket; a longer one is found in the bucket's text.
        """
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
        return out

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
        return set()
    if type(held) is set:
        return held
    return {held}


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
    """Pause the cyclic garbage collector for the block if ``pause`` (and it is running)."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()

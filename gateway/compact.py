"""A read-only contact index in a few large strings and arrays: the form a snapshot keeps.

Pure: rows in, bytes out, bytes in, lookups out.  ``ContactIndex`` (gateway.index)
makes the rows from its entries and serves a loaded ``CompactIndex`` as its
*base*, with the contacts changed since in its own structures.

Loading makes a fixed number of Python objects whatever the number of contacts
(a few strings and arrays per attribute), so a restart answers at once, and a
contact costs a few hundred bytes rather than some forty objects.  Contacts
are numbered in result order (by source priority, then name): their *rank*.
Every lookup answers ranks; ``key_of(rank)`` gives a contact's key and
``record(rank)`` the rest of it (JSON), from which the index makes the full
entry when a search needs it.

Each lookup structure is a ``SortedTexts``: values joined into one string,
NUL before each and at the end, with where each value starts and the rank it
belongs to, sorted by value (or, for name buckets, by the value's first
``BUCKET`` characters, then rank).  Values holding a NUL are not indexed
(they never occur in names, numbers or ids).
"""

from __future__ import annotations

import json
import struct
import sys
from array import array
from bisect import bisect_left
from itertools import accumulate
from operator import itemgetter
from typing import Any, Iterable, Iterator, Sequence

__all__ = ["CompactIndex", "Row", "SortedTexts", "BUCKET", "FORMAT"]

#: Length of the value prefix that groups name values for searches in result order.
BUCKET = 3
#: One value in this many is kept aside as a fence for searching (see ``SortedTexts.lower``).
FENCE = 64
#: Version of the byte form; a loader refuses any other.
FORMAT = 1
_MAGIC = b"DIRGWIDX"
_HEAD = struct.Struct("<8sII")  # magic, format, header JSON length
_U32 = "I"
_AFTER = "\U0010ffff"

if array(_U32).itemsize != 4 or array("Q").itemsize != 8:  # pragma: no cover - every platform CPython runs on
    raise ImportError("gateway.compact needs 4-byte 'I' and 8-byte 'Q' arrays")


class Row:
    """What the compact index keeps of one contact, as ``ContactIndex`` works it out.

    ``sort_key`` orders the rows (it becomes the rank); ``record`` is the contact's JSON;
    ``names`` maps a name attribute to the values it is indexed under; ``company`` is the
    text its colleagues share, ``member`` its place among them (which decides ties between
    their numbers' regions); ``fuzzy_texts`` are the names the fuzzy matcher knows it by.
    """

    __slots__ = ("sort_key", "key", "uid", "record", "numbers", "alternatives", "heads", "forms",
                 "names", "company", "member", "fuzzy_texts")

    def __init__(self, sort_key: tuple, key: tuple[str, str], uid: str, record: bytes,
                 numbers: Iterable[str] = (), alternatives: Iterable[str] = (), heads: Iterable[str] = (),
                 forms: Iterable[str] = (), names: dict[str, Sequence[str]] | None = None,
                 company: str = "", member: int = 0, fuzzy_texts: Sequence[str] = ()) -> None:
        self.sort_key = sort_key
        self.key = key
        self.uid = uid
        self.record = record
        self.numbers = tuple(numbers)
        self.alternatives = tuple(alternatives)
        self.heads = tuple(heads)
        self.forms = tuple(forms)
        self.names = names or {}
        self.company = company
        self.member = member
        self.fuzzy_texts = fuzzy_texts


class SortedTexts:
    """(value, rank) pairs in one string: ``text`` has NUL before each value and at its end,
    ``starts[i]`` is where value ``i`` starts (``starts[n]`` is ``len(text)``), ``ranks[i]``
    its rank."""

    __slots__ = ("text", "starts", "ranks", "_fences")

    def __init__(self, text: str, starts: array, ranks: array) -> None:
        self.text = text
        self.starts = starts
        self.ranks = ranks
        # every FENCE-th value (cut to a width), made when first searched: a search bisects
        # them in C and then only FENCE values with a Python step each
        self._fences: dict[int | None, list[str]] = {}

    @classmethod
    def build(cls, pairs: list[tuple[str, int]]) -> SortedTexts:
        """From (value, rank) pairs already in the order to keep (values holding a NUL left out)."""
        values = list(map(itemgetter(0), pairs))
        text = "\x00" + "\x00".join(values) + "\x00" if values else "\x00"
        if text.count("\x00") != len(values) + 1:
            pairs = [pair for pair in pairs if "\x00" not in pair[0]]
            return cls.build(pairs)
        starts = array(_U32, accumulate(map((1).__add__, map(len, values)), initial=1))
        return cls(text, starts, array(_U32, map(itemgetter(1), pairs)))

    def __len__(self) -> int:
        return len(self.ranks)

    def value(self, i: int) -> str:
        starts = self.starts
        return self.text[starts[i]:starts[i + 1] - 1]

    def lower(self, wanted: str, width: int | None = None, lo: int = 0, hi: int | None = None) -> int:
        """The first position in ``lo:hi`` whose value (cut to ``width``) is not below ``wanted``."""
        text, starts, n = self.text, self.starts, len(self.ranks)
        if width is None:
            def value(i: int) -> str:
                return text[starts[i]:starts[i + 1] - 1]
        else:
            def value(i: int) -> str:
                start = starts[i]
                return text[start:min(start + width, starts[i + 1] - 1)]
        fence = self._fences.get(width)
        if fence is None:
            fence = self._fences[width] = [value(i) for i in range(0, n, FENCE)]
        # the values before FENCE * (fences below wanted) - FENCE are below it, the one there is not
        below = bisect_left(fence, wanted)
        first = max(lo, (below - 1) * FENCE + 1) if below else lo
        last = min(n if hi is None else hi, below * FENCE)
        if first >= last:
            return max(lo, min(first, n if hi is None else hi))
        return bisect_left(range(n), wanted, first, last, key=value)

    def equal(self, wanted: str) -> array:
        """Ranks of the values equal to ``wanted`` (sorted by value)."""
        lo = hi = self.lower(wanted)
        text, starts, n = self.text, self.starts, len(self.ranks)
        while hi < n and text[starts[hi]:starts[hi + 1] - 1] == wanted:  # mostly one or two
            hi += 1
            if hi - lo > 8:  # a company's members, say: search for the end
                hi = self.lower(wanted + "\x00", lo=hi)
                break
        return self.ranks[lo:hi]

    def prefixed(self, prefix: str) -> array:
        """Ranks of the values starting with ``prefix`` (sorted by value)."""
        lo = self.lower(prefix)
        return self.ranks[lo:self.lower(prefix + _AFTER, lo=lo)]

    def bucket(self, bucket: str) -> tuple[int, int]:
        """Positions of the values whose first ``BUCKET`` characters are ``bucket`` (bucket order)."""
        lo = self.lower(bucket, BUCKET)
        return lo, self.lower(bucket + "\x00", BUCKET, lo=lo)

    def buckets_under(self, prefix: str) -> list[tuple[int, int]]:
        """Position ranges of every bucket starting with ``prefix`` (shorter than a bucket)."""
        lo = self.lower(prefix, BUCKET)
        end = self.lower(prefix + _AFTER, BUCKET, lo=lo)
        out = []
        while lo < end:
            first = self.value(lo)[:BUCKET]
            stop = self.lower(first + "\x00", BUCKET, lo=lo, hi=end)
            out.append((lo, stop))
            lo = stop
        return out

    def starting(self, wanted: str, lo: int, hi: int) -> Iterator[int]:
        """Ranks of the values in ``lo:hi`` starting with ``wanted``, in position order."""
        if lo >= hi:
            return
        text, starts, ranks = self.text, self.starts, self.ranks
        needle = "\x00" + wanted
        end = starts[hi]
        at = text.find(needle, starts[lo] - 1, end)
        while at >= 0:
            i = bisect_left(starts, at + 1, lo, hi)
            if i < hi and starts[i] == at + 1:
                yield ranks[i]
            at = text.find(needle, at + 1, end)

    def whole(self, wanted: str, lo: int, hi: int) -> Iterator[int]:
        """Ranks of the values in ``lo:hi`` equal to ``wanted``."""
        return self.starting(wanted + "\x00", lo, hi)

    # -- bytes ------------------------------------------------------------------

    def parts(self) -> list[bytes]:
        return [self.text.encode("utf-8", "surrogatepass"), self.starts.tobytes(), self.ranks.tobytes()]

    @classmethod
    def from_parts(cls, text: bytes | memoryview, starts: bytes | memoryview, ranks: bytes | memoryview) -> SortedTexts:
        s, r = array(_U32), array(_U32)
        s.frombytes(starts)
        r.frombytes(ranks)
        decoded = str(text, "utf-8", "surrogatepass")
        if len(s) != len(r) + 1 or s[-1] != len(decoded) or (len(r) and s[0] != 1):
            raise ValueError("a sorted text's parts do not agree")
        return cls(decoded, s, r)


#: The SortedTexts a CompactIndex has besides its name attributes, in byte order.
_TABLES = ("keys", "uids", "numbers", "alternatives", "heads", "forms", "companies")


class CompactIndex:
    """Contacts numbered 0..n-1 in result order, with lookups that answer ranks.

    ``sources``: the sources' fingerprints at build time (a source whose settings
    changed since cannot use its rows); ``fuzzy``: optional byte form of a
    ``FrozenFuzzy`` over the ranks, kept as given.
    """

    def __init__(self, sources: dict[str, str], records: bytes, ends: array, places: array,
                 tables: dict[str, SortedTexts], names: dict[str, SortedTexts], bucketed: frozenset[str],
                 aliases: dict[str, str], fuzzy: bytes = b"") -> None:
        self.sources = sources
        self._records = records
        self._ends = ends
        self._places = places  # rank -> its key's place in the keys table
        self._tables = tables
        self.keys = tables["keys"]
        self.uids = tables["uids"]
        self.numbers = tables["numbers"]
        self.alternatives = tables["alternatives"]
        self.heads = tables["heads"]
        self.forms = tables["forms"]
        self.companies = tables["companies"]
        self._names = names
        # attributes whose values are another's for every contact (displayName is cn) share its table
        self.aliases = aliases
        self.names = dict(names)
        self.names.update((alias, names[attr]) for alias, attr in aliases.items() if attr in names)
        self.bucketed = bucketed
        self.fuzzy = fuzzy

    @classmethod
    def build(cls, rows: Iterable[Row], sources: dict[str, str], bucketed: Iterable[str],
              fuzzy: Any = None) -> CompactIndex:
        """From rows in any order; ``bucketed``: name attributes kept in buckets (result order
        within a bucket) rather than sorted by value.  ``fuzzy(ranked rows) -> bytes``, if given,
        makes the fuzzy matcher's byte form.  A row's ``uid`` is kept only when it is not its
        key written "source.id" (by_uid finds the others by their key)."""
        ranked = sorted(rows, key=_sort_key)
        bucketed = frozenset(bucketed)
        records = b"".join(row.record for row in ranked)
        ends = array("Q")
        position = 0
        for row in ranked:
            position += len(row.record)
            ends.append(position)
        pairs: dict[str, list[tuple[str, int]]] = {name: [] for name in _TABLES}
        names: dict[str, list[tuple[str, int]]] = {}
        members: list[tuple[str, int, int]] = []
        aliases = dict(_ALIASES)
        for rank, row in enumerate(ranked):
            pairs["keys"].append((_key_text(row.key), rank))
            if row.uid != f"{row.key[0]}.{row.key[1]}":
                pairs["uids"].append((row.uid, rank))
            pairs["numbers"].extend([(k, rank) for k in row.numbers])
            pairs["alternatives"].extend([(k, rank) for k in row.alternatives])
            pairs["heads"].extend([(k, rank) for k in row.heads])
            pairs["forms"].extend([(k, rank) for k in row.forms])
            if row.company:
                members.append((row.company, row.member, rank))
            for attr, values in row.names.items():
                names.setdefault(attr, []).extend([(v, rank) for v in values])
            for alias, attr in list(aliases.items()):
                if row.names.get(alias) != row.names.get(attr):
                    del aliases[alias]
        tables = {name: SortedTexts.build(sorted(items)) for name, items in pairs.items()}
        places = array(_U32, bytes(4 * len(ranked)))
        for place, rank in enumerate(tables["keys"].ranks):
            places[rank] = place
        members.sort()  # a company's members in their order
        tables["companies"] = SortedTexts.build([(company, rank) for company, _, rank in members])
        name_tables = {}
        for attr, items in names.items():
            if attr in aliases:
                continue
            if attr in bucketed:
                # by bucket, then rank (result order), then value: a contact's variants stay together
                items.sort(key=_bucket_order)
            else:
                items.sort()
            name_tables[attr] = SortedTexts.build(items)
        return cls(dict(sources), records, ends, places, tables, name_tables, bucketed, aliases,
                   fuzzy(ranked) if fuzzy is not None else b"")

    def __len__(self) -> int:
        return len(self._ends)

    def record(self, rank: int) -> bytes:
        """The stored JSON of the contact of ``rank``."""
        ends = self._ends
        return self._records[ends[rank - 1] if rank else 0:ends[rank]]

    def key_of(self, rank: int) -> tuple[str, str]:
        source, _, cid = self.keys.value(self._places[rank]).partition("\x1f")
        return source, cid

    def rank_of(self, key: tuple[str, str]) -> int | None:
        found = self.keys.equal(_key_text(key))
        return found[0] if found else None

    def ranks_of_uid(self, uid: str) -> list[int]:
        """Ranks of the contacts whose folded uid is ``uid``."""
        out = list(self.uids.equal(uid))
        for source in self.sources:
            if uid.startswith(source + "."):
                rank = self.rank_of((source, uid[len(source) + 1:]))
                if rank is not None:
                    out.append(rank)
        return out

    # -- bytes ------------------------------------------------------------------

    def to_bytes(self) -> list[bytes]:
        """The byte form, as pieces to write one after the other."""
        parts: list[bytes] = [self._records, self._ends.tobytes(), self._places.tobytes()]
        for name in _TABLES:
            parts.extend(self._tables[name].parts())
        attrs = sorted(self._names)
        for attr in attrs:
            parts.extend(self._names[attr].parts())
        parts.append(self.fuzzy)
        head = json.dumps({"sources": self.sources, "names": attrs, "aliases": self.aliases,
                           "bucketed": sorted(self.bucketed), "byteorder": sys.byteorder,
                           "parts": [len(p) for p in parts]}, separators=(",", ":")).encode()
        return [_HEAD.pack(_MAGIC, FORMAT, len(head)), head, *parts]

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> CompactIndex:
        """Load the byte form; ``ValueError`` saying what is wrong when it is not one."""
        view = memoryview(data)
        if len(view) < _HEAD.size:
            raise ValueError("compact index: too short")
        magic, version, head_size = _HEAD.unpack_from(view)
        if magic != _MAGIC:
            raise ValueError("compact index: not one (wrong magic)")
        if version != FORMAT:
            raise ValueError(f"compact index: format {version}, this version reads {FORMAT}")
        try:
            head = json.loads(bytes(view[_HEAD.size:_HEAD.size + head_size]))
            lengths = [int(n) for n in head["parts"]]
            attrs = [str(a) for a in head["names"]]
            sources = {str(k): str(v) for k, v in head["sources"].items()}
            bucketed = frozenset(str(a) for a in head["bucketed"])
            aliases = {str(k): str(v) for k, v in head["aliases"].items()}
            byteorder = head["byteorder"]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"compact index: bad header ({e})") from None
        if byteorder != sys.byteorder:
            raise ValueError(f"compact index: written {byteorder}-endian, this machine is {sys.byteorder}-endian")
        if len(lengths) != 3 + 3 * (len(_TABLES) + len(attrs)) + 1:
            raise ValueError("compact index: header lists the wrong number of parts")
        position = _HEAD.size + head_size
        if position + sum(lengths) != len(view):
            raise ValueError("compact index: size does not match its header")
        parts = []
        for n in lengths:
            parts.append(view[position:position + n])
            position += n
        try:
            records = bytes(parts[0])
            ends = array("Q")
            ends.frombytes(parts[1])
            if (len(ends) and ends[-1] != len(records)) or (not len(ends) and records):
                raise ValueError("records and their ends do not agree")
            places = array(_U32)
            places.frombytes(parts[2])
            tables = {}
            at = 3
            for name in _TABLES:
                tables[name] = SortedTexts.from_parts(*parts[at:at + 3])
                at += 3
            names = {}
            for attr in attrs:
                names[attr] = SortedTexts.from_parts(*parts[at:at + 3])
                at += 3
            fuzzy = bytes(parts[at])
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"compact index: {e}") from None
        count = len(ends)
        for table in list(tables.values()) + list(names.values()):
            if len(table.ranks) and max(table.ranks) >= count:
                raise ValueError("compact index: a rank beyond the records")
        if len(places) != count or len(tables["keys"]) != count or (count and max(places) >= count):
            raise ValueError("compact index: its keys do not match its records")
        return cls(sources, records, ends, places, tables, names, bucketed, aliases, fuzzy)


#: Attributes that are another's for every contact (schema.contact_attribute_values): kept once.
_ALIASES = {"displayName": "cn"}


def _key_text(key: tuple[str, str]) -> str:
    return f"{key[0]}\x1f{key[1]}"


def _sort_key(row: Row) -> tuple:
    return row.sort_key


def _bucket_order(item: tuple[str, int]) -> tuple[str, int, str]:
    value, rank = item
    return value[:BUCKET], rank, value

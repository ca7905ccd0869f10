"""Umlaut-insensitive name variants and fuzzy name search.  Pure.

Variants (equality and prefix matching)
---------------------------------------
German names are written three ways: "Müller", "Mueller" (the standard
transcription when there is no umlaut key) and "Muller" (the umlaut just
dropped).  ``gateway.text.fold`` already makes "Müller" and "Muller" meet
("muller") and "Straße" and "Strasse" ("strasse").  The transcription is
handled by variants, and which side gets which matters:

* ``index_variants(name)``, for the stored names, are
  1. ``fold(name)``;
  2. the *expansion*: ``fold`` after writing ä ö ü å ø as ae oe ue aa oe
     ("Müller" -> "mueller");
  3. the *reduction*: ``fold(name)`` with ae oe ue written a o u wherever
     they follow a consonant or start the name, but not after a vowel or
     "q" ("Mueller" -> "muller"; "Bauer", "Queck" and "Neuer" stay).
* ``query_variants(query)``, for what a client asks, are 1 and 2 only.

A query matches a stored name when one of its query variants equals (or,
for prefix searches, is a prefix of) one of the name's index variants.
So "Mueller", "Muller" and "Müller" all find "Müller" and "Mueller", and
"Müller" and "Muller" find "Muller" (but "Mueller" does not: "ue" in a
query is never taken for an umlaut).  The query side is never reduced, so
a prefix search "Mue*" finds Müller and Mueller but not Mustermann.

The reduction cannot tell a transcribed umlaut from a real "ae"/"ue"
("Michael", "Manuel", "Raphael"): those names get an extra index variant
("michal", "manul"), so an equality search for "Michal" also finds
"Michael".  That is the price, paid only on the stored side; it never
widens what a query looks for.

Fuzzy search
------------
``FuzzyMatcher`` compares query words with the words of stored names
(token level, so "Meier" finds "Hans Meier") using ``rapidfuzz.fuzz.ratio``
(normalized Indel similarity, 0-100) on a *sound form* of each folded
word: the reduction above, then y -> i, ai -> ei, ph -> f, th -> t, dt ->
t, ck -> k, tz -> z, c -> k before a o u l r, a silent h after a vowel
dropped, doubled letters single, and a final d -> t.  So Maier, Meier,
Mayer and Meyer are one sound form, as are Schmidt, Schmitt and Schmid,
while "Meier" against "Müller" scores 60.  A word that is spelled
differently but sounds the same scores 99; only the same folded spelling
scores 100.  Ties are broken by the ratio of the folded spellings.

A query of several words matches a name when every word (of two or more
letters) matches some word of the name; the score is their mean.  In
prefix mode (for a substring filter's initial part, "maie*") each stored
word is compared cut to the length of the query word.

Words are kept once each in a list that ``rapidfuzz.process.extract``
scans at C speed; adding and removing a name is O(words) with free-slot
reuse and an occasional compaction.  ``bench()`` measures it.

``FrozenFuzzy`` is the same search, read-only, over the ranks 0..n-1 of a
snapshot's base: the words as two lists of strings, owners and words per
rank as flat arrays, and a byte form that loads without per-rank objects.
Its ``skip`` leaves out ranks changed since; like removed keys they do not
count against the limit, but their words still count against the number
of words one scan takes (at least 200 for one query word, 2000 for
several).  ``bench_frozen()`` measures it.
"""

from __future__ import annotations

import operator
import random
import re
import statistics
import struct
import sys
import time
import unicodedata
from array import array
from itertools import accumulate, chain, islice, repeat
from typing import Container, Generic, Hashable, Iterable, Sequence, TypeVar

from rapidfuzz import fuzz, process

from gateway.text import fold

__all__ = [
    "fold_variants",
    "index_variants",
    "query_variants",
    "expand_umlauts",
    "reduce_transcriptions",
    "sound",
    "words",
    "FuzzyMatcher",
    "FrozenFuzzy",
    "bench",
    "bench_frozen",
]

_EXPAND = str.maketrans(
    {
        "ä": "ae",
        "ö": "oe",
        "ü": "ue",
        "Ä": "Ae",
        "Ö": "Oe",
        "Ü": "Ue",
        "ø": "oe",
        "Ø": "Oe",
        "å": "aa",
        "Å": "Aa",
    }
)

_REDUCE = re.compile(r"(?<![aeiouq])([aou])e")


def expand_umlauts(text: str) -> str:
    """ä ö ü å ø written as ae oe ue aa oe (before folding): "Müller" -> "Mueller"."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFC", text).translate(_EXPAND)


def reduce_transcriptions(folded: str) -> str:
    """ae oe ue -> a o u on folded text, except after a vowel or q: "mueller" -> "muller"."""
    if "e" not in folded:
        return folded
    return _REDUCE.sub(r"\1", folded)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for item in items:
        if item not in out:
            out.append(item)
    return tuple(out)


def index_variants(text: str) -> tuple[str, ...]:
    """Folded forms to index a stored name under (``fold(text)`` first)."""
    base = fold(text)
    expanded = fold(expand_umlauts(text))
    return _unique((base, expanded, reduce_transcriptions(base), reduce_transcriptions(expanded)))


def query_variants(text: str) -> tuple[str, ...]:
    """Folded forms to look a query up under (``fold(text)`` first)."""
    return _unique((fold(text), fold(expand_umlauts(text))))


def fold_variants(text: str, *, query: bool = False) -> tuple[str, ...]:
    """``index_variants`` (stored names) or, with ``query=True``, ``query_variants``."""
    return query_variants(text) if query else index_variants(text)


# -- words and sound forms ------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")
_SOUND_RULES = (
    (re.compile(r"y"), "i"),
    (re.compile(r"ph"), "f"),
    (re.compile(r"th"), "t"),
    (re.compile(r"dt"), "t"),
    (re.compile(r"ck"), "k"),
    (re.compile(r"tz"), "z"),
    (re.compile(r"c(?=[aoulr])"), "k"),
    (re.compile(r"ai"), "ei"),
    (re.compile(r"(?<=[aeiou])h(?![aeiou])"), ""),
    (re.compile(r"(.)\1+"), r"\1"),
    (re.compile(r"d$"), "t"),
)


def words(text: str) -> list[str]:
    """The folded words of a name: "O'Brien-Müller, Hans" -> ["obrien", "muller", "hans"]."""
    return _WORD.findall(fold(text).replace("'", ""))


def sound(word: str) -> str:
    """The sound form of one folded word (see the module docstring)."""
    word = reduce_transcriptions(word)
    for pattern, replacement in _SOUND_RULES:
        word = pattern.sub(replacement, word)
    return word


# -- the search both matchers share -------------------------------------------------


def _checked_settings(threshold: float, limit: int) -> tuple[float, int]:
    if not 0 <= threshold <= 100:
        raise ValueError("threshold must be between 0 and 100")
    if limit < 1:
        raise ValueError("limit must be positive")
    return float(threshold), limit


def _name_words(text: str | Iterable[str]) -> dict[str, None]:
    """The distinct folded words of a name or several, in order of appearance."""
    # a text given twice (a contact's cn and displayName, say) has no words the first has not
    texts = (text,) if isinstance(text, str) else dict.fromkeys(text)
    found: dict[str, None] = {}
    for t in texts:
        found.update(dict.fromkeys(words(t)))
    return found


_Key = TypeVar("_Key", bound=Hashable)


class _WordSearch(Generic[_Key]):
    """The search over distinct words in slots that ``FuzzyMatcher`` and ``FrozenFuzzy`` share.

    A subclass holds per slot the sound form (``_sounds``, the choices
    rapidfuzz scans; None for a free slot) and the folded word
    (``_folded``), and says which keys own a slot (``_owners_of``) and
    which slots a key has (``_slots_of``).
    """

    threshold: float
    limit: int
    _sounds: Sequence[str | None]
    _folded: Sequence[str | None]
    _cut: dict[int, list[str | None]]  # prefix mode: choices cut to a length

    @property
    def word_count(self) -> int:
        """The number of distinct words held."""
        raise NotImplementedError

    def _owners_of(self, slot: int) -> Iterable[_Key]:
        """The keys having the word in ``slot``, in a fixed order."""
        raise NotImplementedError

    def _slots_of(self, key: _Key) -> Sequence[int]:
        """The slots of the words of ``key`` (at least one)."""
        raise NotImplementedError

    def _search(
        self, query: str, prefix: bool, threshold: float | None, limit: int | None, skip: Container[_Key]
    ) -> list[tuple[_Key, float]]:
        """``search``, leaving out the keys in ``skip`` (they do not count against ``limit``)."""
        threshold = self.threshold if threshold is None else float(threshold)
        limit = self.limit if limit is None else limit
        qwords = _query_words(query)
        if not qwords or limit < 1 or not self.word_count:
            return []
        if len(qwords) == 1:
            out: list[tuple[_Key, float]] = []
            seen: set[_Key] = set()
            # words best first: a key's first appearance is its best word
            for score, _, slot in self._word_hits(qwords[0], prefix, threshold, max(4 * limit, 200)):
                for key in self._owners_of(slot):
                    if key not in seen and key not in skip:
                        seen.add(key)
                        out.append((key, score))
                        if len(out) >= limit:
                            return out
            return out
        # several words: scan for the longest (most selective) word, then check the others
        # per candidate, or with a scan of their own when there are many candidates
        primary = max(range(len(qwords)), key=lambda i: len(qwords[i]))
        max_words = max(50 * limit, 2000)
        candidates: dict[_Key, tuple[float, float]] = {}
        for score, tie, slot in self._word_hits(qwords[primary], prefix, threshold, max_words):
            for key in self._owners_of(slot):
                if key not in candidates and key not in skip:
                    candidates[key] = (score, tie)
        scanned: list[dict[int, tuple[float, float]] | None] = []
        others = [w for i, w in enumerate(qwords) if i != primary]
        for word in others:
            if len(candidates) > 256:
                scanned.append({slot: (sc, tie) for sc, tie, slot in self._word_hits(word, prefix, threshold, max_words)})
            else:
                scanned.append(None)
        sounds_of = [sound(w) for w in others]
        stored_sounds, stored_folded, slots_of = self._sounds, self._folded, self._slots_of
        combined: list[tuple[_Key, float, float]] = []
        for key, (total, ties) in candidates.items():
            slots = slots_of(key)
            if not slots:
                continue  # only from a damaged frozen index: its owners name a rank without words
            for word, wanted, hits in zip(others, sounds_of, scanned):
                if hits is not None:
                    score, tie = max(hits.get(slot, (0.0, 0.0)) for slot in slots)
                else:
                    score, tie = max(
                        _word_score(word, wanted, stored_folded[slot] or "", stored_sounds[slot] or "", prefix)
                        for slot in slots
                    )
                if score < threshold or score <= 0:
                    break
                total += score
                ties += tie
            else:
                combined.append((key, total / len(qwords), ties))
        combined.sort(key=lambda t: (-t[1], -t[2]))
        return [(key, score) for key, score, _ in combined[:limit]]

    def _choices(self, prefix: bool, length: int) -> Sequence[str | None]:
        if not prefix:
            return self._sounds
        cut = self._cut.get(length)
        if cut is None:
            cut = [s[:length] if s is not None else None for s in self._sounds]
            if len(self._cut) >= 8:
                self._cut.clear()
            self._cut[length] = cut
        return cut

    def _word_hits(self, word: str, prefix: bool, threshold: float, max_words: int) -> list[tuple[float, float, int]]:
        """(score, tie-break, slot) of the stored words matching ``word``, best first."""
        wanted = sound(word)
        if not wanted:
            return []
        choices = self._choices(prefix, len(wanted))
        hits = process.extract(
            wanted, choices, scorer=fuzz.ratio, processor=None, score_cutoff=threshold, limit=max_words
        )
        out: list[tuple[float, float, int]] = []
        for _, raw, slot in hits:
            spelled = self._folded[slot]
            if spelled is None:  # pragma: no cover - choices and slots move together
                continue
            target = spelled[: len(word)] if prefix else spelled
            if target == word:
                score, tie = 100.0, 100.0
            else:
                score, tie = min(raw, 99.0), fuzz.ratio(word, target)
            if score >= threshold and score > 0:
                out.append((score, tie, slot))
        out.sort(key=lambda t: (-t[0], -t[1]))
        return out

    def score(
        self,
        query: str,
        text: str | Iterable[str],
        *,
        prefix: bool = False,
        threshold: float | None = None,
    ) -> float:
        """The score ``search`` gives a name ``text`` for ``query``; 0 if it would not match.

        For checking single entries without the index (an approx filter
        inside an AND, say).  As in ``search``, every query word must
        reach ``threshold`` (default: the matcher's) on some word of the name.
        """
        threshold = self.threshold if threshold is None else float(threshold)
        qwords = _query_words(query)
        texts = [text] if isinstance(text, str) else list(text)
        name_words = [(w, sound(w)) for t in texts for w in words(t)]
        if not qwords or not name_words:
            return 0.0
        total = 0.0
        for qw in qwords:
            wanted = sound(qw)
            score, _ = max(_word_score(qw, wanted, w, s, prefix) for w, s in name_words)
            if score < threshold or score <= 0:
                return 0.0
            total += score
        return total / len(qwords)



# -- the matcher ----------------------------------------------------------------


class FuzzyMatcher(_WordSearch[Hashable]):
    """Fuzzy search over the words of names, keyed by the caller's keys.

    ``threshold`` is the minimum score (0-100) and ``limit`` the maximum
    number of keys a search returns.  Not thread-safe; use it from one
    thread (the reactor's).
    """

    #: compact when at least this many slots are free and they outnumber the used ones,
    #: and repack when this many new words (or a quarter of the packed ones) were stored since
    COMPACT_MIN = 1024

    def __init__(self, threshold: float = 80, limit: int = 50) -> None:
        self.threshold, self.limit = _checked_settings(threshold, limit)
        self._sounds: list[str | None] = []  # the choices rapidfuzz scans (None: free slot)
        self._folded: list[str | None] = []  # the folded word of each slot
        self._owners: list[set[Hashable] | None] = []  # the keys having that word
        self._slot: dict[str, int] = {}  # folded word -> slot
        self._free: list[int] = []
        self._words_of: dict[Hashable, tuple[str, ...]] = {}
        self._cut: dict[int, list[str | None]] = {}  # prefix mode: choices cut to a length
        self._packed = 0  # words at the last packing
        self._written = 0  # words stored since

    def __len__(self) -> int:
        """The number of keys."""
        return len(self._words_of)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._words_of

    @property
    def word_count(self) -> int:
        """The number of distinct words held."""
        return len(self._slot)

    # -- changes ---------------------------------------------------------

    def add(self, key: Hashable, text: str | Iterable[str]) -> None:
        """Index ``key`` under the words of ``text`` (a name or several); replaces earlier text."""
        if key in self._words_of:
            self.remove(key)
        found = _name_words(text)
        held: list[str] = []
        for w in found:
            slot = self._slot.get(w)
            if slot is None:
                slot = self._new_slot(w)
            owners = self._owners[slot]
            assert owners is not None
            owners.add(key)
            held.append(self._folded[slot])  # the matcher's copy of the word: one string for all owners
        self._words_of[key] = tuple(held)
        if found:
            self._cut.clear()
        if self._written >= max(self.COMPACT_MIN, self._packed // 4):
            self._compact()

    def _new_slot(self, word: str) -> int:
        s = sound(word)
        self._written += 1
        if self._free:
            slot = self._free.pop()
            self._sounds[slot] = s
            self._folded[slot] = word
            self._owners[slot] = set()
        else:
            slot = len(self._sounds)
            self._sounds.append(s)
            self._folded.append(word)
            self._owners.append(set())
        self._slot[word] = slot
        return slot

    def remove(self, key: Hashable) -> bool:
        """Forget ``key``; False if it was not there."""
        found = self._words_of.pop(key, None)
        if found is None:
            return False
        for w in found:
            slot = self._slot[w]
            owners = self._owners[slot]
            assert owners is not None
            owners.discard(key)
            if not owners:
                del self._slot[w]
                self._sounds[slot] = None
                self._folded[slot] = None
                self._owners[slot] = None
                self._free.append(slot)
        if found:
            self._cut.clear()
        if len(self._free) >= self.COMPACT_MIN and len(self._free) > len(self._slot):
            self._compact()
        return True

    def _compact(self) -> None:
        """Drop free slots and copy the words into fresh, adjacent memory.

        rapidfuzz reads every choice string on each search; strings made
        one by one among other objects are scattered over the heap, and
        scanning them was measured 5x slower than freshly copied ones
        (25 ms against 5 ms for 77k words).  Runs after geometric growth
        or heavy removal, so its O(n) cost is amortized O(1) per change.
        """
        sounds: list[str | None] = []
        folded: list[str | None] = []
        owners: list[set[Hashable] | None] = []
        slot_of: dict[str, int] = {}
        for s, f, o in zip(self._sounds, self._folded, self._owners):
            if f is None or s is None:
                continue
            slot_of[f] = len(sounds)
            sounds.append((s + " ")[:-1])
            folded.append(f)
            owners.append(o)
        self._sounds, self._folded, self._owners, self._slot = sounds, folded, owners, slot_of
        self._free = []
        self._cut.clear()
        self._packed = len(sounds)
        self._written = 0

    def pack(self) -> None:
        """Compact now (after a bulk load, say); searches are fastest right after."""
        self._compact()

    def clear(self) -> None:
        self.__init__(self.threshold, self.limit)  # type: ignore[misc]

    # -- searching -------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        prefix: bool = False,
        threshold: float | None = None,
        limit: int | None = None,
    ) -> list[tuple[Hashable, float]]:
        """(key, score) pairs, best first, with score >= threshold, at most ``limit``."""
        return self._search(query, prefix, threshold, limit, ())

    def _owners_of(self, slot: int) -> Iterable[Hashable]:
        return self._owners[slot] or ()

    def _slots_of(self, key: Hashable) -> Sequence[int]:
        slot_of = self._slot
        return [slot_of[w] for w in self._words_of[key]]



# -- the read-only form -------------------------------------------------------------

_MAGIC = b"DGFZ"  # dirgw fuzzy, layout 1
_HEADER = struct.Struct("<4sIIII")  # magic, ranks, words, (rank, word) pairs, text bytes
_SEPARATOR = "\n"  # never in a folded word or its sound form: words() keeps letters and digits only
if array("I").itemsize != 4:  # pragma: no cover - every platform CPython runs on today
    raise ImportError("gateway.fuzzy needs array('I') of 4 bytes")


class FrozenFuzzy(_WordSearch[int]):
    """A read-only ``FuzzyMatcher`` whose keys are the ranks 0..n-1, held in flat arrays.

    Per distinct word (a slot): its sound form and folded word
    (``_sounds``, ``_folded``) and its owners, ranks ascending, in
    ``_owners[_owner_start[slot]:_owner_start[slot + 1]]``.  Per rank:
    the slots of its words in ``_slots[_slot_start[rank]:_slot_start[rank + 1]]``.
    The only Python objects are the word strings.  ``search`` answers
    exactly as a ``FuzzyMatcher`` given the same texts under the same
    keys in ascending order would, up to the order of equal scores.
    """

    _sounds: list[str]
    _folded: list[str]

    def __init__(
        self,
        sounds: list[str],
        folded: list[str],
        owner_start: array[int],
        owners: array[int],
        slot_start: array[int],
        slots: array[int],
        threshold: float = 80,
        limit: int = 50,
    ) -> None:
        """Use ``build`` or ``from_bytes``; this takes their parts as they are."""
        self.threshold, self.limit = _checked_settings(threshold, limit)
        self._sounds = sounds
        self._folded = folded
        self._owner_start = owner_start
        self._owners = owners
        self._slot_start = slot_start
        self._slots = slots
        self._cut: dict[int, list[str | None]] = {}

    @classmethod
    def build(
        cls,
        texts: Iterable[tuple[int, str | Iterable[str]]],
        threshold: float = 80,
        limit: int = 50,
        *,
        size: int | None = None,
    ) -> FrozenFuzzy:
        """A matcher over (rank, texts) pairs, ranks ascending (what ``FuzzyMatcher.add`` gets).

        Ranks not given have no words; ``size`` is the number of ranks
        (default: the last rank + 1).
        """
        slot_of: dict[str, int] = {}
        sounds: list[str] = []
        folded: list[str] = []
        slot_start = array("I", [0])
        slots = array("I")
        last = -1
        for rank, text in texts:
            if rank <= last:
                raise ValueError(f"rank {rank} after {last}: ranks must be ascending and not negative")
            slot_start.extend(repeat(len(slots), rank - last - 1))
            for w in _name_words(text):
                slot = slot_of.get(w)
                if slot is None:
                    slot = slot_of[w] = len(folded)
                    folded.append(w)
                    sounds.append(sound(w))
                slots.append(slot)
            slot_start.append(len(slots))
            last = rank
        size = last + 1 if size is None else size
        if size <= last:
            raise ValueError(f"size {size} leaves out rank {last}")
        slot_start.extend(repeat(len(slots), size - last - 1))
        owner_start, owners = _owners_by_slot(slot_start, slots, len(folded))
        # fresh, adjacent copies of the words scan faster (see FuzzyMatcher._compact)
        return cls(_repacked(sounds), _repacked(folded), owner_start, owners, slot_start, slots, threshold, limit)

    def __len__(self) -> int:
        """The number of ranks."""
        return len(self._slot_start) - 1

    @property
    def word_count(self) -> int:
        """The number of distinct words held."""
        return len(self._folded)

    def search(
        self,
        query: str,
        *,
        prefix: bool = False,
        threshold: float | None = None,
        limit: int | None = None,
        skip: Container[int] | None = None,
    ) -> list[tuple[int, float]]:
        """(rank, score) pairs as ``FuzzyMatcher.search`` gives; ranks in ``skip`` are left out.

        ``skip`` (the contacts changed since the base was made, say) does
        not count against ``limit``.
        """
        return self._search(query, prefix, threshold, limit, () if skip is None else skip)

    def _owners_of(self, slot: int) -> array[int]:
        start = self._owner_start
        return self._owners[start[slot] : start[slot + 1]]

    def _slots_of(self, key: int) -> array[int]:
        start = self._slot_start
        return self._slots[start[key] : start[key + 1]]

    # -- byte form ---------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The byte form ``from_bytes`` reads.

        Layout (integers unsigned 32-bit little-endian): a header of magic
        ``DGFZ``, ranks n, words w, (rank, word) pairs p and text bytes t;
        then the arrays owner_start (w + 1), owners (p), slot_start (n + 1)
        and slots (p); then t bytes of UTF-8: the w sound forms and then the
        w folded words, joined by newlines.
        """
        text = _SEPARATOR.join(chain(self._sounds, self._folded)).encode("utf-8")
        arrays = [self._owner_start, self._owners, self._slot_start, self._slots]
        if sys.byteorder == "big":  # pragma: no cover - little-endian machines only here
            arrays = [array("I", a) for a in arrays]
            for a in arrays:
                a.byteswap()
        header = _HEADER.pack(_MAGIC, len(self), self.word_count, len(self._owners), len(text))
        return b"".join([header, *(a.tobytes() for a in arrays), text])

    @classmethod
    def from_bytes(cls, data: bytes | memoryview, threshold: float = 80, limit: int = 50) -> FrozenFuzzy:
        """The matcher ``to_bytes`` wrote; ValueError if ``data`` is not one."""
        view = memoryview(data).cast("B")
        if len(view) < _HEADER.size:
            raise ValueError(f"fuzzy index: {len(view)} bytes, shorter than its header")
        magic, ranks, width, pairs, text_size = _HEADER.unpack_from(view)
        if magic != _MAGIC:
            raise ValueError(f"fuzzy index: magic {magic!r}, not {_MAGIC!r}")
        lengths = (width + 1, pairs, ranks + 1, pairs)
        expected = _HEADER.size + 4 * sum(lengths) + text_size
        if len(view) != expected:
            raise ValueError(f"fuzzy index: {len(view)} bytes where its header says {expected}")
        arrays = []
        offset = _HEADER.size
        for length in lengths:
            a = array("I")
            a.frombytes(view[offset : offset + 4 * length])
            if sys.byteorder == "big":  # pragma: no cover - little-endian machines only here
                a.byteswap()
            arrays.append(a)
            offset += 4 * length
        owner_start, owners, slot_start, slots = arrays
        _check_starts(owner_start, pairs, "owner_start")
        _check_starts(slot_start, pairs, "slot_start")
        if owners and max(owners) >= ranks:
            raise ValueError(f"fuzzy index: an owner beyond the {ranks} ranks")
        if slots and max(slots) >= width:
            raise ValueError(f"fuzzy index: a slot beyond the {width} words")
        try:
            text = str(view[offset:], "utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"fuzzy index: words not UTF-8 ({e})") from None
        parts = text.split(_SEPARATOR) if width else []
        if len(parts) != 2 * width or not all(parts):
            raise ValueError(f"fuzzy index: the text does not hold 2 x {width} words")
        return cls(parts[:width], parts[width:], owner_start, owners, slot_start, slots, threshold, limit)


def _owners_by_slot(slot_start: array[int], slots: array[int], width: int) -> tuple[array[int], array[int]]:
    """(owner_start, owners) of ``width`` slots from the slots per rank; ranks ascending per slot."""
    counts = [0] * width
    for slot in slots:
        counts[slot] += 1
    owner_start = array("I", [0])
    owner_start.extend(accumulate(counts))
    free = owner_start.tolist()  # per slot: where its next owner goes
    owners = array("I", bytes(4 * len(slots)))
    for rank in range(len(slot_start) - 1):
        for slot in slots[slot_start[rank] : slot_start[rank + 1]]:
            owners[free[slot]] = rank
            free[slot] += 1
    return owner_start, owners


def _repacked(strings: list[str]) -> list[str]:
    """Copies of ``strings`` made one after another (adjacent in memory)."""
    return _SEPARATOR.join(strings).split(_SEPARATOR) if strings else []


def _check_starts(starts: array[int], total: int, name: str) -> None:
    """ValueError unless ``starts`` runs from 0 to ``total`` without stepping back."""
    if starts[0] != 0 or starts[-1] != total or not all(map(operator.le, starts, islice(starts, 1, None))):
        raise ValueError(f"fuzzy index: {name} does not run from 0 up to {total}")


def _query_words(query: str) -> list[str]:
    """The words of a query; one-letter words only count when there is nothing else."""
    found = words(query)
    return [w for w in found if len(w) >= 2] or found


def _word_score(word: str, wanted: str, stored: str, stored_sound: str, prefix: bool) -> tuple[float, float]:
    """(score, tie-break) of a query word (and its sound form) against one stored word."""
    target = stored[: len(word)] if prefix else stored
    if target == word:
        return 100.0, 100.0
    if not wanted:
        return 0.0, 0.0
    s = stored_sound[: len(wanted)] if prefix else stored_sound
    return min(fuzz.ratio(wanted, s), 99.0), fuzz.ratio(word, target)


# -- benchmark --------------------------------------------------------------------

_GIVEN = (
    "Anna Hans Peter Maria Thomas Andreas Michael Stefan Sabine Petra Monika Klaus Jürgen Uwe "
    "Katrin Julia Lukas Leon Finn Jonas Emma Mia Sophie Lena Laura Lea Paul Felix Max Ben Elias "
    "Noah Luis Tim David Jan Niklas Tobias Simon Philipp Sebastian Daniel Alexander Christian "
    "Markus Martin Frank Bernd Ralf Dirk Jörg Sven Björn Ute Heike Silke Birgit Gabriele Renate"
).split()
_SURNAMES = (
    "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch "
    "Bauer Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hofmann Hartmann "
    "Lange Schmitt Werner Schmitz Krause Meier Lehmann Schmid Schulze Maier Köhler Herrmann König "
    "Walter Mayer Huber Kaiser Fuchs Peters Lang Scholz Möller Weiß Jung Hahn Schubert Vogel"
).split()
_SYLLABLES = (
    "ber berg bach brand dorf el er feld gart hau hei hof horn ka kel ker kirch land lin mann mar "
    "mei mül ner ring ro sa schul stein stra ta ter tho wald wei win zel zim au li no ge "
    "bo da fi gu jo ku lo mi nu pe ri su to vi wo ze ha ne ki lu ma re si tu"
).split()


def _bench_names(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    names = []
    for i in range(n):
        if i % 5 == 0:
            surname = rng.choice(_SURNAMES)
        else:
            surname = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(3, 4))).capitalize()
        names.append(f"{rng.choice(_GIVEN)} {surname}")
    return names


_BENCH_QUERIES = {
    "word": ("Maier", False),
    "word_miss": ("Xylophon", False),
    "two_words": ("Hans Schmit", False),
    "prefix": ("Schmi", True),
    "prefix_short": ("Mai", True),
}


def _search_times(matcher: FuzzyMatcher | FrozenFuzzy, rounds: int) -> dict[str, float]:
    """Median and max milliseconds of each of the ``_BENCH_QUERIES``."""
    result: dict[str, float] = {}
    matcher.search("warm up")
    for label, (query, prefix) in _BENCH_QUERIES.items():
        times = []
        for r in range(rounds):
            if prefix and r % 2 == 0:
                matcher._cut.clear()  # half of the rounds without the cut-choices cache
            start = time.perf_counter()
            matcher.search(query, prefix=prefix)
            times.append((time.perf_counter() - start) * 1000)
        result[f"{label}_median_ms"] = statistics.median(times)
        result[f"{label}_max_ms"] = max(times)
    return result


def bench(n: int = 100_000, rounds: int = 20) -> dict[str, float]:
    """Build a matcher over ``n`` synthetic names and time it; milliseconds unless noted.

    Run: ``python -c "from gateway.fuzzy import bench; print(bench())"``.
    """
    names = _bench_names(n)
    matcher = FuzzyMatcher(threshold=80, limit=50)
    start = time.perf_counter()
    for i, name in enumerate(names):
        matcher.add(i, name)
    build = time.perf_counter() - start
    result: dict[str, float] = {
        "names": float(n),
        "distinct_words": float(matcher.word_count),
        "build_s": build,
    }
    result.update(_search_times(matcher, rounds))
    start = time.perf_counter()
    for i in range(1000):
        matcher.remove(i)
        matcher.add(i, names[(i * 7919) % n])
    result["update_us_per_contact"] = (time.perf_counter() - start) / 1000 * 1e6
    return result


def bench_frozen(n: int = 1_000_000, rounds: int = 20) -> dict[str, float]:
    """Build a ``FrozenFuzzy`` over ``n`` synthetic names, write it, read it back and time its searches.

    Seconds for building and loading, milliseconds for searches (the same
    queries as ``bench``).  The searches run slower here than in a process
    that only loads (at 1M, 64 against 39 ms for a word): the loaded words
    fill the holes building left, scattered over the heap.  Run: ``python
    -c "from gateway.fuzzy import bench_frozen; print(bench_frozen())"``.
    """
    names = _bench_names(n)
    start = time.perf_counter()
    built = FrozenFuzzy.build(enumerate(names))
    build = time.perf_counter() - start
    start = time.perf_counter()
    data = built.to_bytes()
    write = time.perf_counter() - start
    start = time.perf_counter()
    matcher = FrozenFuzzy.from_bytes(data)
    load = time.perf_counter() - start
    del built
    result: dict[str, float] = {
        "names": float(n),
        "distinct_words": float(matcher.word_count),
        "build_s": build,
        "to_bytes_s": write,
        "bytes_per_rank": len(data) / n,
        "from_bytes_s": load,
    }
    result.update(_search_times(matcher, rounds))
    return result

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
"""

from __future__ import annotations

import random
import re
import statistics
import time
import unicodedata
from typing import Hashable, Iterable

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
    "bench",
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


# -- the matcher ----------------------------------------------------------------


class FuzzyMatcher:
    """Fuzzy search over the words of names, keyed by the caller's keys.

    ``threshold`` is the minimum score (0-100) and ``limit`` the maximum
    number of keys a search returns.  Not thread-safe; use it from one
    thread (the reactor's).
    """

    #: compact when at least this many slots are free and they outnumber the used ones,
    #: and repack when this many new words (or a quarter of the packed ones) were stored since
    COMPACT_MIN = 1024

    def __init__(self, threshold: float = 80, limit: int = 50) -> None:
        if not 0 <= threshold <= 100:
            raise ValueError("threshold must be between 0 and 100")
        if limit < 1:
            raise ValueError("limit must be positive")
        self.threshold = float(threshold)
        self.limit = limit
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
        # a text given twice (a contact's cn and displayName, say) has no words the first has not
        texts = (text,) if isinstance(text, str) else dict.fromkeys(text)
        found: dict[str, None] = {}
        for t in texts:
            found.update(dict.fromkeys(words(t)))
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
        threshold = self.threshold if threshold is None else float(threshold)
        limit = self.limit if limit is None else limit
        qwords = _query_words(query)
        if not qwords or limit < 1 or not self._slot:
            return []
        if len(qwords) == 1:
            out: list[tuple[Hashable, float]] = []
            seen: set[Hashable] = set()
            # words best first: a key's first appearance is its best word
            for score, _, slot in self._word_hits(qwords[0], prefix, threshold, max(4 * limit, 200)):
                for key in self._owners[slot] or ():
                    if key not in seen:
                        seen.add(key)
                        out.append((key, score))
                        if len(out) >= limit:
                            return out
            return out
        # several words: scan for the longest (most selective) word, then check the others
        # per candidate, or with a scan of their own when there are many candidates
        primary = max(range(len(qwords)), key=lambda i: len(qwords[i]))
        max_words = max(50 * limit, 2000)
        candidates: dict[Hashable, tuple[float, float]] = {}
        for score, tie, slot in self._word_hits(qwords[primary], prefix, threshold, max_words):
            for key in self._owners[slot] or ():
                if key not in candidates:
                    candidates[key] = (score, tie)
        scanned: list[dict[int, tuple[float, float]] | None] = []
        others = [w for i, w in enumerate(qwords) if i != primary]
        for word in others:
            if len(candidates) > 256:
                scanned.append({slot: (sc, tie) for sc, tie, slot in self._word_hits(word, prefix, threshold, max_words)})
            else:
                scanned.append(None)
        sounds_of = [sound(w) for w in others]
        slot_of = self._slot
        stored_sounds = self._sounds
        combined: list[tuple[Hashable, float, float]] = []
        for key, (total, ties) in candidates.items():
            name_words = self._words_of[key]
            for word, wanted, hits in zip(others, sounds_of, scanned):
                if hits is not None:
                    score, tie = max(hits.get(slot_of[w], (0.0, 0.0)) for w in name_words)
                else:
                    score, tie = max(
                        _word_score(word, wanted, w, stored_sounds[slot_of[w]] or "", prefix) for w in name_words
                    )
                if score < threshold or score <= 0:
                    break
                total += score
                ties += tie
            else:
                combined.append((key, total / len(qwords), ties))
        combined.sort(key=lambda t: (-t[1], -t[2]))
        return [(key, score) for key, score, _ in combined[:limit]]

    def _choices(self, prefix: bool, length: int) -> list[str | None]:
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
    queries = {
        "word": ("Maier", False),
        "word_miss": ("Xylophon", False),
        "two_words": ("Hans Schmit", False),
        "prefix": ("Schmi", True),
        "prefix_short": ("Mai", True),
    }
    matcher.search("warm up")
    for label, (query, prefix) in queries.items():
        times = []
        for r in range(rounds):
            if prefix and r % 2 == 0:
                matcher._cut.clear()  # half of the rounds without the cut-choices cache
            start = time.perf_counter()
            matcher.search(query, prefix=prefix)
            times.append((time.perf_counter() - start) * 1000)
        result[f"{label}_median_ms"] = statistics.median(times)
        result[f"{label}_max_ms"] = max(times)
    start = time.perf_counter()
    for i in range(1000):
        matcher.remove(i)
        matcher.add(i, names[(i * 7919) % n])
    result["update_us_per_contact"] = (time.perf_counter() - start) / 1000 * 1e6
    return result

"""The read-only fuzzy matcher over ranks: same answers as FuzzyMatcher, and its byte form."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway import fuzzy
from gateway.fuzzy import FrozenFuzzy, FuzzyMatcher

_GIVEN = ["Hans", "Anna", "Jürgen", "Jörg", "Björn", "Maria", "Lena", "Uwe", "Hanna"]
_SURNAMES = ["Müller", "Mueller", "Muller", "Möller", "Meier", "Maier", "Mayer", "Schmidt", "Schmitt",
             "Schröder", "Schroeder", "Weiß", "Weiss", "Köhler", "Koehler", "Lang", "Lange", "Baur", "Bauer"]
_KNOWN = st.sampled_from(_GIVEN + _SURNAMES)
_WORD = st.one_of(_KNOWN, _KNOWN, _KNOWN, st.text(alphabet="aeiouäöüßmnlrschky", min_size=1, max_size=7))
_NAME = st.lists(_WORD, min_size=1, max_size=3).map(" ".join)
# what FuzzyMatcher.add takes: one name, several (a cn and a displayName), or none
_TEXTS = st.one_of(_NAME, st.lists(st.one_of(_NAME, st.just("")), max_size=2))
_QUERY = st.one_of(
    _WORD,
    st.lists(_WORD, min_size=2, max_size=3).map(" ".join),
    st.sampled_from(["", "-", "M", "Hans M", "mül", "schm"]),
)
_SETTINGS = st.tuples(st.booleans(), st.sampled_from([0, 50, 60, 80, 90, 99, 100]), st.sampled_from([1, 2, 3, 1000]))


def _both(entries: list[tuple[int, str | list[str]]], ranks: int) -> tuple[FuzzyMatcher, FrozenFuzzy]:
    """A FuzzyMatcher given ``entries`` in ascending key order, and the same as a FrozenFuzzy via bytes."""
    matcher = FuzzyMatcher(threshold=80, limit=1000)
    for rank, texts in entries:
        matcher.add(rank, texts)
    frozen = FrozenFuzzy.from_bytes(FrozenFuzzy.build(entries, size=ranks).to_bytes(), threshold=80, limit=1000)
    return matcher, frozen


def _entries(draw_texts: list[str | list[str] | None]) -> list[tuple[int, str | list[str]]]:
    """(rank, texts) for the ranks whose texts are not None (the others are gaps)."""
    return [(rank, texts) for rank, texts in enumerate(draw_texts) if texts is not None]


# -- the same answers ---------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.one_of(_TEXTS, st.none()), min_size=1, max_size=8),
    st.lists(st.tuples(_QUERY, _SETTINGS), min_size=1, max_size=4),
    st.sets(st.integers(0, 7), max_size=3),
)
# equal scores and tie-breaks on different words: the order of the words decides
@example(["Maier", "Mayer", "Meyer Lang"], [("Meier", (False, 80, 1000)), ("Meier Lang", (False, 80, 1))], {0})
def test_same_answers_in_the_same_order(all_texts, queries, skip):
    """Up to 8 ranks: exactly FuzzyMatcher's list, order and cut at the limit included, and with skip.

    A set of ints below 8 iterates in ascending order, so FuzzyMatcher
    then lists the owners of one word ascending, as FrozenFuzzy does.
    """
    entries = _entries(all_texts)
    matcher, frozen = _both(entries, len(all_texts))
    assert len(frozen) == len(all_texts)
    assert frozen.word_count == matcher.word_count
    for query, (prefix, threshold, limit) in queries:
        assert frozen.search(query, prefix=prefix, threshold=threshold, limit=limit) == matcher.search(
            query, prefix=prefix, threshold=threshold, limit=limit
        )
    for key in skip:
        matcher.remove(key)
    for query, (prefix, threshold, limit) in queries:
        assert frozen.search(query, prefix=prefix, threshold=threshold, limit=limit, skip=skip) == matcher.search(
            query, prefix=prefix, threshold=threshold, limit=limit
        )


def _assert_same_up_to_ties(got, expected, everything):
    """``got`` and ``expected`` (results at some limit) agree but for which keys of equal score come first.

    FuzzyMatcher lists the owners of one word in the iteration order of a
    set of keys, which for ints of 8 or more is not ascending; FrozenFuzzy
    lists them ascending.  So among equal scores the order may differ, and
    with it which of them are cut at the limit.  ``everything`` is the
    unlimited result.
    """
    assert [s for _, s in got] == [s for _, s in expected]
    assert set(got) <= set(everything)
    if got:
        last = got[-1][1]
        assert {p for p in got if p[1] > last} == {p for p in expected if p[1] > last}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(_TEXTS, st.none()), min_size=9, max_size=40),
    st.lists(st.tuples(_QUERY, _SETTINGS), min_size=1, max_size=4),
    st.sets(st.integers(0, 39), max_size=8),
)
def test_same_answers_for_more_ranks(all_texts, queries, skip):
    """More ranks: the same (rank, score) pairs and scores in the same order; ties may be ordered otherwise."""
    entries = _entries(all_texts)
    matcher, frozen = _both(entries, len(all_texts))
    for phase in ("all", "skip"):
        if phase == "skip":
            for key in skip:
                matcher.remove(key)
        left_out = skip if phase == "skip" else None
        for query, (prefix, threshold, limit) in queries:
            everything = matcher.search(query, prefix=prefix, threshold=threshold, limit=1000)
            unlimited = frozen.search(query, prefix=prefix, threshold=threshold, limit=1000, skip=left_out)
            assert sorted(unlimited, key=lambda p: (-p[1], p[0])) == sorted(everything, key=lambda p: (-p[1], p[0]))
            _assert_same_up_to_ties(
                frozen.search(query, prefix=prefix, threshold=threshold, limit=limit, skip=left_out),
                matcher.search(query, prefix=prefix, threshold=threshold, limit=limit),
                everything,
            )


@pytest.mark.parametrize("query", ["hans meier", "anna schmit", "maier weber lang", "mül fisher"])
@pytest.mark.parametrize("prefix_mode", [False, True])
def test_many_candidates(query, prefix_mode):
    """Over 256 candidates (the other words are scanned, not checked one by one): same answers, with skip too."""
    pool = ["meier", "maier", "mayer", "müller", "mueller", "schmidt", "schmit", "hans", "anna", "weber",
            "wagner", "lang", "lange", "klein", "schulz", "bauer", "baur", "hoffmann", "fischer", "fisher"]
    rng = random.Random(3)
    entries = [(i, " ".join(rng.sample(pool, 3))) for i in range(1500)]
    matcher, frozen = _both(entries, len(entries))
    longest = max(query.split(), key=len)
    assert len(frozen.search(longest, prefix=prefix_mode, limit=1000)) > 256  # that many candidates
    by_score = lambda results: sorted(results, key=lambda p: (-p[1], p[0]))  # noqa: E731 - see _assert_same_up_to_ties
    assert by_score(frozen.search(query, prefix=prefix_mode)) == by_score(matcher.search(query, prefix=prefix_mode))
    skip = set(range(0, 1500, 3))
    for key in skip:
        matcher.remove(key)
    assert by_score(frozen.search(query, prefix=prefix_mode, skip=skip)) == by_score(
        matcher.search(query, prefix=prefix_mode)
    )


def test_skipped_ranks_do_not_count_against_the_limit():
    """With the first owners of the best word skipped, the limit is still filled from the others."""
    frozen = FrozenFuzzy.build([(0, "Hans Meier"), (1, "Eva Meier"), (2, "Max Meier"), (3, "Ute Meyer")])
    assert frozen.search("meier", limit=2) == [(0, 100.0), (1, 100.0)]
    assert frozen.search("meier", limit=2, skip={0, 1}) == [(2, 100.0), (3, 99.0)]
    assert frozen.search("max meier", limit=1, skip={2}) == []


def test_build_gaps_size_and_order():
    """Ranks not given have no words; size sets the number of ranks; ranks must ascend."""
    frozen = FrozenFuzzy.build([(1, "Hans Meier"), (4, ["Eva Lang", "Eva Lang"])], size=7)
    assert len(frozen) == 7 and frozen.word_count == 4
    assert frozen.search("eva lang") == [(4, 100.0)]
    assert len(FrozenFuzzy.build([(2, "Hans")])) == 3
    assert len(FrozenFuzzy.build([])) == 0 and FrozenFuzzy.build([]).search("Hans") == []
    with pytest.raises(ValueError):
        FrozenFuzzy.build([(1, "Hans"), (1, "Eva")])
    with pytest.raises(ValueError):
        FrozenFuzzy.build([(-1, "Hans")])
    with pytest.raises(ValueError):
        FrozenFuzzy.build([(4, "Hans")], size=4)
    with pytest.raises(ValueError):
        FrozenFuzzy.build([], threshold=101)


def test_score_is_fuzzy_matchers():
    """score() needs no index and gives what FuzzyMatcher.score gives."""
    frozen = FrozenFuzzy.build([(0, "Hans Meier")])
    assert frozen.score("maier hans", "Hans Meier") == FuzzyMatcher().score("maier hans", "Hans Meier") == 99.5
    assert frozen.score("mül", ["Karl Müller"], prefix=True) == 100.0


# -- the byte form ------------------------------------------------------------------


def _sample() -> bytes:
    return FrozenFuzzy.build([(0, "Hans Meier"), (1, "Jürgen Weiß"), (3, ["Anna Müller", "Buchhaltung"])]).to_bytes()


def test_round_trip_keeps_everything():
    """from_bytes(to_bytes()) writes the same bytes again; a memoryview is read as well as bytes."""
    data = _sample()
    again = FrozenFuzzy.from_bytes(memoryview(bytearray(b"xx" + data))[2:])
    assert again.to_bytes() == data
    assert len(again) == 4 and again.word_count == 7
    assert again.search("weiss") == [(1, 100.0)]
    assert FrozenFuzzy.from_bytes(FrozenFuzzy.build([]).to_bytes()).search("x") == []


def test_every_truncation_is_refused():
    """Bytes cut anywhere, or with a byte more, are a ValueError."""
    data = _sample()
    for cut in range(len(data)):
        with pytest.raises(ValueError):
            FrozenFuzzy.from_bytes(data[:cut])
    with pytest.raises(ValueError):
        FrozenFuzzy.from_bytes(data + b"\n")
    with pytest.raises(ValueError):
        FrozenFuzzy.from_bytes(data + b"x")


def _patched(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<I", value) + data[offset + 4 :]


def test_inconsistent_parts_are_refused():
    """Wrong magic, counts, offsets, ranks, slots or text are a ValueError naming the problem."""
    data = _sample()
    ranks, width, pairs, text_size = struct.unpack_from("<IIII", data, 4)
    owners_at = 20 + 4 * (width + 1)
    slot_start_at = owners_at + 4 * pairs
    slots_at = slot_start_at + 4 * (ranks + 1)
    text_at = slots_at + 4 * pairs
    cases = {
        "magic": b"XXXX" + data[4:],
        "a slot beyond": _patched(data, slots_at, width),
        "an owner beyond": _patched(data, owners_at, ranks),
        "owner_start": _patched(data, 20 + 4, 1000),
        "slot_start": _patched(data, slot_start_at + 4, pairs + 1),
        "not UTF-8": data[:text_at] + b"\xff" + data[text_at + 1 :],
        "2 x": data[:text_at] + b"\n" + data[text_at + 1 :],
        "header says": _patched(data, 8, width + 1),
    }
    for message, bad in cases.items():
        with pytest.raises(ValueError, match=message):
            FrozenFuzzy.from_bytes(bad)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_is_refused(garbage):
    """Random bytes, with or without the magic in front, are a ValueError."""
    for data in (garbage, b"DGFZ" + garbage):
        with pytest.raises(ValueError):
            FrozenFuzzy.from_bytes(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_changed_byte_is_refused_or_harmless(data):
    """A byte changed anywhere is refused, or gives a matcher whose searches still answer."""
    blob = bytearray(_sample())
    at = data.draw(st.integers(0, len(blob) - 1))
    blob[at] = data.draw(st.integers(0, 255))
    try:
        frozen = FrozenFuzzy.from_bytes(bytes(blob))
    except ValueError:
        return
    for query in ("hans meier", "weiss", "mül", "buchhaltung anna"):
        frozen.search(query, threshold=0, limit=1000)
        frozen.search(query, prefix=True, threshold=0, limit=1000, skip={1})


# -- benchmark (prints, does not assert on time) -------------------------------------------


def test_benchmark_frozen_50k(capsys):
    """The base's numbers at a small size (the 1M figures come from bench_frozen() by hand)."""
    numbers = fuzzy.bench_frozen(50_000, rounds=3)
    with capsys.disabled():
        print(
            "\n[frozen fuzzy] {names:.0f} names, {distinct_words:.0f} words: built in {build_s:.2f} s, "
            "{bytes_per_rank:.1f} bytes per rank, loaded in {from_bytes_s:.3f} s; search median ms: "
            "word {word_median_ms:.1f}, two words {two_words_median_ms:.1f}, prefix {prefix_median_ms:.1f}".format(
                **numbers
            )
        )
    assert numbers["bytes_per_rank"] < 100

"""Umlaut variants and fuzzy name search."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import fuzzy
from gateway.fuzzy import (
    FuzzyMatcher,
    expand_umlauts,
    fold_variants,
    index_variants,
    query_variants,
    reduce_transcriptions,
    sound,
    words,
)
from gateway.text import fold


def equal(query: str, name: str) -> bool:
    """Equality as the index does it: a query variant equals a stored variant."""
    return bool(set(query_variants(query)) & set(index_variants(name)))


def prefix(query: str, name: str) -> bool:
    return any(v.startswith(q) for q in query_variants(query) for v in index_variants(name))


# -- variants -----------------------------------------------------------------------


@pytest.mark.parametrize("query", ["Müller", "Mueller", "Muller", "MÜLLER", "mueller", "Mu\u0308ller"])
def test_every_spelling_finds_mueller_with_umlaut(query):
    assert equal(query, "Müller")


@pytest.mark.parametrize("query", ["Müller", "Mueller", "Muller"])
def test_every_spelling_finds_a_transcribed_name(query):
    assert equal(query, "Mueller")


def test_ue_in_a_query_is_never_taken_for_an_umlaut():
    assert equal("Müller", "Muller") and equal("Muller", "Muller")
    assert not equal("Mueller", "Muller")


@pytest.mark.parametrize(
    "query, name",
    [
        ("Strasse", "Straße"),
        ("Straße", "Strasse"),
        ("STRASSE", "Straße"),
        ("Goethe", "Göthe"),
        ("Göthe", "Goethe"),
        ("Gothe", "Goethe"),
        ("Baecker", "Bäcker"),
        ("Schroeder", "Schröder"),
        ("Soeren", "Søren"),
        ("Soren", "Søren"),
        ("Aalborg", "Ålborg"),
        ("Uebel", "Übel"),
    ],
)
def test_transcriptions_meet(query, name):
    assert equal(query, name)


@pytest.mark.parametrize(
    "query, name",
    [
        ("Mue", "Müller"),
        ("Mue", "Mueller"),
        ("Mül", "Mueller"),
        ("Mul", "Mueller"),
        ("Mul", "Müller"),
        ("Stras", "Straße"),
        ("Straß", "Strasse"),
        ("Schroe", "Schröder"),
    ],
)
def test_prefixes_meet(query, name):
    assert prefix(query, name)


@pytest.mark.parametrize(
    "query, name",
    [
        ("Mue", "Mustermann"),  # the query side is never reduced
        ("Sue", "Sunder"),
        ("Mueller", "Mulder"),
        ("Bauer", "Baur"),
    ],
)
def test_no_widening(query, name):
    assert not prefix(query, name)
    assert not equal(query, name)


def test_which_digraphs_are_reduced():
    assert reduce_transcriptions("mueller") == "muller"
    assert reduce_transcriptions("uebel") == "ubel"
    assert reduce_transcriptions("bauer") == "bauer"  # after a vowel
    assert reduce_transcriptions("neuer") == "neuer"
    assert reduce_transcriptions("quelle") == "quelle"  # after q
    assert reduce_transcriptions("manuel") == "manul"  # the documented price
    assert index_variants("Michael") == ("michael", "michal")
    assert query_variants("Michael") == ("michael",)


def test_variant_shapes():
    assert index_variants("Hans Meier") == ("hans meier",)
    assert query_variants("Hans Meier") == ("hans meier",)
    assert index_variants("Müller") == ("muller", "mueller")
    assert index_variants("Mueller") == ("mueller", "muller")
    assert fold_variants("Mueller") == index_variants("Mueller")
    assert fold_variants("Mueller", query=True) == query_variants("Mueller")
    assert expand_umlauts("Jürgen Größe") == "Juergen Groeße"  # ß is fold's business
    assert expand_umlauts("plain") == "plain"


_NAMES = st.text(alphabet="abcdeiouqsyäöüßÄÖÜøåAOUMNQ -", max_size=20)


@given(_NAMES)
def test_fold_comes_first_and_query_variants_are_index_variants(name):
    assert index_variants(name)[0] == fold(name) == query_variants(name)[0]
    assert set(query_variants(name)) <= set(index_variants(name))
    assert equal(name, name)


@given(_NAMES, st.integers(0, 20))
def test_every_typed_prefix_finds_the_name(name, k):
    assert prefix(name[:k], name)


@given(st.text(max_size=30))
def test_variants_never_raise(text):
    assert index_variants(text)
    assert query_variants(text)


# -- sound forms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "group",
    [
        ["maier", "meier", "mayer", "meyer"],
        ["schmidt", "schmitt", "schmid", "schmit"],
        ["muller", "mueller"],
        ["hoffmann", "hofmann", "hofman"],
        ["lehmann", "lemann"],
        ["carl", "karl"],
        ["schulz", "schultz"],
    ],
)
def test_sound_groups(group):
    assert len({sound(w) for w in group}) == 1


def test_words():
    assert words("O'Brien-Müller, Hans") == ["obrien", "muller", "hans"]
    assert words("  ") == []


# -- the matcher -----------------------------------------------------------------------


PEOPLE = {
    1: "Hans Meier",
    2: "Anna Schmidt",
    3: "Karl Müller",
    4: "Petra Mayer",
    5: "Jürgen Schneider",
    6: "Klaus Mueller",
    7: "Maria Weber",
    8: "Meier GmbH",
}


@pytest.fixture
def matcher():
    m = FuzzyMatcher(threshold=80, limit=50)
    for key, name in PEOPLE.items():
        m.add(key, name)
    return m


def keys(results):
    return [k for k, _ in results]


def test_maier_finds_meier_and_mayer(matcher):
    found = dict(matcher.search("Maier"))
    assert {1, 4, 8} <= set(found)
    assert 3 not in found and 6 not in found


def test_schmit_finds_schmidt(matcher):
    assert keys(matcher.search("Schmit")) == [2]
    assert keys(matcher.search("schmitt")) == [2]


def test_meier_does_not_find_mueller(matcher):
    found = keys(matcher.search("Meier"))
    assert 3 not in found and 6 not in found
    assert set(found) == {1, 4, 8}


def test_same_spelling_ranks_first(matcher):
    results = matcher.search("Meier")
    assert results[0][1] == 100.0 and results[1][1] == 100.0
    assert set(keys(results[:2])) == {1, 8}
    assert results[2] == (4, 99.0)


def test_muller_finds_both_spellings(matcher):
    assert set(keys(matcher.search("Muller"))) == {3, 6}
    assert set(keys(matcher.search("Müller"))) == {3, 6}


def test_token_level_and_several_words(matcher):
    assert keys(matcher.search("hans maier")) == [1]
    assert keys(matcher.search("maier hans")) == [1]
    assert matcher.search("hans schmit") == []  # every word must match
    assert keys(matcher.search("Anna S")) == [2]  # one-letter words are ignored when others exist


def test_prefix_mode(matcher):
    assert set(keys(matcher.search("maie", prefix=True))) == {1, 4, 8}
    assert keys(matcher.search("schmi", prefix=True)) == [2]
    assert keys(matcher.search("mül", prefix=True))[:2] in ([3, 6], [6, 3])
    assert matcher.search("maie") != matcher.search("maie", prefix=True)


def test_threshold_and_limit(matcher):
    assert matcher.search("Meier", threshold=100) == [(1, 100.0), (8, 100.0)] or matcher.search(
        "Meier", threshold=100
    ) == [(8, 100.0), (1, 100.0)]
    assert len(matcher.search("Meier", limit=1)) == 1
    strict = FuzzyMatcher(threshold=95)
    strict.add(1, "Meister")
    assert strict.search("Meier") == []
    with pytest.raises(ValueError):
        FuzzyMatcher(threshold=101)
    with pytest.raises(ValueError):
        FuzzyMatcher(limit=0)


def test_empty_queries(matcher):
    assert matcher.search("") == []
    assert matcher.search("  -- ") == []
    assert FuzzyMatcher().search("Meier") == []


def test_remove_and_replace(matcher):
    assert matcher.remove(1)
    assert not matcher.remove(1)
    assert 1 not in matcher
    assert set(keys(matcher.search("Meier"))) == {4, 8}
    matcher.add(4, "Petra Schulz")  # replaces the old name
    assert set(keys(matcher.search("Meier"))) == {8}
    assert keys(matcher.search("Schultz")) == [4]
    assert len(matcher) == 7


def test_several_texts_per_key():
    m = FuzzyMatcher()
    m.add("k", ["Hans Meier", "Buchhaltung"])
    assert keys(m.search("buchhaltng")) == ["k"]
    assert keys(m.search("hans meier")) == ["k"]


def test_words_are_shared_and_freed():
    m = FuzzyMatcher()
    m.add(1, "Hans Meier")
    m.add(2, "Hans Schulz")
    assert m.word_count == 3
    m.remove(1)
    assert m.word_count == 2
    m.add(3, "Eva Lang")
    assert m.word_count == 4
    assert len(m._sounds) == 4  # the freed slot was reused


def test_compaction_keeps_results(monkeypatch):
    monkeypatch.setattr(FuzzyMatcher, "COMPACT_MIN", 4)
    m = FuzzyMatcher()
    for i in range(40):
        m.add(i, f"Person{i} Meier{i}")
    for i in range(35):
        m.remove(i)
    assert len(m._sounds) < 40
    assert keys(m.search("meier38"))[0] == 38
    assert keys(m.search("meier38", threshold=100)) == [38]
    assert m.search("person", threshold=100) == []
    assert set(keys(m.search("person3", prefix=True))) >= {35, 36, 37, 38, 39}


# -- search agrees with score() (model-based) ---------------------------------------------

_WORDS = ["meier", "maier", "mayer", "müller", "mueller", "schmidt", "schmit", "hans", "anna", "weber", "wagner",
          "lang", "lange", "klein", "schulz", "bauer", "baur", "hoffmann", "fischer", "fisher"]
_NAME = st.lists(st.sampled_from(_WORDS), min_size=1, max_size=3).map(" ".join)
_ACTIONS = st.lists(st.tuples(st.booleans(), st.integers(0, 12), _NAME), max_size=40)


@settings(max_examples=60, deadline=None)
@given(_ACTIONS, st.lists(st.sampled_from(_WORDS), min_size=1, max_size=2).map(" ".join), st.booleans(),
       st.sampled_from([60, 80, 90, 100]))
def test_search_agrees_with_score(actions, query, prefix_mode, threshold):
    m = FuzzyMatcher(threshold=threshold, limit=1000)
    model: dict[int, str] = {}
    for add, key, name in actions:
        if add:
            m.add(key, name)
            model[key] = name
        else:
            assert m.remove(key) == (key in model)
            model.pop(key, None)
    results = m.search(query, prefix=prefix_mode)
    expected = {k: m.score(query, name, prefix=prefix_mode) for k, name in model.items()}
    expected = {k: s for k, s in expected.items() if s >= threshold and s > 0}
    assert set(keys(results)) == set(expected)
    for k, s in results:
        assert s == pytest.approx(expected[k])
    scores = [s for _, s in results]
    assert scores == sorted(scores, reverse=True)


# -- benchmark (prints, does not assert on time) -------------------------------------------


def test_benchmark_100k(capsys):
    numbers = fuzzy.bench(100_000, rounds=5)
    with capsys.disabled():
        print(
            "\n[fuzzy] {names:.0f} names, {distinct_words:.0f} distinct words, built in {build_s:.2f} s; "
            "search median/max ms: word {word_median_ms:.1f}/{word_max_ms:.1f}, "
            "miss {word_miss_median_ms:.1f}/{word_miss_max_ms:.1f}, "
            "two words {two_words_median_ms:.1f}/{two_words_max_ms:.1f}, "
            "prefix {prefix_median_ms:.1f}/{prefix_max_ms:.1f}, "
            "short prefix {prefix_short_median_ms:.1f}/{prefix_short_max_ms:.1f}; "
            "update {update_us_per_contact:.1f} us per contact".format(**numbers)
        )
    assert numbers["distinct_words"] > 50_000


@pytest.mark.parametrize("query", ["hans meier", "anna schmit", "maier weber lang", "mül fisher"])
@pytest.mark.parametrize("prefix_mode", [False, True])
def test_many_candidates_agree_with_score(query, prefix_mode):
    """Over 256 candidates the other words are scanned, not checked one by one: same answers."""
    import random

    rng = random.Random(3)
    m = FuzzyMatcher(threshold=80, limit=5000)
    model = {}
    for i in range(1500):
        name = " ".join(rng.sample(_WORDS, 3))
        m.add(i, name)
        model[i] = name
    results = dict(m.search(query, prefix=prefix_mode))
    expected = {k: m.score(query, n, prefix=prefix_mode) for k, n in model.items()}
    expected = {k: s for k, s in expected.items() if s > 0}
    longest = max(query.split(), key=len)
    assert len(m.search(longest, prefix=prefix_mode)) > 256  # that many candidates
    assert set(results) == set(expected)
    assert all(results[k] == pytest.approx(s) for k, s in expected.items())

"""Answering a search from the index: plan, evaluate, limit, select. Pure.

The planner turns the indexable parts of a filter (equality and prefix on
names and numbers) into candidate sets, so a caller-ID lookup probes the
number index instead of scanning every contact.  The filter is then
evaluated on the candidates in result order.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from operator import attrgetter
from typing import Callable, Iterable

from attrs import frozen

from gateway import numbers as N
from gateway.index import ALTERNATIVE, PHONE_BITS, VARIANT_ATTRIBUTES, ContactIndex, IndexedContact
from gateway.ldap import filter as F
from gateway.ldap.evaluate import AttributeView, evaluate
from gateway.ldap.messages import SCOPE_BASE, SCOPE_ONE, SearchRequest
from gateway.ldap.schema import (
    ALL_ATTRIBUTES,
    NAME_ATTRIBUTES,
    PHONE_ATTRIBUTES,
    canonical_attribute,
    normalize_dn,
)
from gateway.fuzzy import query_variants
from gateway.ldap.ber import encode_entry_body
from gateway.text import fold

__all__ = ["SearchSettings", "SearchResult", "ResultEntry", "QueryPhones", "Shape", "run_search", "ALTERNATIVE"]

RESULT_SUCCESS = 0
RESULT_TIME_LIMIT = 3
RESULT_SIZE_LIMIT = 4
RESULT_NO_SUCH_OBJECT = 32

_PHONES = frozenset(PHONE_ATTRIBUTES)
_NAMES = frozenset(NAME_ATTRIBUTES)


@frozen(cache_hash=True)
class SearchSettings:
    """Server-side settings a search obeys."""

    base_dn: str
    size_limit: int = 1000
    time_limit: float = 10.0
    numbers: N.NumberSettings = N.NumberSettings()
    proximity: bool = True
    max_extension_digits: int = 5
    proximity_marker: str = "~"
    answer_as_asked: bool = False
    duplicates: str = "all"  # caller ID across sources: "all" or "highest" priority only
    fuzzy_threshold: float = 80.0
    fuzzy_fallback: bool = False
    fuzzy_fallback_threshold: float = 80.0
    fuzzy_max_results: int = 20


@frozen
class ResultEntry:
    """One entry to send: DN and (attribute, values) in order."""

    dn: str
    attributes: tuple[tuple[str, tuple[str, ...]], ...]
    approximate: bool = False
    wire: bytes | None = None  # the encoded SearchResultEntry body, when cached


@frozen
class SearchResult:
    entries: tuple[ResultEntry, ...]
    result_code: int = RESULT_SUCCESS
    message: str = ""
    matched_dn: str = ""
    kind: str = "other"  # caller_id | name | other: for metrics


class QueryPhones:
    """Phone assertions of one search, read once and memoized."""

    def __init__(self, index: ContactIndex, settings: N.NumberSettings, fuzzy_threshold: float = 80.0) -> None:
        self._index = index
        self._settings = settings
        self._keys: dict[str, frozenset[str]] = {}
        self._patterns: dict[tuple, object] = {}
        self.asked: dict[str, str] = {}  # match key -> the form it was asked in
        self.fuzzy_threshold = fuzzy_threshold
        self.scores: dict[tuple, float] = {}  # contact key -> best fuzzy score, for ordering

    def fuzzy(self, query: str, values, prefix: bool = False, threshold: float | None = None, key=None) -> bool:
        """Approximate match of a name (``~=``, and the fuzzy fallback)."""
        score = self._index.fuzzy.score(query, list(values), prefix=prefix,
                                        threshold=self.fuzzy_threshold if threshold is None else threshold)
        if score and key is not None:
            self.scores[key] = max(score, self.scores.get(key, 0.0))
        return score > 0

    def readings(self, value: str) -> tuple[N.Reading, ...]:
        return dialled_readings(value, self._settings)

    def equality_keys(self, value: str) -> frozenset[str]:
        """The keys a phone assertion matches: the first reading that exists as a number, else the
        first that exists as another country's reading (tagged ``alt:``), else the bare digits of
        numbers that could not be normalized."""
        keys = self._keys.get(value)
        if keys is None:
            self.equality_key(value, *dialled_keys(value, self._settings))
            keys = self._keys[value]
        return keys

    def equality_key(self, value: str, candidates: tuple[str, ...], digits: str | None) -> str | None:
        """The one key of ``equality_keys(value)`` (None for none), given ``dialled_keys(value)``."""
        keys = self._keys.get(value)
        if keys is not None:
            return next(iter(keys), None)
        index = self._index
        chosen = index.first_number(candidates)
        if chosen is None:
            alternative = index.first_number(candidates, alternative=True)
            if alternative is not None:
                chosen = ALTERNATIVE + alternative
            elif digits and index.has_number(digits):
                chosen = digits
        if chosen is None:
            self._keys[value] = frozenset()
        else:
            self._keys[value] = frozenset((chosen,))
            self.asked.setdefault(chosen.removeprefix(ALTERNATIVE), value)
        return chosen

    def substring_patterns(self, initial, any_, final):
        k = (initial, any_, final)
        patterns = self._patterns.get(k)
        if patterns is None:
            patterns = self._patterns[k] = N.substring_patterns(initial, any_, final, self._settings)
        return patterns

    def substring_matches(self, patterns, number) -> bool:
        return N.substring_matches(patterns, number)

    def ordering_key(self, value: str) -> str:
        readings = self.readings(value)
        if readings:
            return readings[0].e164
        return "".join(ch for ch in value if ch.isdigit())


# -- planning ---------------------------------------------------------------


def fuzzy_rewrite(f: F.Filter, threshold: float) -> tuple[F.Filter, bool]:
    """The filter with equality and initial-substring items on names made approximate."""
    if isinstance(f, (F.And, F.Or)):
        items = [fuzzy_rewrite(i, threshold) for i in f.items]
        return type(f)(tuple(i for i, _ in items)), any(c for _, c in items)
    if isinstance(f, F.Equality) and _attr(f.attr) in _NAMES and _attr(f.attr) != "mail":
        return F.FuzzyName(f.attr, f.value, False, threshold), True
    if isinstance(f, F.Substrings) and f.initial and not f.any and not f.final and _attr(f.attr) in _NAMES:
        if len(f.initial) >= 3:
            return F.FuzzyName(f.attr, f.initial, True, threshold), True
    return f, False

_ALL = None  # a plan of "every contact"


def _attr(name: str) -> str | None:
    return canonical_attribute(name)


def plan(f: F.Filter, index: ContactIndex, phones: QueryPhones) -> set | None:
    """Candidate contact keys for ``f``, or None when it cannot use an index."""
    if isinstance(f, F.And):
        best = None
        for item in f.items:
            p = plan(item, index, phones)
            if p is not None and (best is None or len(p) < len(best)):
                best = p
        return best
    if isinstance(f, F.Or):
        out: set = set()
        for item in f.items:
            p = plan(item, index, phones)
            if p is None:
                if _never_matches(item):
                    continue
                return None
            out |= p
        return out
    if _is_fuzzy(f):
        value = f.value
        prefix = getattr(f, "prefix", False)
        threshold = getattr(f, "threshold", None) or phones.fuzzy_threshold
        return {k for k, _ in index.fuzzy.search(value, prefix=prefix, threshold=threshold, limit=1000)}
    if isinstance(f, F.Equality):
        attr = _attr(f.attr)
        if attr in _PHONES:
            out = set()
            for k in phones.equality_keys(f.value):
                if k.startswith(ALTERNATIVE):
                    out |= index.with_alternative(k[len(ALTERNATIVE):])
                else:
                    out |= index.with_number(k)
            return out
        if attr in _NAMES:
            out = set()
            for q in query_variants(f.value):
                out |= index.name_equal(attr, q)
            return out
        if attr == "uid":
            entry = index.by_uid(f.value)
            return {entry.key} if entry else set()
        return None
    if isinstance(f, F.Substrings) and f.initial:
        attr = _attr(f.attr)
        if attr in _NAMES:
            out = set()
            for q in query_variants(f.initial):
                out |= index.name_prefix(attr, q)
            return out
        if attr in _PHONES:
            patterns = phones.substring_patterns(f.initial, f.any, f.final)
            out = set()
            for initial, _, _ in patterns:
                if not initial:
                    return None
                out |= index.number_prefix(initial)
            return out
    return None


def _never_matches(f: F.Filter) -> bool:
    """Items that are Undefined for every contact (unknown attributes)."""
    if isinstance(f, (F.And, F.Or, F.Not, F.Extensible)):
        return False
    name = f.attr.split(";", 1)[0].strip().lower()
    return _attr(name) is None and name not in ("objectclass", "objectcategory")


def classify(f: F.Filter) -> str:
    """caller_id, name or other: what kind of lookup a filter is (for metrics and proximity)."""
    kinds = set()

    def walk(node: F.Filter) -> None:
        if isinstance(node, (F.And, F.Or)):
            for i in node.items:
                walk(i)
        elif isinstance(node, F.Not):
            kinds.add("other")
        elif isinstance(node, F.Present):
            return
        elif isinstance(node, F.Extensible):
            kinds.add("other")
        else:
            attr = _attr(node.attr)
            if attr in _PHONES and isinstance(node, F.Equality):
                kinds.add("caller_id")
            elif attr in _PHONES:
                kinds.add("number")
            elif attr in _NAMES:
                kinds.add("name")
            elif attr is None:
                return
            else:
                kinds.add("other")

    walk(f)
    if kinds == {"caller_id"}:
        return "caller_id"
    if kinds and kinds <= {"name"}:
        return "name"
    return "other"


def _phone_equalities(f: F.Filter) -> list[str]:
    out: list[str] = []
    if isinstance(f, (F.And, F.Or)):
        for i in f.items:
            out.extend(_phone_equalities(i))
    elif isinstance(f, F.Equality) and _attr(f.attr) in _PHONES:
        out.append(f.value)
    return out


class Shape:
    """What a search filter is, worked out once per filter (pure: no index, no settings).

    ``kind`` and ``fuzzy`` as ``classify`` and ``_has_fuzzy`` say; ``names`` the (attribute,
    folded value, is prefix) items when the name index alone answers the filter; ``phones``
    the (value, attribute bits) pairs when the filter is one phone equality or an OR of them (a
    caller-ID lookup; ``PHONE_BITS`` of the attributes asked for that value, values in the
    order they first occur), which the number index answers without evaluating the filter.
    """

    __slots__ = ("kind", "fuzzy", "names", "phones", "dialled", "_base", "_phone_keys")

    def __init__(self, f: F.Filter) -> None:
        self.kind = classify(f)
        self.fuzzy = _has_fuzzy(f)
        self.names = _name_items(f) if _answered_by_plan(f) else None
        self.phones = _phone_terms(f)
        #: the values of the filter's phone equalities, once each (for the proximity fallback)
        self.dialled = tuple(dict.fromkeys(_phone_equalities(f)))
        self._base: dict[SearchSettings, bool] = {}
        self._phone_keys: dict[N.NumberSettings, tuple] = {}

    def phone_keys(self, numbers: N.NumberSettings) -> tuple[tuple[str, int, tuple[str, ...], str | None], ...]:
        """(value, attribute bits, ``dialled_keys(value)``) for each of ``phones`` (remembered)."""
        keys = self._phone_keys.get(numbers)
        if keys is None:
            keys = self._phone_keys[numbers] = tuple(
                (value, bits, *dialled_keys(value, numbers)) for value, bits in self.phones or ())
        return keys

    def matches_base(self, f: F.Filter, settings: SearchSettings, phones: QueryPhones) -> bool:
        """Does the base DN's own entry match ``f``?  Remembered: that entry has no phone numbers
        and no contact data, so the answer depends on the filter and the settings alone."""
        hit = self._base.get(settings)
        if hit is None:
            view = base_entry(settings)
            hit = self._base[settings] = evaluate(f, AttributeView(view.attributes), phones) is True
        return hit


def _phone_terms(f: F.Filter) -> tuple[tuple[str, int], ...] | None:
    items = f.items if isinstance(f, F.Or) else (f,)
    bits: dict[str, int] = {}
    for item in items:
        if not isinstance(item, F.Equality):
            return None
        attr = _attr(item.attr)
        if attr not in _PHONES:
            return None
        bits[item.value] = bits.get(item.value, 0) | PHONE_BITS[attr]
    return tuple(bits.items()) or None


# -- attribute selection ----------------------------------------------------


def _selection(requested: Iterable[str]) -> tuple[tuple[str, str], ...] | None:
    """(canonical, name to answer with) pairs, or None for all user attributes."""
    last = _LAST_SELECTION
    if requested is last[0]:  # a prepared request again (phones ask the same attributes every time)
        return last[1]
    requested = tuple(requested)
    cached = _SELECTIONS.get(requested, _MISSING)
    if cached is _MISSING:
        cached = _selection_uncached(requested)
        if len(_SELECTIONS) > 1024:
            _SELECTIONS.clear()
        _SELECTIONS[requested] = cached
    last[:] = [requested, cached]
    return cached  # type: ignore[return-value]


#: The last (attributes asked, selection) of ``_selection``, compared by identity.
_LAST_SELECTION: list = [None, None]
_SELECTIONS: dict = {}
_MISSING = object()


def _selection_uncached(requested: tuple[str, ...]) -> tuple[tuple[str, str], ...] | None:
    if not requested:
        return None
    wanted: list[tuple[str, str]] = []
    seen: set[str] = set()
    everything = False
    for name in requested:
        if name == "*":
            everything = True
            continue
        if name in ("1.1", "+"):
            continue
        canon = canonical_attribute(name)
        if canon is None or canon in seen:
            continue
        seen.add(canon)
        wanted.append((canon, name.split(";", 1)[0]))
    if everything:
        extra = [(a, a) for a in ALL_ATTRIBUTES if a not in seen]
        return tuple(wanted + extra)
    return tuple(wanted)


_ALL_PAIRS = tuple((a, a) for a in ALL_ATTRIBUTES)


def _render(
    entry: IndexedContact,
    selection: tuple[tuple[str, str], ...] | None,
    settings: SearchSettings,
    index: ContactIndex,
    phones: QueryPhones,
    approximate: bool,
) -> ResultEntry:
    """The entry as sent; cached on the contact per attribute selection and settings (the
    contact object is replaced whenever it changes, so the cache never goes stale)."""
    if not settings.answer_as_asked:
        cache = entry.rendered
        key = _render_key(selection, settings, approximate)
        if cache is not None:
            hit = cache.get(key)
            if hit is not None:
                return hit
        result = _render_uncached(entry, selection, settings, index, phones, approximate)
        result = ResultEntry(result.dn, result.attributes, approximate,
                             encode_entry_body(result.dn, result.attributes))
        if cache is None:
            cache = entry.rendered = {}
        elif len(cache) >= 4:
            cache.clear()
        cache[key] = result
        return result
    return _render_uncached(entry, selection, settings, index, phones, approximate)


_RENDER_KEYS: dict[tuple, int] = {}


def _render_key(selection, settings: SearchSettings, approximate: bool) -> int:
    """A small number for (selection, settings, approximate): the key of the contacts' caches
    of rendered entries (hashing an int is free; hashing the tuple calls settings' __hash__)."""
    last = _LAST_RENDER_KEY
    if selection is last[0] and settings is last[1] and approximate is last[2]:
        return last[3]
    whole = (selection, settings, approximate)
    key = _RENDER_KEYS.get(whole)
    if key is None:
        if len(_RENDER_KEYS) >= 4096:  # settings replaced many times: the caches' old keys just miss
            _RENDER_KEYS.clear()
        key = _RENDER_KEYS[whole] = next(_RENDER_NUMBERS)
    last[:] = [selection, settings, approximate, key]
    return key


#: The last (selection, settings, approximate, key) of ``_render_key``, compared by identity
#: (selection and settings objects are shared, and the list keeps them alive).
_LAST_RENDER_KEY: list = [None, None, None, None]
_RENDER_NUMBERS = itertools.count()


def _render_all(entries: list[IndexedContact], selection, settings: SearchSettings, index: ContactIndex,
                phones: QueryPhones) -> list[ResultEntry]:
    """``_render`` of each entry (not approximate), with the cache key made once."""
    if settings.answer_as_asked:
        return [_render(e, selection, settings, index, phones, False) for e in entries]
    key = _render_key(selection, settings, False)
    out = []
    for e in entries:
        cache = e.rendered
        hit = cache.get(key) if cache is not None else None
        out.append(hit if hit is not None else _render(e, selection, settings, index, phones, False))
    return out


def _render_uncached(
    entry: IndexedContact,
    selection: tuple[tuple[str, str], ...] | None,
    settings: SearchSettings,
    index: ContactIndex,
    phones: QueryPhones,
    approximate: bool,
) -> ResultEntry:
    values = entry.values
    pairs = selection if selection is not None else _ALL_PAIRS
    out: list[tuple[str, tuple[str, ...]]] = []  # numbers are written for the PBX: global settings
    for canon, name in pairs:
        if canon in _PHONES:
            numbers = entry.numbers.get(canon)
            if not numbers:
                continue
            rendered: list[str] = []
            for n in numbers:
                text = N.format_number(n, settings.numbers, settings.numbers.output) if n.e164 else n.raw
                if text not in rendered:
                    rendered.append(text)
                if settings.answer_as_asked:
                    for k in n.match_keys():
                        asked = phones.asked.get(k)
                        if asked and asked not in rendered:
                            rendered.append(asked)
            out.append((name, tuple(rendered)))
            continue
        v = values.get(canon)
        if v is None:
            continue
        if approximate and canon in ("cn", "displayName"):
            v = tuple(settings.proximity_marker + x for x in v)
        out.append((name, v))
    dn = f"uid={values['uid'][0]},{settings.base_dn}"
    return ResultEntry(dn=dn, attributes=tuple(out), approximate=approximate)


# -- the search -------------------------------------------------------------


#: How many results each remembered pure function keeps (then it starts afresh).
REMEMBERED = 65536


def _remembered(table: dict, key, make: Callable, *args):
    """``make(*args)``, kept in ``table`` under ``key``: for pure functions of what phones send,
    whose arguments repeat (the same callers call again)."""
    hit = table.get(key)
    if hit is None:
        if len(table) >= REMEMBERED:
            table.clear()
        hit = table[key] = make(*args)
    return hit


_READINGS: dict = {}


def dialled_readings(value: str, settings: N.NumberSettings) -> tuple[N.Reading, ...]:
    """``numbers.dialled_readings``, remembered."""
    return _remembered(_READINGS, (value, settings), N.dialled_readings, value, settings)


_DIALLED_KEYS: dict = {}


def dialled_keys(value: str, settings: N.NumberSettings) -> tuple[tuple[str, ...], str | None]:
    """The number keys of what a phone sent, in the order to probe them: its readings' E.164,
    and the bare digits that match numbers which could not be normalized (remembered)."""
    return _remembered(_DIALLED_KEYS, (value, settings), _dialled_keys, value, settings)


def _dialled_keys(value: str, settings: N.NumberSettings) -> tuple[tuple[str, ...], str | None]:
    return tuple(r.e164 for r in dialled_readings(value, settings)), N.fallback_key(value)


def all_visible(source: str) -> bool:
    """The ``visible`` of a client that may see every source (recognised, so checks are skipped)."""
    return True


@lru_cache(maxsize=64)
def base_entry(settings: SearchSettings) -> ResultEntry:
    """The entry of the base DN itself."""
    rdn = normalize_dn(settings.base_dn)[0]
    first = settings.base_dn.split(",", 1)[0]
    attr, _, value = first.partition("=")
    classes = ("top", "domain") if rdn[0] == "dc" else ("top", "organization" if rdn[0] == "o" else "organizationalUnit")
    return ResultEntry(dn=settings.base_dn, attributes=(("objectClass", classes), (attr.strip(), (value.strip(),))))


def run_search(
    index: ContactIndex,
    request: SearchRequest,
    settings: SearchSettings,
    visible: Callable[[str], bool] = all_visible,
    now: Callable[[], float] | None = None,
    shape: Shape | None = None,
) -> SearchResult:
    """Answer a search request (the root DSE is the server's business).

    ``shape`` is ``Shape(request.filter)`` when the caller keeps it (the server does, per
    distinct request), else it is worked out here.
    """
    phones = QueryPhones(index, settings.numbers, settings.fuzzy_threshold)
    if shape is None:
        shape = Shape(request.filter)
    kind = shape.kind
    try:
        base = normalize_dn(request.base)
    except ValueError:
        return SearchResult((), RESULT_NO_SUCH_OBJECT, "invalid base DN", kind=kind)
    base_dn = normalize_dn(settings.base_dn)
    limit = settings.size_limit
    if request.size_limit > 0:
        limit = min(limit, request.size_limit)
    selection = _selection(request.attributes)

    contacts_scope = True
    single: IndexedContact | None = None
    pre: list[ResultEntry] = []
    if base == () or base == base_dn:
        if base == base_dn:
            if request.scope == SCOPE_BASE:
                if shape.matches_base(request.filter, settings, phones):
                    return SearchResult((_select_plain(base_entry(settings), selection),), kind=kind)
                return SearchResult((), kind=kind)
            if request.scope != SCOPE_ONE:
                if shape.matches_base(request.filter, settings, phones):
                    pre.append(_select_plain(base_entry(settings), selection))
    elif len(base) == len(base_dn) + 1 and base[1:] == base_dn and base[0][0] == "uid":
        single = index.by_uid(base[0][1])
        if single is None or not visible(single.contact.source):
            return SearchResult((), RESULT_NO_SUCH_OBJECT, "no such entry", matched_dn=settings.base_dn, kind=kind)
        if request.scope == SCOPE_ONE:
            return SearchResult((), kind=kind)
        contacts_scope = False
    else:
        matched = settings.base_dn if base[-len(base_dn):] == base_dn else ""
        return SearchResult((), RESULT_NO_SUCH_OBJECT, "no such entry", matched_dn=matched, kind=kind)

    if not contacts_scope:
        ordered = [single] if single is not None and evaluate_any(request.filter, single, phones) else []
        entries = pre + [_render(e, selection, settings, index, phones, False) for e in ordered]
        return SearchResult(tuple(entries), kind=kind)

    fuzzy = shape.fuzzy
    deadline: float | None = None
    if shape.phones is not None:
        matched = _phone_matches(index, shape.phone_keys(settings.numbers), phones, visible)
        code, message = RESULT_SUCCESS, ""
    else:
        deadline = _deadline(request, settings, now)
        matched, code, message = _matching(index, request.filter, phones, visible, limit, deadline, now,
                                           ordered_scan=not fuzzy and kind != "caller_id", names=shape.names)
    if not matched and kind == "name" and settings.fuzzy_fallback:
        rewritten, changed = fuzzy_rewrite(request.filter, settings.fuzzy_fallback_threshold)
        if changed:
            fuzzy = True
            if deadline is None:  # the fallback shares the search's time budget
                deadline = _deadline(request, settings, now)
            matched, code, message = _matching(index, rewritten, phones, visible,
                                               min(limit, settings.fuzzy_max_results), deadline, now,
                                               ordered_scan=False)
    if fuzzy:
        matched.sort(key=lambda e: (-phones.scores.get(e.key, 0.0), e.sort_key))
    elif kind == "caller_id":
        matched = _caller_id_order(matched, settings.duplicates)
    if len(matched) > limit:
        matched = matched[:limit]
        code, message = RESULT_SIZE_LIMIT, "size limit exceeded"
    entries = pre + _render_all(matched, selection, settings, index, phones)
    if not matched and kind == "caller_id" and settings.proximity:
        entries = pre + _proximity(index, shape.dialled, selection, settings, phones, visible)[:limit]
    return SearchResult(tuple(entries), code, message, kind=kind)


def _deadline(request: SearchRequest, settings: SearchSettings, now: Callable[[], float] | None) -> float | None:
    """When a search that scans must give up (None: no clock, no limit)."""
    if now is None:
        return None
    budget = settings.time_limit
    if request.time_limit > 0:
        budget = min(budget, request.time_limit)
    return now() + budget


def evaluate_any(f: F.Filter, entry: IndexedContact, phones: QueryPhones) -> bool:
    return evaluate(f, entry, phones) is True


def _has_fuzzy(f: F.Filter) -> bool:
    if isinstance(f, (F.And, F.Or)):
        return any(_has_fuzzy(i) for i in f.items)
    if isinstance(f, F.Not):
        return _has_fuzzy(f.item)
    return _is_fuzzy(f)


def _is_fuzzy(f: F.Filter) -> bool:
    """An approximate name match; ``mail~=`` is compared exactly, as evaluation does."""
    if isinstance(f, F.FuzzyName):
        return True
    if isinstance(f, F.Approx):
        attr = _attr(f.attr)
        return attr in _NAMES and attr != "mail"
    return False


def _phone_matches(index: ContactIndex, asked: tuple[tuple[str, int, tuple[str, ...], str | None], ...],
                   phones: QueryPhones, visible: Callable[[str], bool]) -> list[IndexedContact]:
    """Contacts matching an OR of phone equalities (``Shape.phone_keys``), straight from the number index.

    The same test as evaluating the filter (``evaluate._match_phone``): a contact matches
    (attribute, value) when a number of that attribute has one of the value's keys.  The
    usual caller-ID filter asks one number in two attributes: its key is looked up once,
    and each contact's ``phone_keys`` says in which attributes it has it.
    """
    if len(asked) == 1:  # one number, one key: no contact comes twice
        value, bits, candidates, digits = asked[0]
        return _number_matches(index, phones.equality_key(value, candidates, digits), bits, visible)
    out: dict = {}
    for value, bits, candidates, digits in asked:
        for entry in _number_matches(index, phones.equality_key(value, candidates, digits), bits, visible):
            out[entry.contact.key] = entry
    return list(out.values())


def _number_matches(index: ContactIndex, k: str | None, bits: int, visible: Callable[[str], bool]
                    ) -> list[IndexedContact]:
    """The visible contacts with number key ``k`` (``alt:`` tagged or not) in an attribute of ``bits``."""
    if k is None:
        return []
    if k.startswith(ALTERNATIVE):
        entries = index.entries_with_number(k[len(ALTERNATIVE):], bits, alternative=True)
    else:
        entries = index.entries_with_number(k, bits)
    if visible is all_visible:
        return entries
    return [e for e in entries if visible(e.contact.source)]


def _matching(index, f, phones, visible, limit, deadline, now, ordered_scan, names=None):
    """Contacts matching ``f``, in index order; at most limit + 1 when the order is final already.

    ``names``: the filter's name items when the name index alone answers it (``Shape.names``).
    """
    if ordered_scan and names is not None:
        if visible is all_visible:
            return index.names_first(names, limit + 1), RESULT_SUCCESS, ""
        out = []
        for entry in index.names_in_order(names):
            if visible(entry.contact.source):
                out.append(entry)
                if len(out) > limit:
                    break
        return out, RESULT_SUCCESS, ""
    candidates = plan(f, index, phones)
    if candidates is None:
        ordered: Iterable[IndexedContact] = index.in_order()
    elif ordered_scan:
        ordered = index.ordered_lazily(candidates, limit + 1)
    else:
        ordered = index.ordered(candidates)
    out: list[IndexedContact] = []
    checked = 0
    exact = candidates is not None and names is not None
    for entry in ordered:
        checked += 1
        if deadline is not None and checked % 256 == 0 and now() > deadline:
            return out, RESULT_TIME_LIMIT, "time limit exceeded"
        if not visible(entry.contact.source):
            continue
        if not exact and evaluate(f, entry, phones) is not True:
            continue
        out.append(entry)
        if ordered_scan and len(out) > limit:
            break
    return out, RESULT_SUCCESS, ""


def _name_items(f: F.Filter) -> list[tuple[str, str, bool]]:
    """(attribute, folded query variant, is prefix) of a filter _answered_by_plan accepts."""
    if isinstance(f, F.Or):
        return [item for i in f.items for item in _name_items(i)]
    attr = _attr(f.attr)
    if isinstance(f, F.Equality):
        return [(attr, q, False) for q in query_variants(f.value)]
    return [(attr, q, True) for q in query_variants(f.initial)]


def _answered_by_plan(f: F.Filter) -> bool:
    """True when the plan's candidates are exactly the matches (no need to evaluate each):
    equality and initial substrings on names, alone or OR-ed; the index holds the same
    umlaut variants the evaluation compares."""
    if isinstance(f, F.Or):
        return bool(f.items) and all(_answered_by_plan(i) for i in f.items)
    if isinstance(f, F.Equality):
        return _attr(f.attr) in VARIANT_ATTRIBUTES
    if isinstance(f, F.Substrings):
        return bool(f.initial) and not f.any and not f.final and _attr(f.attr) in VARIANT_ATTRIBUTES
    return False


_caller_key = attrgetter("caller_key")


def _caller_id_order(matched: list[IndexedContact], duplicates: str) -> list[IndexedContact]:
    """Highest priority first; within a source, people before company records (the most specific)."""
    if len(matched) < 2:
        return matched
    matched = sorted(matched, key=_caller_key)
    if duplicates == "highest" and matched:
        top = matched[0].sort_key[0]
        matched = [e for e in matched if e.sort_key[0] == top]
    return matched


def _select_plain(entry: ResultEntry, selection: list[tuple[str, str]] | None) -> ResultEntry:
    if selection is None:
        return entry
    by_canon = {canonical_attribute(a) or a: (a, v) for a, v in entry.attributes}
    out = []
    for canon, name in selection:
        if canon in by_canon:
            out.append((name, by_canon[canon][1]))
    return ResultEntry(entry.dn, tuple(out))


def _proximity(
    index: ContactIndex,
    dialled: tuple[str, ...],
    selection,
    settings: SearchSettings,
    phones: QueryPhones,
    visible: Callable[[str], bool],
) -> list[ResultEntry]:
    """Company main-number fallback: the company record for an unknown extension
    (``dialled``: the numbers asked for, ``Shape.dialled``)."""
    for value in dialled:
        for head in _heads_of(value, settings.numbers, settings.max_extension_digits):
            if not index.has_head(head):  # most heads tried are nobody's
                continue
            keys = index.with_head(head)
            if keys:
                found = []
                for entry in index.ordered(keys):
                    profile = index.profiles.get(entry.contact.source)
                    if not visible(entry.contact.source) or (profile is not None and not profile.proximity):
                        continue
                    if _is_company_entry(entry, head):
                        found.append(entry)
                if found:
                    return [_render(e, selection, settings, index, phones, True) for e in found]
    return []


_HEADS_OF: dict = {}


def _heads_of(value: str, numbers: N.NumberSettings, digits: int) -> tuple[str, ...]:
    """The head numbers to try for a dialled ``value``, in order: for each of its readings, its
    proximity candidates (remembered, like the readings)."""
    return _remembered(_HEADS_OF, (value, numbers, digits), _heads, value, numbers, digits)


def _heads(value: str, numbers: N.NumberSettings, digits: int) -> tuple[str, ...]:
    return tuple(dict.fromkeys(head for reading in dialled_readings(value, numbers)
                               for head in N.proximity_candidates(reading.e164, digits)))


def _is_company_entry(entry: IndexedContact, head: str) -> bool:
    """The contact stands for the company: its number is the head itself, or it has no personal name."""
    if entry.contact.is_company_record:
        return True
    return any(n.head == head and n.is_head for n in entry.all_numbers())

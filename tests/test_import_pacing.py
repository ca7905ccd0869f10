"""How a full import paces itself (issue 9): the next page is requested as soon as the one before it
has arrived, at most ``PAGES_AHEAD`` pages ahead of the one being processed, and the work on a page
is cut into short slices with the reactor's turn in between.

No HTTP here: a fake Graph client answers with Deferreds the tests fire, the reactor the slices yield
to is a ``task.Clock``, and the slices' stopwatch is a fake that the index advances.
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.task import Clock

from gateway.graph.client import DECODE_APART as GRAPH_DECODE_APART
from gateway.graph.client import GraphClient, ResyncRequired
from gateway.graph.parse import Upsert
from gateway.index import ContactIndex
from gateway.model import Contact
from gateway.sync import m365
from gateway.sync.m365 import M365Source, initial_delta_url

GRAPH = "https://graph.example"
FIRST = initial_delta_url(GRAPH)


def body(page: int, pages: int, per_page: int) -> dict:
    value = [{"id": f"c{page}-{i}", "displayName": f"Person {page} {i}", "companyName": f"Firm {i % 3}",
              "phones": [{"type": "business", "number": f"+49 89 {1000 + page:04d}{i:03d}"}]}
             for i in range(per_page)]
    link = ({"@odata.nextLink": f"{GRAPH}/next/{page + 1}"} if page + 1 < pages
            else {"@odata.deltaLink": f"{GRAPH}/delta/done"})
    return {"value": value, **link}


class FakeGraph:
    """Records each GET and answers it when the test says so."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Deferred]] = []

    def get_json(self, url, headers=None) -> Deferred:
        d: Deferred = Deferred()
        self.requests.append((url, d))
        return d

    def close(self):
        return None

    def urls(self) -> list[str]:
        return [url for url, _ in self.requests]

    def answer(self, n: int, value) -> None:
        d = self.requests[n][1]
        if isinstance(value, Exception):
            d.errback(value)
        else:
            d.callback(value)


class Stopwatch:
    """A fake ``perf_counter``: stands still unless the work moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CostlyIndex(ContactIndex):
    """Each prepared contact and each applied change costs ``cost`` seconds on the stopwatch."""

    check_cost = 0.0
    """Seconds each ``unchanged`` check costs on the stopwatch."""

    def __init__(self, stopwatch: Stopwatch, cost: float) -> None:
        super().__init__()
        self.stopwatch = stopwatch
        self.cost = cost
        self.applies: list[int] = []
        self.on_apply = lambda: None

    def prepare(self, contact):
        self.stopwatch.now += self.cost
        return super().prepare(contact)

    def unchanged(self, contact):
        self.stopwatch.now += self.check_cost
        return super().unchanged(contact)

    def apply(self, changes):
        changes = list(changes)
        self.applies.append(len(changes))
        self.on_apply()
        self.stopwatch.now += self.cost * len(changes)
        return super().apply(changes)


class CountingClock(Clock):
    """A reactor stand-in that counts the turns it was asked for, and runs them one at a time."""

    turns = 0

    def callLater(self, delay, f, *args, **kw):
        self.turns += 1
        return super().callLater(delay, f, *args, **kw)

    def turn(self) -> None:
        """Run the calls due now, not those they schedule (``advance(0)`` runs those too): one
        turn of a real reactor, in which LDAP requests would be answered between slices."""
        due = [call for call in self.calls if call.getTime() <= self.seconds()]
        for call in due:
            if call in self.calls:
                self.calls.remove(call)
                call.called = 1
                call.func(*call.args, **call.kw)


def make_source(cost: float = 0.0, slice_seconds: float = 0.001):
    stopwatch = Stopwatch()
    index = CostlyIndex(stopwatch, cost)
    graph = FakeGraph()
    reactor = CountingClock()
    source = M365Source("m365", graph, index, Clock(), GRAPH, 3600.0, identity=("t", "c"),
                        reactor=reactor, timer=stopwatch, slice_seconds=slice_seconds)
    return source, graph, index, reactor


def run_round(source):
    outcome: list = []
    ensureDeferred(source.sync_once()).addBoth(outcome.append)
    return outcome


def answer_when_asked(reactor, graph, pages: dict) -> None:
    """Answer request n with ``pages[n]`` once it has been made, in order, turning the reactor."""
    for n, page in pages.items():
        while len(graph.requests) <= n:
            reactor.turn()
        graph.answer(n, page)


def test_next_page_is_requested_before_this_one_is_applied():
    source, graph, index, reactor = make_source()
    requested_when_applied = []
    index.on_apply = lambda: requested_when_applied.append(len(graph.requests))
    outcome = run_round(source)
    assert graph.urls() == [FIRST]
    graph.answer(0, body(0, 3, 5))
    assert graph.urls() == [FIRST]  # not in the turn the page arrived in: reading it took that turn
    assert requested_when_applied == []
    reactor.turn()
    assert graph.urls() == [FIRST, f"{GRAPH}/next/1"]  # but in the next
    assert requested_when_applied == []  # and written when the reactor polls, before page 0's slices
    reactor.turn()
    assert requested_when_applied and requested_when_applied[0] == 2  # page 1 was asked for first
    answer_when_asked(reactor, graph, {1: body(1, 3, 5), 2: body(2, 3, 5)})
    while not outcome:
        reactor.turn()
    assert outcome == [True]
    assert len(index) == 15
    assert source.state.delta_link == f"{GRAPH}/delta/done"


def test_requests_run_at_most_pages_ahead_of_processing():
    """While a page is being processed, pages keep being requested, but no more than PAGES_AHEAD are
    waiting; taking one lets the next request go out."""
    source, graph, index, reactor = make_source(cost=0.001, slice_seconds=0.0015)
    outcome = run_round(source)
    graph.answer(0, body(0, 8, 10))  # page 0 is now being processed, a slice at a time
    assert len(index) < 10
    answer_when_asked(reactor, graph, {n: body(n, 8, 10) for n in range(1, 1 + m365.PAGES_AHEAD)})
    assert len(graph.requests) == 1 + m365.PAGES_AHEAD  # and none further: nothing has been taken
    while len(index) < 10:
        reactor.turn()
        assert len(graph.requests) == 1 + m365.PAGES_AHEAD  # page 0 is still being processed
    for _ in range(3):  # the turns after page 0's last slice
        reactor.turn()
    assert len(graph.requests) == 2 + m365.PAGES_AHEAD  # page 1 was taken: room for one more
    answer_when_asked(reactor, graph, {n: body(n, 8, 10) for n in range(len(graph.requests) - 1, 8)})
    while not outcome:
        reactor.turn()
    assert outcome == [True]
    assert len(index) == 80
    assert graph.urls() == [FIRST] + [f"{GRAPH}/next/{n}" for n in range(1, 8)]


def test_a_page_is_applied_in_short_slices_with_the_reactor_in_between():
    source, graph, index, reactor = make_source(cost=0.0004, slice_seconds=0.001)
    turns_at_apply = []
    index.on_apply = lambda: turns_at_apply.append(reactor.turns)
    outcome = run_round(source)
    graph.answer(0, body(0, 1, 20))
    assert not outcome  # not done in one go
    taken = 0
    while not outcome:
        reactor.turn()
        taken += 1
    assert outcome == [True]
    assert len(index) == 20
    chunks = index.applies[:-1]  # the last apply catches up with what the pages missed: nothing
    assert index.applies[-1] == 0
    assert sum(chunks) == 20 and len(chunks) >= 5
    assert taken >= 2 * len(chunks)  # the round needed the reactor's turns, two per chunk
    assert max(chunks) <= 3  # a chunk (prepare 0.4 ms and apply 0.4 ms a contact) fits a 1 ms slice
    turns = turns_at_apply[:-1]
    # two turns between any two chunks: requests are read and answered in the first, and Twisted
    # writes the answers when it next polls, in the second, before the next chunk
    assert all(b - a >= 2 for a, b in zip(turns, turns[1:]))


def test_searches_see_the_import_grow_and_the_resume_point_moves_per_page():
    source, graph, index, reactor = make_source(cost=0.0004, slice_seconds=0.001)
    outcome = run_round(source)
    graph.answer(0, body(0, 2, 10))
    seen = set()
    while len(graph.requests) < 2 or source.state.next_link is None:
        seen.add(len(index))
        assert source.state.next_link is None  # page 0 not done: resuming would redo it
        reactor.turn()
    assert len(index) == 10 and source.state.next_link == f"{GRAPH}/next/1"
    assert any(0 < n < 10 for n in seen)
    graph.answer(1, body(1, 2, 10))
    while not outcome:
        reactor.turn()
    assert outcome == [True] and len(index) == 20 and source.state.next_link is None


def test_a_failure_ahead_reaches_the_import_after_the_pages_before_it():
    source, graph, index, reactor = make_source()
    outcome = run_round(source)
    answer_when_asked(reactor, graph, {0: body(0, 3, 4), 1: ResyncRequired(410, "resyncRequired", "gone")})
    while len(graph.requests) < 3:  # the source starts afresh after the failure
        reactor.turn()
    assert len(index) == 4  # page 0 was applied before the failure surfaced
    assert graph.urls()[2] == FIRST
    answer_when_asked(reactor, graph, {n: body(page, 3, 4) for n, page in ((2, 0), (3, 1), (4, 2))})
    while not outcome:
        reactor.turn()
    assert outcome == [True]
    assert len(index) == 12


def test_stopping_cancels_the_requests_in_flight():
    source, graph, index, reactor = make_source()
    source.startService()
    source._clock.advance(0)  # the first round starts
    graph.answer(0, body(0, 3, 4))
    reactor.turn()  # the next page is requested
    in_flight = graph.requests[1][1]
    assert not in_flight.called
    source.stopService()
    assert in_flight.called  # cancelled
    assert len(graph.requests) == 2


def test_the_check_after_the_last_page_yields_too():
    """After the last page, every contact is checked against the index (normally nothing is left
    to apply): in slices as well, not in one go over the whole source."""
    source, graph, index, reactor = make_source(cost=0.0001, slice_seconds=0.001)
    index.check_cost = 0.00002  # 100 checks: 2 ms
    held_since = []
    reactor.callLater = lambda delay, f, *a, **kw: (held_since.append(source._now()),
                                                    CountingClock.callLater(reactor, delay, f, *a, **kw))[1]
    outcome = run_round(source)
    pages = 6
    answer_when_asked(reactor, graph, {n: body(n, pages, 100) for n in range(pages)})
    while not outcome:
        reactor.turn()
    assert outcome == [True] and len(index) == 600 and index.applies[-1] == 0
    held_since.append(source._now())  # the round's end
    longest = max(b - a for a, b in zip(held_since, held_since[1:]))
    assert longest < 0.004  # at most 100 checks and a slice between two turns, not all 600


def test_what_the_import_does_not_have_is_removed_at_its_end_and_other_sources_stay():
    """The check after the last page removes a contact of this source the pages did not bring
    (here: put into the index behind the import's back), and leaves other sources alone."""
    source, graph, index, reactor = make_source()
    outcome = run_round(source)
    graph.answer(0, body(0, 2, 5))
    index.apply([Upsert(Contact("m365", "stray", display_name="Stray")),
                 Upsert(Contact("files", "f1", display_name="From a file"))])
    while len(graph.requests) < 2:
        reactor.turn()
    graph.answer(1, body(1, 2, 5))
    while not outcome:
        reactor.turn()
    assert outcome == [True]
    assert sorted(c.id for c in index.contacts("m365")) == sorted(f"c{p}-{i}" for p in range(2) for i in range(5))
    assert [c.id for c in index.contacts("files")] == ["f1"]


def test_a_page_is_parsed_in_slices_too(monkeypatch):
    """Turning a page's entries into contacts is work of the slices too, not of the turn the page
    arrived in: with a parse costing 0.3 ms an entry, no turn holds more than a 1 ms slice's worth."""
    source, graph, index, reactor = make_source(slice_seconds=0.001)
    stopwatch = index.stopwatch
    parse = m365.parse_change

    def costly_parse(item, i, name):
        stopwatch.now += 0.0003
        return parse(item, i, name)

    monkeypatch.setattr(m365, "parse_change", costly_parse)
    outcome = run_round(source)
    graph.answer(0, body(0, 1, 30))
    assert stopwatch.now == 0.0  # nothing parsed in the turn the page arrived in
    held = []
    while not outcome:
        before = stopwatch.now
        reactor.turn()
        held.append(stopwatch.now - before)
    assert outcome == [True] and len(index) == 30
    assert abs(sum(held) - 30 * 0.0003) < 1e-9
    assert max(held) < 0.0015  # a slice and the entry that ends it


class FakeResponse:
    code = 200

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.headers = None

    def content(self) -> Deferred:
        return succeed(self._body)


class FakeHTTP:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def get(self, url, headers=None, timeout=None, reactor=None) -> Deferred:
        return succeed(FakeResponse(self.body))


class FixedToken:
    async def token(self) -> str:
        return "token"

    def invalidate(self) -> None:
        pass


def decoded_when(size: int):
    """The turns a GraphClient takes to return a page of ``size`` bytes that arrived at once."""
    page = {"value": [{"id": "x" * size}], "@odata.deltaLink": "d"}
    reactor = CountingClock()
    client = GraphClient(FakeHTTP(json.dumps(page).encode()), FixedToken(), Clock(), reactor=reactor)
    got: list = []
    ensureDeferred(client.get_json("https://graph.example/page")).addBoth(got.append)
    turns = 0
    while not got:
        reactor.turn()
        turns += 1
    assert got == [page]
    return turns


def test_a_large_body_is_decoded_in_the_turn_after_the_one_that_received_it():
    assert decoded_when(100) == 0  # a small body: at once
    assert decoded_when(GRAPH_DECODE_APART) == 1

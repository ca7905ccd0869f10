"""The ``m365_mail_contacts`` source: full import, then delta rounds, via Graph.

A full import makes contacts searchable as pages arrive when the source has
nothing yet (parsed and applied in slices of a quarter of a millisecond, so a search may see
part of a page; the resume point moves page by page); a re-import (expired
delta token) is staged while the old data keeps being served, then swapped
in.  Pages are requested one after the other as soon as the previous one
has arrived, while earlier ones are processed.  A delta round is collected
whole and applied in one call, so no search sees half a round.  Every
failure is logged and retried; nothing here stops the LDAP service.
"""

from __future__ import annotations

import gc
import random
import time
import urllib.parse
from collections import deque
from contextlib import aclosing
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from gateway.auth import TokenError
from gateway.graph.client import Forbidden, GraphClient, GraphError, ResyncRequired, Throttled, Transient, Unauthorized
from gateway.graph.parse import (SELECT_FIELDS, Change, GraphShapeError, Page, PageBody, Remove, Upsert, page_body,
                                 page_of, parse_change)
from gateway.index import ContactIndex, Prepared
from gateway.model import Contact
from gateway.sync.policy import retry_delay

__all__ = ["SyncState", "M365Source", "initial_delta_url"]

#: Seconds of import work (preparing, applying) between two chances for the reactor to answer
#: LDAP requests: a caller-ID lookup arriving meanwhile waits at most about this long.
SLICE_SECONDS = 0.00025

#: Pages requested ahead of the one being processed (Graph's nextLinks are sequential: the next
#: page is requested as soon as the one before it arrives, while earlier pages are processed).
PAGES_AHEAD = 2

#: From this many contacts on, a full import keeps what it has applied out of the cyclic garbage
#: collector's scans (gc.freeze): the index is long-lived, and full collections over a growing
#: index would stall the reactor for up to half a second each (as ``dirgw: ready`` does once).
FREEZE_FROM = 1000


def initial_delta_url(graph_url: str, page_size: int | None = None) -> str:
    """The first delta request; ``page_size`` asks via ``Prefer: odata.maxpagesize`` (no $top on delta)."""
    query = {"$select": ",".join(SELECT_FIELDS)}
    return f"{graph_url}/v1.0/contacts/delta?" + urllib.parse.urlencode(query, safe="$,")


class SyncState:
    """What a source knows about its sync; saved in snapshots, shown in status."""

    def __init__(self) -> None:
        self.delta_link: str | None = None
        self.next_link: str | None = None  # resume point of an interrupted import
        self.identity: tuple[str, ...] | None = None
        self.state = "starting"  # starting | importing | idle | backing_off | failed
        self.reason: str | None = None
        self.pages = 0
        self.imported = 0
        self.import_started: float | None = None
        self.last_success: float | None = None
        self.next_sync: float | None = None
        self.backoff_until: float | None = None
        self.throttled = 0
        self.last_error: str | None = None
        self.rounds = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SyncState":
        state = cls()
        for key in ("delta_link", "next_link", "last_success"):
            if key in data:
                setattr(state, key, data[key])
        if data.get("identity"):
            state.identity = tuple(data["identity"])
        return state


class M365Source(Service):
    """Keeps one source of the index equal to a tenant's mail contacts."""

    log = Logger()

    def __init__(
        self,
        name: str,
        graph: GraphClient,
        index: ContactIndex,
        clock: Any,
        graph_url: str,
        interval: float,
        identity: tuple[str, ...],
        page_size: int | None = None,
        state: SyncState | None = None,
        saved: Callable[[str], object] | None = None,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] | None = None,
        save_every_pages: int = 50,
        reactor: Any = None,
        timer: Callable[[], float] = time.perf_counter,
        slice_seconds: float = SLICE_SECONDS,
    ) -> None:
        """``clock`` times intervals and backoff; ``reactor`` (default: the global one) is where
        import work yields between slices of ``slice_seconds`` (measured with ``timer``), so that
        LDAP requests are answered in between.  A yield is not a wait: a test that drives
        ``clock`` by hand need not drive the slices too."""
        self._save_every = max(1, save_every_pages)
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self._reactor = reactor
        self._now = timer
        self._slice = slice_seconds
        self._slice_started = timer()
        self._apply_cost = 0.0  # seconds per change of the last applies (smoothed)
        self.name = name
        self._graph = graph
        self._index = index
        self._clock = clock
        self._graph_url = graph_url
        self.interval = interval
        self._page_size = page_size
        self._saved = saved or (lambda reason: None)
        self._rng = rng or random.Random()
        self._wall = wall_clock or clock.seconds
        self.state = state or SyncState()
        if self.state.identity is not None and tuple(self.state.identity) != tuple(identity):
            self.log.info("source {source}: tenant or client changed; starting a full import", source=name)
            self.state.delta_link = None
            self.state.next_link = None
        self.state.identity = tuple(identity)
        self._running: Deferred | None = None
        self._current: bool | None = None
        self._current_waiters: list[Deferred] = []
        self._timer: Any = None
        self._stopping = False

    # -- service -----------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._schedule(0)

    def stopService(self):
        super().stopService()
        self._stopping = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self._running is not None:
            running, self._running = self._running, None
            running.cancel()
        return self._graph.close()

    def _schedule(self, delay: float) -> None:
        if self._stopping:
            return
        self.state.next_sync = self._wall() + delay
        self._timer = self._clock.callLater(delay, self._start_round)

    def _start_round(self) -> None:
        self._timer = None
        self._running = ensureDeferred(self.sync_once())
        self._running.addErrback(self._unexpected)
        self._running.addBoth(self._round_done)

    def _unexpected(self, failure) -> None:
        from twisted.internet.defer import CancelledError

        if failure.check(CancelledError):
            return None
        self.log.failure("source {source}: unexpected error in sync round", failure, source=self.name)
        self.state.state = "failed"
        self.state.reason = f"internal error: {failure.getErrorMessage()}"
        return None

    def _round_done(self, _: object) -> None:
        self._running = None
        if not self._stopping:
            self._schedule(self.interval)

    # -- one round ---------------------------------------------------------

    async def sync_once(self) -> bool:
        """One import or delta round; True on success.  Rounds never overlap: a call while a
        round runs waits for that round and returns its outcome."""
        if self._current is not None:
            waiter: Deferred = Deferred()
            self._current_waiters.append(waiter)
            return await waiter
        self._current = True
        outcome = False
        try:
            outcome = await self._round()
            return outcome
        finally:
            self._current = None
            waiters, self._current_waiters = self._current_waiters, []
            for waiter in waiters:
                waiter.callback(outcome)

    async def _round(self) -> bool:
        try:
            if self.state.delta_link is None:
                try:
                    await self._full_import()
                except ResyncRequired as e:
                    if self.state.next_link is None:
                        raise
                    self.log.warn("source {source}: the saved import position expired ({code}); importing afresh",
                                  source=self.name, code=e.code)
                    self.state.next_link = None
                    await self._full_import()
            else:
                try:
                    await self._delta_round()
                except ResyncRequired as e:
                    self.log.warn("source {source}: delta token expired ({code}); re-importing, old data stays",
                                  source=self.name, code=e.code)
                    self.state.delta_link = None
                    self.state.next_link = None
                    await self._full_import()
        except Forbidden as e:
            self._fail(f"permission missing: the app needs OrgContact.Read.All (application) with admin consent "
                       f"({e.code})")
            return False
        except Unauthorized as e:
            self._fail(f"token refused by Graph ({e.code}: {e.message})")
            return False
        except TokenError as e:
            self._fail(f"cannot get a token: {e.code}: {e.description}")
            return False
        except GraphError as e:
            self._fail(f"Graph error: {e}")
            return False
        self.state.state = "idle"
        self.state.reason = None
        self.state.last_success = self._wall()
        self.state.rounds += 1
        return True

    def _fail(self, reason: str) -> None:
        self.state.state = "failed"
        self.state.reason = reason
        self.state.last_error = reason
        self.log.error("source {source}: {reason}; serving the last good data, retrying in {interval:g}s",
                       source=self.name, reason=reason, interval=self.interval)

    async def _get(self, url: str) -> dict[str, Any]:
        """One page, retried through throttling and transient faults."""
        attempt = 0
        while True:
            attempt += 1
            try:
                headers = {"Prefer": f"odata.maxpagesize={self._page_size}"} if self._page_size else None
                page = await self._graph.get_json(url, headers)
                if self.state.state == "backing_off":
                    self.state.state = "importing" if self.state.delta_link is None else "idle"
                self.state.backoff_until = None
                return page
            except Throttled as e:
                self.state.throttled += 1
                delay = retry_delay(attempt, e.retry_after, self._rng)
                why = f"throttled ({e.status}), Retry-After {e.retry_after}"
            except Transient as e:
                delay = retry_delay(attempt, None, self._rng)
                why = f"{e.code} ({e.status or 'no answer'})"
            except TokenError as e:
                if not e.transient:
                    raise
                delay = retry_delay(attempt, e.retry_after, self._rng)
                why = f"token endpoint: {e.code}"
            self.state.last_error = why
            self.state.state = "backing_off"
            self.state.backoff_until = self._wall() + delay
            self.log.warn("source {source}: {why}; retrying in {delay:.1f}s", source=self.name, why=why, delay=delay)
            await deferLater(self._clock, delay, lambda: None)

    def _body(self, body: dict[str, Any]) -> PageBody:
        try:
            return page_body(body)
        except GraphShapeError as e:
            raise Transient(200, "malformed", f"unexpected page shape: {e}")

    async def _page(self, url: str) -> PageBody:
        """One page with its links read, retried through faults (a malformed page is fetched again);
        its entries are parsed where the page is processed, in slices (``_parse``)."""
        attempt = 0
        while True:
            body = await self._get(url)
            try:
                return self._body(body)
            except Transient as e:
                attempt += 1
                delay = retry_delay(attempt, None, self._rng)
                self.state.last_error = e.message
                self.log.warn("source {source}: {why}; retrying in {delay:.1f}s", source=self.name,
                              why=e.message, delay=delay)
                await deferLater(self._clock, delay, lambda: None)

    async def _pages(self, url: str):
        """Pages from ``url`` to the deltaLink.  Each page is requested as soon as the one before
        it has arrived (up to ``PAGES_AHEAD`` pages ahead of the one being processed), before that
        one is processed: processing overlaps with Graph's latency, and the requests follow each
        other without waiting for it.  A failure reaches the caller where its page would have."""
        arrived: deque = deque()  # pages (or the failure ending them) not yet taken
        wake: list[Deferred] = []  # the caller waiting for a page, or the fetcher for room
        inflight: list[Deferred] = []
        closed = False

        def wake_up() -> None:
            waiting = wake[:]  # not who starts waiting meanwhile: they wait for what comes next
            del wake[:]
            for d in waiting:
                if not d.called:
                    d.callback(None)

        async def sleep() -> None:
            d: Deferred = Deferred()
            wake.append(d)
            await d

        def request(url: str) -> Deferred:
            d = ensureDeferred(self._page(url))
            if not d.called:
                inflight.append(d)
                d.addBoth(lambda result: (inflight.remove(d), result)[1])
            return d

        async def fetch(url: str) -> None:
            try:
                pending: Deferred | None = request(url)
                while pending is not None:
                    page = await pending
                    if closed:
                        return
                    arrived.append(page)
                    pending = None
                    if not page.delta_link:
                        if not page.next_link:
                            raise Transient(200, "malformed", "a page with neither nextLink nor deltaLink")
                        url = page.next_link
                    wake_up()
                    if not page.delta_link:
                        # Reading and decoding this page took the reactor's turn: the request for
                        # the next one goes out in the next turn, before this page's slices start.
                        await self._turn()
                    while pending is None and not page.delta_link:
                        if closed:
                            return
                        if len(arrived) < PAGES_AHEAD:
                            pending = request(url)
                        else:
                            await sleep()
            except BaseException as e:  # noqa: BLE001 (handed to the caller)
                if not closed:
                    arrived.append(e)
                    wake_up()

        fetcher = ensureDeferred(fetch(url))
        fetcher.addErrback(lambda failure: self.log.failure("source {source}: fetching pages failed", failure,
                                                            source=self.name))
        try:
            while True:
                while not arrived:
                    await sleep()
                page = arrived.popleft()
                wake_up()  # room for the next request
                if isinstance(page, BaseException):
                    raise page
                # The reactor's turns before this page's slices: the request for the next page goes
                # out, and the work of a page that just arrived (reading and decoding it) is not
                # followed by a slice in the same turn.
                await self._breathe(now=True)
                parsed = await self._parse(page)
                for problem in parsed.skipped:
                    self.log.warn("source {source}: skipped {problem}", source=self.name, problem=problem)
                yield parsed
                if page.delta_link:
                    return
        finally:
            closed = True
            for d in list(inflight):
                d.cancel()  # the fetcher sees the failure and ends
            wake_up()

    async def _breathe(self, now: bool = False) -> None:
        """Let the reactor answer LDAP requests if this slice of work has taken its time (or ``now``).

        Two turns: in the first the reactor reads the requests that came meanwhile and answers
        them, but Twisted writes the answers (and our requests for pages) only when it next polls
        its sockets, after the calls due; the second turn lets it do so before the next slice,
        which would hold them back otherwise.
        """
        if now or self._now() - self._slice_started >= self._slice:
            await self._turn()
            await self._turn()
            self._slice_started = self._now()

    def _turn(self) -> Deferred:
        """Fires in the reactor's next turn, after it has polled its sockets."""
        return deferLater(self._reactor, 0, lambda: None)

    async def _parse(self, body: PageBody) -> Page:
        """A page's entries as changes, parsed in slices."""
        parsed = []
        for i, item in enumerate(body.values):
            parsed.append(parse_change(item, i, self.name))
            await self._breathe()
        return page_of(body, parsed)

    async def _prepare(self, changes) -> list:
        """Changes with their expensive part done, in slices so the reactor keeps serving LDAP."""
        out = []
        for change in changes:
            if isinstance(change, Upsert):
                if self._index.unchanged(change.contact):
                    out.append(change)  # cheap: apply() skips it
                    continue
                out.append(self._index.prepare(change.contact))
                await self._breathe()
            else:
                out.append(change)
        return out

    async def _prepare_and_apply(self, changes: list) -> None:
        """Prepare and apply a page's changes in slices (a progressive import only: searches may
        see part of a page).  Each apply call gets as many changes as fit in what is left of the
        slice at the cost the last ones took; applying costs more per contact as companies grow."""
        index = self._index
        i, n = 0, len(changes)
        while i < n:
            if self._now() - self._slice_started >= self._slice / 2:
                await self._breathe(now=True)  # a chunk of its own rather than the end of this slice
            started = self._now()
            budget = self._slice - (started - self._slice_started)
            chunk = []
            while i < n:
                change = changes[i]
                i += 1
                if isinstance(change, Upsert) and not index.unchanged(change.contact):
                    change = index.prepare(change.contact)
                chunk.append(change)
                if (self._now() - started) + self._apply_cost * len(chunk) >= budget:
                    break
            applying = self._now()
            index.apply(chunk)
            took = self._now() - applying
            self._apply_cost = 0.7 * self._apply_cost + 0.3 * (took / len(chunk))
            await self._breathe()

    async def _full_import(self) -> None:
        state = self.state
        progressive = not any(True for _ in self._index.contacts(self.name)) or state.next_link is not None
        url = state.next_link or initial_delta_url(self._graph_url, self._page_size)
        staged: dict[str, Contact] = {c.id: c for c in self._index.contacts(self.name)} if state.next_link else {}
        ready: dict[str, Prepared] = {}
        state.state = "importing"
        state.import_started = self._wall()
        state.pages = 0
        state.imported = len(staged)
        self.log.info("source {source}: full import {how}", source=self.name,
                      how="resuming" if state.next_link else "started")
        self._slice_started = self._now()
        async with aclosing(self._pages(url)) as pages:
            async for page in pages:
                changes: list[Change] = []
                for change in page.changes:
                    if isinstance(change, Upsert):
                        staged[change.contact.id] = change.contact
                        changes.append(change)
                    elif isinstance(change, Remove):
                        if staged.pop(change.id, None) is not None:
                            changes.append(change)
                if progressive:
                    await self._prepare_and_apply(changes)
                    state.next_link = page.next_link
                else:
                    for change in await self._prepare(changes):
                        if isinstance(change, Prepared):
                            ready[change.entry.contact.id] = change
                        elif isinstance(change, Remove):
                            ready.pop(change.id, None)
                if len(staged) >= FREEZE_FROM:
                    gc.freeze()
                state.pages += 1
                state.imported = len(staged)
                if state.pages % 10 == 0:
                    elapsed = max(1e-6, self._wall() - (state.import_started or self._wall()))
                    self.log.info("source {source}: import page {pages}, {count} contacts ({rate:.0f}/s)",
                                  source=self.name, pages=state.pages, count=state.imported, rate=state.imported / elapsed)
                if progressive and state.pages % self._save_every == 0 and page.next_link:
                    self._saved("import_progress")
                if page.delta_link:
                    state.delta_link = page.delta_link
        if progressive:
            # Every page is applied already: the last apply only has to catch what the index holds
            # and the import does not (nothing, normally).  Found in slices: there is no mix of old
            # and new data to hide.
            swap = []
            for n, c in enumerate(staged.values()):
                if not self._index.unchanged(c):
                    swap.append(Upsert(c))
                if n % 100 == 99:
                    await self._breathe()
            if swap or len(self._index) != len(staged):
                # The index holds more than this import (other sources, perhaps stale contacts of
                # this one): look at this source's contacts.  contacts() copies the index's entries
                # (other sources may apply meanwhile); collections would only scan that copy.
                collecting = gc.isenabled()
                gc.disable()
                try:
                    for n, c in enumerate(self._index.contacts(self.name)):
                        if c.id not in staged:
                            swap.append(Remove(self.name, c.id))
                        if n % 100 == 99:
                            await self._breathe()
                finally:
                    if collecting:
                        gc.enable()
        else:
            stale = [Remove(self.name, c.id) for c in self._index.contacts(self.name) if c.id not in staged]
            swap = stale + [ready[i] if i in ready else Upsert(c) for i, c in staged.items()]
        self._index.apply(swap)  # one call: searches see the old data or the new, never a mix
        state.next_link = None
        self.log.info("source {source}: full import done: {count} contacts in {pages} pages", source=self.name,
                      count=len(staged), pages=state.pages)
        self._saved("import_done")

    async def _delta_round(self) -> None:
        state = self.state
        assert state.delta_link
        changes: list = []
        new_link = None
        pages = 0
        self._slice_started = self._now()
        async with aclosing(self._pages(state.delta_link)) as round_pages:
            async for page in round_pages:
                changes.extend(await self._prepare(page.changes))
                pages += 1
                new_link = page.delta_link
        upserted, removed = self._index.apply(changes)
        state.delta_link = new_link
        self.log.info("source {source}: delta round: {up} added or changed, {rm} removed, {pages} pages",
                      source=self.name, up=upserted, rm=removed, pages=pages)
        self._saved("delta_round")

"""Keeping snapshots: load at start, save after sync progress, periodically and at stop.

A save takes the contacts and sync states on the reactor thread (so they are
consistent with each other), then encodes and writes in a worker thread.
Saves never overlap: a request during a save is remembered and done after
it.  A failed write (read-only directory, disk full) is logged and retried;
the service keeps serving.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from gateway.snapshot.codec import Snapshot, SourceSnapshot, encode_parts
from gateway.snapshot.store import FileSnapshotStore, SnapshotWriteError

__all__ = ["SnapshotKeeper", "RETRY_AFTER"]

#: Seconds before a failed save is tried again.
RETRY_AFTER = 60.0


class SnapshotKeeper(Service):
    """Saves the index and sync states of the sources that ``collect`` names."""

    log = Logger()

    def __init__(
        self,
        store: FileSnapshotStore,
        collect: Callable[[], dict[str, SourceSnapshot]],
        reactor: Any,
        clock: Any,
        interval: float | None = None,
        on_saved: Callable[[float], object] | None = None,
        extensions: Callable[[], Callable[[], Mapping[str, bytes | Sequence[bytes]]]] | None = None,
    ) -> None:
        self.store = store
        self._collect = collect
        self._reactor = reactor
        self._clock = clock
        self._interval = interval
        self._on_saved = on_saved
        # called with the sources, on the reactor thread: what makes the snapshot's extensions
        # in the writing thread
        self._extensions = extensions
        self._saving: Deferred | None = None
        self._again = False
        self._retry: Any = None
        self._loop: LoopingCall | None = None
        self.last_saved: float | None = None  # wall clock
        self.last_error: str | None = None
        self.saves = 0

    def load(self, contacts: bool = True) -> Snapshot | None:
        """The newest valid snapshot (blocking; called at start, before listening);
        ``contacts=False``: its contacts left undecoded (see ``codec.decode``)."""
        started = time.perf_counter()
        snapshot, problems = self.store.load(contacts)
        for problem in problems:
            self.log.warn("snapshot: {problem}", problem=problem)
        if snapshot is not None:
            self.last_saved = snapshot.created
            counts = ", ".join(f"{n}: {len(s.contacts) if contacts else 'not decoded'}"
                               for n, s in snapshot.sources.items()) or "no sources"
            self.log.info("snapshot loaded in {seconds:.2f}s ({counts})", seconds=time.perf_counter() - started,
                          counts=counts)
        elif not problems:
            self.log.info("no snapshot yet in {directory}", directory=self.store.directory)
        return snapshot

    def startService(self) -> None:
        super().startService()
        if self._interval:
            self._loop = LoopingCall(self.request)
            self._loop.clock = self._clock
            self._loop.start(self._interval, now=False)

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        return self.save_now()

    def request(self, reason: str = "interval") -> None:
        """Save soon; coalesces with a save under way."""
        if self._saving is not None:
            self._again = True
            return
        self._start()

    def save_now(self) -> Deferred:
        """Save, and fire when it is written (after a save under way)."""
        if self._saving is not None:
            done: Deferred = Deferred()
            self._saving.addBoth(lambda _: self.save_now().chainDeferred(done))
            return done
        return self._start()

    def _start(self) -> Deferred:
        sources = self._collect()
        created = self._clock.seconds() if hasattr(self._clock, "seconds") else time.time()
        wall = time.time()
        started = time.perf_counter()

        extensions = self._extensions() if self._extensions is not None else None

        def write() -> str:
            return self.store.save(encode_parts(sources, wall, extensions() if extensions is not None else None))

        d = deferToThreadPool(self._reactor, self._reactor.getThreadPool(), write)
        self._saving = d
        d.addCallbacks(self._saved, self._failed, callbackArgs=(wall, started))
        d.addBoth(self._done)
        del created
        return d

    def _saved(self, path: str, wall: float, started: float) -> None:
        seconds = time.perf_counter() - started
        self.last_saved = wall
        self.last_error = None
        self.saves += 1
        for problem in getattr(self.store, "problems", []) or []:
            self.log.warn("snapshot: {problem}", problem=problem)
        if self._on_saved is not None:
            self._on_saved(seconds)
        self.log.debug("snapshot saved to {path} in {seconds:.2f}s", path=path, seconds=seconds)

    def _failed(self, failure) -> None:
        error = failure.value
        message = str(error) if isinstance(error, SnapshotWriteError) else f"{type(error).__name__}: {error}"
        self.last_error = message
        self.log.error("snapshot not saved: {message}; still serving, retrying in {retry:g}s", message=message,
                       retry=RETRY_AFTER)
        if self.running and (self._retry is None or not self._retry.active()):
            self._retry = self._clock.callLater(RETRY_AFTER, self.request, "retry")

    def _done(self, _: object) -> None:
        self._saving = None
        if self._again:
            self._again = False
            self._start()

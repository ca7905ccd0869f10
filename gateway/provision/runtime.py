"""What the commands take from the world: clocks, sleeping, the host name, stdin; and retries.

Tests pass a `Runtime` whose ``sleep`` moves the emulator's clock instead of waiting, so riding
out a replication delay of minutes takes milliseconds.
"""

from __future__ import annotations

import random
import socket
import sys
import time
from collections.abc import Callable
from typing import IO, TypeVar

from attrs import define, field

from gateway.provision.errors import GraphError

__all__ = ["Runtime", "Printer", "retry"]

T = TypeVar("T")


@define
class Runtime:
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    """Seconds since the epoch (certificate dates, expiry warnings)."""
    hostname: Callable[[], str] = socket.gethostname
    stdin: IO[str] | None = None
    """Where confirmations are read from (default: sys.stdin)."""
    jitter: Callable[[], float] = field(default=random.random)

    def read_line(self) -> str:
        stream = self.stdin if self.stdin is not None else sys.stdin
        return stream.readline()


class Printer:
    """Prints each step on its own line as it happens (flushing), and warnings to stderr."""

    def __init__(self, stdout: IO[str], stderr: IO[str]) -> None:
        self.stdout = stdout
        self.stderr = stderr

    def __call__(self, line: str = "") -> None:
        self.stdout.write(line + "\n")
        self.stdout.flush()

    def prompt(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def error(self, line: str) -> None:
        self.stderr.write(line + "\n")
        self.stderr.flush()


def retry(runtime: Runtime, out: Printer, what: str, attempt: Callable[[], T],
          retriable: Callable[[Exception], str | None], budget: float = 300.0,
          first: float = 2.0, cap: float = 30.0) -> T:
    """Call ``attempt`` (``what``) until it succeeds, retrying while ``retriable(error)`` names a reason.

    Exponential backoff from ``first`` to ``cap`` seconds with jitter, within ``budget`` seconds
    (graph.md §10.3 recommends 2 s to 30 s for a few minutes).  A ``Retry-After`` of a 429/503
    is honoured.  Each wait is printed.  The last error is raised when the budget is spent.
    """
    deadline = runtime.monotonic() + budget
    delay = first
    while True:
        try:
            return attempt()
        except Exception as e:  # noqa: BLE001 (retriable decides)
            reason = retriable(e)
            if reason is None:
                raise
            wait = delay * (0.8 + 0.4 * runtime.jitter())
            if isinstance(e, GraphError) and e.retry_after is not None:
                wait = max(wait, min(e.retry_after, 120.0))
            if runtime.monotonic() + wait > deadline:
                raise
            out(f"  {reason}; retrying in {wait:.0f} s")
            runtime.sleep(wait)
            delay = min(cap, delay * 2)


def replication_or_transient(e: Exception) -> str | None:
    """The reason to retry a Graph call: not yet replicated, throttled or unavailable."""
    if isinstance(e, GraphError):
        if e.replication:
            return f"not replicated yet ({e.short()})"
        if e.transient:
            return f"Graph is busy ({e.short()})"
    return None

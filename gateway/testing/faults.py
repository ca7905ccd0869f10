"""Programmable faults: what the next N requests of one kind get instead of a normal answer.

Kinds of request (`REQUEST_KINDS`): ``token`` (the Entra token endpoint), ``devicecode``
(the device authorization endpoint), ``discovery`` (OpenID and instance discovery), ``delta``
(``/v1.0/contacts/delta``), ``contacts`` (``/v1.0/contacts``, ``/contacts/{id}``,
``/contacts/$count``), ``directory`` (``/v1.0/applications``, ``/servicePrincipals``,
``/directory``: app provisioning).

Example: the next three delta requests get 429 with ``Retry-After: 2``::

    emulator.inject("delta", Fault.throttle(retry_after=2), count=3)
"""

from __future__ import annotations

import collections
import datetime
import email.utils
from collections.abc import Mapping
from typing import Any

from attrs import define, field, frozen

__all__ = ["Fault", "FaultPlan", "REQUEST_KINDS", "ACTIONS"]

REQUEST_KINDS = ("token", "devicecode", "discovery", "delta", "contacts", "directory")

#: What a fault does with the request (besides an optional delay):
#: ``respond`` answers normally (a pure delay) or with ``status`` when one is set;
#: ``drop`` aborts the TCP connection without an answer;
#: ``cut`` sends the headers and half the body, then closes the connection;
#: ``truncate`` answers 200 with a complete HTTP response whose JSON is cut in half;
#: ``malformed`` answers 200 with a body that is not JSON;
#: ``wrong_shape`` answers 200 with JSON of an unexpected shape;
#: ``empty_page`` (delta) answers an empty page whose nextLink repeats the request.
ACTIONS = ("respond", "drop", "cut", "truncate", "malformed", "wrong_shape", "empty_page")


@frozen
class Fault:
    """One injected fault.  Build it with the named constructors."""

    action: str = "respond"
    status: int | None = None
    retry_after: float | str | None = None
    """``Retry-After`` header: seconds, or a literal header value."""
    retry_after_http_date: bool = False
    """Send ``retry_after`` seconds as an HTTP date (computed when answering)."""
    delay: float = 0.0
    """Seconds on the reactor clock before answering."""
    code: str | None = None
    """Error code for the body (default: the usual one for ``status``)."""

    def __attrs_post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; one of {', '.join(ACTIONS)}")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError("fault status must be 4xx or 5xx")
        if self.delay < 0:
            raise ValueError("delay must not be negative")

    @classmethod
    def error(cls, status: int, retry_after: float | str | None = None,
              http_date: bool = False, code: str | None = None) -> Fault:
        """Answer ``status`` with the Graph/Entra error body for it."""
        return cls(status=status, retry_after=retry_after, retry_after_http_date=http_date, code=code)

    @classmethod
    def throttle(cls, retry_after: float | str | None = 1, http_date: bool = False) -> Fault:
        """429 Too Many Requests, with ``Retry-After`` unless it is None."""
        return cls.error(429, retry_after, http_date)

    @classmethod
    def unavailable(cls, retry_after: float | str | None = 1, http_date: bool = False) -> Fault:
        """503 Service Unavailable, with ``Retry-After`` unless it is None."""
        return cls.error(503, retry_after, http_date)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Answer normally after ``seconds`` on the reactor clock."""
        return cls(delay=seconds)

    @classmethod
    def drop(cls) -> Fault:
        """Abort the TCP connection without answering."""
        return cls(action="drop")

    @classmethod
    def cut(cls) -> Fault:
        """Send headers and part of the body, then close the connection."""
        return cls(action="cut")

    @classmethod
    def truncated_json(cls) -> Fault:
        return cls(action="truncate")

    @classmethod
    def malformed_json(cls) -> Fault:
        return cls(action="malformed")

    @classmethod
    def wrong_shape(cls) -> Fault:
        return cls(action="wrong_shape")

    @classmethod
    def empty_page(cls) -> Fault:
        """(delta) An empty page with a nextLink that continues where the request was."""
        return cls(action="empty_page")

    @classmethod
    def sync_state_not_found(cls) -> Fault:
        """(delta) 400 ``syncStateNotFound``, as for an expired delta token."""
        return cls(status=400, code="syncStateNotFound")

    @classmethod
    def resync_gone(cls) -> Fault:
        """(delta) 410 Gone with a Location header: the sync state was reset."""
        return cls(status=410, code="resyncRequired")

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Fault:
        """A fault from the admin API's JSON (the attribute names as keys)."""
        allowed = {"action", "status", "retry_after", "retry_after_http_date", "delay", "code"}
        unknown = set(value) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in value.items()})

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "status": self.status, "retry_after": self.retry_after,
                "retry_after_http_date": self.retry_after_http_date, "delay": self.delay,
                "code": self.code}

    def retry_after_header(self, wall_clock_now: float) -> str | None:
        """The ``Retry-After`` value to send, if any."""
        if self.retry_after is None:
            return None
        if isinstance(self.retry_after, str):
            return self.retry_after
        if self.retry_after_http_date:
            when = datetime.datetime.fromtimestamp(wall_clock_now + self.retry_after,
                                                   datetime.timezone.utc)
            return email.utils.format_datetime(when, usegmt=True)
        seconds = self.retry_after
        return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


@define
class FaultPlan:
    """Queues of faults per request kind; each request of a kind takes the next one."""

    _queues: dict[str, collections.deque[Fault]] = field(
        factory=lambda: {kind: collections.deque() for kind in REQUEST_KINDS})

    def add(self, kind: str, fault: Fault, count: int = 1) -> None:
        """The next ``count`` requests of ``kind`` (after those already queued) get ``fault``."""
        if kind not in self._queues:
            raise ValueError(f"unknown request kind {kind!r}; one of {', '.join(REQUEST_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        self._queues[kind].extend([fault] * count)

    def take(self, kind: str) -> Fault | None:
        queue = self._queues.get(kind)
        return queue.popleft() if queue else None

    def pending(self, kind: str | None = None) -> int:
        if kind is None:
            return sum(len(q) for q in self._queues.values())
        return len(self._queues[kind])

    def clear(self) -> None:
        for queue in self._queues.values():
            queue.clear()

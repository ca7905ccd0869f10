"""Fetching Graph pages with treq, and telling Graph's failures apart.

One method, ``get_json(url)``: a bearer-token GET with a timeout on the
injected clock.  Failures come back as typed exceptions the sync policy
acts on: Throttled (429/503 with Retry-After), Transient (other 5xx,
timeouts, dropped connections, malformed bodies), Unauthorized (401),
Forbidden (403), ResyncRequired (expired delta token), GraphError.
"""

from __future__ import annotations

import email.utils
import json
from typing import Any, Callable

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectError, ConnectionLost, DNSLookupError, TimeoutError
from twisted.internet.task import deferLater
from twisted.web.client import ResponseFailed, ResponseNeverReceived

from gateway.auth import TokenError, TokenProvider

__all__ = [
    "GraphError",
    "Throttled",
    "Transient",
    "Unauthorized",
    "Forbidden",
    "ResyncRequired",
    "GraphClient",
    "parse_retry_after",
]

#: Bodies from this size on are decoded in the reactor's turn after the one that received them (a
#: page of 100 contacts takes about 0.3 ms to decode), so that LDAP requests are answered between.
DECODE_APART = 16384


class GraphError(Exception):
    """Graph answered with an error we cannot retry our way out of."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"HTTP {status} {code}: {message}")


class Throttled(GraphError):
    """429 or 503: wait ``retry_after`` seconds (None: back off on our own)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None) -> None:
        super().__init__(status, code, message)
        self.retry_after = retry_after


class Transient(GraphError):
    """5xx, timeouts, dropped connections, unreadable bodies: retry with backoff."""


class Unauthorized(GraphError):
    """401: the token was refused."""


class Forbidden(GraphError):
    """403: the app lacks a permission (OrgContact.Read.All, application)."""


class ResyncRequired(GraphError):
    """The delta token expired (400 syncStateNotFound, 410): start a full import."""

    def __init__(self, status: int, code: str, message: str, location: str | None = None) -> None:
        super().__init__(status, code, message)
        self.location = location


_RESYNC_CODES = {"syncstatenotfound", "resyncrequired", "syncstateinvalid"}


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: integer, decimal or HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, 3600.0))


def _error_code(body: Any) -> tuple[str, str]:
    """Graph's error code and message, walking innerError chains."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return "", ""
    error = body["error"]
    code = str(error.get("code") or "")
    message = str(error.get("message") or "")
    inner = error.get("innerError") or error.get("innererror")
    codes = [code]
    while isinstance(inner, dict):
        if inner.get("code"):
            codes.append(str(inner["code"]))
        inner = inner.get("innerError") or inner.get("innererror")
    for c in codes:
        if c.lower() in _RESYNC_CODES:
            return c, message
    return code, message


class GraphClient:
    """GETs Graph JSON with a bearer token from ``tokens``."""

    def __init__(
        self,
        http: Any,
        tokens: TokenProvider,
        clock: Any,
        timeout: float = 60.0,
        wall_clock: Callable[[], float] | None = None,
        reactor: Any = None,
    ) -> None:
        """``clock`` times the requests' timeouts; ``reactor`` (default: the global one) is where a
        large body waits for its turn to be decoded."""
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self._reactor = reactor
        self._http = http
        self._tokens = tokens
        self._clock = clock
        self._timeout = timeout
        self._wall_clock = wall_clock or clock.seconds
        self.responses: dict[int, int] = {}

    def close(self) -> Any:
        """Close idle persistent connections (on stop)."""
        pool = getattr(self._http, "pool", None)
        if pool is not None:
            return pool.closeCachedConnections()
        return None

    async def get_json(self, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """One page; retries a 401 once with a fresh token."""
        try:
            return await self._get_once(url, headers)
        except Unauthorized:
            self._tokens.invalidate()
            return await self._get_once(url, headers)

    async def _get_once(self, url: str, headers: dict[str, str] | None) -> dict[str, Any]:
        try:
            token = await self._tokens.token()
        except TokenError:
            raise
        request_headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if headers:
            request_headers.update(headers)
        try:
            response = await self._http.get(url, headers=request_headers, timeout=self._timeout,
                                            reactor=self._clock)
            body = await response.content()
        except (ResponseNeverReceived, ResponseFailed) as e:
            reasons = getattr(e, "reasons", [])
            if any(r.check(CancelledError) for r in reasons):
                raise Transient(0, "timeout", f"no answer within {self._timeout:g}s")
            raise Transient(0, "connection", "the connection was lost before a complete answer")
        except CancelledError:
            raise Transient(0, "timeout", f"no answer within {self._timeout:g}s")
        except (ConnectError, ConnectionLost, DNSLookupError, TimeoutError) as e:
            raise Transient(0, "connection", f"cannot connect: {type(e).__name__}")
        status = response.code
        self.responses[status] = self.responses.get(status, 0) + 1
        if len(body) >= DECODE_APART:
            await deferLater(self._reactor, 0, lambda: None)
        parsed: Any = None
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        if 200 <= status < 300:
            if not isinstance(parsed, dict):
                raise Transient(status, "malformed", "the response body is not a JSON object")
            return parsed
        code, message = _error_code(parsed)
        retry_after = parse_retry_after(_header(response, "Retry-After"), self._wall_clock())
        if status in (429, 503):
            raise Throttled(status, code or "throttled", message or "throttled", retry_after)
        if status == 401:
            raise Unauthorized(status, code or "unauthorized", message)
        if status == 403:
            raise Forbidden(status, code or "forbidden", message)
        if status == 410 or (status == 400 and code.lower() in _RESYNC_CODES):
            raise ResyncRequired(status, code or "gone", message, _header(response, "Location"))
        if status >= 500 or status == 408:
            raise Transient(status, code or "server_error", message)
        raise GraphError(status, code or "error", message)


def _header(response: Any, name: str) -> str | None:
    values = response.headers.getRawHeaders(name)
    return values[0] if values else None

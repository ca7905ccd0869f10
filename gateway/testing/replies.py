"""HTTP replies of the emulator as values, and the error envelopes of Graph and Entra."""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

from attrs import field, frozen

__all__ = ["Reply", "GRAPH_JSON", "ENTRA_JSON", "json_reply", "graph_error", "entra_error",
           "utc_timestamp"]

#: The Content-Type Graph answers with (graph.md §6).
GRAPH_JSON = ("application/json;odata.metadata=minimal;odata.streaming=true;"
              "IEEE754Compatible=false;charset=utf-8")
ENTRA_JSON = "application/json; charset=utf-8"


@frozen
class Reply:
    """Status, headers and body of one HTTP response."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(factory=dict)

    def json(self) -> Any:
        """The body parsed as JSON (for tests and fault transforms)."""
        return json.loads(self.body)


def utc_timestamp(fmt: str = "%Y-%m-%dT%H:%M:%S") -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime(fmt)


def json_reply(status: int, value: Any, content_type: str = GRAPH_JSON,
               headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps(value, separators=(",", ":")).encode("utf-8")
    return Reply(status, body, {"Content-Type": content_type, **(headers or {})})


def graph_error(status: int, code: str, message: str, client_request_id: str | None = None,
                request_id: str | None = None, headers: dict[str, str] | None = None,
                inner: dict[str, Any] | None = None) -> Reply:
    """A Graph error: ``{"error": {"code", "message", "innerError": {...}}}``."""
    request_id = request_id or str(uuid.uuid4())
    inner_error: dict[str, Any] = {
        "date": utc_timestamp(),
        "request-id": request_id,
        "client-request-id": client_request_id or request_id,
    }
    inner_error.update(inner or {})
    body = {"error": {"code": code, "message": message, "innerError": inner_error}}
    return json_reply(status, body, GRAPH_JSON, headers)


def entra_error(status: int, error: str, aadsts: int, description: str,
                correlation_id: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    """An Entra token-endpoint error in the §9.3 envelope."""
    trace_id = str(uuid.uuid4())
    correlation_id = correlation_id or str(uuid.uuid4())
    timestamp = utc_timestamp("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": error,
        "error_description": (f"AADSTS{aadsts}: {description}\r\nTrace ID: {trace_id}\r\n"
                              f"Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}"),
        "error_codes": [aadsts],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}",
    }
    return json_reply(status, body, ENTRA_JSON,
                      {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache", **(headers or {})})

"""``dirgw status [--config FILE] [--json] [--url URL]``: a readable overview from ``GET /status``.

The URL of the admin endpoint comes from ``--url`` or from the configuration's ``[admin] listen``
endpoint string (``tcp:8389:interface=127.0.0.1`` -> ``http://127.0.0.1:8389``).  Only the
``[admin]`` table is read, so the command works for an operator who cannot read the secrets
the rest of the file points to.

Exit status: 0 when no source failed, 1 when any source failed, 2 when the admin endpoint
cannot be reached (or its address cannot be worked out).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tomllib
import urllib.error
import urllib.request
from typing import IO, Any, Callable, Sequence

__all__ = [
    "main",
    "status_main",
    "admin_url",
    "format_status",
    "progress_bar",
    "human_duration",
    "DEFAULT_ADMIN_LISTEN",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_UNREACHABLE",
]

DEFAULT_ADMIN_LISTEN = "tcp:8389:interface=127.0.0.1"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNREACHABLE = 2

Fetch = Callable[[str, float], bytes]


class _Unreachable(Exception):
    pass


def _split_endpoint(description: str) -> list[str]:
    from gateway.ops.tls import split_endpoint

    return split_endpoint(description)


def admin_url(listen: str) -> str:
    """The base URL for an ``[admin] listen`` endpoint string.

    ``tcp:8389:interface=127.0.0.1`` -> ``http://127.0.0.1:8389``; a wildcard or missing interface
    means the loopback address of that family.  Raises ValueError for anything but tcp/tcp6.
    """
    parts = _split_endpoint(listen.strip())
    kind = parts[0].lower()
    if kind not in ("tcp", "tcp6") or len(parts) < 2:
        raise ValueError(f"cannot reach an admin endpoint {listen!r} over HTTP; use a tcp: endpoint or --url")
    port = None
    interface = None
    positional = []
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        if eq:
            if key == "port":
                port = value
            elif key == "interface":
                interface = value
        else:
            positional.append(part)
    if port is None and positional:
        port = positional[0]
    if not port or not port.isdigit() or int(port) == 0:
        raise ValueError(f"no usable port in the admin endpoint {listen!r}")
    if interface in (None, "", "0.0.0.0"):
        interface = "::1" if kind == "tcp6" else "127.0.0.1"
    elif interface == "::":
        interface = "::1"
    host = f"[{interface}]" if ":" in interface else interface
    return f"http://{host}:{int(port)}"


def _listen_from_config(path: str, explicit: bool) -> str:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        if explicit:
            raise _Unreachable(f"{path}: no such file; pass --config FILE or --url URL")
        return DEFAULT_ADMIN_LISTEN
    except OSError as e:
        raise _Unreachable(f"{path}: cannot read: {e.strerror}")
    except tomllib.TOMLDecodeError as e:
        raise _Unreachable(f"{path}: not valid TOML: {e}")
    admin = data.get("admin", {})
    listen = admin.get("listen", DEFAULT_ADMIN_LISTEN) if isinstance(admin, dict) else DEFAULT_ADMIN_LISTEN
    if not isinstance(listen, str):
        raise _Unreachable(f"{path}: admin.listen: expected an endpoint string like {DEFAULT_ADMIN_LISTEN!r}")
    return listen


def _urllib_fetch(url: str, timeout: float) -> bytes:
    # no proxies: the admin endpoint is (almost always) on loopback, and an http_proxy
    # environment variable must not send the request elsewhere
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.request.Request(url, headers={"Accept": "application/json"}), timeout=timeout) as r:
        return r.read()


# -- formatting ------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """``35s``, ``4m 10s``, ``2h 5m``, ``3d 4h``."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s}s" if s else f"{m}m"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h {m}m" if m else f"{h}h"
    d, h = divmod(h, 24)
    return f"{d}d {h}h" if h else f"{d}d"


def progress_bar(fraction: float, width: int = 12) -> str:
    """``[#######-----]`` for ``fraction`` in 0..1."""
    fraction = min(1.0, max(0.0, fraction))
    done = int(fraction * width)
    return "[" + "#" * done + "-" * (width - done) + "]"


def _n(value: Any) -> str:
    return f"{int(value):,}"


def _when(iso_text: str | None, now_iso: str | None) -> str:
    """``10:03:12Z (in 42s)`` / ``2024-05-01 10:00Z (3m ago)`` relative to the document's time."""
    if not iso_text:
        return "never"
    import datetime

    when = datetime.datetime.fromisoformat(iso_text.replace("Z", "+00:00"))
    text = when.strftime("%Y-%m-%d %H:%M:%SZ")
    if now_iso:
        now = datetime.datetime.fromisoformat(now_iso.replace("Z", "+00:00"))
        delta = (when - now).total_seconds()
        text += f" (in {human_duration(delta)})" if delta >= 0 else f" ({human_duration(-delta)} ago)"
    return text


def _source_line(source: dict[str, Any], width: int, now_iso: str | None) -> str:
    name = source.get("name", "?").ljust(width)
    state = source.get("state", "?")
    progress = source.get("progress")
    error = source.get("last_error")
    if state == "failed":
        detail = f"FAILED: {source.get('reason') or error or 'unknown reason'}"
        if source.get("contacts"):
            detail += f"; serving {_n(source['contacts'])} contacts from the last good data"
        return f"{name}  {detail}"
    if progress is not None:
        bits = []
        rate = progress.get("rate")
        if progress.get("total"):
            percent = progress.get("percent") or 0.0
            total = f"~{_n(progress['total'])}" if progress.get("total_estimated") else _n(progress["total"])
            bits.append(f"{progress_bar(percent / 100)} {percent:3.0f}% {_n(progress['contacts'])}/{total} contacts")
        else:
            bits.append(f"{_n(progress['contacts'])} contacts so far (total unknown), page {_n(progress['pages'])}")
        if rate is not None:
            bits.append(f"{_n(rate)}/s")
        if progress.get("eta_seconds") is not None:
            bits.append(f"ETA {human_duration(progress['eta_seconds'])}")
        label = "importing" if state != "backing_off" else "importing, backing off"
        line = f"{name}  {label} " + ", ".join(bits)
        if state == "backing_off":
            line += f"; retrying at {_when(source.get('until'), now_iso)}"
            if error:
                line += f": {error}"
        return line
    if state == "backing_off":
        return f"{name}  backing off until {_when(source.get('until'), now_iso)}: {error or 'throttled'}"
    parts = [f"{_n(source.get('contacts') or 0)} contacts"]
    if source.get("type") != "json_file" or source.get("last_success"):
        parts.append(f"last sync {_when(source.get('last_success'), now_iso)}")
    if source.get("next_sync"):
        parts.append(f"next {_when(source.get('next_sync'), now_iso)}")
    if source.get("throttling_events"):
        parts.append(f"throttled {_n(source['throttling_events'])}x")
    if error:
        parts.append(f"last error: {error}")
    return f"{name}  {state}: " + ", ".join(parts)


def format_status(doc: dict[str, Any]) -> str:
    """The readable overview: one line per source, then index, snapshot and LDAP."""
    sources = doc.get("sources") or []
    width = max((len(s.get("name", "")) for s in sources), default=0)
    now_iso = doc.get("generated")
    lines = [_source_line(s, width, now_iso) for s in sources]
    if not sources:
        lines.append("no sources configured")
    index = doc.get("index") or {}
    snapshot = (doc.get("snapshot") or {}).get("age_seconds")
    ldap = doc.get("ldap") or {}
    summary = [f"index: {_n(index.get('contacts') or 0)} contacts"]
    summary.append("snapshot: none yet" if snapshot is None else f"snapshot: {human_duration(snapshot)} old")
    summary.append(
        f"LDAP: {_n(ldap.get('connections') or 0)} open connections, "
        f"{_n(ldap.get('requests_total') or sum((ldap.get('requests') or {}).values()))} requests"
    )
    lines.append("; ".join(summary))
    return "\n".join(lines) + "\n"


# -- the command -----------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dirgw status", description="Show the running gateway's status.")
    parser.add_argument("--config", "-c", default=None, help="configuration file (default: dirgw.toml)")
    parser.add_argument("--json", action="store_true", help="print the raw /status JSON")
    parser.add_argument("--url", default=None, help="admin endpoint base URL, e.g. http://127.0.0.1:8389")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer (default 5)")
    return parser


def status_main(
    argv: Sequence[str], stdout: IO[str], stderr: IO[str], fetch: Fetch | None = None
) -> int:
    """Run ``dirgw status``; ``fetch(url, timeout) -> bytes`` is injectable for tests."""
    fetch = fetch or _urllib_fetch
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            args = _parser().parse_args(list(argv))
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    try:
        if args.url:
            base = args.url.rstrip("/")
        else:
            listen = _listen_from_config(args.config or "dirgw.toml", explicit=args.config is not None)
            try:
                base = admin_url(listen)
            except ValueError as e:
                raise _Unreachable(str(e))
        url = base + "/status"
        try:
            body = fetch(url, args.timeout)
        except urllib.error.HTTPError as e:
            raise _Unreachable(f"{url}: the admin endpoint answered {e.code} {e.reason}")
        except urllib.error.URLError as e:
            reason = e.reason.strerror if isinstance(e.reason, OSError) and e.reason.strerror else e.reason
            raise _Unreachable(f"cannot reach the admin endpoint at {base}: {reason}; is dirgw running?")
        except (OSError, TimeoutError) as e:
            raise _Unreachable(f"cannot reach the admin endpoint at {base}: {e.strerror or e}; is dirgw running?")
        try:
            doc = json.loads(body)
            if not isinstance(doc, dict) or not isinstance(doc.get("sources", []), list):
                raise ValueError("not a status document")
        except ValueError as e:
            raise _Unreachable(f"{url}: unexpected answer ({e}); is this a dirgw admin endpoint?")
    except _Unreachable as e:
        print(f"dirgw status: {e}", file=stderr)
        return EXIT_UNREACHABLE
    if args.json:
        stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    else:
        stdout.write(format_status(doc))
    failed = any(s.get("state") == "failed" for s in doc.get("sources", []))
    return EXIT_FAILED if failed else EXIT_OK


#: ``gateway.cli``'s delegated-command convention: ``main(argv, stdout, stderr)``.
main = status_main

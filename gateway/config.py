"""dirgw configuration: one TOML file, parsed once, validated strictly.

``parse_config(text, path)`` is pure; ``load_config(path)`` reads the file.
Every error names the file, the key and what was expected.  Relative paths
in the file are relative to the file's directory.
"""

from __future__ import annotations

import os
import re
import tomllib
from typing import Any, Callable

from attrs import field, frozen

__all__ = [
    "ConfigError",
    "Config",
    "LdapConfig",
    "SourceConfig",
    "ProximityConfig",
    "parse_config",
    "load_config",
    "parse_duration",
]


class ConfigError(Exception):
    """The configuration file is not valid."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        super().__init__(f"{path}: {key}: {problem}")


@frozen
class NumbersConfig:
    """Location settings for number conversion ([numbers], [sources.numbers])."""

    country: str = "DE"
    area_code: str = ""
    outside_line: str = ""
    main_number: str = ""
    extension_length: int = 3
    output: str = "e164"
    international_prefix: str | None = None
    national_prefix: str | None = None
    other_countries: tuple[str, ...] = ()
    answer_as_asked: bool = False


@frozen
class ProximityConfig:
    """Company main-number fallback for caller-ID lookups ([proximity])."""

    enabled: bool = True
    max_extension_digits: int = 5
    marker: str = "~"


@frozen
class SourceConfig:
    """One data source ([[sources]])."""

    name: str
    type: str
    priority: int = 100
    path: str | None = None
    numbers: NumbersConfig | None = None
    proximity: bool | None = None
    options: dict[str, Any] = field(factory=dict)


@frozen
class LdapConfig:
    """The LDAP service ([ldap])."""

    listen: tuple[str, ...] = ("tcp:3389:interface=127.0.0.1",)
    base_dn: str = "dc=example,dc=com"
    size_limit: int = 1000
    time_limit: int = 10
    anonymous: bool = True
    max_connections: int = 4096
    max_connections_per_address: int = 256
    idle_timeout: float = 600.0
    max_pdu_size: int = 262144
    max_filter_depth: int = 64
    max_filter_items: int = 1024
    tls_certificate: str | None = None
    tls_key: str | None = None
    require_tls: bool = False
    allow_from: tuple[str, ...] | None = None
    anonymous_sources: tuple[str, ...] | None = None
    duplicates: str = "all"
    listeners: tuple["ListenerConfig", ...] = ()
    failed_bind_free: int = 2
    failed_bind_max_delay: float = 30.0
    max_requests_in_flight: int = 8
    answer_cache: int = 8192


@frozen
class ListenerConfig:
    """A listener with its own access settings ([[ldap.listeners]])."""

    endpoint: str
    anonymous: bool = True
    allow_from: tuple[str, ...] | None = None


@frozen
class UserConfig:
    """A bind user ([[users]])."""

    dn: str
    password_hash: str
    sources: tuple[str, ...] | None = None
    allow_from: tuple[str, ...] | None = None

    def __repr__(self) -> str:  # the hash is not a secret, but it has no business in logs
        return f"UserConfig(dn={self.dn!r})"


@frozen
class SearchConfig:
    """Name search ([search])."""

    fuzzy_threshold: float = 80.0
    fuzzy_fallback: bool = False
    fuzzy_fallback_threshold: float = 80.0
    fuzzy_max_results: int = 20


@frozen
class AdminConfig:
    """The HTTP admin endpoint ([admin]): /status, /metrics, /healthz, /readyz."""

    listen: str | None = "tcp:8389:interface=127.0.0.1"


@frozen
class SnapshotConfig:
    """Snapshots on disk ([snapshot])."""

    directory: str | None = None
    interval: float | None = None
    pages: int = 50
    #: after an import of at least this many contacts, once the snapshot with the compact base is
    #: saved, ``dirgw serve`` restarts itself from it to give back the import's memory (0: never)
    restart_after_import: int = 500000


@frozen
class Config:
    """The whole configuration."""

    path: str
    ldap: LdapConfig
    sources: tuple[SourceConfig, ...]
    numbers: NumbersConfig = NumbersConfig()
    proximity: ProximityConfig = ProximityConfig()
    admin: AdminConfig = AdminConfig()
    snapshot: SnapshotConfig = SnapshotConfig()
    users: tuple[UserConfig, ...] = ()
    search: SearchConfig = SearchConfig()

    def numbers_for(self, source: SourceConfig) -> NumbersConfig:
        """The number settings in force for one source."""
        return source.numbers or self.numbers


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: str | int | float) -> float:
    """Seconds from ``"5m"``, ``"30s"``, ``"1h"``, ``"250ms"`` or a number."""
    if isinstance(value, bool):
        raise ValueError("a duration such as \"30s\", \"5m\" or \"1h\"")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a non-negative duration")
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError("a duration such as \"30s\", \"5m\" or \"1h\"")
    return float(match.group(1)) * _UNITS[match.group(2)]


class _Table:
    """Reads one TOML table, checking types, and reports unknown keys."""

    def __init__(self, path: str, prefix: str, data: Any) -> None:
        self.path = path  # the configuration file
        self.prefix = prefix
        if not isinstance(data, dict):
            raise ConfigError(path, prefix, "expected a table")
        self.data = data
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), problem)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any, what: str) -> Any:
        self.seen.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(name, f"expected {what}, got {value!r}")
        if not isinstance(value, kinds):
            raise self.error(name, f"expected {what}, got {value!r}")
        return value

    def check(self, name: str, value: Any, ok: Callable[[Any], bool], what: str) -> Any:
        if not ok(value):
            raise self.error(name, f"expected {what}, got {value!r}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            known = ", ".join(sorted(self.seen))
            raise self.error(unknown[0], f"unknown key (known keys here: {known})")


def _endpoint_ok(value: Any) -> bool:
    return isinstance(value, str) and bool(re.match(r"^(tcp|ssl|tcp6|unix|systemd):", value))


def _parse_ldap(path: str, data: Any) -> LdapConfig:
    t = _Table(path, "ldap", data)
    listen = t.get("listen", (list, str), ["tcp:3389:interface=127.0.0.1"], "a list of endpoint strings")
    if isinstance(listen, str):
        listen = [listen]
    for i, item in enumerate(listen):
        if not _endpoint_ok(item):
            raise ConfigError(
                path, f"ldap.listen[{i}]", f"expected a Twisted endpoint string like \"tcp:389\", got {item!r}"
            )
    base_dn = t.get("base_dn", str, "dc=example,dc=com", "a DN string like \"dc=example,dc=com\"")
    from gateway.ldap.schema import normalize_dn

    try:
        if not normalize_dn(base_dn):
            raise ValueError
    except ValueError:
        raise t.error("base_dn", f"expected a DN like \"dc=example,dc=com\", got {base_dn!r}")
    positive = lambda v: v > 0  # noqa: E731
    config = LdapConfig(
        listen=tuple(listen),
        base_dn=base_dn,
        size_limit=t.check("size_limit", t.get("size_limit", int, 1000, "an integer"), positive, "a positive integer"),
        time_limit=t.check("time_limit", t.get("time_limit", int, 10, "an integer (seconds)"), positive, "a positive integer"),
        anonymous=t.get("anonymous", bool, True, "true or false"),
        max_connections=t.check(
            "max_connections", t.get("max_connections", int, 4096, "an integer"), positive, "a positive integer"
        ),
        max_connections_per_address=t.check(
            "max_connections_per_address",
            t.get("max_connections_per_address", int, 256, "an integer"),
            positive,
            "a positive integer",
        ),
        idle_timeout=_duration(t, "idle_timeout", 600.0),
        max_pdu_size=t.check(
            "max_pdu_size", t.get("max_pdu_size", int, 262144, "an integer (bytes)"), lambda v: v >= 1024, "at least 1024"
        ),
        max_filter_depth=t.check(
            "max_filter_depth", t.get("max_filter_depth", int, 64, "an integer"), positive, "a positive integer"
        ),
        max_filter_items=t.check(
            "max_filter_items", t.get("max_filter_items", int, 1024, "an integer"), positive, "a positive integer"
        ),
        tls_certificate=_path(t, "tls_certificate"),
        tls_key=_path(t, "tls_key"),
        require_tls=t.get("require_tls", bool, False, "true or false"),
        allow_from=_networks(t, "allow_from"),
        anonymous_sources=_names(t, "anonymous_sources"),
        duplicates=t.check("duplicates", t.get("duplicates", str, "all", "\"all\" or \"highest\""),
                           lambda v: v in ("all", "highest"), "\"all\" or \"highest\""),
        listeners=_listeners(path, t),
        failed_bind_free=t.check("failed_bind_free", t.get("failed_bind_free", int, 2, "an integer"),
                                 lambda v: v >= 0, "zero or more"),
        failed_bind_max_delay=_duration(t, "failed_bind_max_delay", 30.0),
        max_requests_in_flight=t.check(
            "max_requests_in_flight", t.get("max_requests_in_flight", int, 8, "an integer"), positive,
            "a positive integer"),
        answer_cache=t.check("answer_cache", t.get("answer_cache", int, 8192, "an integer"), lambda v: v >= 0,
                             "zero (off) or more"),
    )
    t.finish()
    wants_tls = config.require_tls or any(d.startswith("ssl:") for d in config.listen)
    if wants_tls and not (config.tls_certificate and config.tls_key):
        raise ConfigError(path, "ldap.tls_certificate",
                          "an ssl: listener or require_tls needs tls_certificate and tls_key (PEM files)")
    if bool(config.tls_certificate) != bool(config.tls_key):
        raise ConfigError(path, "ldap.tls_key", "tls_certificate and tls_key go together")
    return config


def _networks(t: "_Table", name: str) -> tuple[str, ...] | None:
    value = t.get(name, list, None, "a list of networks like [\"10.0.0.0/8\"]")
    if value is None:
        return None
    from gateway.access import parse_networks

    try:
        parse_networks([str(v) for v in value])
    except ValueError as e:
        raise t.error(name, f"expected networks like \"10.0.0.0/8\": {e}")
    return tuple(str(v) for v in value)


def _names(t: "_Table", name: str) -> tuple[str, ...] | None:
    value = t.get(name, list, None, "a list of source names")
    if value is None:
        return None
    if not all(isinstance(v, str) for v in value):
        raise t.error(name, "expected a list of source names")
    return tuple(value)


def _listeners(path: str, t: "_Table") -> tuple[ListenerConfig, ...]:
    value = t.get("listeners", list, [], "an array of tables [[ldap.listeners]]")
    out = []
    for i, item in enumerate(value):
        lt = _Table(path, f"ldap.listeners[{i}]", item)
        endpoint = lt.get("endpoint", str, None, "an endpoint string")
        if endpoint is None or not _endpoint_ok(endpoint):
            raise lt.error("endpoint", f"expected a Twisted endpoint string like \"tcp:389\", got {endpoint!r}")
        out.append(ListenerConfig(endpoint=endpoint, anonymous=lt.get("anonymous", bool, True, "true or false"),
                                  allow_from=_networks(lt, "allow_from")))
        lt.finish()
    return tuple(out)


def _parse_users(path: str, value: Any, base_dn: str, sources: set[str]) -> tuple[UserConfig, ...]:
    if not isinstance(value, list):
        raise ConfigError(path, "users", "expected an array of tables [[users]]")
    out = []
    seen: dict[str, str] = {}
    for i, item in enumerate(value):
        t = _Table(path, f"users[{i}]", item)
        dn = t.get("dn", str, None, "a bind DN or name")
        if not dn:
            raise t.error("dn", "missing; the DN (or bare name) the phone binds with")
        password_hash = t.get("password_hash", str, None, "a hash made by `dirgw passwd`")
        if password_hash is None:
            raise t.error("password_hash", "missing; make one with `dirgw passwd` (plain passwords are not accepted)")
        from gateway.access import normalize_bind_name
        from gateway.passwords import is_valid_hash

        if not is_valid_hash(password_hash):
            raise t.error("password_hash", "expected a hash made by `dirgw passwd` ($scrypt$...), not a password")
        user_sources = _names(t, "sources")
        for name in user_sources or ():
            if name not in sources:
                raise t.error("sources", f"unknown source {name!r} (known: {', '.join(sorted(sources))})")
        allow = _networks(t, "allow_from")
        t.finish()
        key = normalize_bind_name(dn, base_dn) or ""
        if key in seen:
            raise t.error("dn", f"same bind name as {seen[key]!r}")
        seen[key] = dn
        out.append(UserConfig(dn=dn, password_hash=password_hash, sources=user_sources, allow_from=allow))
    return tuple(out)


def _parse_search(path: str, data: Any) -> SearchConfig:
    t = _Table(path, "search", data)
    score = lambda v: 0 <= v <= 100  # noqa: E731
    config = SearchConfig(
        fuzzy_threshold=float(t.check("fuzzy_threshold", t.get("fuzzy_threshold", (int, float), 80, "a number"),
                                      score, "a score from 0 to 100")),
        fuzzy_fallback=t.get("fuzzy_fallback", bool, False, "true or false"),
        fuzzy_fallback_threshold=float(t.check(
            "fuzzy_fallback_threshold", t.get("fuzzy_fallback_threshold", (int, float), 80, "a number"),
            score, "a score from 0 to 100")),
        fuzzy_max_results=t.check("fuzzy_max_results", t.get("fuzzy_max_results", int, 20, "an integer"),
                                  lambda v: v >= 1, "a positive integer"),
    )
    t.finish()
    return config


def _path(t: "_Table", name: str) -> str | None:
    value = t.get(name, str, None, "a file path")
    if value is None:
        return None
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(t.path)), value))


def _parse_admin(path: str, data: Any) -> AdminConfig:
    t = _Table(path, "admin", data)
    listen = t.get("listen", str, "tcp:8389:interface=127.0.0.1", "an endpoint string, or \"\" for none")
    if listen and not _endpoint_ok(listen):
        raise t.error("listen", f"expected a Twisted endpoint string like \"tcp:8389:interface=127.0.0.1\", got {listen!r}")
    t.finish()
    return AdminConfig(listen=listen or None)


def _parse_snapshot(path: str, data: Any) -> SnapshotConfig:
    t = _Table(path, "snapshot", data)
    directory = _path(t, "directory")
    interval = None
    if "interval" in t.data:
        interval = _duration(t, "interval", 0.0)
        if interval < 1:
            raise t.error("interval", "expected at least 1s")
    pages = t.check("pages", t.get("pages", int, 50, "an integer"), lambda v: v >= 1, "a positive integer")
    restart = t.check("restart_after_import", t.get("restart_after_import", int, 500000, "an integer"),
                      lambda v: v >= 0, "a number of contacts (0: never)")
    t.finish()
    return SnapshotConfig(directory=directory, interval=interval, pages=pages, restart_after_import=restart)


def _duration(t: _Table, name: str, default: float) -> float:
    value = t.get(name, (str, int, float), default, "a duration such as \"30s\" or \"5m\"")
    try:
        return parse_duration(value)
    except ValueError as e:
        raise t.error(name, f"expected {e}, got {value!r}")


_OUTPUT_STYLES = ("e164", "international", "national", "dialable", "stored")


def _parse_numbers(path: str, prefix: str, data: Any, defaults: NumbersConfig) -> NumbersConfig:
    t = _Table(path, prefix, data)
    digits = lambda v: v == "" or v.isdigit()  # noqa: E731
    country = t.get("country", str, defaults.country, "an ISO region code like \"DE\"")
    country = t.check("country", country.upper(), lambda v: re.fullmatch(r"[A-Z]{2}", v) is not None, "an ISO region code like \"DE\"")
    config = NumbersConfig(
        country=country,
        area_code=t.check("area_code", t.get("area_code", str, defaults.area_code, "a string of digits"), digits, "digits"),
        outside_line=t.check(
            "outside_line", t.get("outside_line", str, defaults.outside_line, "a string of digits"), digits, "digits"
        ),
        main_number=t.get("main_number", str, defaults.main_number, "a phone number string"),
        extension_length=t.check(
            "extension_length",
            t.get("extension_length", int, defaults.extension_length, "an integer"),
            lambda v: 0 <= v <= 8,
            "an integer from 0 to 8",
        ),
        output=t.check(
            "output", t.get("output", str, defaults.output, "a string"), lambda v: v in _OUTPUT_STYLES, " | ".join(_OUTPUT_STYLES)
        ),
        international_prefix=t.get("international_prefix", str, defaults.international_prefix, "a string of digits"),
        national_prefix=t.get("national_prefix", str, defaults.national_prefix, "a string of digits"),
        other_countries=_regions(t, defaults.other_countries),
        answer_as_asked=t.get("answer_as_asked", bool, defaults.answer_as_asked, "true or false"),
    )
    for name in ("international_prefix", "national_prefix"):
        value = getattr(config, name)
        if value is not None and not value.isdigit():
            raise t.error(name, f"expected digits, got {value!r}")
    t.finish()
    _check_numbers(path, prefix, config)
    return config


def _regions(t: "_Table", default: tuple[str, ...]) -> tuple[str, ...]:
    value = t.get("other_countries", list, list(default), "a list of ISO region codes like [\"AT\", \"CH\"]")
    out = []
    for item in value:
        if not isinstance(item, str) or not re.fullmatch(r"[A-Za-z]{2}", item):
            raise t.error("other_countries", f"expected ISO region codes like \"AT\", got {item!r}")
        out.append(item.upper())
    return tuple(out)


def _check_numbers(path: str, prefix: str, config: NumbersConfig) -> None:
    """Deeper checks (country known, main number parses) by the numbers core."""
    try:
        from gateway.numbers import settings_from_config
    except ImportError:  # the numbers core is optional at this layer
        return
    try:
        settings_from_config(config)
    except ValueError as e:
        raise ConfigError(path, prefix, str(e))


_SOURCE_TYPES = ("json_file", "m365_mail_contacts")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _parse_source(path: str, index: int, data: Any, numbers: NumbersConfig) -> SourceConfig:
    prefix = f"sources[{index}]"
    t = _Table(path, prefix, data)
    name = t.get("name", str, None, "a name (letters, digits, - and _)")
    if name is None:
        raise t.error("name", "missing; every source needs a name")
    t.check("name", name, lambda v: _NAME.match(v) is not None, "a name of letters, digits, - and _ (at most 64)")
    kind = t.get("type", str, None, "a source type")
    if kind is None:
        raise t.error("type", f"missing; one of {', '.join(_SOURCE_TYPES)}")
    t.check("type", kind, lambda v: v in _SOURCE_TYPES, " | ".join(_SOURCE_TYPES))
    priority = t.check(
        "priority", t.get("priority", int, 100, "an integer"), lambda v: 1 <= v <= 999, "an integer from 1 to 999"
    )
    source_numbers = None
    if "numbers" in t.data:
        t.seen.add("numbers")
        source_numbers = _parse_numbers(path, f"{prefix}.numbers", t.data["numbers"], numbers)
    proximity = t.get("proximity", bool, None, "true or false")
    file_path = None
    options: dict[str, Any] = {}
    base = os.path.dirname(os.path.abspath(path))
    if kind == "json_file":
        file_path = t.get("path", str, None, "a file path")
        if file_path is None:
            raise t.error("path", "missing; a json_file source needs the path of its file")
        file_path = os.path.normpath(os.path.join(base, file_path))
    else:
        from gateway.m365config import parse_m365_options  # noqa: PLC0415

        options = parse_m365_options(t, base)
    t.finish()
    return SourceConfig(
        name=name,
        type=kind,
        priority=priority,
        path=file_path,
        numbers=source_numbers,
        proximity=proximity,
        options=options,
    )


def _parse_proximity(path: str, data: Any) -> ProximityConfig:
    t = _Table(path, "proximity", data)
    config = ProximityConfig(
        enabled=t.get("enabled", bool, True, "true or false"),
        max_extension_digits=t.check(
            "max_extension_digits",
            t.get("max_extension_digits", int, 5, "an integer"),
            lambda v: 1 <= v <= 8,
            "an integer from 1 to 8",
        ),
        marker=t.get("marker", str, "~", "a string"),
    )
    t.finish()
    return config


def parse_config(text: str, path: str) -> Config:
    """Parse and validate configuration text; ``path`` is used in messages and for relative paths."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "(file)", f"not valid TOML: {e}")
    top = _Table(path, "", data)
    ldap = _parse_ldap(path, top.get("ldap", dict, {}, "a table [ldap]"))
    numbers = NumbersConfig()
    if "numbers" in data:
        numbers = _parse_numbers(path, "numbers", top.get("numbers", dict, {}, "a table [numbers]"), numbers)
    proximity = _parse_proximity(path, top.get("proximity", dict, {}, "a table [proximity]"))
    admin = _parse_admin(path, top.get("admin", dict, {}, "a table [admin]"))
    snapshot = _parse_snapshot(path, top.get("snapshot", dict, {}, "a table [snapshot]"))
    raw_sources = top.get("sources", list, [], "an array of tables [[sources]]")
    sources = tuple(_parse_source(path, i, s, numbers) for i, s in enumerate(raw_sources))
    seen: set[str] = set()
    for i, source in enumerate(sources):
        if source.name in seen:
            raise ConfigError(path, f"sources[{i}].name", f"duplicate source name {source.name!r}")
        seen.add(source.name)
    for name in ldap.anonymous_sources or ():
        if name not in seen:
            raise ConfigError(path, "ldap.anonymous_sources", f"unknown source {name!r}")
    users = _parse_users(path, top.get("users", list, [], "an array of tables [[users]]"), ldap.base_dn, seen)
    search = _parse_search(path, top.get("search", dict, {}, "a table [search]"))
    top.finish()
    return Config(path=path, ldap=ldap, sources=sources, numbers=numbers, proximity=proximity, admin=admin,
                  snapshot=snapshot, users=users, search=search)


def load_config(path: str) -> Config:
    """Read and validate a configuration file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(path, "(file)", f"cannot read: {e.strerror}")
    except UnicodeDecodeError:
        raise ConfigError(path, "(file)", "not UTF-8 text")
    return parse_config(text, path)

"""Who may connect, bind and see which sources.  Pure (no reactor, no I/O).

* ``normalize_bind_name`` turns the many ways clients write a bind name
  into one user key (see docs/phones.md, trap 10).
* ``AccessPolicy`` decides connections and binds and tells which sources
  a bound (or anonymous) client sees.  A refused bind always answers
  invalidCredentials (49) and always costs one password verification,
  whatever was wrong: unknown user, wrong password, network not allowed.
* ``FailedBindThrottle`` slows down repeated failed binds from one client
  address, with the time passed in (the server applies the delay with
  ``task.deferLater`` on its clock).

Bind name rule (``normalize_bind_name``):

1. An empty name (after stripping spaces) is anonymous: ``None``.
2. A name that parses as a DN (``attr=value,...``; case and spaces after
   commas do not matter; escapes are honoured) whose first RDN is ``cn``,
   ``uid`` or ``sAMAccountName`` and whose remaining RDNs are empty or lie
   within the base DN (``cn=phones``, ``cn=phones,dc=example,dc=com``,
   ``uid=phones, ou=devices, dc=example, dc=com``) gives the folded value
   of that first RDN: ``"phones"``.  Any other DN gives its whole
   normalized form (``"cn=phones,dc=other"``), so a user configured with a
   DN outside the base binds with that DN (spelled in any case/spacing).
3. A user principal name ``phones@example.com`` whose domain is the base
   DN's ``dc`` components gives ``"phones"``; another domain keeps the
   whole folded name.
4. Anything else is a bare name, folded: ``"Phones "`` -> ``"phones"``.

Configured users get their key from their ``dn`` by the same rule, so
``dn = "cn=phones,dc=example,dc=com"`` accepts ``phones``, ``cn=phones``,
``CN=Phones, DC=example, DC=com`` and ``phones@example.com``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import threading
import time
from collections import OrderedDict
from typing import Callable, Iterable, Mapping, Union

from attrs import frozen

from gateway.ldap.schema import normalize_dn
from gateway.passwords import dummy_verify, is_valid_hash, verify_password
from gateway.text import fold

__all__ = [
    "RESULT_SUCCESS",
    "RESULT_INVALID_CREDENTIALS",
    "RESULT_INSUFFICIENT_ACCESS",
    "Network",
    "User",
    "Listener",
    "BindOutcome",
    "AccessPolicy",
    "FailedBindThrottle",
    "normalize_bind_name",
    "parse_networks",
    "parse_ip",
    "make_user",
]

RESULT_SUCCESS = 0
RESULT_INVALID_CREDENTIALS = 49
RESULT_INSUFFICIENT_ACCESS = 50

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

_NAMING_ATTRIBUTES = ("cn", "uid", "samaccountname")


# -- bind names -----------------------------------------------------------------


def _rdns(dn: str) -> tuple[tuple[str, str], ...] | None:
    try:
        return normalize_dn(dn)
    except ValueError:
        return None


def _upn_domain(base: tuple[tuple[str, str], ...]) -> str | None:
    if base and all(attr == "dc" for attr, _ in base):
        return ".".join(value for _, value in base)
    return None


def normalize_bind_name(name: str | bytes, base_dn: str) -> str | None:
    """The user key for a bind name as clients send it; None for anonymous (empty)."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    name = name.strip()
    if not name:
        return None
    base = _rdns(base_dn) or ()
    if "=" in name:
        rdns = _rdns(name)
        if rdns:
            attr, value = rdns[0]
            suffix = rdns[1:]
            inside = not suffix or (len(suffix) >= len(base) and suffix[len(suffix) - len(base):] == base)
            if attr in _NAMING_ATTRIBUTES and inside and value.strip():
                return fold(value)
            return ",".join(f"{a}={fold(v)}" for a, v in rdns)
    if "@" in name:
        local, _, domain = name.rpartition("@")
        wanted = _upn_domain(base)
        if local.strip() and wanted is not None and fold(domain) == fold(wanted):
            return fold(local)
    return fold(name) or name  # a name that folds to nothing (a lone accent) is kept as typed


# -- networks -----------------------------------------------------------------


def parse_networks(values: Iterable[str] | str) -> tuple[Network, ...]:
    """Networks from strings like ``"10.0.0.0/8"``, ``"192.0.2.7"`` or ``"2001:db8::/32"``.

    Raises ValueError naming the bad entry (host bits set count as bad:
    ``"10.0.0.1/8"`` is most likely a typo).
    """
    if isinstance(values, str):
        values = [values]
    out: list[Network] = []
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"expected a network like \"10.0.0.0/8\", got {value!r}")
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=True))
        except ValueError as e:
            raise ValueError(f"expected a network like \"10.0.0.0/8\", got {value!r} ({e})") from None
    return tuple(out)


def parse_ip(peer: str | Address | None) -> Address | None:
    """A client address as an ip_address (IPv4-mapped IPv6 as IPv4); None if not an IP."""
    if peer is None:
        return None
    if isinstance(peer, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        ip = peer
    else:
        text = peer.strip()
        if text.startswith("[") and "]" in text:
            text = text[1 : text.index("]")]
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _allowed(peer: str | Address | None, networks: tuple[Network, ...] | None) -> bool:
    if networks is None:
        return True
    ip = parse_ip(peer)
    if ip is None:
        return False
    return any(ip.version == net.version and ip in net for net in networks)


# -- users, listeners and the policy ------------------------------------------


@frozen
class User:
    """A bind user from the configuration.  ``name`` is the key from ``normalize_bind_name``."""

    name: str
    password_hash: str
    sources: tuple[str, ...] | None = None  # None: every source
    allow_from: tuple[Network, ...] | None = None  # None: any client address
    dn: str = ""  # as configured, for messages


@frozen
class Listener:
    """Access settings of one listening endpoint."""

    name: str = ""
    anonymous: bool = True
    allow_from: tuple[Network, ...] | None = None


@frozen
class BindOutcome:
    """The answer to a bind.  ``reason`` is for the server log only, never for the client."""

    ok: bool
    user: User | None
    result_code: int
    reason: str = ""

    @property
    def anonymous(self) -> bool:
        return self.ok and self.user is None


def make_user(
    dn: str,
    password_hash: str,
    base_dn: str,
    sources: Iterable[str] | None = None,
    allow_from: Iterable[str] | None = None,
) -> User:
    """A User from configuration values; ValueError with a message on bad values."""
    key = normalize_bind_name(dn, base_dn)
    if key is None:
        raise ValueError("the user's dn is empty")
    if not is_valid_hash(password_hash):
        raise ValueError("password_hash is not a hash made by `dirgw passwd` ($scrypt$n=...,r=...,p=...$salt$key)")
    return User(
        name=key,
        password_hash=password_hash,
        sources=None if sources is None else tuple(sources),
        allow_from=None if allow_from is None else parse_networks(list(allow_from)),
        dn=dn,
    )


class AccessPolicy:
    """Connections, binds and visible sources.

    ``listeners`` maps an endpoint name to its Listener; an unknown or
    missing name gets ``default_listener``.  ``anonymous_sources`` are the
    sources an anonymous client sees (None: all).

    ``check_bind`` is slow on purpose (one scrypt verification, about
    50-60 ms): call it off the reactor thread.  A successful verification
    is remembered for ``success_cache_seconds`` (keyed by an HMAC of user,
    hash and password under a per-process random key), so phones that bind
    on every search do not pay the full cost each time.  Only a correct
    password can hit that cache, so its speed tells a client nothing it is
    not told anyway; it is not consulted when the client's network is not
    allowed for the user, so that refusal costs the same as any other.
    """

    def __init__(
        self,
        users: Iterable[User],
        base_dn: str,
        listeners: Mapping[str, Listener] | Iterable[Listener] = (),
        anonymous_sources: Iterable[str] | None = None,
        default_listener: Listener = Listener(),
        success_cache_seconds: float = 300.0,
        success_cache_size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_dn = base_dn
        self.users: dict[str, User] = {}
        for user in users:
            other = self.users.get(user.name)
            if other is not None:
                raise ValueError(
                    f"users {other.dn or other.name!r} and {user.dn or user.name!r} have the same bind name {user.name!r}"
                )
            self.users[user.name] = user
        if isinstance(listeners, Mapping):
            self.listeners = dict(listeners)
        else:
            self.listeners = {listener.name: listener for listener in listeners}
        self.default_listener = default_listener
        self.anonymous_sources = None if anonymous_sources is None else frozenset(anonymous_sources)
        self._cache_seconds = success_cache_seconds
        self._cache_size = success_cache_size
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self._cache_key = os.urandom(32)
        self._lock = threading.Lock()
        self._clock = clock

    # -- listeners -------------------------------------------------------

    def listener(self, listener: Listener | str | None) -> Listener:
        if isinstance(listener, Listener):
            return listener
        if listener is None:
            return self.default_listener
        return self.listeners.get(listener, self.default_listener)

    def may_connect(self, peer_ip: str | Address | None, listener: Listener | str | None = None) -> bool:
        """May a client from ``peer_ip`` use ``listener`` at all?"""
        return _allowed(peer_ip, self.listener(listener).allow_from)

    def anonymous_allowed(self, listener: Listener | str | None = None) -> bool:
        return self.listener(listener).anonymous

    # -- binds -----------------------------------------------------------

    def check_bind(
        self,
        name: str | bytes,
        password: str | bytes,
        peer_ip: str | Address | None,
        listener: Listener | str | None = None,
    ) -> BindOutcome:
        """Decide a simple bind.  Slow (one password verification) unless anonymous."""
        lst = self.listener(listener)
        if not password:
            # anonymous, or unauthenticated (a name without a password, RFC 4513 5.1.2)
            if lst.anonymous:
                return BindOutcome(True, None, RESULT_SUCCESS, "anonymous")
            return BindOutcome(False, None, RESULT_INVALID_CREDENTIALS, "anonymous binds are not allowed here")
        key = normalize_bind_name(name, self.base_dn)
        if key is None:
            return BindOutcome(False, None, RESULT_INVALID_CREDENTIALS, "a password without a name")
        user = self.users.get(key)
        if user is None:
            dummy_verify(password)
            return BindOutcome(False, None, RESULT_INVALID_CREDENTIALS, f"unknown user {key!r}")
        network_ok = _allowed(peer_ip, user.allow_from)
        digest = self._digest(user, password)
        if network_ok and self._cached(digest):
            return BindOutcome(True, user, RESULT_SUCCESS, "password ok (cached)")
        password_ok = verify_password(password, user.password_hash)
        if not password_ok:
            return BindOutcome(False, None, RESULT_INVALID_CREDENTIALS, f"wrong password for {key!r}")
        if not network_ok:
            return BindOutcome(False, None, RESULT_INVALID_CREDENTIALS, f"{key!r} may not bind from {peer_ip}")
        self._remember(digest)
        return BindOutcome(True, user, RESULT_SUCCESS, "password ok")

    def _digest(self, user: User, password: str | bytes) -> bytes:
        raw = password if isinstance(password, bytes) else password.encode("utf-8", "surrogatepass")
        msg = user.name.encode() + b"\0" + user.password_hash.encode() + b"\0" + raw
        return hmac.new(self._cache_key, msg, hashlib.sha256).digest()

    def _cached(self, digest: bytes) -> bool:
        if self._cache_seconds <= 0:
            return False
        now = self._clock()
        with self._lock:
            expires = self._cache.get(digest)
            if expires is None:
                return False
            if expires <= now:
                del self._cache[digest]
                return False
            return True

    def _remember(self, digest: bytes) -> None:
        if self._cache_seconds <= 0:
            return
        with self._lock:
            self._cache[digest] = self._clock() + self._cache_seconds
            self._cache.move_to_end(digest)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    # -- sources ---------------------------------------------------------

    def visible_sources(self, user: User | None) -> frozenset[str] | None:
        """The sources a bound user (None: anonymous) sees; None means all."""
        if user is None:
            return self.anonymous_sources
        return None if user.sources is None else frozenset(user.sources)

    def unknown_sources(self, known: Iterable[str]) -> list[str]:
        """Source names referenced by users or anonymous_sources that are not in ``known``."""
        known = set(known)
        named: list[str] = list(self.anonymous_sources or ())
        for user in self.users.values():
            named.extend(user.sources or ())
        return sorted({s for s in named if s not in known})


# -- slowing down repeated failures -------------------------------------------


class _Record:
    __slots__ = ("failures", "last_failure", "next_slot")

    def __init__(self) -> None:
        self.failures = 0
        self.last_failure = 0.0
        self.next_slot = 0.0


class FailedBindThrottle:
    """Slows down repeated failed binds from one client address.  Pure: time is passed in.

    With ``k`` failures on record for an address, its next bind waits
    ``0`` while ``k <= free_failures`` and then ``base_delay * 2**(k -
    free_failures - 1)`` capped at ``max_delay`` (defaults: 0.5 s after the
    3rd failure, 1 s after the 4th, 2 s, 4 s ... 30 s), counted from the
    last failure.  An address with no failure for ``quiet_period`` is
    forgotten; a successful bind forgives it when ``forgive_on_success``.

    Addresses are tracked individually (IPv6 by their /64 by default, since
    one host easily has many addresses there), so nothing here ever slows
    another address.  At most ``max_tracked`` addresses are remembered;
    beyond that the least recently failing is forgotten.

    ``delay_for`` only reads.  ``admit`` also reserves the slot, so binds
    sent in parallel on several connections from one address queue up one
    step apart instead of all running after the same delay; it returns
    None (refuse at once, without checking the password) when that queue
    would reach more than ``max_queue`` seconds into the future.
    """

    def __init__(
        self,
        free_failures: int = 2,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        quiet_period: float = 900.0,
        max_tracked: int = 10_000,
        max_queue: float | None = None,
        forgive_on_success: bool = True,
        ipv6_prefix: int = 64,
    ) -> None:
        if free_failures < 0 or base_delay < 0 or max_delay < 0 or quiet_period <= 0 or max_tracked < 1:
            raise ValueError("throttle settings must be non-negative (quiet_period and max_tracked positive)")
        self.free_failures = free_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.quiet_period = quiet_period
        self.max_tracked = max_tracked
        self.max_queue = 4 * max_delay if max_queue is None else max_queue
        self.forgive_on_success = forgive_on_success
        self.ipv6_prefix = ipv6_prefix
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def key(self, address: str | Address) -> str:
        """The bucket an address is counted in."""
        ip = parse_ip(address)
        if ip is None:
            return str(address)
        if ip.version == 6 and self.ipv6_prefix < 128:
            return str(ipaddress.ip_network(f"{ip}/{self.ipv6_prefix}", strict=False))
        return str(ip)

    def step(self, failures: int) -> float:
        """The delay after ``failures`` failures on record."""
        excess = failures - self.free_failures
        if excess <= 0:
            return 0.0
        return min(self.max_delay, self.base_delay * 2.0 ** min(excess - 1, 62))

    def _live(self, key: str, now: float) -> _Record | None:
        record = self._records.get(key)
        if record is not None and now - record.last_failure >= self.quiet_period:
            del self._records[key]
            return None
        return record

    def delay_for(self, address: str | Address, now: float) -> float:
        """Seconds a bind from ``address`` should wait before being checked."""
        record = self._live(self.key(address), now)
        if record is None:
            return 0.0
        return max(0.0, record.next_slot - now)

    def admit(self, address: str | Address, now: float) -> float | None:
        """Like delay_for, and reserve that slot; None: refuse this bind at once."""
        record = self._live(self.key(address), now)
        if record is None:
            return 0.0
        step = self.step(record.failures)
        slot = max(now, record.next_slot)
        if step <= 0:
            return slot - now
        if slot - now > self.max_queue:
            return None
        record.next_slot = slot + step
        return slot - now

    def record_failure(self, address: str | Address, now: float) -> float:
        """Note a failed bind; returns the delay the next bind from there will get."""
        key = self.key(address)
        record = self._live(key, now)
        if record is None:
            record = self._records[key] = _Record()
        record.failures += 1
        record.last_failure = now
        record.next_slot = max(record.next_slot, now + self.step(record.failures))
        self._records.move_to_end(key)
        self._sweep(now)
        return max(0.0, record.next_slot - now)

    def record_success(self, address: str | Address, now: float) -> None:
        """Note a successful bind (forgives the address when so configured)."""
        if self.forgive_on_success:
            self._records.pop(self.key(address), None)

    def _sweep(self, now: float) -> None:
        records = self._records
        # oldest failures first: drop the quiet ones, then the excess (LRU)
        while records:
            key, record = next(iter(records.items()))
            if now - record.last_failure >= self.quiet_period or len(records) > self.max_tracked:
                records.popitem(last=False)
            else:
                break

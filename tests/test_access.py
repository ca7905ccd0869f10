"""Bind names, the access policy and the failed-bind throttle."""

from __future__ import annotations

import hashlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task

from gateway import passwords
from gateway.access import (
    AccessPolicy,
    FailedBindThrottle,
    Listener,
    User,
    make_user,
    normalize_bind_name,
    parse_ip,
    parse_networks,
)
from gateway.passwords import hash_password

BASE = "dc=example,dc=com"
CHEAP = dict(n=2**8, r=1, p=1)


# -- bind names -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "cn=phones,dc=example,dc=com",
        "CN=Phones,DC=Example,DC=COM",
        "cn=phones, dc=example, dc=com",
        "cn = phones , dc = example , dc = com",
        "cn=phones;dc=example;dc=com",
        "uid=phones,dc=example,dc=com",
        "uid=phones,ou=devices,dc=example,dc=com",
        "commonName=phones,dc=example,dc=com",
        "sAMAccountName=phones",
        "cn=phones",
        "CN=PHONES",
        "phones",
        " Phones ",
        "phones@example.com",
        "Phones@EXAMPLE.COM",
        "cn=phon\\65s,dc=example,dc=com",
        b"cn=phones, dc=example, dc=com",
    ],
)
def test_bind_name_forms_of_one_user(name):
    assert normalize_bind_name(name, BASE) == "phones"


@pytest.mark.parametrize("name", ["", "   ", b""])
def test_empty_bind_name_is_anonymous(name):
    assert normalize_bind_name(name, BASE) is None


@pytest.mark.parametrize(
    "name, key",
    [
        ("cn=phones,dc=other,dc=org", "cn=phones,dc=other,dc=org"),
        ("cn=phones, dc=Other, dc=org", "cn=phones,dc=other,dc=org"),
        ("o=phones,dc=example,dc=com", "o=phones,dc=example,dc=com"),
        ("uid=asterisk,dc=asterisk", "uid=asterisk,dc=asterisk"),
        ("phones@other.org", "phones@other.org"),
        ("Müller", "muller"),
        ("cn=M\\C3\\BCller,dc=example,dc=com", "muller"),
        ("cn=Meier\\, Hans,dc=example,dc=com", "meier, hans"),
        ("=x", "=x"),
    ],
)
def test_other_bind_names(name, key):
    assert normalize_bind_name(name, BASE) == key


def test_upn_needs_a_dc_base():
    assert normalize_bind_name("phones@example.com", "o=Example") == "phones@example.com"


@given(st.text(max_size=60))
def test_normalize_bind_name_never_raises(text):
    key = normalize_bind_name(text, BASE)
    assert key is None or key


@given(st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,20}", fullmatch=True))
def test_all_written_forms_of_a_name_meet(name):
    key = normalize_bind_name(name, BASE)
    forms = [
        f"cn={name},{BASE}",
        f"CN={name.upper()}, DC=example, DC=com",
        f"uid={name}",
        f"{name}@example.com",
        f" {name.lower()} ",
    ]
    assert all(normalize_bind_name(f, BASE) == key for f in forms)


# -- networks ---------------------------------------------------------------------


def test_parse_networks():
    nets = parse_networks(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"])
    assert [str(n) for n in nets] == ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]
    assert parse_networks("127.0.0.1") == (ipaddress.ip_network("127.0.0.1/32"),)
    for bad in (["10.0.0.1/8"], ["10.0.0.0/33"], ["example.com"], [8]):
        with pytest.raises(ValueError, match="10.0.0.0/8"):
            parse_networks(bad)


def test_parse_ip():
    assert parse_ip("10.1.2.3") == ipaddress.ip_address("10.1.2.3")
    assert parse_ip("::ffff:10.1.2.3") == ipaddress.ip_address("10.1.2.3")
    assert parse_ip("[2001:db8::1]") == ipaddress.ip_address("2001:db8::1")
    assert parse_ip("?") is None
    assert parse_ip(None) is None


# -- users and the policy -----------------------------------------------------------


def _user(dn, password, sources=None, allow_from=None):
    return make_user(dn, hash_password(password, **CHEAP), BASE, sources, allow_from)


@pytest.fixture
def policy():
    users = [
        _user("cn=phones,dc=example,dc=com", "phones-pw", sources=["m365"]),
        _user("cn=office, dc=example, dc=com", "office-pw", allow_from=["10.0.0.0/8", "2001:db8::/32"]),
        _user("admin", "admin-pw"),
    ]
    listeners = [
        Listener("tcp:389", anonymous=True),
        Listener("ssl:636", anonymous=False, allow_from=parse_networks(["10.0.0.0/8", "127.0.0.1"])),
    ]
    return AccessPolicy(users, BASE, listeners, anonymous_sources=["public"], success_cache_seconds=0)


def test_make_user():
    user = _user("cn=Phones,dc=example,dc=com", "pw", sources=["a", "b"], allow_from=["10.0.0.0/8"])
    assert user.name == "phones"
    assert user.sources == ("a", "b")
    assert user.allow_from == (ipaddress.ip_network("10.0.0.0/8"),)
    assert user.dn == "cn=Phones,dc=example,dc=com"
    with pytest.raises(ValueError, match="password_hash"):
        make_user("cn=x", "plain", BASE)
    with pytest.raises(ValueError, match="empty"):
        make_user(" ", hash_password("pw", **CHEAP), BASE)
    with pytest.raises(ValueError, match="10.0.0.0/8"):
        make_user("cn=x", hash_password("pw", **CHEAP), BASE, allow_from=["10.0.0.1/8"])


def test_users_with_the_same_bind_name_are_refused():
    with pytest.raises(ValueError, match="same bind name 'phones'"):
        AccessPolicy([_user("cn=phones," + BASE, "a"), _user("uid=Phones", "b")], BASE)


@pytest.mark.parametrize("name", ["cn=phones,dc=example,dc=com", "phones", "cn=phones", "cn=PHONES, dc=example, dc=com"])
def test_right_password(policy, name):
    outcome = policy.check_bind(name, "phones-pw", "192.0.2.1")
    assert outcome.ok and outcome.result_code == 0
    assert outcome.user is not None and outcome.user.name == "phones"
    assert not outcome.anonymous
    assert policy.visible_sources(outcome.user) == frozenset({"m365"})


def test_password_as_bytes(policy):
    assert policy.check_bind(b"phones", b"phones-pw", "192.0.2.1").ok


@pytest.mark.parametrize(
    "name, password, peer",
    [
        ("phones", "wrong", "192.0.2.1"),  # wrong password
        ("nobody", "phones-pw", "192.0.2.1"),  # unknown user
        ("office", "office-pw", "192.0.2.1"),  # network not allowed for the user
        ("office", "wrong", "192.0.2.1"),  # both
        ("office", "office-pw", "?"),  # not an IP client (a unix socket, say)
        ("", "phones-pw", "10.1.1.1"),  # a password without a name
    ],
)
def test_refused_binds_all_look_the_same(policy, name, password, peer):
    outcome = policy.check_bind(name, password, peer)
    assert not outcome.ok
    assert outcome.result_code == 49
    assert outcome.user is None
    assert outcome.reason  # for the log


def test_user_networks(policy):
    assert policy.check_bind("office", "office-pw", "10.9.8.7").ok
    assert policy.check_bind("office", "office-pw", "::ffff:10.9.8.7").ok
    assert policy.check_bind("office", "office-pw", "2001:db8::5").ok
    assert not policy.check_bind("office", "office-pw", "2001:db9::5").ok


def _count_scrypt(monkeypatch):
    calls = []
    real = hashlib.scrypt

    def counting(password, **kw):
        calls.append((kw["n"], kw["r"], kw["p"]))
        return real(password, **kw)

    monkeypatch.setattr(passwords.hashlib, "scrypt", counting)
    return calls


@pytest.mark.parametrize(
    "name, password, peer",
    [
        ("phones", "phones-pw", "192.0.2.1"),
        ("phones", "wrong", "192.0.2.1"),
        ("nobody", "whatever", "192.0.2.1"),
        ("office", "office-pw", "192.0.2.1"),
    ],
)
def test_every_named_bind_costs_one_verification(policy, monkeypatch, name, password, peer):
    calls = _count_scrypt(monkeypatch)
    policy.check_bind(name, password, peer)
    assert len(calls) == 1


def test_unknown_users_cost_a_default_verification(policy, monkeypatch):
    calls = _count_scrypt(monkeypatch)
    policy.check_bind("nobody", "whatever", "192.0.2.1")
    assert calls == [(passwords.SCRYPT_N, passwords.SCRYPT_R, passwords.SCRYPT_P)]


def test_anonymous_per_listener(policy, monkeypatch):
    calls = _count_scrypt(monkeypatch)
    for name in ("", "cn=whoever"):  # a name without a password is an unauthenticated (anonymous) bind
        outcome = policy.check_bind(name, "", "192.0.2.1", "tcp:389")
        assert outcome.ok and outcome.anonymous and outcome.result_code == 0
        refused = policy.check_bind(name, b"", "10.0.0.1", "ssl:636")
        assert not refused.ok and refused.result_code == 49
    assert calls == []
    assert policy.anonymous_allowed("tcp:389") and not policy.anonymous_allowed("ssl:636")
    assert policy.anonymous_allowed("unknown endpoint")  # the default listener
    assert policy.visible_sources(None) == frozenset({"public"})


def test_visible_sources_default_to_all(policy):
    admin = policy.users["admin"]
    assert policy.visible_sources(admin) is None
    assert AccessPolicy([], BASE).visible_sources(None) is None


def test_unknown_sources(policy):
    assert policy.unknown_sources(["m365"]) == ["public"]
    assert policy.unknown_sources(["m365", "public"]) == []


def test_may_connect(policy):
    assert policy.may_connect("192.0.2.1", "tcp:389")
    assert policy.may_connect("192.0.2.1")
    assert policy.may_connect("10.1.2.3", "ssl:636")
    assert policy.may_connect("::ffff:127.0.0.1", "ssl:636")
    assert not policy.may_connect("192.0.2.1", "ssl:636")
    assert not policy.may_connect("?", "ssl:636")
    assert policy.may_connect("10.1.2.3", Listener(allow_from=None))


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_success_cache(monkeypatch):
    clock = _Clock()
    users = [_user("phones", "pw"), _user("office", "pw2", allow_from=["10.0.0.0/8"])]
    policy = AccessPolicy(users, BASE, success_cache_seconds=60, clock=clock)
    calls = _count_scrypt(monkeypatch)
    assert policy.check_bind("phones", "pw", "192.0.2.1").ok
    assert policy.check_bind("cn=phones", "pw", "192.0.2.9").ok
    assert len(calls) == 1  # the second was remembered
    assert not policy.check_bind("phones", "wrong", "192.0.2.1").ok
    assert len(calls) == 2  # a wrong password is never remembered
    clock.now += 61
    assert policy.check_bind("phones", "pw", "192.0.2.1").ok
    assert len(calls) == 3  # expired

    assert policy.check_bind("office", "pw2", "10.0.0.1").ok
    calls.clear()
    outcome = policy.check_bind("office", "pw2", "192.0.2.1")
    assert not outcome.ok and outcome.result_code == 49
    assert len(calls) == 1  # a refused network costs a full verification, cache or not


def test_success_cache_follows_a_changed_hash(monkeypatch):
    old = _user("phones", "old")
    policy = AccessPolicy([old], BASE, clock=_Clock())
    assert policy.check_bind("phones", "old", "192.0.2.1").ok
    new = AccessPolicy([_user("phones", "new")], BASE, clock=_Clock())
    assert not new.check_bind("phones", "old", "192.0.2.1").ok
    policy.users["phones"] = User("phones", hash_password("new", **CHEAP))
    assert not policy.check_bind("phones", "old", "192.0.2.1").ok


def test_success_cache_is_bounded():
    policy = AccessPolicy([_user("phones", "pw")], BASE, success_cache_size=2, clock=_Clock())
    for i in range(5):
        policy.users["phones"] = User("phones", hash_password(f"pw{i}", **CHEAP))
        assert policy.check_bind("phones", f"pw{i}", "192.0.2.1").ok
    assert len(policy._cache) == 2


# -- the throttle -------------------------------------------------------------------


def _fail(throttle, address, now, times=1):
    for _ in range(times):
        throttle.record_failure(address, now)


def test_the_first_failures_are_free_then_the_delay_doubles():
    t = FailedBindThrottle(free_failures=2, base_delay=0.5, max_delay=4.0)
    delays = []
    for _ in range(7):
        delays.append(t.record_failure("192.0.2.1", 100.0))
    assert delays == [0.0, 0.0, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert t.delay_for("192.0.2.1", 100.0) == 4.0
    assert t.delay_for("192.0.2.1", 103.0) == 1.0
    assert t.delay_for("192.0.2.1", 105.0) == 0.0


def test_other_addresses_are_never_slowed():
    t = FailedBindThrottle()
    _fail(t, "192.0.2.1", 0.0, 20)
    assert t.delay_for("192.0.2.1", 0.0) == 30.0
    assert t.delay_for("192.0.2.2", 0.0) == 0.0
    assert t.admit("192.0.2.2", 0.0) == 0.0
    assert t.delay_for("2001:db8::1", 0.0) == 0.0


def test_quiet_period_forgets():
    t = FailedBindThrottle(quiet_period=600)
    _fail(t, "192.0.2.1", 0.0, 5)
    assert t.delay_for("192.0.2.1", 599.0) == 0.0  # the delay itself is long over
    assert t.record_failure("192.0.2.1", 599.0) > 0  # but the count is still there
    assert t.record_failure("192.0.2.1", 1199.0) == 0.0  # 600 s quiet: a fresh start
    assert len(t) == 1


def test_success_forgives_unless_configured_not_to():
    t = FailedBindThrottle()
    _fail(t, "192.0.2.1", 0.0, 5)
    t.record_success("192.0.2.1", 1.0)
    assert t.delay_for("192.0.2.1", 1.0) == 0.0
    assert len(t) == 0
    strict = FailedBindThrottle(forgive_on_success=False)
    _fail(strict, "192.0.2.1", 0.0, 5)
    strict.record_success("192.0.2.1", 1.0)
    assert strict.record_failure("192.0.2.1", 1.0) == 4.0  # the 6th failure


def test_memory_is_bounded_least_recent_first():
    t = FailedBindThrottle(max_tracked=3)
    for i in range(5):
        _fail(t, f"192.0.2.{i}", float(i), 3)
    assert len(t) == 3
    assert t.delay_for("192.0.2.0", 5.0) == 0.0
    assert t.delay_for("192.0.2.1", 5.0) == 0.0
    assert t.delay_for("192.0.2.4", 4.0) == 0.5


def test_quiet_addresses_are_swept():
    t = FailedBindThrottle(quiet_period=10)
    for i in range(100):
        _fail(t, f"192.0.2.{i}", float(i))
    assert len(t) <= 11


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4():
    t = FailedBindThrottle()
    for i in range(3):
        t.record_failure(f"2001:db8:1:2::{i + 1}", 0.0)
    assert t.delay_for("2001:db8:1:2:ffff::9", 0.0) == 0.5
    assert t.delay_for("2001:db8:1:3::1", 0.0) == 0.0
    _fail(t, "::ffff:192.0.2.1", 0.0, 3)
    assert t.delay_for("192.0.2.1", 0.0) == 0.5
    assert t.key("?") == "?"


def test_parallel_binds_queue_one_step_apart():
    t = FailedBindThrottle(base_delay=1.0, max_delay=8.0, max_queue=20.0)
    _fail(t, "192.0.2.1", 0.0, 3)  # next bind waits 1 s
    waits = [t.admit("192.0.2.1", 0.0) for _ in range(5)]
    assert waits == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert t.delay_for("192.0.2.9", 0.0) == 0.0
    _fail(t, "192.0.2.2", 0.0, 6)  # 8 s per step
    waits = [t.admit("192.0.2.2", 0.0) for _ in range(5)]
    assert waits == [8.0, 16.0, None, None, None]


def test_admit_without_failures_is_free():
    t = FailedBindThrottle()
    assert t.admit("192.0.2.1", 0.0) == 0.0
    t.record_failure("192.0.2.1", 0.0)
    assert t.admit("192.0.2.1", 0.0) == 0.0
    assert t.admit("192.0.2.1", 0.0) == 0.0


def test_settings_are_checked():
    with pytest.raises(ValueError):
        FailedBindThrottle(quiet_period=0)
    with pytest.raises(ValueError):
        FailedBindThrottle(base_delay=-1)


_OPS = st.lists(
    st.tuples(st.sampled_from(["fail", "ok", "admit", "wait"]), st.sampled_from(["a", "b"]), st.floats(0, 50)),
    max_size=60,
)


@settings(max_examples=200)
@given(_OPS)
def test_one_address_never_changes_anothers_delay(ops):
    """Replaying only B's operations gives B the same delays as the mixed run."""
    mixed = FailedBindThrottle(max_delay=10.0, quiet_period=100.0)
    alone = FailedBindThrottle(max_delay=10.0, quiet_period=100.0)
    now = 0.0
    for op, who, dt in ops:
        now += dt
        address = {"a": "192.0.2.1", "b": "192.0.2.2"}[who]
        for throttle in (mixed, alone) if who == "b" else (mixed,):
            if op == "fail":
                throttle.record_failure(address, now)
            elif op == "ok":
                throttle.record_success(address, now)
            elif op == "admit":
                throttle.admit(address, now)
        d = mixed.delay_for("192.0.2.2", now)
        assert d == alone.delay_for("192.0.2.2", now)
        assert 0.0 <= d <= mixed.max_queue + mixed.max_delay


def test_delay_applied_on_an_injected_clock():
    """How the server uses it: deferLater on its clock, then check the bind."""
    clock = task.Clock()
    throttle = FailedBindThrottle()
    answered = []

    def bind(password):
        def check():
            ok = password == "right"
            if ok:
                throttle.record_success("192.0.2.1", clock.seconds())
            else:
                throttle.record_failure("192.0.2.1", clock.seconds())
            answered.append((clock.seconds(), ok))

        delay = throttle.admit("192.0.2.1", clock.seconds())
        assert delay is not None
        return task.deferLater(clock, delay, check)

    for _ in range(3):
        bind("wrong")
    clock.advance(0)
    assert [t for t, _ in answered] == [0.0, 0.0, 0.0]
    bind("wrong")
    clock.advance(0.4)
    assert len(answered) == 3
    clock.advance(0.1)
    assert answered[-1] == (0.5, False)
    bind("right")
    clock.advance(0.9)
    assert len(answered) == 4
    clock.advance(0.1)
    assert answered[-1] == (1.5, True)
    bind("wrong")
    clock.advance(0)
    assert answered[-1] == (1.5, False)  # forgiven by the success

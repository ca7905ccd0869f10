"""Authorization, priority across sources and fuzzy name search, through real LDAP clients."""

from __future__ import annotations

import subprocess

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway.passwords import hash_password
from tests.support import ServerProcess, contact, ldapsearch, parse_ldif, write_contacts

BASE = "dc=example,dc=com"
PHONES_PW = "phones-secret"
ADMIN_PW = "admin-secret"


def config(tmp_path, extra_ldap="", users="", search="", listeners=""):
    text = f"""
[ldap]
listen = ["tcp:0:interface=127.0.0.1"]
base_dn = "{BASE}"
anonymous = true
anonymous_sources = ["crm"]
{extra_ldap}
{listeners}
[admin]
listen = ""
[search]
{search}
[[sources]]
name = "crm"
type = "json_file"
path = "crm.json"
priority = 200
[[sources]]
name = "m365"
type = "json_file"
path = "m365.json"
priority = 100
{users}
"""
    (tmp_path / "dirgw.toml").write_text(text)
    write_contacts(tmp_path / "crm.json", [
        contact("k1", given="Hans", surname="Meier", phones=[("business", "+49 89 5550 100")]),
        contact("k2", given="Jürgen", surname="Müller", company="Straßenbau AG"),
    ])
    write_contacts(tmp_path / "m365.json", [
        contact("m1", given="Hans", surname="Meier-Lange", phones=[("business", "+49 89 5550 100")]),
        contact("m2", company="Switchboard GmbH", phones=[("business", "+49 30 4444-0")]),
        contact("m3", given="Petra", surname="Schmidt", company="Switchboard GmbH", phones=[("business", "+49 30 4444-0")]),
        contact("m4", given="Anna", surname="Mayer"),
    ])
    return str(tmp_path / "dirgw.toml")


USERS = f"""
[[users]]
dn = "cn=phones,dc=example,dc=com"
password_hash = "{hash_password(PHONES_PW)}"
sources = ["m365"]

[[users]]
dn = "cn=admin,dc=example,dc=com"
password_hash = "{hash_password(ADMIN_PW)}"

[[users]]
dn = "cn=remote,dc=example,dc=com"
password_hash = "{hash_password(PHONES_PW)}"
allow_from = ["10.0.0.0/8"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("access")
    proc = ServerProcess(config(tmp, users=USERS, search="fuzzy_fallback = true"))
    yield proc
    proc.stop()


def search(server, *args, bind=None):
    extra = ["-D", bind[0], "-w", bind[1]] if bind else []
    result = ldapsearch(server.port, *extra, "-b", BASE, *args)
    return result, parse_ldif(result.stdout)


@pytest.mark.parametrize("name", ["cn=phones,dc=example,dc=com", "cn=phones, dc=example, dc=com", "cn=phones",
                                  "phones", "CN=Phones,DC=Example,DC=Com"])
def test_bind_names_as_clients_send_them(server, name):
    """Full DN, a space after the comma, cn= without suffix, the bare name: all bind."""
    result, entries = search(server, "(sn=Meier*)", "cn", bind=(name, PHONES_PW))
    assert result.returncode == 0, result.stderr


def test_wrong_password_and_unknown_user_look_the_same(server):
    """invalidCredentials (49) for a wrong password and for an unknown user alike."""
    wrong, _ = search(server, "(cn=*)", bind=("cn=phones,dc=example,dc=com", "nope"))
    unknown, _ = search(server, "(cn=*)", bind=("cn=nobody,dc=example,dc=com", "nope"))
    assert wrong.returncode == unknown.returncode == 49
    assert wrong.stderr.replace("nobody", "phones") == unknown.stderr.replace("nobody", "phones")


def test_network_not_allowed_for_user(server):
    """A user limited to 10.0.0.0/8 cannot bind from 127.0.0.1, with the same 49."""
    result, _ = search(server, "(cn=*)", bind=("cn=remote,dc=example,dc=com", PHONES_PW))
    assert result.returncode == 49


def test_user_sees_only_its_sources(server):
    """The phones user sees m365 only; the admin user sees all; anonymous sees anonymous_sources."""
    _, phones = search(server, "(givenName=Hans)", "cn", bind=("phones", PHONES_PW))
    assert [e["cn"][0] for e in phones] == ["Hans Meier-Lange"]
    _, admin = search(server, "(givenName=Hans)", "cn", bind=("admin", ADMIN_PW))
    assert [e["cn"][0] for e in admin] == ["Hans Meier", "Hans Meier-Lange"]
    _, anonymous = search(server, "(givenName=Hans)", "cn")
    assert [e["cn"][0] for e in anonymous] == ["Hans Meier"]


def test_hidden_entry_is_no_such_object(server):
    """A base-scope read of an entry in a hidden source reveals nothing."""
    result, _ = search(server, "-s", "base", "(objectClass=*)")
    dn = "uid=m365.m1," + BASE
    result = ldapsearch(server.port, "-b", dn, "-s", "base", "(objectClass=*)")
    assert result.returncode == 32


def test_priority_orders_caller_id_results(server):
    """A number in two sources: the higher-priority source's contact comes first."""
    _, entries = search(server, "(telephoneNumber=0895550100)", "cn", bind=("admin", ADMIN_PW))
    assert [e["cn"][0] for e in entries] == ["Hans Meier", "Hans Meier-Lange"]


def test_switchboard_person_before_company(server):
    """Several contacts sharing a number all come back, the person before the company record."""
    _, entries = search(server, "(telephoneNumber=+49304444-0)", "cn", bind=("admin", ADMIN_PW))
    assert [e["cn"][0] for e in entries] == ["Petra Schmidt", "Switchboard GmbH"]


def test_duplicates_highest(tmp_path):
    """duplicates = "highest" drops lower-priority sources' hits for the same number."""
    proc = ServerProcess(config(tmp_path, extra_ldap='duplicates = "highest"\nanonymous_sources = ["crm", "m365"]'
                                .replace('anonymous_sources = ["crm", "m365"]', ""), users=USERS))
    try:
        _, entries = search(proc, "(telephoneNumber=0895550100)", "cn", bind=("admin", ADMIN_PW))
        assert [e["cn"][0] for e in entries] == ["Hans Meier"]
    finally:
        proc.stop()


def test_approx_filter_is_fuzzy(server):
    """(sn~=maier) finds Meier and Mayer, best first; it does not find Müller."""
    _, entries = search(server, "(sn~=maier)", "cn", "sn", bind=("admin", ADMIN_PW))
    names = [e["cn"][0] for e in entries]
    assert "Hans Meier" in names and "Anna Mayer" in names
    assert "Jürgen Müller" not in names


def test_fuzzy_fallback(server):
    """A name search that finds nothing is retried fuzzily: "Schmit" finds "Schmidt"."""
    _, entries = search(server, "(|(cn=Schmit*)(sn=Schmit*))", "cn", bind=("admin", ADMIN_PW))
    assert [e["cn"][0] for e in entries] == ["Petra Schmidt"]
    _, entries = search(server, "(sn=Schmit)", "cn", bind=("admin", ADMIN_PW))
    assert [e["cn"][0] for e in entries] == ["Petra Schmidt"]


@pytest.mark.parametrize("query", ["(sn=Mueller)", "(sn=Muller)", "(sn=müller)", "(cn=Juergen*)",
                                   "(o=Strassenbau AG)", "(o=strassen*)"])
def test_umlaut_transcriptions_meet(server, query):
    """"Mueller" and "Muller" find "Müller", "Strasse" finds "Straße"."""
    _, entries = search(server, query, "cn")
    assert [e["cn"][0] for e in entries] == ["Jürgen Müller"]


def test_anonymous_refused_on_listener(tmp_path):
    """A listener with anonymous = false refuses anonymous searches; a user still binds."""
    listeners = '[[ldap.listeners]]\nendpoint = "tcp:0:interface=127.0.0.1"\nanonymous = false\n'
    path = config(tmp_path, users=USERS, listeners=listeners).replace("", "")
    text = open(path).read().replace('listen = ["tcp:0:interface=127.0.0.1"]', "listen = []")
    open(path, "w").write(text)
    proc = ServerProcess(path)
    try:
        result, _ = search(proc, "(cn=*)")
        assert result.returncode == 49  # the anonymous bind is refused
        import ldap3

        conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=proc.port, get_info=ldap3.NONE),
                                raise_exceptions=False)
        conn.open()
        conn.search(BASE, "(cn=*)")  # no bind at all
        assert conn.result["result"] == 50
        result, entries = search(proc, "(givenName=Hans)", "cn", bind=("admin", ADMIN_PW))
        assert result.returncode == 0 and len(entries) == 2
    finally:
        proc.stop()


def test_listener_network_refused(tmp_path):
    """A listener that allows only 10.0.0.0/8 closes connections from 127.0.0.1 without an answer."""
    listeners = ('[[ldap.listeners]]\nendpoint = "tcp:0:interface=127.0.0.1"\nallow_from = ["10.0.0.0/8"]\n')
    path = config(tmp_path, listeners=listeners)
    text = open(path).read().replace('listen = ["tcp:0:interface=127.0.0.1"]', "listen = []")
    open(path, "w").write(text)
    proc = ServerProcess(path)
    try:
        result, _ = search(proc, "(cn=*)")
        assert result.returncode in (254, 255) and not result.stdout  # the connection is closed, nothing said
    finally:
        proc.stop()


def test_failed_binds_from_one_address_slow_down():
    """Repeated failed binds from one address wait longer and longer on the clock; others do not."""
    from gateway.access import AccessPolicy, FailedBindThrottle, Listener, make_user
    from gateway.index import ContactIndex
    from gateway.ldap import ber
    from gateway.ldap.directory import Directory
    from gateway.ldap.search import SearchSettings
    from gateway.ldap.server import LDAPServerFactory
    from gateway.config import LdapConfig

    clock = Clock()
    user = make_user("cn=phones," + BASE, hash_password(PHONES_PW, n=2**10), BASE)
    policy = AccessPolicy([user], BASE)
    factory = LDAPServerFactory(Directory(ContactIndex(), SearchSettings(base_dn=BASE)), LdapConfig(),
                                policy=policy, listener=Listener(), throttle=FailedBindThrottle(), clock=clock)
    factory.check_bind = lambda name, pw, host: succeed(policy.check_bind(name, pw, host))

    def connect(host):
        from twisted.internet.address import IPv4Address

        proto = factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 5000))
        proto.makeConnection(transport)
        return proto, transport

    def bind_message(mid, password):
        name = b"cn=phones," + BASE.encode()
        body = b"\x02\x01\x03" + b"\x04" + bytes([len(name)]) + name + b"\x80" + bytes([len(password)]) + password
        op = b"\x60" + bytes([len(body)]) + body
        msg = b"\x02\x01" + bytes([mid]) + op
        return b"\x30" + bytes([len(msg)]) + msg

    proto, transport = connect("192.0.2.1")
    waits = []
    for attempt in range(1, 6):
        transport.clear()
        proto.dataReceived(bind_message(attempt, b"wrong"))
        waited = 0.0
        while not transport.value():
            clock.advance(0.25)
            waited += 0.25
            assert waited < 60
        waits.append(waited)
        assert ber.decode_message(transport.value()).op[-3:] != b"\x0a\x01\x00"
    assert waits[0] <= 0.25 and waits[1] <= 0.25  # two free failures
    assert waits[2] < waits[3] < waits[4]  # then slower and slower
    other, other_transport = connect("192.0.2.2")
    other.dataReceived(bind_message(1, PHONES_PW.encode()))
    assert other_transport.value()  # another address is not slowed down

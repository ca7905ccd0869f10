"""The LDAP service end to end: a real ``dirgw serve`` process, ldapsearch and ldap3 as clients."""

from __future__ import annotations

import socket

import ldap3
import pytest

from tests.support import contact, ldapsearch, parse_ldif, start_server

BASE = "dc=example,dc=com"

CONTACTS = [
    contact("c-1", given="Jürgen", surname="Müller", company="Köhler Logistik GmbH",
            phones=[("business", "+49 (0)89 1234-567"), ("mobile", "0171 1234567")], mail="j.mueller@koehler.example"),
    contact("c-2", given="Anna", surname="Meyer", company="Köhler Logistik GmbH",
            phones=[("business", "089/1234-218")]),
    contact("c-3", given="Zoë", surname="Öztürk", phones=[("home", "(089) 765 43 21")]),
    contact("c-4", company="Köhler Logistik GmbH", phones=[("business", "+49 89 1234-0"), ("businessFax", "+49 89 1234-99")]),
    contact("c-5", given="Hans", surname="Meier", phones=[("business", "+43 1 5123456")]),
    contact("c-6", given="Łukasz", surname="Dvořák", phones=[("mobile", "+48 601 234 567")]),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = start_server(tmp_path_factory.mktemp("ldap"), CONTACTS, size_limit=1000)
    yield proc
    proc.stop()


def search(server, *args):
    result = ldapsearch(server.port, "-b", BASE, *args)
    return result, parse_ldif(result.stdout)


def names(entries):
    return sorted(e["cn"][0] for e in entries if "cn" in e)


def test_root_dse(server):
    """The root DSE names the naming context, LDAP versions and the implemented controls."""
    result = ldapsearch(server.port, "-b", "", "-s", "base", "(objectClass=*)", "+", "*")
    assert result.returncode == 0, result.stderr
    (dse,) = parse_ldif(result.stdout)
    assert dse["namingContexts"] == [BASE]
    assert sorted(dse["supportedLDAPVersion"]) == ["2", "3"]
    assert "1.2.840.113556.1.4.319" in dse["supportedControl"]
    assert dse["vendorName"] == ["dirgw"]


def test_name_prefix_or(server):
    """The phone directory key's OR of prefixes finds by surname or common name."""
    result, entries = search(server, "(|(cn=mey*)(sn=mey*))", "cn", "telephoneNumber")
    assert result.returncode == 0, result.stderr
    assert names(entries) == ["Anna Meyer"]


def test_diacritics_and_case_are_ignored(server):
    """"muller" finds "Müller", "OZTURK" finds "Öztürk", "lukasz" finds "Łukasz"."""
    assert names(search(server, "(sn=muller)")[1]) == ["Jürgen Müller"]
    assert names(search(server, "(sn=OZTURK)")[1]) == ["Zoë Öztürk"]
    assert names(search(server, "(givenName=lukasz*)")[1]) == ["Łukasz Dvořák"]


def test_contains_and_multiple_any_parts(server):
    """Substrings with several `any` parts match in order."""
    assert names(search(server, "(cn=*ur*mu*)")[1]) == ["Jürgen Müller"]
    assert names(search(server, "(cn=*mu*ur*)")[1]) == []


def test_entry_attributes_and_object_classes(server):
    """Entries carry inetOrgPerson attributes and Graph phone types mapped to LDAP attributes."""
    _, entries = search(server, "(sn=Müller)")
    (entry,) = entries
    assert set(entry["objectClass"]) == {"top", "person", "organizationalPerson", "inetOrgPerson"}
    assert entry["o"] == ["Köhler Logistik GmbH"]
    assert entry["mail"] == ["j.mueller@koehler.example"]
    assert entry["telephoneNumber"] and entry["mobile"]
    assert entry["dn"][0].endswith("," + BASE)


def test_fax_and_home_mapping(server):
    """businessFax becomes facsimileTelephoneNumber, home becomes homePhone."""
    _, entries = search(server, "(o=Köhler Logistik GmbH)", "facsimileTelephoneNumber", "cn")
    assert any("facsimileTelephoneNumber" in e for e in entries)
    _, entries = search(server, "(sn=Öztürk)", "homePhone")
    assert entries[0]["homePhone"]


def test_base_scope_reread_by_dn(server):
    """A phone re-reads a selected entry with a base-scope search on its DN."""
    _, entries = search(server, "(sn=Meyer)", "1.1")
    dn = entries[0]["dn"][0]
    result = ldapsearch(server.port, "-b", dn, "-s", "base", "(objectclass=*)")
    assert result.returncode == 0
    (entry,) = parse_ldif(result.stdout)
    assert entry["cn"] == ["Anna Meyer"]
    assert entry["dn"] == [dn]


def test_missing_entry_is_no_such_object(server):
    """A base DN that does not exist gets noSuchObject (32)."""
    result = ldapsearch(server.port, "-b", "uid=nobody," + BASE, "-s", "base", "(objectclass=*)")
    assert result.returncode == 32


def test_scopes(server):
    """base on the suffix returns the suffix entry, one and sub return the contacts."""
    _, base = search(server, "-s", "base", "(objectClass=*)")
    assert [e["dn"][0] for e in base] == [BASE]
    _, one = search(server, "-s", "one", "(objectClass=person)", "1.1")
    assert len(one) == len(CONTACTS)
    _, sub = search(server, "-s", "sub", "(objectCategory=person)", "1.1")
    assert len(sub) == len(CONTACTS)


def test_size_limit_returns_entries_and_code_4(server):
    """The client's sizeLimit returns the entries found so far plus sizeLimitExceeded."""
    result, entries = search(server, "-z", "2", "(objectClass=person)", "cn")
    assert result.returncode == 4
    assert len(entries) == 2


def test_paged_results(server):
    """Simple paged results (RFC 2696) deliver every entry across pages."""
    result, entries = search(server, "-E", "pr=2/noprompt", "(objectClass=*)", "cn")
    assert result.returncode == 0, result.stderr
    assert len([e for e in entries if "cn" in e]) == len(CONTACTS)


def test_server_side_sort(server):
    """Server-side sort (RFC 2891) orders by the requested attribute."""
    result, entries = search(server, "-E", "sss=sn", "(objectClass=person)", "sn")
    assert result.returncode == 0, result.stderr
    surnames = [e["sn"][0] for e in entries]
    assert surnames[:2] == ["Dvořák", "Köhler Logistik GmbH"]
    result, entries = search(server, "-E", "sss=-sn", "(objectClass=person)", "sn")
    assert [e["sn"][0] for e in entries][0] == "Öztürk"


def test_unsupported_critical_control(server):
    """An unsupported critical control gets unavailableCriticalExtension (12); non-critical is ignored."""
    result, _ = search(server, "-e", "!1.2.3.4.5", "(cn=Anna*)")
    assert result.returncode == 12
    result, entries = search(server, "-e", "1.2.3.4.5", "(cn=Anna*)")
    assert result.returncode == 0 and names(entries) == ["Anna Meyer"]


def test_unknown_attribute_does_not_spoil_an_or(server):
    """An unknown attribute is Undefined, so the rest of the OR still matches."""
    assert names(search(server, "(|(fooBar=x)(cn=Anna*))")[1]) == ["Anna Meyer"]
    assert names(search(server, "(!(fooBar=x))")[1]) == []


def test_attribute_aliases_and_selection(server):
    """Aliases work in filters and attribute lists; names are case-insensitive."""
    _, entries = search(server, "(commonName=anna meyer)", "gn", "SURNAME")
    (entry,) = entries
    assert entry["gn"] == ["Anna"]
    assert entry["SURNAME"] == ["Meyer"]
    assert "cn" not in entry


def test_types_only_and_no_attributes(server):
    """typesOnly (-A) returns names without values; 1.1 returns no attributes."""
    result = ldapsearch(server.port, "-b", BASE, "-A", "(sn=Meyer)", "cn")
    assert "cn:" in result.stdout and "Anna" not in result.stdout.split("cn:")[1]
    _, entries = search(server, "(sn=Meyer)", "1.1")
    assert list(entries[0]) == ["dn"]


def test_ldapv2_bind(server):
    """LDAPv2 clients (app_ldap, IP Office) can bind and search."""
    result = ldapsearch(server.port, "-P", "2", "-b", BASE, "(sn=Meyer)", "cn")
    assert result.returncode == 0, result.stderr
    assert "Anna Meyer" in result.stdout


def test_unknown_credentials_are_refused(server):
    """A simple bind with unknown credentials gets invalidCredentials (49)."""
    result = ldapsearch(server.port, "-D", "cn=admin," + BASE, "-w", "secret", "-b", BASE, "(cn=*)")
    assert result.returncode == 49


def _ldap3(server):
    srv = ldap3.Server("127.0.0.1", port=server.port, get_info=ldap3.NONE)
    conn = ldap3.Connection(srv, auto_bind=True, raise_exceptions=False)
    return conn


@pytest.mark.parametrize(
    "operation",
    [
        lambda c: c.add("uid=new," + BASE, ["inetOrgPerson"], {"cn": "x", "sn": "y"}),
        lambda c: c.delete("uid=demo.c-1," + BASE),
        lambda c: c.modify("uid=demo.c-1," + BASE, {"cn": [(ldap3.MODIFY_REPLACE, ["x"])]}),
        lambda c: c.modify_dn("uid=demo.c-1," + BASE, "uid=renamed"),
        lambda c: c.extend.standard.modify_password("uid=demo.c-1," + BASE, "old", "new"),
    ],
    ids=["add", "delete", "modify", "modify_dn", "password_modify"],
)
def test_writes_are_refused(server, operation):
    """Every write operation gets unwillingToPerform (53) and changes nothing."""
    conn = _ldap3(server)
    operation(conn)
    assert conn.result["result"] == 53
    conn.search(BASE, "(uid=demo.c-1)", attributes=["cn"])
    assert [str(e.cn) for e in conn.entries] == ["Jürgen Müller"]
    conn.unbind()


def test_sasl_is_not_supported(server):
    """A SASL bind gets authMethodNotSupported (7)."""
    srv = ldap3.Server("127.0.0.1", port=server.port, get_info=ldap3.NONE)
    conn = ldap3.Connection(srv, authentication=ldap3.SASL, sasl_mechanism="PLAIN",
                            sasl_credentials=(None, "user", "pw"), raise_exceptions=False)
    conn.open()
    conn.bind()
    assert conn.result["result"] == 7


def test_compare(server):
    """Compare answers compareTrue (6) and compareFalse (5)."""
    conn = _ldap3(server)
    assert conn.compare("uid=demo.c-2," + BASE, "sn", "Meyer") is True
    assert conn.compare("uid=demo.c-2," + BASE, "sn", "Meier") is False


def test_ldap3_search_with_abandon_and_unbind(server):
    """A Python client searches; abandon and unbind are handled cleanly."""
    conn = _ldap3(server)
    conn.search(BASE, "(|(cn=h*)(sn=h*))", attributes=["cn", "telephoneNumber"])
    assert [str(e.cn) for e in conn.entries] == ["Hans Meier"]
    conn.abandon(12345)
    conn.search(BASE, "(sn=Meyer)", attributes=["cn"])
    assert len(conn.entries) == 1
    conn.unbind()


def _raw(port, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
        return data


def test_malformed_ber_closes_only_that_connection(server):
    """Garbage and a gigabyte length field close the connection; the server keeps serving."""
    reply = _raw(server.port, b"\x30\x84\x40\x00\x00\x00\x02\x01\x01")
    assert b"1.3.6.1.4.1.1466.20036" in reply  # notice of disconnection
    reply = _raw(server.port, b"\x04\x05hello")
    assert b"1.3.6.1.4.1.1466.20036" in reply
    assert names(search(server, "(sn=Meyer)")[1]) == ["Anna Meyer"]


def test_snom_non_minimal_size_limit(server):
    """Snom's sizeLimit 50 encoded as 02 02 00 32 is accepted."""
    bind = bytes.fromhex("300c020101600702010304008000")
    # SearchRequest: base "dc=example,dc=com", scope sub, deref never, sizeLimit 02 02 00 32, timeLimit 0,
    # typesOnly false, filter (sn=Meyer), attributes [cn]
    base = b"\x04\x11dc=example,dc=com"
    body = (base + b"\x0a\x01\x02" + b"\x0a\x01\x00" + b"\x02\x02\x00\x32" + b"\x02\x01\x00" + b"\x01\x01\x00"
            + b"\xa3\x0b\x04\x02sn\x04\x05Meyer" + b"\x30\x04\x04\x02cn")
    op = b"\x63" + bytes([len(body)]) + body
    msg = b"\x02\x01\x02" + op
    search_msg = b"\x30" + bytes([len(msg)]) + msg
    unbind = bytes.fromhex("30050201034200")
    reply = _raw(server.port, bind + search_msg + unbind)
    assert "Anna Meyer".encode() in reply

"""The hot-path BER codec (gateway.ldap.ber), checked against ldaptor as the reference.

Run ``python tests/test_ber.py`` for the timing comparison with ldaptor.
"""

from __future__ import annotations

import random
import time
import timeit
import tracemalloc
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():  # ldaptor's filter grammar uses deprecated pyparsing names
    warnings.simplefilter("ignore", DeprecationWarning)
    from ldaptor import ldapfilter
from ldaptor.protocols import pureber, pureldap
from ldaptor.protocols.ldap import ldapclient, ldapserver

from gateway.ldap import ber
from gateway.ldap.ber import BERError, FilterTooComplex, PDUTooLarge
from gateway.ldap.filter import (
    And,
    Approx,
    Equality,
    Extensible,
    GreaterOrEqual,
    LessOrEqual,
    Not,
    Or,
    Present,
    Substrings,
    depth,
    size,
    to_text,
)
from gateway.ldap.messages import Control, SearchRequest

# ldaptor calls pyparsing APIs that pyparsing 3 deprecates: not our concern here.
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated - use:DeprecationWarning")

SERVER_DECODER = ldapserver.BaseLDAPServer.berdecoder  # decodes requests
CLIENT_DECODER = ldapclient.LDAPClient.berdecoder  # decodes responses
MAX_PDU = 1 << 20

# --------------------------------------------------------------------------
# Helpers


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + ber._len(len(content)) + content


def tlv84(tag: int, content: bytes) -> bytes:
    """A TLV with a non-minimal 4-octet length, as AD/.NET clients send."""
    return bytes([tag, 0x84]) + len(content).to_bytes(4, "big") + content


def octets(value: str | bytes, tag: int = 0x04) -> bytes:
    return tlv(tag, value.encode() if isinstance(value, str) else value)


def search_op(
    flt: bytes,
    base: bytes = b"\x04\x00",
    fields: bytes = b"\x0a\x01\x02\x0a\x01\x00\x02\x01\x00\x02\x01\x00\x01\x01\x00",
    attrs: bytes = b"\x30\x00",
) -> bytes:
    return tlv(0x63, base + fields + flt + attrs)


def message(op: bytes, message_id: int = 1, controls: bytes = b"") -> bytes:
    return tlv(0x30, b"\x02\x01" + bytes([message_id]) + op + controls)


def nested(levels: int, tag: int = 0xA2, leaf: bytes = b"\x87\x02cn") -> bytes:
    """``levels`` compound filters around ``leaf``, built without quadratic copying."""
    headers = []
    length = len(leaf)
    for _ in range(levels):
        h = bytes([tag]) + ber._len(length)
        headers.append(h)
        length += len(h)
    return b"".join(reversed(headers)) + leaf


def ldaptor_wire(req, message_id=1, controls=None) -> bytes:
    return pureldap.LDAPMessage(req, id=message_id, controls=controls).toWire()


def ldaptor_decode(data: bytes, decoder=SERVER_DECODER):
    obj, used = pureber.berDecodeObject(decoder, data)
    assert used == len(data)
    return obj


# --------------------------------------------------------------------------
# Strategies: filters that ldaptor's text parser understands


ATTR = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}(;[A-Za-z0-9-]{1,6})?", fullmatch=True)
RULE = st.one_of(
    st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,6}){1,6}", fullmatch=True),
    st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,12}", fullmatch=True).filter(lambda r: r.lower() != "dn"),
)
# pyparsing (inside ldaptor) expands tabs, so values avoid them
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t"), max_size=12)
VALUE = TEXT.filter(bool)  # ldaptor's parser cannot read empty values


def _substrings(attr, initial, anys, final):
    return Substrings(attr, initial, tuple(anys), final)


SUBSTRINGS = st.builds(
    _substrings,
    ATTR,
    st.none() | VALUE,
    st.lists(VALUE, max_size=3),
    st.none() | VALUE,
).filter(lambda f: f.initial or f.any or f.final)
EXTENSIBLE = st.builds(
    Extensible, st.none() | RULE, st.none() | ATTR, VALUE, st.booleans()
).filter(lambda f: f.rule or f.attr)
LEAF = st.one_of(
    st.builds(Equality, ATTR, VALUE),
    SUBSTRINGS,
    st.builds(Present, ATTR),
    st.builds(GreaterOrEqual, ATTR, VALUE),
    st.builds(LessOrEqual, ATTR, VALUE),
    st.builds(Approx, ATTR, VALUE),
    EXTENSIBLE,
)
FILTER = st.recursive(
    LEAF,
    lambda children: st.one_of(
        st.builds(And, st.lists(children, min_size=1, max_size=4).map(tuple)),
        st.builds(Or, st.lists(children, min_size=1, max_size=4).map(tuple)),
        st.builds(Not, children),
    ),
    max_leaves=12,
)
OID = st.from_regex(r"[0-9](\.[0-9]{1,6}){1,8}", fullmatch=True)
CONTROLS = st.lists(st.tuples(OID, st.booleans(), st.none() | st.binary(max_size=20)), max_size=3)

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# --------------------------------------------------------------------------
# Cross-checks with ldaptor: requests


@SETTINGS
@given(
    flt=FILTER,
    base=TEXT,
    scope=st.integers(0, 2),
    deref=st.integers(0, 3),
    size_limit=st.integers(0, ber.MAX_INT),
    time_limit=st.integers(0, ber.MAX_INT),
    types_only=st.booleans(),
    attributes=st.lists(ATTR, max_size=10),
    message_id=st.integers(0, ber.MAX_INT),
    controls=st.none() | CONTROLS,
)
def test_search_from_ldaptor_decodes_to_the_same_values(
    flt, base, scope, deref, size_limit, time_limit, types_only, attributes, message_id, controls
):
    reference = ldapfilter.parseFilter(to_text(flt))
    req = pureldap.LDAPSearchRequest(
        baseObject=base,
        scope=scope,
        derefAliases=deref,
        sizeLimit=size_limit,
        timeLimit=time_limit,
        typesOnly=types_only,
        filter=reference,
        attributes=attributes,
    )
    ldaptor_controls = (
        None if controls is None else [(oid, True if c else None, v) for oid, c, v in controls]
    )
    wire = ldaptor_wire(req, message_id, ldaptor_controls)

    assert ber.frame(wire, MAX_PDU) == len(wire)
    msg = ber.decode_message(wire)
    assert msg.message_id == message_id
    assert msg.op_tag == 0x63
    expected_controls = tuple(Control(oid, c, v) for oid, c, v in controls or ())
    assert msg.controls == expected_controls
    got = ber.decode_search(msg.op, controls=msg.controls)
    assert got == SearchRequest(
        base=base,
        scope=scope,
        filter=flt,
        attributes=tuple(attributes),
        size_limit=size_limit,
        time_limit=time_limit,
        types_only=types_only,
        deref_aliases=deref,
        controls=expected_controls,
    )
    assert ber.decode_filter(reference.toWire()) == flt


def test_snom_capture_with_non_minimal_size_limit():
    # Snom search request as captured by ldap.net (zivillian/ldap.net commit
    # b00843eb, "CanReadSnomSearchRequest"): sizeLimit 50 is "02 02 00 32".
    capture = bytes.fromhex(
        "306c020102636704136463 3d6576656e7470686f6e652c64633d6465"
        "0a01020a0100 02020032 020100 010100"
        "a11b a40c0402736e3006 80046d6a616d a40b04016c3006 80046d6a616d"
        "3023 0402736e 04016c 040f74656c6570686f6e654e756d626572 04096a70656750686f746f"
    )
    assert ber.frame(capture, MAX_PDU) == len(capture)
    msg = ber.decode_message(capture)
    assert (msg.message_id, msg.op_tag, msg.controls) == (2, 0x63, ())
    req = ber.decode_search(msg.op)
    assert req == SearchRequest(
        base="dc=eventphone,dc=de",
        scope=2,
        filter=Or(
            (
                Substrings("sn", "mjam", (), None),
                Substrings("l", "mjam", (), None),
            )
        ),
        attributes=("sn", "l", "telephoneNumber", "jpegPhoto"),
        size_limit=50,
        time_limit=0,
        types_only=False,
        deref_aliases=0,
    )


def test_non_minimal_long_form_lengths_everywhere():
    # The shape .NET/AD clients send: every length as 84 xx xx xx xx.
    flt = tlv84(0xA1, tlv84(0xA3, tlv84(0x04, b"cn") + tlv84(0x04, b"x")) + tlv84(0x87, b"mail"))
    op = tlv84(
        0x63,
        tlv84(0x04, b"dc=example,dc=com")
        + tlv84(0x0A, b"\x00\x01")  # non-minimal ENUMERATED too
        + tlv84(0x0A, b"\x00")
        + tlv84(0x02, b"\x00\x00\x00\x64")
        + tlv84(0x02, b"\x3c")
        + tlv84(0x01, b"\x01")  # TRUE as 01, not FF
        + flt
        + tlv84(0x30, tlv84(0x04, b"cn")),
    )
    control = tlv84(
        0x30,
        tlv84(0x04, ber.OID_PAGED_RESULTS.encode())
        + tlv84(0x01, b"\xff")
        + tlv84(0x04, tlv84(0x30, tlv84(0x02, b"\x64") + tlv84(0x04, b""))),
    )
    wire = tlv84(0x30, tlv84(0x02, b"\x00\x1e") + op + tlv84(0xA0, control))
    assert ber.frame(wire, MAX_PDU) == len(wire)
    msg = ber.decode_message(wire)
    assert msg.message_id == 30
    req = ber.decode_search(msg.op, controls=msg.controls)
    assert req.base == "dc=example,dc=com"
    assert (req.scope, req.deref_aliases, req.size_limit, req.time_limit) == (1, 0, 100, 60)
    assert req.types_only is True
    assert req.filter == Or((Equality("cn", "x"), Present("mail")))
    assert req.attributes == ("cn",)
    (control,) = req.controls
    assert control.oid == ber.OID_PAGED_RESULTS and control.critical
    assert ber.decode_paged_results_value(control.value) == (100, b"")


@pytest.mark.parametrize(
    "req, expected",
    [
        (pureldap.LDAPBindRequest(version=3, dn="", auth=""), (3, "", "simple", b"", None)),
        (
            pureldap.LDAPBindRequest(version=2, dn="cn=USER, dc=example,dc=com", auth="s3cr3t"),
            (2, "cn=USER, dc=example,dc=com", "simple", b"s3cr3t", None),
        ),
        (
            pureldap.LDAPBindRequest(version=3, dn="asterisk", auth=("PLAIN", b"\0u\0p"), sasl=True),
            (3, "asterisk", "sasl", b"\0u\0p", "PLAIN"),
        ),
        (
            pureldap.LDAPBindRequest(version=3, dn="", auth=("GSSAPI", None), sasl=True),
            (3, "", "sasl", b"", "GSSAPI"),
        ),
    ],
)
def test_bind_requests_from_ldaptor(req, expected):
    msg = ber.decode_message(ldaptor_wire(req, 5))
    assert (msg.message_id, msg.op_tag) == (5, 0x60)
    assert ber.decode_bind(msg.op) == expected


def test_unbind_abandon_extended_from_ldaptor():
    msg = ber.decode_message(ldaptor_wire(pureldap.LDAPUnbindRequest(), 9))
    assert (msg.message_id, msg.op_tag, msg.op) == (9, 0x42, b"\x42\x00")

    msg = ber.decode_message(ldaptor_wire(pureldap.LDAPAbandonRequest(id=300), 10))
    assert msg.op_tag == 0x50
    assert ber.decode_abandon(msg.op) == 300
    assert ber.decode_abandon(b"\x50\x02\x00\x07") == 7  # non-minimal

    msg = ber.decode_message(ldaptor_wire(pureldap.LDAPStartTLSRequest(), 11))
    assert msg.op_tag == 0x77
    assert ber.decode_extended(msg.op) == (ber.OID_START_TLS, None)

    pm = pureldap.LDAPPasswordModifyRequest(userIdentity=b"cn=x", newPasswd=b"pw")
    msg = ber.decode_message(ldaptor_wire(pm, 12))
    assert ber.decode_extended(msg.op) == (ber.OID_PASSWORD_MODIFY, pm.requestValue)


@pytest.mark.parametrize(
    "req, tag",
    [
        (pureldap.LDAPDelRequest(entry="cn=a,dc=example,dc=com"), 0x4A),
        (pureldap.LDAPModifyDNRequest(entry="cn=a", newrdn="cn=b", deleteoldrdn=True), 0x6C),
        (pureldap.LDAPAddRequest(entry="cn=a", attributes=[(pureldap.LDAPAttributeDescription("cn"),
                                                            pureber.BERSet([pureldap.LDAPAttributeValue("a")]))]),
         0x68),
        (
            pureldap.LDAPCompareRequest(
                entry="cn=a",
                ava=pureldap.LDAPAttributeValueAssertion(
                    pureber.BEROctetString("cn"), pureber.BEROctetString("a")
                ),
            ),
            0x6E,
        ),
    ],
)
def test_write_operations_are_framed_with_their_tag(req, tag):
    wire = ldaptor_wire(req, 3)
    msg = ber.decode_message(wire)
    assert (msg.message_id, msg.op_tag) == (3, tag)
    assert wire.endswith(msg.op)
    assert ber.RESPONSE_TAG.get(tag, None) in (0x6B, 0x6D, 0x69, 0x6F)
    ber.check_shape(msg.op_tag, msg.op)  # a well-formed request has its operation's shape


def test_modify_request_from_ldaptor_has_its_shape():
    from ldaptor import delta

    req = delta.ModifyOp("cn=a", [delta.Replace("telephoneNumber", ["1", "2"]), delta.Delete("mobile")]).asLDAP()
    msg = ber.decode_message(ldaptor_wire(req, 4))
    ber.check_shape(msg.op_tag, msg.op)


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag, len(content))) + content


@pytest.mark.parametrize("op, why", [
    # ModifyDN: deleteoldrdn an INTEGER, a missing newrdn, an extra element, a 2-byte BOOLEAN
    (_tlv(0x6C, _tlv(0x04, b"cn=a") + _tlv(0x04, b"cn=b") + _tlv(0x02, b"\x01")), "0x02 where 0x01"),
    (_tlv(0x6C, _tlv(0x04, b"cn=a") + _tlv(0x04, b"cn=b")), "ends early"),
    (_tlv(0x6C, _tlv(0x04, b"cn=a") + _tlv(0x04, b"cn=b") + _tlv(0x01, b"\xff") + _tlv(0x80, b"o=x")
          + _tlv(0x04, b"x")), "extra elements"),
    (_tlv(0x6C, _tlv(0x04, b"cn=a") + _tlv(0x04, b"cn=b") + _tlv(0x01, b"\x00\x00")), "BOOLEAN of 2 bytes"),
    # Add: attributes as a SET, values as a SEQUENCE
    (_tlv(0x68, _tlv(0x04, b"cn=a") + _tlv(0x31, b"")), "0x31 where 0x30"),
    (_tlv(0x68, _tlv(0x04, b"cn=a") + _tlv(0x30, _tlv(0x30, _tlv(0x04, b"cn") + _tlv(0x30, b"")))), "0x30 where 0x31"),
    # Modify: the operation as an OCTET STRING
    (_tlv(0x66, _tlv(0x04, b"cn=a") + _tlv(0x30, _tlv(0x30, _tlv(0x04, b"\x00") + _tlv(0x30, b"")))), "0x04 where 0x0a"),
    # Compare: an assertion of three parts
    (_tlv(0x6E, _tlv(0x04, b"cn=a") + _tlv(0x30, _tlv(0x04, b"cn") + _tlv(0x04, b"a") + _tlv(0x04, b"b"))),
     "extra elements"),
])
def test_requests_of_another_shape_are_refused(op, why):
    with pytest.raises(BERError, match=why):
        ber.check_shape(op[0], op)


def test_latin1_and_invalid_utf8_values_fall_back_to_latin1():
    flt = tlv(0xA3, octets("sn") + octets(b"M\xfcller"))
    req = ber.decode_search(search_op(flt, base=octets(b"o=B\xe4cker")))
    assert req.filter == Equality("sn", "Müller")
    assert req.base == "o=Bäcker"
    flt = tlv(0xA3, octets("sn") + octets("Müller"))
    assert ber.decode_search(search_op(flt)).filter == Equality("sn", "Müller")


def test_liberal_but_exact_filter_choices():
    # explicit dnAttributes FALSE (ldaptor sends it), BOOLEAN TRUE as 01
    ext = tlv(0xA9, octets("cn", 0x82) + octets("x", 0x83) + b"\x84\x01\x00")
    assert ber.decode_filter(ext) == Extensible(None, "cn", "x", False)
    ext = tlv(0xA9, octets("1.2.3", 0x81) + octets("x", 0x83) + b"\x84\x01\x01")
    assert ber.decode_filter(ext) == Extensible("1.2.3", None, "x", True)
    # RFC 4526 absolute true/false
    assert ber.decode_filter(b"\xa0\x00") == And(())
    assert ber.decode_filter(b"\xa1\x00") == Or(())
    # substrings with many "any" parts (AudioCodes per-digit wildcards)
    parts = b"".join(octets(d, 0x81) for d in "0382345")
    sub = tlv(0xA4, octets("telephoneNumber") + tlv(0x30, octets("5", 0x80) + parts + octets("6", 0x82)))
    assert ber.decode_filter(sub) == Substrings("telephoneNumber", "5", tuple("0382345"), "6")


# --------------------------------------------------------------------------
# Cross-checks with ldaptor: responses

ENTRY_VALUES = st.lists(TEXT, max_size=4)
ENTRY = st.lists(st.tuples(ATTR, ENTRY_VALUES), max_size=8)


@SETTINGS
@given(message_id=st.integers(0, ber.MAX_INT), dn=TEXT, attributes=ENTRY, long_value=st.booleans())
def test_entry_encoding_is_byte_identical_to_ldaptor(message_id, dn, attributes, long_value):
    if long_value:  # long-form lengths at every level
        attributes = attributes + [("jpegPhoto", ["x" * 300, "é" * 70000])]
    ours = ber.encode_search_entry(message_id, dn, attributes)
    reference = ldaptor_wire(pureldap.LDAPSearchResultEntry(dn, attributes), message_id)
    assert ours == reference
    assert ber.wrap_message(message_id, ber.encode_entry_body(dn, attributes)) == ours
    decoded = ldaptor_decode(ours, CLIENT_DECODER)
    assert decoded.id == message_id
    assert decoded.value.objectName == dn.encode()
    assert decoded.value.attributes == [
        (name.encode(), [v.encode() for v in values]) for name, values in attributes
    ]


@SETTINGS
@given(message_id=st.integers(0, ber.MAX_INT), entries=st.lists(st.tuples(TEXT, ENTRY), max_size=5),
       code=st.sampled_from([0, 3, 4, 32, 200]), matched=TEXT, message=TEXT, long_entry=st.booleans())
def test_search_answer_in_one_go_is_byte_identical(message_id, entries, code, matched, message, long_entry):
    """The server's one-go answer equals entry messages from ``wrap_message`` and ``encode_result``'s done."""
    if long_entry:
        entries = entries + [("uid=x", [("jpegPhoto", ["x" * 300, "é" * 70000])])]
    ops = [ber.encode_entry_body(dn, attributes) for dn, attributes in entries]
    expected = b"".join([ber.wrap_message(message_id, op) for op in ops]
                        + [ber.encode_result(message_id, 0x65, code, matched_dn=matched, message=message)])
    assert ber.encode_search_answer(message_id, ops, ber.search_done_op(code, matched, message)) == expected


def test_types_only_entry_has_empty_value_sets():
    attributes = [("cn", ["Jürgen"]), ("mobile", ["+49 171 1"])]
    ours = ber.encode_search_entry(4, "uid=1,dc=x", attributes, types_only=True)
    reference = ldaptor_wire(
        pureldap.LDAPSearchResultEntry("uid=1,dc=x", [("cn", []), ("mobile", [])]), 4
    )
    assert ours == reference


def test_entry_values_may_be_bytes_or_contain_lone_surrogates():
    body = ber.encode_entry_body("uid=1", [("jpegPhoto", [b"\xff\xd8\xff"]), ("cn", ["a\ud800b"])])
    decoded = ldaptor_decode(ber.wrap_message(1, body), CLIENT_DECODER)
    assert decoded.value.attributes == [(b"jpegPhoto", [b"\xff\xd8\xff"]), (b"cn", [b"a?b"])]
    # generators are fine too
    gen = ((name, values) for name, values in [("cn", ["x"])])
    assert ber.encode_entry_body("uid=1", gen) == ber.encode_entry_body("uid=1", [("cn", ["x"])])


RESULT_CLASSES = [
    (0x65, pureldap.LDAPSearchResultDone),
    (0x61, pureldap.LDAPBindResponse),
    (0x67, pureldap.LDAPModifyResponse),
    (0x69, pureldap.LDAPAddResponse),
    (0x6B, pureldap.LDAPDelResponse),
    (0x6D, pureldap.LDAPModifyDNResponse),
    (0x6F, pureldap.LDAPCompareResponse),
    (0x78, pureldap.LDAPExtendedResponse),
]


@pytest.mark.parametrize("op_tag, cls", RESULT_CLASSES)
@settings(max_examples=40, deadline=None)
@given(
    message_id=st.integers(0, ber.MAX_INT),
    result_code=st.sampled_from([0, 1, 2, 4, 7, 12, 32, 49, 53, 80, 4096]),
    matched_dn=TEXT,
    diagnostic=TEXT,
    controls=CONTROLS,
)
def test_results_are_byte_identical_to_ldaptor(
    op_tag, cls, message_id, result_code, matched_dn, diagnostic, controls
):
    ours = ber.encode_result(
        message_id,
        op_tag,
        result_code,
        matched_dn,
        diagnostic,
        tuple(Control(oid, c, v) for oid, c, v in controls),
    )
    resp = cls(resultCode=result_code, matchedDN=matched_dn, errorMessage=diagnostic)
    reference = ldaptor_wire(
        resp, message_id, [(oid, True if c else None, v) for oid, c, v in controls] or None
    )
    assert ours == reference
    decoded = ldaptor_decode(ours, CLIENT_DECODER)
    assert (decoded.id, decoded.value.resultCode) == (message_id, result_code)
    assert decoded.value.matchedDN == matched_dn.encode()
    assert decoded.value.errorMessage == diagnostic.encode()
    assert [(c[0], bool(c[1]), c[2]) for c in decoded.controls or ()] == [
        (oid.encode(), c, v) for oid, c, v in controls
    ]


def test_extended_and_bind_response_extras_match_ldaptor():
    ours = ber.encode_result(
        7, 0x78, 0, response_name=ber.OID_START_TLS, response_value=b"\x01\x02"
    )
    reference = ldaptor_wire(
        pureldap.LDAPExtendedResponse(resultCode=0, responseName=ber.OID_START_TLS, response=b"\x01\x02"), 7
    )
    assert ours == reference
    decoded = ldaptor_decode(ours, CLIENT_DECODER).value
    assert (decoded.responseName, decoded.response) == (ber.OID_START_TLS.encode(), b"\x01\x02")

    notice = ber.encode_result(
        0, 0x78, 2, message="bad PDU", response_name=ber.OID_NOTICE_OF_DISCONNECTION
    )
    decoded = ldaptor_decode(notice, CLIENT_DECODER)
    assert decoded.id == 0 and decoded.value.resultCode == 2

    ours = ber.encode_result(8, 0x61, 14, extra=tlv(0x87, b"challenge"))
    reference = ldaptor_wire(pureldap.LDAPBindResponse(resultCode=14, serverSaslCreds=b"challenge"), 8)
    assert ours == reference

    with pytest.raises(ValueError):
        ber.encode_result(1, 0x30, 0)


@given(size=st.integers(0, ber.MAX_INT), cookie=st.binary(max_size=300))
def test_paged_results_value_round_trip_and_ldaptor_bytes(size, cookie):
    value = ber.encode_paged_results_value(size, cookie)
    reference = pureber.BERSequence(
        [pureber.BERInteger(size), pureber.BEROctetString(cookie)]
    ).toWire()
    assert value == reference
    assert ber.decode_paged_results_value(value) == (size, cookie)


def test_paged_results_value_as_ldapsearch_sends_it():
    assert ber.decode_paged_results_value(bytes.fromhex("3005020164 0400")) == (100, b"")
    assert ber.decode_paged_results_value(bytes.fromhex("3006 02020064 0400")) == (100, b"")
    for bad in ["3005 0201ff 0400", "3003 020164", "3007 020164 0400 0000", "3005 040164 0400"]:
        with pytest.raises(BERError):
            ber.decode_paged_results_value(bytes.fromhex(bad))


def test_sort_control_values():
    keys = pureber.BERSequence(
        [
            pureber.BERSequence([pureber.BEROctetString("cn")]),
            pureber.BERSequence(
                [
                    pureber.BEROctetString("displayName"),
                    pureber.BEROctetString("caseIgnoreOrderingMatch", tag=0x80),
                    pureber.BERBoolean(True, tag=0x81),
                ]
            ),
            pureber.BERSequence([pureber.BEROctetString("sn"), pureber.BERBoolean(False, tag=0x81)]),
        ]
    ).toWire()
    assert ber.decode_sort_value(keys) == [
        ("cn", None, False),
        ("displayName", "caseIgnoreOrderingMatch", True),
        ("sn", None, False),
    ]
    assert ber.encode_sort_response_value(0) == pureber.BERSequence([pureber.BEREnumerated(0)]).toWire()
    assert ber.encode_sort_response_value(16, "foo") == pureber.BERSequence(
        [pureber.BEREnumerated(16), pureber.BEROctetString("foo", tag=0x80)]
    ).toWire()
    for bad in ["3003 300104", "3004 3002 0101", "3005 3003 020100"]:
        with pytest.raises(BERError):
            ber.decode_sort_value(bytes.fromhex(bad))


# --------------------------------------------------------------------------
# Framing and limits


def test_frame_waits_for_complete_messages():
    one = message(search_op(b"\x87\x0bobjectClass"), 1)
    two = message(b"\x42\x00", 2)
    stream = one + two
    for cut in range(len(one)):
        assert ber.frame(stream[:cut], MAX_PDU) is None
    assert ber.frame(stream[: len(one)], MAX_PDU) == len(one)
    assert ber.frame(stream, MAX_PDU) == len(one)
    assert ber.frame(bytearray(stream[len(one) :]), MAX_PDU) == len(two)
    assert ber.frame(memoryview(stream)[len(one) :], MAX_PDU) == len(two)
    # non-minimal long form
    long_form = tlv84(0x30, b"\x02\x01\x01\x42\x00")
    assert ber.frame(long_form, MAX_PDU) == len(long_form)
    assert ber.frame(long_form[:5], MAX_PDU) is None


@pytest.mark.parametrize(
    "data",
    [b"\x04\x00", b"\x61\x00", b"\xff", b"\x30\x80", b"\x30\x85\x00\x00\x00\x00\x05", b"\x30\xff"],
)
def test_frame_refuses_what_is_not_an_ldap_message(data):
    with pytest.raises(BERError) as info:
        ber.frame(data, MAX_PDU)
    assert not isinstance(info.value, PDUTooLarge)


def test_huge_length_is_refused_before_any_allocation():
    header = b"\x30\x84\x7f\xff\xff\xff"  # announces 2 GiB
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(PDUTooLarge):
            ber.frame(header, MAX_PDU)
        with pytest.raises(PDUTooLarge):
            ber.frame(header[:6] + b"\x02\x01\x01", MAX_PDU)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    assert elapsed < 0.1
    # the limit counts the whole message, header included
    msg = message(b"\x42\x00")
    assert ber.frame(msg, len(msg)) == len(msg)
    with pytest.raises(PDUTooLarge):
        ber.frame(msg, len(msg) - 1)
    assert issubclass(PDUTooLarge, BERError) and issubclass(BERError, ValueError)
    # inner lengths beyond their parent are errors too, never allocations
    with pytest.raises(BERError):
        ber.decode_message(b"\x30\x0b\x02\x01\x01\x63\x84\x7f\xff\xff\xff\x04\x00")


@pytest.mark.parametrize(
    "mid, ok",
    [
        (b"\x02\x01\x00", 0),
        (b"\x02\x02\x00\x05", 5),
        (b"\x02\x04\x7f\xff\xff\xff", ber.MAX_INT),
        (b"\x02\x05\x00\x7f\xff\xff\xff", ber.MAX_INT),
        (b"\x02\x01\xff", None),  # -1
        (b"\x02\x05\x00\x80\x00\x00\x00", None),  # 2**31
        (b"\x02\x09" + b"\x01" * 9, None),
        (b"\x02\x11" + b"\x00" * 17, None),  # absurdly padded
        (b"\x02\x00", None),
        (b"\x04\x01\x01", None),
    ],
)
def test_message_id_range(mid, ok):
    wire = tlv(0x30, mid + b"\x42\x00")
    if ok is None:
        with pytest.raises(BERError):
            ber.decode_message(wire)
    else:
        assert ber.decode_message(wire).message_id == ok


BAD_SEARCHES = {
    "scope 3": search_op(b"\x87\x02cn", fields=b"\x0a\x01\x03\x0a\x01\x00\x02\x01\x00\x02\x01\x00\x01\x01\x00"),
    "deref 4": search_op(b"\x87\x02cn", fields=b"\x0a\x01\x02\x0a\x01\x04\x02\x01\x00\x02\x01\x00\x01\x01\x00"),
    "negative size": search_op(b"\x87\x02cn", fields=b"\x0a\x01\x02\x0a\x01\x00\x02\x01\xff\x02\x01\x00\x01\x01\x00"),
    "size > maxInt": search_op(
        b"\x87\x02cn", fields=b"\x0a\x01\x02\x0a\x01\x00\x02\x05\x01\x00\x00\x00\x00\x02\x01\x00\x01\x01\x00"
    ),
    "empty typesOnly": search_op(b"\x87\x02cn", fields=b"\x0a\x01\x02\x0a\x01\x00\x02\x01\x00\x02\x01\x00\x01\x00"),
    "scope as OCTET STRING": search_op(
        b"\x87\x02cn", fields=b"\x04\x01\x02\x0a\x01\x00\x02\x01\x00\x02\x01\x00\x01\x01\x00"
    ),
    "AVA with three elements": search_op(tlv(0xA3, octets("cn") + octets("x") + octets("y"))),
    "AVA with one element": search_op(tlv(0xA3, octets("cn"))),
    "AVA value as INTEGER": search_op(tlv(0xA3, octets("cn") + b"\x02\x01\x01")),
    "NOT with two filters": search_op(tlv(0xA2, b"\x87\x02cn\x87\x02sn")),
    "empty NOT": search_op(b"\xa2\x00"),
    "child longer than AND": search_op(b"\xa0\x03\x87\x04cn"),
    "unknown filter choice": search_op(b"\xaa\x00"),
    "constructed present": search_op(b"\xa7\x02cn"),
    "substrings without parts": search_op(tlv(0xA4, octets("cn") + b"\x30\x00")),
    "initial after any": search_op(tlv(0xA4, octets("cn") + tlv(0x30, octets("a", 0x81) + octets("b", 0x80)))),
    "two finals": search_op(tlv(0xA4, octets("cn") + tlv(0x30, octets("a", 0x82) + octets("b", 0x82)))),
    "any after final": search_op(tlv(0xA4, octets("cn") + tlv(0x30, octets("a", 0x82) + octets("b", 0x81)))),
    "unknown substring choice": search_op(tlv(0xA4, octets("cn") + tlv(0x30, octets("a", 0x83)))),
    "extensible without value": search_op(tlv(0xA9, octets("cn", 0x82))),
    "extensible out of order": search_op(tlv(0xA9, octets("cn", 0x82) + octets("1.2", 0x81) + octets("x", 0x83))),
    "attribute list entry not a string": search_op(b"\x87\x02cn", attrs=b"\x30\x03\x02\x01\x01"),
    "trailing bytes after attributes": tlv(
        0x63, b"\x04\x00\x0a\x01\x02\x0a\x01\x00\x02\x01\x00\x02\x01\x00\x01\x01\x00\x87\x02cn\x30\x00\x00"
    ),
    "missing attributes": tlv(0x63, b"\x04\x00\x0a\x01\x02\x0a\x01\x00\x02\x01\x00\x02\x01\x00\x01\x01\x00\x87\x02cn"),
    "indefinite length": search_op(b"\xa0\x80\x87\x02cn\x00\x00"),
    "five length octets": search_op(b"\xa0\x85\x00\x00\x00\x00\x04\x87\x02cn"),
    "bind tag": tlv(0x60, b"\x02\x01\x03\x04\x00\x80\x00"),
}


@pytest.mark.parametrize("name", sorted(BAD_SEARCHES))
def test_malformed_search_requests(name):
    with pytest.raises(BERError):
        ber.decode_search(BAD_SEARCHES[name])


@pytest.mark.parametrize(
    "wire",
    [
        b"\x31\x05\x02\x01\x01\x42\x00",  # SET, not SEQUENCE
        b"\x30\x05\x02\x01\x01\x30\x00",  # op is not APPLICATION
        b"\x30\x05\x02\x01\x01\x82\x00",  # op is context-specific
        b"\x30\x05\x02\x01\x01\x7f\x00",  # high tag number form
        b"\x30\x03\x02\x01\x01",  # no op
        b"\x30\x07\x02\x01\x01\x42\x00\xa1\x00",  # controls with the wrong tag
        b"\x30\x07\x02\x01\x01\x42\x00\x04\x00",  # trailing element
        b"\x30\x09\x02\x01\x01\x42\x00\xa0\x02\x04\x00",  # control is not a SEQUENCE
        b"\x30\x0b\x02\x01\x01\x42\x00\xa0\x04\x30\x02\x02\x00",  # controlType not a string
        b"\x30\x0e\x02\x01\x01\x42\x00\xa0\x07\x30\x05\x04\x01\x31\x02\x00",  # unknown element
        b"\x30\x05\x02\x01\x01\x42\x00\x00",  # trailing byte after the message
    ],
)
def test_malformed_envelopes(wire):
    with pytest.raises(BERError):
        ber.decode_message(wire)


def test_malformed_other_operations():
    for bad in [
        b"\x60\x07\x02\x01\x00\x04\x00\x80\x00",  # version 0
        b"\x60\x07\x02\x01\x03\x04\x00\x81\x00",  # krbv42LDAP
        b"\x60\x09\x02\x01\x03\x04\x00\x80\x00\x00\x00",  # trailing
        b"\x60\x0a\x02\x01\x03\x04\x00\xa3\x03\x04\x01P\x00",  # trailing inside SASL
        b"\x60\x05\x02\x01\x03\x04\x00",  # no authentication
    ]:
        with pytest.raises(BERError):
            ber.decode_bind(bad)
    for bad in [b"\x50\x00", b"\x50\x01\xff", b"\x42\x00", b"\x50\x01\x01\x00"]:
        with pytest.raises(BERError):
            ber.decode_abandon(bad)
    for bad in [b"\x77\x00", b"\x77\x02\x81\x00", b"\x77\x06\x80\x01x\x81\x00\x00", b"\x77\x05\x80\x01x\x82\x00"]:
        with pytest.raises(BERError):
            ber.decode_extended(bad)


# --------------------------------------------------------------------------
# Complexity limits


def test_100000_nested_filters_are_refused_quickly():
    for tag in (0xA2, 0xA0, 0xA1):
        flt = nested(100_000, tag)
        op = search_op(flt)
        wire = message(op)
        assert ber.frame(wire, 1 << 24) == len(wire)
        started = time.perf_counter()
        msg = ber.decode_message(wire)
        with pytest.raises(FilterTooComplex):
            ber.decode_search(msg.op)
        assert time.perf_counter() - started < 0.5
    # with the limits lifted it still decodes, iteratively, without RecursionError
    got = ber.decode_filter(nested(100_000), max_depth=200_000, max_items=200_000)
    assert isinstance(got, Not)


def test_depth_and_item_limits_are_exact():
    at_limit = nested(63)  # 63 NOTs + a leaf = depth 64
    assert depth(ber.decode_filter(at_limit)) == 64
    with pytest.raises(FilterTooComplex):
        ber.decode_filter(nested(64))
    assert depth(ber.decode_filter(nested(9), max_depth=10)) == 10
    with pytest.raises(FilterTooComplex):
        ber.decode_filter(nested(10), max_depth=10)

    wide = tlv(0xA1, b"\x87\x02cn" * 1023)  # 1 OR + 1023 items = 1024
    assert size(ber.decode_filter(wide)) == 1024
    with pytest.raises(FilterTooComplex):
        ber.decode_filter(tlv(0xA1, b"\x87\x02cn" * 1024))
    with pytest.raises(FilterTooComplex):
        ber.decode_search(search_op(tlv(0xA1, b"\x87\x02cn" * 100_000)))
    with pytest.raises(FilterTooComplex):
        ber.decode_filter(tlv(0xA1, b"\x87\x02cn" * 10), max_items=10)
    # substring components have their own budget
    many = tlv(0xA4, octets("cn") + tlv(0x30, octets("a", 0x81) * 2000))
    with pytest.raises(FilterTooComplex):
        ber.decode_filter(many)
    assert len(ber.decode_filter(many, max_items=2000).any) == 2000


# --------------------------------------------------------------------------
# Truncation and fuzzing: BERError and nothing else


def _corpus() -> list[bytes]:
    f = ldapfilter.parseFilter(
        "(&(|(cn=mey*)(sn=*ey*r))(!(telephoneNumber>=0))(mail~=x)(o<=z)(cn:dn:1.2.3:=v)(objectClass=*))"
    )
    search = pureldap.LDAPSearchRequest(
        baseObject="dc=example,dc=com", scope=2, sizeLimit=50, filter=f, attributes=["cn", "mobile"]
    )
    page = ber.encode_paged_results_value(32, b"cookie")
    return [
        ldaptor_wire(search, 200, [(ber.OID_PAGED_RESULTS, True, page)]),
        ldaptor_wire(pureldap.LDAPBindRequest(version=3, dn="cn=x", auth="pw"), 1),
        ldaptor_wire(pureldap.LDAPBindRequest(dn="", auth=("DIGEST-MD5", b"c"), sasl=True), 2),
        ldaptor_wire(pureldap.LDAPAbandonRequest(id=199), 3),
        ldaptor_wire(pureldap.LDAPExtendedRequest(requestName="1.2.3", requestValue=b"v"), 4),
        ldaptor_wire(pureldap.LDAPUnbindRequest(), 5),
        tlv84(0x30, tlv84(0x02, b"\x00\x06") + search_op(nested(5, 0xA0))),
    ]


def _decode_everything(data: bytes, max_pdu: int = MAX_PDU):
    """Run every decoder on ``data`` as the server would."""
    n = ber.frame(data, max_pdu)
    if n is None:
        return
    msg = ber.decode_message(bytes(data[:n]))
    ops = {
        0x63: lambda op: ber.decode_search(op, controls=msg.controls),
        0x60: ber.decode_bind,
        0x50: ber.decode_abandon,
        0x77: ber.decode_extended,
    }
    if msg.op_tag in ops:
        ops[msg.op_tag](msg.op)
    for c in msg.controls:
        if c.value is not None:
            for decode in (ber.decode_paged_results_value, ber.decode_sort_value):
                try:
                    decode(c.value)
                except BERError:
                    pass


def test_corpus_decodes():
    for wire in _corpus():
        _decode_everything(wire)


def test_truncation_at_every_cut_point():
    for wire in _corpus():
        msg = ber.decode_message(wire)
        for cut in range(len(wire)):
            prefix = wire[:cut]
            assert ber.frame(prefix, MAX_PDU) is None
            with pytest.raises(BERError):
                ber.decode_message(prefix)
        decoders = {
            0x63: ber.decode_search,
            0x60: ber.decode_bind,
            0x50: ber.decode_abandon,
            0x77: ber.decode_extended,
        }
        decode = decoders.get(msg.op_tag)
        if decode is None:
            continue
        decode(msg.op)
        for cut in range(len(msg.op)):
            with pytest.raises(BERError):
                decode(msg.op[:cut])


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        i = rng.randrange(len(b)) if b else 0
        if kind == 0 and b:
            b[i] = rng.randrange(256)
        elif kind == 1 and b:
            b[i] ^= 1 << rng.randrange(8)
        elif kind == 2:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif kind == 3 and b:
            del b[i : i + rng.randint(1, 4)]
        elif kind == 4 and b:
            b[i] = rng.choice([0x00, 0x7F, 0x80, 0x81, 0x84, 0x85, 0xFF, 0x30, 0xA0, 0xA2, 0x87])
        else:
            b = b[:i]
    return bytes(b)


def test_fuzz_mutated_messages_only_raise_ber_error():
    rng = random.Random(20240501)
    corpus = _corpus()
    bodies = []  # message contents and ops, to mutate behind a valid header
    for wire in corpus:
        _, start, _ = ber._header(wire, 0, len(wire))
        bodies.append((wire[start:], lambda b: tlv(0x30, b)))
        op = ber.decode_message(wire).op
        _, start, _ = ber._header(op, 0, len(op))
        bodies.append((op[start:], lambda b, tag=op[0]: tlv(0x30, b"\x02\x01\x01" + tlv(tag, b))))
    outcomes = {"ok": 0, "error": 0, "incomplete": 0}
    for i in range(30_000):
        if i % 3 == 0:
            data = _mutate(rng, rng.choice(corpus))
        else:
            body, wrap = rng.choice(bodies)
            data = wrap(_mutate(rng, body))
        try:
            if ber.frame(data, MAX_PDU) is None:
                outcomes["incomplete"] += 1
                continue
            _decode_everything(data)
            outcomes["ok"] += 1
        except BERError:
            outcomes["error"] += 1
    assert outcomes["ok"] > 1000 and outcomes["error"] > 1000, outcomes


def test_fuzz_random_bytes_only_raise_ber_error():
    rng = random.Random(4242)
    for _ in range(20_000):
        n = rng.randrange(64)
        body = bytes(rng.randrange(256) for _ in range(n))
        for data in (body, b"\x30" + body, tlv(0x30, body)):
            try:
                _decode_everything(data)
            except BERError:
                pass
        for decode in (
            ber.decode_search,
            ber.decode_bind,
            ber.decode_filter,
            ber.decode_paged_results_value,
            ber.decode_sort_value,
        ):
            try:
                decode(body)
            except BERError:
                pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_hypothesis_search_bodies(body):
    for data in (tlv(0x63, body), tlv(0x30, b"\x02\x01\x01" + tlv(0x63, body)), body):
        try:
            _decode_everything(data)
        except BERError:
            pass
        try:
            ber.decode_search(data)
        except BERError:
            pass


# --------------------------------------------------------------------------
# Speed (the point of this module)

PHONE_FILTER = "(|(telephoneNumber=+4989123)(mobile=+4989123))"
PHONE_ATTRS = ["cn", "sn", "givenName", "displayName", "o", "telephoneNumber", "mobile", "mail"]
ENTRY_7 = [
    ("objectClass", ["top", "person", "organizationalPerson", "inetOrgPerson"]),
    ("cn", ["Jürgen Müller"]),
    ("sn", ["Müller"]),
    ("givenName", ["Jürgen"]),
    ("o", ["Example GmbH"]),
    ("telephoneNumber", ["+49 89 1234-217"]),
    ("mobile", ["+49 171 2345678"]),
]
ENTRY_DN = "uid=AAMkAGI2TG93AAA=,dc=example,dc=com"


def _phone_request() -> bytes:
    req = pureldap.LDAPSearchRequest(
        baseObject="dc=example,dc=com",
        scope=2,
        sizeLimit=50,
        filter=ldapfilter.parseFilter(PHONE_FILTER),
        attributes=PHONE_ATTRS,
    )
    return ldaptor_wire(req, 7)


def _timings(number: int = 20_000, repeat: int = 5) -> dict[str, float]:
    """Microseconds per call, best of ``repeat``."""
    wire = _phone_request()
    body = ber.encode_entry_body(ENTRY_DN, ENTRY_7)

    def ours_decode():
        msg = ber.decode_message(wire)
        return ber.decode_search(msg.op, controls=msg.controls)

    cases = {
        "decode phone search: ours (decode_message + decode_search)": ours_decode,
        "decode phone search: ldaptor berDecodeObject": lambda: pureber.berDecodeObject(
            SERVER_DECODER, wire
        ),
        "encode 7-attribute entry: ours encode_search_entry": lambda: ber.encode_search_entry(
            7, ENTRY_DN, ENTRY_7
        ),
        "encode 7-attribute entry: ours wrap_message(cached body)": lambda: ber.wrap_message(7, body),
        "encode 7-attribute entry: ldaptor LDAPSearchResultEntry.toWire": lambda: ldaptor_wire(
            pureldap.LDAPSearchResultEntry(ENTRY_DN, ENTRY_7), 7
        ),
    }
    return {
        name: min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6
        for name, fn in cases.items()
    }


def test_faster_than_ldaptor():
    t = _timings(number=1000, repeat=3)
    names = list(t)
    assert t[names[0]] * 3 < t[names[1]], t
    assert t[names[2]] * 3 < t[names[4]], t
    assert t[names[3]] * 10 < t[names[4]], t


if __name__ == "__main__":
    import platform

    print(f"Python {platform.python_version()} ({platform.python_implementation()})")
    for name, us in _timings().items():
        print(f"{us:8.2f} us  {name}")

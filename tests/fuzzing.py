"""LDAP fuzz cases and wire helpers for the fuzz test and the soak script (issue 10).

Pure and deterministic: every generator takes a ``random.Random`` and returns a
:class:`Case` (the bytes to send and what the server owes us), so a seed
reproduces a run case by case.  No sockets here except in :class:`Reader`,
which only parses what a socket delivered.

Building blocks:

- :func:`tlv`, :func:`integer`, :func:`octets`: BER with *optional* sloppiness
  (non-minimal lengths and integers) so the same encoder builds valid
  requests, the non-minimal forms real phones send, and broken ones;
- :func:`encode_filter`: our filter values (``gateway.ldap.filter``) to BER,
  used with ``gateway.ldap.filter_text.parse_filter`` for RFC 4515 strings;
- request builders for every LDAP operation (Bind, Unbind, Search, Modify,
  Add, Del, ModDN, Compare, Abandon, Extended);
- :data:`GENERATORS`: category name -> generator; :func:`make_case` picks one;
- :func:`predict_framing`: what the server's framer (``ber.frame``) will make
  of a byte stream, so the driver knows whether a probe behind a case is seen;
- :class:`Reader`: splits received bytes into decoded responses.

Envelopes and controls are wrapped with ``gateway.ldap.ber.wrap_message`` and
``ber.encode_controls`` where the bytes are meant to be valid.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from gateway.ldap import ber
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
)
from gateway.ldap.messages import Control

__all__ = [
    "Case",
    "GENERATORS",
    "CATEGORIES",
    "PROBE_ID",
    "make_case",
    "predict_framing",
    "probe",
    "Reader",
    "Response",
    "tlv",
    "integer",
    "octets",
    "encode_filter",
    "message",
    "search_op",
    "bind_op",
]

BASE = "dc=example,dc=com"
#: Message ID of the probe search sent behind every case; generators never use it.
PROBE_ID = 2_000_000_007
#: The server's default max_pdu_size (gateway.config.LdapConfig); only used to
#: decide which expectation is strict, never to bound what is sent.
DEFAULT_MAX_PDU = 262144

# --------------------------------------------------------------------------
# BER building blocks


def length(n: int, pad: int = 0) -> bytes:
    """A definite length; ``pad`` > 0 forces the long form with that many extra zero octets."""
    if pad <= 0 and n < 0x80:
        return bytes((n,))
    body = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
    body = b"\x00" * max(0, pad - 1) + body if pad > 0 else body
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, content: bytes, pad: int = 0) -> bytes:
    return bytes((tag,)) + length(len(content), pad) + content


def integer(value: int, tag: int = 0x02, pad: int = 0, len_pad: int = 0) -> bytes:
    """INTEGER/ENUMERATED; ``pad`` adds leading sign octets (non-minimal, as Snom sends)."""
    if value == 0:
        body = b"\x00"
    else:
        body = value.to_bytes(((value if value >= 0 else ~value).bit_length() + 8) // 8, "big", signed=True)
    if pad:
        body = (b"\xff" if value < 0 else b"\x00") * pad + body
    return tlv(tag, body, len_pad)


def octets(value: str | bytes, tag: int = 0x04, pad: int = 0) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogatepass")
    return tlv(tag, value, pad)


def boolean(value: bool, tag: int = 0x01) -> bytes:
    return bytes((tag, 1, 0xFF if value else 0x00))


def message(mid: int, op: bytes, controls: tuple[Control, ...] = (), *, pad: int = 0, mid_pad: int = 0) -> bytes:
    """An LDAPMessage; minimal (via ``ber.wrap_message``) unless a padding is asked for."""
    ctl = ber.encode_controls(controls) if controls else b""
    if pad == 0 and mid_pad == 0 and 0 <= mid <= ber.MAX_INT:
        return ber.wrap_message(mid, op, ctl)
    return tlv(0x30, integer(mid, pad=mid_pad) + op + ctl, pad)


# --------------------------------------------------------------------------
# Filters


def _value(v: str | bytes) -> bytes:
    return v if isinstance(v, bytes) else v.encode("utf-8", "surrogatepass")


def encode_filter(f, pad: int = 0) -> bytes:
    """BER for a ``gateway.ldap.filter`` value (iterative: any depth).

    Values may be ``bytes`` (sent as they are: invalid UTF-8, Latin-1).
    """
    # post-order over an explicit stack: (node, children_done)
    out: list[bytes] = []
    stack: list[tuple[object, bool]] = [(f, False)]
    while stack:
        node, done = stack.pop()
        if isinstance(node, (And, Or)):
            if not done:
                stack.append((node, True))
                for child in reversed(node.items):
                    stack.append((child, False))
                continue
            n = len(node.items)
            children = out[len(out) - n :] if n else []
            del out[len(out) - n :]
            out.append(tlv(0xA0 if isinstance(node, And) else 0xA1, b"".join(children), pad))
        elif isinstance(node, Not):
            if not done:
                stack.append((node, True))
                stack.append((node.item, False))
                continue
            out.append(tlv(0xA2, out.pop(), pad))
        else:
            out.append(_leaf(node, pad))
    (result,) = out
    return result


def _leaf(node, pad: int) -> bytes:
    if isinstance(node, Present):
        return tlv(0x87, _value(node.attr), pad)
    tag = {Equality: 0xA3, GreaterOrEqual: 0xA5, LessOrEqual: 0xA6, Approx: 0xA8}.get(type(node))
    if tag is not None:
        return tlv(tag, octets(_value(node.attr), pad=pad) + octets(_value(node.value), pad=pad), pad)
    if isinstance(node, Substrings):
        parts = []
        if node.initial is not None:
            parts.append(octets(_value(node.initial), 0x80, pad))
        parts += [octets(_value(a), 0x81, pad) for a in node.any]
        if node.final is not None:
            parts.append(octets(_value(node.final), 0x82, pad))
        return tlv(0xA4, octets(_value(node.attr), pad=pad) + tlv(0x30, b"".join(parts), pad), pad)
    if isinstance(node, Extensible):
        body = b""
        if node.rule is not None:
            body += octets(_value(node.rule), 0x81, pad)
        if node.attr is not None:
            body += octets(_value(node.attr), 0x82, pad)
        body += octets(_value(node.value), 0x83, pad)
        if node.dn_attributes:
            body += boolean(True, 0x84)
        return tlv(0xA9, body, pad)
    raise TypeError(f"not a filter: {node!r}")


# --------------------------------------------------------------------------
# Requests (op TLVs)


def search_op(base="", scope=2, deref=0, size_limit=0, time_limit=0, types_only=False, filter_ber=None,
              attributes=(), int_pad=0, len_pad=0) -> bytes:
    filter_ber = filter_ber if filter_ber is not None else tlv(0x87, b"objectClass")
    body = (
        octets(base, pad=len_pad)
        + integer(scope, 0x0A, int_pad, len_pad)
        + integer(deref, 0x0A, int_pad, len_pad)
        + integer(size_limit, pad=int_pad, len_pad=len_pad)
        + integer(time_limit, pad=int_pad, len_pad=len_pad)
        + boolean(types_only)
        + filter_ber
        + tlv(0x30, b"".join(octets(a, pad=len_pad) for a in attributes), len_pad)
    )
    return tlv(0x63, body, len_pad)


def bind_op(version=3, name="", password: bytes | None = b"", sasl: tuple[str, bytes | None] | None = None,
            int_pad=0) -> bytes:
    if sasl is not None:
        mech, creds = sasl
        auth = tlv(0xA3, octets(mech) + (octets(creds) if creds is not None else b""))
    else:
        auth = octets(password or b"", 0x80)
    return tlv(0x60, integer(version, pad=int_pad) + octets(name) + auth)


def unbind_op() -> bytes:
    return b"\x42\x00"


def abandon_op(mid: int, pad: int = 0) -> bytes:
    return integer(mid, 0x50, pad)


def del_op(dn) -> bytes:
    return octets(dn, 0x4A)


def compare_op(dn, attr, value) -> bytes:
    return tlv(0x6E, octets(dn) + tlv(0x30, octets(attr) + octets(value)))


def _attribute(name, values, tag=0x30) -> bytes:
    return tlv(tag, octets(name) + tlv(0x31, b"".join(octets(v) for v in values)))


def add_op(dn, attributes) -> bytes:
    return tlv(0x68, octets(dn) + tlv(0x30, b"".join(_attribute(n, v) for n, v in attributes)))


def modify_op(dn, changes) -> bytes:
    """``changes``: [(operation 0 add / 1 delete / 2 replace, attr, values)]."""
    items = b"".join(tlv(0x30, integer(op, 0x0A) + _attribute(a, v)) for op, a, v in changes)
    return tlv(0x66, octets(dn) + tlv(0x30, items))


def moddn_op(dn, new_rdn, delete_old=True, new_superior=None) -> bytes:
    body = octets(dn) + octets(new_rdn) + boolean(delete_old)
    if new_superior is not None:
        body += octets(new_superior, 0x80)
    return tlv(0x6C, body)


def extended_op(oid, value: bytes | None = None) -> bytes:
    return tlv(0x77, octets(oid, 0x80) + (octets(value, 0x81) if value is not None else b""))


def probe() -> bytes:
    """A cheap, always-valid search (base scope on the suffix, no attributes) with PROBE_ID."""
    return message(PROBE_ID, search_op(BASE, 0, 0, 0, 0, False, tlv(0x87, b"objectClass"), ["1.1"]))


# --------------------------------------------------------------------------
# Cases


@dataclass
class Case:
    """One fuzz case.

    ``expect``:

    - ``"reply"``: a response with ``mid`` and a tag in ``tags`` must arrive and
      the connection must stay open (the probe behind the case is answered);
    - ``"silent"``: the connection stays open (Abandon: no response owed);
    - ``"close"``: the server must close the connection;
    - ``"reply_or_close"``: anything but silence: the probe is answered, or the
      connection is closed.

    Whatever ``expect`` says, the driver requires a close when
    :func:`predict_framing` shows that the server's framer must refuse the
    stream, and half-closes (then requires a close) when the stream ends
    inside a message.  ``chunks`` > 1 sends the bytes in that many writes.
    """

    category: str
    data: bytes
    expect: str = "reply_or_close"
    mid: int | None = None
    tags: tuple[int, ...] = ()
    chunks: int = 1
    note: str = ""
    extra: dict = field(default_factory=dict)


def split_frames(data: bytes, max_pdu: int = DEFAULT_MAX_PDU) -> list[bytes]:
    """The complete messages at the start of ``data``, as the server's framer cuts them."""
    out = []
    pos = 0
    view = memoryview(data)
    while pos < len(data):
        try:
            size = ber.frame(view[pos:], max_pdu)
        except ber.BERError:
            break
        if size is None:
            break
        out.append(data[pos : pos + size])
        pos += size
    return out


def must_close(data: bytes, max_pdu: int = DEFAULT_MAX_PDU) -> str:
    """Why the server must close the connection on ``data`` ("" when it need not).

    The framer refuses a header, an envelope does not decode (``ber.decode_message``), or an
    Unbind decodes (with a message ID other than 0, which ldaptor drops as unsolicited).
    """
    if predict_framing(data, max_pdu) == "error":
        return "the framer refuses the stream"
    for frame in split_frames(data, max_pdu):
        try:
            m = ber.decode_message(frame)
        except ber.BERError as e:
            return f"an envelope does not decode ({e})"
        if m.op_tag == ber.OP_UNBIND_REQUEST and m.message_id != 0:
            return "an Unbind"
    return ""


def predict_framing(data: bytes, max_pdu: int = DEFAULT_MAX_PDU) -> str:
    """What ``ber.frame`` (the server's framer) makes of ``data``.

    ``"complete"``: whole messages only; ``"incomplete"``: the stream ends
    inside a message (the server rightly waits for more); ``"error"``: the
    framer refuses a header (the server must close).
    """
    pos = 0
    n = len(data)
    view = memoryview(data)
    while pos < n:
        try:
            size = ber.frame(view[pos:], max_pdu)
        except ber.BERError:
            return "error"
        if size is None:
            return "incomplete"
        pos += size
    return "complete"


# Attribute names phones send (phones.md, trap 4), some junk, and case variants.
ATTRS = [
    "cn", "sn", "givenName", "gn", "displayName", "telephoneNumber", "telePhoneNumber", "mobile", "Mobile",
    "homePhone", "homeTelephoneNumber", "ipPhone", "facsimileTelephoneNumber", "mail", "o", "company",
    "objectClass", "objectCategory", "uid", "commonName", "surname", "mobileTelephoneNumber", "otherTelephone",
    "msRTCSIP-Line", "CallerIDName", "AccountNumber", "jpegPhoto", "anr", "department", "l", "street",
    "fooBar", "", "1.1", "*", "+", "cn;lang-de", "2.5.4.3", "x" * 300, "telephoneNumber;binary", "ÄÖÜ",
]
VALUES = [
    "mey", "Meyer", "müller", "MULLER", "+4989123456", "089123456", "004989123456", "0004989123456", "201",
    "L0#04012345678", "5*0*3", "zz", "", " ", "person", "inetOrgPerson", "*", "\\", "()", "Jo", "jürgen",
    "Łukasz", "Zoë", "\u0000", "\ud800", "a" * 2000, "1" * 40, "+49 (89) 1234-567", "abcàáâãäåæç",
]
BAD_BYTES = [
    b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xc3",
    b"M\xfcller", b"\xd6zt\xfcrk", b"K\xf6hler", b"Gr\xfc\xdfe", b"\xe4\xf6\xfc\xdf", b"\x00\xff\x00",
    b"\xef\xbb\xbfcn", b"\xf8\x88\x80\x80\x80",
]
OIDS = [
    ber.OID_START_TLS, ber.OID_WHO_AM_I, ber.OID_PASSWORD_MODIFY, ber.OID_NOTICE_OF_DISCONNECTION,
    "1.3.6.1.4.1.4203.1.11.2", "1.3.6.1.1.8", "1.2.3", "", "not an oid", "1." + "9" * 500,
]
CONTROL_OIDS = [
    ber.OID_PAGED_RESULTS, ber.OID_SORT_REQUEST, "2.16.840.1.113730.3.4.9", "2.16.840.1.113730.3.4.2",
    "1.3.6.1.4.1.42.2.27.8.5.1", "1.2.840.113556.1.4.801", "1.2.3.4.5", "",
]
DEFAULT_UIDS = ["demo.c-0", "demo.c-1", "demo.c-17", "nobody"]


def _mid(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.8:
        return rng.randint(1, 100000)
    return rng.choice([0, 1, 127, 128, 255, 256, 65535, ber.MAX_INT, ber.MAX_INT - 1])


def _text(rng: random.Random, pool=VALUES) -> str | bytes:
    r = rng.random()
    if r < 0.6:
        return rng.choice(pool)
    if r < 0.75:
        return rng.choice(BAD_BYTES)
    if r < 0.9:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789+ -äöüß*()\\") for _ in range(rng.randint(0, 12)))
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 16)))


def _attr(rng: random.Random) -> str | bytes:
    a = rng.choice(ATTRS)
    if rng.random() < 0.2 and isinstance(a, str):
        a = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in a)
    if rng.random() < 0.05:
        return rng.choice(BAD_BYTES)
    return a


def random_filter(rng: random.Random, depth: int = 0, bad_text: bool = False):
    """A random filter tree (every choice of RFC 4511, including RFC 4526 empty AND/OR)."""
    text = (lambda: rng.choice(BAD_BYTES)) if bad_text else (lambda: _text(rng))
    r = rng.random()
    if depth < 5 and r < 0.3:
        kids = tuple(random_filter(rng, depth + 1, bad_text) for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 5, 8])))
        return And(kids) if rng.random() < 0.5 else Or(kids)
    if depth < 5 and r < 0.38:
        return Not(random_filter(rng, depth + 1, bad_text))
    kind = rng.randrange(7)
    attr = _attr(rng)
    if kind == 0:
        return Equality(attr, text())
    if kind == 1:
        anys = tuple(text() for _ in range(rng.choice([0, 0, 1, 2, 5])))
        initial = text() if rng.random() < 0.6 else None
        final = text() if rng.random() < 0.4 or (initial is None and not anys) else None
        return Substrings(attr, initial, anys, final)
    if kind == 2:
        return Present(attr)
    if kind == 3:
        return GreaterOrEqual(attr, text())
    if kind == 4:
        return LessOrEqual(attr, text())
    if kind == 5:
        return Approx(attr, text())
    rule = rng.choice([None, "1.2.840.113556.1.4.803", "caseIgnoreMatch", "2.5.13.2", "x"])
    return Extensible(rule, attr if rule is None or rng.random() < 0.7 else None, text(), rng.random() < 0.2)


def random_controls(rng: random.Random) -> tuple[Control, ...]:
    out = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        oid = rng.choice(CONTROL_OIDS)
        critical = rng.random() < 0.4
        if oid == ber.OID_PAGED_RESULTS and rng.random() < 0.6:
            cookie = rng.choice([b"", b"garbage", b"0123456789ab:5", bytes(rng.randrange(256) for _ in range(8))])
            value = ber.encode_paged_results_value(rng.choice([0, 1, 2, 50, ber.MAX_INT]), cookie)
        elif oid == ber.OID_SORT_REQUEST and rng.random() < 0.6:
            keys = b"".join(tlv(0x30, octets(_attr(rng)) + (boolean(True, 0x81) if rng.random() < 0.5 else b""))
                            for _ in range(rng.randint(0, 3)))
            value = tlv(0x30, keys)
        else:
            value = rng.choice([None, b"", b"\x30\x00", bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))])
        out.append(Control(oid, critical, value))
    return tuple(out)


def _search(rng: random.Random, flt=None, *, bad_text=False, int_pad=0, len_pad=0) -> bytes:
    base = rng.choice([BASE, BASE, "", "DC=EXAMPLE, DC=COM", f"uid={rng.choice(DEFAULT_UIDS)},{BASE}",
                       "ou=contacts," + BASE, "==,,", "cn=x"])
    if bad_text and rng.random() < 0.3:
        base = rng.choice(BAD_BYTES) + b"," + BASE.encode()
    attrs = [_attr(rng) for _ in range(rng.choice([0, 0, 1, 2, 3, 8]))]
    return search_op(
        base,
        rng.randrange(3),
        rng.randrange(4),
        rng.choice([0, 0, 1, 6, 20, 50, 100, ber.MAX_INT]),
        rng.choice([0, 0, 1, 30, ber.MAX_INT]),
        rng.random() < 0.1,
        encode_filter(flt if flt is not None else random_filter(rng, bad_text=bad_text)),
        attrs,
        int_pad=int_pad,
        len_pad=len_pad,
    )


# -- valid requests of every operation (op TLV, expected response tags, expect)

def _valid_op(rng: random.Random, op: str) -> tuple[bytes, tuple[int, ...], str]:
    dn = rng.choice([f"uid={rng.choice(DEFAULT_UIDS)},{BASE}", BASE, "", "cn=admin," + BASE, "asterisk"])
    if op == "search":
        return _search(rng), (ber.OP_SEARCH_RESULT_DONE,), "reply"
    if op == "bind":
        r = rng.random()
        if r < 0.4:
            return bind_op(rng.choice([2, 3]), rng.choice(["", dn])), (ber.OP_BIND_RESPONSE,), "reply"
        if r < 0.7:
            return bind_op(3, dn, rng.choice([b"secret", b"\x00", b"x" * 200])), (ber.OP_BIND_RESPONSE,), "reply"
        if r < 0.9:
            mech = rng.choice(["DIGEST-MD5", "PLAIN", "GSSAPI", "GSS-SPNEGO", "EXTERNAL", ""])
            return bind_op(3, dn, sasl=(mech, rng.choice([None, b"", b"\x00user\x00pw"]))), \
                (ber.OP_BIND_RESPONSE,), "reply"
        return bind_op(rng.choice([0, 1, 4, 127])), (ber.OP_BIND_RESPONSE,), "reply_or_close"
    if op == "unbind":
        return unbind_op(), (), "close"
    if op == "add":
        attrs = [("objectClass", ["inetOrgPerson"]), ("cn", [_text(rng)]), ("sn", ["x"])]
        return add_op(dn, attrs[: rng.randint(0, 3)]), (ber.OP_ADD_RESPONSE,), "reply"
    if op == "modify":
        changes = [(rng.randrange(3), _attr(rng), [_text(rng)]) for _ in range(rng.randint(1, 3))]
        return modify_op(dn, changes), (ber.OP_MODIFY_RESPONSE,), "reply"
    if op == "del":
        return del_op(dn), (ber.OP_DEL_RESPONSE,), "reply"
    if op == "moddn":
        return moddn_op(dn, "uid=renamed", rng.random() < 0.5, rng.choice([None, BASE])), \
            (ber.OP_MODDN_RESPONSE,), "reply"
    if op == "compare":
        return compare_op(dn, _attr(rng), _text(rng)), (ber.OP_COMPARE_RESPONSE,), "reply"
    if op == "abandon":
        return abandon_op(rng.choice([0, 1, 5, ber.MAX_INT])), (), "silent"
    if op == "extended":
        oid = rng.choice(OIDS)
        value = rng.choice([None, b"", b"\x30\x00", bytes(rng.randrange(256) for _ in range(10))])
        return extended_op(oid, value), (ber.OP_EXTENDED_RESPONSE,), "reply"
    raise ValueError(op)


OPS = ["search", "bind", "unbind", "add", "modify", "del", "moddn", "compare", "abandon", "extended"]


def gen_valid(op):
    def gen(rng: random.Random) -> Case:
        mid = _mid(rng)
        op_ber, tags, expect = _valid_op(rng, op)
        controls = random_controls(rng) if rng.random() < 0.1 and op != "search" else ()
        if controls and any(c.critical for c in controls):
            expect = "reply_or_close" if expect == "reply" else expect
        return Case(f"valid:{op}", message(mid, op_ber, controls), expect, mid, tags)

    return gen


# -- mutations of valid requests of every operation

def _mutate(rng: random.Random, body: bytes) -> bytes:
    b = bytearray(body)
    for _ in range(rng.choice([1, 1, 2, 3, 5])):
        if not b:
            b += bytes((rng.randrange(256),))
            continue
        i = rng.randrange(len(b))
        m = rng.randrange(8)
        if m == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif m == 1:
            b[i] = rng.choice([0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x84, 0x85, 0xFF, rng.randrange(256)])
        elif m == 2:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif m == 3:
            del b[i : i + rng.randint(1, 8)]
        elif m == 4:
            j = rng.randrange(len(b))
            b[i:i] = b[min(i, j) : max(i, j) + 1][:64]
        elif m == 5:  # a length byte becomes a huge long form
            b[i : i + 1] = rng.choice([b"\x84\xff\xff\xff\xff", b"\x84\x7f\xff\xff\xff", b"\x83\x01\x00\x00", b"\x80",
                                       b"\x85\x00\x00\x00\x00\x01", b"\x89" + b"\xff" * 9])
        elif m == 6:  # swap in another tag
            b[i] = rng.choice([0x04, 0x02, 0x0A, 0x01, 0x30, 0x31, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0x87, 0xA9, 0x1F,
                               0x3F, 0x5F, 0x7F, 0x9F, 0xBF, 0xDF, 0xFF])
        else:
            del b[i:]
    return bytes(b)


def gen_mutated(op):
    def gen(rng: random.Random) -> Case:
        mid = _mid(rng)
        op_ber, _, _ = _valid_op(rng, op)
        body = integer(mid) + op_ber
        body = _mutate(rng, body)
        if rng.random() < 0.7:
            data = tlv(0x30, body)  # the outer length fits the mutated body
        else:
            data = b"\x30" + length(len(integer(mid) + op_ber)) + body  # the original length
        return Case(f"mutated:{op}", data, "reply_or_close", mid)

    return gen


def gen_truncated(rng: random.Random) -> Case:
    op = rng.choice(OPS)
    mid = _mid(rng)
    op_ber, _, _ = _valid_op(rng, op)
    full = message(mid, op_ber)
    if rng.random() < 0.5:
        # the stream ends inside the message (the driver then half-closes)
        return Case("truncated:stream", full[: rng.randrange(1, len(full))], "reply_or_close", mid, note=op)
    # an inner element is cut short; the outer length is fixed up to match
    body = (integer(mid) + op_ber)[: rng.randrange(1, len(integer(mid) + op_ber))]
    return Case("truncated:inner", tlv(0x30, body), "reply_or_close", mid, note=op)


def gen_nonminimal(rng: random.Random) -> Case:
    """Non-minimal INTEGERs and lengths, as Snom and .NET clients send them: must be answered."""
    mid = _mid(rng)
    int_pad = rng.randint(0, 8)
    len_pad = rng.randint(0, 3)
    flt = Substrings("sn", "mey", (), None) if rng.random() < 0.5 else random_filter(rng)
    op = _search(rng, flt, int_pad=int_pad, len_pad=len_pad)
    data = message(mid, op, pad=rng.randint(0, 3), mid_pad=rng.randint(0, 8))
    if rng.random() < 0.3:  # a bind with a non-minimal version
        data = message(mid, bind_op(3, int_pad=rng.randint(1, 8)), pad=rng.randint(0, 3))
        return Case("integers:nonminimal", data, "reply_or_close", mid, (ber.OP_BIND_RESPONSE,), note="bind")
    return Case("integers:nonminimal", data, "reply", mid, (ber.OP_SEARCH_RESULT_DONE,))


def gen_oversized_int(rng: random.Random) -> Case:
    """INTEGERs of more than 16 octets or outside 0..2**31-1 (message ID, limits, scope, version)."""
    mid = _mid(rng)
    big = rng.choice([2**31, 2**32, 2**63, -1, -(2**31), 2**200, 2**1000])
    where = rng.randrange(5)
    if where == 0:
        data = tlv(0x30, integer(big) + search_op(BASE))
    elif where == 1:
        data = message(mid, search_op(BASE, size_limit=big))
    elif where == 2:
        data = message(mid, search_op(BASE, scope=rng.choice([3, 255, -1, big])))
    elif where == 3:
        data = message(mid, bind_op(rng.choice([big, 256, -3])))
    else:
        data = tlv(0x30, integer(rng.randint(0, 5), pad=rng.randint(16, 40)) + search_op(BASE))
    return Case("integers:oversized", data, "reply_or_close", mid)


def gen_bad_text(rng: random.Random) -> Case:
    """Invalid UTF-8 and Latin-1 in assertions, attribute names and DNs."""
    mid = _mid(rng)
    r = rng.random()
    if r < 0.7:
        data = message(mid, _search(rng, random_filter(rng, bad_text=True), bad_text=True))
        return Case("text:invalid-utf8-search", data, "reply", mid, (ber.OP_SEARCH_RESULT_DONE,))
    if r < 0.85:
        data = message(mid, compare_op(f"uid=demo.c-1,{BASE}".encode() if rng.random() < 0.5 else rng.choice(BAD_BYTES),
                                       rng.choice(["cn", "sn", rng.choice(BAD_BYTES)]), rng.choice(BAD_BYTES)))
        return Case("text:invalid-utf8-other", data, "reply_or_close", mid, note="compare")
    data = message(mid, bind_op(3, rng.choice(BAD_BYTES), rng.choice([b"", b"\xff\xfe"])))
    return Case("text:invalid-utf8-other", data, "reply_or_close", mid, note="bind")


def _nested(rng: random.Random, depth: int):
    leaf = Equality("cn", "x")
    node = leaf
    kinds = rng.choice(["and", "or", "not", "mixed"])
    for _ in range(depth):
        k = kinds if kinds != "mixed" else rng.choice(["and", "or", "not"])
        node = And((node,)) if k == "and" else Or((node,)) if k == "or" else Not(node)
    return node


def gen_nested(rng: random.Random) -> Case:
    """Thousands of nested filters (and a few just within the default depth of 64)."""
    mid = _mid(rng)
    depth = rng.choice([63, 64, 65, rng.randint(100, 1000), rng.randint(1000, 10000), rng.randint(10000, 60000)])
    data = message(mid, search_op(BASE, filter_ber=encode_filter(_nested(rng, depth))))
    strict = len(data) <= DEFAULT_MAX_PDU
    return Case("filter:nested", data, "reply" if strict else "reply_or_close", mid,
                (ber.OP_SEARCH_RESULT_DONE,) if strict else (), note=f"depth {depth}")


def gen_wide(rng: random.Random) -> Case:
    """One OR/AND with thousands of items, or substrings with thousands of components."""
    mid = _mid(rng)
    n = rng.choice([1000, 1024, 1025, rng.randint(2000, 20000)])
    if rng.random() < 0.7:
        items = tuple(Equality(rng.choice(["cn", "telephoneNumber", "mobile"]), str(i)) for i in range(n))
        flt = Or(items) if rng.random() < 0.5 else And(items)
    else:
        flt = Substrings("cn", "a", tuple("b" for _ in range(n)), "c")
    data = message(mid, search_op(BASE, filter_ber=encode_filter(flt)))
    strict = len(data) <= DEFAULT_MAX_PDU
    return Case("filter:wide", data, "reply" if strict else "reply_or_close", mid,
                (ber.OP_SEARCH_RESULT_DONE,) if strict else (), note=f"{n} items")


def gen_random_filter(rng: random.Random) -> Case:
    mid = _mid(rng)
    return Case("filter:random", message(mid, _search(rng)), "reply", mid, (ber.OP_SEARCH_RESULT_DONE,))


def gen_controls(rng: random.Random) -> Case:
    mid = _mid(rng)
    controls = random_controls(rng)
    return Case("search:controls", message(mid, _search(rng), controls), "reply", mid, (ber.OP_SEARCH_RESULT_DONE,))


def gen_huge_length(rng: random.Random) -> Case:
    """Length fields of gigabytes, more than 4 octets, or indefinite: refused from the header."""
    mid = _mid(rng)
    r = rng.randrange(6)
    if r == 0:
        return Case("length:huge-outer", b"\x30\x84" + rng.choice([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff",
                                                                   b"\x10\x00\x00\x00"]) + integer(mid), "close", mid)
    if r == 1:
        return Case("length:huge-outer", b"\x30" + bytes((0x80 | rng.randint(5, 127),)) + b"\xff" * 8, "close", mid)
    if r == 2:
        return Case("length:indefinite", b"\x30\x80" + integer(mid) + search_op(BASE) + b"\x00\x00", "close", mid)
    if r == 3:
        return Case("length:over-max-pdu", b"\x30\x83" + (DEFAULT_MAX_PDU + rng.randint(0, 1000)).to_bytes(3, "big")
                    + integer(mid), "close", mid)
    # an inner element claims gigabytes inside a small, well-framed message
    inner = rng.choice([b"\x04\x84\xff\xff\xff\xff", b"\xa3\x84\x7f\xff\xff\xff", b"\x30\x85\x01\x00\x00\x00\x00",
                        b"\x04\x80", b"\x02\x84\x00\x00\x10\x00"])
    op = tlv(0x63, octets(BASE) + b"\x0a\x01\x02\x0a\x01\x00\x02\x01\x00\x02\x01\x00\x01\x01\x00" + inner + b"x" * 20)
    if r == 4:
        return Case("length:huge-inner", tlv(0x30, integer(mid) + op), "reply_or_close", mid)
    return Case("length:huge-inner", tlv(0x30, integer(mid) + b"\x60\x84\xff\xff\xff\xff" + b"\x02\x01\x03"),
                "reply_or_close", mid)


def gen_random_bytes(rng: random.Random) -> Case:
    n = rng.choice([1, 2, 3, 10, 100, 1000])
    raw = bytes(rng.randrange(256) for _ in range(n))
    if rng.random() < 0.6:
        raw = tlv(0x30, raw)  # framed garbage
    return Case("random:bytes", raw, "reply_or_close")


def gen_unknown_tag(rng: random.Random) -> Case:
    """protocolOp tags that are no request: responses, unknown APPLICATION tags, other classes."""
    mid = _mid(rng)
    tag = rng.choice([0x41, 0x43, 0x44, 0x45, 0x61, 0x64, 0x65, 0x67, 0x73, 0x78, 0x79, 0x57, 0x7E, 0x5F, 0x7F,
                      0x04, 0x30, 0xA0, 0x80, 0xE0, rng.randrange(256)])
    content = rng.choice([b"", b"\x0a\x01\x00\x04\x00\x04\x00", bytes(rng.randrange(256) for _ in range(12))])
    return Case("op:unknown-tag", tlv(0x30, integer(mid) + tlv(tag, content)), "reply_or_close", mid,
                note=f"tag 0x{tag:02x}")


def gen_pipeline(rng: random.Random) -> Case:
    """Several requests in one write: valid ones of every kind, possibly a broken one in between."""
    parts = []
    for _ in range(rng.randint(2, 30)):
        op = rng.choice([o for o in OPS if o != "unbind"])
        op_ber, _, _ = _valid_op(rng, op)
        parts.append(message(_mid(rng), op_ber))
    if rng.random() < 0.3:
        parts.insert(rng.randrange(len(parts) + 1), _mutate(rng, parts[0]))
    return Case("stream:pipeline", b"".join(parts), "reply_or_close")


def gen_split(rng: random.Random) -> Case:
    """A valid search sent in many small writes (reassembly across reads)."""
    mid = _mid(rng)
    data = message(mid, _search(rng, Or((Substrings("cn", "mey", (), None), Substrings("sn", "mey", (), None)))))
    return Case("stream:split-writes", data, "reply", mid, (ber.OP_SEARCH_RESULT_DONE,),
                chunks=min(len(data), rng.randint(2, 40)))


GENERATORS = {}
for _op in OPS:
    GENERATORS[f"valid:{_op}"] = (gen_valid(_op), 3 if _op == "search" else 1)
    GENERATORS[f"mutated:{_op}"] = (gen_mutated(_op), 3 if _op == "search" else 1)
GENERATORS.update({
    "truncated": (gen_truncated, 3),
    "integers:nonminimal": (gen_nonminimal, 2),
    "integers:oversized": (gen_oversized_int, 2),
    "text:invalid-utf8": (gen_bad_text, 3),
    "filter:nested": (gen_nested, 1),
    "filter:wide": (gen_wide, 1),
    "filter:random": (gen_random_filter, 4),
    "search:controls": (gen_controls, 2),
    "length": (gen_huge_length, 2),
    "random:bytes": (gen_random_bytes, 2),
    "op:unknown-tag": (gen_unknown_tag, 2),
    "stream:pipeline": (gen_pipeline, 2),
    "stream:split-writes": (gen_split, 1),
})
_NAMES = list(GENERATORS)
_WEIGHTS = [GENERATORS[n][1] for n in _NAMES]
#: Generator names (case categories can be finer: "truncated:stream", "length:huge-outer", ...).
CATEGORIES = tuple(_NAMES)


def make_case(rng: random.Random) -> Case:
    name = rng.choices(_NAMES, _WEIGHTS)[0]
    case = GENERATORS[name][0](rng)
    if case.mid == 0:
        # messageID 0 is reserved for unsolicited notifications (RFC 4511 4.1.1.1): a server may
        # refuse such a request (protocolError and close, which test_message_id_zero asks for)
        # or, as ldaptor does today, drop it silently; either way the probe decides
        case.expect = "reply_or_close"
    return case


# --------------------------------------------------------------------------
# Reading responses


@dataclass
class Response:
    message_id: int
    tag: int
    code: int | None  # resultCode for LDAPResult-based responses
    raw: bytes


class Reader:
    """Splits the bytes a server sent into :class:`Response` values (strictly: the server must
    send well-formed BER; anything else raises ``ber.BERError``)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[Response]:
        self.buffer += data
        out = []
        while self.buffer:
            n = ber.frame(self.buffer, 1 << 31)
            if n is None:
                break
            pdu = bytes(self.buffer[:n])
            del self.buffer[:n]
            m = ber.decode_message(pdu)
            code = None
            if m.op_tag in (0x61, 0x65, 0x67, 0x69, 0x6B, 0x6D, 0x6F, 0x78):
                op = m.op
                # tag, length, then ENUMERATED resultCode
                p = 2 + ((op[1] & 0x7F) if op[1] & 0x80 else 0)
                if op[p] != 0x0A:
                    raise ber.BERError(f"response 0x{m.op_tag:02x} without a resultCode")
                code = int.from_bytes(op[p + 2 : p + 2 + op[p + 1]], "big")
            out.append(Response(m.message_id, m.op_tag, code, pdu))
        return out


def worker_rng(seed: int, worker: int) -> random.Random:
    """The generator stream of one fuzz worker (connection): cases depend on (seed, worker) only."""
    return random.Random(f"dirgw-fuzz:{seed}:{worker}")


def case_for(seed: int, worker: int, index: int) -> Case:
    """Regenerate case ``index`` (0-based) of ``worker`` for ``seed`` (to reproduce one failure)."""
    rng = worker_rng(seed, worker)
    for _ in range(index):
        make_case(rng)
    return make_case(rng)


def entry_dn(op: bytes) -> str:
    """The objectName of a SearchResultEntry op TLV."""
    p = 2 + ((op[1] & 0x7F) if op[1] & 0x80 else 0)
    if op[p] != 0x04:
        raise ber.BERError("SearchResultEntry without an objectName")
    n = op[p + 1]
    q = p + 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(op[q : q + k], "big")
        q += k
    return op[q : q + n].decode("utf-8", "replace")


# --------------------------------------------------------------------------
# Talking to a server (blocking sockets; loopback only)


class Closed(Exception):
    """The server closed the connection."""


class Session:
    """A correct, minimal LDAP client: anonymous bind and searches, with a deadline per call."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0, source: str | None = None) -> None:
        import socket

        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.reader = Reader()
        self.next_id = 1
        self.pending: list[Response] = []

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _until(self, mid: int, tag: int) -> list[Response]:
        """Responses with ``mid`` up to and including the one with ``tag``."""
        import time

        deadline = time.monotonic() + self.timeout
        got: list[Response] = []
        while True:
            keep = []
            for r in self.pending:
                if r.message_id == mid:
                    got.append(r)
                    if r.tag == tag:
                        self.pending = keep + self.pending[self.pending.index(r) + 1 :]
                        return got
                else:
                    keep.append(r)
            self.pending = keep
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to message {mid} within {self.timeout}s")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 16)
            except ConnectionError as e:
                raise Closed(str(e)) from e
            if not data:
                raise Closed("connection closed by the server")
            self.pending += self.reader.feed(data)

    def send(self, op: bytes, controls: tuple[Control, ...] = ()) -> int:
        mid = self.next_id
        self.next_id += 1
        self.sock.settimeout(self.timeout)
        self.sock.sendall(message(mid, op, controls))
        return mid

    def bind(self) -> int:
        mid = self.send(bind_op(3))
        return self._until(mid, ber.OP_BIND_RESPONSE)[-1].code

    def search(self, flt: str, attributes=("cn",), base: str = BASE, scope: int = 2, size_limit: int = 0
               ) -> tuple[int, list[str]]:
        """(resultCode, DNs of the entries) for an RFC 4515 filter string."""
        from gateway.ldap.filter_text import parse_filter

        op = search_op(base, scope, 0, size_limit, 0, False, encode_filter(parse_filter(flt)), list(attributes))
        mid = self.send(op)
        responses = self._until(mid, ber.OP_SEARCH_RESULT_DONE)
        dns = [entry_dn(ber.decode_message(r.raw).op) for r in responses if r.tag == ber.OP_SEARCH_RESULT_ENTRY]
        return responses[-1].code, dns


@dataclass
class Outcome:
    """What happened to one case on the wire."""

    framing: str  # predict_framing of case + probe
    result: str  # "answered" (probe answered), "closed", "hang"
    responses: list[Response]
    error: str = ""  # a violated expectation (empty: fine)


def exchange(sock, case: Case, deadline: float) -> Outcome:
    """Send ``case`` and the probe on a connected socket; read until the probe is answered, the
    server closes, or ``deadline`` (time.monotonic()) passes.  Non-blocking in both directions, so
    a server that pushes back (stops reading while we do not read) never deadlocks us.

    Half-closes when the stream ends inside a message, since the server rightly waits for more.
    """
    import select
    import socket
    import time

    framing = predict_framing(case.data + probe())
    chunks: list[bytes] = []
    if case.chunks > 1:
        step = max(1, -(-len(case.data) // case.chunks))
        chunks = [case.data[i : i + step] for i in range(0, len(case.data), step)]
    else:
        chunks = [case.data]
    chunks.append(probe())
    reader = Reader()
    responses: list[Response] = []
    sock.setblocking(False)
    closed = False
    probe_done = False
    half_closed = False
    why_close = must_close(case.data + probe())
    want_close = case.expect == "close" or framing != "complete" or bool(why_close)
    out = memoryview(chunks.pop(0))
    try:
        while True:
            if not out and chunks:
                out = memoryview(chunks.pop(0))
            if not out and not chunks and framing == "incomplete" and not half_closed:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                half_closed = True
            if probe_done and not want_close:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, w, _ = select.select([sock], [sock] if out else [], [], min(left, 0.5))
            if r:
                try:
                    data = sock.recv(1 << 18)
                except (ConnectionError, OSError):
                    data = b""
                if not data:
                    closed = True
                    break
                for resp in reader.feed(data):
                    responses.append(resp)
                    if resp.message_id == PROBE_ID and resp.tag == ber.OP_SEARCH_RESULT_DONE:
                        probe_done = True
            if w and out:
                try:
                    n = sock.send(out[:65536])
                    out = out[n:]
                except BlockingIOError:
                    pass
                except (ConnectionError, OSError):
                    out = memoryview(b"")
                    chunks = []
                    # keep reading: the server may have written a Notice of Disconnection
            if case.chunks > 1 and not out and chunks:
                time.sleep(0)  # separate writes (TCP_NODELAY is set by the caller)
    except ber.BERError as e:
        return Outcome(framing, "closed" if closed else "answered", responses,
                       f"the server sent malformed BER: {e}")
    result = "closed" if closed else "answered" if probe_done else "hang"
    outcome = Outcome(framing, result, responses)
    if result == "hang":
        outcome.error = ("no answer to the probe and no close before the deadline"
                         + (" (after our half-close)" if half_closed else ""))
    elif why_close and not closed:
        outcome.error = f"the connection stayed open, but must be closed: {why_close}"
    elif framing == "incomplete" and not closed:
        outcome.error = "the connection stayed open after our half-close"
    elif case.expect == "close" and not closed:
        outcome.error = "the connection should have been closed"
    elif case.expect in ("reply", "silent") and framing == "complete" and not why_close and not probe_done:
        outcome.error = "the connection was closed, but this request must be answered"
    elif case.expect == "reply" and framing == "complete" and not why_close:
        if not any(r.message_id == case.mid and r.tag in case.tags for r in responses):
            got = [(r.message_id, hex(r.tag), r.code) for r in responses if r.message_id != PROBE_ID][:5]
            outcome.error = f"no response {[hex(t) for t in case.tags]} to message {case.mid} (got {got})"
    return outcome

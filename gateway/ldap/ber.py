"""A fast, liberal and bounded LDAP BER codec for the hot path (issue 9, issue 10).

Pure: bytes in, values out (and values in, bytes out).  No ldaptor, no I/O.

Decoding is *liberal where real clients are sloppy* and *strict where
sloppiness would be dangerous*:

- accepted: non-minimal INTEGER/ENUMERATED encodings (Snom sends sizeLimit 50
  as ``02 02 00 32``), non-minimal long-form lengths (``84 00 00 00 05``; AD
  and .NET clients send these), BOOLEAN contents other than ``FF`` (any
  non-zero octet is TRUE), an explicit FALSE for defaulted BOOLEANs;
- refused with :class:`BERError`: the indefinite length form, lengths of more
  than four octets, any element that runs past its enclosing element,
  unexpected tags, trailing bytes inside a constructed element, INTEGERs
  longer than 16 octets, values out of their ASN.1 range (message IDs and
  limits outside ``0..2**31-1``, unknown scope / derefAliases values);
- bounded: :func:`frame` refuses a PDU larger than ``max_pdu`` from its
  header alone (before anything is buffered or allocated), and
  :func:`decode_search` refuses filters deeper than ``max_depth`` or with
  more than ``max_items`` items (:class:`FilterTooComplex`) while decoding,
  with an explicit stack: 100 000 nested NOTs cost microseconds, not a
  ``RecursionError``.

Every decoder raises :class:`BERError` (a ``ValueError``) and nothing else,
whatever the input.

Encoding produces the same bytes as ldaptor's ``toWire()`` for the same values
(minimal lengths and integers, UTF-8 strings), so the fast path and the
general path are byte-identical; ``tests/test_ber.py`` checks this.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Sequence

from attrs import frozen

from gateway.ldap.filter import (
    And,
    Approx,
    Equality,
    Extensible,
    Filter,
    GreaterOrEqual,
    LessOrEqual,
    Not,
    Or,
    Present,
    Substrings,
    decode_value,
)
from gateway.ldap.messages import Control, SearchRequest

__all__ = [
    "BERError",
    "PDUTooLarge",
    "FilterTooComplex",
    "Message",
    "MAX_INT",
    "frame",
    "decode_message",
    "decode_search",
    "decode_filter",
    "decode_bind",
    "decode_abandon",
    "decode_extended",
    "decode_paged_results_value",
    "decode_sort_value",
    "encode_entry_body",
    "encode_search_entry",
    "wrap_message",
    "encode_controls",
    "encode_result",
    "encode_paged_results_value",
    "encode_sort_response_value",
    "RESPONSE_TAG",
    "OP_BIND_REQUEST",
    "OP_BIND_RESPONSE",
    "OP_UNBIND_REQUEST",
    "OP_SEARCH_REQUEST",
    "OP_SEARCH_RESULT_ENTRY",
    "OP_SEARCH_RESULT_DONE",
    "OP_SEARCH_RESULT_REFERENCE",
    "OP_MODIFY_REQUEST",
    "OP_MODIFY_RESPONSE",
    "OP_ADD_REQUEST",
    "OP_ADD_RESPONSE",
    "OP_DEL_REQUEST",
    "OP_DEL_RESPONSE",
    "OP_MODDN_REQUEST",
    "OP_MODDN_RESPONSE",
    "OP_COMPARE_REQUEST",
    "OP_COMPARE_RESPONSE",
    "OP_ABANDON_REQUEST",
    "OP_EXTENDED_REQUEST",
    "OP_EXTENDED_RESPONSE",
    "OP_INTERMEDIATE_RESPONSE",
    "OID_PAGED_RESULTS",
    "OID_SORT_REQUEST",
    "OID_SORT_RESPONSE",
    "OID_NOTICE_OF_DISCONNECTION",
    "OID_START_TLS",
    "OID_PASSWORD_MODIFY",
    "OID_WHO_AM_I",
]

# --------------------------------------------------------------------------
# Constants

#: maxInt of RFC 4511 (2**31 - 1): the range of message IDs and limits.
MAX_INT = 2**31 - 1

OP_BIND_REQUEST = 0x60
OP_BIND_RESPONSE = 0x61
OP_UNBIND_REQUEST = 0x42
OP_SEARCH_REQUEST = 0x63
OP_SEARCH_RESULT_ENTRY = 0x64
OP_SEARCH_RESULT_DONE = 0x65
OP_SEARCH_RESULT_REFERENCE = 0x73
OP_MODIFY_REQUEST = 0x66
OP_MODIFY_RESPONSE = 0x67
OP_ADD_REQUEST = 0x68
OP_ADD_RESPONSE = 0x69
OP_DEL_REQUEST = 0x4A
OP_DEL_RESPONSE = 0x6B
OP_MODDN_REQUEST = 0x6C
OP_MODDN_RESPONSE = 0x6D
OP_COMPARE_REQUEST = 0x6E
OP_COMPARE_RESPONSE = 0x6F
OP_ABANDON_REQUEST = 0x50
OP_EXTENDED_REQUEST = 0x77
OP_EXTENDED_RESPONSE = 0x78
OP_INTERMEDIATE_RESPONSE = 0x79

#: The response op tag for each request op tag that gets a response.
RESPONSE_TAG = {
    OP_BIND_REQUEST: OP_BIND_RESPONSE,
    OP_SEARCH_REQUEST: OP_SEARCH_RESULT_DONE,
    OP_MODIFY_REQUEST: OP_MODIFY_RESPONSE,
    OP_ADD_REQUEST: OP_ADD_RESPONSE,
    OP_DEL_REQUEST: OP_DEL_RESPONSE,
    OP_MODDN_REQUEST: OP_MODDN_RESPONSE,
    OP_COMPARE_REQUEST: OP_COMPARE_RESPONSE,
    OP_EXTENDED_REQUEST: OP_EXTENDED_RESPONSE,
}

OID_PAGED_RESULTS = "1.2.840.113556.1.4.319"  # RFC 2696
OID_SORT_REQUEST = "1.2.840.113556.1.4.473"  # RFC 2891
OID_SORT_RESPONSE = "1.2.840.113556.1.4.474"  # RFC 2891
OID_NOTICE_OF_DISCONNECTION = "1.3.6.1.4.1.1466.20036"  # RFC 4511 4.4.1
OID_START_TLS = "1.3.6.1.4.1.1466.20037"  # RFC 4511 4.14
OID_PASSWORD_MODIFY = "1.3.6.1.4.1.4203.1.11.1"  # RFC 3062
OID_WHO_AM_I = "1.3.6.1.4.1.4203.1.11.3"  # RFC 4532

_MAX_INT_OCTETS = 16  # longer INTEGER contents are refused (non-minimal padding included)

# --------------------------------------------------------------------------
# Errors and values


class BERError(ValueError):
    """Malformed BER or LDAP input (answer protocolError or close)."""


class PDUTooLarge(BERError):
    """The announced LDAPMessage length exceeds the configured maximum."""


class FilterTooComplex(BERError):
    """A search filter nests deeper or has more items than allowed."""


@frozen
class Message:
    """An LDAPMessage envelope: the operation is kept as its raw TLV bytes."""

    message_id: int
    op_tag: int
    op: bytes
    controls: tuple[Control, ...] = ()


# --------------------------------------------------------------------------
# Decoding primitives


def _header(data: bytes, pos: int, limit: int) -> tuple[int, int, int]:
    """Read the tag and length at ``pos``: (tag, content start, content end).

    The element must end at or before ``limit`` (the end of its parent).
    """
    if pos + 2 > limit:
        raise BERError(f"truncated element at offset {pos}")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        k = length & 0x7F
        if k == 0:
            raise BERError(f"indefinite length at offset {pos - 1} is not allowed in LDAP")
        if k > 4:
            raise BERError(f"length of {k} octets at offset {pos - 1} (at most 4 allowed)")
        if pos + k > limit:
            raise BERError(f"truncated length at offset {pos - 1}")
        length = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    end = pos + length
    if end > limit:
        raise BERError(
            f"element 0x{tag:02x} at offset {pos} claims {length} bytes, "
            f"only {limit - pos} available"
        )
    return tag, pos, end


def _expect(data: bytes, pos: int, limit: int, tag: int, what: str) -> tuple[int, int]:
    """Read an element that must have ``tag``: (content start, content end).

    The same checks as :func:`_header`, inlined: this is the hottest function.
    """
    if pos + 2 > limit:
        raise BERError(f"{what}: truncated element at offset {pos}")
    if data[pos] != tag:
        raise BERError(f"{what}: expected tag 0x{tag:02x}, got 0x{data[pos]:02x} at offset {pos}")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        k = length & 0x7F
        if k == 0:
            raise BERError(f"{what}: indefinite length at offset {pos - 1} is not allowed")
        if k > 4:
            raise BERError(f"{what}: length of {k} octets at offset {pos - 1} (at most 4 allowed)")
        if pos + k > limit:
            raise BERError(f"{what}: truncated length at offset {pos - 1}")
        length = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    end = pos + length
    if end > limit:
        raise BERError(
            f"{what}: element at offset {pos} claims {length} bytes, only {limit - pos} available"
        )
    return pos, end


def _int(data: bytes, s: int, e: int, what: str) -> int:
    """A (possibly non-minimal) two's-complement INTEGER/ENUMERATED content."""
    n = e - s
    if n == 1:
        v = data[s]
        return v - 256 if v & 0x80 else v
    if n == 0:
        raise BERError(f"{what}: empty INTEGER")
    if n > _MAX_INT_OCTETS:
        raise BERError(f"{what}: INTEGER of {n} octets")
    return int.from_bytes(data[s:e], "big", signed=True)


def _ranged(data: bytes, s: int, e: int, lo: int, hi: int, what: str) -> int:
    v = _int(data, s, e, what)
    if v < lo or v > hi:
        raise BERError(f"{what} {v} out of range {lo}..{hi}")
    return v


def _bool(data: bytes, s: int, e: int, what: str) -> bool:
    if e - s == 1:
        return data[s] != 0
    if s == e:
        raise BERError(f"{what}: empty BOOLEAN")
    return any(data[s:e])


def _as_bytes(raw) -> bytes:
    if type(raw) is bytes:
        return raw
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return bytes(raw)
    raise TypeError(f"expected bytes, not {type(raw).__name__}")


# Attribute descriptions repeat endlessly (telephoneNumber, mobile, cn...):
# decode each distinct one once and hand out the same str object, which also
# makes later dict lookups cheaper.  Bounded, so hostile clients cannot grow it.
_NAMES: dict[bytes, str] = {}
_NAMES_MAX = 4096


def _name(raw: bytes) -> str:
    s = _NAMES.get(raw)
    if s is None:
        s = decode_value(raw)
        if len(_NAMES) < _NAMES_MAX and len(raw) <= 64:
            _NAMES[raw] = s
    return s


# --------------------------------------------------------------------------
# Framing and the envelope


def frame(buffer: bytes | bytearray | memoryview, max_pdu: int) -> int | None:
    """The byte length of the first complete LDAPMessage in ``buffer``.

    None while more bytes are needed.  Raises :class:`PDUTooLarge` as soon as
    the header announces a message of more than ``max_pdu`` bytes (header
    included), before the body is received, and :class:`BERError` when the
    buffer does not start with a SEQUENCE or the length is malformed.
    """
    n = len(buffer)
    if n == 0:
        return None
    first = buffer[0]
    if first != 0x30:
        raise BERError(f"LDAPMessage must start with SEQUENCE (0x30), got 0x{first:02x}")
    if n < 2:
        return None
    length = buffer[1]
    if length < 0x80:
        total = 2 + length
    else:
        k = length & 0x7F
        if k == 0:
            raise BERError("indefinite length is not allowed in LDAP")
        if k > 4:
            raise BERError(f"length of {k} octets (at most 4 allowed)")
        if n < 2 + k:
            return None
        total = 2 + k + int.from_bytes(buffer[2 : 2 + k], "big")
    if total > max_pdu:
        raise PDUTooLarge(f"LDAPMessage of {total} bytes exceeds the limit of {max_pdu}")
    return total if n >= total else None


def decode_message(pdu: bytes) -> Message:
    """Decode the LDAPMessage envelope: message ID, op tag and raw op, controls.

    ``pdu`` must be exactly one message (see :func:`frame`).
    """
    data = _as_bytes(pdu)
    n = len(data)
    tag, pos, end = _header(data, 0, n)
    if tag != 0x30:
        raise BERError(f"LDAPMessage must be a SEQUENCE, got 0x{tag:02x}")
    if end != n:
        raise BERError(f"{n - end} trailing bytes after the LDAPMessage")
    s, e = _expect(data, pos, end, 0x02, "messageID")
    message_id = _ranged(data, s, e, 0, MAX_INT, "messageID")
    op_start = e
    op_tag, s, e = _header(data, op_start, end)
    if op_tag & 0xC0 != 0x40 or op_tag & 0x1F == 0x1F:
        raise BERError(f"protocolOp must be an APPLICATION tag, got 0x{op_tag:02x}")
    op = data[op_start:e]
    controls: tuple[Control, ...] = ()
    if e < end:
        s, e2 = _expect(data, e, end, 0xA0, "controls")
        if e2 != end:
            raise BERError("trailing bytes after the controls")
        controls = _decode_controls(data, s, e2)
    return Message(message_id, op_tag, op, controls)


def _decode_controls(data: bytes, pos: int, end: int) -> tuple[Control, ...]:
    out = []
    while pos < end:
        s, e = _expect(data, pos, end, 0x30, "Control")
        pos = e
        s1, e1 = _expect(data, s, e, 0x04, "controlType")
        oid = _name(data[s1:e1])
        critical = False
        value = None
        p = e1
        if p < e and data[p] == 0x01:
            s2, p = _expect(data, p, e, 0x01, "criticality")
            critical = _bool(data, s2, p, "criticality")
        if p < e and data[p] == 0x04:
            s2, p = _expect(data, p, e, 0x04, "controlValue")
            value = data[s2:p]
        if p != e:
            raise BERError(f"unexpected element 0x{data[p]:02x} in Control {oid}")
        out.append(Control(oid, critical, value))
    return tuple(out)


# --------------------------------------------------------------------------
# SearchRequest and filters

_AVA_CLASSES = {
    0xA3: Equality,
    0xA5: GreaterOrEqual,
    0xA6: LessOrEqual,
    0xA8: Approx,
}
_COMPOUND = (0xA0, 0xA1, 0xA2)


def decode_search(
    op: bytes,
    *,
    max_depth: int = 64,
    max_items: int = 1024,
    controls: tuple[Control, ...] = (),
) -> SearchRequest:
    """Decode a SearchRequest op TLV (``Message.op`` with tag 0x63).

    ``controls`` (usually ``Message.controls``) are copied into the result.
    Raises :class:`FilterTooComplex` for filters nested deeper than
    ``max_depth`` (a single item has depth 1, as in ``filter.depth``) or with
    more than ``max_items`` items (as ``filter.size`` counts them; substring
    components have a separate budget of ``max_items`` per request).
    """
    data = _as_bytes(op)
    n = len(data)
    tag, pos, end = _header(data, 0, n)
    if tag != 0x63:
        raise BERError(f"not a SearchRequest: tag 0x{tag:02x}")
    if end != n:
        raise BERError(f"{n - end} trailing bytes after the SearchRequest")
    s, pos = _expect(data, pos, end, 0x04, "baseObject")
    base = decode_value(data[s:pos])
    # scope, derefAliases, sizeLimit, timeLimit, typesOnly: almost always five
    # single-octet elements (15 bytes); check them all with two slices.
    fixed = data[pos : pos + 15]
    if (
        len(fixed) == 15
        and fixed[0::3] == b"\x0a\x0a\x02\x02\x01"
        and fixed[1::3] == b"\x01\x01\x01\x01\x01"
        and fixed[2] <= 2
        and fixed[5] <= 3
        and fixed[8] < 0x80
        and fixed[11] < 0x80
    ):
        scope = fixed[2]
        deref = fixed[5]
        size_limit = fixed[8]
        time_limit = fixed[11]
        types_only = fixed[14] != 0
        pos += 15
    else:
        s, pos = _expect(data, pos, end, 0x0A, "scope")
        scope = _ranged(data, s, pos, 0, 2, "scope")
        s, pos = _expect(data, pos, end, 0x0A, "derefAliases")
        deref = _ranged(data, s, pos, 0, 3, "derefAliases")
        s, pos = _expect(data, pos, end, 0x02, "sizeLimit")
        size_limit = _ranged(data, s, pos, 0, MAX_INT, "sizeLimit")
        s, pos = _expect(data, pos, end, 0x02, "timeLimit")
        time_limit = _ranged(data, s, pos, 0, MAX_INT, "timeLimit")
        s, pos = _expect(data, pos, end, 0x01, "typesOnly")
        types_only = _bool(data, s, pos, "typesOnly")
    flt, pos = _decode_filter(data, pos, end, max_depth, max_items)
    s, e = _expect(data, pos, end, 0x30, "attributes")
    if e != end:
        raise BERError("trailing bytes after the attribute list")
    attributes = []
    names = _NAMES
    while s < e:
        # inlined short-form OCTET STRING; anything else takes _expect
        length = data[s + 1] if s + 1 < e else 0x80
        if data[s] == 0x04 and length < 0x80 and s + 2 + length <= e:
            s += 2 + length
            raw = data[s - length : s]
        else:
            s1, s = _expect(data, s, e, 0x04, "attribute")
            raw = data[s1:s]
        name = names.get(raw)
        attributes.append(name if name is not None else _name(raw))
    return SearchRequest(
        base,
        scope,
        flt,
        tuple(attributes),
        size_limit,
        time_limit,
        types_only,
        deref,
        controls,
    )


def decode_filter(
    raw: bytes, *, max_depth: int = 64, max_items: int = 1024
) -> Filter:
    """Decode one encoded Filter element (the whole of ``raw``)."""
    data = _as_bytes(raw)
    flt, pos = _decode_filter(data, 0, len(data), max_depth, max_items)
    if pos != len(data):
        raise BERError("trailing bytes after the filter")
    return flt


def _decode_filter(
    data: bytes, pos: int, limit: int, max_depth: int, max_items: int
) -> tuple[Filter, int]:
    """Decode the Filter starting at ``pos``: (filter, end offset).

    Iterative: compound filters are kept on an explicit stack of
    [tag, content end, children] frames, so nesting costs no Python stack.
    """
    stack: list[list] = []
    items = 0
    parts_budget = max_items
    while True:
        # ---- one filter element starts at pos; its parent ends at lim
        lim = stack[-1][1] if stack else limit
        tag, s, e = _header(data, pos, lim)
        items += 1
        if items > max_items:
            raise FilterTooComplex(f"filter has more than {max_items} items")
        if len(stack) >= max_depth:
            raise FilterTooComplex(f"filter nests deeper than {max_depth} levels")
        cls = _AVA_CLASSES.get(tag)
        if cls is not None:
            # Fast path: two short-form OCTET STRINGs that fill the element
            # exactly (what every client sends); anything else is checked by
            # _expect.  Note data[e1 + 1] is only a length when < 0x80.
            e1 = s + 2 + data[s + 1] if e - s >= 4 else e
            if (
                e1 + 2 <= e
                and data[s] == 0x04
                and data[s + 1] < 0x80
                and data[e1] == 0x04
                and data[e1 + 1] == e - e1 - 2 < 0x80
            ):
                raw = data[s + 2 : e1]
                value = data[e1 + 2 : e]
            else:
                s1, e1 = _expect(data, s, e, 0x04, "attributeDesc")
                s2, e2 = _expect(data, e1, e, 0x04, "assertionValue")
                if e2 != e:
                    raise BERError(f"trailing bytes in filter item at offset {pos}")
                raw = data[s1:e1]
                value = data[s2:e2]
            name = _NAMES.get(raw)
            node = cls(name if name is not None else _name(raw), decode_value(value))
        elif tag == 0x87:
            node = Present(_name(data[s:e]))
        elif tag in _COMPOUND:
            if tag == 0xA2 and s == e:
                raise BERError(f"empty NOT filter at offset {pos}")
            if s < e:
                stack.append([tag, e, []])
                pos = s
                continue
            node = And(()) if tag == 0xA0 else Or(())  # RFC 4526 absolute true/false
        elif tag == 0xA4:
            node, used = _substrings(data, s, e, pos)
            parts_budget -= used
            if parts_budget < 0:
                raise FilterTooComplex(f"filter has more than {max_items} substring components")
        elif tag == 0xA9:
            node = _extensible(data, s, e, pos)
        else:
            raise BERError(f"unknown filter choice 0x{tag:02x} at offset {pos}")
        pos = e
        # ---- attach the finished node; close every compound that ends here
        while True:
            if not stack:
                return node, pos
            frame_ = stack[-1]
            children = frame_[2]
            children.append(node)
            if frame_[0] == 0xA2:
                if pos != frame_[1]:
                    raise BERError(f"NOT filter with more than one element at offset {pos}")
                stack.pop()
                node = Not(children[0])
                continue
            if pos < frame_[1]:
                break  # next sibling
            stack.pop()
            node = And(tuple(children)) if frame_[0] == 0xA0 else Or(tuple(children))


def _substrings(data: bytes, s: int, e: int, at: int) -> tuple[Substrings, int]:
    s1, e1 = _expect(data, s, e, 0x04, "substrings type")
    s2, e2 = _expect(data, e1, e, 0x30, "substrings")
    if e2 != e:
        raise BERError(f"trailing bytes in substrings filter at offset {at}")
    if s2 == e2:
        raise BERError(f"substrings filter without components at offset {at}")
    initial = final = None
    anys = []
    p = s2
    used = 0
    while p < e2:
        t, vs, ve = _header(data, p, e2)
        value = decode_value(data[vs:ve])
        if t == 0x81:
            if final is not None:
                raise BERError(f"'any' after 'final' in substrings at offset {p}")
            anys.append(value)
        elif t == 0x80:
            if used:
                raise BERError(f"'initial' is not first in substrings at offset {p}")
            initial = value
        elif t == 0x82:
            if final is not None:
                raise BERError(f"second 'final' in substrings at offset {p}")
            final = value
        else:
            raise BERError(f"unknown substring choice 0x{t:02x} at offset {p}")
        used += 1
        p = ve
    return Substrings(_name(data[s1:e1]), initial, tuple(anys), final), used


def _extensible(data: bytes, s: int, e: int, at: int) -> Extensible:
    rule = attr = None
    dn = False
    p = s
    if p < e and data[p] == 0x81:
        vs, p = _expect(data, p, e, 0x81, "matchingRule")
        rule = _name(data[vs:p])
    if p < e and data[p] == 0x82:
        vs, p = _expect(data, p, e, 0x82, "type")
        attr = _name(data[vs:p])
    vs, p = _expect(data, p, e, 0x83, "matchValue")
    value = decode_value(data[vs:p])
    if p < e and data[p] == 0x84:
        vs, p = _expect(data, p, e, 0x84, "dnAttributes")
        dn = _bool(data, vs, p, "dnAttributes")
    if p != e:
        raise BERError(f"trailing bytes in extensible match at offset {at}")
    return Extensible(rule, attr, value, dn)


# --------------------------------------------------------------------------
# Other requests


def _op_content(op: bytes, tag: int, what: str) -> tuple[bytes, int, int]:
    data = _as_bytes(op)
    n = len(data)
    t, s, e = _header(data, 0, n)
    if t != tag:
        raise BERError(f"not a {what}: tag 0x{t:02x}")
    if e != n:
        raise BERError(f"{n - e} trailing bytes after the {what}")
    return data, s, e


def decode_bind(op: bytes) -> tuple[int, str, str, bytes, str | None]:
    """Decode a BindRequest: (version, name, auth_kind, credentials, sasl_mechanism).

    ``auth_kind`` is ``"simple"`` (mechanism None) or ``"sasl"`` (credentials
    ``b""`` when absent).  Other authentication choices are a BERError.
    """
    data, pos, end = _op_content(op, OP_BIND_REQUEST, "BindRequest")
    s, pos = _expect(data, pos, end, 0x02, "version")
    version = _ranged(data, s, pos, 1, 127, "version")
    s, pos = _expect(data, pos, end, 0x04, "name")
    name = decode_value(data[s:pos])
    tag, s, e = _header(data, pos, end)
    if e != end:
        raise BERError("trailing bytes after the authentication")
    if tag == 0x80:
        return version, name, "simple", data[s:e], None
    if tag == 0xA3:
        s1, e1 = _expect(data, s, e, 0x04, "mechanism")
        mechanism = decode_value(data[s1:e1])
        credentials = b""
        if e1 < e:
            s2, e2 = _expect(data, e1, e, 0x04, "credentials")
            if e2 != e:
                raise BERError("trailing bytes in SaslCredentials")
            credentials = data[s2:e2]
        return version, name, "sasl", credentials, mechanism
    raise BERError(f"unsupported authentication choice 0x{tag:02x}")


def decode_abandon(op: bytes) -> int:
    """Decode an AbandonRequest: the message ID to abandon."""
    data, s, e = _op_content(op, OP_ABANDON_REQUEST, "AbandonRequest")
    return _ranged(data, s, e, 0, MAX_INT, "abandon messageID")


def decode_extended(op: bytes) -> tuple[str, bytes | None]:
    """Decode an ExtendedRequest: (requestName OID, requestValue or None)."""
    data, pos, end = _op_content(op, OP_EXTENDED_REQUEST, "ExtendedRequest")
    s, pos = _expect(data, pos, end, 0x80, "requestName")
    oid = decode_value(data[s:pos])
    value = None
    if pos < end:
        s, pos = _expect(data, pos, end, 0x81, "requestValue")
        value = data[s:pos]
        if pos != end:
            raise BERError("trailing bytes after the requestValue")
    return oid, value


def decode_paged_results_value(value: bytes) -> tuple[int, bytes]:
    """RFC 2696 control value: (page size, cookie)."""
    data = _as_bytes(value)
    n = len(data)
    s, e = _expect(data, 0, n, 0x30, "paged results value")
    if e != n:
        raise BERError("trailing bytes after the paged results value")
    s1, e1 = _expect(data, s, e, 0x02, "size")
    size = _ranged(data, s1, e1, 0, MAX_INT, "page size")
    s2, e2 = _expect(data, e1, e, 0x04, "cookie")
    if e2 != e:
        raise BERError("trailing bytes in the paged results value")
    return size, data[s2:e2]


def decode_sort_value(value: bytes) -> list[tuple[str, str | None, bool]]:
    """RFC 2891 SortKeyList: [(attributeType, orderingRule or None, reverseOrder)]."""
    data = _as_bytes(value)
    n = len(data)
    pos, end = _expect(data, 0, n, 0x30, "sort key list")
    if end != n:
        raise BERError("trailing bytes after the sort key list")
    keys = []
    while pos < end:
        s, e = _expect(data, pos, end, 0x30, "sort key")
        pos = e
        s1, p = _expect(data, s, e, 0x04, "attributeType")
        attr = _name(data[s1:p])
        rule = None
        reverse = False
        if p < e and data[p] == 0x80:
            s2, p = _expect(data, p, e, 0x80, "orderingRule")
            rule = _name(data[s2:p])
        if p < e and data[p] == 0x81:
            s2, p = _expect(data, p, e, 0x81, "reverseOrder")
            reverse = _bool(data, s2, p, "reverseOrder")
        if p != e:
            raise BERError("unexpected element in a sort key")
        keys.append((attr, rule, reverse))
    return keys


# --------------------------------------------------------------------------
# Encoding

_LEN1 = [bytes((i,)) for i in range(128)]


def _len(n: int) -> bytes:
    """A minimal definite length (as ldaptor writes it)."""
    if n < 0x80:
        return _LEN1[n]
    if n < 0x100:
        return bytes((0x81, n))
    if n < 0x10000:
        return bytes((0x82, n >> 8, n & 0xFF))
    if n < 0x1000000:
        return bytes((0x83, n >> 16, (n >> 8) & 0xFF, n & 0xFF))
    return b"\x84" + n.to_bytes(4, "big")


def _int_content(i: int) -> bytes:
    """Minimal two's-complement INTEGER contents."""
    if 0 <= i < 0x80:
        return _LEN1[i]
    return i.to_bytes(((i if i >= 0 else ~i).bit_length() + 8) // 8, "big", signed=True)


_INT_TLV = [b"\x02\x01" + bytes((i,)) for i in range(128)]
_ENUM_TLV = [b"\x0a\x01" + bytes((i,)) for i in range(128)]


def _int_tlv(i: int, tag: bytes = b"\x02") -> bytes:
    c = _int_content(i)
    return tag + _len(len(c)) + c


def _octets(tag: bytes, value: bytes) -> bytes:
    return tag + _len(len(value)) + value


def _utf8(value: str | bytes) -> bytes:
    if type(value) is str:
        try:
            return value.encode()
        except UnicodeEncodeError:  # lone surrogates (e.g. from JSON \ud800)
            return value.encode("utf-8", "replace")
    return bytes(value)


def _entry_body(dn, attributes, types_only: bool) -> bytes:
    # Fast path: every value a well-formed str.  Lengths are inlined (short
    # form) because attribute names and most values are under 128 bytes.
    L = _LEN1
    parts = []
    for name, values in attributes:
        nb = name.encode()
        if types_only:
            vals = b""
        else:
            enc = [v.encode() for v in values]
            vals = b"".join(
                [b"\x04" + L[len(v)] + v if len(v) < 0x80 else b"\x04" + _len(len(v)) + v for v in enc]
            )
        ln = len(nb)
        lv = len(vals)
        inner = (
            (b"\x04" + L[ln] if ln < 0x80 else b"\x04" + _len(ln))
            + nb
            + (b"\x31" + L[lv] if lv < 0x80 else b"\x31" + _len(lv))
            + vals
        )
        li = len(inner)
        parts.append((b"\x30" + L[li] if li < 0x80 else b"\x30" + _len(li)) + inner)
    attrs = b"".join(parts)
    dnb = dn.encode()
    body = b"\x04" + _len(len(dnb)) + dnb + b"\x30" + _len(len(attrs)) + attrs
    return b"\x64" + _len(len(body)) + body


def _entry_body_slow(dn, attributes, types_only: bool) -> bytes:
    parts = []
    for name, values in attributes:
        vals = b"" if types_only else b"".join([_octets(b"\x04", _utf8(v)) for v in values])
        inner = _octets(b"\x04", _utf8(name)) + _octets(b"\x31", vals)
        parts.append(_octets(b"\x30", inner))
    body = _octets(b"\x04", _utf8(dn)) + _octets(b"\x30", b"".join(parts))
    return _octets(b"\x64", body)


def encode_entry_body(
    dn: str,
    attributes: Iterable[tuple[str, Sequence[str]]],
    types_only: bool = False,
) -> bytes:
    """The SearchResultEntry op TLV (tag 0x64) for one entry, UTF-8.

    With ``types_only`` every attribute is sent with an empty value set
    (RFC 4511 4.5.2).  Values may also be bytes (sent as they are).  Cache
    the result per contact and attribute selection; :func:`wrap_message`
    adds the envelope.
    """
    if type(attributes) is not list and type(attributes) is not tuple:
        attributes = list(attributes)
    try:
        return _entry_body(dn, attributes, types_only)
    except (UnicodeEncodeError, AttributeError):  # lone surrogates, bytes values
        return _entry_body_slow(dn, attributes, types_only)


def wrap_message(message_id: int, op_tlv: bytes, controls_tlv: bytes = b"") -> bytes:
    """An LDAPMessage around an encoded op (and an encoded [0] Controls TLV)."""
    mid = _INT_TLV[message_id] if 0 <= message_id < 0x80 else _int_tlv(message_id)
    n = len(mid) + len(op_tlv) + len(controls_tlv)
    if n < 0x80:
        return b"".join((b"\x30", _LEN1[n], mid, op_tlv, controls_tlv))
    return b"".join((b"\x30", _len(n), mid, op_tlv, controls_tlv))


def encode_search_entry(
    message_id: int,
    dn: str,
    attributes: Iterable[tuple[str, Sequence[str]]],
    types_only: bool = False,
) -> bytes:
    """A complete LDAPMessage carrying one SearchResultEntry."""
    return wrap_message(message_id, encode_entry_body(dn, attributes, types_only))


def encode_controls(controls: Iterable[Control]) -> bytes:
    """The ``[0] Controls`` TLV for a message (``b""`` when there are none).

    Criticality FALSE is omitted (it is the DEFAULT); a None value is omitted.
    """
    parts = []
    for c in controls:
        inner = _octets(b"\x04", _utf8(c.oid))
        if c.critical:
            inner += b"\x01\x01\xff"
        if c.value is not None:
            inner += _octets(b"\x04", bytes(c.value))
        parts.append(_octets(b"\x30", inner))
    if not parts:
        return b""
    return _octets(b"\xa0", b"".join(parts))


def encode_result(
    message_id: int,
    op_tag: int,
    result_code: int,
    matched_dn: str = "",
    message: str = "",
    controls: tuple[Control, ...] = (),
    extra: bytes = b"",
    *,
    response_name: str | None = None,
    response_value: bytes | None = None,
) -> bytes:
    """A complete LDAPMessage carrying an LDAPResult-based response.

    ``op_tag``: 0x65 SearchResultDone, 0x61 BindResponse, 0x67 Modify,
    0x69 Add, 0x6b Del, 0x6d ModDN, 0x6f Compare, 0x78 ExtendedResponse.
    ``extra`` is appended raw after the diagnostic message (e.g. a
    serverSaslCreds ``[7]`` TLV); ``response_name`` ([10]) and
    ``response_value`` ([11]) follow, for ExtendedResponse.  A Notice of
    Disconnection is ``encode_result(0, 0x78, 2, message=...,
    response_name=OID_NOTICE_OF_DISCONNECTION)``.
    """
    op = _result_op(op_tag, result_code, matched_dn, message, extra, response_name, response_value)
    return wrap_message(message_id, op, encode_controls(controls) if controls else b"")


def _result_op(op_tag: int, result_code: int, matched_dn: str = "", message: str = "", extra: bytes = b"",
               response_name: str | None = None, response_value: bytes | None = None) -> bytes:
    """The op of ``encode_result``: an LDAPResult-based response without the LDAPMessage around it."""
    if not 0 <= op_tag <= 0xFF or op_tag & 0xE0 != 0x60:
        raise ValueError(f"not a constructed APPLICATION tag: {op_tag!r}")
    content = (
        (_ENUM_TLV[result_code] if 0 <= result_code < 0x80 else _int_tlv(result_code, b"\x0a"))
        + _octets(b"\x04", _utf8(matched_dn))
        + _octets(b"\x04", _utf8(message))
        + extra
    )
    if response_name is not None:
        content += _octets(b"\x8a", _utf8(response_name))
    if response_value is not None:
        content += _octets(b"\x8b", bytes(response_value))
    return bytes((op_tag,)) + _len(len(content)) + content


@lru_cache(maxsize=256)
def search_done_op(result_code: int, matched_dn: str = "", message: str = "") -> bytes:
    """A SearchResultDone op without controls; the few common ones are made once."""
    return _result_op(0x65, result_code, matched_dn, message)


def encode_search_answer(message_id: int, entry_ops: list[bytes], done_op: bytes) -> bytes:
    """SearchResultEntry messages around encoded entry ops, then the SearchResultDone op: the
    bytes ``wrap_message`` and ``encode_result`` give, with the message ID encoded once."""
    mid = _INT_TLV[message_id] if 0 <= message_id < 0x80 else _int_tlv(message_id)
    m = len(mid)
    parts: list[bytes] = []
    extend = parts.extend
    for op in [*entry_ops, done_op]:
        n = m + len(op)
        extend((_MESSAGE_HEADS[n] if n < _HEADS_MADE else b"\x30" + _len(n), mid, op))
    return b"".join(parts)


#: LDAPMessage headers (SEQUENCE tag and length) for the usual sizes, made once.
_HEADS_MADE = 4096
_MESSAGE_HEADS = [b"\x30" + _len(n) for n in range(_HEADS_MADE)]


def encode_paged_results_value(size: int, cookie: bytes) -> bytes:
    """RFC 2696 control value: SEQUENCE { size INTEGER, cookie OCTET STRING }."""
    return _octets(b"\x30", _int_tlv(size) + _octets(b"\x04", bytes(cookie)))


def encode_sort_response_value(result_code: int, attribute: str | None = None) -> bytes:
    """RFC 2891 SortResult: SEQUENCE { sortResult ENUMERATED, attributeType [0] OPTIONAL }."""
    content = _int_tlv(result_code, b"\x0a")
    if attribute is not None:
        content += _octets(b"\x80", _utf8(attribute))
    return _octets(b"\x30", content)


def check_structure(op: bytes, max_depth: int = 64) -> None:
    """Check that an operation's BER nests exactly (every constructed element's children fill
    it to the byte); raises BERError otherwise.  For requests whose contents are not decoded
    here: a lenient decoder must not turn a broken encoding into an answer (RFC 4511 4.1.1)."""
    stack = [(0, len(op), 0)]
    while stack:
        pos, end, depth = stack.pop()
        if depth > max_depth:
            raise BERError("elements nested too deeply")
        while pos < end:
            tag, start, stop = _header(op, pos, end)
            if tag & 0x20:
                stack.append((start, stop, depth + 1))
            pos = stop
        if pos != end:
            raise BERError(f"element ends at offset {pos}, its parent at {end}")


# -- the shapes of requests ldaptor decodes ------------------------------------------
#
# ldaptor's decoder takes elements of the wrong type where it expects others; a request that
# does not have its operation's shape must end the session (RFC 4511 4.1.1), not be answered.
# A shape is a list of items, each a tag (any contents), (tag, shape) for a constructed element,
# (tag, ("*", item)) for SEQUENCE/SET OF item, or ("?", item) for an optional last item.

_ATTRIBUTE = (0x30, [0x04, (0x31, ("*", 0x04))])
_SHAPES: dict[int, tuple[str, list]] = {
    0x66: ("ModifyRequest", [0x04, (0x30, ("*", (0x30, [0x0A, _ATTRIBUTE])))]),
    0x68: ("AddRequest", [0x04, (0x30, ("*", _ATTRIBUTE))]),
    0x6C: ("ModifyDNRequest", [0x04, 0x04, 0x01, ("?", 0x80)]),
    0x6E: ("CompareRequest", [0x04, (0x30, [0x04, 0x04])]),
}


def check_shape(op_tag: int, op: bytes) -> None:
    """Check that a request has its operation's element types (for the operations in _SHAPES)."""
    known = _SHAPES.get(op_tag)
    if known is None:
        return
    name, shape = known
    data = _as_bytes(op)
    _, start, end = _header(data, 0, len(data))
    _match_items(data, start, end, shape, name)


def _match_items(data: bytes, pos: int, end: int, items, what: str) -> None:
    if isinstance(items, tuple) and items[0] == "*":
        while pos < end:
            pos = _match_one(data, pos, end, items[1], what)
        return
    for item in items:
        optional = isinstance(item, tuple) and item[0] == "?"
        if optional:
            if pos >= end:
                return
            item = item[1]
        if pos >= end:
            raise BERError(f"{what} ends early")
        pos = _match_one(data, pos, end, item, what)
    if pos != end:
        raise BERError(f"{what} has extra elements")


def _match_one(data: bytes, pos: int, end: int, item, what: str) -> int:
    tag, start, stop = _header(data, pos, end)
    wanted, inner = (item, None) if isinstance(item, int) else item
    if tag != wanted:
        raise BERError(f"{what}: element 0x{tag:02x} where 0x{wanted:02x} belongs")
    if wanted == 0x01 and stop - start != 1:
        raise BERError(f"{what}: a BOOLEAN of {stop - start} bytes")
    if inner is not None:
        _match_items(data, start, stop, inner, what)
    return stop

"""The snapshot file format: contacts and sync state of every source, versioned and checksummed.

Pure: bytes in, values out; no I/O, no clock.

Layout (format version 1)::

    offset size
       0    8   magic  b"DIRGWSNP"
       8    2   format version (1), big-endian
      10    2   header size (64), big-endian
      12    4   CRC-32 of the header (bytes 0..12 and 16..header size), big-endian
      16    8   payload length, big-endian
      24    8   reserved, zero
      32   32   SHA-256 of the payload
      64    -   payload

The first 16 bytes (magic, version, header size, header CRC) keep this layout
in every future version, so an older reader can tell a newer snapshot from a
damaged one.

The payload is a 4-byte (big-endian) manifest length, the manifest, the
blocks of every source in the manifest's order, then the extensions.  The
manifest is JSON::

    {"created": 1700000000.0, "block_size": 4096,
     "sources": [{"name": "tenant-a", "contacts": 12345, "blocks": [len, ...],
                  "sync": {...SyncState.to_dict()...}}, ...],
     "extensions": [["name", len], ...],
     "table": ["", "mobile", "Müller", ...]}

``table`` holds each distinct value of the repetitive fields (given name,
surname, company, department, job title, phone kind) once.  A block holds up to
:data:`BLOCK_SIZE` contacts of one source; it starts with ``<BxxxII`` (block
type, contact count n, phone count p) and then is either

* type 0 (columns): n phone counts as little-endian uint32; 5n + p table
  indexes as little-endian uint32 (given names, surnames, companies,
  departments, job titles, then phone kinds); then UTF-8 text: the ids,
  display names, mails and phone numbers, joined by NUL; or
* type 1 (JSON, used for a block where a string holds NUL or a lone
  surrogate, or a field is not a string): one JSON array of 11 columns
  ``[ids, display_names, given_names, surnames, companies, departments,
  job_titles, mails, phone_counts, phone_kinds, phone_numbers]``.

Columns keep decoding in C (one ``split`` per block, ``map`` builds the values);
the table makes one string object per distinct value, shared by every contact
that has it; blocks keep every step of encoding short, so encoding in a thread
never holds the GIL for long.  Every value round-trips exactly.
"""

from __future__ import annotations

import gc
import hashlib
import json
import struct
import sys
import types
import zlib
from array import array
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice, repeat
from operator import attrgetter
from typing import Any

import attrs
from attrs import field, frozen

from gateway.model import Contact, Phone

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "BLOCK_SIZE",
    "SourceSnapshot",
    "Snapshot",
    "SnapshotSummary",
    "SourceSummary",
    "SnapshotError",
    "EmptySnapshot",
    "TruncatedSnapshot",
    "ForeignFile",
    "ChecksumMismatch",
    "NewerVersion",
    "MalformedSnapshot",
    "encode",
    "encode_parts",
    "decode",
    "decode_summary",
]

MAGIC = b"DIRGWSNP"
FORMAT_VERSION = 1
HEADER_SIZE = 64
#: Contacts per block.
BLOCK_SIZE = 4096

_PREFIX = struct.Struct(">8sHHI")  # magic, version, header size, header crc
_V1_REST = struct.Struct(">QQ32s")  # payload length, reserved, sha-256
_U32 = struct.Struct(">I")
_BLOCK = struct.Struct("<BxxxII")  # block type, contacts, phones
_COLUMNS_BLOCK = 0
_JSON_BLOCK = 1
_JSON_COLUMNS = 11

# -- values --------------------------------------------------------------------


def _sync_dict(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


def _contacts(value: Iterable[Contact]) -> Sequence[Contact]:
    """Contacts as a tuple, unless they come as a sequence that reads them when sliced (for
    writing in a thread: see ``gateway.service``)."""
    return value if isinstance(value, Sequence) and not isinstance(value, list) else tuple(value)


@frozen
class SourceSnapshot:
    """One source in a snapshot: its contacts and its sync state (``SyncState.to_dict()``).

    ``sync`` must be JSON-able; tuples in it come back as lists.
    """

    contacts: Sequence[Contact] = field(default=(), converter=_contacts)
    sync: dict[str, Any] = field(factory=dict, converter=_sync_dict)


@frozen
class Snapshot:
    """A decoded snapshot."""

    created: float
    version: int
    sources: dict[str, SourceSnapshot]
    #: Named opaque sections stored after the contacts (see :func:`encode_parts`).
    extensions: dict[str, bytes] = field(factory=dict)


@frozen
class SourceSummary:
    """What the manifest says about one source (no contacts decoded)."""

    contacts: int
    sync: dict[str, Any]


@frozen
class SnapshotSummary:
    """A snapshot whose header, checksum and manifest were checked, its contacts not decoded."""

    created: float
    version: int
    sources: dict[str, SourceSummary]
    #: The size of each extension (see :func:`encode_parts`), by name.
    extensions: dict[str, int] = field(factory=dict)


# -- errors --------------------------------------------------------------------


class SnapshotError(ValueError):
    """Bytes that are not a usable snapshot; ``reason`` names the kind of problem in one word."""

    reason = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EmptySnapshot(SnapshotError):
    reason = "empty"


class TruncatedSnapshot(SnapshotError):
    reason = "truncated"


class ForeignFile(SnapshotError):
    reason = "foreign"


class ChecksumMismatch(SnapshotError):
    reason = "bad-checksum"


class NewerVersion(SnapshotError):
    reason = "newer-version"

    def __init__(self, message: str, version: int) -> None:
        super().__init__(message)
        self.version = version


class MalformedSnapshot(SnapshotError):
    reason = "malformed"


# -- encoding ------------------------------------------------------------------

_TEXT_FIELDS = ("id", "display_name", "mail")
_TABLE_FIELDS = ("given_name", "surname", "company", "department", "job_title")
_get_phones = attrgetter("phones")
_get_kind = attrgetter("kind")
_get_number = attrgetter("number")


def _u32le(values: array) -> bytes:
    if sys.byteorder == "big":  # pragma: no cover - no big-endian CI
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


_U32_CODE = "I" if array("I").itemsize == 4 else "L"


class _Table:
    """The distinct values of the repetitive fields, each with its index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def add(self, column: list[Any], out: array) -> bool:
        """Append the indexes of ``column`` to ``out``; False when a value is not a string."""
        index = self.index
        if column and set(map(type, column)) != {str}:
            return False
        for value in set(column).difference(index):
            index[value] = len(index)
        out.extend(map(index.__getitem__, column))
        return True


def _encode_block(contacts: list[Contact], table: _Table) -> bytes:
    phones = list(map(_get_phones, contacts))
    phone_list = [p for ps in phones for p in ps]
    n, p = len(contacts), len(phone_list)
    text_columns = [list(map(attrgetter(name), contacts)) for name in _TEXT_FIELDS]
    table_columns = [list(map(attrgetter(name), contacts)) for name in _TABLE_FIELDS]
    kinds = list(map(_get_kind, phone_list))
    numbers = list(map(_get_number, phone_list))
    indexes = array(_U32_CODE)
    try:
        text = "\x00".join([*text_columns[0], *text_columns[1], *text_columns[2], *numbers])
        if text.count("\x00") == 3 * n + p - 1 and all(table.add(c, indexes) for c in (*table_columns, kinds)):
            counts = array(_U32_CODE, map(len, phones))
            return b"".join((_BLOCK.pack(_COLUMNS_BLOCK, n, p), _u32le(counts), _u32le(indexes),
                             text.encode("utf-8")))
    except (TypeError, UnicodeEncodeError):  # not a string; a lone surrogate
        pass
    ids, display, mails = text_columns
    columns = [ids, display, *table_columns, mails, list(map(len, phones)), kinds, numbers]
    body = json.dumps(columns, ensure_ascii=True, separators=(",", ":"), check_circular=False)
    return _BLOCK.pack(_JSON_BLOCK, n, p) + body.encode("ascii")


def encode_parts(sources: Mapping[str, SourceSnapshot], created: float,
                 extensions: Mapping[str, bytes | Sequence[bytes]] | None = None) -> list[bytes]:
    """The snapshot as byte strings to write one after the other (header first).

    ``extensions`` are named byte strings stored after the contacts and
    returned as they are by :func:`decode`: room for derived data (say, an
    index cache with its own version and settings fingerprint) that a reader
    not knowing the name simply ignores, without a new format version.  An
    extension may be given as pieces (a list of byte strings), stored one
    after the other without being joined first: a million contacts' compact
    index is 750 MB, and joining it would hold it twice while it is written.

    Every step is short (one block at a time), so this can run in a thread
    without holding the GIL for long; ``b"".join`` of the result is
    :func:`encode`.  Raises ``ValueError`` when a contact is listed under
    another source than its own.
    """
    table = _Table()
    blocks: list[bytes] = []
    manifest_sources = []
    for name, source in sources.items():
        if not isinstance(name, str):
            raise TypeError(f"source names must be strings, not {name!r}")
        contacts = source.contacts
        lengths = []
        for start in range(0, len(contacts), BLOCK_SIZE):
            chunk = list(contacts[start:start + BLOCK_SIZE])
            for contact in chunk:
                if contact.source != name:
                    raise ValueError(f"contact {contact.id!r} of source {contact.source!r} is listed under {name!r}")
            block = _encode_block(chunk, table)
            blocks.append(block)
            lengths.append(len(block))
        manifest_sources.append({"name": name, "contacts": len(contacts), "blocks": lengths, "sync": source.sync})
    extra = [(str(name), [bytes(value)] if isinstance(value, (bytes, bytearray, memoryview)) else list(value))
             for name, value in (extensions or {}).items()]
    for _, pieces in extra:
        blocks.extend(pieces)
    manifest = json.dumps({"created": created, "block_size": BLOCK_SIZE, "sources": manifest_sources,
                           "extensions": [[name, sum(len(p) for p in pieces)] for name, pieces in extra]},
                          ensure_ascii=True, separators=(",", ":")).encode("ascii")
    manifest = manifest[:-1] + _json_table(list(table.index)) + b"}"  # "table" is the last key
    head = _U32.pack(len(manifest)) + manifest
    digest = hashlib.sha256(head)
    length = len(head)
    for block in blocks:
        digest.update(block)
        length += len(block)
    return [_header(length, digest.digest()), head, *blocks]


def _json_table(values: list[str]) -> bytes:
    """``,"table":[...]`` for the manifest, built in short steps (the table may hold a million names)."""
    pieces = [json.dumps(values[i:i + BLOCK_SIZE], ensure_ascii=True, separators=(",", ":"))[1:-1]
              for i in range(0, len(values), BLOCK_SIZE)]
    return b',"table":[' + ",".join(pieces).encode("ascii") + b"]"


def encode(sources: Mapping[str, SourceSnapshot], created: float,
           extensions: Mapping[str, bytes | Sequence[bytes]] | None = None) -> bytes:
    """The snapshot of ``sources`` (name -> contacts and sync state), created at ``created``, as bytes."""
    return b"".join(encode_parts(sources, created, extensions))


def _header(length: int, digest: bytes) -> bytes:
    rest = _V1_REST.pack(length, 0, digest)
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, HEADER_SIZE, 0)[:12]
    crc = zlib.crc32(rest, zlib.crc32(prefix))
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, HEADER_SIZE, crc) + rest


# -- decoding: header and manifest ----------------------------------------------


def _header_crc(data: bytes | memoryview, header_size: int) -> int:
    return zlib.crc32(data[16:header_size], zlib.crc32(data[:12]))


def _check(data: bytes | memoryview) -> tuple[int, memoryview]:
    """Validate header and checksum: (version, payload), or a SnapshotError saying what is wrong."""
    size = len(data)
    if size == 0:
        raise EmptySnapshot("empty file (0 bytes)")
    view = memoryview(data)
    magic = bytes(view[:8])
    if magic != MAGIC:
        if size < 8 and MAGIC.startswith(magic):
            raise TruncatedSnapshot(f"truncated: {size} bytes, shorter than the {HEADER_SIZE}-byte header")
        if size >= HEADER_SIZE and \
                _header_crc(MAGIC + bytes(view[8:HEADER_SIZE]), HEADER_SIZE) == _PREFIX.unpack_from(view)[3]:
            raise ChecksumMismatch("corrupted: the magic bytes are damaged (the rest of the header is intact)")
        raise ForeignFile(f"not a dirgw snapshot: starts with {magic!r}, not {MAGIC!r}")
    if size < 16:
        raise TruncatedSnapshot(f"truncated: {size} bytes, shorter than the {HEADER_SIZE}-byte header")
    _, version, header_size, crc = _PREFIX.unpack_from(view)
    if header_size < 16 or (version <= FORMAT_VERSION and header_size != HEADER_SIZE):
        raise ChecksumMismatch(f"corrupted header: header size {header_size} is impossible for format version "
                               f"{version}")
    if size < header_size:
        raise TruncatedSnapshot(f"truncated: {size} bytes, shorter than the {header_size}-byte header")
    if _header_crc(view, header_size) != crc:
        raise ChecksumMismatch("corrupted header: header checksum (CRC-32) mismatch")
    if version > FORMAT_VERSION:
        raise NewerVersion(f"format version {version} is newer than this dirgw reads (up to {FORMAT_VERSION}): "
                           f"written by a newer dirgw", version)
    if version < 1 or header_size != HEADER_SIZE:
        raise MalformedSnapshot(f"unknown format version {version} (header size {header_size})")
    length, _, digest = _V1_REST.unpack_from(view, 16)
    have = size - HEADER_SIZE
    if have < length:
        raise TruncatedSnapshot(f"truncated: {size} bytes, the header announces {length + HEADER_SIZE}")
    if have > length:
        raise MalformedSnapshot(f"{have - length} bytes of trailing data after the {length}-byte payload")
    payload = view[HEADER_SIZE:]
    if hashlib.sha256(payload).digest() != digest:
        raise ChecksumMismatch("corrupted: payload checksum (SHA-256) mismatch")
    return version, payload


def _manifest(payload: memoryview) -> tuple[dict[str, Any], int]:
    if len(payload) < 4:
        raise MalformedSnapshot("payload too short for its manifest")
    (mlen,) = _U32.unpack_from(payload)
    if 4 + mlen > len(payload):
        raise MalformedSnapshot("manifest longer than the payload")
    try:
        manifest = json.loads(str(payload[4:4 + mlen], "utf-8"))
        if not isinstance(manifest, dict):
            raise TypeError("not an object")
        created, sources, table = manifest["created"], manifest["sources"], manifest["table"]
        if not isinstance(created, (int, float)) or not isinstance(sources, list) or not isinstance(table, list):
            raise TypeError("created must be a number, table and sources lists")
        names = set()
        for source in sources:
            if not (isinstance(source, dict) and isinstance(source.get("name"), str)
                    and isinstance(source.get("contacts"), int) and isinstance(source.get("blocks"), list)
                    and isinstance(source.get("sync"), dict)):
                raise TypeError(f"bad source entry {source!r:.200}")
            if source["name"] in names:
                raise ValueError(f"source {source['name']!r} appears twice")
            names.add(source["name"])
        extensions = manifest.setdefault("extensions", [])
        if not (isinstance(extensions, list) and all(
                isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and type(e[1]) is int and e[1] >= 0
                for e in extensions)):
            raise TypeError("extensions must be [name, length] pairs")
        if len({e[0] for e in extensions}) != len(extensions):
            raise ValueError("an extension appears twice")
    except (ValueError, KeyError, TypeError) as e:
        raise MalformedSnapshot(f"bad manifest: {e}") from None
    return manifest, 4 + mlen


def decode_summary(data: bytes | memoryview) -> SnapshotSummary:
    """Check header, checksum and manifest without decoding the contacts (fast, for inspection)."""
    version, payload = _check(data)
    manifest, _ = _manifest(payload)
    return SnapshotSummary(
        created=float(manifest["created"]),
        version=version,
        sources={s["name"]: SourceSummary(contacts=s["contacts"], sync=s["sync"]) for s in manifest["sources"]},
        extensions={name: length for name, length in manifest["extensions"]},
    )


# -- decoding: contacts --------------------------------------------------------


def _direct_setters(cls: type, names: tuple[str, ...]) -> list[Any] | None:
    """Slot setters of ``cls`` in ``names`` order, when its attrs ``__init__`` does nothing more than set them."""
    try:
        fields = attrs.fields(cls)
    except TypeError:  # pragma: no cover
        return None
    if tuple(f.name for f in fields) != names or hasattr(cls, "__attrs_post_init__") \
            or any(f.validator or f.converter or f.on_setattr for f in fields):
        return None  # pragma: no cover - guards against a change of the model
    descriptors = [cls.__dict__.get(name) for name in names]
    if not all(isinstance(d, types.MemberDescriptorType) for d in descriptors):
        return None  # pragma: no cover
    return [d.__set__ for d in descriptors]


_CONTACT_FIELDS = ("source", "id", "display_name", "given_name", "surname", "company", "department", "job_title",
                   "mail", "phones")
#: Building contacts by setting their slots directly skips a Python call per contact (about 25% of decoding);
#: used only while Contact and Phone are plain slotted attrs classes, checked here.
_CONTACT_SETTERS = _direct_setters(Contact, _CONTACT_FIELDS)
_PHONE_SETTERS = _direct_setters(Phone, ("kind", "number"))
_new = object.__new__


def _build(cls: type, setters: list[Any] | None, count: int, columns: list[Any]) -> list[Any]:
    if setters is None:
        return list(map(cls, *columns))
    objects = list(map(_new, repeat(cls, count)))
    for setter, column in zip(setters, columns):
        deque(map(setter, objects, column), maxlen=0)
    return objects


def decode(data: bytes | memoryview, contacts: bool = True) -> Snapshot:
    """The snapshot in ``data``; a :class:`SnapshotError` saying why when it is not usable.

    ``contacts=False`` checks everything but leaves the contacts undecoded (every source's
    ``contacts`` empty): for a reader that finds them in an extension (the index's base).
    """
    version, payload = _check(data)
    manifest, offset = _manifest(payload)
    table = manifest["table"]
    enabled = gc.isenabled()
    gc.disable()  # millions of new objects and no garbage: collections would only cost time
    try:
        sources: dict[str, SourceSnapshot] = {}
        for entry in manifest["sources"]:
            name = entry["name"]
            decoded: list[Contact] = []
            for length in entry["blocks"]:
                if not isinstance(length, int) or length < _BLOCK.size or offset + length > len(payload):
                    raise MalformedSnapshot(f"source {name!r}: block length {length!r} out of range")
                if not contacts:
                    offset += length
                    continue
                try:
                    decoded.extend(_decode_block(payload[offset:offset + length], name, table))
                except (ValueError, TypeError, IndexError) as e:
                    if isinstance(e, SnapshotError):
                        raise
                    raise MalformedSnapshot(f"source {name!r}: bad block at payload offset {offset}: {e}") from None
                offset += length
            if contacts and len(decoded) != entry["contacts"]:
                raise MalformedSnapshot(f"source {name!r}: {len(decoded)} contacts, the manifest says "
                                        f"{entry['contacts']}")
            sources[name] = SourceSnapshot(contacts=tuple(decoded), sync=entry["sync"])
        extensions: dict[str, bytes] = {}
        for name, length in manifest["extensions"]:
            if offset + length > len(payload):
                raise MalformedSnapshot(f"extension {name!r}: length {length} out of range")
            extensions[name] = bytes(payload[offset:offset + length])
            offset += length
        if offset != len(payload):
            raise MalformedSnapshot(f"{len(payload) - offset} bytes after the last block")
    finally:
        if enabled:
            gc.enable()
    return Snapshot(created=float(manifest["created"]), version=version, sources=sources, extensions=extensions)


def _u32_array(raw: memoryview) -> array:
    values = array(_U32_CODE)
    values.frombytes(raw)
    if sys.byteorder == "big":  # pragma: no cover
        values.byteswap()
    return values


def _decode_block(raw: memoryview, source: str, table: list[Any]) -> list[Contact]:
    kind, n, p = _BLOCK.unpack_from(raw)
    if kind == _COLUMNS_BLOCK:
        pos = _BLOCK.size
        end = pos + 4 * n + 4 * (5 * n + p)
        if end > len(raw):
            raise MalformedSnapshot(f"source {source!r}: block shorter than its counts")
        counts = _u32_array(raw[pos:pos + 4 * n])
        indexes = _u32_array(raw[pos + 4 * n:end])
        strings = str(raw[end:], "utf-8").split("\x00")
        if len(strings) != 3 * n + p:
            raise MalformedSnapshot(f"source {source!r}: block has {len(strings)} strings, expected {3 * n + p}")
        get = table.__getitem__
        ids, display, mails, numbers = strings[:n], strings[n:2 * n], strings[2 * n:3 * n], strings[3 * n:]
        given, surname, company, department, title = (list(map(get, indexes[i * n:(i + 1) * n])) for i in range(5))
        kinds = list(map(get, indexes[5 * n:]))
    elif kind == _JSON_BLOCK:
        columns = json.loads(str(raw[_BLOCK.size:], "utf-8"))
        if not isinstance(columns, list) or len(columns) != _JSON_COLUMNS or \
                not all(isinstance(c, list) for c in columns):
            raise MalformedSnapshot(f"source {source!r}: a JSON block is not {_JSON_COLUMNS} columns")
        ids, display, given, surname, company, department, title, mails, counts, kinds, numbers = columns
        if any(len(c) != n for c in columns[:9]) or len(kinds) != p or len(numbers) != p:
            raise MalformedSnapshot(f"source {source!r}: the columns of a JSON block differ in length")
        if not all(type(c) is int for c in counts):
            raise MalformedSnapshot(f"source {source!r}: phone counts are not integers")
        if n and min(counts) < 0:
            raise MalformedSnapshot(f"source {source!r}: negative phone count")
    else:
        raise MalformedSnapshot(f"source {source!r}: unknown block type {kind}")
    if sum(counts) != p:
        raise MalformedSnapshot(f"source {source!r}: phone counts do not add up to {p}")
    phone_list = _build(Phone, _PHONE_SETTERS, p, [kinds, numbers])
    shared = iter(phone_list)
    phones = list(map(tuple, map(islice, repeat(shared), counts)))
    return _build(Contact, _CONTACT_SETTERS, n, [repeat(source), ids, display, given, surname, company, department,
                                                  title, mails, phones])

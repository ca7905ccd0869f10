"""The snapshot format: exact round trips, and every kind of bad file detected with its reason."""

from __future__ import annotations

import gc
import hashlib
import json
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.model import Contact, Phone
from gateway.snapshot import codec
from gateway.snapshot.bench import bench, restart, synthetic_contacts
from gateway.snapshot.codec import (
    FORMAT_VERSION,
    HEADER_SIZE,
    MAGIC,
    ChecksumMismatch,
    EmptySnapshot,
    ForeignFile,
    MalformedSnapshot,
    NewerVersion,
    SnapshotError,
    SourceSnapshot,
    TruncatedSnapshot,
    decode,
    decode_summary,
    encode,
    encode_parts,
)

# Any code point, including NUL and lone surrogates (which Graph JSON can carry as \ud800 escapes).
any_text = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=12)
names = st.sampled_from(["", "Müller", "Łukasz", "Zoë", "O'Brien", "株式会社", "😀 emoji"]) | any_text
kinds = st.sampled_from(["business", "mobile", "home", "businessFax", "pager"]) | any_text
phones = st.lists(st.builds(Phone, kinds, st.sampled_from(["+49 89 1234-0", "089/1234567", ""]) | any_text),
                  max_size=4).map(tuple)


def contacts_of(source: str):
    return st.builds(
        Contact, st.just(source), any_text, names, names, names, names, names, names, any_text, phones,
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
sync_dicts = st.dictionaries(st.text(max_size=12), json_values, max_size=5)


@st.composite
def snapshots(draw):
    source_names = draw(st.lists(any_text, unique=True, max_size=3))
    return {name: SourceSnapshot(contacts=tuple(draw(st.lists(contacts_of(name), max_size=6))),
                                 sync=draw(sync_dicts))
            for name in source_names}


def sample(n: int = 3, source: str = "a") -> dict[str, SourceSnapshot]:
    contacts = tuple(synthetic_contacts(n, source=source, seed=7))
    return {source: SourceSnapshot(contacts=contacts, sync={"delta_link": "https://x/delta?t=1", "next_link": None,
                                                            "identity": ["tenant", "client"], "last_success": 12.5})}


def assert_same(decoded: dict[str, SourceSnapshot], original: dict[str, SourceSnapshot]) -> None:
    assert list(decoded) == list(original)
    for name, source in original.items():
        got = decoded[name]
        assert got.contacts == source.contacts
        assert [hash(c) for c in got.contacts] == [hash(c) for c in source.contacts]
        assert all(type(c) is Contact and all(type(p) is Phone for p in c.phones) for c in got.contacts)
        assert got.sync == json.loads(json.dumps(source.sync))


# -- round trips -----------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(), st.floats(allow_nan=False, allow_infinity=False))
def test_round_trip_is_exact(sources, created) -> None:
    """Random contacts (any Unicode, NUL, lone surrogates, phones) and sync states come back equal."""
    data = encode(sources, created)
    snapshot = decode(data)
    assert snapshot.created == created
    assert snapshot.version == FORMAT_VERSION
    assert_same(snapshot.sources, sources)
    summary = decode_summary(data)
    assert {n: s.contacts for n, s in summary.sources.items()} == {n: len(s.contacts) for n, s in sources.items()}


@settings(max_examples=30, deadline=None)
@given(snapshots())
def test_constructor_path_gives_the_same_values(sources) -> None:
    """Building contacts through their constructors (the fallback) equals the fast slot-setting path."""
    data = encode(sources, 1.0)
    fast = decode(data)
    saved = codec._CONTACT_SETTERS, codec._PHONE_SETTERS
    codec._CONTACT_SETTERS = codec._PHONE_SETTERS = None
    try:
        slow = decode(data)
    finally:
        codec._CONTACT_SETTERS, codec._PHONE_SETTERS = saved
    assert fast == slow


def test_many_blocks_and_both_block_types() -> None:
    """More contacts than a block holds; a block with NUL or surrogates among column blocks."""
    contacts = synthetic_contacts(2 * codec.BLOCK_SIZE + 10, source="s")
    contacts[codec.BLOCK_SIZE + 3] = Contact("s", "nul\x00id", display_name="lone \ud800 surrogate")
    sources = {"s": SourceSnapshot(contacts=tuple(contacts), sync={}), "empty": SourceSnapshot()}
    data = encode(sources, 5.0)
    payload = memoryview(data)[HEADER_SIZE:]
    manifest, offset = codec._manifest(payload)
    types_ = []
    for length in manifest["sources"][0]["blocks"]:
        types_.append(payload[offset])
        offset += length
    assert types_ == [0, 1, 0]
    assert_same(decode(data).sources, sources)


def test_repeated_values_are_one_object() -> None:
    """Companies, names and phone kinds repeated across contacts share one string object after decoding."""
    contacts = decode(encode(sample(200), 1.0)).sources["a"].contacts
    by_company: dict[str, set[int]] = {}
    for c in contacts:
        by_company.setdefault(c.company, set()).add(id(c.company))
        for p in c.phones:
            by_company.setdefault("kind:" + p.kind, set()).add(id(p.kind))
    assert all(len(ids) == 1 for ids in by_company.values())


def test_extensions_round_trip_and_are_optional() -> None:
    """Named opaque sections after the contacts: for derived data a later reader may use or ignore."""
    sources = sample(5)
    data = encode(sources, 1.0, extensions={"index-cache": b"\x00\x01 anything", "empty": b""})
    snapshot = decode(data)
    assert snapshot.extensions == {"index-cache": b"\x00\x01 anything", "empty": b""}
    assert_same(snapshot.sources, sources)
    assert decode(encode(sources, 1.0)).extensions == {}


def test_an_extension_given_in_pieces_is_stored_as_their_join() -> None:
    """A large extension (the compact index) is handed over in pieces and written without
    joining them first; the snapshot is the same as with the joined bytes."""
    sources = sample(5)
    pieces = [b"head", b"", b"\x00" * 70000, b"tail"]
    parts = encode_parts(sources, 2.0, extensions={"index-base": pieces, "index-changes": b"{}"})
    assert any(p is pieces[2] for p in parts)  # the piece itself, not a copy inside a join
    data = b"".join(parts)
    assert data == encode(sources, 2.0, extensions={"index-base": b"".join(pieces), "index-changes": b"{}"})
    assert decode(data).extensions == {"index-base": b"".join(pieces), "index-changes": b"{}"}


def test_encode_parts_join_to_encode() -> None:
    sources = sample(10)
    assert b"".join(encode_parts(sources, 3.0)) == encode(sources, 3.0)


def test_sync_tuples_come_back_as_lists() -> None:
    snapshot = decode(encode({"a": SourceSnapshot(sync={"identity": ("t", "c")})}, 1.0))
    assert snapshot.sources["a"].sync == {"identity": ["t", "c"]}
    assert snapshot.sources["a"].contacts == ()


def test_a_contact_of_another_source_is_refused() -> None:
    with pytest.raises(ValueError, match="listed under"):
        encode({"a": SourceSnapshot(contacts=(Contact("b", "1"),))}, 1.0)


@pytest.mark.parametrize("enabled", [True, False])
def test_decode_leaves_the_garbage_collector_as_it_was(enabled: bool) -> None:
    data = encode(sample(5), 1.0)
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        decode(data)
        with pytest.raises(SnapshotError):
            decode(data[:-1])
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_bench_reports_times_and_size() -> None:
    result = bench(500)
    assert result["contacts"] == 500 and result["bytes"] > 500 * 50
    assert all(result[k] >= 0 for k in ("encode_s", "decode_s", "save_s", "load_s", "load_cpu_s"))
    assert result["load_max_rss_mb"] > 0


def test_restart_bench_serves_the_snapshot_it_wrote() -> None:
    """The restart benchmark gets its answer from a real ``dirgw serve`` loading the snapshot (the
    searched contact exists only there: the source's Graph address is a closed port)."""
    result = restart(300, timeout=120)
    assert result["contacts"] == 300 and result["snapshot_bytes"] > 300 * 50
    assert 0 < result["first_answer_s"] < 60 and result["ready_logged"] and result["rss_mb"] > 0


# -- bad files -------------------------------------------------------------------

GOOD = encode(sample(20), 100.0)


def header(version: int = FORMAT_VERSION, payload: bytes = b"", header_size: int = HEADER_SIZE) -> bytes:
    """A header with correct CRC and digest for ``payload``, any version."""
    rest = struct.pack(">QQ32s", len(payload), 0, hashlib.sha256(payload).digest()) + b"\0" * (header_size - 64)
    prefix = struct.pack(">8sHH", MAGIC, version, header_size)
    crc = zlib.crc32(rest, zlib.crc32(prefix))
    return prefix + struct.pack(">I", crc) + rest


def test_the_helper_header_matches_the_codec() -> None:
    assert header(payload=GOOD[HEADER_SIZE:]) == GOOD[:HEADER_SIZE]


def test_empty_file() -> None:
    with pytest.raises(EmptySnapshot, match="empty") as e:
        decode(b"")
    assert e.value.reason == "empty"


def test_every_cut_point_is_truncated() -> None:
    """Every proper prefix of a snapshot is reported as truncated (or empty at 0 bytes)."""
    for cut in range(1, len(GOOD)):
        with pytest.raises(TruncatedSnapshot, match="truncated") as e:
            decode(GOOD[:cut])
        assert e.value.reason == "truncated"


def test_every_flipped_byte_is_detected() -> None:
    """No single flipped byte anywhere goes unnoticed; in the header or payload it is a checksum error."""
    reasons = set()
    for i in range(len(GOOD)):
        damaged = bytearray(GOOD)
        damaged[i] ^= 0x40
        with pytest.raises(SnapshotError) as e:
            decode(bytes(damaged))
        reasons.add(e.value.reason)
        assert e.value.reason == "bad-checksum", (i, e.value)
    assert reasons == {"bad-checksum"}


def test_damaged_magic_is_corruption_not_a_foreign_file() -> None:
    damaged = b"DIRGWSNQ" + GOOD[8:]
    with pytest.raises(ChecksumMismatch, match="magic"):
        decode(damaged)


@pytest.mark.parametrize("data", [
    b"PK\x03\x04" + b"\0" * 100,  # a zip file
    b'{"value": []}',  # JSON contacts
    b"\x7fELF" + b"\0" * 100,
    b"#!/bin/sh\n",
    b"DIRX",  # short, and not a prefix of the magic
])
def test_foreign_files(data: bytes) -> None:
    with pytest.raises(ForeignFile, match="not a dirgw snapshot") as e:
        decode(data)
    assert e.value.reason == "foreign"


def test_a_prefix_of_the_magic_is_truncated() -> None:
    with pytest.raises(TruncatedSnapshot):
        decode(MAGIC[:5])


def test_a_newer_version_is_recognized() -> None:
    payload = b"whatever a future version stores"
    with pytest.raises(NewerVersion, match="version 7 is newer") as e:
        decode(header(7, payload, header_size=96) + payload)
    assert e.value.reason == "newer-version" and e.value.version == 7


def test_version_zero_is_malformed() -> None:
    with pytest.raises(MalformedSnapshot, match="version 0"):
        decode(header(0) + b"")


def test_trailing_data() -> None:
    with pytest.raises(MalformedSnapshot, match="trailing"):
        decode(GOOD + b"x")


def payload_with(manifest: object, blocks: bytes = b"") -> bytes:
    body = json.dumps(manifest).encode()
    payload = struct.pack(">I", len(body)) + body + blocks
    return header(payload=payload) + payload


def one_block(block: bytes, table: list[str] = ["", "x"], contacts: int = 1) -> bytes:
    """A snapshot of one source with one block, correct lengths and checksums."""
    return payload_with({"created": 1, "table": table, "sources": [
        {"name": "a", "contacts": contacts, "blocks": [len(block)], "sync": {}}]}, block)


def columns_block(n: int, p: int, counts: list[int], indexes: list[int], text: bytes) -> bytes:
    return struct.pack("<BxxxII", 0, n, p) + struct.pack(f"<{len(counts)}I", *counts) + \
        struct.pack(f"<{len(indexes)}I", *indexes) + text


def json_block(n: int, p: int, body: bytes) -> bytes:
    return struct.pack("<BxxxII", 1, n, p) + body


def test_the_block_helpers_decode() -> None:
    """The hand-made blocks below differ from this valid one in one thing each."""
    good = decode(one_block(columns_block(1, 1, [1], [1, 0, 0, 0, 0, 1], b"id\0dn\0mail\0+49 1")))
    assert good.sources["a"].contacts == (Contact("a", "id", "dn", "x", "", "", "", "", "mail",
                                                  (Phone("x", "+49 1"),)),)
    cols = [["id"], ["dn"], [""], [""], [""], [""], [""], ["m"], [1], ["k"], ["n"]]
    good = decode(one_block(json_block(1, 1, json.dumps(cols).encode())))
    assert good.sources["a"].contacts == (Contact("a", "id", "dn", mail="m", phones=(Phone("k", "n"),)),)


@pytest.mark.parametrize("data, match", [
    (header(payload=b"ab") + b"ab", "too short"),
    (header(payload=b"\0\0\0\x09{}") + b"\0\0\0\x09{}", "longer than the payload"),
    (payload_with([]), "bad manifest"),
    (payload_with({"created": 1}), "bad manifest"),
    (payload_with({"created": "x", "table": [], "sources": []}), "bad manifest"),
    (payload_with({"created": 1, "table": [], "sources": [{"name": "a"}]}), "bad source"),
    (payload_with({"created": 1, "table": [], "sources": [
        {"name": "a", "contacts": 0, "blocks": [], "sync": {}}] * 2}), "twice"),
    (payload_with({"created": 1, "table": [], "sources": [
        {"name": "a", "contacts": 1, "blocks": [], "sync": {}}]}), "manifest says"),
    (payload_with({"created": 1, "table": [], "sources": [
        {"name": "a", "contacts": 0, "blocks": [], "sync": {}}]}, b"junk"), "after the last block"),
    (payload_with({"created": 1, "table": [], "sources": [
        {"name": "a", "contacts": 1, "blocks": [99], "sync": {}}]}), "out of range"),
    (payload_with({"created": 1, "table": [], "sources": [], "extensions": [["x", 5]]}, b"abc"),
     "extension 'x'"),
    (payload_with({"created": 1, "table": [], "sources": [], "extensions": [["x", -1]]}), "pairs"),
    (payload_with({"created": 1, "table": [], "sources": [], "extensions": [["x", 0], ["x", 0]]}), "twice"),
    (payload_with({"created": 1, "table": [], "sources": [], "extensions": {"x": 1}}), "pairs"),
    (one_block(struct.pack("<BxxxII", 9, 1, 0)), "unknown block type"),
    (one_block(struct.pack("<BxxxII", 0, 1, 0)), "shorter than its counts"),
    (one_block(columns_block(1, 0, [0], [0, 0, 0, 0, 9], b"id\0dn\0mail")), "index out of range"),
    (one_block(columns_block(1, 0, [0], [0, 0, 0, 0, 0], b"id\0dn")), "expected 3"),
    (one_block(columns_block(1, 1, [0], [0, 0, 0, 0, 0, 0], b"id\0dn\0mail\0n")), "add up"),
    (one_block(columns_block(1, 0, [0], [0, 0, 0, 0, 0], b"\xff\0dn\0mail")), "utf-8"),
    (one_block(columns_block(1, 0, [0], [0, 0, 0, 0, 0], b"id\0dn\0mail"), contacts=2), "manifest says"),
    (one_block(json_block(1, 0, b"[]")), "not 11 columns"),
    (one_block(json_block(1, 0, b"[{")), "bad block"),
    (one_block(json_block(1, 0, json.dumps([["i"], ["d"], [""], [""], [""], [""], [""], ["m"], [0], [], [], []]
                                           ).encode())), "not 11 columns"),
    (one_block(json_block(2, 0, json.dumps([["i"], ["d"], [""], [""], [""], [""], [""], ["m"], [0], [], []]
                                           ).encode())), "differ in length"),
    (one_block(json_block(1, 0, json.dumps([["i"], ["d"], [""], [""], [""], [""], [""], ["m"], ["0"], [], []]
                                           ).encode())), "not integers"),
    (one_block(json_block(1, 0, json.dumps([["i"], ["d"], [""], [""], [""], [""], [""], ["m"], [-1], [], []]
                                           ).encode())), "negative"),
])
def test_malformed_payloads_with_a_valid_checksum(data: bytes, match: str) -> None:
    """Content no encoder writes, but with correct checksums, is malformed, never a crash."""
    with pytest.raises(MalformedSnapshot, match=match) as e:
        decode(data)
    assert e.value.reason == "malformed"


def test_reasons_are_distinct_words() -> None:
    kinds_ = [codec.EmptySnapshot, codec.TruncatedSnapshot, codec.ForeignFile, codec.ChecksumMismatch,
              codec.NewerVersion, codec.MalformedSnapshot]
    assert len({k.reason for k in kinds_}) == len(kinds_)
    assert all(issubclass(k, ValueError) for k in kinds_)

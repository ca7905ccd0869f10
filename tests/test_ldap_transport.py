"""How answers reach the client: written through to the socket when nothing waits, else queued.

A real ``dirgw serve`` on 127.0.0.1 and a raw socket client with a tiny receive buffer, so that
answers larger than the kernel takes at once are cut and the rest goes through Twisted's queue.
"""

from __future__ import annotations

import socket

import attrs
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from gateway.config import LdapConfig
from gateway.index import ContactIndex
from gateway.ldap import ber
from gateway.ldap.directory import Directory
from gateway.ldap.search import SearchSettings
from gateway.ldap.server import LDAPServerFactory
from gateway.ops.metrics import Metrics
from tests import fuzzing as wire
from tests.support import contact, start_server

BASE = "dc=example,dc=com"
COUNT = 300
# long values make each entry ~3 KB: one answer of every contact is ~1 MB, more than a socket takes at once
CONTACTS = [
    contact(f"c-{i}", given=f"Given{i:04d}", surname=f"Surname{i:04d}", company="Köhler Logistik GmbH " + "x" * 1500,
            department="Department " + "y" * 1500, phones=[("business", f"+49 89 1234-{i:04d}")])
    for i in range(COUNT)
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = start_server(tmp_path_factory.mktemp("transport"), CONTACTS, size_limit=1000)
    yield proc
    proc.stop()


def _connect(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    return sock


def _read_until_done(sock: socket.socket, done: int) -> list[ber.Message]:
    """Messages until ``done`` SearchResultDone/BindResponse-terminated answers have arrived."""
    buffer = b""
    messages: list[ber.Message] = []
    finished = 0
    while finished < done:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(messages)} messages"
        buffer += chunk
        while True:
            size = ber.frame(buffer, 1 << 24)
            if size is None:
                break
            message = ber.decode_message(buffer[:size])
            buffer = buffer[size:]
            messages.append(message)
            if message.op_tag in (0x65, 0x61):
                finished += 1
    assert buffer == b""
    return messages


def _search(mid: int, filter_text: bytes = b"telephoneNumber") -> bytes:
    return wire.message(mid, wire.search_op(BASE, scope=2, filter_ber=wire.tlv(0x87, filter_text)))


def test_large_pipelined_answers_arrive_whole_and_in_order(server):
    """Ten pipelined searches of every contact (~1 MB each) into a 4 KB receive window: every
    answer complete, in request order, with no byte lost or repeated."""
    with _connect(server.port) as sock:
        sock.sendall(b"".join(_search(mid) for mid in range(1, 11)))
        messages = _read_until_done(sock, 10)
    assert [m.message_id for m in messages] == [mid for mid in range(1, 11) for _ in range(COUNT + 1)]
    for mid in range(1, 11):
        answer = [m for m in messages if m.message_id == mid]
        assert [m.op_tag for m in answer] == [0x64] * COUNT + [0x65]


def test_queued_answer_is_not_overtaken(server):
    """A bind answer (queued by ldaptor's path) followed by searches in the same packet: the
    searches' answers, written directly only when nothing waits, never overtake it."""
    bind = wire.message(1, wire.bind_op(3, "", b""))
    small = [_search(mid, b"mobile") for mid in range(3, 6)]
    with _connect(server.port) as sock:
        sock.sendall(bind + _search(2) + b"".join(small))
        messages = _read_until_done(sock, 5)
    assert (messages[0].message_id, messages[0].op_tag) == (1, 0x61)
    assert [m.message_id for m in messages[1:]] == [2] * (COUNT + 1) + [3, 4, 5]


def test_connections_are_counted_in_the_metrics():
    """Opened, accepted and closed connections reach the metrics without a wrapping factory."""
    metrics = Metrics()
    factory = LDAPServerFactory(Directory(ContactIndex(), SearchSettings(base_dn=BASE)),
                                attrs.evolve(LdapConfig()), metrics=metrics)
    protocols = []
    for port in (5000, 5001):
        proto = factory.buildProtocol(None)
        proto.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", port)))
        protocols.append(proto)
    assert metrics.ldap_summary()["connections"] == 2
    protocols[0].connectionLost(None)
    protocols[0].connectionLost(None)  # a second report of the same loss counts once
    assert metrics.ldap_summary()["connections"] == 1
    assert metrics.ldap_summary()["connections_total"] == 2

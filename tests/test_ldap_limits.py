"""Listener limits on an injected clock: connections per address and in total, idle timeout, back-pressure."""

from __future__ import annotations

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway.config import LdapConfig
from gateway.index import ContactIndex
from gateway.ldap.directory import Directory
from gateway.ldap.search import SearchSettings
from gateway.ldap.server import LDAPServerFactory


def make_factory(**limits):
    clock = Clock()
    factory = LDAPServerFactory(Directory(ContactIndex(), SearchSettings(base_dn="dc=example,dc=com")),
                                attrs.evolve(LdapConfig(), **limits), clock=clock)
    return factory, clock


def connect(factory, host="192.0.2.1", port=5000):
    proto = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
    proto.makeConnection(transport)
    return proto, transport


def test_connections_per_address_are_capped():
    """The third connection from one address is closed when two are allowed; other addresses still connect."""
    factory, _ = make_factory(max_connections_per_address=2)
    first = [connect(factory) for _ in range(2)]
    _, third = connect(factory)
    assert third.disconnecting and not first[0][1].disconnecting
    _, other = connect(factory, host="192.0.2.2")
    assert not other.disconnecting
    first[0][0].connectionLost(None)  # one closes: the address may connect again
    _, again = connect(factory)
    assert not again.disconnecting


def test_total_connections_are_capped():
    factory, _ = make_factory(max_connections=3)
    for i in range(3):
        assert not connect(factory, host=f"192.0.2.{i + 1}")[1].disconnecting
    assert connect(factory, host="192.0.2.99")[1].disconnecting


def test_idle_connections_are_closed_with_a_notice():
    """An idle connection gets a notice of disconnection (unavailable) and is closed; activity resets the timer."""
    factory, clock = make_factory(idle_timeout=60.0)
    proto, transport = connect(factory)
    clock.advance(59)
    proto.dataReceived(b"")  # a little traffic
    clock.advance(59.9)
    assert not transport.disconnecting
    clock.advance(0.2)  # 60 s after the traffic, not 60 s after the first timer
    assert transport.disconnecting
    assert b"1.3.6.1.4.1.1466.20036" in transport.value()
    assert factory.connections.total == 1  # until the transport reports the loss
    proto.connectionLost(None)
    assert factory.connections.total == 0


def test_client_that_does_not_read_is_not_read_either():
    """When the write buffer fills (the client does not read), the server stops reading from it."""
    factory, _ = make_factory()
    proto, transport = connect(factory)
    assert transport.producer is proto
    proto.pauseProducing()
    assert transport.producerState == "paused"
    proto.resumeProducing()
    assert transport.producerState == "producing"

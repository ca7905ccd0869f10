"""HTTPS through an HTTP proxy (CONNECT tunnel) for treq's Agent.

Twisted's ProxyAgent speaks only plain-HTTP proxying; Graph is HTTPS, so
each connection asks the proxy for a tunnel (``CONNECT host:443``), then
starts TLS to Graph inside it.  ``http://user:password@proxy:3128`` sends
Basic proxy credentials.
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.web.client import Agent
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

__all__ = ["tunneling_agent", "ProxyTunnelError"]

_MAX_HEADER = 16384


class ProxyTunnelError(ConnectError):
    """The proxy refused or broke the CONNECT tunnel."""


class _TunnelProtocol(Protocol):
    def __init__(self, endpoint: "_TunnelEndpoint", factory: Any, ready: Deferred) -> None:
        self._endpoint = endpoint
        self._factory = factory
        self._ready = ready
        self._buffer = b""
        self._inner: Protocol | None = None

    def connectionMade(self) -> None:
        target = f"{self._endpoint.host}:{self._endpoint.port}"
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if self._endpoint.credentials:
            lines.append("Proxy-Authorization: Basic " + self._endpoint.credentials)
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))

    def dataReceived(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.dataReceived(data)
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_HEADER:
                self._refuse("the proxy's answer to CONNECT is too long")
            return
        head, rest = self._buffer[:end], self._buffer[end + 4 :]
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or parts[1] != "200":
            self._refuse(f"the proxy refused the tunnel: {status_line.strip()[:100]}")
            return
        if self._endpoint.tls_creator is not None:
            self.transport.startTLS(self._endpoint.tls_creator)
        inner = self._factory.buildProtocol(self.transport.getPeer())
        self._inner = inner
        inner.makeConnection(self.transport)
        ready, self._ready = self._ready, None
        ready.callback(inner)
        if rest:
            inner.dataReceived(rest)

    def _refuse(self, reason: str) -> None:
        ready, self._ready = self._ready, None
        self.transport.loseConnection()
        if ready is not None:
            ready.errback(ProxyTunnelError(string=reason))

    def connectionLost(self, reason: Any) -> None:
        if self._inner is not None:
            self._inner.connectionLost(reason)
        elif self._ready is not None:
            ready, self._ready = self._ready, None
            ready.errback(ProxyTunnelError(string="the proxy closed the connection during CONNECT"))


class _TunnelFactory(Factory):
    def __init__(self, endpoint: "_TunnelEndpoint", factory: Any, ready: Deferred) -> None:
        self._endpoint = endpoint
        self._factory = factory
        self._ready = ready

    def buildProtocol(self, addr: Any) -> Protocol:
        return _TunnelProtocol(self._endpoint, self._factory, self._ready)


@implementer(IStreamClientEndpoint)
class _TunnelEndpoint:
    def __init__(self, reactor: Any, proxy_host: str, proxy_port: int, credentials: str | None,
                 host: str, port: int, tls_creator: Any) -> None:
        self._reactor = reactor
        self._proxy_host = proxy_host
        self._proxy_port = proxy_port
        self.credentials = credentials
        self.host = host
        self.port = port
        self.tls_creator = tls_creator

    def connect(self, factory: Any) -> Deferred:
        ready: Deferred = Deferred()
        endpoint = HostnameEndpoint(self._reactor, self._proxy_host, self._proxy_port, timeout=30)
        connecting = endpoint.connect(_TunnelFactory(self, factory, ready))

        def failed(failure: Any) -> None:
            if not ready.called:
                ready.errback(failure)

        connecting.addErrback(failed)
        return ready


@implementer(IAgentEndpointFactory)
class _TunnelEndpointFactory:
    def __init__(self, reactor: Any, proxy: str, policy: Any) -> None:
        parsed = urllib.parse.urlsplit(proxy)
        if not parsed.hostname:
            raise ValueError(f"not a proxy URL: {proxy!r}")
        self._reactor = reactor
        self._host = parsed.hostname
        self._port = parsed.port or (443 if parsed.scheme == "https" else 3128)
        self._credentials = None
        if parsed.username:
            user = urllib.parse.unquote(parsed.username)
            password = urllib.parse.unquote(parsed.password or "")
            self._credentials = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._policy = policy

    def endpointForURI(self, uri: Any) -> _TunnelEndpoint:
        creator = None
        if uri.scheme == b"https":
            creator = self._policy.creatorForNetloc(uri.host, uri.port)
        return _TunnelEndpoint(self._reactor, self._host, self._port, self._credentials,
                               uri.host.decode("ascii"), uri.port, creator)


def tunneling_agent(reactor: Any, proxy: str, policy: Any, pool: Any = None) -> Agent:
    """An Agent whose every connection is a CONNECT tunnel through ``proxy``."""
    return Agent.usingEndpointFactory(reactor, _TunnelEndpointFactory(reactor, proxy, policy), pool=pool)

"""A small HTTP CONNECT proxy on loopback, for testing the gateway's proxy support.

It tunnels ``CONNECT host:port`` to the target and counts the tunnels it
made; it refuses plain proxy requests and, when ``credentials`` is set,
requests without the right ``Proxy-Authorization`` (407).
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol

__all__ = ["ConnectProxy"]


class _Upstream(Protocol):
    def __init__(self, downstream: "_ProxyProtocol") -> None:
        self.downstream = downstream

    def dataReceived(self, data: bytes) -> None:
        self.downstream.transport.write(data)

    def connectionLost(self, reason: Any) -> None:
        self.downstream.transport.loseConnection()


class _ProxyProtocol(Protocol):
    def __init__(self, proxy: "ConnectProxy") -> None:
        self.proxy = proxy
        self.buffer = b""
        self.upstream: _Upstream | None = None

    def dataReceived(self, data: bytes) -> None:
        if self.upstream is not None:
            self.upstream.transport.write(data)
            return
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = (lines[0].split(" ") + ["", ""])[:3]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if method != "CONNECT":
            self.transport.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            self.transport.loseConnection()
            return
        if self.proxy.credentials:
            expected = "Basic " + base64.b64encode(self.proxy.credentials.encode()).decode()
            if headers.get("proxy-authorization") != expected:
                self.proxy.refused += 1
                self.transport.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                self.transport.loseConnection()
                return
        host, _, port = target.rpartition(":")
        self.transport.pauseProducing()
        endpoint = TCP4ClientEndpoint(self.proxy.reactor, host, int(port))

        def connected(upstream: _Upstream) -> None:
            self.upstream = upstream
            self.proxy.tunnels.append(target)
            self.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.transport.write(rest)
            self.transport.resumeProducing()

        def failed(_: Any) -> None:
            self.transport.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            self.transport.loseConnection()

        endpoint.connect(_UpstreamFactory(self)).addCallbacks(connected, failed)

    def connectionLost(self, reason: Any) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.loseConnection()


class _UpstreamFactory(Factory):
    def __init__(self, downstream: _ProxyProtocol) -> None:
        self.downstream = downstream

    def buildProtocol(self, addr: Any) -> _Upstream:
        return _Upstream(self.downstream)


class ConnectProxy(Factory):
    """``await proxy.start()``; ``proxy.url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, reactor: Any, credentials: str | None = None) -> None:
        self.reactor = reactor
        self.credentials = credentials
        self.tunnels: list[str] = []
        self.refused = 0
        self._port: Any = None

    def buildProtocol(self, addr: Any) -> _ProxyProtocol:
        return _ProxyProtocol(self)

    async def start(self) -> None:
        self._port = await TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1").listen(self)

    async def stop(self) -> None:
        if self._port is not None:
            await self._port.stopListening()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port.getHost().port}"

"""The treq HTTP client the Graph sync uses: system trust roots plus extras, optional proxy."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from OpenSSL import crypto
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from zope.interface import implementer

__all__ = ["ExtraTrustRoot", "make_http_client"]


class ReusedTLSPolicy(BrowserLikePolicyForHTTPS):
    """Browser-like TLS, with one client TLS configuration per host and port: Twisted's policy makes
    a new one (a new OpenSSL context, trust roots loaded again) for every request, even when the
    request goes over a connection that is already open."""

    def __init__(self, trustRoot: Any = None) -> None:
        super().__init__(trustRoot=trustRoot)
        self._creators: dict[tuple[bytes, int], Any] = {}

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        creator = self._creators.get((hostname, port))
        if creator is None:
            creator = self._creators[hostname, port] = super().creatorForNetloc(hostname, port)
        return creator


@implementer(IOpenSSLTrustRoot)
class ExtraTrustRoot:
    """The platform's trust roots plus the certificates of a PEM bundle."""

    def __init__(self, pem_path: str | None) -> None:
        self._certs: list[Any] = []
        if pem_path:
            with open(pem_path, "rb") as f:
                self._certs = x509.load_pem_x509_certificates(f.read())

    def _addCACertsToContext(self, context: Any) -> None:
        context.set_default_verify_paths()
        store = context.get_cert_store()
        for cert in self._certs:
            try:
                store.add_cert(crypto.X509.from_cryptography(cert))
            except crypto.X509StoreContextError:  # pragma: no cover - duplicate
                pass


def make_http_client(reactor: Any, ca_bundle: str | None = None, proxy: str | None = None) -> Any:
    """A treq HTTPClient for Graph: TLS against system roots + ``ca_bundle``, through ``proxy`` if set."""
    import treq.client

    policy = ReusedTLSPolicy(trustRoot=ExtraTrustRoot(ca_bundle))
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 4
    if proxy:
        from gateway.graph.proxy import tunneling_agent

        agent = tunneling_agent(reactor, proxy, policy, pool)
    else:
        agent = Agent(reactor, contextFactory=policy, pool=pool)
    client = treq.client.HTTPClient(agent)
    client.pool = pool  # type: ignore[attr-defined]  # so the owner can close idle connections
    return client

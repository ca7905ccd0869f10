"""The composition root: one function that wires dirgw's services together."""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from gateway import __version__
from gateway import numbers as N
from gateway.config import Config, NumbersConfig, SourceConfig
from gateway.index import ContactIndex, SourceProfile
from gateway.ldap.directory import Directory
from gateway.ldap.search import SearchSettings
from gateway.ldap.server import LDAPServerFactory
from gateway.sources.json_file import JsonFileSource

__all__ = ["Gateway", "make_gateway", "number_settings", "ListenerService"]

log = Logger()


def number_settings(config: NumbersConfig) -> N.NumberSettings:
    """The numbers core's settings from their configuration."""
    return N.NumberSettings(
        country=config.country,
        area_code=config.area_code,
        outside_line=config.outside_line,
        main_number=config.main_number,
        extension_length=config.extension_length,
        output=config.output,
        international_prefix=config.international_prefix,
        national_prefix=config.national_prefix,
    )


def source_profile(config: Config, source: SourceConfig) -> SourceProfile:
    proximity = config.proximity.enabled if source.proximity is None else source.proximity
    return SourceProfile(source.name, source.priority, number_settings(config.numbers_for(source)), proximity)


def search_settings(config: Config) -> SearchSettings:
    return SearchSettings(
        base_dn=config.ldap.base_dn,
        size_limit=config.ldap.size_limit,
        time_limit=float(config.ldap.time_limit),
        numbers=number_settings(config.numbers),
        proximity=config.proximity.enabled,
        max_extension_digits=config.proximity.max_extension_digits,
        proximity_marker=config.proximity.marker,
        answer_as_asked=config.numbers.answer_as_asked,
    )


class ListenerService(Service):
    """Listens on Twisted endpoint strings; ``ports`` holds the bound ports."""

    def __init__(self, reactor: Any, descriptions: tuple[str, ...], factory: Any) -> None:
        self._reactor = reactor
        self.descriptions = descriptions
        self.factory = factory
        self.ports: list[Any] = []

    @inlineCallbacks
    def listen(self):
        """Bind every endpoint; fails with the first error (nothing is left bound)."""
        try:
            for description in self.descriptions:
                port = yield serverFromString(self._reactor, description).listen(self.factory)
                self.ports.append(port)
                address = port.getHost()
                log.info("LDAP listening on {host}:{port}", host=getattr(address, "host", "?"),
                         port=getattr(address, "port", "?"))
        except Exception:
            yield self.stop_listening()
            raise

    def stop_listening(self):
        ports, self.ports = self.ports, []
        return DeferredList([port.stopListening() for port in ports])

    def stopService(self):
        super().stopService()
        return self.stop_listening()


class Gateway:
    """The wired service and the parts tests and the CLI reach for."""

    def __init__(self, config: Config, reactor: Any, clock: Any = None) -> None:
        self.config = config
        self.reactor = reactor
        self.clock = clock or reactor
        self.index = ContactIndex(source_profile(config, s) for s in config.sources)
        self.directory = Directory(
            self.index, search_settings(config), anonymous=config.ldap.anonymous, now=self.clock.seconds,
            vendor_version=__version__,
        )
        self.sources: dict[str, Service] = {}
        self.service = MultiService()
        for source in config.sources:
            if source.type == "json_file":
                child = JsonFileSource(source.name, source.path or "", self.index.replace_source, self.clock)
                child.load()
            else:
                child = self._m365_source(source)
            child.setServiceParent(self.service)
            self.sources[source.name] = child
        self.factory = LDAPServerFactory(self.directory, config.ldap)
        self.listener = ListenerService(reactor, config.ldap.listen, self.factory)
        self.listener.setServiceParent(self.service)

    def _m365_source(self, source: SourceConfig) -> Service:
        from gateway.auth import MsalTokenProvider, resolve_proxy
        from gateway.graph.client import GraphClient
        from gateway.graph.http import make_http_client
        from gateway.sync.m365 import M365Source

        options = source.options["m365"]
        http = make_http_client(self.reactor, options.ca_bundle, resolve_proxy(options.proxy, options.graph_url))
        tokens = MsalTokenProvider(options, self.reactor, now=self.clock.seconds)
        graph = GraphClient(http, tokens, self.clock, timeout=options.request_timeout)
        return M365Source(
            source.name,
            graph,
            self.index,
            self.clock,
            options.graph_url,
            options.interval,
            identity=options.identity(),
            page_size=options.page_size,
            saved=self.source_saved,
        )

    def source_saved(self, reason: str) -> None:
        """A source reached a point worth saving (snapshots hook in here)."""

    @inlineCallbacks
    def start(self):
        """Start the sources, then listen (the index is loaded before the first connection)."""
        self.service.startService()
        yield self.listener.listen()
        self.directory.ready = True

    def stop(self):
        return self.service.stopService()


def make_gateway(config: Config, reactor: Any, clock: Any = None) -> Gateway:
    """Wire dirgw from its configuration."""
    return Gateway(config, reactor, clock)

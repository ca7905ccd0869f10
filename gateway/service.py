"""The composition root: one function that wires dirgw's services together."""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Callable

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
from gateway.ops.metrics import Metrics  # imported before contacts load: importing is slow with a large heap
from gateway.sources.json_file import JsonFileSource

__all__ = ["Gateway", "make_gateway", "number_settings", "ListenerService"]

log = Logger()

#: Snapshot extensions (gateway.snapshot.codec): the index's compact base, and the changes since.
BASE_EXTENSION = "index-base"
CHANGES_EXTENSION = "index-changes"
#: The cyclic garbage collector's thresholds once the service is ready (see ``start``).
GC_THRESHOLDS = (50_000, 20, 10)
#: A new base is made when more contacts than this (and than a quarter of the base) changed since.
REBUILD_BASE_AT = 1000


def number_settings(config: NumbersConfig) -> N.NumberSettings:
    """The numbers core's settings from their configuration."""
    return N.settings_from_config(config)


def access_policy(config: Config, clock: Any) -> Any:
    """Bind users and the anonymous policy from the configuration."""
    from gateway.access import AccessPolicy, make_user

    users = [make_user(u.dn, u.password_hash, config.ldap.base_dn, u.sources, u.allow_from) for u in config.users]
    return AccessPolicy(users, config.ldap.base_dn, anonymous_sources=config.ldap.anonymous_sources)


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
        duplicates=config.ldap.duplicates,
        fuzzy_threshold=config.search.fuzzy_threshold,
        fuzzy_fallback=config.search.fuzzy_fallback,
        fuzzy_fallback_threshold=config.search.fuzzy_fallback_threshold,
        fuzzy_max_results=config.search.fuzzy_max_results,
    )


class ListenerService(Service):
    """Listens on Twisted endpoint strings; ``ports`` holds the bound ports."""

    def __init__(self, reactor: Any, bindings: list[tuple[str, Any]], tls: Any = None, what: str = "LDAP",
                 inherited: dict[str, int] | None = None) -> None:
        """``inherited``: listening sockets the process this one replaced handed over (``hand_over``),
        by ``key``; those of these bindings are taken from it, the others are left."""
        self._reactor = reactor
        self.bindings = bindings  # (endpoint description, factory)
        self.tls = tls
        self.what = what
        self.inherited = inherited if inherited is not None else {}
        self.ports: list[Any] = []

    def key(self, description: str) -> str:
        """A binding's name among the sockets handed over."""
        return f"{self.what} {description}"

    @inlineCallbacks
    def listen(self):
        """Bind every endpoint; fails with the first error (nothing is left bound)."""
        try:
            for description, factory in self.bindings:
                fd = self.inherited.pop(self.key(description), None)
                if fd is not None:
                    port = self._adopt(fd, description, factory)
                else:
                    if description.startswith("ssl:") and self.tls is not None:
                        endpoint = self.tls.endpoint(self._reactor, description)
                    else:
                        endpoint = serverFromString(self._reactor, description)
                    port = yield endpoint.listen(factory)
                self.ports.append(port)
                address = port.getHost()
                log.info("{what} listening on {host}:{port}", what=self.what, host=getattr(address, "host", "?"),
                         port=getattr(address, "port", "?"))
        except Exception:
            yield self.stop_listening()
            raise

    def _adopt(self, fd: int, description: str, factory: Any) -> Any:
        """A port on a socket handed over: it kept listening while the processes changed, and the
        connections that came meanwhile wait in its backlog instead of being refused."""
        if description.startswith("ssl:"):
            from twisted.protocols.tls import TLSMemoryBIOFactory

            factory = TLSMemoryBIOFactory(self.tls, False, factory)
        with socket.socket(fileno=fd) as sock:  # closed once the reactor has its own descriptor
            sock.setblocking(False)
            return self._reactor.adoptStreamPort(sock.fileno(), sock.family, factory)

    def hand_over(self) -> dict[str, int]:
        """Inheritable duplicates of the listening sockets, by ``key``, for a process that replaces
        this one: they keep listening when this process closes its own."""
        fds = {}
        for (description, _), port in zip(self.bindings, self.ports):
            if description.startswith("ssl:") and self.tls is None:
                continue  # its TLS comes from the description: it is bound again
            fd = os.dup(port.fileno())
            os.set_inheritable(fd, True)
            fds[self.key(description)] = fd
            # Closing the port now only closes its descriptor: the socket stays listening for the
            # duplicate (what Twisted does for a port made on a socket it did not create).
            port._shouldShutdown = False
        return fds

    def stop_listening(self):
        ports, self.ports = self.ports, []
        return DeferredList([port.stopListening() for port in ports])

    def stopService(self):
        super().stopService()
        return self.stop_listening()


class Gateway:
    """The wired service and the parts tests and the CLI reach for."""

    def __init__(self, config: Config, reactor: Any, clock: Any = None,
                 listening: dict[str, int] | None = None) -> None:
        """``listening``: sockets handed over by the process this one replaced
        (``hand_over_listeners``), adopted by the bindings they belong to; the rest are closed."""
        self.config = config
        self._handed_over = dict(listening or {})
        self.reactor = reactor
        self.clock = clock or reactor
        self.index = ContactIndex((source_profile(config, s) for s in config.sources),
                                  fuzzy_threshold=config.search.fuzzy_threshold)
        self.directory = Directory(
            self.index, search_settings(config), anonymous=config.ldap.anonymous, now=self.clock.seconds,
            vendor_version=__version__,
        )
        self.directory.cache_size = config.ldap.answer_cache
        self.sources: dict[str, Service] = {}
        self.service = MultiService()
        self.snapshots = None
        #: what restarts the process from its snapshot (set by ``dirgw serve``; None: never): after
        #: an import of ``[snapshot] restart_after_import`` contacts or more, the index holds them
        #: as full entries (some 7 KB each) and Python keeps that memory once they are dropped; a
        #: process started from the snapshot serves them from the compact base (under 1 KB each)
        self.restart: Callable[[], object] | None = None
        self._restart_when_saved = 0  # contacts a restart gives back, once the snapshot is saved
        saved_states: dict[str, Any] = {}
        if config.snapshot.directory:
            saved_states = self._load_snapshot()
        for source in config.sources:
            self._add_source(source, saved_states.get(source.name))
        self.metrics = Metrics(index_counts=self.index.count_by_source)
        self.tls = None
        if config.ldap.tls_certificate and config.ldap.tls_key:
            from gateway.ops.tls import ReloadableTLS

            self.tls = ReloadableTLS(config.ldap.tls_certificate, config.ldap.tls_key)
            self.directory.extensions += ("1.3.6.1.4.1.1466.20037",)  # StartTLS
        from gateway.access import FailedBindThrottle, Listener, parse_networks

        self.policy = access_policy(config, self.clock)
        throttle = FailedBindThrottle(free_failures=config.ldap.failed_bind_free,
                                      max_delay=config.ldap.failed_bind_max_delay)
        default = Listener(name="", anonymous=config.ldap.anonymous,
                           allow_from=parse_networks(list(config.ldap.allow_from)) if config.ldap.allow_from else None)
        self.factory = LDAPServerFactory(self.directory, config.ldap, metrics=self.metrics, tls=self.tls,
                                         policy=self.policy, listener=default, throttle=throttle, clock=self.clock,
                                         reactor=reactor)
        bindings = [(d, self.factory) for d in config.ldap.listen]
        for item in config.ldap.listeners:
            listener = Listener(name=item.endpoint, anonymous=item.anonymous,
                                allow_from=parse_networks(list(item.allow_from)) if item.allow_from else None)
            bindings.append((item.endpoint, self.factory.for_listener(listener)))
        self.listener = ListenerService(reactor, bindings, tls=self.tls, inherited=self._handed_over)
        self.listener.setServiceParent(self.service)
        self.admin: ListenerService | None = None
        if config.admin.listen:
            from gateway.ops.web import admin_resource, admin_site

            site = admin_site(admin_resource(self.status, self.metrics.render, self.ready))
            self.admin = ListenerService(reactor, [(config.admin.listen, site)], what="admin HTTP",
                                         inherited=self._handed_over)
            self.admin.setServiceParent(self.service)

    def _load_snapshot(self) -> dict[str, Any]:
        """Serve what the newest snapshot holds; returns the saved sync states by source.

        A snapshot with the index's compact base is served from it without reading its
        contacts one by one (a restart answers at once); without one (or with one that no
        longer fits), its contacts are read into the index.
        """
        from gateway.snapshot.keeper import SnapshotKeeper
        from gateway.snapshot.store import FileSnapshotStore

        config = self.config
        self.snapshots = SnapshotKeeper(
            FileSnapshotStore(config.snapshot.directory or ""), self._snapshot_sources, self.reactor, self.clock,
            interval=config.snapshot.interval, on_saved=self.snapshot_saved,
            extensions=self._snapshot_extensions,
        )
        self.snapshots.setServiceParent(self.service)
        snapshot = self.snapshots.load(contacts=False)
        if snapshot is None:
            return {}
        import gc

        collecting = gc.isenabled()
        gc.disable()  # a million long-lived objects and no garbage: collections would only cost time
        try:
            states = self._saved_states(snapshot, log_dropped=True)
            if not self._serve_base(snapshot, states):
                snapshot = self.snapshots.load()
                if snapshot is None:
                    return {}
                states = self._saved_states(snapshot, log_dropped=False)
                for name in states:
                    self.index.replace_source(name, snapshot.sources[name].contacts)
            # The loaded index stays: out of the collector's scans from now on (as after start()),
            # rather than gone through once more by the first collections after the load.
            gc.freeze()
        finally:
            if collecting:
                gc.enable()
        return states

    def _saved_states(self, snapshot: Any, log_dropped: bool) -> dict[str, Any]:
        """The sync states of the snapshot's sources that are to be served again."""
        from gateway.sync.m365 import SyncState

        configured = {s.name: s for s in self.config.sources}
        states: dict[str, Any] = {}
        for name, saved in snapshot.sources.items():
            source = configured.get(name)
            if source is None:
                if log_dropped:
                    log.info("snapshot: source {source} is no longer configured; its contacts are dropped",
                             source=name)
                continue
            if source.type != "m365_mail_contacts":
                continue  # a file source reads its file
            state = SyncState.from_dict(saved.sync)
            if state.identity is not None and tuple(state.identity) != source.options["m365"].identity():
                if log_dropped:
                    log.info("snapshot: source {source} now reads another tenant or app; it imports afresh",
                             source=name)
                continue
            states[name] = state
        return states

    def _serve_base(self, snapshot: Any, states: dict[str, Any]) -> bool:
        """Serve the snapshot's compact base, with the changes saved since it was made; False
        when it has none that fits."""
        from gateway.compact import CompactIndex
        from gateway.index import decode_record
        from gateway.graph.parse import Remove, Upsert

        data = snapshot.extensions.get(BASE_EXTENSION)
        if not data:
            return False
        try:
            base = CompactIndex.from_bytes(data)
            changes = json.loads(snapshot.extensions.get(CHANGES_EXTENSION) or b'{"removed":[],"contacts":[]}')
            removed = [Remove(source=str(s), id=str(i)) for s, i in changes["removed"]]
            upserts = [Upsert(decode_record(r)[0]) for r in changes["contacts"]]
        except (ValueError, KeyError, TypeError) as e:
            log.warn("snapshot: its index is not usable ({error}); reading its contacts", error=str(e))
            return False
        missing = set(states) - set(base.sources)
        if missing:
            log.info("snapshot: its index lacks {sources}; reading its contacts", sources=", ".join(sorted(missing)))
            return False
        self.index.adopt_base(base, keep=list(states))
        kept = [r for r in removed if r.source in states] + [u for u in upserts if u.contact.source in states]
        self.index.apply(kept)
        log.info("snapshot: served from its compact base ({count} contacts, {changed} changed since it was made)",
                 count=len(self.index), changed=len({(r.source, r.id) for r in removed if r.source in states}))
        return True

    def _snapshot_sources(self) -> dict[str, Any]:
        from gateway.snapshot.codec import SourceSnapshot

        out = {}
        for name, service in self.sources.items():
            state = getattr(service, "state", None)
            if state is None or not hasattr(state, "to_dict"):
                continue
            out[name] = SourceSnapshot(self.index.contacts_view(name), state.to_dict())
        return out

    def _snapshot_extensions(self) -> Any:
        """On the reactor thread, with the sources just taken: what makes the snapshot's index
        extensions in the writing thread.

        The snapshot carries a compact base of the index and the contacts changed since it was
        made, so that a restart serves it at once (``_serve_base``).  A new base is made (in
        the writing thread) when there is none yet, or when the changes have grown to a
        quarter of it; not while a source is importing.
        """
        index = self.index
        names = [n for n, s in self.sources.items() if hasattr(getattr(s, "state", None), "to_dict")]
        if not names or not len(index):
            return lambda: {}
        importing = any(getattr(self.sources[n].state, "next_link", None) for n in names)
        base = index.snapshot_base
        if base is not None:
            base, removed, contacts = index.base_and_changes()
            if importing or len(removed) <= max(REBUILD_BASE_AT, len(base) // 4):
                def carry() -> dict[str, Any]:
                    changes = b'{"removed":%s,"contacts":[%s]}' % (json.dumps(removed).encode(), b",".join(contacts))
                    return {BASE_EXTENSION: base.to_bytes(), CHANGES_EXTENSION: changes}  # pieces, not joined
                return carry
        elif importing:
            return lambda: {}  # a base comes when the import is done
        make, since = index.base_maker(names)

        def build() -> dict[str, Any]:
            made = None
            try:
                made = make()
                return {BASE_EXTENSION: made.to_bytes()}
            finally:
                self.reactor.callFromThread(self._keep_base, made, since)
        return build

    def _keep_base(self, base: Any, since: Any) -> None:
        self.index.keep_base(base, since)
        if base is None:
            return
        log.info("index: a compact base of {count} contacts made for snapshots", count=len(base))
        held = self.index.own_count  # full entries, which a restart would serve from this base
        threshold = self.config.snapshot.restart_after_import
        if self.restart is not None and threshold and held >= threshold:
            self._restart_when_saved = held  # the snapshot being written carries this base

    def snapshot_saved(self, seconds: float) -> None:
        self.metrics.snapshot_saved(seconds)
        if self._restart_when_saved and self.restart is not None:
            log.info("dirgw: restarting from the snapshot to give back the memory of importing {count} "
                     "contacts (restart_after_import = {threshold})", count=self._restart_when_saved,
                     threshold=self.config.snapshot.restart_after_import)
            self._restart_when_saved = 0
            self.restart()

    def _add_source(self, source: SourceConfig, state: Any = None) -> Service:
        if source.type == "json_file":
            child: Service = JsonFileSource(source.name, source.path or "", self.index.replace_source, self.clock)
            child.load()  # type: ignore[attr-defined]
        else:
            child = self._m365_source(source, state)
        child.setServiceParent(self.service)
        self.sources[source.name] = child
        return child

    def reload(self, config: Config) -> list[str]:
        """Apply a new, already validated configuration; returns what changed, for the log."""
        changes: list[str] = []
        old = {s.name: s for s in self.config.sources}
        new = {s.name: s for s in config.sources}
        for name in old:
            if name not in new or old[name] != new[name]:
                service = self.sources.pop(name)
                state = getattr(service, "state", None)
                service.disownServiceParent()
                if name not in new:
                    self.index.drop_source(name)
                    self.metrics.forget_source(name)
                    changes.append(f"source {name} removed")
                else:
                    self.index.set_profile(source_profile(config, new[name]))
                    self._add_source(new[name], state)
                    changes.append(f"source {name} changed")
        for name, source in new.items():
            if name not in old:
                self.index.set_profile(source_profile(config, source))
                self._add_source(source)
                changes.append(f"source {name} added")
            else:
                self.index.set_profile(source_profile(config, source))
        self.directory.settings = search_settings(config)
        self.directory.anonymous = config.ldap.anonymous
        self.directory.cache_size = config.ldap.answer_cache
        self.policy = access_policy(config, self.clock)
        for _, factory in self.listener.bindings:
            factory.limits = config.ldap
            factory.policy = self.policy
        if self.tls is not None:
            try:
                if self.tls.reload():
                    changes.append("TLS certificate reloaded")
            except Exception as e:  # keep the running certificate
                log.error("TLS certificate not reloaded: {error}", error=str(e))
        if config.ldap.listen != self.config.ldap.listen or config.admin != self.config.admin:
            changes.append("listeners unchanged until a restart")
        self.config = config
        return changes

    def _m365_source(self, source: SourceConfig, state: Any = None) -> Service:
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
            state=state,
            save_every_pages=self.config.snapshot.pages,
        )

    def source_saved(self, reason: str) -> None:
        """A source reached a point worth saving: a delta round, import progress, the import's end."""
        if self.snapshots is not None:
            self.snapshots.request(reason)

    def ready(self) -> bool:
        """The index is loaded and LDAP is listening."""
        return self.directory.ready and bool(self.listener.ports)

    def status(self) -> dict:
        """The document behind GET /status."""
        from gateway.ops.status import build_status, source_status

        return build_status(
            self.clock.seconds(),
            [source_status(s) for s in self.sources.values()],
            self.index.count_by_source(),
            self.snapshot_age(),
            self.metrics.ldap_summary(),
        )

    def snapshot_age(self) -> float | None:
        import time

        if self.snapshots is None or self.snapshots.last_saved is None:
            return None
        return max(0.0, time.time() - self.snapshots.last_saved)

    def hand_over_listeners(self) -> dict[str, int]:
        """Inheritable duplicates of the listening sockets, for the process that replaces this one
        (``restart``), to pass as ``listening``."""
        fds = self.listener.hand_over()
        if self.admin is not None:
            fds.update(self.admin.hand_over())
        return fds

    @inlineCallbacks
    def start(self):
        """Start the sources, then listen (the index is loaded before the first connection)."""
        self.service.startService()
        try:
            yield self.listener.listen()
            if self.admin is not None:
                try:
                    yield self.admin.listen()
                except Exception:
                    yield self.listener.stop_listening()
                    raise
        finally:
            for fd in self._handed_over.values():  # bindings no longer configured
                os.close(fd)
            self._handed_over.clear()
        self.directory.ready = True
        import gc

        gc.freeze()  # the loaded index is long-lived: keep it out of the collector's full scans
        # Searches make few lasting objects, but entries read from a compact base and the caches
        # do, by the thousand: a young generation of 50,000 rather than 700 objects (collected
        # as fast, since most die young) cut the collector's time from 16% to 6% of such searches.
        gc.set_threshold(*GC_THRESHOLDS)
        log.info("dirgw: ready ({count} contacts)", count=len(self.index))

    def stop(self):
        return self.service.stopService()


def make_gateway(config: Config, reactor: Any, clock: Any = None, listening: dict[str, int] | None = None) -> Gateway:
    """Wire dirgw from its configuration (``listening``: see ``Gateway``)."""
    return Gateway(config, reactor, clock, listening)

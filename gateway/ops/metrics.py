"""Prometheus metrics of one dirgw process.

``Metrics`` owns a private ``CollectorRegistry`` (never the global one, so tests and several
gateways in one process do not share counters) and has one small method per event worth
counting.  ``render()`` gives the text exposition format for ``GET /metrics``.

Metric names::

    dirgw_ldap_search_seconds{kind}               histogram  kind = caller_id | name | other
    dirgw_ldap_requests_total{op}                 counter    op = search | bind | compare | ...
    dirgw_ldap_connections                        gauge      open connections now
    dirgw_ldap_connections_accepted_total         counter    connections accepted since start
    dirgw_sync_round_seconds{source,kind}         histogram  kind = import | delta
    dirgw_graph_responses_total{source,status}    counter    HTTP status of Graph responses
    dirgw_graph_throttle_wait_seconds_total{source} counter  seconds spent waiting on throttling
    dirgw_snapshot_save_seconds                   histogram
    dirgw_index_contacts{source}                  gauge      contacts in the index per source

(The open-connections gauge and the accepted-connections counter cannot both be called
``dirgw_ldap_connections[_total]``: a counter ``X_total`` and a gauge ``X`` are the same metric
family in the exposition format, so the counter is ``..._accepted_total``.)
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

__all__ = [
    "CONTENT_TYPE",
    "SEARCH_BUCKETS",
    "SYNC_BUCKETS",
    "SNAPSHOT_BUCKETS",
    "SEARCH_KINDS",
    "Metrics",
    "request_op",
]

#: The content type of ``render()``'s output (Prometheus text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: LDAP search latency: 0.1 ms .. 1 s (a caller-ID lookup should stay well under 1 ms).
SEARCH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: Sync rounds: a small delta round takes a fraction of a second, a big import many minutes.
SYNC_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
#: Snapshot saves: milliseconds for a few contacts, seconds for a few hundred thousand.
SNAPSHOT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

SEARCH_KINDS = ("caller_id", "name", "other")
SYNC_KINDS = ("import", "delta")


class Metrics:
    """The process's metrics in a registry of its own."""

    def __init__(self, index_counts: Callable[[], Mapping[str, int]] | None = None) -> None:
        """``index_counts``, when given, is read at every ``render()`` to refresh
        ``dirgw_index_contacts`` (e.g. ``gateway.index.count_by_source``)."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._index_counts = index_counts
        # the two metrics every LDAP request touches are plain numbers, read out at scrape time
        # (a prometheus_client observe() takes a lock and costs several µs per search)
        self._search_counts = {kind: [0] * (len(SEARCH_BUCKETS) + 1) for kind in SEARCH_KINDS}
        self._search_sums = dict.fromkeys(SEARCH_KINDS, 0.0)
        r.register(_LdapCollector(self))
        self._connections = Gauge("dirgw_ldap_connections", "LDAP connections open now", registry=r)
        self._accepted = Counter("dirgw_ldap_connections_accepted", "LDAP connections accepted", registry=r)
        self._sync = Histogram(
            "dirgw_sync_round_seconds", "Duration of sync rounds by source and kind", ["source", "kind"],
            buckets=SYNC_BUCKETS, registry=r,
        )
        self._graph = Counter(
            "dirgw_graph_responses", "Microsoft Graph responses by source and HTTP status", ["source", "status"],
            registry=r,
        )
        self._throttle = Counter(
            "dirgw_graph_throttle_wait_seconds", "Seconds spent waiting because Graph throttled", ["source"],
            registry=r,
        )
        self._snapshot = Histogram(
            "dirgw_snapshot_save_seconds", "Duration of snapshot saves", buckets=SNAPSHOT_BUCKETS, registry=r
        )
        self._index = Gauge("dirgw_index_contacts", "Contacts in the index by source", ["source"], registry=r)
        self._index_sources: set[str] = set()
        self._sync_labels: set[tuple[str, str]] = set()
        self._graph_labels: set[tuple[str, str]] = set()
        # plain numbers for the status document (cheaper than reading the registry back)
        self._request_counts: dict[str, int] = {}
        self._open = 0
        self._accepted_count = 0

    # -- LDAP --------------------------------------------------------------

    def search_done(self, kind: str, seconds: float) -> None:
        """One search answered in ``seconds``; also counts an ``op="search"`` request.

        ``kind`` is ``SearchResult.kind``; anything else is counted as ``other``.
        """
        counts = self._search_counts.get(kind)
        if counts is None:
            kind = "other"
            counts = self._search_counts[kind]
        if seconds < 0.0:
            seconds = 0.0
        counts[bisect_left(SEARCH_BUCKETS, seconds)] += 1  # buckets are "less than or equal"
        self._search_sums[kind] += seconds
        self._request_counts["search"] = self._request_counts.get("search", 0) + 1

    def request(self, op: str) -> None:
        """One LDAP request of operation ``op`` (``bind``, ``compare``, ``extended``...)."""
        self._request_counts[op] = self._request_counts.get(op, 0) + 1

    def connection_opened(self) -> None:
        self._open += 1
        self._accepted_count += 1
        self._connections.inc()
        self._accepted.inc()

    def connection_closed(self) -> None:
        if self._open > 0:
            self._open -= 1
            self._connections.dec()

    def ldap_summary(self) -> dict[str, Any]:
        """The ``ldap`` part of the status document."""
        return {
            "connections": self._open,
            "connections_total": self._accepted_count,
            "requests": dict(sorted(self._request_counts.items())),
            "requests_total": sum(self._request_counts.values()),
        }

    # -- sync ----------------------------------------------------------------

    def sync_round(self, source: str, kind: str, seconds: float) -> None:
        """One sync round of ``source`` took ``seconds``; ``kind`` is ``import`` or ``delta``."""
        if kind not in SYNC_KINDS:
            raise ValueError(f"sync round kind must be import or delta, not {kind!r}")
        self._sync.labels(source=source, kind=kind).observe(max(0.0, seconds))
        self._sync_labels.add((source, kind))

    def graph_response(self, source: str, status: int | str) -> None:
        """One Graph response with HTTP ``status`` (use ``"error"`` for no response at all)."""
        self._graph.labels(source=source, status=str(status)).inc()
        self._graph_labels.add((source, str(status)))

    def throttle_wait(self, source: str, seconds: float) -> None:
        """``source`` waits ``seconds`` because Graph throttled it."""
        self._throttle.labels(source=source).inc(max(0.0, seconds))

    # -- snapshot and index --------------------------------------------------

    def snapshot_saved(self, seconds: float) -> None:
        self._snapshot.observe(max(0.0, seconds))

    def set_index_contacts(self, counts: Mapping[str, int]) -> None:
        """The index's contacts per source; sources not in ``counts`` are dropped from the gauge."""
        for source in self._index_sources - set(counts):
            self._index.remove(source)
        for source, count in counts.items():
            self._index.labels(source=source).set(count)
        self._index_sources = set(counts)

    def forget_source(self, source: str) -> None:
        """Drop a removed source's per-source series (after a configuration reload)."""
        for metric in (self._throttle, self._index):
            try:
                metric.remove(source)
            except KeyError:
                pass
        self._index_sources.discard(source)
        for metric, seen in ((self._sync, self._sync_labels), (self._graph, self._graph_labels)):
            for key in [k for k in seen if k[0] == source]:
                metric.remove(*key)
                seen.discard(key)

    # -- output --------------------------------------------------------------

    def render(self) -> bytes:
        """All metrics in the Prometheus text format (``CONTENT_TYPE``)."""
        if self._index_counts is not None:
            self.set_index_contacts(self._index_counts())
        return generate_latest(self.registry)


class _LdapCollector:
    """``dirgw_ldap_search_seconds`` and ``dirgw_ldap_requests_total`` from Metrics' plain counts."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self):
        return [HistogramMetricFamily("dirgw_ldap_search_seconds", "LDAP search latency by kind of lookup",
                                      labels=["kind"]),
                CounterMetricFamily("dirgw_ldap_requests", "LDAP requests by operation", labels=["op"])]

    def collect(self):
        m = self._metrics
        search = HistogramMetricFamily("dirgw_ldap_search_seconds", "LDAP search latency by kind of lookup",
                                       labels=["kind"])
        for kind in SEARCH_KINDS:  # every kind from the start, so dashboards see zeroes rather than gaps
            running, buckets = 0, []
            for bound, count in zip(SEARCH_BUCKETS + (float("inf"),), m._search_counts[kind]):
                running += count
                buckets.append((floatToGoString(bound), running))
            search.add_metric([kind], buckets, m._search_sums[kind])
        yield search
        requests = CounterMetricFamily("dirgw_ldap_requests", "LDAP requests by operation", labels=["op"])
        for op, count in sorted(m._request_counts.items()):
            requests.add_metric([op], count)
        yield requests


_OPS = {
    "LDAPBindRequest": "bind",
    "LDAPUnbindRequest": "unbind",
    "LDAPSearchRequest": "search",
    "LDAPModifyRequest": "modify",
    "LDAPAddRequest": "add",
    "LDAPDelRequest": "delete",
    "LDAPModifyDNRequest": "modify_dn",
    "LDAPCompareRequest": "compare",
    "LDAPAbandonRequest": "abandon",
    "LDAPExtendedRequest": "extended",
    "LDAPPasswordModifyRequest": "extended",
    "LDAPStartTLSRequest": "extended",
}


def request_op(request: object) -> str:
    """The ``op`` label for an ldaptor request object (``bind``, ``compare``...; ``other`` if unknown)."""
    return _OPS.get(type(request).__name__, "other")

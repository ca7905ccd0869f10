"""Metrics: recorded events appear in the Prometheus text output, parsed with prometheus_client's parser."""

from __future__ import annotations

import prometheus_client
import pytest
from ldaptor.protocols import pureldap
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.internet.error import ConnectionDone

from gateway.ops.metrics import CONTENT_TYPE, SEARCH_BUCKETS, Metrics, request_op


def families(metrics: Metrics) -> dict:
    return {f.name: f for f in text_string_to_metric_families(metrics.render().decode("utf-8"))}


def sample(metrics: Metrics, name: str, **labels) -> float | None:
    for family in text_string_to_metric_families(metrics.render().decode("utf-8")):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


def test_every_metric_is_declared_with_its_type():
    fams = families(Metrics())
    assert fams["dirgw_ldap_search_seconds"].type == "histogram"
    assert fams["dirgw_ldap_requests"].type == "counter"
    assert fams["dirgw_ldap_connections"].type == "gauge"
    assert fams["dirgw_ldap_connections_accepted"].type == "counter"
    assert fams["dirgw_sync_round_seconds"].type == "histogram"
    assert fams["dirgw_graph_responses"].type == "counter"
    assert fams["dirgw_graph_throttle_wait_seconds"].type == "counter"
    assert fams["dirgw_snapshot_save_seconds"].type == "histogram"
    assert fams["dirgw_index_contacts"].type == "gauge"
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_search_latency_by_kind_with_sub_millisecond_buckets():
    m = Metrics()
    m.search_done("caller_id", 0.00008)
    m.search_done("caller_id", 0.0004)
    m.search_done("name", 0.003)
    m.search_done("weird", 2.0)  # unknown kinds count as other; beyond the last bucket
    assert sample(m, "dirgw_ldap_search_seconds_count", kind="caller_id") == 2
    assert sample(m, "dirgw_ldap_search_seconds_bucket", kind="caller_id", le="0.0001") == 1
    assert sample(m, "dirgw_ldap_search_seconds_bucket", kind="caller_id", le="0.0005") == 2
    assert sample(m, "dirgw_ldap_search_seconds_bucket", kind="name", le="0.001") == 0
    assert sample(m, "dirgw_ldap_search_seconds_bucket", kind="name", le="0.005") == 1
    assert sample(m, "dirgw_ldap_search_seconds_bucket", kind="other", le="1.0") == 0
    assert sample(m, "dirgw_ldap_search_seconds_bucket", kind="other", le="+Inf") == 1
    assert sample(m, "dirgw_ldap_requests_total", op="search") == 4
    assert SEARCH_BUCKETS[0] == 0.0001 and SEARCH_BUCKETS[-1] == 1.0


def test_search_latency_on_a_bucket_bound_and_its_sum():
    """A search of exactly a bound's duration is in that bucket (le = less than or equal)."""
    m = Metrics()
    m.search_done("name", 0.0005)
    m.search_done("name", 0.00050001)
    m.search_done("name", -1.0)  # a clock step backwards counts as 0
    assert sample(m, "dirgw_ldap_search_seconds_bucket", kind="name", le="0.0001") == 1
    assert sample(m, "dirgw_ldap_search_seconds_bucket", kind="name", le="0.0005") == 2
    assert sample(m, "dirgw_ldap_search_seconds_bucket", kind="name", le="0.001") == 3
    assert abs(sample(m, "dirgw_ldap_search_seconds_sum", kind="name") - 0.00100001) < 1e-12


def test_kinds_are_present_before_the_first_search():
    m = Metrics()
    for kind in ("caller_id", "name", "other"):
        assert sample(m, "dirgw_ldap_search_seconds_count", kind=kind) == 0


def test_requests_connections_and_summary():
    m = Metrics()
    m.request("bind")
    m.request("bind")
    m.request(request_op(pureldap.LDAPCompareRequest(entry="uid=x", ava=pureldap.LDAPAttributeValueAssertion(
        pureldap.LDAPAttributeDescription("cn"), pureldap.LDAPAssertionValue("x")))))
    m.search_done("name", 0.001)
    m.connection_opened()
    m.connection_opened()
    m.connection_closed()
    m.connection_closed()
    m.connection_closed()  # never below zero
    m.connection_opened()
    assert sample(m, "dirgw_ldap_requests_total", op="bind") == 2
    assert sample(m, "dirgw_ldap_requests_total", op="compare") == 1
    assert sample(m, "dirgw_ldap_connections") == 1
    assert sample(m, "dirgw_ldap_connections_accepted_total") == 3
    assert m.ldap_summary() == {
        "connections": 1,
        "connections_total": 3,
        "requests": {"bind": 2, "compare": 1, "search": 1},
        "requests_total": 4,
    }


def test_request_op_names():
    assert request_op(pureldap.LDAPBindRequest()) == "bind"
    assert request_op(pureldap.LDAPUnbindRequest()) == "unbind"
    assert request_op(object()) == "other"


def test_sync_graph_throttle_snapshot():
    m = Metrics()
    m.sync_round("m365", "import", 42.0)
    m.sync_round("m365", "delta", 0.3)
    m.graph_response("m365", 200)
    m.graph_response("m365", 200)
    m.graph_response("m365", 429)
    m.graph_response("m365", "error")
    m.throttle_wait("m365", 2.5)
    m.throttle_wait("m365", 1.5)
    m.snapshot_saved(0.02)
    assert sample(m, "dirgw_sync_round_seconds_count", source="m365", kind="import") == 1
    assert sample(m, "dirgw_sync_round_seconds_sum", source="m365", kind="delta") == pytest.approx(0.3)
    assert sample(m, "dirgw_graph_responses_total", source="m365", status="200") == 2
    assert sample(m, "dirgw_graph_responses_total", source="m365", status="429") == 1
    assert sample(m, "dirgw_graph_responses_total", source="m365", status="error") == 1
    assert sample(m, "dirgw_graph_throttle_wait_seconds_total", source="m365") == pytest.approx(4.0)
    assert sample(m, "dirgw_snapshot_save_seconds_count") == 1
    assert sample(m, "dirgw_snapshot_save_seconds_bucket", le="0.025") == 1
    with pytest.raises(ValueError):
        m.sync_round("m365", "full", 1.0)


def test_index_contacts_from_a_callable_and_removed_sources_vanish():
    counts = {"m365": 1200, "file": 7}
    m = Metrics(index_counts=lambda: counts)
    assert sample(m, "dirgw_index_contacts", source="m365") == 1200
    assert sample(m, "dirgw_index_contacts", source="file") == 7
    counts = {"m365": 1300}
    m._index_counts = lambda: counts  # noqa: SLF001 - the callable is fixed at construction normally
    assert sample(m, "dirgw_index_contacts", source="m365") == 1300
    assert sample(m, "dirgw_index_contacts", source="file") is None


def test_forget_source_drops_its_series():
    m = Metrics()
    m.sync_round("old", "delta", 1.0)
    m.graph_response("old", 200)
    m.throttle_wait("old", 1.0)
    m.set_index_contacts({"old": 3, "new": 4})
    m.graph_response("new", 200)
    m.forget_source("old")
    m.forget_source("never-seen")
    text = m.render().decode()
    assert 'source="old"' not in text
    assert sample(m, "dirgw_graph_responses_total", source="new", status="200") == 1


def test_registry_is_private():
    a, b = Metrics(), Metrics()
    a.request("bind")
    assert sample(b, "dirgw_ldap_requests_total", op="bind") is None
    assert prometheus_client.REGISTRY.get_sample_value("dirgw_ldap_requests_total", {"op": "bind"}) is None

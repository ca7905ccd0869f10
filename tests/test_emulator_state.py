"""The emulator's pure parts and its in-process Python API (no sockets, no real time).

The in-process tests drive `GraphEmulator.resource` through treq's `StubTreq` (a real Agent and
Site joined in memory) with a `Clock` as the emulator's reactor, so delays are advanced by hand.
"""

from __future__ import annotations

import datetime
import email.utils
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.task import Clock

from gateway.testing.contacts import ContactStore, normalize_contact
from gateway.testing.emulator import GraphEmulator
from gateway.testing.faults import Fault, FaultPlan
from gateway.testing.tls import ensure_server_files


def test_normalize_fills_all_three_phone_slots() -> None:
    """A short contact comes back in Graph's full shape, three phone slots, nulls for the rest."""
    contact = normalize_contact({"id": "x", "displayName": "X",
                                 "phones": [{"type": "mobile", "number": "1"}]})
    assert contact["phones"] == [{"number": None, "type": "businessFax"},
                                 {"number": "1", "type": "mobile"},
                                 {"number": None, "type": "business"}]
    assert contact["mail"] is None and contact["proxyAddresses"] == []


def test_normalize_rejects_what_orgcontact_cannot_hold() -> None:
    """Phone types outside business/mobile/businessFax and duplicate types are errors (unless allowed)."""
    with pytest.raises(ValueError, match="home"):
        normalize_contact({"phones": [{"type": "home", "number": "1"}]})
    with pytest.raises(ValueError, match="only one"):
        normalize_contact({"phones": [{"type": "mobile", "number": "1"}, {"type": "mobile", "number": "2"}]})
    lenient = normalize_contact({"phones": [{"type": "home", "number": "1"}]}, other_phone_types=True)
    assert lenient["phones"][3] == {"number": "1", "type": "home"}
    with pytest.raises(ValueError):
        normalize_contact({"displayName": 5})


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("upsert"), st.integers(0, 14), st.text(max_size=3)),
        st.tuples(st.just("remove"), st.integers(0, 14), st.booleans()),
        st.tuples(st.just("page"), st.integers(1, 4), st.none()),
    ),
    max_size=60,
)


@given(ops=_ops, initial=st.integers(0, 10))
@settings(max_examples=200, deadline=None)
def test_delta_rounds_replay_to_the_current_state(ops: list[tuple[str, int, Any]], initial: int) -> None:
    """Whatever changes happen between and during pages, a replica applying every round ends equal
    to the store, and each round's pages never repeat a contact."""
    store = ContactStore()
    store.upsert_many([{"id": f"c{i}", "displayName": "init"} for i in range(initial)])
    replica: dict[str, str] = {}
    since, cursor, upto, in_round, round_ids = 0, 0, store.sequence, False, []

    def page(limit: int) -> None:
        nonlocal since, cursor, upto, in_round, round_ids
        if not in_round:
            cursor, upto, in_round, round_ids = since, store.sequence, True, []
        changes, following = store.page(cursor, upto, limit, include_removed=since > 0)
        for change in changes:
            round_ids.append(change.id)
            if change.contact is None:
                replica.pop(change.id, None)
            else:
                replica[change.id] = change.contact["displayName"]
        assert len(round_ids) == len(set(round_ids))
        if following is None:
            since, in_round = upto, False
        else:
            cursor = following

    for op, arg, extra in ops:
        if op == "upsert":
            store.upsert({"id": f"c{arg}", "displayName": extra})
        elif op == "remove" and store.get(f"c{arg}") is not None:
            store.remove(f"c{arg}", permanent=extra)
        elif op == "page":
            page(arg)
    while in_round:
        page(3)
    page(3)
    while in_round:
        page(3)
    assert replica == {c["id"]: c["displayName"] for c in store.all()}


def test_fault_plan_serves_faults_in_order_per_kind() -> None:
    """Faults queue per kind and are consumed one per request."""
    plan = FaultPlan()
    plan.add("delta", Fault.throttle(2), count=2)
    plan.add("delta", Fault.drop())
    assert plan.take("token") is None
    assert [plan.take("delta") for _ in range(4)] == [Fault.throttle(2), Fault.throttle(2), Fault.drop(), None]
    with pytest.raises(ValueError):
        plan.add("everything", Fault.drop())
    with pytest.raises(ValueError):
        Fault.from_json({"action": "explode"})


def test_retry_after_header_forms() -> None:
    """Retry-After as integer seconds, decimal seconds, literal text or an HTTP date."""
    assert Fault.throttle(2).retry_after_header(0) == "2"
    assert Fault.throttle(2.5).retry_after_header(0) == "2.5"
    assert Fault.throttle("soon").retry_after_header(0) == "soon"
    assert Fault.throttle(None).retry_after_header(0) is None
    date = Fault.unavailable(60, http_date=True).retry_after_header(1_700_000_000)
    assert email.utils.parsedate_to_datetime(date) == datetime.datetime.fromtimestamp(
        1_700_000_060, datetime.timezone.utc)


def test_server_certificate_covers_loopback_and_ca_is_reused(tmp_path: Path) -> None:
    """The server certificate names 127.0.0.1, ::1 and localhost; a second run keeps the CA."""
    files = ensure_server_files(tmp_path)
    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address("127.0.0.1"),
                                                           ipaddress.ip_address("::1")}
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    ca_before = files.ca_cert.read_bytes()
    assert ensure_server_files(tmp_path).ca_cert.read_bytes() == ca_before
    assert oct(files.server_key.stat().st_mode & 0o777) == "0o600"


# -- in process -------------------------------------------------------------------------------------


def _token(stub: StubTreq, emu: GraphEmulator, client_id: str, secret: str) -> str:
    d = stub.post(f"http://127.0.0.1/{emu.tenant.domain}/oauth2/v2.0/token",
                  data={"grant_type": "client_credentials", "client_id": client_id,
                        "client_secret": secret, "scope": "https://graph.microsoft.com/.default"})
    stub.flush()
    response = d.result
    body = stub.json_content(response)
    stub.flush()
    return str(body.result["access_token"])


def _get(stub: StubTreq, url: str, access: str) -> Any:
    return stub.get(url, headers={"Authorization": f"Bearer {access}"})


def _results(d: Any) -> list[Any]:
    out: list[Any] = []
    d.addBoth(out.append)
    return out


def test_python_api_and_reactor_clock_latency(tmp_path: Path) -> None:
    """Seeding, changing and faults through the Python API; page latency waits on the injected clock."""
    clock = Clock()
    emu = GraphEmulator(clock, tmp_path, page_size=2, latency=5.0)
    emu.seed_contacts({"value": [{"id": "a", "displayName": "A"}, {"id": "b", "displayName": "B"},
                                 {"id": "c", "displayName": "C"}]})
    app = emu.register_app(secret="pw")
    stub = StubTreq(emu.resource)
    access = _token(stub, emu, app.client_id, "pw")

    arrived = _results(_get(stub, "http://127.0.0.1/v1.0/contacts/delta", access))
    stub.flush()
    clock.advance(4.9)
    stub.flush()
    assert arrived == []
    clock.advance(0.1)
    stub.flush()
    first = arrived[0]
    assert first.code == 200
    body = stub.json_content(first)
    stub.flush()
    page = body.result
    assert [c["id"] for c in page["value"]] == ["a", "b"]
    assert page["@odata.nextLink"].startswith("http://127.0.0.1/v1.0/contacts/delta?$skiptoken=")

    emu.settings.latency = 0
    emu.inject("delta", Fault.throttle(7))
    d = _get(stub, page["@odata.nextLink"], access)
    stub.flush()
    assert d.result.code == 429 and d.result.headers.getRawHeaders("retry-after") == ["7"]
    assert emu.count(kind="delta", status=429) == 1

    emu.change_contact("a", displayName="A2")
    emu.remove_contact("b")
    d = _get(stub, "http://127.0.0.1/v1.0/contacts/delta?$select=displayName", access)
    stub.flush()
    body = stub.json_content(d.result)
    stub.flush()
    assert body.result["value"] == [{"id": "c", "displayName": "C"}, {"id": "a", "displayName": "A2"}]
    assert emu.count() == 4
    assert [(r.kind, r.status) for r in emu.requests] == [
        ("token", 200), ("delta", 200), ("delta", 429), ("delta", 200)]


class _SlowPages:
    """A tenant's contact store whose pages take ``cost`` seconds of the emulator's clock to make."""

    def __init__(self, store: Any, clock: Clock, cost: float) -> None:
        self._store, self._clock, self.cost = store, clock, cost

    def page(self, *args: Any, **kwargs: Any) -> Any:
        self._clock.advance(self.cost)
        return self._store.page(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_page_latency_is_the_response_time_including_making_the_page(tmp_path: Path) -> None:
    """The latency counts from the request's arrival: a page that takes 2 s to make is answered
    3 s later at a latency of 5, one that takes longer than the latency as soon as it is made;
    the page shows the contacts as they were when it was made, and a fault's delay comes first."""
    clock = Clock()
    emu = GraphEmulator(clock, tmp_path, page_size=2, latency=5.0)
    emu.seed_contacts([{"id": "a", "displayName": "A"}, {"id": "b", "displayName": "B"}])
    app = emu.register_app(secret="pw")
    stub = StubTreq(emu.resource)
    access = _token(stub, emu, app.client_id, "pw")
    slow = _SlowPages(emu.tenant.contacts, clock, 2.0)
    emu.tenant.contacts = slow  # type: ignore[assignment]

    arrived_at = clock.seconds()
    arrived = _results(_get(stub, "http://127.0.0.1/v1.0/contacts/delta", access))
    stub.flush()
    assert clock.seconds() == arrived_at + 2.0  # made on arrival
    emu.change_contact("a", displayName="A2")  # after the page was made: not in it
    clock.advance(2.9)
    stub.flush()
    assert arrived == [] and emu.requests[-1].status is None  # pending
    clock.advance(0.1)
    stub.flush()
    assert clock.seconds() == arrived_at + 5.0 and arrived[0].code == 200
    body = stub.json_content(arrived[0])
    stub.flush()
    assert [c["displayName"] for c in body.result["value"]] == ["A", "B"]
    assert emu.requests[-1].status == 200

    slow.cost = 7.0  # longer than the latency: no wait on top
    d = _get(stub, "http://127.0.0.1/v1.0/contacts/delta", access)
    stub.flush()
    assert d.called and d.result.code == 200

    slow.cost = 2.0
    emu.inject("delta", Fault.slow(4.0))  # waited before the request is looked at
    late = _results(_get(stub, "http://127.0.0.1/v1.0/contacts/delta", access))
    stub.flush()
    clock.advance(3.9)
    stub.flush()
    assert late == []
    clock.advance(0.1)  # the delay is over: the page is made (2 s), then 3 s of latency are left
    stub.flush()
    clock.advance(2.9)
    stub.flush()
    assert late == []
    clock.advance(0.1)
    stub.flush()
    assert late[0].code == 200
    body = stub.json_content(late[0])
    stub.flush()
    assert sorted(c["displayName"] for c in body.result["value"]) == ["A2", "B"]

"""The Graph emulator over real HTTPS, driven by the real msal and plain HTTP clients.

How these tests run the emulator: ONE child process per test session
(`gateway.testing.process.EmulatorProcess`, i.e. ``python -m gateway.testing.emulator_cli
--json`` on port 0), reset through its admin API before every test.  The emulator keeps its own
reactor in its own process, so this test process stays free of a running global reactor (other
test modules may use it) and can call blocking clients directly:

- msal ``ConfidentialClientApplication(client_id, client_credential=...,
  authority=f"{base_url}/{tenant}", instance_discovery=False, http_client=session)`` where
  ``session`` is a ``requests.Session`` with ``trust_env = False`` and ``verify = ca.pem``
  (REQUESTS_CA_BUNDLE is set on our machines and would override ``verify``; graph.md §9.5);
- the same session or stdlib ``http.client`` for Graph calls;
- treq in separate short-lived processes with their own reactor: against the shared emulator
  (``test_treq_...``), and with `GraphEmulator` started in-process on that reactor next to msal
  (in a thread) and treq (``test_in_process_...``), the pattern gateway tests can copy.

No test sleeps: "slow" faults are measured, and token/delta expiry use the emulator's
adjustable clock (``advance_clock``).
"""

from __future__ import annotations

import email.utils
import json
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msal
import pytest
import requests

from gateway.testing.process import AdminError, EmulatorProcess
from gateway.testing.tls import make_app_certificate

SYNC_STATE_MESSAGE = ("The sync state generation is not found. The delta token is expired and "
                      "data must be synchronized again.")


def people(n: int, prefix: str = "p") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i:05d}", "displayName": f"Person {i}", "givenName": "Person",
             "surname": str(i), "companyName": "Contoso", "mail": f"p{i}@contoso.example",
             "phones": [{"type": "business", "number": f"+1 425 555 {i:04d}"}]}
            for i in range(n)]


@pytest.fixture(scope="session")
def emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess.start(tmp_path_factory.mktemp("emulator")) as process:
        yield process


@pytest.fixture
def emu(emulator_process: EmulatorProcess) -> EmulatorProcess:
    emulator_process.reset(people(5))
    return emulator_process


def msal_app(emu: EmulatorProcess, client_id: str | None = None, credential: Any = None,
             tenant: str | None = None) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id or emu.client_id,
        client_credential=credential if credential is not None else emu.client_secret,
        authority=f"{emu.base_url}/{tenant or emu.tenant_domain}",
        instance_discovery=False,
        http_client=emu.requests_session(),
    )


def token(emu: EmulatorProcess, **kw: Any) -> str:
    result = msal_app(emu, **kw).acquire_token_for_client([f"{emu.base_url}/.default"])
    assert "access_token" in result, result
    return str(result["access_token"])


class Graph:
    """A tiny blocking Graph client over the emulator's trusted session."""

    def __init__(self, emu: EmulatorProcess, access_token: str) -> None:
        self.emu = emu
        self.session = emu.requests_session()
        self.session.headers["Authorization"] = f"Bearer {access_token}"

    def get(self, url: str, **kw: Any) -> requests.Response:
        if url.startswith("/"):
            url = self.emu.base_url + url
        return self.session.get(url, timeout=kw.pop("timeout", 10), **kw)

    def round(self, url: str) -> tuple[list[list[dict[str, Any]]], str]:
        """Follow nextLinks to the deltaLink: (pages of values, deltaLink)."""
        pages = []
        while True:
            response = self.get(url)
            assert response.status_code == 200, response.text
            body = response.json()
            pages.append(body["value"])
            if "@odata.deltaLink" in body:
                assert "@odata.nextLink" not in body
                return pages, body["@odata.deltaLink"]
            url = body["@odata.nextLink"]
            assert url.startswith(self.emu.base_url + "/v1.0/contacts/delta?$skiptoken=")


@pytest.fixture
def graph(emu: EmulatorProcess) -> Graph:
    return Graph(emu, token(emu))


# -- Entra ----------------------------------------------------------------------------------------


def test_token_with_client_secret_is_cached_by_msal(emu: EmulatorProcess) -> None:
    """msal gets a token with the app's secret, then serves the next call from its cache."""
    app = msal_app(emu)
    first = app.acquire_token_for_client([f"{emu.base_url}/.default"])
    assert first["token_type"] == "Bearer" and first["expires_in"] > 300
    assert first["token_source"] == "identity_provider"
    assert app.acquire_token_for_client([f"{emu.base_url}/.default"])["token_source"] == "cache"
    kinds = [(r["kind"], r["status"]) for r in emu.requests()]
    assert kinds == [("discovery", 200), ("token", 200)]


def test_tenant_addressed_by_guid_and_standard_graph_scope(emu: EmulatorProcess) -> None:
    """The authority may name the tenant by GUID; the scope may be the real Graph resource."""
    app = msal_app(emu, tenant=emu.tenant_guid)
    result = app.acquire_token_for_client(["https://graph.microsoft.com/.default"])
    assert "access_token" in result, result
    assert Graph(emu, result["access_token"]).get("/v1.0/contacts").status_code == 200


@pytest.mark.parametrize("shape", ["sha256", "sha1"])
def test_token_with_certificate_assertion(emu: EmulatorProcess, shape: str) -> None:
    """A client assertion signed with the registered certificate gets a token (PS256 and RS256)."""
    cert = make_app_certificate("dirgw-test")
    registered = emu.register_app(certificate=cert.certificate_pem.decode(),
                                  roles=["OrgContact.Read.All"])
    credential: dict[str, str] = {"private_key": cert.private_key_pem.decode()}
    if shape == "sha256":
        credential["public_certificate"] = cert.certificate_pem.decode()
    else:
        credential["thumbprint"] = cert.sha1_thumbprint
    access = token(emu, client_id=registered["client_id"], credential=credential)
    assert Graph(emu, access).get("/v1.0/contacts").status_code == 200


def test_assertion_signed_by_another_key_is_rejected(emu: EmulatorProcess) -> None:
    """An assertion from an unregistered certificate gets 401 invalid_client."""
    registered = emu.register_app(certificate=make_app_certificate().certificate_pem.decode())
    other = make_app_certificate()
    result = msal_app(emu, client_id=registered["client_id"],
                      credential={"private_key": other.private_key_pem.decode(),
                                  "public_certificate": other.certificate_pem.decode()}
                      ).acquire_token_for_client([f"{emu.base_url}/.default"])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [700027]


def test_wrong_secret_gets_401_invalid_client(emu: EmulatorProcess) -> None:
    """A wrong secret: HTTP 401 with Entra's invalid_client body (AADSTS7000215)."""
    result = msal_app(emu, credential="not-the-secret").acquire_token_for_client(
        [f"{emu.base_url}/.default"])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert {"timestamp", "trace_id", "correlation_id", "error_uri"} <= set(result)
    assert emu.requests()[-1]["status"] == 401
    assert "not-the-secret" not in json.dumps(emu.requests())


def test_secret_in_basic_auth_and_unknown_client(emu: EmulatorProcess) -> None:
    """client_secret_basic works; an unknown client id gets 400 unauthorized_client."""
    form = f"grant_type=client_credentials&scope={emu.base_url}/.default".encode()
    path = f"/{emu.tenant_domain}/oauth2/v2.0/token"
    basic = requests.auth._basic_auth_str(emu.client_id, emu.client_secret)
    status, headers, body = emu.call("POST", path, form, {
        "Authorization": basic, "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and headers["cache-control"] == "no-store, no-cache"
    assert json.loads(body)["expires_in"] == 3599
    result = msal_app(emu, client_id="11111111-2222-3333-4444-555555555555").acquire_token_for_client(
        [f"{emu.base_url}/.default"])
    assert result["error"] == "unauthorized_client" and result["error_codes"] == [700016]


def test_expired_secret_and_unknown_tenant(emu: EmulatorProcess) -> None:
    """An expired secret gets invalid_client 7000222; an unknown tenant fails discovery."""
    app = emu.register_app(secret="s3cret-that-expires", secret_expires_in=60)
    emu.advance_clock(120)
    result = msal_app(emu, client_id=app["client_id"], credential="s3cret-that-expires"
                      ).acquire_token_for_client([f"{emu.base_url}/.default"])
    assert result["error_codes"] == [7000222]
    with pytest.raises(ValueError):
        msal_app(emu, tenant="nowhere.onmicrosoft.com")


def test_configurable_token_lifetime(emu: EmulatorProcess) -> None:
    """expires_in follows the token_lifetime setting (below 300 msal re-acquires every time)."""
    emu.settings(token_lifetime=200)
    app = msal_app(emu)
    assert app.acquire_token_for_client([f"{emu.base_url}/.default"])["expires_in"] == 200
    assert app.acquire_token_for_client([f"{emu.base_url}/.default"])["token_source"] == "identity_provider"


def test_instance_discovery_document(emu: EmulatorProcess) -> None:
    """/common/discovery/instance answers the §9.1 shape, naming the emulator's host."""
    status, _, body = emu.call(
        "GET", "/common/discovery/instance?api-version=1.1&authorization_endpoint="
        f"{emu.base_url}/contoso.onmicrosoft.com/oauth2/v2.0/authorize")
    doc = json.loads(body)
    assert status == 200
    assert doc["tenant_discovery_endpoint"] == (
        f"{emu.base_url}/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration")
    assert any(f"127.0.0.1:{emu.port}" in m["aliases"] for m in doc["metadata"])


# -- Graph authorization ----------------------------------------------------------------------------


def test_missing_role_gets_403_until_granted(emu: EmulatorProcess) -> None:
    """Without OrgContact.Read.All Graph answers 403 Authorization_RequestDenied; a new token after
    the grant works."""
    app = emu.register_app(secret="no-role-secret", roles=[])
    response = Graph(emu, token(emu, client_id=app["client_id"], credential="no-role-secret")).get(
        "/v1.0/contacts/delta")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "Authorization_RequestDenied"
    assert error["message"] == "Insufficient privileges to complete the operation."
    assert {"date", "request-id", "client-request-id"} <= set(error["innerError"])
    emu.set_roles(app["client_id"], ["OrgContact.Read.All"])
    fresh = token(emu, client_id=app["client_id"], credential="no-role-secret")
    assert Graph(emu, fresh).get("/v1.0/contacts/delta").status_code == 200


def test_401_for_missing_expired_and_revoked_tokens(emu: EmulatorProcess, graph: Graph) -> None:
    """No token, a garbage token, an expired or revoked token: 401 InvalidAuthenticationToken."""
    status, headers, body = emu.call("GET", "/v1.0/contacts")
    assert status == 401
    assert json.loads(body)["error"]["message"] == "Access token is empty."
    assert headers["www-authenticate"].startswith('Bearer realm=""')
    assert Graph(emu, "garbage").get("/v1.0/contacts").status_code == 401
    assert graph.get("/v1.0/contacts").status_code == 200
    emu.revoke_tokens()
    assert graph.get("/v1.0/contacts").status_code == 401
    fresh = Graph(emu, token(emu))
    emu.advance_clock(3600)
    response = fresh.get("/v1.0/contacts")
    assert response.status_code == 401
    assert response.json()["error"] == {**response.json()["error"],
                                        "code": "InvalidAuthenticationToken",
                                        "message": "Access token has expired or is not yet valid."}


# -- delta ----------------------------------------------------------------------------------------------


def test_full_delta_import_across_many_pages(emu: EmulatorProcess, graph: Graph) -> None:
    """1000 contacts in pages of 37 with absolute links, then a no-change round."""
    emu.reset(people(1000))
    emu.settings(page_size=37)
    pages, delta_link = graph.round("/v1.0/contacts/delta")
    assert len(pages) == 28 and all(len(p) == 37 for p in pages[:-1]) and len(pages[-1]) == 1
    ids = [c["id"] for page in pages for c in page]
    assert sorted(ids) == [f"p{i:05d}" for i in range(1000)]
    first = pages[0][0]
    assert first["phones"] == [{"number": None, "type": "businessFax"},
                               {"number": None, "type": "mobile"},
                               {"number": "+1 425 555 0000", "type": "business"}]
    assert delta_link.startswith(emu.base_url + "/v1.0/contacts/delta?$deltatoken=")
    again = graph.get(delta_link).json()
    assert again["value"] == [] and again["@odata.deltaLink"].startswith(emu.base_url)


def test_delta_round_after_add_change_remove(emu: EmulatorProcess, graph: Graph) -> None:
    """The next round has exactly the added, changed and removed contacts, with @removed reasons."""
    _, delta_link = graph.round("/v1.0/contacts/delta")
    emu.add_contacts([{"id": "new", "displayName": "New Person"}])
    emu.change_contact("p00001", displayName="Renamed", phones=[{"type": "mobile", "number": "+1 1"}])
    emu.remove_contact("p00002")
    emu.remove_contact("p00003", permanent=True)
    pages, delta_link = graph.round(delta_link)
    items = {c["id"]: c for page in pages for c in page}
    assert set(items) == {"new", "p00001", "p00002", "p00003"}
    assert items["p00001"]["displayName"] == "Renamed"
    assert items["p00001"]["phones"][1] == {"number": "+1 1", "type": "mobile"}
    assert items["p00001"]["phones"][2] == {"number": None, "type": "business"}
    assert items["p00002"] == {"id": "p00002", "@removed": {"reason": "changed"}}
    assert items["p00003"] == {"id": "p00003", "@removed": {"reason": "deleted"}}
    pages, _ = graph.round(delta_link)
    assert pages == [[]]


def test_change_during_paging_is_not_lost(emu: EmulatorProcess, graph: Graph) -> None:
    """A contact changed while a round is paged shows up (again) in the next round."""
    emu.reset(people(10))
    emu.settings(page_size=3)
    body = graph.get("/v1.0/contacts/delta").json()
    emu.change_contact(body["value"][0]["id"], displayName="Changed early")
    emu.change_contact("p00009", displayName="Changed late")
    rest, delta_link = graph.round(body["@odata.nextLink"])
    seen = [c["id"] for c in body["value"]] + [c["id"] for page in rest for c in page]
    assert "p00009" not in seen and len(set(seen)) == 9
    pages, _ = graph.round(delta_link)
    names = {c["id"]: c["displayName"] for page in pages for c in page}
    assert names == {body["value"][0]["id"]: "Changed early", "p00009": "Changed late"}


def test_select_limits_properties_on_every_page(emu: EmulatorProcess, graph: Graph) -> None:
    """$select on the first request applies to all pages and later rounds; id is always there."""
    emu.settings(page_size=2)
    pages, delta_link = graph.round("/v1.0/contacts/delta?$select=displayName,mail")
    assert all(set(c) == {"id", "displayName", "mail"} for page in pages for c in page)
    emu.change_contact("p00000", surname="Other")
    pages, _ = graph.round(delta_link)
    assert pages == [[{"id": "p00000", "displayName": "Person 0", "mail": "p0@contoso.example"}]]
    one = graph.get("/v1.0/contacts/p00001?$select=phones").json()
    assert set(one) == {"@odata.context", "id", "phones"} and len(one["phones"]) == 3
    bad = graph.get("/v1.0/contacts/delta?$select=nope")
    assert bad.status_code == 400 and "'nope'" in bad.json()["error"]["message"]


def test_delta_token_latest(emu: EmulatorProcess, graph: Graph) -> None:
    """$deltatoken=latest returns no data and a deltaLink from now on."""
    body = graph.get("/v1.0/contacts/delta?$deltatoken=latest").json()
    assert body["value"] == []
    emu.change_contact("p00004", displayName="Only me")
    pages, _ = graph.round(body["@odata.deltaLink"])
    assert [c["id"] for page in pages for c in page] == ["p00004"]


def test_expired_delta_token_gets_sync_state_not_found(emu: EmulatorProcess, graph: Graph) -> None:
    """Expired delta tokens (forced, or older than 7 days) get 400 syncStateNotFound, exact body."""
    _, delta_link = graph.round("/v1.0/contacts/delta")
    emu.expire_delta_tokens()
    response = graph.get(delta_link)
    assert response.status_code == 400
    error = response.json()["error"]
    assert list(response.json()) == ["error"]
    assert (error["code"], error["message"]) == ("syncStateNotFound", SYNC_STATE_MESSAGE)
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    _, delta_link = graph.round("/v1.0/contacts/delta")
    emu.advance_clock(8 * 86400)
    fresh = Graph(emu, token(emu))  # the old access token expired too
    assert fresh.get(delta_link).json()["error"]["code"] == "syncStateNotFound"


def test_forced_reset_gets_410_with_location(emu: EmulatorProcess, graph: Graph) -> None:
    """After a sync reset a deltaLink gets 410 Gone; Location is the initial delta request."""
    _, delta_link = graph.round("/v1.0/contacts/delta?$select=displayName")
    emu.reset_delta_sync()
    response = graph.get(delta_link, allow_redirects=False)
    assert response.status_code == 410
    assert response.headers["Location"] == f"{emu.base_url}/v1.0/contacts/delta?$select=displayName"
    assert response.json()["error"]["code"] == "resyncRequired"
    pages, _ = graph.round(response.headers["Location"])
    assert len([c for page in pages for c in page]) == 5


def test_list_get_and_count(emu: EmulatorProcess, graph: Graph) -> None:
    """/contacts pages with $top and absolute nextLinks; /contacts/{id}; $count."""
    emu.reset(people(25))
    body = graph.get("/v1.0/contacts?$top=10").json()
    ids = [c["id"] for c in body["value"]]
    while "@odata.nextLink" in body:
        assert body["@odata.nextLink"].startswith(emu.base_url + "/v1.0/contacts?$skiptoken=")
        body = graph.get(body["@odata.nextLink"]).json()
        ids += [c["id"] for c in body["value"]]
    assert len(ids) == 25 == len(set(ids))
    assert graph.get("/v1.0/contacts/p00003").json()["displayName"] == "Person 3"
    missing = graph.get("/v1.0/contacts/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "Request_ResourceNotFound"
    assert graph.get("/v1.0/contacts/$count", headers={"ConsistencyLevel": "eventual"}).text == "25"


def test_several_tenants_are_separate(emu: EmulatorProcess) -> None:
    """A second tenant has its own apps and contacts."""
    other = emu.add_tenant(f"fabrikam{time.monotonic_ns()}.onmicrosoft.com")
    app = emu.register_app(tenant=other["domain"], secret="fabrikam-secret")
    emu.add_contacts([{"id": "f1", "displayName": "Fabrikam One"}], tenant=other["domain"])
    access = token(emu, client_id=app["client_id"], credential="fabrikam-secret", tenant=other["domain"])
    pages, _ = Graph(emu, access).round("/v1.0/contacts/delta")
    assert [c["id"] for page in pages for c in page] == ["f1"]
    wrong_tenant = msal_app(emu, client_id=app["client_id"], credential="fabrikam-secret")
    assert wrong_tenant.acquire_token_for_client([f"{emu.base_url}/.default"])["error"] == "unauthorized_client"


# -- faults ----------------------------------------------------------------------------------------------


def test_throttle_with_retry_after_seconds_for_next_n(emu: EmulatorProcess, graph: Graph) -> None:
    """The next 3 delta requests get 429 Retry-After 2 with Graph's body, then normal answers."""
    emu.inject("delta", count=3, status=429, retry_after=2)
    for _ in range(3):
        response = graph.get("/v1.0/contacts/delta")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "2"
        assert response.json()["error"]["code"] == "TooManyRequests"
        assert response.json()["error"]["innerError"]["status"] == "429"
    assert graph.get("/v1.0/contacts/delta").status_code == 200
    assert graph.get("/v1.0/contacts").status_code == 200  # other kinds were never affected
    log = emu.requests()
    assert [r["status"] for r in log if r["kind"] == "delta"] == [429, 429, 429, 200]
    assert [r["fault"] for r in log if r["kind"] == "delta"] == ["status:429"] * 3 + [None]


def test_unavailable_with_retry_after_http_date(emu: EmulatorProcess, graph: Graph) -> None:
    """503 with Retry-After as an HTTP date about N seconds ahead."""
    emu.inject("contacts", status=503, retry_after=30, retry_after_http_date=True)
    response = graph.get("/v1.0/contacts")
    assert response.status_code == 503
    when = email.utils.parsedate_to_datetime(response.headers["Retry-After"]).timestamp()
    assert 20 < when - time.time() <= 31


@pytest.mark.parametrize("status", [500, 504])
def test_server_errors(emu: EmulatorProcess, graph: Graph, status: int) -> None:
    """500 and 504 with Graph error bodies, no Retry-After."""
    emu.inject("delta", status=status)
    response = graph.get("/v1.0/contacts/delta")
    assert response.status_code == status and "Retry-After" not in response.headers
    assert "code" in response.json()["error"]


def test_slow_response_and_page_latency(emu: EmulatorProcess, graph: Graph) -> None:
    """A delayed answer arrives after the delay (a short client timeout fails first); the
    per-page latency applies to every Graph page."""
    emu.inject("delta", delay=0.6)
    with pytest.raises(requests.exceptions.ReadTimeout):
        graph.get("/v1.0/contacts/delta", timeout=0.2)
    emu.inject("contacts", delay=0.3)
    started = time.monotonic()
    assert graph.get("/v1.0/contacts").status_code == 200
    assert time.monotonic() - started >= 0.3
    emu.settings(latency=0.1, page_size=2)
    started = time.monotonic()
    pages, _ = graph.round("/v1.0/contacts/delta")
    assert len(pages) == 3 and time.monotonic() - started >= 0.3


def test_dropped_and_cut_connections(emu: EmulatorProcess, graph: Graph) -> None:
    """drop aborts the connection before an answer; cut closes it in mid-body."""
    emu.inject("delta", action="drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        graph.get("/v1.0/contacts/delta", timeout=5)
    emu.inject("delta", action="cut")
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead"):
        graph.get("/v1.0/contacts/delta", timeout=5)
    statuses = [r["status"] for r in emu.requests() if r["kind"] == "delta"]
    assert statuses == [0, 200]
    assert graph.get("/v1.0/contacts/delta").status_code == 200


@pytest.mark.parametrize("action", ["truncate", "malformed", "wrong_shape"])
def test_bad_json_bodies(emu: EmulatorProcess, graph: Graph, action: str) -> None:
    """Complete 200 responses whose JSON is cut, invalid, or of an unexpected shape."""
    emu.inject("delta", action=action)
    response = graph.get("/v1.0/contacts/delta")
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    if action == "wrong_shape":
        assert not isinstance(response.json()["value"], list)
    else:
        with pytest.raises(ValueError):
            response.json()


def test_empty_page_keeps_the_round_going(emu: EmulatorProcess, graph: Graph) -> None:
    """An injected empty page still carries a nextLink and the round completes."""
    emu.inject("delta", count=2, action="empty_page")
    pages, _ = graph.round("/v1.0/contacts/delta")
    assert pages[:2] == [[], []] and sum(len(p) for p in pages) == 5


def test_token_endpoint_faults(emu: EmulatorProcess) -> None:
    """Token endpoint: 503 makes msal raise, 429 comes back as an error, a drop is a connection error."""
    emu.inject("token", status=503, retry_after=1)
    with pytest.raises(msal.exceptions.MsalServiceError):
        msal_app(emu).acquire_token_for_client([f"{emu.base_url}/.default"])
    emu.inject("token", status=429, retry_after=1)
    result = msal_app(emu).acquire_token_for_client([f"{emu.base_url}/.default"])
    assert "access_token" not in result
    emu.inject("token", action="drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        msal_app(emu).acquire_token_for_client([f"{emu.base_url}/.default"])
    emu.inject("discovery", status=500)
    with pytest.raises(Exception):  # noqa: B017 (msal's discovery error type varies by version)
        msal_app(emu)
    assert "access_token" in msal_app(emu).acquire_token_for_client([f"{emu.base_url}/.default"])


def test_admin_api_rejects_bad_input(emu: EmulatorProcess) -> None:
    """Unknown fault kinds, orgContact-less phone types and unknown ids are 4xx answers."""
    with pytest.raises(AdminError) as bad_kind:
        emu.inject("nope", status=500)
    assert bad_kind.value.status == 400
    with pytest.raises(AdminError) as bad_phone:
        emu.add_contacts([{"displayName": "X", "phones": [{"type": "home", "number": "1"}]}])
    assert "home" in str(bad_phone.value)
    with pytest.raises(AdminError) as missing:
        emu.remove_contact("does-not-exist")
    assert missing.value.status == 404


# -- CLI and treq ----------------------------------------------------------------------------------------


def test_cli_prints_source_configuration_and_rename_command(tmp_path: Path) -> None:
    """`dirgw emulator` prints the source values and a curl command that renames a contact."""
    contacts = tmp_path / "contacts.json"
    contacts.write_text(json.dumps({"value": people(3)}), encoding="utf-8")
    with subprocess.Popen(
        [sys.executable, "-m", "gateway.testing.emulator_cli", "--contacts", str(contacts),
         "--port", "0", "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as process:
        try:
            _check_cli_output(process, tmp_path)
        finally:
            process.terminate()
            process.wait(10)


def _check_cli_output(process: subprocess.Popen[str], tmp_path: Path) -> None:
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Press Ctrl-C"):
            break
    text = "".join(lines)
    for key in ("tenant_id", "client_id", "client_secret_file", "authority_host",
                "graph_url", "ca_bundle"):
        assert f"\n{key} = " in text
    secret_file = tmp_path / "state" / "client.secret"
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    curl = next(line for line in lines if "curl" in line and "PATCH" in line)
    assert f"--cacert {tmp_path / 'state' / 'ca.pem'}" in curl
    url = curl.split()[curl.split().index("PATCH") + 1]
    assert url.endswith("/_emulator/contacts/p00000")
    context = ssl.create_default_context(cafile=str(tmp_path / "state" / "ca.pem"))
    request = urllib.request.Request(url, data=b'{"displayName": "Renamed"}', method="PATCH",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=context) as response:
        assert json.loads(response.read())["displayName"] == "Renamed"


_TREQ_SCRIPT = textwrap.dedent("""
    import json, sys
    from twisted.internet import ssl, task
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
    import treq
    from treq.client import HTTPClient

    async def main(reactor, base, ca, token):
        trust = ssl.Certificate.loadPEM(open(ca, "rb").read())
        http = HTTPClient(Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust)))
        url, total, pages = base + "/v1.0/contacts/delta", 0, 0
        while True:
            response = await http.get(url, headers={"Authorization": "Bearer " + token}, timeout=10)
            body = await response.json()
            total, pages = total + len(body["value"]), pages + 1
            url = body.get("@odata.nextLink")
            if url is None:
                break
        print(json.dumps({"total": total, "pages": pages}))

    task.react(lambda reactor: __import__("twisted.internet.defer", fromlist=["Deferred"])
               .Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
""")


def test_treq_over_twisted_tls_trusting_the_ca(emu: EmulatorProcess) -> None:
    """treq with a Twisted TLS policy trusting ca.pem follows absolute nextLinks to 127.0.0.1."""
    emu.reset(people(30))
    emu.settings(page_size=7)
    out = subprocess.run(
        [sys.executable, "-c", _TREQ_SCRIPT, emu.base_url, str(emu.ca_bundle), token(emu)],
        capture_output=True, text=True, timeout=60, env={**os.environ})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"total": 30, "pages": 5}


def test_localhost_name_is_covered_by_the_certificate(emu: EmulatorProcess) -> None:
    """The server certificate is valid for localhost too; links follow the host the client used."""
    status, _, body = emu.call(
        "GET", f"https://localhost:{emu.port}/{emu.tenant_domain}/v2.0/.well-known/openid-configuration")
    assert status == 200
    assert json.loads(body)["token_endpoint"] == (
        f"https://localhost:{emu.port}/{emu.tenant_guid}/oauth2/v2.0/token")
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as raw:
        with emu.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() is not None


_IN_PROCESS_SCRIPT = textwrap.dedent("""
    import json, sys
    import msal, requests
    from twisted.internet import defer, ssl, task, threads
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
    from treq.client import HTTPClient
    from gateway.testing.emulator import GraphEmulator
    from gateway.testing.faults import Fault

    async def main(reactor, state_dir):
        emu = GraphEmulator(reactor, state_dir, page_size=4)
        emu.add_contacts([{"id": f"c{i}", "displayName": f"C {i}"} for i in range(10)])
        app = emu.register_app(secret="pw")
        await emu.start()
        session = requests.Session()
        session.trust_env = False
        session.verify = str(emu.ca_bundle)
        def acquire():
            client = msal.ConfidentialClientApplication(
                app.client_id, client_credential="pw", instance_discovery=False,
                authority=emu.base_url + "/" + emu.tenant.domain, http_client=session)
            return client.acquire_token_for_client([emu.base_url + "/.default"])
        token = (await threads.deferToThread(acquire))["access_token"]
        trust = ssl.Certificate.loadPEM(emu.ca_bundle.read_bytes())
        http = HTTPClient(Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust)))
        emu.inject("delta", Fault.throttle(1))
        url, statuses, total = emu.base_url + "/v1.0/contacts/delta", [], 0
        while url:
            response = await http.get(url, headers={"Authorization": "Bearer " + token}, timeout=10)
            statuses.append(response.code)
            body = await response.json()
            if response.code != 200:
                continue
            total += len(body["value"])
            url = body.get("@odata.nextLink")
        await emu.stop()
        print(json.dumps({"statuses": statuses, "total": total, "open": len(emu.site.channels),
                          "log": [[r.kind, r.status] for r in emu.requests]}))

    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, sys.argv[1])))
""")


def test_in_process_emulator_on_a_real_reactor(tmp_path: Path) -> None:
    """GraphEmulator started on the running reactor serves msal (in a thread) and treq; stop()
    closes its connections.  (Runs in a child process: it needs the global reactor.)"""
    out = subprocess.run([sys.executable, "-c", _IN_PROCESS_SCRIPT, str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["statuses"] == [429, 200, 200, 200] and result["total"] == 10
    assert result["open"] == 0
    assert result["log"][0] == ["discovery", 200] and result["log"][1] == ["token", 200]

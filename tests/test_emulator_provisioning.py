"""The emulator's app-provisioning side (graph.md §10, §11) in process, on a fake clock.

Device code sign-in of an admin, ``/applications``, ``addPassword``, ``/servicePrincipals``
(with ``$filter=appId eq``), ``appRoleAssignedTo``, DELETE with its cascade, deleted items,
directory roles (403) and the replication delay, driven through `GraphEmulator.resource` with
treq's `StubTreq` and a `Clock` as the reactor (so replication windows pass by hand).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from treq.testing import StubTreq
from twisted.internet.task import Clock

from gateway.testing.emulator import GraphEmulator
from gateway.testing.jwt import b64url_decode
from gateway.testing.tls import make_app_certificate

BASE = "http://127.0.0.1"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
ORG_CONTACT = "e1a88a34-94c4-4418-be12-c87b00e26bea"
GRAPH = "https://graph.microsoft.com"
SCOPES = f"{GRAPH}/Application.ReadWrite.All {GRAPH}/AppRoleAssignment.ReadWrite.All offline_access openid profile"
PUBLIC_CLIENT = "14d82eec-204b-4c2f-b7e8-296a70dab67e"


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)  # realistic epoch seconds for dates
        self.emu = GraphEmulator(self.clock, tmp_path)
        self.stub = StubTreq(self.emu.resource)
        self.domain = self.emu.tenant.domain

    def call(self, method: str, path: str, *, form: dict[str, str] | None = None, body: Any = None,
             token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kwargs: dict[str, Any] = {"headers": headers}
        if form is not None:
            kwargs["data"] = form
        if body is not None:
            kwargs["data"] = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        d = self.stub.request(method, BASE + path, **kwargs)
        self.stub.flush()
        response = d.result
        content = self.stub.content(response)
        self.stub.flush()
        raw = content.result
        return response.code, (json.loads(raw) if raw.strip() else None)

    def device_login(self, roles: list[str] | None = None, scope: str = SCOPES,
                     user: str | None = None) -> dict[str, Any]:
        status, flow = self.call("POST", f"/{self.domain}/oauth2/v2.0/devicecode",
                                 form={"client_id": PUBLIC_CLIENT, "scope": scope})
        assert status == 200, flow
        self.emu.approve_device_code(flow["user_code"], user=user, roles=roles)
        status, tokens = self.token(grant_type="urn:ietf:params:oauth:grant-type:device_code",
                                    client_id=PUBLIC_CLIENT, device_code=flow["device_code"],
                                    code=flow["device_code"])
        assert status == 200, tokens
        return tokens

    def admin_token(self, roles: list[str] | None = None, user: str | None = None) -> str:
        return str(self.device_login(roles, user=user)["access_token"])

    def token(self, **form: str) -> tuple[int, Any]:
        return self.call("POST", f"/{self.domain}/oauth2/v2.0/token", form=form)

    def app_token(self, client_id: str, secret: str) -> tuple[int, Any]:
        return self.token(grant_type="client_credentials", client_id=client_id, client_secret=secret,
                          scope="https://graph.microsoft.com/.default")


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def claims(token: str) -> dict[str, Any]:
    return dict(json.loads(b64url_decode(token.split(".")[1])))


def test_device_code_flow_pending_approved_redeemed_refreshed(env: Env) -> None:
    status, flow = env.call("POST", f"/{env.domain}/oauth2/v2.0/devicecode",
                            form={"client_id": PUBLIC_CLIENT, "scope": SCOPES})
    assert status == 200 and flow["interval"] == 5 and flow["expires_in"] == 900
    assert f"enter the code {flow['user_code']} to authenticate" in flow["message"]
    poll = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": PUBLIC_CLIENT,
            "device_code": flow["device_code"]}
    status, pending = env.token(**poll)
    assert status == 400 and pending["error"] == "authorization_pending" and pending["error_codes"] == [70016]
    env.emu.approve_device_code(flow["user_code"].lower())
    status, tokens = env.token(**poll)
    assert status == 200
    access = claims(tokens["access_token"])
    assert access["scp"] == "AppRoleAssignment.ReadWrite.All Application.ReadWrite.All"
    assert access["upn"] == f"admin@{env.domain}" and access["idtyp"] == "user"
    assert "62e90394-69f5-4237-9190-012177145e10" in access["wids"]  # Global Administrator
    assert json.loads(b64url_decode(tokens["client_info"]))["utid"] == env.emu.tenant.tenant_id
    assert tokens["id_token"].count(".") == 2
    assert env.token(**poll)[1]["error"] == "invalid_grant"  # a code is redeemed once
    status, refreshed = env.token(grant_type="refresh_token", client_id=PUBLIC_CLIENT,
                                  refresh_token=tokens["refresh_token"], scope=SCOPES)
    assert status == 200 and claims(refreshed["access_token"])["scp"] == access["scp"]

    status, flow = env.call("POST", f"/{env.domain}/oauth2/v2.0/devicecode",
                            form={"client_id": PUBLIC_CLIENT, "scope": SCOPES})
    env.clock.advance(901)
    status, expired = env.token(grant_type="urn:ietf:params:oauth:grant-type:device_code",
                                client_id=PUBLIC_CLIENT, device_code=flow["device_code"])
    assert status == 400 and expired["error"] == "expired_token"
    with pytest.raises(KeyError):
        env.emu.approve_device_code(flow["user_code"])


def test_graph_service_principal_and_the_request_sequence(env: Env) -> None:
    """The §10.2 sequence with an admin token: find Graph's SP, create app, secret, SP, grant."""
    admin = env.admin_token()
    status, found = env.call("GET", f"/v1.0/servicePrincipals?$filter=appId%20eq%20'{GRAPH_APP_ID}'"
                                    "&$select=id,appId,displayName,appRoles", token=admin)
    assert status == 200 and len(found["value"]) == 1
    graph_sp = found["value"][0]
    assert set(graph_sp) == {"id", "appId", "displayName", "appRoles"}
    roles = {r["value"]: r["id"] for r in graph_sp["appRoles"]}
    assert roles["OrgContact.Read.All"] == ORG_CONTACT and graph_sp["id"] == env.emu.tenant.graph_sp_id

    status, app = env.call("POST", "/v1.0/applications", token=admin, body={
        "displayName": "dirgw (pbx)", "signInAudience": "AzureADMyOrg",
        "requiredResourceAccess": [{"resourceAppId": GRAPH_APP_ID,
                                    "resourceAccess": [{"id": ORG_CONTACT, "type": "Role"}]}]})
    assert status == 201 and app["@odata.context"].endswith("#applications/$entity")
    assert app["passwordCredentials"] == [] and app["keyCredentials"] == []
    status, password = env.call("POST", f"/v1.0/applications/{app['id']}/addPassword", token=admin,
                                body={"passwordCredential": {"displayName": "x",
                                                             "endDateTime": "2030-01-01T00:00:00Z"}})
    assert status == 200 and len(password["secretText"]) == 40 and password["hint"] == password["secretText"][:3]
    assert env.app_token(app["appId"], password["secretText"])[0] == 200  # a token, but no roles yet
    status, sp = env.call("POST", "/v1.0/servicePrincipals", token=admin, body={"appId": app["appId"]})
    assert status == 201 and sp["appId"] == app["appId"]
    assert env.call("POST", "/v1.0/servicePrincipals", token=admin, body={"appId": app["appId"]})[0] == 409
    grant = {"principalId": sp["id"], "resourceId": graph_sp["id"], "appRoleId": ORG_CONTACT}
    status, assignment = env.call("POST", f"/v1.0/servicePrincipals/{graph_sp['id']}/appRoleAssignedTo",
                                  token=admin, body=grant)
    assert status == 201 and assignment["principalType"] == "ServicePrincipal"
    assert len(assignment["id"]) == 43  # not a GUID
    status, duplicate = env.call("POST", f"/v1.0/servicePrincipals/{graph_sp['id']}/appRoleAssignedTo",
                                 token=admin, body=grant)
    assert status == 400 and duplicate["error"]["message"] == "Permission being assigned already exists on the object."
    status, listed = env.call("GET", f"/v1.0/servicePrincipals/{graph_sp['id']}/appRoleAssignedTo", token=admin)
    assert [a["principalId"] for a in listed["value"]] == [sp["id"]]

    status, tokens = env.app_token(app["appId"], password["secretText"])
    assert claims(tokens["access_token"])["roles"] == ["OrgContact.Read.All"]
    assert env.call("GET", "/v1.0/contacts", token=tokens["access_token"])[0] == 200

    status, by_app_id = env.call("GET", f"/v1.0/applications(appId='{app['appId']}')?$select=passwordCredentials",
                                 token=admin)
    assert status == 200 and by_app_id["passwordCredentials"][0]["endDateTime"] == "2030-01-01T00:00:00Z"
    assert by_app_id["passwordCredentials"][0]["secretText"] is None
    # app-only tokens without Application.Read.All may not read app registrations
    assert env.call("GET", "/v1.0/applications", token=tokens["access_token"])[0] == 403


def test_delete_cascades_to_service_principal_and_grants(env: Env) -> None:
    admin = env.admin_token()
    app = env.emu.register_app(secret="pw")
    status, _ = env.call("DELETE", f"/v1.0/applications/{app.object_id}", token=admin)
    assert status == 204
    assert env.call("GET", f"/v1.0/servicePrincipals/{app.service_principal_id}", token=admin)[0] == 404
    status, refused = env.app_token(app.client_id, "pw")
    assert status == 400 and refused["error"] == "unauthorized_client" and refused["error_codes"] == [700016]
    assert env.call("GET", f"/v1.0/directory/deletedItems/{app.object_id}", token=admin)[0] == 200
    assert env.call("DELETE", f"/v1.0/directory/deletedItems/{app.object_id}", token=admin)[0] == 204
    assert env.call("DELETE", f"/v1.0/directory/deletedItems/{app.object_id}", token=admin)[0] == 404
    assert env.call("DELETE", f"/v1.0/applications/{app.object_id}", token=admin)[0] == 404


def test_replication_delay_hides_new_objects_credentials_and_grants(env: Env) -> None:
    env.emu.settings.replication_delay = 10
    admin = env.admin_token()
    status, app = env.call("POST", "/v1.0/applications", token=admin, body={"displayName": "late"})
    assert status == 201
    status, missing = env.call("GET", f"/v1.0/applications/{app['id']}", token=admin)
    assert status == 404 and missing["error"]["code"] == "Request_ResourceNotFound"
    assert env.call("GET", "/v1.0/applications", token=admin)[1]["value"] == []
    status, invalid = env.call("POST", "/v1.0/servicePrincipals", token=admin, body={"appId": app["appId"]})
    assert status == 400 and "does not reference a valid application object" in invalid["error"]["message"]
    assert env.call("POST", f"/v1.0/applications/{app['id']}/addPassword", token=admin)[0] == 404

    env.clock.advance(10)
    status, password = env.call("POST", f"/v1.0/applications/{app['id']}/addPassword", token=admin)
    assert status == 200
    status, refused = env.app_token(app["appId"], password["secretText"])
    assert status == 401 and refused["error_codes"] == [7000215]  # the new secret is not there yet
    status, sp = env.call("POST", "/v1.0/servicePrincipals", token=admin, body={"appId": app["appId"]})
    graph_sp = env.emu.tenant.graph_sp_id
    grant = {"principalId": sp["id"], "resourceId": graph_sp, "appRoleId": ORG_CONTACT}
    status, reference = env.call("POST", f"/v1.0/servicePrincipals/{graph_sp}/appRoleAssignedTo",
                                 token=admin, body=grant)
    assert status == 400 and reference["error"]["message"] == "Not a valid reference update."

    env.clock.advance(10)
    assert env.call("POST", f"/v1.0/servicePrincipals/{graph_sp}/appRoleAssignedTo",
                    token=admin, body=grant)[0] == 201
    status, tokens = env.app_token(app["appId"], password["secretText"])
    assert status == 200 and "roles" not in claims(tokens["access_token"])  # grant not effective yet
    assert env.call("GET", "/v1.0/contacts", token=tokens["access_token"])[0] == 403
    env.clock.advance(10)
    status, tokens = env.app_token(app["appId"], password["secretText"])
    assert claims(tokens["access_token"])["roles"] == ["OrgContact.Read.All"]


def test_directory_roles_and_scopes_are_enforced(env: Env) -> None:
    cloud_admin = env.admin_token(["Cloud Application Administrator"], user=f"cloud@{env.domain}")
    status, app = env.call("POST", "/v1.0/applications", token=cloud_admin, body={"displayName": "x"})
    assert status == 201
    status, sp = env.call("POST", "/v1.0/servicePrincipals", token=cloud_admin, body={"appId": app["appId"]})
    graph_sp = env.emu.tenant.graph_sp_id
    status, denied = env.call("POST", f"/v1.0/servicePrincipals/{graph_sp}/appRoleAssignedTo", token=cloud_admin,
                              body={"principalId": sp["id"], "resourceId": graph_sp, "appRoleId": ORG_CONTACT})
    assert status == 403 and denied["error"] == {**denied["error"], "code": "Authorization_RequestDenied",
                                                 "message": "Insufficient privileges to complete the operation."}

    env.emu.tenant.users_can_register_apps = False
    nobody = env.admin_token([], user=f"nobody@{env.domain}")
    assert env.call("POST", "/v1.0/applications", token=nobody, body={"displayName": "y"})[0] == 403
    # the creator owns its app: a user without a role may still delete it
    env.emu.tenant.users_can_register_apps = True
    status, own = env.call("POST", "/v1.0/applications", token=nobody, body={"displayName": "mine"})
    assert status == 201
    assert env.call("DELETE", f"/v1.0/applications/{app['id']}", token=nobody)[0] == 403
    assert env.call("DELETE", f"/v1.0/applications/{own['id']}", token=nobody)[0] == 204

    read_only = str(env.device_login(scope=f"{GRAPH}/Application.Read.All openid profile")["access_token"])
    assert env.call("GET", "/v1.0/applications", token=read_only)[0] == 200
    assert env.call("POST", "/v1.0/applications", token=read_only, body={"displayName": "z"})[0] == 403


def test_certificate_credentials_through_patch(env: Env) -> None:
    """PATCH keyCredentials (replacing the set); the thumbprint and dates must match the
    certificate, which the token endpoint then knows."""
    admin = env.admin_token()
    status, app = env.call("POST", "/v1.0/applications", token=admin, body={"displayName": "cert"})
    cert = make_app_certificate("cert")
    from cryptography import x509

    der = x509.load_pem_x509_certificate(cert.certificate_pem).public_bytes(serialization.Encoding.DER)
    key = {"type": "AsymmetricX509Cert", "usage": "Verify", "key": base64.b64encode(der).decode(),
           "displayName": "CN=cert", "customKeyIdentifier": cert.sha1_thumbprint}
    wrong = {**key, "customKeyIdentifier": "00" * 20}
    assert env.call("PATCH", f"/v1.0/applications/{app['id']}", token=admin, body={"keyCredentials": [wrong]})[0] == 400
    too_long = {**key, "endDateTime": "2199-01-01T00:00:00Z"}
    assert env.call("PATCH", f"/v1.0/applications/{app['id']}", token=admin,
                    body={"keyCredentials": [too_long]})[0] == 400
    assert env.call("PATCH", f"/v1.0/applications/{app['id']}", token=admin, body={"keyCredentials": [key]})[0] == 204
    status, read = env.call("GET", f"/v1.0/applications/{app['id']}", token=admin)
    assert [k["customKeyIdentifier"] for k in read["keyCredentials"]] == [cert.sha1_thumbprint]
    assert env.emu.tenant.app(app["appId"]).find_key(bytes.fromhex(cert.sha1_thumbprint), None) is not None

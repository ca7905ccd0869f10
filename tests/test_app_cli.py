"""``dirgw app generate|check|remove|show`` end to end against the Graph emulator.

The emulator runs in a child process over HTTPS (`EmulatorProcess`); the commands run in this
process with the real msal (device code flow for the admin, client credentials for the app)
and requests, pointed at the emulator with ``--authority-host``/``--graph-url``/``--ca-bundle``.

- The admin's sign-in is approved from the test: the terminal the command prints to spots
  "enter the code XXXX" and approves that code through the emulator's admin API (with the
  directory roles the test wants the admin to have), so msal's first poll already succeeds.
- Entra's replication delay is the emulator's ``replication_delay`` (emulator time); the
  command's ``sleep`` advances the emulator's clock instead of waiting, so riding out a delay
  of a minute takes milliseconds.
- Every test works in a tenant of its own, so "no leftovers" is exact.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import stat
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msal
import pytest

from gateway.provision.commands import main
from gateway.provision.configfile import ConfigFileError, edit_source, write_source_keys
from gateway.provision.runtime import Runtime
from gateway.testing.process import EmulatorProcess

CONFIG = """\
# dirgw configuration (test)
[ldap]
listen = ["tcp:0:interface=127.0.0.1",   # loopback only
          "tcp:0:interface=::1"]
base_dn = "dc=example,dc=com"

# a local file, untouched by dirgw app
[[sources]]
name = "local"
type = "json_file"
path = "contacts.json"

# the Microsoft 365 tenant
[[sources]]
name = "m365"            # keep this comment
type = "m365_mail_contacts"
tenant_id = "{tenant}"   # the tenant's domain
interval = "5m"          # delta rounds

[sources.numbers]        # numbers for m365 only
country = "DE"
"""


@pytest.fixture(scope="module")
def emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess.start(tmp_path_factory.mktemp("emulator")) as process:
        yield process


@pytest.fixture
def emu(emulator_process: EmulatorProcess) -> EmulatorProcess:
    emulator_process.reset()
    return emulator_process


class Cli:
    """Runs ``dirgw app`` in this process against the emulator, as an admin at a terminal."""

    def __init__(self, emu: EmulatorProcess, tmp_path: Path) -> None:
        self.emu = emu
        self.tenant = f"t{uuid.uuid4().hex[:10]}.onmicrosoft.com"
        emu.add_tenant(self.tenant)
        emu.add_contacts([{"id": "c1", "displayName": "Ada Lovelace",
                           "phones": [{"type": "business", "number": "+49 89 1234-100"}]}],
                         tenant=self.tenant)
        self.dir = tmp_path
        self.config = tmp_path / "dirgw.toml"
        self.original = CONFIG.format(tenant=self.tenant)
        self.config.write_text(self.original, encoding="utf-8")
        (tmp_path / "contacts.json").write_text('{"value": []}', encoding="utf-8")
        self.admin_roles: list[str] | None = None
        """Directory roles of the admin who approves the sign-in (None: Global Administrator)."""
        self.decline = False
        self.slept: list[float] = []
        self.clock = 0.0
        self.out = ""
        self.err = ""

    def _sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock += seconds
        self.emu.advance_clock(seconds)

    def run(self, *argv: str, stdin: str = "", endpoints: bool = True) -> int:
        cli = self

        class Terminal(io.StringIO):
            def write(self, text: str) -> int:
                match = re.search(r"enter the code (\w+)", text)
                if match:
                    if cli.decline:
                        cli.emu.decline_device_code(match.group(1))
                    else:
                        cli.emu.approve_device_code(match.group(1), roles=cli.admin_roles)
                return super().write(text)

        stdout, stderr = Terminal(), io.StringIO()
        runtime = Runtime(sleep=self._sleep, monotonic=lambda: self.clock, hostname=lambda: "pbx1.example",
                          stdin=io.StringIO(stdin), jitter=lambda: 0.5)
        extra = ["--authority-host", self.emu.base_url, "--graph-url", self.emu.base_url,
                 "--ca-bundle", str(self.emu.ca_bundle)] if endpoints else []
        code = main([argv[0], "--config", str(self.config), *extra, *argv[1:]], stdout, stderr,
                    runtime=runtime)
        self.out, self.err = stdout.getvalue(), stderr.getvalue()
        return code

    def directory(self) -> dict[str, Any]:
        return self.emu.directory(self.tenant)

    def source(self) -> dict[str, Any]:
        data = tomllib.loads(self.config.read_text(encoding="utf-8"))
        return next(s for s in data["sources"] if s["name"] == "m365")


@pytest.fixture
def cli(emu: EmulatorProcess, tmp_path: Path) -> Cli:
    return Cli(emu, tmp_path)


def graph_get(emu: EmulatorProcess, path: str, token: str) -> Any:
    session = emu.requests_session()
    return session.get(emu.base_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# -- generate, check, show ----------------------------------------------------------------------


def test_generate_with_certificate_then_check_and_show(cli: Cli) -> None:
    """The happy path: every step printed in order, the app registered as specified, the config
    rewritten with every comment kept, the key file 0600, and the gateway's own credential
    loading gets a token that reads contacts."""
    assert cli.run("generate", "--source", "m365") == 0, cli.out + cli.err
    out = lines(cli.out)
    expected_order = ["Signing in to tenant", "To sign in, use a web browser", "signed in as admin@",
                      "looking up the Microsoft Graph service principal", "creating the application 'dirgw (pbx1)'",
                      "generating a certificate", "uploading the certificate",
                      "creating the service principal", "granting OrgContact.Read.All",
                      "writing tenant_id, client_id and certificate", "Entra admin center: https://entra.microsoft.com/",
                      "checking that the new credential", "access OK (granted roles: OrgContact.Read.All)", "done:"]
    positions = [next(i for i, line in enumerate(out) if line.startswith(p) or p in line) for p in expected_order]
    assert positions == sorted(positions), out
    assert cli.err == ""

    app = next(iter(cli.directory()["applications"]))
    assert app["display_name"] == "dirgw (pbx1)" and app["sign_in_audience"] == "AzureADMyOrg"
    assert app["has_service_principal"] and app["assigned_roles"] == ["OrgContact.Read.All"]
    assert app["required_resource_access"] == [{"resourceAppId": "00000003-0000-0000-c000-000000000000",
                                                "resourceAccess": [{"id": "e1a88a34-94c4-4418-be12-c87b00e26bea",
                                                                    "type": "Role"}]}]
    assert len(app["certificates"]) == 1 and app["secrets"] == []
    assert f"/appId/{app['client_id']}" in cli.out

    # the device code sign-in asked for exactly the two delegated permissions
    device = [r for r in cli.emu.requests() if r["kind"] == "devicecode"]
    assert len(device) == 1 and device[0]["status"] == 200
    calls = [(r["method"], re.sub(r"[0-9a-f-]{36}", "ID", r["path"])) for r in cli.emu.requests()
             if r["kind"] == "directory"]
    assert calls == [("GET", "/v1.0/servicePrincipals"), ("POST", "/v1.0/applications"),
                     ("PATCH", "/v1.0/applications/ID"), ("POST", "/v1.0/servicePrincipals"),
                     ("GET", "/v1.0/servicePrincipals/ID/appRoleAssignedTo"),
                     ("POST", "/v1.0/servicePrincipals/ID/appRoleAssignedTo")]

    # the configuration: only the source's keys were added; every other line is as it was
    text = cli.config.read_text(encoding="utf-8")
    added = [f'authority_host = "{cli.emu.base_url}"', f'graph_url = "{cli.emu.base_url}"',
             f'ca_bundle = "{cli.emu.ca_bundle}"', f'client_id = "{app["client_id"]}"',
             'certificate = "secrets/m365.pem"']
    assert text == cli.original.replace('interval = "5m"          # delta rounds\n',
                                        'interval = "5m"          # delta rounds\n' + "\n".join(added) + "\n")
    key_file = cli.dir / "secrets" / "m365.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    pem = key_file.read_text()
    assert "PRIVATE KEY" in pem and "CERTIFICATE" in pem
    assert "PRIVATE KEY" not in json.dumps(cli.emu.requests())

    # the gateway reads this configuration and its credential gets a token that reads contacts
    from gateway.auth import load_credential
    from gateway.config import load_config

    options = next(s for s in load_config(str(cli.config)).sources if s.name == "m365").options["m365"]
    assert options.client_id == app["client_id"] and options.certificate == str(key_file)
    result = msal.ConfidentialClientApplication(
        options.client_id, client_credential=load_credential(options),
        authority=f"{options.authority_host}/{options.tenant_id}", instance_discovery=False,
        http_client=cli.emu.requests_session()).acquire_token_for_client([f"{options.graph_url}/.default"])
    assert "access_token" in result, result
    contacts = graph_get(cli.emu, "/v1.0/contacts", result["access_token"])
    assert contacts.status_code == 200 and [c["displayName"] for c in contacts.json()["value"]] == ["Ada Lovelace"]

    assert cli.run("check", "--source", "m365") == 0, cli.out + cli.err
    assert lines(cli.out)[-1] == "access OK (granted roles: OrgContact.Read.All)"
    assert "the certificate expires on" in cli.out and "warning" not in cli.out

    assert cli.run("show", "--source", "m365", endpoints=False) == 0
    shown = cli.out
    assert f"application (client) id: {app['client_id']}" in shown
    assert f"application object id: {app['object_id']}" in shown
    assert re.search(r"credential: certificate secrets/m365.pem \(thumbprint [0-9A-F]{40}\), "
                     r"expires on \d{4}-\d\d-\d\d \(in 36[45] days\)", shown), shown
    assert f"Entra admin center: https://entra.microsoft.com/#view/Microsoft_AAD_RegisteredApps/" \
           f"ApplicationMenuBlade/~/Overview/appId/{app['client_id']}" in shown


def test_generate_with_secret_and_check_after_it_expires(cli: Cli) -> None:
    """--credential secret: the secret file (0600) holds the secret Entra made; check warns while
    it expires within 30 days and reports "credential expired" once it has."""
    assert cli.run("generate", "--source", "m365", "--credential", "secret", "--valid-days", "10") == 0, cli.out
    app = next(iter(cli.directory()["applications"]))
    secret_file = cli.dir / "secrets" / "m365.secret"
    assert secret_file.read_text().strip() == app["secrets"][0]
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert cli.source()["client_secret_file"] == "secrets/m365.secret" and "certificate" not in cli.source()
    assert app["secrets"][0] not in cli.out + cli.err

    assert cli.run("check", "--source", "m365") == 0
    assert re.search(r"warning: the client secret expires on \S+ \(in (9|10) days\)", cli.out), cli.out
    assert cli.run("show", "--source", "m365", endpoints=False) == 0
    assert "credential: client secret secrets/m365.secret, expires on" in cli.out
    assert "warning: the credential expires on" in cli.out

    cli.emu.advance_clock(11 * 86400)
    assert cli.run("check", "--source", "m365") == 5
    assert lines(cli.out)[-1].startswith("credential expired: AADSTS7000222")


# -- missing role, undo ----------------------------------------------------------------------------


@pytest.mark.parametrize(("roles", "registration_open", "named", "created"), [
    (["Cloud Application Administrator"], True, "Privileged Role Administrator or Global Administrator", True),
    ([], False, "Application Administrator or Cloud Application Administrator", False),
])
def test_admin_without_the_role_gets_a_clear_message_and_nothing_is_left(
        cli: Cli, roles: list[str], registration_open: bool, named: str, created: bool) -> None:
    """A Cloud Application Administrator may create the app but not grant a Graph app role:
    the grant's 403 names the role that can, and the app, its service principal, the credential
    files and the configuration are back as before.  A user without any role where users may not
    register apps is stopped at the first step."""
    cli.emu.set_tenant_options(cli.tenant, users_can_register_apps=registration_open)
    cli.admin_roles = roles
    assert cli.run("generate", "--source", "m365") == 8
    assert named in cli.err and "may not" in cli.err
    if created:
        assert "undoing what was created so far:" in cli.out
        assert "deleted application" in cli.out and "purged it from the deleted applications" in cli.out
        assert "removed" in cli.out
    directory = cli.directory()
    assert directory["applications"] == [] and directory["deleted"] == []
    assert cli.config.read_text(encoding="utf-8") == cli.original
    assert not (cli.dir / "secrets").exists() or list((cli.dir / "secrets").iterdir()) == []


def test_interrupted_generate_undoes_what_it_made(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in the middle (here: while the service principal is created) undoes everything."""
    from gateway.provision import graph_admin

    def interrupted(self: Any, app_id: str) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(graph_admin.GraphAdmin, "create_service_principal", interrupted)
    assert cli.run("generate", "--source", "m365") == 130
    assert "interrupted" in cli.out and "deleted application" in cli.out
    assert cli.directory()["applications"] == [] and cli.directory()["deleted"] == []
    assert cli.config.read_text() == cli.original and list((cli.dir / "secrets").iterdir()) == []


def test_declined_sign_in_creates_nothing(cli: Cli) -> None:
    cli.decline = True
    assert cli.run("generate", "--source", "m365") == 9
    assert "declined" in cli.err
    assert cli.directory()["applications"] == [] and cli.config.read_text() == cli.original


# -- replication delay ------------------------------------------------------------------------------


@pytest.mark.parametrize("credential", ["certificate", "secret"])
def test_generate_rides_out_the_replication_delay(cli: Cli, credential: str) -> None:
    """With a 40 s replication window new objects are 404 / "not a valid reference", the new
    credential is refused and the grant is not in tokens yet: generate retries each step with
    backoff (on the emulator's clock) and ends with working access."""
    cli.emu.settings(replication_delay=40)
    assert cli.run("generate", "--source", "m365", "--credential", credential) == 0, cli.out + cli.err
    assert "retrying in" in cli.out
    assert "not replicated yet (404 Request_ResourceNotFound); retrying in 2 s" in cli.out
    assert "not replicated yet (400 Request_BadRequest)" in cli.out  # SP or grant before replication
    assert ("the permission grant is not effective yet" in cli.out
            or "the new app or credential is not replicated yet" in cli.out)
    statuses = {(r["kind"], r["status"]) for r in cli.emu.requests()}
    assert ("directory", 404) in statuses and ("directory", 400) in statuses
    assert sum(cli.slept) >= 40 and max(cli.slept) <= 30
    assert lines(cli.out)[-2] == "access OK (granted roles: OrgContact.Read.All)"
    assert cli.run("check", "--source", "m365") == 0


# -- remove ---------------------------------------------------------------------------------------------


def test_remove_asks_then_removes_and_a_second_remove_succeeds(cli: Cli) -> None:
    assert cli.run("generate", "--source", "m365", "--credential", "secret") == 0
    app = next(iter(cli.directory()["applications"]))
    before = cli.config.read_text()

    assert cli.run("remove", "--source", "m365", stdin="n\n") == 10
    assert f"delete application {app['client_id']}" in cli.out and "nothing changed" in cli.out
    assert cli.config.read_text() == before and len(cli.directory()["applications"]) == 1

    assert cli.run("remove", "--source", "m365", stdin="y\n") == 0, cli.out + cli.err
    assert "deleted (its service principal and permission grants went with it)" in cli.out
    directory = cli.directory()
    assert directory["applications"] == [] and [a["client_id"] for a in directory["deleted"]] == [app["client_id"]]
    source = cli.source()
    assert "client_id" not in source and "client_secret_file" not in source
    assert source["tenant_id"] == cli.tenant
    assert list((cli.dir / "secrets").iterdir()) == []
    text = cli.config.read_text()
    assert "# keep this comment" in text and "[sources.numbers]        # numbers for m365 only" in text

    cli.emu.clear_requests()
    assert cli.run("remove", "--source", "m365", "--yes") == 0
    assert "already removed" in cli.out
    assert cli.emu.requests() == []  # nothing to do: no sign-in either


def test_remove_when_the_app_is_already_gone_cleans_up(cli: Cli) -> None:
    """The app was deleted in the portal: remove says so and still cleans the configuration."""
    assert cli.run("generate", "--source", "m365", "--credential", "secret") == 0
    client_id = cli.source()["client_id"]
    cli.emu.delete_app(client_id, cli.tenant)
    assert cli.run("remove", "--source", "m365", "--yes", "--purge") == 0, cli.out + cli.err
    assert f"application {client_id} already removed" in cli.out
    assert "client_id" not in cli.source() and list((cli.dir / "secrets").iterdir()) == []


# -- check verdicts ---------------------------------------------------------------------------------------


def test_check_reports_each_failure_with_its_exit_code(cli: Cli) -> None:
    assert cli.run("check", "--source", "m365") == 11 and "has no app" in cli.out
    assert cli.run("show", "--source", "m365") == 11
    assert cli.run("generate", "--source", "m365", "--credential", "secret") == 0
    client_id = cli.source()["client_id"]

    cli.emu.set_roles(client_id, ["User.Read.All"], cli.tenant)
    assert cli.run("check", "--source", "m365") == 3
    assert lines(cli.out)[-1].startswith(f"permission missing: application {client_id} has User.Read.All")

    cli.emu.set_roles(client_id, [], cli.tenant)
    assert cli.run("check", "--source", "m365") == 4
    assert lines(cli.out)[-1].startswith("admin consent missing:")
    assert "Privileged Role Administrator" in cli.out

    cli.emu.set_roles(client_id, ["OrgContact.Read.All"], cli.tenant)
    assert cli.run("check", "--source", "m365") == 0

    secret_file = cli.dir / "secrets" / "m365.secret"
    good = secret_file.read_text()
    secret_file.write_text("not-the-secret\n")
    assert cli.run("check", "--source", "m365") == 5
    assert lines(cli.out)[-1].startswith("credential invalid: AADSTS7000215")
    secret_file.unlink()
    assert cli.run("check", "--source", "m365") == 5 and "cannot read secret file" in cli.out
    secret_file.write_text(good)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"https://127.0.0.1:{s.getsockname()[1]}"
    assert cli.run("check", "--source", "m365", "--authority-host", closed) == 7
    assert lines(cli.out)[-1].startswith("tenant unreachable: cannot connect to 127.0.0.1")

    cli.emu.delete_app(client_id, cli.tenant)
    assert cli.run("check", "--source", "m365") == 6
    assert lines(cli.out)[-1].startswith(f"app deleted: application {client_id} is not in tenant")


def test_generate_for_a_new_source_appends_its_table(cli: Cli) -> None:
    assert cli.run("generate", "--source", "new") == 2 and "pass --tenant" in cli.err
    assert cli.run("generate", "--source", "new", "--tenant", cli.tenant, "--credential", "secret") == 0
    text = cli.config.read_text()
    assert text.startswith(cli.original)
    assert text[len(cli.original):].startswith('\n[[sources]]\nname = "new"\ntype = "m365_mail_contacts"\n')
    new = tomllib.loads(text)["sources"][2]
    assert new["tenant_id"] == cli.tenant and new["client_secret_file"] == "secrets/new.secret"


def test_usage_errors(cli: Cli) -> None:
    for argv, message in [(("check", "--source", "nope"), "no source named 'nope'"),
                          (("generate", "--source", "local"), "of type 'json_file'"),
                          (("generate", "--source", "m365", "--credential", "pgp"), "invalid choice"),
                          (("generate",), "--source")]:
        assert cli.run(*argv) == 2, argv
        assert message in cli.err, (argv, cli.err)
    assert cli.run("generate", "--source", "m365", "--credential", "secret") == 0
    assert cli.run("generate", "--source", "m365") == 2 and "already has client_id" in cli.err


# -- the configuration file rewrite ----------------------------------------------------------------------


def test_config_rewrite_keeps_every_other_line(tmp_path: Path) -> None:
    """Keys are replaced in place (keeping their comment), removed, or added after the table's
    last key; multi-line values, sub-tables, CRLF endings and other tables stay as they were."""
    text = ('# top\r\n[[sources]]\r\nname = "a"\r\ntype = "json_file"\r\npath = "x"\r\n\r\n'
            '[[sources]]\r\nname = "m365"\r\ntype = "m365_mail_contacts"\r\n'
            'client_secret_file = "old.secret"   # old\r\n'
            'tenant_id = "old.example"  # the tenant\r\n'
            'notes = """\r\n[[sources]]\r\nnot a table"""\r\n'
            'list = [\r\n  1, # one\r\n  2,\r\n]\r\n'
            '# a comment before the sub-table\r\n[sources.numbers]\r\ncountry = "DE"\r\n')
    new = edit_source(text, "m365", {"tenant_id": "new.example", "client_id": "abc",
                                     "certificate": 'secrets/m "365".pem'},
                      ["client_secret_file", "client_secret_env"])
    assert new == text.replace('client_secret_file = "old.secret"   # old\r\n', "").replace(
        'tenant_id = "old.example"  # the tenant', 'tenant_id = "new.example"  # the tenant').replace(
        '  2,\r\n]\r\n', '  2,\r\n]\r\nclient_id = "abc"\r\ncertificate = "secrets/m \\"365\\".pem"\r\n')
    appended = edit_source(text, "other", {"tenant_id": "t"})
    assert appended.startswith(text) and appended.endswith(
        '\r\n[[sources]]\r\nname = "other"\r\ntype = "m365_mail_contacts"\r\ntenant_id = "t"\r\n')
    with pytest.raises(ConfigFileError, match="not all written as"):
        edit_source('sources = [{name = "m365", type = "m365_mail_contacts"}]\n', "m365", {"client_id": "x"})

    path = tmp_path / "dirgw.toml"
    path.write_text('[[sources]]\nname = "m365"\n')
    os.chmod(path, 0o640)
    assert write_source_keys(path, "m365", {"client_id": "x"})
    assert path.read_text() == '[[sources]]\nname = "m365"\nclient_id = "x"\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert not write_source_keys(path, "m365", {"client_id": "x"})
    assert [p.name for p in tmp_path.iterdir()] == ["dirgw.toml"]  # no temp file left behind

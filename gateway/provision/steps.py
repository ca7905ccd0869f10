"""``app generate``, ``app remove`` and ``app show``: the steps, printed as they happen.

generate (graph.md §10.2): sign in (device code) → find the Microsoft Graph service
principal and the ``OrgContact.Read.All`` app role → create the application → add the
credential (a certificate made here, or a client secret) → create its service principal →
grant the app role (``appRoleAssignedTo``) → write ``tenant_id``, ``client_id`` and the
credential reference into the source's table → wait until the new credential reads contacts.
Each Graph step retries while Entra has not replicated a new object yet (§10.3).  If a step
before the configuration is written fails (missing directory role, Ctrl-C, anything), what was
made is undone: the application is deleted and purged from the deleted items (its service
principal and grant go with it) and the credential files are removed.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, Callable

from attrs import define

from gateway.provision.check import TokenFailure, acquire_app_token, expiry_note, read_one_contact, token_roles
from gateway.provision.configfile import edit_source, write_source_keys
from gateway.provision.errors import (EXIT_ADMIN_ROLE, EXIT_NOT_CONFIGURED, EXIT_NOT_CONFIRMED,
                                      EXIT_OK, EXIT_PENDING, EXIT_USAGE, GraphError, ProvisionError)
from gateway.provision.files import remove_file, write_private
from gateway.provision.graph_admin import (ADMIN_SCOPES, GRAPH_APP_ID, ORG_CONTACT_READ_ALL,
                                           ORG_CONTACT_READ_ALL_ID, GraphAdmin, sign_in)
from gateway.provision.metadata import (SECRETS_DIR, AppRecord, from_iso, iso, read_record, remove_record,
                                        write_record)
from gateway.provision.runtime import Printer, Runtime, replication_or_transient, retry
from gateway.provision.target import CREDENTIAL_KEYS, Target, app_link

__all__ = ["GenerateOptions", "RemoveOptions", "generate", "remove", "show"]

_CREATE_ROLES = ("the Application Administrator or Cloud Application Administrator role (or Global "
                 "Administrator)")
_GRANT_ROLES = "the Privileged Role Administrator or Global Administrator role"


@define
class GenerateOptions:
    credential: str = "certificate"
    """``certificate`` or ``secret``."""
    valid_days: int | None = None
    """Lifetime of the credential (default: 365 days for a certificate, 180 for a secret)."""
    display_name: str | None = None
    wait: float = 300.0
    """Seconds to wait for Entra to replicate (per step, and for the final access check)."""
    admin_client_id: str | None = None


@define
class RemoveOptions:
    yes: bool = False
    purge: bool = False
    admin_client_id: str | None = None
    wait: float = 120.0


class _Undo:
    """What generate made so far, to be removed again if it cannot finish."""

    def __init__(self, admin: GraphAdmin, target: Target, out: Printer, runtime: Runtime,
                 budget: float) -> None:
        self._admin = admin
        self._target = target
        self._out = out
        self._runtime = runtime
        self._budget = budget
        self._actions: list[tuple[str, Any]] = []

    def application(self, object_id: str, app_id: str) -> None:
        self._actions.append(("application", (object_id, app_id)))

    def file(self, path: Path) -> None:
        self._actions.append(("file", path))

    def run(self) -> None:
        if not self._actions:
            return
        self._out("undoing what was created so far:")
        for kind, value in reversed(self._actions):
            if kind == "file":
                if remove_file(value):
                    self._out(f"  removed {_relative(value, self._target.config_dir)}")
                continue
            object_id, app_id = value
            try:
                retry(self._runtime, self._out, "deleting the application",
                      lambda: self._admin.delete_application(object_id), replication_or_transient,
                      self._budget)
                self._out(f"  deleted application {app_id} (with its service principal and grants)")
            except ProvisionError as e:
                self._out(f"  could not delete application {app_id}: {e.message}")
                self._out(f"  delete it in the Entra admin center: {app_link(self._target.cloud, app_id)}")
                continue
            try:
                retry(self._runtime, self._out, "purging the deleted application",
                      lambda: self._admin.purge_deleted(object_id), replication_or_transient,
                      min(self._budget, 60.0))
                self._out("  purged it from the deleted applications")
            except ProvisionError as e:
                self._out(f"  it stays under Deleted applications for 30 days ({e.message})")
        self._actions.clear()


def _denied(e: Exception, user: str, what: str, needs: str) -> ProvisionError | None:
    if isinstance(e, GraphError) and e.denied:
        return ProvisionError(
            f"{user} may not {what}: this needs {needs} (Graph answered {e.short()}: "
            f"{e.graph_message}). Ask someone with that role to run this command, or to assign "
            "you the role.", EXIT_ADMIN_ROLE)
    return None


def _step(runtime: Runtime, out: Printer, budget: float, user: str, what: str, roles: str,
          call: Callable[[], Any]) -> Any:
    try:
        return retry(runtime, out, what, call, replication_or_transient, budget)
    except GraphError as e:
        denied = _denied(e, user, what, roles)
        if denied is not None:
            raise denied from None
        raise


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def generate(target: Target, options: GenerateOptions, out: Printer, runtime: Runtime) -> int:
    source = target.source
    if target.get("client_id"):
        raise ProvisionError(
            f"source {source!r} already has client_id {target.get('client_id')}; run "
            f"`dirgw app remove --source {source}` first (or remove client_id from {target.config_path})",
            EXIT_USAGE)
    if not target.tenant:
        raise ProvisionError(f"source {source!r} has no tenant_id: pass --tenant (the tenant's domain "
                             "or GUID)", EXIT_USAGE)
    if options.credential not in ("certificate", "secret"):
        raise ProvisionError("--credential must be certificate or secret", EXIT_USAGE)
    days = options.valid_days or (365 if options.credential == "certificate" else 180)
    hostname = runtime.hostname().split(".")[0] or "localhost"
    display_name = options.display_name or f"dirgw ({hostname})"
    credential_key = "certificate" if options.credential == "certificate" else "client_secret_file"
    credential_path = target.config_dir / SECRETS_DIR / (
        f"{source}.pem" if options.credential == "certificate" else f"{source}.secret")
    credential_ref = _relative(credential_path, target.config_dir)
    removed_keys = [k for k in CREDENTIAL_KEYS if k != credential_key]
    base_values = {"tenant_id": target.tenant, **target.written_overrides}

    # Before touching the tenant: can the configuration file be rewritten?
    try:
        text = target.config_path.read_text(encoding="utf-8") if target.config_path.exists() else ""
    except (OSError, UnicodeDecodeError) as e:
        raise ProvisionError(f"cannot read {target.config_path}: {e}") from None
    edit_source(text, source, {**base_values, "client_id": "00000000-0000-0000-0000-000000000000",
                               credential_key: credential_ref}, removed_keys)
    if not os.access(target.config_dir, os.W_OK):
        raise ProvisionError(f"cannot write into {target.config_dir}")
    if credential_path.exists():
        raise ProvisionError(f"{credential_path} exists already; move it away first", EXIT_USAGE)

    out(f"Signing in to tenant {target.tenant} (device code; delegated permissions "
        f"{', '.join(ADMIN_SCOPES)})")
    session = sign_in(target, out, *([options.admin_client_id] if options.admin_client_id else []))
    out(f"signed in as {session.user}")
    admin = GraphAdmin(target, session.access_token)
    user = session.user
    budget = options.wait
    undo = _Undo(admin, target, out, runtime, budget)
    try:
        out("looking up the Microsoft Graph service principal")
        graph_sp = _step(runtime, out, budget, user, "read service principals",
                         _CREATE_ROLES,
                         admin.graph_service_principal)
        role_id = next((r.get("id") for r in graph_sp.get("appRoles") or []
                        if r.get("value") == ORG_CONTACT_READ_ALL), None)
        if role_id is None:
            raise ProvisionError(f"the Microsoft Graph service principal has no app role "
                                 f"{ORG_CONTACT_READ_ALL}")
        if role_id != ORG_CONTACT_READ_ALL_ID:
            out(f"  note: {ORG_CONTACT_READ_ALL} has id {role_id} here (expected {ORG_CONTACT_READ_ALL_ID})")
        out(f"  found {graph_sp['id']}; {ORG_CONTACT_READ_ALL} is app role {role_id}")

        out(f"creating the application {display_name!r}")
        spec = {
            "displayName": display_name,
            "signInAudience": "AzureADMyOrg",
            "notes": f"Created by dirgw app generate on {hostname} for source {source!r} of "
                     f"{target.config_path}. Reads Exchange Online mail contacts for the LDAP gateway.",
            "tags": ["dirgw"],
            "requiredResourceAccess": [{"resourceAppId": GRAPH_APP_ID,
                                        "resourceAccess": [{"id": role_id, "type": "Role"}]}],
        }
        try:
            application = admin.create_application(spec)
        except GraphError as e:
            denied = _denied(e, user, "create app registrations", _CREATE_ROLES)
            if denied is not None:
                raise denied from None
            raise
        object_id, app_id = application["id"], application["appId"]
        undo.application(object_id, app_id)
        out(f"  application (client) id {app_id}, object id {object_id}")

        now = runtime.wall_clock()
        if options.credential == "certificate":
            from gateway.provision.certificate import generate_certificate

            out(f"generating a certificate (RSA 2048, valid {days} days); the private key stays in "
                f"{credential_ref}")
            certificate = generate_certificate(f"dirgw {source} {hostname}", days, now)
            undo.file(credential_path)
            certificate.write(credential_path)
            out(f"uploading the certificate (thumbprint {certificate.sha1_thumbprint})")
            key = {"type": "AsymmetricX509Cert", "usage": "Verify",
                   "key": base64.b64encode(certificate.certificate_der).decode("ascii"),
                   "displayName": f"CN=dirgw {source} {hostname}",
                   "customKeyIdentifier": certificate.sha1_thumbprint,
                   "startDateTime": iso(certificate.not_before.timestamp()),
                   "endDateTime": iso(certificate.not_after.timestamp())}
            _step(runtime, out, budget, user, "add the certificate to the application", _CREATE_ROLES,
                  lambda: admin.set_key_credentials(object_id, [key]))
            key_id, thumbprint = None, certificate.sha1_thumbprint
            expires = iso(certificate.not_after.timestamp())
            msal_credential: Any = {"private_key": certificate.private_key_pem.decode("ascii"),
                                    "public_certificate": certificate.certificate_pem.decode("ascii")}
        else:
            end = iso(now + days * 86400)
            out(f"adding a client secret valid until {end}")
            password = _step(runtime, out, budget, user, "add a client secret to the application",
                             _CREATE_ROLES, lambda: admin.add_password(object_id, f"dirgw {source}", end))
            undo.file(credential_path)
            write_private(credential_path, (password["secretText"] + "\n").encode("utf-8"))
            out(f"  secret written to {credential_ref} (mode 0600)")
            key_id, thumbprint = password.get("keyId"), None
            expires = password.get("endDateTime") or end
            msal_credential = password["secretText"]

        out("creating the service principal (enterprise application)")
        service_principal = _step(runtime, out, budget, user, "create service principals", _CREATE_ROLES,
                                  lambda: admin.create_service_principal(app_id))
        sp_id = service_principal["id"]
        out(f"  service principal {sp_id}")

        out(f"granting {ORG_CONTACT_READ_ALL} (application permission) with admin consent")
        granted = any(a.get("principalId") == sp_id and a.get("appRoleId") == role_id
                      for a in admin.role_assignments(graph_sp["id"]))
        if not granted:
            _step(runtime, out, budget, user,
                  f"grant the application permission {ORG_CONTACT_READ_ALL} (admin consent to a "
                  "Microsoft Graph app role)", _GRANT_ROLES,
                  lambda: admin.assign_role(graph_sp["id"], sp_id, role_id))
        out("  granted")

        out(f"writing tenant_id, client_id and {credential_key} into source {source!r} of "
            f"{target.config_path}")
        write_source_keys(target.config_path, source,
                          {**base_values, "client_id": app_id, credential_key: credential_ref},
                          removed_keys)
    except BaseException as e:
        if isinstance(e, ProvisionError):
            out(f"error: {e.message}")
        elif isinstance(e, KeyboardInterrupt):
            out("interrupted")
        else:
            out(f"error: {type(e).__name__}: {e}")
        undo.run()
        raise
    try:
        write_record(target.config_dir, AppRecord(
            source=source, tenant=target.tenant, tenant_guid=session.tenant_guid, client_id=app_id,
            object_id=object_id, display_name=display_name, credential=options.credential,
            credential_file=credential_ref, key_id=key_id, thumbprint=thumbprint, expires=expires,
            created=iso(now)))
    except OSError as e:
        out(f"warning: cannot record the app's details next to the credential ({e}); "
            "app show will not know the credential's expiry")
    out(f"Entra admin center: {app_link(target.cloud, app_id)}")
    return _await_access(target, app_id, msal_credential, out, runtime, options.wait)


class _NotYet(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _await_access(target: Target, app_id: str, credential: Any, out: Printer, runtime: Runtime,
                  budget: float) -> int:
    """Wait until the new app reads contacts with its new credential (replication, §10.3)."""
    assert target.tenant is not None
    tenant = target.tenant
    out("checking that the new credential can read contacts (Entra may need a while)")

    def attempt() -> list[str] | None:
        try:
            token = acquire_app_token(target, tenant, app_id, credential)
        except TokenFailure as e:
            if e.replicating:
                raise _NotYet(f"the new app or credential is not replicated yet (token: {e.error})") from None
            raise ProvisionError(f"Entra refuses a token for the new app: {e.error}: {e.description}") from None
        status, code = read_one_contact(target, token)
        if status == 403:
            raise _NotYet("the permission grant is not effective yet (Graph: 403)")
        if status in (429, 500, 502, 503, 504):
            raise _NotYet(f"Graph is busy ({status})")
        if status != 200:
            raise ProvisionError(f"Graph answered {status} {code} to the new app")
        return token_roles(token)

    try:
        roles = retry(runtime, out, "access check", attempt,
                      lambda e: e.reason if isinstance(e, _NotYet) else None, budget)
    except _NotYet as e:
        out(f"warning: access does not work yet ({e.reason}); the app and the configuration are "
            f"in place: run `dirgw app check --source {target.source}` in a few minutes")
        return EXIT_PENDING
    out(f"access OK (granted roles: {', '.join(roles or []) or 'unknown'})")
    out(f"done: source {target.source!r} now uses application {app_id}")
    return EXIT_OK


def _our_files(target: Target, record: AppRecord | None) -> list[Path]:
    """Credential files generate made (listed in its record, or in our secrets directory)."""
    secrets_dir = (target.config_dir / SECRETS_DIR).resolve()
    files: list[Path] = []
    if record is not None and record.credential_file:
        files.append(target.config_dir / record.credential_file)
    for key in ("certificate", "client_secret_file"):
        path = target.config_relative(target.get(key))
        if path is not None and path.resolve().parent == secrets_dir and path not in files:
            files.append(path)
    return files


def remove(target: Target, options: RemoveOptions, out: Printer, runtime: Runtime) -> int:
    source = target.source
    record = read_record(target.config_dir, source)
    client_id = target.get("client_id") or (record.client_id if record is not None else None)
    references = [k for k in ("client_id", *CREDENTIAL_KEYS) if target.get(k) is not None]
    files = [f for f in _our_files(target, record) if f.exists()]
    if client_id is None and not references and not files and record is None:
        out(f"source {source!r} has no app: already removed")
        return EXIT_OK
    if not options.yes:
        what = [f"delete application {client_id} from tenant {target.tenant}"] if client_id else []
        if references:
            what.append(f"remove {', '.join(references)} from {target.config_path.name}")
        if files:
            what.append(f"delete {', '.join(_relative(f, target.config_dir) for f in files)}")
        out.prompt(f"This will {'; '.join(what)}. Continue? [y/N] ")
        answer = runtime.read_line().strip().lower()
        if answer not in ("y", "yes"):
            out("not confirmed; nothing changed")
            return EXIT_NOT_CONFIRMED
    if client_id:
        if not target.tenant:
            raise ProvisionError(f"source {source!r} has no tenant_id: pass --tenant", EXIT_USAGE)
        out(f"Signing in to tenant {target.tenant} (device code; delegated permission "
            f"{ADMIN_SCOPES[0]})")
        session = sign_in(target, out, *([options.admin_client_id] if options.admin_client_id else []))
        out(f"signed in as {session.user}")
        admin = GraphAdmin(target, session.access_token)
        out(f"looking up application {client_id}")
        try:
            application = retry(runtime, out, "looking up the application",
                                lambda: admin.get_application(client_id),
                                lambda e: replication_or_transient(e) if isinstance(e, GraphError)
                                and e.transient else None, options.wait)
        except GraphError as e:
            if e.status != 404:
                denied = _denied(e, session.user, "read app registrations", _CREATE_ROLES)
                raise denied or e from None
            application = None
            out(f"  application {client_id} already removed")
        if application is not None:
            out(f"deleting application {client_id} ({application.get('displayName')})")
            try:
                retry(runtime, out, "deleting the application",
                      lambda: admin.delete_application(application["id"]), replication_or_transient,
                      options.wait)
            except GraphError as e:
                if e.status == 404:
                    out(f"  application {client_id} already removed")
                else:
                    denied = _denied(e, session.user, "delete this app registration",
                                     f"{_CREATE_ROLES}, or ownership of the app")
                    raise denied or e from None
            else:
                out("  deleted (its service principal and permission grants went with it)")
                if options.purge:
                    try:
                        retry(runtime, out, "purging the deleted application",
                              lambda: admin.purge_deleted(application["id"]), replication_or_transient,
                              options.wait)
                        out("  purged from the deleted applications")
                    except GraphError as e:
                        out(f"  could not purge it ({e.short()}); it stays under Deleted "
                            "applications for 30 days")
                else:
                    out("  it can be restored under Deleted applications for 30 days (--purge "
                        "deletes it for good)")
    if references:
        out(f"removing {', '.join(references)} from source {source!r} of {target.config_path}")
        write_source_keys(target.config_path, source, {}, ["client_id", *CREDENTIAL_KEYS])
    for path in files:
        if remove_file(path):
            out(f"deleted {_relative(path, target.config_dir)}")
    if remove_record(target.config_dir, source):
        out(f"deleted {_relative(target.config_dir / SECRETS_DIR / f'{source}.app.json', target.config_dir)}")
    out(f"done: source {source!r} has no app now")
    return EXIT_OK


def show(target: Target, out: Printer, runtime: Runtime) -> int:
    source = target.source
    client_id = target.get("client_id")
    if not client_id:
        out(f"source {source!r} has no app (run `dirgw app generate --source {source}`)")
        return EXIT_NOT_CONFIGURED
    record = read_record(target.config_dir, source)
    if record is not None and record.client_id != client_id:
        record = None
    now = runtime.wall_clock()
    out(f"source: {source} ({target.config_path})")
    out(f"tenant: {target.tenant}")
    out(f"application (client) id: {client_id}")
    if record is not None:
        out(f"application object id: {record.object_id}")
        out(f"display name: {record.display_name}")
        out(f"created: {record.created}")
    expires: float | None = None
    if target.get("certificate"):
        from gateway.provision.certificate import certificate_info

        path = target.config_relative(target.get("certificate"))
        try:
            thumbprint, expires = certificate_info(path)  # type: ignore[arg-type]
            out(f"credential: certificate {target.get('certificate')} (thumbprint {thumbprint}), "
                f"{expiry_note(expires, now)}")
        except (OSError, ValueError) as e:
            out(f"credential: certificate {target.get('certificate')} (cannot read it: {e})")
    elif target.get("client_secret_file") or target.get("client_secret_env"):
        where = target.get("client_secret_file") or f"${target.get('client_secret_env')}"
        if record is not None and record.credential == "secret":
            try:
                expires = from_iso(record.expires)
            except ValueError:
                expires = None
        out(f"credential: client secret {where}, "
            + (expiry_note(expires, now) if expires is not None else "expiry unknown (not made by "
               "dirgw app generate; see the Entra admin center)"))
    else:
        out("credential: none configured")
    if expires is not None and expires - now < 30 * 86400:
        out(f"warning: the credential {expiry_note(expires, now)}")
    out(f"Entra admin center: {app_link(target.cloud, client_id)}")
    return EXIT_OK


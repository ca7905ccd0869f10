"""``dirgw app check``: can the configured app read contacts, and if not, why.

Acquires an app-only token with the source's own credential (msal
``ConfidentialClientApplication``, a fresh cache), reads one contact
(``GET /v1.0/contacts?$top=1``) and reports exactly one verdict, each with its exit code
(`gateway.provision.errors`):

==========================  ====  ==================================================================
verdict                     exit  when
==========================  ====  ==================================================================
access OK                   0     the contact read worked; the token's ``roles`` are listed
permission missing          3     the token has application permissions, none lets it read contacts
admin consent missing       4     the token carries no application permission at all
credential invalid/expired  5     Entra rejects the secret or certificate (or it cannot be read,
                                  or the local certificate has expired)
app deleted                 6     Entra does not know the client id (AADSTS700016)
tenant unreachable          7     network, TLS or proxy failure, unknown tenant, Entra/Graph 5xx
==========================  ====  ==================================================================

A warning is printed when the credential expires within 30 days.  The expiry comes from the
app registration when the app may read it, else from the local certificate, else from what
``app generate`` recorded (`gateway.provision.metadata`).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from gateway.provision.errors import (EXIT_APP_DELETED, EXIT_CONSENT_MISSING, EXIT_CREDENTIAL, EXIT_ERROR,
                                      EXIT_OK, EXIT_PERMISSION_MISSING, EXIT_UNREACHABLE, ProvisionError,
                                      Unreachable)
from gateway.provision.graph_admin import ORG_CONTACT_READ_ALL, _first_line, http_session, network_problem
from gateway.provision.metadata import AppRecord, from_iso, iso
from gateway.provision.runtime import Printer, Runtime
from gateway.provision.target import Target, admin_consent_link, api_permissions_link, is_microsoft_host

__all__ = ["check_access", "acquire_app_token", "token_roles", "TokenFailure", "WARN_DAYS",
           "CONTACT_ROLES", "expiry_note"]

WARN_DAYS = 30
#: Application permissions that let an app read orgContacts.
CONTACT_ROLES = frozenset({ORG_CONTACT_READ_ALL, "Directory.Read.All", "Directory.ReadWrite.All"})


class TokenFailure(Exception):
    """Entra refused a client-credentials token: its ``error`` and AADSTS codes."""

    def __init__(self, error: str, codes: tuple[int, ...], description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.codes = codes
        self.description = description

    @property
    def verdict(self) -> tuple[str, int]:
        if self.error == "invalid_client":
            expired = 7000222 in self.codes or "expired" in self.description.lower()
            return ("credential expired" if expired else "credential invalid"), EXIT_CREDENTIAL
        if self.error == "unauthorized_client" or 700016 in self.codes:
            return "app deleted", EXIT_APP_DELETED
        if self.error in ("invalid_tenant",) or 90002 in self.codes:
            return "tenant unreachable", EXIT_UNREACHABLE
        if self.error in ("temporarily_unavailable", "server_error"):
            return "tenant unreachable", EXIT_UNREACHABLE
        return "token refused", EXIT_ERROR

    @property
    def replicating(self) -> bool:
        """Errors a brand-new app or credential gets until Entra has replicated it."""
        return self.error in ("invalid_client", "unauthorized_client")


def acquire_app_token(target: Target, tenant: str, client_id: str, credential: Any) -> str:
    """An app-only Graph token (fresh msal cache); raises `TokenFailure` or `Unreachable`."""
    import msal
    import requests

    try:
        app = msal.ConfidentialClientApplication(
            client_id, client_credential=credential, authority=f"{target.authority_host}/{tenant}",
            http_client=http_session(target, target.authority_host),
            instance_discovery=is_microsoft_host(target.authority_host))
        result = app.acquire_token_for_client([f"{target.graph_url}/.default"])
    except requests.exceptions.RequestException as e:
        raise network_problem(target, target.authority_host, e) from None
    except ValueError as e:
        raise Unreachable(f"tenant {tenant} not found at {target.authority_host}: {_first_line(e)}") from None
    if "access_token" in result:
        return str(result["access_token"])
    description = str(result.get("error_description", "")).split("\r\n", 1)[0].split("\n", 1)[0]
    raise TokenFailure(str(result.get("error", "unknown_error")),
                       tuple(int(c) for c in result.get("error_codes") or () if str(c).isdigit()),
                       description[:300])


def token_roles(token: str) -> list[str] | None:
    """The ``roles`` claim of a token, for diagnostics (None when the token is opaque)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    roles = claims.get("roles") if isinstance(claims, dict) else None
    return sorted(str(r) for r in roles) if isinstance(roles, list) else []


def read_one_contact(target: Target, token: str) -> tuple[int, str]:
    """(status, Graph error code or "") of ``GET /v1.0/contacts?$top=1``."""
    import requests

    session = http_session(target, target.graph_url)
    url = f"{target.graph_url}/v1.0/contacts?$top=1&$select=id"
    try:
        response = session.get(url, headers={"Authorization": f"Bearer {token}"})
    except requests.exceptions.RequestException as e:
        raise network_problem(target, url, e) from None
    code = ""
    if response.status_code >= 400:
        try:
            code = str(response.json()["error"]["code"])
        except (ValueError, KeyError, TypeError):
            code = ""
    return response.status_code, code


def expiry_note(expires: float, now: float) -> str:
    days = (expires - now) / 86400
    day = iso(expires)[:10]
    if days < 0:
        return f"expired on {day}"
    return f"expires on {day} (in {int(days)} day{'s' if int(days) != 1 else ''})"


def _remote_expiry(target: Target, token: str, client_id: str, thumbprint: str | None,
                   key_id: str | None, secret_hint: str | None) -> float | None:
    """The credential's endDateTime from the app registration, when the app may read it."""
    session = http_session(target, target.graph_url)
    try:
        response = session.get(
            f"{target.graph_url}/v1.0/applications(appId='{client_id}')"
            "?$select=keyCredentials,passwordCredentials",
            headers={"Authorization": f"Bearer {token}"})
        if response.status_code != 200:
            return None
        body = response.json()
    except Exception:  # noqa: BLE001 (best effort only)
        return None
    try:
        if thumbprint:
            for key in body.get("keyCredentials") or []:
                if str(key.get("customKeyIdentifier") or "").upper() == thumbprint:
                    return from_iso(key["endDateTime"])
        else:
            for password in body.get("passwordCredentials") or []:
                if (key_id and password.get("keyId") == key_id) or (
                        secret_hint and password.get("hint") == secret_hint):
                    return from_iso(password["endDateTime"])
    except (KeyError, ValueError, TypeError, AttributeError):
        return None
    return None


def check_access(target: Target, options: Any, record: AppRecord | None, out: Printer,
                 runtime: Runtime) -> int:
    """Run the check for a source whose `gateway.m365config.M365Options` are ``options``."""
    from gateway.auth import TokenError, load_credential

    kind = options.credential_kind
    reference = options.certificate or options.client_secret_file or f"${options.client_secret_env}"
    out(f"source {target.source}: tenant {options.tenant_id}, application {options.client_id}, "
        f"{'certificate' if kind == 'certificate' else 'client secret'} {reference}")
    now = runtime.wall_clock()
    record = record if record is not None and record.client_id == options.client_id else None

    def verdict(text: str, code: int) -> int:
        out(text)
        return code

    thumbprint = None
    local_expiry = None
    if options.certificate:
        from gateway.provision.certificate import certificate_info

        try:
            thumbprint, local_expiry = certificate_info(Path(options.certificate))
        except (OSError, ValueError) as e:
            return verdict(f"credential invalid: cannot read the certificate {options.certificate}: {e}",
                           EXIT_CREDENTIAL)
        if local_expiry <= now:
            return verdict(f"credential expired: the certificate {options.certificate} "
                           f"{expiry_note(local_expiry, now)}", EXIT_CREDENTIAL)
    try:
        credential = load_credential(options)
    except TokenError as e:
        return verdict(f"credential invalid: {e.description}", EXIT_CREDENTIAL)
    if isinstance(credential, dict):
        from cryptography.hazmat.primitives import serialization

        try:
            serialization.load_pem_private_key(credential["private_key"].encode("ascii"), None)
        except (ValueError, TypeError) as e:
            return verdict(f"credential invalid: the private key in {options.certificate} cannot be "
                           f"used: {e}", EXIT_CREDENTIAL)

    out(f"acquiring a token from {target.authority_host} with the "
        f"{'certificate' if kind == 'certificate' else 'client secret'}")
    try:
        token = acquire_app_token(target, options.tenant_id, options.client_id, credential)
    except Unreachable as e:
        return verdict(f"tenant unreachable: {e.message}", EXIT_UNREACHABLE)
    except TokenFailure as e:
        text, code = e.verdict
        if code == EXIT_APP_DELETED:
            text += (f": application {options.client_id} is not in tenant {options.tenant_id} "
                     "(deleted, or created moments ago and not replicated yet)")
        return verdict(f"{text}: {e.description}" if code != EXIT_APP_DELETED else text, code)
    roles = token_roles(token)
    out(f"  token OK; granted application permissions: "
        f"{', '.join(roles) if roles else ('none' if roles is not None else 'unknown (opaque token)')}")

    secret_hint = None
    if isinstance(credential, str):
        secret_hint = credential[:3]
    expires = _remote_expiry(target, token, options.client_id, thumbprint,
                             record.key_id if record else None, secret_hint)
    if expires is None:
        expires = local_expiry
    if expires is None and record is not None:
        try:
            expires = record.expires_at()
        except ValueError:
            expires = None
    if expires is not None:
        note = expiry_note(expires, now)
        if expires - now < WARN_DAYS * 86400:
            out(f"warning: the {'certificate' if kind == 'certificate' else 'client secret'} {note}; "
                "create a new one before then (dirgw app remove, then dirgw app generate)")
        else:
            out(f"  the {'certificate' if kind == 'certificate' else 'client secret'} {note}")

    out(f"reading one contact from {target.graph_url}")
    try:
        status, code = read_one_contact(target, token)
    except Unreachable as e:
        return verdict(f"tenant unreachable: {e.message}", EXIT_UNREACHABLE)
    if status == 200:
        return verdict(f"access OK (granted roles: {', '.join(roles or []) or 'unknown'})", EXIT_OK)
    if status == 403:
        consent = admin_consent_link(target.authority_host, options.tenant_id, options.client_id)
        if roles == []:
            return verdict(
                f"admin consent missing: application {options.client_id} has no granted application "
                f"permission; someone with the Privileged Role Administrator or Global Administrator "
                f"role must grant admin consent for {ORG_CONTACT_READ_ALL} (run dirgw app generate, "
                f"or open {consent})", EXIT_CONSENT_MISSING)
        granted = ", ".join(roles or []) or "unknown"
        if roles and CONTACT_ROLES & set(roles):
            note = " (granted moments ago? Entra may take minutes to apply it; check again later)"
        else:
            note = ""
        return verdict(
            f"permission missing: application {options.client_id} has {granted} but Graph refuses "
            f"to read contacts; grant {ORG_CONTACT_READ_ALL} (application) with admin consent: "
            f"{api_permissions_link(target.cloud, options.client_id)}{note}", EXIT_PERMISSION_MISSING)
    if status in (429, 500, 502, 503, 504):
        return verdict(f"tenant unreachable: Graph answered {status} {code}".rstrip(), EXIT_UNREACHABLE)
    raise ProvisionError(f"Graph answered {status} {code} to GET /v1.0/contacts", EXIT_ERROR)

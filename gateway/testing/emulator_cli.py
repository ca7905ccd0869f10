"""``dirgw emulator``: run the Graph emulator standalone on the global reactor.

Seeds the default tenant from ``--contacts`` (a list or ``{"value": [...]}`` of orgContacts),
registers one app with a random client secret (written to ``STATE_DIR/client.secret``, mode
0600) and ``OrgContact.Read.All``, listens on HTTPS and prints what a gateway source needs.
With ``--json`` it prints those values as one JSON line instead (for test harnesses).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, TextIO

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dirgw emulator",
                                description="Run a fake Microsoft 365 tenant (Entra + Graph) on loopback HTTPS.")
    p.add_argument("--contacts", metavar="FILE", help="JSON contacts to seed (a list or {\"value\": [...]})")
    p.add_argument("--port", type=int, default=0, help="TCP port (0: any free port; default 0)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--state-dir", metavar="DIR",
                   help="where the CA, server certificate and secret go (default: a new temp dir)")
    p.add_argument("--page-size", type=int, default=100, help="items per page (default 100)")
    p.add_argument("--latency", type=float, default=0.0, help="response time of each Graph page, in seconds")
    p.add_argument("--tenant", default="contoso.onmicrosoft.com", help="tenant domain")
    p.add_argument("--tenant-id", help="tenant GUID (default: random)")
    p.add_argument("--client-id", help="client id of the registered app (default: random)")
    p.add_argument("--token-lifetime", type=int, default=3599, help="expires_in of access tokens")
    p.add_argument("--allow-other-phone-types", action="store_true",
                   help="accept phone types orgContact lacks (home, ...) instead of rejecting the file")
    p.add_argument("--json", action="store_true", help="print the values as one JSON line")
    return p


def _load_contacts(path: str | None) -> Any:
    if path is None:
        return []
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_secret(path: Path, secret: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")


def _toml_string(value: str) -> str:
    return json.dumps(value)


def _report(values: dict[str, Any], example_id: str | None) -> str:
    base, ca = values["base_url"], values["ca_bundle"]
    lines = [
        f"Graph emulator listening on {base} "
        f"(tenant {values['tenant_domain']} = {values['tenant_guid']}, {values['contacts']} contacts)",
        "",
        "Source configuration:",
        "[[sources]]",
        'name = "m365"',
        'type = "m365_mail_contacts"',
    ]
    for key in ("tenant_id", "client_id", "client_secret_file", "authority_host", "graph_url", "ca_bundle"):
        lines.append(f"{key} = {_toml_string(values[key])}")
    lines += ["", "Admin API (same server): " + f"{base}/_emulator/state"]
    contact_id = example_id or "CONTACT-ID"
    lines += [
        "Rename a contact:",
        f"  curl --cacert {ca} -X PATCH {base}/_emulator/contacts/{contact_id} "
        "-H 'Content-Type: application/json' -d '{\"displayName\": \"Renamed Contact\"}'",
        "Add or replace a contact:",
        f"  curl --cacert {ca} -X POST {base}/_emulator/contacts "
        "-H 'Content-Type: application/json' "
        "-d '{\"displayName\": \"New Person\", \"phones\": [{\"type\": \"business\", \"number\": \"+1 555 0100\"}]}'",
        "Remove a contact:",
        f"  curl --cacert {ca} -X DELETE {base}/_emulator/contacts/{contact_id}",
        "Approve the sign-in of `dirgw app generate|remove` (device code; as admin@<tenant>):",
        f"  curl --cacert {ca} -X POST {base}/_emulator/devicecode/approve "
        "-H 'Content-Type: application/json' -d '{}'",
        "",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str], stdout: TextIO) -> int:
    """Run the emulator until the reactor stops; 0 on a clean stop, 2 on bad arguments."""
    args = _parser().parse_args(argv)
    try:
        contacts = _load_contacts(args.contacts)
    except (OSError, ValueError) as e:
        print(f"dirgw emulator: cannot read contacts: {e}", file=sys.stderr)
        return 2

    from twisted.internet import defer, reactor

    from gateway.testing.emulator import GraphEmulator
    from gateway.testing.tenant import new_secret

    state_dir = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="dirgw-emulator-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        emulator = GraphEmulator(reactor, state_dir, domain=args.tenant, tenant_id=args.tenant_id,
                                 page_size=args.page_size, latency=args.latency,
                                 token_lifetime=args.token_lifetime,
                                 other_phone_types=args.allow_other_phone_types)
        seeded = emulator.add_contacts(contacts)
    except ValueError as e:
        print(f"dirgw emulator: {e}", file=sys.stderr)
        if "phone type" in str(e):
            print("dirgw emulator: --allow-other-phone-types accepts such contacts anyway",
                  file=sys.stderr)
        return 2
    secret = new_secret()
    app = emulator.register_app(client_id=args.client_id or str(uuid.uuid4()), secret=secret)
    secret_file = state_dir / "client.secret"
    _write_secret(secret_file, secret)
    outcome: dict[str, int] = {"code": 0}

    async def start() -> None:
        try:
            await emulator.start(args.port, args.host)
        except Exception as e:  # noqa: BLE001 (any listen failure ends the command)
            print(f"dirgw emulator: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
            outcome["code"] = 1
            reactor.stop()
            return
        values = {
            **emulator.source_config(app.client_id, secret_file),
            "tenant_domain": emulator.tenant.domain,
            "tenant_guid": emulator.tenant.tenant_id,
            "base_url": emulator.base_url,
            "port": emulator.port,
            "state_dir": str(state_dir),
            "contacts": len(emulator.tenant.contacts),
        }
        if args.json:
            stdout.write(json.dumps(values) + "\n")
        else:
            stdout.write(_report(values, seeded[0]["id"] if seeded else None))
        stdout.flush()

    reactor.callWhenRunning(lambda: defer.Deferred.fromCoroutine(start()))
    reactor.run()
    return outcome["code"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], sys.stdout))

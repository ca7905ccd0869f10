"""``dirgw demo``: an emulated Microsoft 365 tenant and the gateway, on loopback, in one process.

The emulator is seeded with ``conf/demo-contacts.json``; the gateway's
``m365_mail_contacts`` source syncs from it over HTTPS with the real msal and
treq.  A printed curl command changes a contact in the emulator; the change
reaches LDAP after the next delta round.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import IO, Sequence

__all__ = ["main"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CONFIG = """\
# written by dirgw demo
[ldap]
listen = ["tcp:{port}:interface=127.0.0.1"]
base_dn = "dc=example,dc=com"
size_limit = 1000
anonymous = true

[numbers]
country = "DE"
area_code = "89"
outside_line = "0"
main_number = "+49 89 1234-0"
extension_length = 3
output = "e164"

[proximity]
enabled = true
max_extension_digits = 5
marker = "~"

[[sources]]
name = "m365"
type = "m365_mail_contacts"
tenant_id = "{tenant}"
client_id = "{client_id}"
client_secret_file = "{secret_file}"
authority_host = "{base_url}"
graph_url = "{base_url}"
ca_bundle = "{ca_bundle}"
interval = "{interval}"
"""


def _hints(port: int, base_url: str, ca: str, contact_id: str) -> str:
    ldap = f"ldapsearch -x -H ldap://127.0.0.1:{port} -b dc=example,dc=com"
    return f"""
dirgw demo: an emulated Microsoft 365 tenant at {base_url}
            and the gateway on ldap://127.0.0.1:{port} (base dc=example,dc=com)

Try, in another terminal (ldapsearch comes with Debian's ldap-utils):

  # a phone's directory key: names starting with "mey"
  {ldap} '(|(cn=mey*)(sn=mey*))' cn telephoneNumber mobile

  # caller ID as the PBX sends it; the contact stored the bare extension "-217"
  {ldap} '(|(telephoneNumber=0891234217)(mobile=0891234217))' cn o telephoneNumber

  # the same caller with the outside-line 0, and in international form
  {ldap} '(telephoneNumber=00891234217)' cn
  {ldap} '(telephoneNumber=+49891234217)' cn

  # an extension nobody has: the company's main number answers, marked "~"
  {ldap} '(telephoneNumber=+49891234999)' cn telephoneNumber

  # dial-pad completion, umlauts without umlauts, the root DSE
  {ldap} '(|(telephoneNumber=0891234*)(mobile=0891234*))' cn telephoneNumber
  {ldap} '(sn=muller)' cn
  {ldap} -b '' -s base '(objectClass=*)' '+'

Change a contact in the emulated tenant; it shows up after the next delta round:

  curl -s --cacert {ca} -X PATCH -H 'Content-Type: application/json' \\
       -d '{{"displayName": "Jürgen Müller (renamed)"}}' {base_url}/_emulator/contacts/{contact_id}
  {ldap} '(cn=*renamed*)' cn

Stop with Ctrl-C.
"""


def main(argv: Sequence[str] | None = None, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = argparse.ArgumentParser(prog="dirgw demo", description="Run the demo on loopback.")
    parser.add_argument("--port", type=int, default=3389, help="LDAP port (default 3389)")
    parser.add_argument("--contacts", default=os.path.join(ROOT, "conf", "demo-contacts.json"))
    parser.add_argument("--interval", default="10s", help="delta round interval (default 10s)")
    parser.add_argument("--state-dir", default=None)
    args = parser.parse_args(argv)

    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from gateway.config import parse_config
    from gateway.logs import start_logging
    from gateway.service import make_gateway
    from gateway.testing.emulator import GraphEmulator
    from gateway.testing.tenant import new_secret

    with open(args.contacts, encoding="utf-8") as f:
        contacts = json.load(f)
    state_dir = args.state_dir or tempfile.mkdtemp(prefix="dirgw-demo-")
    os.makedirs(state_dir, exist_ok=True)
    emulator = GraphEmulator(reactor, state_dir, other_phone_types=True)
    emulator.site.log = lambda request: None  # no access log lines in the demo's output
    seeded = emulator.add_contacts(contacts)
    secret = new_secret()
    app = emulator.register_app(secret=secret)
    secret_file = os.path.join(state_dir, "client.secret")
    with open(os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(secret)
    outcome = {"code": 0}
    start_logging("text", "info", stderr)

    async def run() -> None:
        try:
            await emulator.start(0, "127.0.0.1")
            config_path = os.path.join(state_dir, "dirgw.toml")
            with open(config_path, "w", encoding="utf-8") as f:
                f.write(_CONFIG.format(port=args.port, tenant=emulator.tenant.domain, client_id=app.client_id,
                                       secret_file=secret_file, base_url=emulator.base_url,
                                       ca_bundle=str(emulator.ca_bundle), interval=args.interval))
            gateway = make_gateway(parse_config(open(config_path, encoding="utf-8").read(), config_path), reactor)
            await gateway.start()
        except Exception as e:
            print(f"dirgw demo: cannot start: {e}", file=stderr)
            outcome["code"] = 1
            reactor.stop()
            return
        reactor.addSystemEventTrigger("before", "shutdown", gateway.stop)
        first = next((c["id"] for c in seeded if c.get("displayName") == "Jürgen Müller"), seeded[0]["id"])
        stdout.write(_hints(args.port, emulator.base_url, str(emulator.ca_bundle), first))
        stdout.flush()
        await Deferred()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(run()))
    reactor.run()
    return outcome["code"]

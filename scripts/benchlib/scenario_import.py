"""Initial import of N contacts from the Graph emulator against its floor (issue 4, 9).

The emulator answers every delta page after ``latency`` seconds; the floor is
pages x latency.  While the import runs, ldapload sends caller-ID lookups as
phones send them; afterwards the same load runs on the idle gateway.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time

from common import DATA, Gateway, caller_id_filters, dataset, ldapload, log

from gateway.testing.process import EmulatorProcess

CONFIG = """
[ldap]
listen = ["tcp:0:interface=127.0.0.1"]
base_dn = "dc=example,dc=com"
[numbers]
country = "DE"
[[sources]]
name = "m365"
type = "m365_mail_contacts"
tenant_id = "{tenant}"
client_id = "{client_id}"
client_secret_file = "{secret}"
authority_host = "{base}"
graph_url = "{base}"
ca_bundle = "{ca}"
interval = "1h"
"""


def run(n: int, latency: float, page_size: int = 100) -> dict:
    data = dataset(n)
    filters = caller_id_filters(data)
    work = tempfile.mkdtemp(prefix="import-", dir=DATA)
    with open(os.path.join(data, "contacts.json"), encoding="utf-8") as f:
        contacts = json.load(f)
    log(f"import: starting the emulator with {n} contacts, {page_size} per page, {latency * 1000:.0f} ms per page")
    emu = EmulatorProcess.start(os.path.join(work, "emulator"), contacts, page_size=page_size, latency=latency,
                                extra_args=["--allow-other-phone-types"], timeout=300)
    pages = -(-n // page_size)
    floor = pages * latency
    try:
        config = os.path.join(work, "dirgw.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(tenant=emu.tenant_domain, client_id=emu.client_id, secret=emu.secret_file,
                                  base=emu.base_url, ca=emu.ca_bundle))
        gw = Gateway(config)
        try:
            start_line = gw.wait_for(re.compile("full import started"), 60)
            started = [t for t, l in gw.lines if l == start_line][0]
            during: dict = {}

            def load() -> None:
                during.update(ldapload(gw.port, filters, conns=8, duration=max(2.0, floor * 0.6), warmup=1.0,
                                       server_pid=gw.proc.pid))

            loader = threading.Thread(target=load)
            loader.start()
            done_line = gw.wait_for(re.compile("full import done"), floor * 10 + 120)
            finished = [t for t, l in gw.lines if l == done_line][0]
            loader.join()
            idle = ldapload(gw.port, filters, conns=8, duration=5.0, warmup=1.0, server_pid=gw.proc.pid)
        finally:
            gw.stop()
    finally:
        emu.stop()
    took = finished - started
    return {
        "contacts": n, "pages": pages, "latency_ms": latency * 1000, "import_s": round(took, 2),
        "floor_s": round(floor, 2), "ratio": round(took / floor, 3) if floor else None,
        "callerid_p99_during_ms": during.get("p99_ms"), "callerid_p99_idle_ms": idle.get("p99_ms"),
        "callerid_ops_during": during.get("ops_s"), "callerid_ops_idle": idle.get("ops_s"),
        "hits_per_op_idle": idle.get("entries_per_op"),
    }

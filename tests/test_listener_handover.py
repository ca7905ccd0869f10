"""Listening sockets handed over from a gateway to the one that replaces it (a restart after a large
import, ``dirgw serve`` execing itself): connections that come while neither listens wait in the
socket's backlog and are answered by the new gateway, instead of being refused.

Real gateways in this process, on the real reactor (trial), queried by ldap3 from a thread.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from gateway.config import parse_config
from gateway.service import make_gateway
from tests.support import CONFIG, contact, write_contacts


def lookup(port: int, number: str) -> list[str]:
    import ldap3

    conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=port, get_info=ldap3.NONE, connect_timeout=10),
                            auto_bind=True, receive_timeout=10)
    conn.search("dc=example,dc=com", f"(telephoneNumber={number})", attributes=["cn"])
    names = [str(e.cn) for e in conn.entries]
    conn.unbind()
    return names


def holding(fd: int) -> int:
    """How many of this process's descriptors hold the socket ``fd`` is now (Linux: /proc)."""
    target = os.readlink(f"/proc/self/fd/{fd}")
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}") == target
        except OSError:  # the listing's own descriptor, closed meanwhile
            pass
    return count


class HandoverTests(TestCase):
    timeout = 60

    def config(self, listen: str = "tcp:0:interface=127.0.0.1"):
        directory = tempfile.mkdtemp(prefix="dirgw-handover-")
        self.addCleanup(shutil.rmtree, directory, True)
        contacts = os.path.join(directory, "contacts.json")
        write_contacts(contacts, [contact("a", given="Anna", surname="Alt", phones=[("business", "+49 89 1234-567")])])
        text = CONFIG.format(size_limit=100, anonymous="true", contacts=contacts)
        text = text.replace('listen = ["tcp:0:interface=127.0.0.1"]', f'listen = ["{listen}"]')
        return parse_config(text, os.path.join(directory, "dirgw.toml"))

    async def started(self, config, listening=None):
        gateway = make_gateway(config, reactor, listening=listening)
        await gateway.start()
        self.addCleanup(gateway.stop)
        return gateway

    async def test_a_connection_made_between_the_two_gateways_is_answered_by_the_second(self):
        config = self.config()
        first = await self.started(config)
        port = first.listener.ports[0].getHost().port
        self.assertEqual(await deferToThread(lookup, port, "+49891234567"), ["Anna Alt"])
        fds = first.hand_over_listeners()
        self.assertEqual(sorted(fds), ["LDAP tcp:0:interface=127.0.0.1", "admin HTTP tcp:0:interface=127.0.0.1"])
        sockets = {key: os.readlink(f"/proc/self/fd/{fd}") for key, fd in fds.items()}
        await first.stop()
        asked = deferToThread(lookup, port, "+49891234567")  # nobody accepts it yet: it waits in the backlog
        second = await self.started(config, listening=fds)
        self.assertEqual(second.listener.ports[0].getHost().port, port)  # the same socket
        self.assertEqual(await asked, ["Anna Alt"])
        for key, adopted in (("LDAP tcp:0:interface=127.0.0.1", second.listener.ports[0]),
                             ("admin HTTP tcp:0:interface=127.0.0.1", second.admin.ports[0])):
            # the socket handed over is now the port's alone: the descriptor handed over is closed
            self.assertEqual(os.readlink(f"/proc/self/fd/{adopted.fileno()}"), sockets[key])
            self.assertEqual(holding(adopted.fileno()), 1)

    async def test_a_socket_no_binding_takes_is_closed(self):
        first = await self.started(self.config())
        port = first.listener.ports[0].getHost().port
        fds = first.hand_over_listeners()
        await first.stop()
        self.assertEqual(sum(holding(fd) for fd in fds.values()), 2)  # the two sockets, one descriptor each
        moved = self.config(listen="tcp:0:interface=127.0.0.1:backlog=10")  # another binding now
        second = await self.started(moved, listening=fds)
        self.assertNotEqual(second.listener.ports[0].getHost().port, port)
        probe = socket.socket()
        self.addCleanup(probe.close)
        self.assertNotEqual(probe.connect_ex(("127.0.0.1", port)), 0)  # the old socket listens no more

    async def test_an_ldaps_socket_is_handed_over_with_its_tls(self):
        import subprocess

        from gateway.testing.tls import ensure_server_files

        directory = tempfile.mkdtemp(prefix="dirgw-handover-tls-")
        self.addCleanup(shutil.rmtree, directory, True)
        files = ensure_server_files(os.path.join(directory, "tls"))
        contacts = os.path.join(directory, "contacts.json")
        write_contacts(contacts, [contact("a", given="Anna", surname="Alt", phones=[("business", "+49 89 1234-567")])])
        text = CONFIG.format(size_limit=100, anonymous="true", contacts=contacts).replace(
            'listen = ["tcp:0:interface=127.0.0.1"]',
            'listen = ["ssl:0:interface=127.0.0.1"]\ntls_certificate = "tls/server.pem"\ntls_key = "tls/server-key.pem"')
        config = parse_config(text, os.path.join(directory, "dirgw.toml"))
        first = await self.started(config)
        port = first.listener.ports[0].getHost().port
        fds = first.hand_over_listeners()
        self.assertIn("LDAP ssl:0:interface=127.0.0.1", fds)
        await first.stop()

        def ldaps_lookup():
            env = dict(os.environ, LDAPTLS_CACERT=str(files.ca_cert), LDAPTLS_REQCERT="demand")
            return subprocess.run(["ldapsearch", "-x", "-LLL", "-H", f"ldaps://127.0.0.1:{port}", "-b",
                                   "dc=example,dc=com", "(telephoneNumber=+49891234567)", "cn"],
                                  capture_output=True, text=True, timeout=30, env=env)

        asked = deferToThread(ldaps_lookup)  # waits in the backlog for the second gateway
        second = await self.started(config, listening=fds)
        self.assertEqual(second.listener.ports[0].getHost().port, port)
        result = await asked
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("cn: Anna Alt", result.stdout)

"""Microsoft 365 sync against the Graph emulator: real msal, real treq, real HTTPS on loopback.

These tests run on the real reactor (trial TestCase, which pytest runs as it is)
because msal works in the reactor's thread pool and HTTPS needs real sockets.
Time that matters (retry backoff, intervals, request timeouts) is on injected
``task.Clock`` objects that the tests advance; nothing sleeps.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
import uuid

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import TestCase

from gateway.auth import MsalTokenProvider
from gateway.config import parse_config
from gateway.graph.client import GraphClient
from gateway.graph.http import make_http_client
from gateway.index import ContactIndex
from gateway.sync.m365 import M365Source
from gateway.testing.emulator import GraphEmulator
from gateway.testing.faults import Fault
from tests.support import contact


def people(n, prefix="p"):
    return [contact(f"{prefix}-{i}", given=f"Given{i}", surname=f"Surname{i}", company="Acme GmbH",
                    phones=[("business", f"+49 89 1234-{100 + i}")]) for i in range(n)]


async def until(condition, clocks=(), limit=60.0):
    """Spin the real reactor (for I/O and msal threads) until ``condition()``; advance the
    given fake clocks to their next call now and then.  ``limit`` (seconds) only guards
    against a hang; nothing waits on real time for behaviour."""
    deadline = time.monotonic() + limit
    i = 0
    while time.monotonic() < deadline:
        i += 1
        if condition():
            return
        await deferLater(reactor, 0, lambda: None)
        if i % 20 == 19:
            for clock in clocks:
                calls = clock.getDelayedCalls()
                if calls:
                    clock.advance(max(0.0, min(c.getTime() for c in calls) - clock.seconds()))
    raise AssertionError("condition not reached")


class EmulatorCase(TestCase):
    timeout = 120

    async def setUp(self):
        directory = tempfile.mkdtemp(prefix="dirgw-sync-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.emulator = GraphEmulator(reactor, directory, page_size=7)
        os.makedirs(self.emulator.state_dir, exist_ok=True)
        await self.emulator.start()
        self.addCleanup(lambda: ensureDeferred(self.emulator.stop()))
        self.secret = "s3cr3t-" + uuid.uuid4().hex
        self.app = self.emulator.register_app(secret=self.secret)
        self.secret_file = os.path.join(str(self.emulator.state_dir), "client.secret")
        with open(self.secret_file, "w") as f:
            f.write(self.secret)
        self.clock = Clock()
        self.timeouts = Clock()
        self.index = ContactIndex()

    def config(self, name="m365", source_extra="", top="", client_id=None, secret_file=None, tenant=None):
        """A parsed configuration whose one m365 source points at the emulator."""
        values = self.emulator.source_config(client_id or self.app.client_id, secret_file or self.secret_file,
                                             tenant=tenant)
        lines = "\n".join(f'{k} = "{v}"' for k, v in values.items())
        return parse_config(
            f'{top}[[sources]]\nname = "{name}"\ntype = "m365_mail_contacts"\n{lines}\n{source_extra}',
            os.path.join(str(self.emulator.state_dir), "dirgw.toml"),
        )

    def m365_source(self, config, name="m365"):
        """The sync of the configuration's source, timeouts on ``self.timeouts``, retries on ``self.clock``."""
        options = config.sources[0].options["m365"]
        http = make_http_client(reactor, options.ca_bundle, options.proxy)
        self.addCleanup(http._agent._pool.closeCachedConnections)
        tokens = MsalTokenProvider(options, reactor, now=self.clock.seconds)
        graph = GraphClient(http, tokens, self.timeouts, timeout=30)
        return M365Source(name, graph, self.index, self.clock, options.graph_url, options.interval,
                          identity=options.identity(), rng=random.Random(1))

    def source(self, name="m365", secret_file=None, interval="5m"):
        return self.m365_source(self.config(name, f'interval = "{interval}"\n', secret_file=secret_file), name)

    def names(self, source="m365"):
        return sorted(c.name for c in self.index.contacts(source))

    async def run_round(self, source):
        from twisted.internet.defer import ensureDeferred

        d = ensureDeferred(source.sync_once())
        outcome = []
        d.addBoth(outcome.append)
        await until(lambda: outcome, clocks=(self.clock,))
        if isinstance(outcome[0], BaseException) or hasattr(outcome[0], "raiseException"):
            outcome[0].raiseException()
        return outcome[0]


class SyncTests(EmulatorCase):
    async def test_full_import_across_many_pages_then_delta(self):
        """A full import follows nextLinks to the deltaLink; a delta round applies adds, changes and removals."""
        self.emulator.seed_contacts(people(50))
        source = self.source()
        self.assertTrue(await self.run_round(source))
        self.assertEqual(len(self.names()), 50)
        self.assertGreaterEqual(source.state.pages, 8)
        self.assertIsNotNone(source.state.delta_link)

        self.emulator.add_contact(contact("new-1", given="Neu", surname="Kunde", phones=[("mobile", "0171 5550001")]))
        self.emulator.change_contact("p-3", displayName="Given3 Umbenannt", surname="Umbenannt")
        self.emulator.remove_contact("p-4")
        self.emulator.remove_contact("p-5", permanent=True)
        self.assertTrue(await self.run_round(source))
        names = self.names()
        self.assertEqual(len(names), 49)
        self.assertIn("Neu Kunde", names)
        self.assertIn("Given3 Umbenannt", names)
        self.assertNotIn("Given4 Surname4", names)
        delta_requests = [r for r in self.emulator.requests if r.kind == "delta"]
        self.assertTrue(any("deltatoken" in r.query.lower() for r in delta_requests))

    async def test_throttling_honours_retry_after(self):
        """429 and 503 wait Retry-After seconds on the clock, then the same page is fetched again."""
        self.emulator.seed_contacts(people(20))
        self.emulator.inject("delta", Fault.throttle(17), count=2)
        self.emulator.inject("delta", Fault.unavailable(5), count=1)
        source = self.source()
        start = self.clock.seconds()
        self.assertTrue(await self.run_round(source))
        self.assertEqual(len(self.names()), 20)
        self.assertEqual(source.state.throttled, 3)
        self.assertGreaterEqual(self.clock.seconds() - start, 17 + 17 + 5)

    async def test_transient_faults_retry_with_backoff(self):
        """500, 504, dropped connections and malformed or truncated JSON are retried; nothing is lost."""
        self.emulator.seed_contacts(people(30))
        for fault in (Fault.error(500), Fault.error(504), Fault.drop(), Fault.truncated_json(),
                      Fault.malformed_json(), Fault.wrong_shape(), Fault.cut()):
            self.emulator.inject("delta", fault)
        source = self.source()
        self.assertTrue(await self.run_round(source))
        self.assertEqual(len(self.names()), 30)

    async def test_request_timeout(self):
        """A page that never comes is abandoned after the timeout and fetched again."""
        self.emulator.seed_contacts(people(5))
        self.emulator.inject("delta", Fault.slow(3600))
        source = self.source()
        from twisted.internet.defer import ensureDeferred

        outcome = []
        ensureDeferred(source.sync_once()).addBoth(outcome.append)
        await until(lambda: self.emulator.faults.pending("delta") == 0)
        await until(lambda: self.timeouts.getDelayedCalls())
        self.timeouts.advance(31)
        await until(lambda: outcome, clocks=(self.clock,))
        self.assertEqual(outcome, [True])
        self.assertEqual(len(self.names()), 5)

    async def test_expired_delta_token_reimports_while_serving_old_data(self):
        """400 syncStateNotFound starts a full re-import; the old data stays until the swap."""
        self.emulator.seed_contacts(people(10))
        source = self.source()
        await self.run_round(source)
        self.emulator.remove_contact("p-1", permanent=True)
        self.emulator.expire_delta_tokens()
        self.emulator.inject("delta", Fault.slow(0.05))
        self.assertTrue(await self.run_round(source))
        self.assertEqual(len(self.names()), 9)

    async def test_forced_reset_410(self):
        """410 Gone starts a full re-import."""
        self.emulator.seed_contacts(people(6))
        source = self.source()
        await self.run_round(source)
        self.emulator.reset_delta_sync()
        self.emulator.add_contact(contact("late", given="Spät", surname="Dazu"))
        self.assertTrue(await self.run_round(source))
        self.assertIn("Spät Dazu", self.names())

    async def test_missing_permission_stops_source_but_keeps_data(self):
        """403 names the missing permission; the last good data keeps being served."""
        self.emulator.seed_contacts(people(4))
        source = self.source()
        await self.run_round(source)
        self.app.roles = ()
        self.emulator.revoke_tokens()
        self.emulator.add_contact(contact("x", given="Nicht", surname="Sichtbar"))
        self.assertFalse(await self.run_round(source))
        self.assertEqual(source.state.state, "failed")
        self.assertIn("OrgContact.Read.All", source.state.reason)
        self.assertEqual(len(self.names()), 4)

    async def test_wrong_secret(self):
        """A wrong client secret is reported as a credential problem, and the secret is not shown."""
        bad = os.path.join(str(self.emulator.state_dir), "bad.secret")
        with open(bad, "w") as f:
            f.write("wrong-secret-value")
        source = self.source(secret_file=bad)
        self.assertFalse(await self.run_round(source))
        self.assertIn("invalid_client", source.state.reason)
        self.assertNotIn("wrong-secret-value", source.state.reason)

    async def test_expired_access_token_gets_a_fresh_one(self):
        """401 on an expired token: one fresh token, then the page."""
        self.emulator.seed_contacts(people(3))
        source = self.source()
        await self.run_round(source)
        self.emulator.revoke_tokens()
        self.emulator.add_contact(contact("y", given="Nach", surname="Erneuerung"))
        self.assertTrue(await self.run_round(source))
        self.assertIn("Nach Erneuerung", self.names())

    async def test_two_sources_side_by_side(self):
        """Two tenants sync into one index without touching each other's contacts."""
        self.emulator.seed_contacts(people(3, "a"))
        other = self.emulator.add_tenant("fabrikam.onmicrosoft.com")
        self.emulator.seed_contacts(people(2, "b"), tenant=other)
        app2 = self.emulator.register_app(secret=self.secret, tenant=other)
        first = self.source("one")
        second = self.m365_source(self.config("two", client_id=app2.client_id, tenant=other), "two")
        await self.run_round(first)
        await self.run_round(second)
        self.assertEqual(len(self.names("one")), 3)
        self.assertEqual(len(self.names("two")), 2)
        self.emulator.remove_contact("a-0")
        await self.run_round(first)
        self.assertEqual(len(self.names("one")), 2)
        self.assertEqual(len(self.names("two")), 2)


class ProxyTests(EmulatorCase):
    """Both msal (token) and treq (Graph) reach the tenant through an HTTP CONNECT proxy."""

    async def test_sync_through_connect_proxy(self):
        from gateway.testing.proxy import ConnectProxy

        proxy = ConnectProxy(reactor, credentials="dirgw:pa ss")
        await proxy.start()
        self.addCleanup(lambda: ensureDeferred(proxy.stop()))
        self.emulator.seed_contacts(people(12))
        url = proxy.url.replace("http://", "http://dirgw:pa%20ss@")
        source = self.m365_source(self.config(source_extra=f'proxy = "{url}"\n'))
        self.assertTrue(await self.run_round(source))
        self.assertEqual(len(self.names()), 12)
        port = self.emulator.port
        self.assertGreaterEqual(proxy.tunnels.count(f"127.0.0.1:{port}"), 2)  # msal's and treq's

    async def test_proxy_refusing_credentials(self):
        from gateway.testing.proxy import ConnectProxy

        proxy = ConnectProxy(reactor, credentials="right:pw")
        await proxy.start()
        self.addCleanup(lambda: ensureDeferred(proxy.stop()))
        options = self.config(source_extra=f'proxy = "{proxy.url}"\n').sources[0].options["m365"]
        tokens = MsalTokenProvider(options, reactor)
        with self.assertRaises(Exception) as info:
            await tokens.token()
        self.assertIn("unreachable", str(info.exception))
        self.assertGreaterEqual(proxy.refused, 1)


class RoundAtomicityTests(EmulatorCase):
    async def test_search_never_sees_half_a_round(self):
        """Pages of a delta round are applied together: while the second page is still on its way,
        searches see none of the first page's changes; afterwards they see all of them."""
        from twisted.internet.defer import Deferred, ensureDeferred

        self.emulator.seed_contacts(people(5))
        source = self.source()
        await self.run_round(source)
        for i in range(12):  # two pages of 7
            self.emulator.add_contact(contact(f"n-{i}", given="Neu", surname=f"Nummer{i}"))
        gate = Deferred()
        graph = source._graph
        real_get = graph.get_json
        calls = []

        async def gated(url, headers=None):
            calls.append(url)
            if len(calls) == 2:
                await gate
            return await real_get(url, headers)

        graph.get_json = gated
        outcome = []
        ensureDeferred(source.sync_once()).addBoth(outcome.append)
        await until(lambda: len(calls) == 2)
        self.assertEqual(len(self.names()), 5)  # the first page arrived, but nothing is applied yet
        gate.callback(None)
        await until(lambda: outcome, clocks=(self.clock,))
        self.assertEqual(outcome, [True])
        self.assertEqual(len(self.names()), 17)


class GatewayDuringImportTests(EmulatorCase):
    async def test_ldap_answers_while_a_large_import_runs(self):
        """Names become searchable as pages arrive, and LDAP answers throughout the import."""
        from twisted.internet.defer import ensureDeferred
        from twisted.internet.threads import deferToThread

        import ldap3

        from gateway.service import make_gateway

        self.emulator.seed_contacts(people(300))
        self.emulator.settings.update({"page_size": 20, "latency": 0.01})
        config = self.config(top='[ldap]\nlisten = ["tcp:0:interface=127.0.0.1"]\n[admin]\nlisten = ""\n')
        gateway = make_gateway(config, reactor, clock=self.clock)
        await gateway.start()
        self.addCleanup(gateway.stop)
        port = gateway.listener.ports[0].getHost().port

        def count_people():
            conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=port, get_info=ldap3.NONE), auto_bind=True)
            conn.search("dc=example,dc=com", "(o=Acme GmbH)", attributes=["cn"], size_limit=0)
            n = len(conn.entries)
            conn.unbind()
            return n

        self.clock.advance(0)  # the first round starts
        seen = []
        source = gateway.sources["m365"]
        while source.state.state != "idle":
            seen.append(await deferToThread(count_people))
        seen.append(await deferToThread(count_people))
        self.assertEqual(seen[-1], 300)
        partial = [n for n in seen if 0 < n < 300]
        self.assertTrue(partial, f"no partial result seen during the import: {seen}")
        self.assertEqual(seen, sorted(seen))


class TLSPolicyTests(EmulatorCase):
    """The Graph client keeps one TLS configuration per host and port (Twisted's policy makes one
    per request); certificates are checked all the same, on every connection."""

    def test_one_configuration_per_host_and_port(self):
        from gateway.graph.http import ExtraTrustRoot, ReusedTLSPolicy

        policy = ReusedTLSPolicy(trustRoot=ExtraTrustRoot(None))
        first = policy.creatorForNetloc(b"graph.example", 443)
        self.assertIs(policy.creatorForNetloc(b"graph.example", 443), first)
        self.assertIsNot(policy.creatorForNetloc(b"graph.example", 8443), first)
        self.assertIsNot(policy.creatorForNetloc(b"other.example", 443), first)

    async def get(self, http):
        response = await http.get(self.emulator.base_url + "/v1.0/$metadata", reactor=reactor)
        await response.content()
        return response.code

    async def test_an_untrusted_server_is_refused_on_every_connection(self):
        from twisted.web._newclient import ResponseNeverReceived

        http = make_http_client(reactor)  # without the emulator's CA
        self.addCleanup(http.pool.closeCachedConnections)
        for _ in range(2):  # the second connection uses the kept configuration
            with self.assertRaises(ResponseNeverReceived) as caught:
                await self.get(http)
            self.assertIn("certificate verify failed", str(caught.exception.reasons[0].value))

    async def test_a_trusted_server_is_reached_over_new_connections_with_the_kept_configuration(self):
        http = make_http_client(reactor, str(self.emulator.ca_bundle))
        for _ in range(2):
            self.assertLess(await self.get(http), 500)
            await http.pool.closeCachedConnections()  # the next request opens a new connection

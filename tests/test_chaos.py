"""Chaos against the Graph emulator: random 429 storms, 5xx, timeouts, dropped connections, malformed
pages and token failures, interleaved with contact changes.  At the end the index equals the emulator's
contacts exactly, and LDAP answered throughout.  Seeded: DIRGW_CHAOS_SEED reproduces a run."""

from __future__ import annotations

import os
import random

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.threads import deferToThread

from gateway.graph.parse import contact_from_graph
from gateway.testing.faults import Fault
from tests.support import contact
from tests.test_m365_sync import EmulatorCase, people, until

SEED = int(os.environ.get("DIRGW_CHAOS_SEED", "4242"))
ROUNDS = int(os.environ.get("DIRGW_CHAOS_ROUNDS", "150"))


def random_fault(rng: random.Random):
    return rng.choice([
        lambda: ("delta", Fault.throttle(rng.choice([1, 5, 30])), rng.randint(1, 6)),  # a 429 storm
        lambda: ("delta", Fault.unavailable(rng.choice([1, 10])), rng.randint(1, 3)),
        lambda: ("delta", Fault.error(rng.choice([500, 502, 504])), rng.randint(1, 3)),
        lambda: ("delta", Fault.drop(), 1),
        lambda: ("delta", Fault.cut(), 1),
        lambda: ("delta", Fault.truncated_json(), 1),
        lambda: ("delta", Fault.malformed_json(), 1),
        lambda: ("delta", Fault.wrong_shape(), 1),
        lambda: ("delta", Fault.slow(3600), 1),  # a timeout
        lambda: ("token", Fault.error(503), rng.randint(1, 2)),
        lambda: ("token", Fault.throttle(2), 1),
    ])()


class ChaosTests(EmulatorCase):
    timeout = 300

    async def test_chaos_converges_and_ldap_answers(self):
        import ldap3

        from gateway.service import make_gateway

        rng = random.Random(SEED)
        self.emulator.seed_contacts(people(120))
        self.emulator.settings.update({"page_size": 15})
        config = self.config(
            top='[ldap]\nlisten = ["tcp:0:interface=127.0.0.1"]\nsize_limit = 10000\n[admin]\nlisten = ""\n',
            source_extra='request_timeout = "20s"\n',
        )
        gateway = make_gateway(config, reactor, clock=self.clock)
        source = gateway.sources["m365"]
        source._graph._clock = self.timeouts  # request timeouts on their own clock
        await gateway.start()
        self.addCleanup(gateway.stop)
        port = gateway.listener.ports[0].getHost().port

        def ldap_count():
            conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=port, get_info=ldap3.NONE), auto_bind=True,
                                    receive_timeout=10)
            conn.search("dc=example,dc=com", "(objectClass=person)", attributes=["uid"], size_limit=0)
            count = len(conn.entries)
            conn.unbind()
            return count

        injected = {"faults": 0, "changes": 0, "rounds": 0, "ldap_checks": 0}
        next_id = 1000
        for _ in range(ROUNDS):
            for _ in range(rng.randint(0, 3)):
                kind, fault, count = random_fault(rng)
                self.emulator.inject(kind, fault, count)
                injected["faults"] += count
            for _ in range(rng.randint(0, 4)):
                existing = [c["id"] for c in self.emulator.contacts()]
                action = rng.random()
                if action < 0.4 or not existing:
                    next_id += 1
                    self.emulator.add_contact(contact(f"n-{next_id}", given="Neu", surname=f"N{next_id}",
                                                      phones=[("mobile", f"0171 {next_id:07d}")]))
                elif action < 0.7:
                    victim = rng.choice(existing)
                    self.emulator.change_contact(victim, displayName=f"Changed {victim}", surname="Changed")
                else:
                    self.emulator.remove_contact(rng.choice(existing), permanent=rng.random() < 0.5)
                injected["changes"] += 1
            outcome = []
            ensureDeferred(source.sync_once()).addBoth(outcome.append)

            def hanging():
                return any(r.status is None and "delay" in str(r.fault or "") for r in self.emulator.requests)

            while not outcome:
                await until(lambda: outcome or hanging(), clocks=(self.clock,))
                if not outcome:
                    self.timeouts.advance(21)  # the request that never answers times out
                    for r in self.emulator.requests:
                        if r.status is None and "delay" in str(r.fault or ""):
                            r.status = -1  # abandoned by the client
            injected["rounds"] += 1
            count = await deferToThread(ldap_count)  # LDAP answers in between, whatever sync is doing
            if source.state.last_success is not None:
                self.assertGreater(count, 0)
            injected["ldap_checks"] += 1

        self.emulator.clear_faults()
        outcome = []
        ensureDeferred(source.sync_once()).addBoth(outcome.append)
        await until(lambda: outcome, clocks=(self.clock,))
        self.assertEqual(outcome, [True])
        expected = {c["id"]: contact_from_graph(c, "m365") for c in self.emulator.contacts()}
        got = {c.id: c for c in gateway.index.contacts("m365")}
        self.assertEqual(set(got), set(expected))
        for key in expected:
            self.assertEqual(got[key], expected[key])
        self.assertEqual(await deferToThread(ldap_count), len(expected))
        print(f"chaos seed {SEED}: {injected}")

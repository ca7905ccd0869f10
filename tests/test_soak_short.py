"""A short soak (issue 10): scripts/soak for 5 s with 20 phones while an m365 sync applies changes.

The long run is ``scripts/soak`` (60 s, 200 connections by default); this one checks the same
things on a small scale: no errors, every injected change shows in LDAP, RSS does not grow after
the warm-up.  The report is printed (``pytest -s``).
"""

from __future__ import annotations

import os
import sys

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
sys.path.insert(0, SCRIPTS)

import soaklib  # noqa: E402


def test_soak_short(tmp_path):
    report = soaklib.run(duration=5.0, connections=20, contacts=500, interval="1s", change_every=1.0,
                         sample=0.5, warmup=1.5, timeout=5.0, slow=5, slow_rate=0.2, seed=7,
                         workdir=str(tmp_path))
    print("\n" + soaklib.format_report(report))
    assert report["server_alive"]
    assert report["errors"] == 0, report["error_samples"]
    assert report["ops"] > 100, report
    assert report["sync"]["rounds_with_changes"] >= 1, report["sync"]
    assert report["sync"]["changes_seen"] == report["sync"]["changes_injected"] >= 3, report["sync"]
    assert report["rss_ok"], report["rss_kib"]
    assert report["p99_ms"] < 2000, report
    # the byte-at-a-time clients neither block the others nor get cut off before the idle timeout
    assert report["slow_clients"]["closed_by_server"] == 0
    assert report["slow_clients"]["bytes_sent"] > 0

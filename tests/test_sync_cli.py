"""dirgw sync --once for first-time set-up, then dirgw snapshot inspect and a serve that answers at once."""

from __future__ import annotations

import os
import subprocess

from gateway.testing.process import EmulatorProcess
from tests.support import ROOT, ServerProcess, ldapsearch, parse_ldif
from tests.test_snapshot_service import people, write_config

DIRGW = os.path.join(ROOT, ".venv", "bin", "dirgw")


def test_sync_once_then_serve(tmp_path):
    emu = EmulatorProcess.start(tmp_path / "emulator", people(150), page_size=20)
    try:
        config = write_config(tmp_path, emu)
        out = subprocess.run([DIRGW, "sync", "--once", "--source", "m365", "--config", config],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "full import" in out.stdout and "done, 150 contacts" in out.stdout
        assert "snapshot saved" in out.stdout
        assert emu.client_secret not in out.stdout + out.stderr  # the secret never shows
        inspect = subprocess.run([DIRGW, "snapshot", "inspect", "--config", config], capture_output=True,
                                 text=True, timeout=60)
        assert inspect.returncode == 0, inspect.stderr
        assert "150" in inspect.stdout and "m365" in inspect.stdout
        emu.clear_requests()
        proc = ServerProcess(config)
        try:
            result = ldapsearch(proc.port, "-b", "dc=example,dc=com", "-z", "0", "(objectClass=person)", "uid")
            assert len(parse_ldif(result.stdout)) == 150
            assert emu.client_secret not in proc.read_output()
        finally:
            proc.stop()
    finally:
        emu.stop()


def test_sync_once_unknown_source(tmp_path):
    (tmp_path / "dirgw.toml").write_text("[ldap]\n")
    out = subprocess.run([DIRGW, "sync", "--once", "--source", "nope", "--config", str(tmp_path / "dirgw.toml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no source named 'nope'" in out.stderr

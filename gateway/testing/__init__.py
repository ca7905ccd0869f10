"""Test support shipped in the package: a fake Microsoft 365 tenant (the Graph emulator).

- `gateway.testing.emulator.GraphEmulator`: the emulator on a Twisted reactor, with its Python API;
- `gateway.testing.process.EmulatorProcess`: the same in a child process, driven over its admin API;
- `gateway.testing.emulator_cli.main`: ``dirgw emulator``;
- `gateway.testing.faults.Fault`: injectable faults; `gateway.testing.tls`: certificates;
- `gateway.testing.provisioning`: ``/applications``, ``/servicePrincipals`` and app role
  assignments for ``dirgw app`` (device-code admin sign-in, directory roles, replication delay).

Nothing is imported here, so importing one module does not pull in Twisted or msal.
"""

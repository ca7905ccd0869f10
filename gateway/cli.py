"""The ``dirgw`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import IO, Sequence

from gateway import __version__
from gateway.config import ConfigError, load_config

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dirgw", description="Microsoft 365 contacts over read-only LDAP.")
    parser.add_argument("--version", action="version", version=f"dirgw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", "-c", default="dirgw.toml", help="configuration file (default: dirgw.toml)")
    serve.add_argument("--log-format", choices=("text", "json"), default="text")
    serve.add_argument("--log-level", choices=("debug", "info", "warn", "error"), default="info")

    for name, (_, text) in _DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)

    check = sub.add_parser("check-config", help="validate a configuration file and its sources")
    check.add_argument("file", nargs="?", default=None)
    check.add_argument("--config", "-c", dest="config_opt", default=None)
    return parser


#: Commands implemented by their own modules: name -> (module, help).
_DELEGATED = {
    "demo": ("gateway.demo", "run the demo: an emulated Microsoft 365 tenant and the gateway on loopback"),
    "emulator": ("gateway.testing.emulator_cli", "run the Microsoft 365 (Graph) emulator standalone"),
    "status": ("gateway.ops.status_cli", "show the running gateway's status"),
    "app": ("gateway.provision.commands", "create, check, show or remove the Entra app registration"),
    "sync": ("gateway.sync_cli", "run one sync of a Microsoft 365 source in the foreground"),
    "snapshot": ("gateway.snapshot_cli", "inspect the snapshots on disk"),
    "passwd": ("gateway.passwords", "print a password hash for [[users]] password_hash"),
    "numbers": ("gateway.numbers_cli", "explain how numbers are read; report numbers that need attention"),
}


def main(argv: Sequence[str] | None = None, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _DELEGATED:
        import importlib

        module = importlib.import_module(_DELEGATED[argv[0]][0])
        if argv[0] == "emulator":
            return module.main(argv[1:], stdout)
        return module.main(argv[1:], stdout, stderr)
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.file or args.config_opt or "dirgw.toml", stdout, stderr)
    if args.command == "serve":
        return _serve(args, stderr, argv)
    return EXIT_USAGE  # pragma: no cover


def _check_config(path: str, stdout: IO[str], stderr: IO[str]) -> int:
    from gateway.sources.json_file import ContactsFileError, read_contacts_file

    try:
        config = load_config(path)
    except ConfigError as e:
        print(f"dirgw: configuration error: {e}", file=stderr)
        return EXIT_FAILURE
    status = EXIT_OK
    for source in config.sources:
        if source.type == "json_file" and source.path:
            try:
                result = read_contacts_file(source.path, source.name)
            except ContactsFileError as e:
                print(f"dirgw: source {source.name}: {e}", file=stderr)
                status = EXIT_FAILURE
                continue
            for problem in result.problems:
                print(f"dirgw: source {source.name}: warning: skipped {problem}", file=stderr)
            print(f"source {source.name}: {len(result.contacts)} contacts", file=stdout)
    if status == EXIT_OK:
        print(f"{path}: OK", file=stdout)
    return status


def _on_sighup(reactor, action) -> None:
    import signal

    def handler(signum, frame):
        reactor.callFromThread(action)

    signal.signal(signal.SIGHUP, handler)


def _reload(gateway, path: str) -> None:
    """SIGHUP: re-read the configuration; an invalid one is refused and the running one stays."""
    from twisted.logger import Logger

    log = Logger(namespace="gateway.reload")
    try:
        config = load_config(path)
    except ConfigError as e:
        log.error("configuration reload refused, keeping the running one: {error}", error=str(e))
        return
    changes = gateway.reload(config)
    log.info("configuration reloaded: {changes}", changes="; ".join(changes) or "nothing changed")


def _serve(args: argparse.Namespace, stderr: IO[str], argv: Sequence[str]) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"dirgw: configuration error: {e}", file=stderr)
        return EXIT_FAILURE

    from gateway.reactor import install as install_reactor

    install_reactor()
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, ensureDeferred

    from gateway.logs import start_logging
    from gateway.service import make_gateway

    start_logging(args.log_format, args.log_level, stderr)
    outcome = {"code": EXIT_OK}

    async def run() -> None:
        gateway = make_gateway(config, reactor, listening=_handed_over())
        try:
            await gateway.start()
        except Exception as e:  # cannot listen: port in use, permission denied...
            print(f"dirgw: cannot start: {e}", file=stderr)
            outcome["code"] = EXIT_FAILURE
            await gateway.stop()
            reactor.stop()
            return
        reactor.addSystemEventTrigger("before", "shutdown", gateway.stop)
        _on_sighup(reactor, lambda: _reload(gateway, args.config))
        if not os.environ.get(RESTARTED_ENV):  # a process restarted after an import does not again

            def restart() -> None:
                outcome["restart"] = gateway.hand_over_listeners()
                reactor.stop()
            gateway.restart = restart
        await Deferred()  # until a signal stops the reactor

    reactor.callWhenRunning(lambda: ensureDeferred(run()))
    reactor.run()
    if "restart" in outcome:
        _restart(argv, stderr, outcome["restart"])
    return outcome["code"]


#: Set in the environment of a ``dirgw serve`` that restarted itself after an import.
RESTARTED_ENV = "DIRGW_RESTARTED_AFTER_IMPORT"
#: The listening sockets a restarting ``dirgw serve`` hands over: JSON, binding -> descriptor.
LISTENING_ENV = "DIRGW_LISTENING_FDS"


def _restart(argv: Sequence[str], stderr: IO[str], listening: dict[str, int]) -> None:
    """Replace this process with a new ``dirgw serve`` of the same arguments (same PID, so
    systemd and containers see no change); it starts from the snapshot just saved, on the
    listening sockets of this one (``listening``), which kept their backlog meanwhile."""
    stderr.flush()
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "gateway", *argv],
              {**os.environ, RESTARTED_ENV: "1", LISTENING_ENV: json.dumps(listening)})


def _handed_over() -> dict[str, int]:
    """The listening sockets the process this one replaced handed over (see ``_restart``)."""
    raw = os.environ.pop(LISTENING_ENV, None)
    if not raw:
        return {}
    try:
        fds = json.loads(raw)
        return {str(k): int(v) for k, v in fds.items()}
    except (ValueError, TypeError, AttributeError):
        return {}

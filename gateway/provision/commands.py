"""``dirgw app generate|check|remove|show``: the Entra app registration of a Microsoft 365 source.

::

    dirgw app generate --source NAME [--config FILE] [--tenant T] [--credential certificate|secret]
                       [--valid-days N] [--name DISPLAY_NAME] [--wait SECONDS]
    dirgw app check    --source NAME [--config FILE]
    dirgw app remove   --source NAME [--config FILE] [--yes] [--purge]
    dirgw app show     --source NAME [--config FILE]

All take ``--authority-host URL``, ``--graph-url URL``, ``--ca-bundle FILE`` and ``--proxy URL``
(default: the source's keys, else the cloud's endpoints); ``generate`` writes those given into the
source's table.  ``generate`` and ``remove`` sign an administrator in with the device code flow
(``--admin-client-id``, default Microsoft Graph Command Line Tools).  Each step is printed on its
own line as it happens.

Exit codes (`gateway.provision.errors`):

==  ======================================================================================
0   OK (check: access OK; remove: removed or already removed)
1   error: unexpected Graph answer, a file that cannot be read or written
2   usage: bad arguments, unknown source, no tenant, the source already has an app
3   check: permission missing (application permissions, but none that reads contacts)
4   check: admin consent missing (no application permission granted at all)
5   check: credential invalid, expired or unreadable
6   check: app deleted (Entra does not know the client id)
7   tenant unreachable: network, TLS, proxy, unknown tenant, Entra/Graph unavailable
8   generate/remove: the signed-in account lacks the directory role (or scope) needed
    (generate then undoes what it created)
9   generate/remove: the device-code sign-in was declined, expired or failed
10  remove: not confirmed
11  check/show: the source has no app (no client_id)
12  generate: app made and configured, but access did not work within ``--wait`` seconds
130 interrupted (Ctrl-C; generate undoes what it created)
==  ======================================================================================
"""

from __future__ import annotations

import argparse
from typing import IO, Any, NoReturn

from gateway.provision.errors import EXIT_ERROR, EXIT_NOT_CONFIGURED, EXIT_USAGE, ProvisionError
from gateway.provision.runtime import Printer, Runtime

__all__ = ["main", "Runtime"]

EXIT_INTERRUPTED = 130


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse writing to the given streams and raising instead of calling sys.exit."""

    def __init__(self, *args: Any, streams: tuple[IO[str], IO[str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._streams = streams

    def _print_message(self, message: str, file: IO[str] | None = None) -> None:  # noqa: ARG002
        if message:
            out, err = self._streams
            (out if file is None or getattr(file, "name", "") == "<stdout>" else err).write(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._streams[1].write(message)
        raise _Exit(status)

    def error(self, message: str) -> NoReturn:
        self.print_usage(self._streams[1])
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser(stdout: IO[str], stderr: IO[str]) -> _Parser:
    streams = (stdout, stderr)
    parser = _Parser(prog="dirgw app", streams=streams,
                     description="Create, check, remove and show the Entra app registration of a "
                                 "Microsoft 365 source.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--source", required=True, metavar="NAME", help="the [[sources]] name")
        p.add_argument("--config", "-c", default="dirgw.toml", metavar="FILE",
                       help="configuration file (default: dirgw.toml)")
        p.add_argument("--authority-host", metavar="URL", help="Entra host (default: the source's or the cloud's)")
        p.add_argument("--graph-url", metavar="URL", help="Graph root (default: the source's or the cloud's)")
        p.add_argument("--ca-bundle", metavar="FILE", help="extra trust roots (PEM)")
        p.add_argument("--proxy", metavar="URL", help="HTTP proxy (default: the source's, else HTTPS_PROXY)")

    def admin(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tenant", metavar="T", help="tenant domain or GUID (default: the source's tenant_id)")
        p.add_argument("--admin-client-id", metavar="ID",
                       help="public client the admin signs in to (default: Microsoft Graph Command "
                            "Line Tools, 14d82eec-204b-4c2f-b7e8-296a70dab67e)")

    g = sub.add_parser("generate", streams=streams, help="create the app registration and configure the source")
    common(g)
    admin(g)
    g.add_argument("--credential", choices=("certificate", "secret"), default="certificate",
                   help="certificate made here (default; the private key never leaves this machine) "
                        "or a client secret")
    g.add_argument("--valid-days", type=int, metavar="N",
                   help="credential lifetime (default: 365 for a certificate, 180 for a secret)")
    g.add_argument("--name", metavar="DISPLAY_NAME", help="app name (default: \"dirgw (<host>)\")")
    g.add_argument("--wait", type=float, default=300.0, metavar="SECONDS",
                   help="how long to ride out Entra's replication delay (default 300)")

    c = sub.add_parser("check", streams=streams, help="check that the source's app can read contacts")
    common(c)

    r = sub.add_parser("remove", streams=streams, help="delete the app registration and its credential")
    common(r)
    admin(r)
    r.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    r.add_argument("--purge", action="store_true",
                   help="also purge the app from Deleted applications (no restore)")
    r.add_argument("--wait", type=float, default=120.0, metavar="SECONDS", help=argparse.SUPPRESS)

    s = sub.add_parser("show", streams=streams, help="show the source's app, credential and expiry")
    common(s)
    return parser


def main(argv: list[str], stdout: IO[str], stderr: IO[str], *, reactor: Any = None,
         runtime: Runtime | None = None) -> int:
    """Run ``dirgw app`` with ``argv`` (what follows ``app``); returns the exit code.

    The commands block (msal and requests); ``reactor`` is accepted for symmetry with the other
    commands and not used.  ``runtime`` replaces sleeping, the clocks, the host name and stdin
    (tests make ``sleep`` advance the emulator's clock).
    """
    del reactor
    runtime = runtime or Runtime()
    out = Printer(stdout, stderr)
    try:
        args = _parser(stdout, stderr).parse_args(argv)
    except _Exit as e:
        return e.code
    try:
        return _run(args, out, runtime)
    except ProvisionError as e:
        out.error(f"dirgw app {args.command}: {e.message}")
        return e.exit_code
    except KeyboardInterrupt:
        out.error(f"dirgw app {args.command}: interrupted")
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace, out: Printer, runtime: Runtime) -> int:
    from gateway.provision import steps
    from gateway.provision.target import resolve_target

    if getattr(args, "valid_days", None) is not None and not 1 <= args.valid_days <= 3650:
        raise ProvisionError("--valid-days must be between 1 and 3650", EXIT_USAGE)
    target = resolve_target(args.config, args.source, tenant=getattr(args, "tenant", None),
                            authority_host=args.authority_host, graph_url=args.graph_url,
                            ca_bundle=args.ca_bundle, proxy=args.proxy,
                            must_exist=args.command != "generate")
    if args.command == "generate":
        return steps.generate(target, steps.GenerateOptions(
            credential=args.credential, valid_days=args.valid_days, display_name=args.name,
            wait=args.wait, admin_client_id=args.admin_client_id), out, runtime)
    if args.command == "remove":
        return steps.remove(target, steps.RemoveOptions(
            yes=args.yes, purge=args.purge, admin_client_id=args.admin_client_id, wait=args.wait),
            out, runtime)
    if args.command == "show":
        return steps.show(target, out, runtime)
    return _check(args, target, out, runtime)


def _check(args: argparse.Namespace, target: Any, out: Printer, runtime: Runtime) -> int:
    import attrs

    from gateway.config import ConfigError, load_config
    from gateway.provision.check import check_access
    from gateway.provision.metadata import read_record

    if not target.get("client_id"):
        out(f"source {args.source!r} has no app (run `dirgw app generate --source {args.source}`)")
        return EXIT_NOT_CONFIGURED
    try:
        config = load_config(str(target.config_path))
    except ConfigError as e:
        raise ProvisionError(f"configuration error: {e}", EXIT_ERROR) from None
    source = next(s for s in config.sources if s.name == args.source)
    options = source.options["m365"]
    overrides = {k: v for k, v in (("authority_host", target.authority_host),
                                   ("graph_url", target.graph_url), ("ca_bundle", target.ca_bundle),
                                   ("proxy", target.proxy)) if v != getattr(options, k)}
    if overrides:
        options = attrs.evolve(options, **overrides)
    return check_access(target, options, read_record(target.config_dir, args.source), out, runtime)

"""``dirgw sync --once --source NAME``: one sync in the foreground, with a progress bar.

For first-time set-up: imports (or runs one delta round for) one Microsoft 365
source and, when ``[snapshot]`` is configured, saves the result, so that
``dirgw serve`` starts with the data in place.
"""

from __future__ import annotations

import argparse
import sys
from typing import IO, Sequence

from gateway.config import ConfigError, load_config

__all__ = ["main"]


def _bar(done: int, width: int = 24) -> str:
    spin = done % (width * 2)
    pos = spin if spin < width else 2 * width - spin - 1
    return "[" + "".join("#" if i == pos else "-" for i in range(width)) + "]"


def main(argv: Sequence[str], stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = argparse.ArgumentParser(prog="dirgw sync", description="Run one sync of a source in the foreground.")
    parser.add_argument("--once", action="store_true", required=True, help="one import or delta round, then exit")
    parser.add_argument("--source", required=True)
    parser.add_argument("--config", "-c", default="dirgw.toml")
    args = parser.parse_args(list(argv))
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"dirgw: configuration error: {e}", file=stderr)
        return 1
    source = next((s for s in config.sources if s.name == args.source), None)
    if source is None:
        print(f"dirgw: no source named {args.source!r} in {args.config}", file=stderr)
        return 2
    if source.type != "m365_mail_contacts":
        print(f"dirgw: source {args.source} is a {source.type} source; only Microsoft 365 sources sync", file=stderr)
        return 2

    from twisted.internet import reactor, task

    from gateway.service import Gateway

    outcome = {"code": 1}

    async def run() -> None:
        import attrs

        lone = attrs.evolve(config, sources=(source,), admin=attrs.evolve(config.admin, listen=None))
        gateway = Gateway(lone, reactor)
        sync = gateway.sources[source.name]
        state = sync.state
        print(f"source {source.name}: {'delta round' if state.delta_link else 'full import'} "
              f"from {source.options['m365'].graph_url}", file=stdout)

        def progress() -> None:
            if state.state in ("importing", "backing_off"):
                line = f"\r{_bar(state.pages)} {state.pages} pages, {state.imported:,} contacts"
                if state.state == "backing_off":
                    line += f" (waiting: {state.last_error})"
                stdout.write(line.ljust(100)[:100])
                stdout.flush()

        ticker = task.LoopingCall(progress)
        ticker.start(0.5)
        ok = await sync.sync_once()
        ticker.stop()
        stdout.write("\n")
        if ok:
            print(f"source {source.name}: done, {len(list(gateway.index.contacts(source.name))):,} contacts",
                  file=stdout)
            if gateway.snapshots is not None:
                await gateway.snapshots.save_now()
                print(f"snapshot saved in {config.snapshot.directory}", file=stdout)
            outcome["code"] = 0
        else:
            print(f"source {source.name}: failed: {state.reason}", file=stderr)
        sync._graph.close()

    def go() -> None:
        from twisted.internet.defer import Deferred

        d = Deferred.fromCoroutine(run())
        d.addErrback(lambda f: print(f"dirgw sync: {f.getErrorMessage()}", file=stderr))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run()
    return outcome["code"]

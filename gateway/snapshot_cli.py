"""``dirgw snapshot inspect [--config FILE] [--json]``: the snapshot generations on disk."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import IO, Sequence

from gateway.config import ConfigError, load_config

__all__ = ["main"]


def main(argv: Sequence[str], stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = argparse.ArgumentParser(prog="dirgw snapshot", description="Snapshots on disk.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="generations, age, size, contacts per source, sync state, checksum")
    p.add_argument("--config", "-c", default="dirgw.toml")
    p.add_argument("--directory", help="the snapshot directory (default: [snapshot] directory of the config)")
    p.add_argument("--full", action="store_true", help="decode every contact, not only the checksum and counts")
    p.add_argument("--json", action="store_true")
    args = parser.parse_args(list(argv))
    directory = args.directory
    if directory is None:
        try:
            config = load_config(args.config)
        except ConfigError as e:
            print(f"dirgw: configuration error: {e}", file=stderr)
            return 1
        directory = config.snapshot.directory
        if not directory:
            print(f"dirgw: {args.config} has no [snapshot] directory", file=stderr)
            return 1
    from gateway.snapshot.inspect import format_inspect, inspect

    rows = inspect(directory, time.time(), full=args.full)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False), file=stdout)
    else:
        print(format_inspect(rows, directory), file=stdout)
    return 0 if rows and any(r.get("ok") for r in rows) else 1

"""scripts/bench: run the benchmark scenarios and print one table."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench")
    parser.add_argument("scenarios", nargs="*", default=["numbers", "import", "ldap", "memory"],
                        help="numbers, import, ldap, memory, scaling (default: all but scaling)")
    parser.add_argument("--quick", action="store_true",
                        help="10k contacts only, 1 run of 3 s per cell, no 1M (under 3 minutes)")
    parser.add_argument("--contacts", type=int, default=None, help="this many contacts instead of the defaults")
    parser.add_argument("--runs", type=int, default=None, help="ldap: runs per cell (default 3, quick 1)")
    parser.add_argument("--duration", type=float, default=None,
                        help="ldap: measured seconds per run (default 6, quick 3)")
    parser.add_argument("--latency", type=float, default=0.05, help="emulator seconds per page (import)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # SIGTERM (e.g. from a job runner) unwinds like Ctrl-C, so that every server started is stopped by its PID
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    for name in args.scenarios:
        if name not in ("import", "numbers", "ldap", "memory", "scaling"):
            parser.error(f"unknown scenario {name!r}")
    results: list = []

    def report(name: str, result: dict) -> None:  # printed as soon as a scenario is done
        if args.json:
            print(json.dumps({"scenario": name, **result}), flush=True)
            return
        print(f"\n== {name}")
        rest = {k: v for k, v in result.items() if k != "table"}
        if "table" in result:
            print(result["table"])
        if rest:
            width = max(len(k) for k in rest)
            for key, value in rest.items():
                print(f"  {key:<{width}}  {value}")
        sys.stdout.flush()

    for name in args.scenarios:
        if name == "import":
            import scenario_import

            n = args.contacts or (10000 if args.quick else 100000)
            results.append(("import", scenario_import.run(n, args.latency)))
        elif name == "scaling":
            import scenario_scaling

            sizes = (1000, 10000) if args.quick else (1000, 10000, 100000)
            results.append(("scaling", scenario_scaling.run(sizes)))
        elif name == "numbers":
            import scenario_numbers

            n = args.contacts or 10000
            results.append(("numbers", scenario_numbers.run(n)))
        elif name == "ldap":
            import scenario_ldap

            sizes = [args.contacts] if args.contacts else ([10000] if args.quick else [10000, 100000])
            runs = args.runs or (1 if args.quick else 3)
            duration = args.duration or (3.0 if args.quick else 6.0)
            warmup = 0.5 if args.quick else 1.5
            results.append(("ldap", scenario_ldap.run(sizes, runs=runs, duration=duration, warmup=warmup,
                                                      quiet_budget=20.0 if args.quick else 300.0)))
        elif name == "memory":
            import scenario_memory

            sizes = [args.contacts] if args.contacts else ([10000] if args.quick else [100000, 1000000])
            results.append(("memory", scenario_memory.run(sizes)))
        report(*results[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())

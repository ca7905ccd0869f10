"""scripts/bench: run the benchmark scenarios and print one table."""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench")
    parser.add_argument("scenarios", nargs="*", default=["numbers", "import"])
    parser.add_argument("--quick", action="store_true", help="small data, short runs (under 3 minutes)")
    parser.add_argument("--contacts", type=int, default=None)
    parser.add_argument("--latency", type=float, default=0.05, help="emulator seconds per page (import)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    for name in args.scenarios:
        if name == "import":
            import scenario_import

            n = args.contacts or (10000 if args.quick else 100000)
            results.append(("import", scenario_import.run(n, args.latency)))
        elif name == "numbers":
            import scenario_numbers

            n = args.contacts or 10000
            results.append(("numbers", scenario_numbers.run(n)))
        else:
            parser.error(f"unknown scenario {name!r}")
    for name, result in results:
        if args.json:
            print(json.dumps({"scenario": name, **result}))
        else:
            print(f"\n== {name}")
            width = max(len(k) for k in result)
            for key, value in result.items():
                print(f"  {key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

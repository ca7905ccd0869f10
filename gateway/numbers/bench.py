"""Measure the number core: stored numbers read at import, phone assertions per search.

:func:`bench` reads the contacts of ``shared/bench/gen_contacts.py`` the way
the index does (the region hints of each contact's numbers, then
:func:`parse_stored` for each number, results kept) and the phone inputs of
its ``queries.json`` the way a search does (:func:`dialled_readings` for an
equality filter, :func:`substring_patterns` for the wildcard shapes phones
send).  Times are CPU time of this process, best of ``repeat`` runs:

* ``stored_us``: µs per stored number, caches emptied first (every number
  read for the first time: an initial import);
* ``stored_warm_us``: a number read again soon after (a company's number
  shared by its contacts, a contact re-synchronized): the first
  :data:`WARM` numbers read a second time;
* ``readings_us`` / ``readings_warm_us``: µs per :func:`dialled_readings`
  call, first time and repeated (the first :data:`WARM` inputs again);
* ``patterns_us`` / ``patterns_warm_us``: µs per :func:`substring_patterns`
  call (prefix, contains, suffix and per-digit shapes), first time and
  repeated.

Run::

    .venv/bin/python -m gateway.numbers.bench [-n 10000] [--data DIR] [--repeat 3]
        [--compare COMMIT]

or call :func:`bench` (e.g. from ``scripts/bench``).  ``impl`` takes another
module with the same functions (``parse_stored``, ``region_hints``,
``dialled_readings``, ``substring_patterns``, ``NumberSettings``), e.g. a copy
of an older version (:func:`reference_impl` makes one from a git commit), to
compare both on the same data; ``--compare`` prints both and their ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["BENCH_SETTINGS", "WARM", "bench", "clear_caches", "main", "reference_impl"]

#: How many items the repeated ("warm") measures read again: fewer than the
#: caches hold.
WARM = 3000

#: The settings of the benchmark (the PBX in Germany, partners in six countries).
BENCH_SETTINGS: dict[str, Any] = {
    "country": "DE",
    "other_countries": ("AT", "CH", "US", "GB", "FR", "NL"),
}

#: Where the generator is, seen from the repository.
GENERATOR = Path(__file__).resolve().parents[3] / "shared" / "bench" / "gen_contacts.py"


def clear_caches(impl: ModuleType | None = None) -> None:
    """Empty the caches of the number core (results and text, not metadata)."""
    from gateway.numbers import dialled, normalize, stored, substrings

    if impl is not None and impl.__name__ != "gateway.numbers":
        return
    stored._parser.cache_clear()
    stored._region_plan.cache_clear()
    normalize._split_cached.cache_clear()
    normalize.read_international.cache_clear()
    dialled._readings_cached.cache_clear()
    substrings._patterns_cached.cache_clear()


def _generate(count: int, folder: Path) -> Path:
    if not GENERATOR.exists():
        raise SystemExit(f"{GENERATOR} not found: pass --data with contacts.json and queries.json")
    queries = min(5000, max(100, count))  # the generator's 5000 from 5000 contacts on
    subprocess.run(
        [sys.executable, str(GENERATOR), "-n", str(count), "--queries", str(queries), "-o", str(folder)],
        check=True,
        capture_output=True,
    )
    return folder


def _cpu(fn: Any, repeat: int, before: Any = None) -> float:
    """Best CPU time of ``repeat`` runs of ``fn`` (``before`` runs untimed first)."""
    best = float("inf")
    for _ in range(repeat):
        if before is not None:
            before()
        gc.collect()
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best


def _shapes(value: str) -> list[tuple[str | None, tuple[str, ...], str | None]]:
    """Substring assertions a phone sends for a number: prefix, contains, suffix, per digit."""
    digits = "".join(ch for ch in value if ch.isdigit())
    if len(digits) < 6:
        return []
    return [
        (value[:4], (), None),  # dialling: "089*"
        (None, (digits[2:7],), None),  # "*12345*"
        (None, (), digits[-8:]),  # "*...": caller ID suffix
        (digits[0], tuple(digits[1:5]), digits[5]),  # "0*8*9*1*2*3"
    ]


def bench(
    n: int = 10_000,
    data: str | Path | None = None,
    *,
    repeat: int = 3,
    settings: dict[str, Any] | None = None,
    impl: ModuleType | None = None,
) -> dict[str, Any]:
    """Measure; see the module docstring.  Returns the measures as a dict."""
    if impl is None:
        import gateway.numbers as impl
    number_settings = impl.NumberSettings(**(settings or BENCH_SETTINGS))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(data) if data is not None else _generate(n, Path(tmp))
        contacts = json.loads((folder / "contacts.json").read_text(encoding="utf-8"))
        queries = json.loads((folder / "queries.json").read_text(encoding="utf-8"))
    contacts = contacts["value"] if isinstance(contacts, dict) else contacts
    phones = [[p.get("number") or "" for p in c.get("phones") or ()] for c in contacts]
    stored_count = sum(map(len, phones))
    inputs = [q["input"] for q in queries.get("phone", ()) if q.get("kind") == "phone"]
    shapes = [shape for value in inputs for shape in _shapes(value)]

    parse_stored, region_hints = impl.parse_stored, impl.region_hints
    dialled_readings, substring_patterns = impl.dialled_readings, impl.substring_patterns
    kept: list[Any] = []

    warm_contacts, count = [], 0
    for numbers in phones:
        if count >= WARM:
            break
        warm_contacts.append(numbers)
        count += len(numbers)
    warm_count = count

    def read_stored(contacts: list[list[str]] = phones) -> None:
        for numbers in contacts:  # as the index reads a contact
            hints = region_hints(numbers, number_settings) if numbers else ()
            for raw in numbers:
                kept.append(parse_stored(raw, number_settings, regions=hints))

    def read_queries(values: list[str] = inputs) -> None:
        for value in values:
            dialled_readings(value, number_settings)

    def read_patterns(items: list = shapes) -> None:
        for initial, any_, final in items:
            substring_patterns(initial, any_, final, number_settings)

    def clear() -> None:
        kept.clear()
        clear_caches(impl)

    def prime(read: Any, items: Any) -> Any:
        """Untimed: empty the kept results, read ``items`` once (into the caches)."""

        def before() -> None:
            kept.clear()
            read(items)

        return before

    read_stored()  # load phonenumbers' metadata of every region met
    stored_cold = _cpu(read_stored, repeat, clear)
    stored_warm = _cpu(lambda: read_stored(warm_contacts), repeat, prime(read_stored, warm_contacts))
    queries_cold = _cpu(read_queries, repeat, clear)
    queries_warm = _cpu(
        lambda: read_queries(inputs[:WARM]), repeat, prime(read_queries, inputs[:WARM])
    )
    patterns_cold = _cpu(read_patterns, repeat, clear)
    patterns_warm = _cpu(
        lambda: read_patterns(shapes[:WARM]), repeat, prime(read_patterns, shapes[:WARM])
    )
    kept.clear()

    def per(seconds: float, count: int) -> float:
        return round(seconds / max(1, count) * 1e6, 2)

    return {
        "implementation": impl.__name__,
        "contacts": len(phones),
        "stored_numbers": stored_count,
        "settings": {k: list(v) if isinstance(v, tuple) else v
                     for k, v in (settings or BENCH_SETTINGS).items()},
        "stored_us": per(stored_cold, stored_count),
        "stored_warm_us": per(stored_warm, warm_count),
        "readings_calls": len(inputs),
        "readings_us": per(queries_cold, len(inputs)),
        "readings_warm_us": per(queries_warm, min(WARM, len(inputs))),
        "patterns_calls": len(shapes),
        "patterns_us": per(patterns_cold, len(shapes)),
        "patterns_warm_us": per(patterns_warm, min(WARM, len(shapes))),
        "index_1m_contacts_s": round(stored_cold / max(1, len(phones)) * 1_000_000, 1),
    }


def reference_impl(commit: str, folder: str | Path) -> ModuleType:
    """``gateway.numbers`` as of a git commit, importable beside today's (read-only git)."""
    root = Path(__file__).resolve().parents[2]
    name = "numbers_" + "".join(ch for ch in commit if ch.isalnum())[:12]
    package = Path(folder) / name
    package.mkdir(parents=True, exist_ok=True)
    listing = subprocess.run(
        ["git", "ls-tree", "--name-only", commit, "gateway/numbers/"],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout.split()
    for path in listing:
        if not path.endswith(".py"):
            continue
        source = subprocess.run(
            ["git", "show", f"{commit}:{path}"], cwd=root, check=True, capture_output=True, text=True
        ).stdout
        (package / Path(path).name).write_text(source.replace("gateway.numbers", name), encoding="utf-8")
    sys.path.insert(0, str(Path(folder)))
    import importlib

    return importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    """Command line: print :func:`bench`'s measures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10_000, help="contacts to generate")
    parser.add_argument("--data", help="folder with contacts.json and queries.json (default: generate)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare", metavar="COMMIT", help="also measure gateway.numbers of this commit")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None and args.compare:
            data = _generate(args.n, Path(tmp) / "data")
        result = bench(args.n, data, repeat=args.repeat)
        if args.compare:
            before = bench(args.n, data, repeat=args.repeat, impl=reference_impl(args.compare, tmp))
            result = {
                "before": before,
                "after": result,
                "speedup": {
                    key: round(before[key] / result[key], 1)
                    for key in result
                    if key.endswith("_us") and result[key]
                },
            }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""``dirgw numbers explain NUMBER`` and ``dirgw numbers report``: number conversion for admins.

Both load the configured sources the way ``dirgw serve`` does at start
(json_file sources from their files; other sources from the latest snapshot
when there is one) into an index, then ask it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Any, Sequence

from gateway.config import Config, ConfigError, load_config

__all__ = ["main", "explain", "report"]


def _load_index(config: Config, stderr: IO[str]):
    from gateway.index import ContactIndex
    from gateway.service import source_profile
    from gateway.sources.json_file import ContactsFileError, read_contacts_file

    index = ContactIndex(source_profile(config, s) for s in config.sources)
    for source in config.sources:
        if source.type == "json_file" and source.path:
            try:
                index.replace_source(source.name, read_contacts_file(source.path, source.name).contacts)
            except ContactsFileError as e:
                print(f"dirgw numbers: source {source.name}: {e}", file=stderr)
    try:
        from gateway.snapshot.startup import load_into
    except ImportError:
        return index
    load_into(index, config, only_missing=True, log=lambda m: print(f"dirgw numbers: {m}", file=stderr))
    return index


def explain(index: Any, config: Config, number: str) -> dict[str, Any]:
    """How a dialled number is read, what it matches and why."""
    from gateway import numbers as N
    from gateway.ldap import filter as F
    from gateway.ldap.messages import SCOPE_SUB, SearchRequest
    from gateway.ldap.search import QueryPhones, run_search
    from gateway.service import number_settings, search_settings

    settings = number_settings(config.numbers)
    readings = N.dialled_readings(number, settings)
    rows = []
    for r in readings:
        rows.append({
            "e164": r.e164, "how": r.how, "kind": r.kind, "outside_line": r.outside_line,
            "contacts": len(index.with_number(r.e164)), "other_country_contacts": len(index.with_alternative(r.e164)),
        })
    phones = QueryPhones(index, settings)
    chosen = sorted(phones.equality_keys(number))
    search = search_settings(config)
    f = F.Or(tuple(F.Equality(a, number) for a in ("telephoneNumber", "mobile", "homePhone",
                                                  "facsimileTelephoneNumber", "pager")))
    result = run_search(index, SearchRequest(config.ldap.base_dn, SCOPE_SUB, f, ("cn", "o", "telephoneNumber",
                                                                                 "mobile")), search)
    matches = []
    for entry in result.entries:
        attrs = dict(entry.attributes)
        matches.append({"dn": entry.dn, "cn": (attrs.get("cn") or [""])[0], "approximate": entry.approximate,
                        "numbers": {k: list(v) for k, v in attrs.items() if k in ("telephoneNumber", "mobile")}})
    return {
        "input": number,
        "settings": {"country": settings.country, "area_code": settings.area_code,
                     "outside_line": settings.outside_line, "main_number": settings.main_number},
        "readings": rows,
        "chosen_keys": chosen,
        "fallback": N.fallback_key(number),
        "matches": matches,
        "proximity_fallback": any(m["approximate"] for m in matches),
    }


def report(index: Any) -> dict[str, Any]:
    """Numbers that could not be normalized, numbers shared by several contacts, extensions without a main number."""
    unreadable = []
    shared: dict[str, list[str]] = {}
    orphan_extensions = []
    for entry in index.in_order():
        for attr, numbers in entry.numbers.items():
            for n in numbers:
                who = f"{entry.contact.name} ({entry.contact.source})"
                if n.e164 is None:
                    unreadable.append({"contact": who, "attribute": attr, "number": n.raw,
                                       "problem": n.problem or "not a phone number"})
                    if n.kind == "extension" or (n.digits and len(n.digits) <= 5 and n.raw.lstrip().startswith("-")):
                        orphan_extensions.append({"contact": who, "number": n.raw})
                else:
                    shared.setdefault(n.e164, [])
                    if who not in shared[n.e164]:
                        shared[n.e164].append(who)
    shared_rows = [{"number": k, "contacts": v} for k, v in sorted(shared.items()) if len(v) > 1]
    return {"unreadable": unreadable, "shared": shared_rows, "extensions_without_main_number": orphan_extensions}


def _print_explain(doc: dict[str, Any], out: IO[str]) -> None:
    print(f"input: {doc['input']}", file=out)
    s = doc["settings"]
    print(f"settings: country {s['country']}, area code {s['area_code'] or '-'}, outside line "
          f"{s['outside_line'] or '-'}, main number {s['main_number'] or '-'}", file=out)
    if not doc["readings"]:
        print("readings: none (not a number this configuration can read)", file=out)
    for r in doc["readings"]:
        found = f"{r['contacts']} contact(s)" if r["contacts"] else "no contact"
        if r["other_country_contacts"]:
            found += f", {r['other_country_contacts']} by another country's reading"
        print(f"  reading {r['e164']:<16} {r['how']}: {found}", file=out)
    print(f"looked up: {', '.join(doc['chosen_keys']) or 'nothing'}", file=out)
    if not doc["matches"]:
        print("result: no contact", file=out)
    for m in doc["matches"]:
        how = " (approximate: company main number)" if m["approximate"] else ""
        print(f"match: {m['cn']}{how}  {m['dn']}", file=out)


def _print_report(doc: dict[str, Any], out: IO[str]) -> None:
    print(f"numbers that could not be normalized: {len(doc['unreadable'])}", file=out)
    for row in doc["unreadable"]:
        print(f"  {row['number']!r:<28} {row['contact']}: {row['problem']}", file=out)
    print(f"numbers shared by several contacts: {len(doc['shared'])}", file=out)
    for row in doc["shared"]:
        print(f"  {row['number']:<16} {len(row['contacts'])}: {'; '.join(row['contacts'][:5])}"
              + (" ..." if len(row["contacts"]) > 5 else ""), file=out)
    print(f"extensions without a main number: {len(doc['extensions_without_main_number'])}", file=out)
    for row in doc["extensions_without_main_number"]:
        print(f"  {row['number']!r:<28} {row['contact']} (set [numbers] main_number)", file=out)


def main(argv: Sequence[str], stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = argparse.ArgumentParser(prog="dirgw numbers", description="Explain number conversion.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("explain", help="how a number is read and what it matches")
    p.add_argument("number")
    p.add_argument("--config", "-c", default="dirgw.toml")
    p.add_argument("--json", action="store_true")
    r = sub.add_parser("report", help="numbers that could not be normalized, shared numbers, orphan extensions")
    r.add_argument("--config", "-c", default="dirgw.toml")
    r.add_argument("--json", action="store_true")
    args = parser.parse_args(list(argv))
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"dirgw: configuration error: {e}", file=stderr)
        return 1
    index = _load_index(config, stderr)
    if args.command == "explain":
        doc = explain(index, config, args.number)
        if args.json:
            print(json.dumps(doc, ensure_ascii=False, indent=2), file=stdout)
        else:
            _print_explain(doc, stdout)
        return 0
    doc = report(index)
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=2), file=stdout)
    else:
        _print_report(doc, stdout)
    return 0

"""Set and remove keys of one ``[[sources]]`` table in a TOML file, keeping every other line.

No TOML library round-trips comments, so the file is edited as lines: a small scanner finds
the statements (table headers, ``key = value`` spanning one or more lines, comments, blank
lines), the keys of the source's table are replaced in place (keeping a trailing comment),
deleted, or inserted after the table's last key.  A source that does not exist yet is
appended as a new ``[[sources]]`` table.  The result is parsed again and must equal the old
data with exactly the intended changes, else nothing is written.  `write_source_keys` then
replaces the file atomically.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from attrs import define

from gateway.provision.errors import EXIT_ERROR, ProvisionError
from gateway.provision.files import atomic_write

__all__ = ["ConfigFileError", "edit_source", "write_source_keys", "toml_string"]


class ConfigFileError(ProvisionError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_ERROR)


@define
class _Statement:
    kind: str
    """``header``, ``keyval`` or ``other`` (blank line, comment)."""
    first: int
    last: int
    path: tuple[str, ...] = ()
    array: bool = False
    indent: str = ""
    key_text: str = ""
    comment: str = ""
    """Trailing comment of a one-line statement, with the blanks before it."""


def toml_string(value: str) -> str:
    """A TOML basic string."""
    out = ['"']
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _split_lines(text: str) -> list[str]:
    lines = re.split(r"(?<=\n)", text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _scan_value(lines: list[str], i: int, pos: int) -> tuple[int, str, int]:
    """(last line, trailing comment with its leading blanks, comment column) of the statement."""
    depth = 0
    mode: str | None = None
    while True:
        line = lines[i]
        n = len(line)
        j = pos
        comment, comment_at = "", -1
        while j < n:
            c = line[j]
            if mode is None:
                if c == "#":
                    k = j
                    while k > 0 and line[k - 1] in " \t":
                        k -= 1
                    comment, comment_at = line[k:].rstrip("\r\n"), k
                    break
                if line.startswith('"""', j) or line.startswith("'''", j):
                    mode = line[j:j + 3]
                    j += 3
                    continue
                if c in "\"'":
                    mode = c
                elif c in "[{":
                    depth += 1
                elif c in "]}":
                    depth -= 1
                j += 1
            elif mode in ('"', '"""') and c == "\\":
                j += 2
            elif len(mode) == 3 and line.startswith(mode, j):
                k = j + 3
                while k < n and line[k] == mode[0] and k - j < 5:
                    k += 1
                mode = None
                j = k
            elif len(mode) == 1 and c == mode:
                mode = None
                j += 1
            else:
                j += 1
        if (mode is None or len(mode) == 1) and depth <= 0:
            return i, comment, comment_at
        if i + 1 >= len(lines):
            return i, "", -1
        i, pos = i + 1, 0


def _key_end(line: str, pos: int) -> int:
    """Column of the ``=`` of a key/value line."""
    j = pos
    while j < len(line):
        c = line[j]
        if c in "\"'":
            close = line.find(c, j + 1)
            j = close + 1 if close > 0 else len(line)
            continue
        if c == "=":
            return j
        j += 1
    return -1


def _walk(parsed: Any) -> tuple[tuple[str, ...], bool]:
    path: list[str] = []
    array = False
    node = parsed
    while isinstance(node, dict) and len(node) == 1:
        key, node = next(iter(node.items()))
        path.append(key)
        if isinstance(node, list):
            array = True
            node = node[-1] if node else {}
        else:
            array = False
    return tuple(path), array


def _scan(lines: list[str]) -> list[_Statement]:
    statements = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if not stripped or stripped.startswith("#"):
            statements.append(_Statement("other", i, i))
            i += 1
            continue
        if stripped.startswith("["):
            last, _, at = _scan_value(lines, i, len(indent))
            header = line[: at if at >= 0 else len(line)].strip()
            try:
                path, array = _walk(tomllib.loads(header + "\n"))
            except tomllib.TOMLDecodeError:
                path, array = (), False
            statements.append(_Statement("header", i, last, path, array, indent))
            i = last + 1
            continue
        eq = _key_end(line, len(indent))
        if eq < 0:
            raise ConfigFileError(f"line {i + 1}: cannot understand {stripped!r}")
        key_text = line[len(indent):eq].strip()
        last, comment, _ = _scan_value(lines, i, eq + 1)
        try:
            path, _ = _walk(tomllib.loads(f"{key_text} = 0\n"))
        except tomllib.TOMLDecodeError:
            path = ()
        statements.append(_Statement("keyval", i, last, path, False, indent, key_text,
                                     comment if last == i else ""))
        i = last + 1
    return statements


def edit_source(text: str, source: str, set_values: Mapping[str, str], remove: Iterable[str] = (),
                new_type: str = "m365_mail_contacts") -> str:
    """``text`` with the keys of source ``source`` set and removed (a new table if it is missing)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigFileError(f"not valid TOML: {e}") from None
    remove = [k for k in remove if k not in set_values]
    sources = data.get("sources", [])
    if not isinstance(sources, list):
        raise ConfigFileError("sources is not an array of tables [[sources]]")
    index = next((n for n, s in enumerate(sources) if isinstance(s, dict) and s.get("name") == source), None)
    lines = _split_lines(text)
    newline = "\r\n" if "\r\n" in text else "\n"
    statements = _scan(lines)
    expected = copy.deepcopy(data)

    if index is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += newline
        if lines and lines[-1].strip():
            lines.append(newline)
        lines.append("[[sources]]" + newline)
        lines.append(f"name = {toml_string(source)}{newline}")
        lines.append(f"type = {toml_string(new_type)}{newline}")
        lines.extend(f"{key} = {toml_string(value)}{newline}" for key, value in set_values.items())
        expected.setdefault("sources", []).append({"name": source, "type": new_type, **set_values})
        new_text = "".join(lines)
    else:
        headers = [s for s in statements if s.kind == "header" and s.path == ("sources",) and s.array]
        if len(headers) != len(sources):
            raise ConfigFileError("the sources are not all written as [[sources]] tables")
        header = headers[index]
        start = statements.index(header) + 1
        end = next((n for n in range(start, len(statements)) if statements[n].kind == "header"),
                   len(statements))
        region = [s for s in statements[start:end] if s.kind == "keyval"]
        replace: dict[int, list[str]] = {}
        drop: set[int] = set()
        missing: list[str] = []
        for key, value in set_values.items():
            found = next((s for s in region if s.path == (key,)), None)
            if found is None:
                missing.append(f"{header.indent}{key} = {toml_string(value)}{newline}")
                continue
            ending = newline if lines[found.last].endswith("\n") else ""
            replace[found.first] = [f"{found.indent}{found.key_text} = {toml_string(value)}"
                                    f"{found.comment}{ending}"]
            drop.update(range(found.first + 1, found.last + 1))
        for key in remove:
            for found in (s for s in region if s.path == (key,)):
                drop.update(range(found.first, found.last + 1))
        anchor = region[-1].last if region else header.last
        out: list[str] = []
        for n, line in enumerate(lines):
            if n in replace:
                out.extend(replace[n])
            elif n not in drop:
                out.append(line)
            if n == anchor and missing:
                if out and not out[-1].endswith("\n"):
                    out[-1] += newline
                out.extend(missing)
        new_text = "".join(out)
        table = expected["sources"][index]
        table.update(set_values)
        for key in remove:
            table.pop(key, None)
    try:
        parsed = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigFileError(f"rewriting the file would make it invalid TOML ({e})") from None
    if parsed != expected:
        raise ConfigFileError("rewriting the file would change more than the source's keys")
    return new_text


def write_source_keys(path: Path, source: str, set_values: Mapping[str, str],
                      remove: Iterable[str] = ()) -> bool:
    """Edit ``path`` (created when missing) atomically; False when nothing changed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raw = b""
    except OSError as e:
        raise ConfigFileError(f"cannot read {path}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigFileError(f"{path} is not UTF-8 text") from None
    new_text = edit_source(text, source, set_values, remove)
    if new_text == text:
        return False
    try:
        atomic_write(path, new_text.encode("utf-8"))
    except OSError as e:
        raise ConfigFileError(f"cannot write {path}: {e.strerror or e}") from None
    return True

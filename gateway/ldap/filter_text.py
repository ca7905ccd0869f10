"""RFC 4515 filter strings to our filter values (``gateway.ldap.filter``). Pure.

``parse_filter`` is the inverse of ``filter.to_text``: for every filter ``f``
built from attribute descriptions and non-empty substring components,
``parse_filter(to_text(f)) == f``.

Liberal where phone configurations are sloppy (../shared/docs/phones.md):

- whitespace around the filter and between the filters of ``&``, ``|`` and
  ``!`` is ignored: ``(&(cn=%) (telephoneNumber=*))`` (Grandstream docs);
  whitespace inside an item belongs to the value (``(cn= a)`` is " a");
- a bare item or operator without outer parentheses (``cn=foo``,
  ``&(a=1)(b=2)``) is accepted, as OpenLDAP's tools do;
- ``(&)`` and ``(|)`` are the absolute true/false filters of RFC 4526;
- besides ``\\XX`` hex escapes, the RFC 2254-era ``\\*``, ``\\(``, ``\\)`` and
  ``\\\\`` are accepted; escaped octets are UTF-8, or Latin-1 when they are
  not valid UTF-8 (as ``filter.decode_value`` does for the wire);
- empty substring components (``a**b``) are dropped; ``(cn=**)`` is
  ``(cn=*)``.

Everything else that is broken raises :class:`FilterSyntaxError` with the
position (0-based, into the text as given) and a reason, e.g. the missing
``)`` of Grandstream's documented ``(|(telephoneNumber=%)(Mobile=%)``.
Parsing is iterative, so deeply nested input cannot exhaust the stack.
"""

from __future__ import annotations

import re

from gateway.ldap.filter import (
    And,
    Approx,
    Equality,
    Extensible,
    Filter,
    GreaterOrEqual,
    LessOrEqual,
    Not,
    Or,
    Present,
    Substrings,
    decode_value,
)

__all__ = ["FilterSyntaxError", "parse_filter"]

_WS = " \t\r\n"
# attributedescription: descr or numericoid, then ;options.  "_" is tolerated
# (some vendor schemas use it).
_ATTR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:;[A-Za-z0-9_-]+)*\Z")
_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_HEX = "0123456789abcdefABCDEF"
# The text of an item up to its ")": anything but parentheses and
# backslashes, or a backslash and the character after it (checked later).
_ITEM_TEXT = re.compile(r"(?:[^()\\]|\\.)*", re.S)
# One substring piece: up to the next unescaped "*".
_PIECE = re.compile(r"(?:[^*\\]|\\.)*", re.S)


class FilterSyntaxError(ValueError):
    """A filter string that is not RFC 4515 (nor tolerably close to it)."""

    def __init__(self, reason: str, position: int, text: str):
        self.reason = reason
        self.position = position
        self.text = text
        super().__init__(f"filter syntax error at position {position}: {reason}; filter: {text!r}")


def parse_filter(text: str) -> Filter:
    """Parse an RFC 4515 filter string (see the module docstring)."""
    if isinstance(text, (bytes, bytearray)):
        text = decode_value(bytes(text))
    if not isinstance(text, str):
        raise TypeError(f"filter text must be str, not {type(text).__name__}")
    n = len(text)
    start = 0
    while start < n and text[start] in _WS:
        start += 1
    if start == n:
        raise FilterSyntaxError("empty filter", start, text)
    return _Parser(text).parse(start, bare=text[start] != "(")


class _Parser:
    __slots__ = ("s",)

    def __init__(self, s: str):
        self.s = s

    def fail(self, reason: str, pos: int):
        raise FilterSyntaxError(reason, min(max(pos, 0), len(self.s)), self.s)

    def skip(self, pos: int) -> int:
        s = self.s
        n = len(s)
        while pos < n and s[pos] in _WS:
            pos += 1
        return pos

    def parse(self, pos: int, bare: bool = False) -> Filter:
        """Parse the filter at ``pos`` (the first non-blank character).

        With ``bare``, the filter has no outer parentheses and ends at the end
        of the text.  Operators waiting for their ")" are kept on an explicit
        stack of (operator, children, position of "(" or None when bare).
        """
        s = self.s
        n = len(s)
        stack: list[tuple[str, list, int | None]] = []
        node: Filter | None = None
        opened = pos  # where the latest finished node started
        if bare:
            c = s[pos]
            if c == "&" or c == "|" or c == "!":
                stack.append((c, [], None))
                pos = self.skip(pos + 1)
            else:
                end = n
                while s[end - 1] in _WS:
                    end -= 1
                stop = _ITEM_TEXT.match(s, pos, end).end()
                if stop < end:
                    if s[stop] == "(":
                        self.fail("unescaped '(' in a filter item (write \\28)", stop)
                    if s[stop] == ")":
                        self.fail("unexpected ')' (unbalanced parentheses)", stop)
                    self.fail("invalid escape (use \\ and two hex digits)", stop)
                return self.item(pos, end)
        while True:
            # ---- attach finished nodes, close finished operators
            while True:
                if node is not None:
                    if not stack:
                        pos = self.skip(pos)
                        if pos != n:
                            self.fail(f"unexpected {s[pos]!r} after the end of the filter", pos)
                        return node
                    op, children, _ = stack[-1]
                    if op == "!" and children:
                        self.fail("'!' takes exactly one filter", opened)
                    children.append(node)
                    node = None
                    pos = self.skip(pos)
                if not stack:
                    break
                top_open = stack[-1][2]
                if pos < n and s[pos] == ")":
                    if top_open is None:
                        self.fail("unexpected ')' (unbalanced parentheses)", pos)
                    node, opened = self.close(stack.pop(), pos)
                    pos += 1
                    continue
                if pos < n and s[pos] == "(":
                    break
                if pos >= n:
                    if top_open is None:
                        node, opened = self.close(stack.pop(), pos)
                        continue
                    self.fail(f"missing ')' for the '(' at position {top_open}", n)
                self.fail(f"expected '(' or ')' but found {s[pos]!r}", pos)
            # ---- a filter starts here, at a "("
            if pos >= n or s[pos] != "(":
                self.fail("expected '('", pos)
            opened = pos
            pos = self.skip(pos + 1)
            if pos >= n:
                self.fail(f"missing ')' for the '(' at position {opened}", n)
            c = s[pos]
            if c == "&" or c == "|" or c == "!":
                stack.append((c, [], opened))
                pos = self.skip(pos + 1)
            elif c == "(":
                self.fail("'(' cannot start a filter item (missing '&', '|' or '!'?)", pos)
            else:
                close = _ITEM_TEXT.match(s, pos).end()
                if close < n and s[close] == "(":
                    self.fail("unescaped '(' in a filter item (write \\28)", close)
                if close >= n or s[close] != ")":
                    self.fail(f"missing ')' for the '(' at position {opened}", n)
                node = self.item(pos, close)
                pos = close + 1

    def close(self, frame: tuple[str, list, int | None], pos: int) -> tuple[Filter, int]:
        """The filter of a finished operator, and where it started."""
        op, children, opened = frame
        start = 0 if opened is None else opened
        if op == "&":
            return And(tuple(children)), start
        if op == "|":
            return Or(tuple(children)), start
        if not children:
            self.fail("'!' needs a filter", pos)
        return Not(children[0]), start

    # ------------------------------------------------------------------ items

    def item(self, start: int, end: int) -> Filter:
        """The item in s[start:end] (end: its ')', or the end of a bare item)."""
        s = self.s
        eq = s.find("=", start, end)
        if eq < 0:
            self.fail("filter item without '=' (or '~=', '>=', '<=', ':=')", start)
        kind = s[eq - 1] if eq > start else ""
        lhs_end = eq - 1 if kind in ("~", ">", "<", ":") else eq
        value_start = eq + 1
        raw = s[value_start:end]
        if kind == ":":
            return self.extensible(start, lhs_end, raw, value_start)
        attr = self.attr(start, lhs_end)
        if kind == "~":
            return Approx(attr, self.value(raw, value_start))
        if kind == ">":
            return GreaterOrEqual(attr, self.value(raw, value_start))
        if kind == "<":
            return LessOrEqual(attr, self.value(raw, value_start))
        pieces = self.pieces(raw, value_start)
        if len(pieces) == 1:
            return Equality(attr, self.unescape(raw, value_start))
        values = [self.unescape(piece, at) if piece else "" for piece, at in pieces]
        initial = values[0] or None
        final = values[-1] or None
        anys = tuple(v for v in values[1:-1] if v)
        if initial is None and final is None and not anys:
            return Present(attr)
        return Substrings(attr, initial, anys, final)

    def pieces(self, raw: str, at: int) -> list[tuple[str, int]]:
        """Split a value at its unescaped '*': [(piece, position of piece)]."""
        out = []
        i = 0
        n = len(raw)
        while True:
            j = _PIECE.match(raw, i).end()
            out.append((raw[i:j], at + i))
            if j == n:
                return out
            if raw[j] != "*":  # a backslash at the very end
                self.fail("invalid escape (use \\ and two hex digits)", at + j)
            i = j + 1

    def attr(self, start: int, end: int) -> str:
        s = self.s
        while end > start and s[end - 1] in _WS:  # "(cn =x)": tolerated
            end -= 1
        name = s[start:end]
        if not name:
            self.fail("missing attribute description", start)
        if not _ATTR.match(name):
            self.fail(f"invalid attribute description {name!r}", start)
        return name

    def value(self, raw: str, at: int) -> str:
        pieces = self.pieces(raw, at)
        if len(pieces) > 1:
            self.fail("unescaped '*' in an assertion value (write \\2a)", pieces[1][1] - 1)
        return self.unescape(raw, at)

    def extensible(self, start: int, end: int, raw: str, at: int) -> Extensible:
        """attr [":dn"] [":" rule] ":=" value, or [":dn"] ":" rule ":=" value."""
        s = self.s
        lhs = s[start:end]
        parts = lhs.split(":")
        attr: str | None = parts[0]
        rest = parts[1:]
        if attr:
            attr = self.attr(start, start + len(attr))
        else:
            attr = None
        dn = False
        if rest and rest[0].lower() == "dn":
            dn = True
            rest = rest[1:]
        rule = None
        if len(rest) > 1:
            self.fail(f"invalid extensible match {lhs + ':='!r}", start)
        if rest:
            rule = rest[0]
            if not _RULE.match(rule):
                self.fail(f"invalid matching rule {rule!r}", start + lhs.rfind(":") + 1)
        if attr is None and rule is None:
            self.fail("extensible match needs an attribute or a matching rule", start)
        return Extensible(rule, attr, self.value(raw, at), dn)

    def unescape(self, raw: str, at: int) -> str:
        """Resolve escapes in a value.  Each run of escaped octets is decoded
        as UTF-8 (Latin-1 when invalid); unescaped text stays as it is."""
        if "\\" not in raw:
            if "\x00" in raw:
                self.fail("NUL in an assertion value (write \\00)", at + raw.index("\x00"))
            return raw
        out: list[str] = []
        run = bytearray()
        i = 0
        n = len(raw)
        while i < n:
            c = raw[i]
            if c == "\\":
                h = raw[i + 1 : i + 3]
                if len(h) == 2 and h[0] in _HEX and h[1] in _HEX:
                    run.append(int(h, 16))
                    i += 3
                    continue
                if h[:1] in ("*", "(", ")", "\\"):
                    run.extend(h[0].encode())
                    i += 2
                    continue
                self.fail("invalid escape (use \\ and two hex digits)", at + i)
            if c == "\x00":
                self.fail("NUL in an assertion value (write \\00)", at + i)
            if run:
                out.append(decode_value(bytes(run)))
                run.clear()
            j = raw.find("\\", i)
            if j < 0:
                j = n
            chunk = raw[i:j]
            if "\x00" in chunk:
                self.fail("NUL in an assertion value (write \\00)", at + i + chunk.index("\x00"))
            out.append(chunk)
            i = j
        if run:
            out.append(decode_value(bytes(run)))
        return "".join(out)

"""Where each key of a TOML document is written: key path → (line, column).

``tomllib`` parses but forgets positions, and no maintained TOML parser reports them, so
this is a small scanner over the text that only *locates*; the parsing itself is always
done by ``tomllib``. It understands table headers (``[a."b.c"]``), arrays of tables
(``[[a]]``, indexed in order), dotted and quoted keys, inline tables and multi-line
strings and arrays. The column is that of the value, where the problem usually is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

Path = tuple[str | int, ...]
Position = tuple[int, int]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_BASIC = re.compile(r'"((?:[^"\\]|\\.)*)"')
_LITERAL = re.compile(r"'([^']*)'")


def locate(text: str) -> dict[Path, Position]:
    """Map every key path written in ``text`` to the 1-based line and column of its value."""
    positions: dict[Path, Position] = {}
    table: Path = ()
    array_counts: dict[Path, int] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if stripped.startswith("[["):
            keys, _ = _read_keys(stripped, 2)
            base = tuple(keys)
            count = array_counts.get(base, 0)
            array_counts[base] = count + 1
            table = (*base, count)
            positions.setdefault(base, (index + 1, indent + 1))
            positions[table] = (index + 1, indent + 1)
        elif stripped.startswith("["):
            keys, _ = _read_keys(stripped, 1)
            table = tuple(keys)
            for size in range(1, len(table)):
                positions.setdefault(table[:size], (index + 1, indent + 1))
            positions[table] = (index + 1, indent + 1)
        elif stripped and not stripped.startswith("#"):
            keys, end = _read_keys(stripped, 0)
            if keys and end < len(stripped) and stripped[end] == "=":
                value_at = end + 1 + _spaces(stripped, end + 1)
                path = (*table, *keys)
                positions[path] = (index + 1, indent + value_at + 1)
                value = stripped[value_at:]
                if value.startswith("{"):
                    _inline_table(value, path, index + 1, indent + value_at, positions)
                index += _continuation_lines(lines, index, value)
        index += 1
    return positions


def nearest(positions: dict[Path, Position], path: Path) -> Position | None:
    """The position of ``path``, or of its longest prefix that was written down."""
    for size in range(len(path), 0, -1):
        found = positions.get(path[:size])
        if found is not None:
            return found
    return None


def _spaces(text: str, at: int) -> int:
    return len(text[at:]) - len(text[at:].lstrip(" \t"))


def _read_keys(text: str, at: int) -> tuple[list[str], int]:
    """Read a dotted key starting at ``at``; return its parts and where it stops."""
    keys: list[str] = []
    pos = at
    while True:
        pos += _spaces(text, pos)
        for pattern in (_BASIC, _LITERAL, _BARE):
            match = pattern.match(text, pos)
            if match:
                raw = match.group(1) if match.re is not _BARE else match.group(0)
                keys.append(_unescape(raw) if match.re is _BASIC else raw)
                pos = match.end()
                break
        else:
            return keys, pos
        pos += _spaces(text, pos)
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return keys, pos


def _unescape(raw: str) -> str:
    return raw.encode("utf-8").decode("unicode_escape") if "\\" in raw else raw


def _inline_table(
    value: str, path: Path, line: int, offset: int, positions: dict[Path, Position]
) -> None:
    """Record the keys of ``{ a = 1, b = { c = 2 } }`` written on one line."""
    stack: list[Path] = [path]
    pos = 1
    expect_key = True
    for token_at, token in _inline_tokens(value):
        if token_at < pos:
            continue
        if token == "{":
            expect_key = True
        elif token == "}":
            stack.pop()
            if not stack:
                return
        elif token == ",":
            expect_key = True
        elif expect_key:
            keys, end = _read_keys(value, token_at)
            if not keys or end >= len(value) or value[end] != "=":
                return
            value_at = end + 1 + _spaces(value, end + 1)
            child = (*stack[-1], *keys)
            positions[child] = (line, offset + value_at + 1)
            nested = value[value_at : value_at + 1] == "{"
            if nested:
                stack.append(child)
            pos = value_at + 1 if nested else value_at
            expect_key = nested


def _inline_tokens(value: str) -> Iterator[tuple[int, str]]:
    """Positions of structural characters and key starts, skipping strings."""
    pos = 0
    depth_array = 0
    while pos < len(value):
        char = value[pos]
        if char in "\"'":
            end = value.find(char, pos + 1)
            while char == '"' and end > 0 and value[end - 1] == "\\":
                end = value.find(char, end + 1)
            if depth_array == 0 and value[pos - 1 : pos] in ("{", ",", " ", ""):
                yield pos, "key"
            pos = end + 1 if end > 0 else len(value)
            continue
        if char == "[":
            depth_array += 1
        elif char == "]":
            depth_array -= 1
        elif depth_array == 0 and char in "{},":
            yield pos, char
        elif depth_array == 0 and _BARE.match(char):
            yield pos, "key"
        pos += 1


def _continuation_lines(lines: list[str], index: int, value: str) -> int:
    """How many following lines belong to a value that starts on this line."""
    for quote in ('"""', "'''"):
        if value.startswith(quote) and value.count(quote) == 1:
            for extra, later in enumerate(lines[index + 1 :], start=1):
                if quote in later:
                    return extra
    if value.startswith("["):
        depth = _bracket_depth(value)
        extra = 0
        while depth > 0 and index + extra + 1 < len(lines):
            extra += 1
            depth += _bracket_depth(lines[index + extra])
        return extra
    return 0


def _bracket_depth(text: str) -> int:
    depth = 0
    quote = ""
    for char in text:
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            break
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
    return depth

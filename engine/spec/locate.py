"""Map dotted key paths of a TOML document to the line that defines them.

tomllib parses without positions, so this scans the text once: table headers, arrays of tables,
`key = value` lines (dotted keys included), and, inside values, the keys of inline tables and the
elements of arrays, across lines. It only has to point a person at the right line.
"""

from __future__ import annotations

import re

_BARE = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_DOTTED = rf"{_BARE}(?:\s*\.\s*{_BARE})*"
_HEADER = re.compile(rf"^\s*(\[\[|\[)\s*({_DOTTED})\s*\]\]?\s*$")
_KEY = re.compile(rf"\s*({_DOTTED})\s*=")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\n -]")


def _split_key(key: str) -> tuple[str, ...]:
    return tuple(p.strip().strip("\"'") for p in re.findall(rf"{_BARE}", key))


def _blank(text: str) -> str:
    """The document with comments removed and string contents blanked, newlines kept.

    One pass over the whole text, so multi-line strings and quotes inside comments (or '#'
    inside strings) cannot be mistaken for structure.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c not in "\"'":
            out.append(c)
            i += 1
            continue
        quote = c * 3 if text.startswith(c * 3, i) else c
        j = i + len(quote)
        while j < n and not text.startswith(quote, j):
            if text[j] == "\n" and len(quote) == 1:
                break  # unterminated (tomllib reports it); the newline stays
            j += 2 if (c == '"' and text[j] == "\\") else 1
        while len(quote) == 3 and j + 3 < n and text[j + 3] == c:
            j += 1  # a multi-line string's content may end with up to two quotes
        # Keep what a quoted key needs, blank the rest (brackets, braces, '#', '=', quotes).
        out.append(quote + _UNSAFE.sub(" ", text[i + len(quote) : j]))
        i = j
        if text.startswith(quote, j):
            out.append(quote)
            i += len(quote)
    return "".join(out)


def locate_lines(text: str) -> dict[tuple, int]:
    """{path tuple: 1-based line}. Arrays of tables and array elements use integer indices."""
    lines: dict[tuple, int] = {}
    table: tuple = ()
    aot_counts: dict[tuple, int] = {}
    # Inside a value: a stack of [kind, path, index, element_seen]; kind "array" or "table".
    stack: list[list] = []
    value_path: tuple | None = None  # path of the value about to start

    def note(path: tuple, lineno: int) -> None:
        lines.setdefault(path, lineno)

    def resolve(path: tuple) -> tuple:
        """Header path -> document path: an array of tables' name means its last element."""
        out: tuple = ()
        for part in path:
            out += (part,)
            if out in aot_counts:
                out += (aot_counts[out] - 1,)
        return out

    for lineno, code in enumerate(_blank(text).splitlines(), start=1):
        pos = 0
        if not stack:
            header = _HEADER.match(code)
            if header:
                path = _split_key(header.group(2))
                if header.group(1) == "[[":
                    path = resolve(path[:-1]) + path[-1:]
                    index = aot_counts.get(path, 0)
                    aot_counts[path] = index + 1
                    note(path, lineno)
                    table = path + (index,)
                else:
                    table = resolve(path)
                note(table, lineno)
                continue
            key = _KEY.match(code)
            if not key:
                continue
            value_path = table + _split_key(key.group(1))
            note(value_path, lineno)
            pos = key.end()
        while pos < len(code):
            c = code[pos]
            top = stack[-1] if stack else None
            if top is not None and top[0] == "table":
                key = _KEY.match(code, pos)
                if key and c not in "{}[],":
                    value_path = top[1] + _split_key(key.group(1))
                    note(value_path, lineno)
                    pos = key.end()
                    continue
            if top is not None and top[0] == "array" and not c.isspace() and c not in "],":
                if not top[3]:
                    value_path = top[1] + (top[2],)
                    note(value_path, lineno)
                    top[3] = True
            if c == "[":
                stack.append(["array", value_path, 0, False])
            elif c == "{":
                stack.append(["table", value_path, 0, False])
            elif c in "]}":
                if stack:
                    stack.pop()
            elif c == "," and top is not None and top[0] == "array":
                top[2] += 1
                top[3] = False
            pos += 1
    return lines


def line_of(lines: dict[tuple, int], path: tuple) -> int | None:
    """The line of the longest prefix of `path` that the document defines."""
    for cut in range(len(path), 0, -1):
        if path[:cut] in lines:
            return lines[path[:cut]]
    return None

"""Unified diffs as rows for the page: add/remove colouring plus Python syntax highlighting.

Each hunk's old side (context and removed lines) and new side (context and added lines) are
highlighted as whole blocks, so a multi-line string inside a hunk is coloured as one token;
pygments closes its spans at every line end, which lets the blocks be split back into rows.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from markupsafe import Markup, escape
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

MAX_DIFF_LINES = 400  # longer diffs are cut: `dreamteam diff` shows them whole
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_FORMATTER = HtmlFormatter(nowrap=True, style="default", nobackground=True)


@dataclass(frozen=True)
class DiffLine:
    """One row of a rendered diff."""

    kind: str  # file | hunk | add | del | ctx | note
    old: int | None  # line number in the parent's file
    new: int | None  # line number in the candidate's file
    html: Markup


@dataclass(frozen=True)
class RenderedDiff:
    """A diff ready for the template, with its size."""

    lines: tuple[DiffLine, ...]
    added: int
    removed: int
    hidden: int  # lines cut by MAX_DIFF_LINES


def highlight_css(scope: str) -> str:
    """The token colours of the highlighter, scoped under a CSS selector."""
    return _FORMATTER.get_style_defs(scope)


@functools.cache
def _lexer(filename: str) -> Lexer:
    # finding a lexer scans pygments' plugins: once per file name is enough; lexers are reusable
    options = {"stripnl": False, "ensurenl": True}
    try:
        return get_lexer_for_filename(filename, **options)
    except ClassNotFound:
        return TextLexer(**options)


def _highlighted(lines: list[str], lexer: Lexer) -> Iterator[Markup]:
    if not lines:
        return iter(())
    html = highlight("\n".join(lines) + "\n", lexer, _FORMATTER)
    # pygments markup is escaped HTML; one output line per input line
    return iter([Markup(line) for line in html.split("\n")[: len(lines)]])


def _hunk(body: list[str], old: int, new: int, lexer: Lexer) -> list[DiffLine]:
    old_side = _highlighted([line[1:] for line in body if line[:1] in (" ", "-", "")], lexer)
    new_side = _highlighted([line[1:] for line in body if line[:1] in (" ", "+", "")], lexer)
    rows = []
    for line in body:
        mark = line[:1]
        if mark == "-":
            rows.append(DiffLine("del", old, None, next(old_side)))
            old += 1
        elif mark == "+":
            rows.append(DiffLine("add", None, new, next(new_side)))
            new += 1
        elif mark == "\\":
            rows.append(DiffLine("note", None, None, escape(line)))
        else:
            next(old_side)
            rows.append(DiffLine("ctx", old, new, next(new_side)))
            old, new = old + 1, new + 1
    return rows


def _hunk_body(lines: list[str], start: int, old_len: int, new_len: int) -> list[str]:
    """The lines of one hunk, counted by its header (a removed `-- x` line looks like a header)."""
    body, i = [], start
    while i < len(lines) and (old_len > 0 or new_len > 0 or lines[i].startswith("\\")):
        line = lines[i]
        mark = line[:1]
        old_len -= mark in (" ", "-", "")
        new_len -= mark in (" ", "+", "")
        body.append(line)
        i += 1
    return body


def render_diff(diff: str, limit: int = MAX_DIFF_LINES) -> RenderedDiff:
    """Rows for a unified diff as `dreamteam.propose.edits.diff_files` writes it."""
    lines = diff.splitlines()
    shown = lines[:limit]
    rows: list[DiffLine] = []
    lexer: Lexer = TextLexer()
    i = 0
    while i < len(shown):
        line = shown[i]
        hunk = _HUNK.match(line)
        if line.startswith("--- ") and i + 1 < len(shown) and shown[i + 1].startswith("+++ "):
            name = shown[i + 1][4:].strip().removeprefix("b/")
            lexer = _lexer(name)
            rows.append(DiffLine("file", None, None, escape(name)))
            i += 2
        elif hunk:
            old, old_len, new, new_len = (int(g) if g else 1 for g in hunk.groups())
            body = _hunk_body(shown, i + 1, old_len, new_len)
            rows.append(DiffLine("hunk", None, None, escape(line)))
            rows.extend(_hunk(body, old, new, lexer))
            i += 1 + len(body)
        else:
            rows.append(DiffLine("note", None, None, escape(line)))
            i += 1
    added = sum(1 for r in rows if r.kind == "add")
    removed = sum(1 for r in rows if r.kind == "del")
    return RenderedDiff(tuple(rows), added, removed, max(0, len(lines) - limit))

"""Ablation of a winner, the pure half: its change against the baseline split into parts, and
the winner's code rebuilt with some parts reverted to the baseline's.

    baseline files + winner files ─► split_parts ─► [Part]   (one per hyperparameter move and
                                                              one per edited definition)
    revert(baseline, winner, parts, reverted) ─► the winner without those parts

A part is what the change record (propose/changes.py) names: a moved constant or constant
keyword argument, or an edited function, method, class or the module's other top-level code.
A class added or removed whole is one part with its methods; a keyword argument added or
removed goes with the edit of the function holding it (the edit's shape includes it).

Reverting rewrites text by position: a move sets the value back (or drops an added constant,
or adds a removed module constant back); an edit puts the baseline's definition back (drops
an added one, re-inserts a removed one after its baseline neighbour). Every other move keeps
the winner's value. The result is then read again: when its record against the winner is not
exactly the reverted parts, the part is `NotSeparable` — never a silently wider variant.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from dreamteam import pyparse
from dreamteam.agents.source_edit import set_constants
from dreamteam.propose.changes import extract_record, hyperparameter_nodes, is_hyper, main_file
from dreamteam.records import MODULE, Edit, Move

_VERBS = {"~": "edited", "+": "added", "-": "removed"}


class NotSeparable(Exception):
    """A part cannot be reverted alone (its reason is the message)."""


@dataclass(frozen=True)
class Part:
    """One piece of a change: a move, or an edit with what goes with it."""

    label: str
    moves: tuple[Move, ...] = ()
    edits: tuple[Edit, ...] = ()

    @property
    def structural(self) -> bool:
        return bool(self.edits)


def _edit_label(e: Edit) -> str:
    what = "top-level code" if e.name == MODULE else e.name
    return f"{_VERBS.get(e.op, e.op)} {what} ({e.file})"


def _split_name(name: str, files: Collection[str]) -> tuple[str | None, str]:
    """(file, hyperparameter) of a Move name; file None means the main file."""
    head, sep, rest = name.partition(":")
    return (head, rest) if sep and head in files else (None, name)


def _scope(move: Move, files: Collection[str], main: str) -> tuple[str, str]:
    """(file, definition) holding a keyword move."""
    file, hp = _split_name(move.name, files)
    return file or main, hp.partition(":")[0]


def split_parts(baseline: Mapping[str, str], winner: Mapping[str, str]) -> list[Part]:
    """The parts of the winner's change against the baseline, moves first, in record order."""
    record = extract_record(baseline, winner)
    if record is None:
        raise NotSeparable("a file does not parse")
    files, main = set(baseline) | set(winner), main_file(baseline)
    whole = {(e.file, e.name) for e in record.edits if e.op != "~"}  # classes added/removed
    owned = {e: (e.file, e.name.partition(".")[0]) for e in record.edits if "." in e.name}
    edits = [e for e in record.edits if owned.get(e) not in whole]
    added_kw = [m for m in record.moves if m.keyword and not (m.before and m.after)]
    homes = {(e.file, e.name) for e in edits}
    parts = [
        Part(m.describe(), moves=(m,))
        for m in record.moves
        if m not in added_kw or _scope(m, files, main) not in homes
    ]
    for e in edits:
        members = tuple(x for x in record.edits if owned.get(x) == (e.file, e.name))
        kws = tuple(m for m in added_kw if _scope(m, files, main) == (e.file, e.name))
        parts.append(Part(_edit_label(e), moves=kws, edits=(e, *members)))
    return parts


def revert(
    baseline: Mapping[str, str],
    winner: Mapping[str, str],
    parts: Collection[Part],
    reverted: Collection[Part],
) -> dict[str, str]:
    """The winner's files with `reverted` (some of `parts`) set back to the baseline's."""
    files = dict(winner)
    for part in reverted:
        if part.edits:
            e = part.edits[0]
            files[e.file] = _revert_edit(baseline.get(e.file, ""), files.get(e.file, ""), e)
    main = main_file(baseline)
    for part in parts:
        if part.edits:
            continue  # a keyword riding with an edit came back with the definition
        for m in part.moves:
            file, hp = _split_name(m.name, files)
            name = file or main
            if part in reverted:  # spelled as the baseline spells it
                value = _spelling(baseline.get(name, ""), hp) or m.before
            else:
                value = _spelling(winner.get(name, ""), hp) or m.after
            files[name] = _set_value(files[name], hp, value)
    _verify(files, winner, reverted)
    return files


def _verify(
    files: Mapping[str, str], winner: Mapping[str, str], reverted: Collection[Part]
) -> None:
    record = extract_record(files, winner)
    if record is None:
        raise NotSeparable("reverting it leaves code that does not parse")
    want_moves = {m for p in reverted for m in p.moves}
    want_edits = {e for p in reverted for e in p.edits}
    extra = [m.describe() for m in record.moves if m not in want_moves]
    extra += [_edit_label(e) for e in record.edits if e not in want_edits]
    missing = [m.describe() for m in want_moves - set(record.moves)]
    missing += [_edit_label(e) for e in want_edits - set(record.edits)]
    if extra or missing:
        said = "; ".join(
            x
            for x in (
                f"also reverts {', '.join(extra)}" if extra else "",
                f"cannot revert {', '.join(missing)}" if missing else "",
            )
            if x
        )
        raise NotSeparable(said)


# -- moves ------------------------------------------------------------------------------------
def _offset(lines: list[str], lineno: int, col: int) -> int:
    """The string offset of an ast position (its column counts UTF-8 bytes)."""
    head = sum(len(line) for line in lines[: lineno - 1])
    return head + len(lines[lineno - 1].encode()[:col].decode(errors="ignore"))


def _spelling(src: str, hp: str) -> str:
    """The source text of hyperparameter `hp`'s value in `src` ("" when absent)."""
    try:
        node = hyperparameter_nodes(pyparse.parse(src)).get(hp)
    except (SyntaxError, ValueError, RecursionError):
        return ""
    text = ast.get_source_segment(src, node) if node is not None else None
    return text if text and "\n" not in text else ""


def _set_value(src: str, hp: str, value: str) -> str:
    """`src` with hyperparameter `hp` set to `value` (code); "" removes it."""
    tree = pyparse.parse(src)
    node = hyperparameter_nodes(tree).get(hp)
    if node is not None and value:
        lines = src.splitlines(keepends=True)
        start = _offset(lines, node.lineno, node.col_offset)
        end = _offset(lines, node.end_lineno or node.lineno, node.end_col_offset or 0)
        return src[:start] + value + src[end:]
    if node is not None:  # added by the winner: drop the statement that binds only it
        stmt = _binding(tree, node)
        lines = src.splitlines(keepends=True)
        return "".join(lines[: stmt.lineno - 1] + lines[stmt.end_lineno or stmt.lineno :])
    if not value:
        return src
    if "." in hp or "(" in hp:
        raise NotSeparable(f"{hp} was removed and cannot be put back by itself")
    return set_constants(src, {hp: value})


def _binding(tree: ast.Module, node: ast.expr) -> ast.stmt:
    bodies = [tree.body] + [s.body for s in tree.body if isinstance(s, ast.ClassDef)]
    for stmt in (s for body in bodies for s in body):
        if getattr(stmt, "value", None) is node:
            return stmt
    raise NotSeparable("the constant shares its line with others")


# -- edits ------------------------------------------------------------------------------------
_Chunk = tuple[str | None, str]  # (key, text with the lines leading up to it)


def _key(stmt: ast.stmt) -> str | None:
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return stmt.name
    if is_hyper(stmt):
        return "=" + ",".join(sorted(n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)))
    return None


def _container(tree: ast.Module, qualname: str) -> tuple[list[ast.stmt], int, str]:
    """(body, first line index of the body, the definition's name in it) for a name."""
    cls, dot, name = qualname.rpartition(".")
    if not dot:
        return tree.body, 0, qualname
    node = next((s for s in tree.body if isinstance(s, ast.ClassDef) and s.name == cls), None)
    if node is None or node.body[0].lineno == node.lineno:
        raise NotSeparable(f"no class {cls} laid out over lines")
    return node.body, node.body[0].lineno - 1, name


def _chunks(src: str, qualname: str) -> tuple[list[str], int, int, list[_Chunk], str]:
    """The lines of `src`, the span the container's body covers, its chunks, the name."""
    lines = src.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    body, start, name = _container(pyparse.parse(src), qualname)
    chunks, at = [], start
    for stmt in body:
        end = stmt.end_lineno or stmt.lineno
        chunks.append((_key(stmt), "".join(lines[at:end])))
        at = end
    return lines, start, at, chunks, name


def _revert_edit(base_src: str, win_src: str, e: Edit) -> str:
    lines, start, end, chunks, name = _chunks(win_src, e.name)
    _, _, _, base, _ = _chunks(base_src, e.name)
    if e.name == MODULE:
        chunks = _merge_module(base, chunks)
    elif e.op == "+":
        chunks = [c for c in chunks if c[0] != name]
    elif e.op == "-":
        chunks = _insert(base, chunks, name)
    elif any(isinstance(s, ast.ClassDef) and s.name == e.name for s in pyparse.parse(win_src).body):
        raise NotSeparable(f"class {e.name}'s own lines changed: revert it by hand")
    else:
        text = next((t for k, t in base if k == name), None)
        if text is None:
            raise NotSeparable(f"no {e.name} in the baseline")
        chunks = [(k, text if k == name else t) for k, t in chunks]
    return "".join(lines[:start] + [t for _, t in chunks] + lines[end:])


def _insert(base: list[_Chunk], chunks: list[_Chunk], name: str) -> list[_Chunk]:
    """`chunks` with the baseline's chunk `name` put back after its baseline neighbour."""
    i = next(i for i, (k, _) in enumerate(base) if k == name)
    keys = [k for k, _ in chunks]
    anchor = next((keys.index(k) + 1 for k, _ in reversed(base[:i]) if k in keys and k), 0)
    return [*chunks[:anchor], base[i], *chunks[anchor:]]


def _merge_module(base: list[_Chunk], chunks: list[_Chunk]) -> list[_Chunk]:
    """The winner's definitions and constants with the baseline's other top-level code, each
    baseline statement placed after the definition it followed there."""
    out = [c for c in chunks if c[0] is not None]
    at = 0
    for key, text in base:
        keys = [k for k, _ in out]
        if key is None:
            out.insert(at, (None, text))
            at += 1
        elif key in keys:
            at = keys.index(key) + 1
    return out

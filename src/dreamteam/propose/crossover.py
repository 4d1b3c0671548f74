"""Crossover: one candidate's changes, as search/replace edits, applied onto another's code.

The second candidate's change is read as the difference from its own parent, one hunk per
changed region, and each hunk is put onto the first candidate's files as a SEARCH/REPLACE
edit by `edits.apply_edits`, with the strict rules an agent's answer meets. A hunk is tried
with three lines of context on each side, then fewer, so a neighbouring line the first
candidate changed does not block it; the SEARCH text must still match exactly once. When a
hunk matches nowhere (both candidates changed the same lines), the crossover is invalid and
says which hunk failed. Pure: strings in, values out.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dreamteam.propose.edits import (
    Edit,
    EditKind,
    ParsedEdits,
    Replacement,
    apply_edits,
    diff_files,
    render_edits,
)
from dreamteam.records import CandidateKind, CandidateRecord, Status

# (lines before, lines after) a hunk, tried in order: the most context first
_CONTEXTS = ((3, 3), (2, 2), (1, 1), (1, 0), (0, 1), (0, 0))


@dataclass(frozen=True)
class Hunk:
    """One changed region of one file, with the same change at decreasing context."""

    file: str
    line: int  # 1-based line of the region in the second candidate's parent
    options: tuple[Replacement, ...]


@dataclass(frozen=True)
class CrossoverResult:
    """The first candidate's files with the second's changes, and how that went."""

    files: Mapping[str, str]  # the first's files, unchanged, when the changes did not apply
    edits: str  # the changes as SEARCH/REPLACE blocks (those applied, or all on failure)
    reason: str = ""  # empty when every change applied and the code changed

    @property
    def ok(self) -> bool:
        return not self.reason


def _options(
    a: Sequence[str], b: Sequence[str], span: tuple[int, int, int, int]
) -> list[Replacement]:
    """One region at each context size. Lines before it are taken from the new side (earlier
    hunks are applied by then), lines after it from the old side (later ones are not yet)."""
    i1, i2, j1, j2 = span
    options = []
    for before, after in _CONTEXTS:
        head = list(b[max(0, j1 - before) : j1])
        tail = list(a[i2 : i2 + after])
        search = head + list(a[i1:i2]) + tail
        if any(line.strip() for line in search):  # blank lines alone anchor nothing
            options.append(Replacement("".join(search), "".join(head + list(b[j1:j2]) + tail)))
    return list(dict.fromkeys(options))  # a region at a file's edge repeats an option


def hunks(before: Mapping[str, str], after: Mapping[str, str]) -> list[Hunk]:
    """The change from `before` to `after`, region by region, in file order."""
    found = []
    for name, new in after.items():
        old = before.get(name, "")
        if old == new:
            continue
        a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag != "equal":
                found.append(Hunk(name, i1 + 1, tuple(_options(a, b, (i1, i2, j1, j2)))))
    return found


def _fits(files: Mapping[str, str], file: str, rep: Replacement) -> Mapping[str, str] | str:
    """`files` with one replacement made, or why its SEARCH text is not there exactly once."""
    applied = apply_edits(files, ParsedEdits((Edit(file, EditKind.REPLACE, replacements=(rep,)),)))
    if applied.failures:
        return applied.failures[0].message.removeprefix("SEARCH block 1: ").split(":")[0]
    return applied.files


def _apply(files: dict[str, str], hunk: Hunk) -> tuple[Edit | None, str]:
    """Put one hunk onto `files` in place at the first context that matches exactly once.

    A hunk whose result is already there (the first candidate made the same change) is
    returned as applied without touching the files."""
    why = "no line to anchor it"
    for rep in hunk.options:
        done = _fits(files, hunk.file, rep)
        if isinstance(done, str):
            why = done
            continue
        files.update(done)
        return Edit(hunk.file, EditKind.REPLACE, replacements=(rep,)), ""
    for rep in hunk.options:
        undone = _fits(files, hunk.file, Replacement(rep.replace, rep.search))
        if rep.replace.strip() and not isinstance(undone, str):
            return Edit(hunk.file, EditKind.REPLACE, replacements=(rep,)), ""
    return None, why


def cross(
    first: Mapping[str, str], second_parent: Mapping[str, str], second: Mapping[str, str]
) -> CrossoverResult:
    """Apply what `second` changed from `second_parent` onto `first`."""
    todo = hunks(second_parent, second)
    if not todo:
        return CrossoverResult(first, "", "the second candidate changed nothing")
    files, done = dict(first), []
    for hunk in todo:
        edit, why = _apply(files, hunk)
        if edit is None:
            shown = [Edit(h.file, EditKind.REPLACE, replacements=h.options[:1]) for h in todo]
            return CrossoverResult(
                first,
                render_edits(shown),
                f"the changes do not apply: {hunk.file} line {hunk.line}: {why}",
            )
        done.append(edit)
    if files == dict(first):
        return CrossoverResult(first, render_edits(done), "the first candidate already has them")
    return CrossoverResult(files, render_edits(done))


def crossover_candidate(
    cid: str,
    generation: int,
    first: CandidateRecord,
    second: CandidateRecord,
    origin: CandidateRecord,
) -> CandidateRecord:
    """The candidate that puts `second`'s change from `origin` (its parent) onto `first`:
    persona and kind "crossover", parent `first`; invalid with the reason when it fails.
    Its code hash is left for the search to fill in."""
    result = cross(first.files, origin.files, second.files)
    return CandidateRecord(
        id=cid,
        generation=generation,
        persona="crossover",
        mode="crossover",
        parent=first.id,
        kind=CandidateKind.CROSSOVER,
        code_hash="",
        files=result.files,
        diff=diff_files(first.files, result.files),
        response=result.edits,
        status="" if result.ok else str(Status.INVALID),
        reason=result.reason,
        summary=f"{first.id} with the changes {second.id} made to {origin.id}",
    )

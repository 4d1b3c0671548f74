"""Turning an agent's answer into file edits, and applying them to a candidate's files.

An answer may carry whole files (one fenced block per file, named on the block's first line
as the seeds ask, in the fence's info string, or in the prose just before it) or
SEARCH/REPLACE blocks that change part of a file. Parsing is lenient, because models stray
from any format; applying is strict, because a change put in the wrong place would be scored
as the persona's idea. Pure: strings and dataclasses in, values out.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

_PYTHON_INFO = frozenset({"", "python", "py", "python3", "py3"})
_DIFF_INFO = frozenset({"diff", "patch", "udiff"})
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_SEARCH = re.compile(r"^\s*<{5,9} ?(?:SEARCH|ORIGINAL)\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9} ?(?:REPLACE|UPDATED)\s*$")
_PATH = re.compile(r"[\w./\\-]*\w\.\w+")
# A line that holds only a file name, maybe as a comment or after "file:".
_NAME_LINE = re.compile(
    r"^\s*(?P<comment>#+|//)?\s*(?:(?:file(?:name)?|path)\s*[:=]\s*)?"
    r"[`*'\"]*(?P<name>[\w./\\-]+\.\w+)[`*'\"]*\s*:?\s*$",
    re.IGNORECASE,
)
_ELIDED = r"\b(?:unchanged|same|rest|remaining|existing|omitted|previous|as before)\b"
# A comment like "# ... rest of the file unchanged ...": the file is not whole.
_ELISION = re.compile(rf"^\s*#\s*(?:\.\.\.|…).*{_ELIDED}|^\s*#.*{_ELIDED}.*(?:\.\.\.|…)\s*$", re.I)
_LOOKBACK = 3  # prose lines before a fence that may name its file
_MIN_SIMILARITY = 0.25  # an unnamed block counts as a whole file only this close to one...
_MARGIN = 0.1  # ...and this much closer to it than to any other file


class EditKind(StrEnum):
    """How an edit changes its file."""

    FILE = "file"  # the whole new file
    REPLACE = "replace"  # SEARCH/REPLACE pairs applied in order


@dataclass(frozen=True)
class Replacement:
    """Put ``replace`` where the whole lines of ``search`` stand in the file."""

    search: str
    replace: str


@dataclass(frozen=True)
class Edit:
    """One change to one editable file, as the answer gave it."""

    file: str  # the task's own name for the file (aliases resolved)
    kind: EditKind
    content: str = ""  # the new file, for EditKind.FILE
    replacements: tuple[Replacement, ...] = ()  # for EditKind.REPLACE
    line: int = 0  # where the block starts in the answer (1-based; 0 when not from one)


@dataclass(frozen=True)
class EditFailure:
    """An edit the answer meant that cannot be applied as meant."""

    file: str
    line: int  # the block's line in the answer
    message: str

    def __str__(self) -> str:
        return f"{self.file}{f' (answer line {self.line})' if self.line else ''}: {self.message}"


@dataclass(frozen=True)
class ParsedEdits:
    """What an answer asks for: the edits, the blocks that cannot be used, what was ignored."""

    edits: tuple[Edit, ...] = ()
    problems: tuple[EditFailure, ...] = ()  # meant as edits but unusable (truncated, elided)
    notes: tuple[str, ...] = ()  # blocks left out on purpose (other files, diffs, duplicates)


@dataclass(frozen=True)
class EditResult:
    """The candidate's files after applying an answer, and what went wrong."""

    files: Mapping[str, str]
    changed: tuple[str, ...]  # files whose text differs from before, in the files' order
    failures: tuple[EditFailure, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every edit applied and at least one file changed."""
        return not self.failures and bool(self.changed)

    def reason(self) -> str:
        """A one-line summary for the store and the CLI; empty when ok."""
        if self.failures:
            more = len(self.failures) - 1
            return str(self.failures[0]) + (f" (+{more} more)" if more else "")
        if not self.changed:
            return "the answer changed no file" + (f": {self.notes[0]}" if self.notes else "")
        return ""


@dataclass(frozen=True)
class _Block:
    """A fenced block, or a run of bare SEARCH/REPLACE blocks, found in an answer."""

    line: int  # 1-based line of the fence (or first marker)
    info: str
    body: tuple[str, ...]
    closed: bool
    prose: tuple[str, ...]  # non-empty lines just before it, nearest first


@dataclass(frozen=True)
class _Names:
    """The editable files under every name an answer may use for them."""

    table: Mapping[str, str]  # lower-case name or alias -> the task's name
    exts: frozenset[str]  # their extensions: a token with one of them names a file

    def find(self, token: str) -> tuple[str | None, bool]:
        """(the editable file a token names, whether the token names any file at all)."""
        base = re.split(r"[/\\]", token.strip("`*'\".,:;()[]"))[-1].lower()
        known = self.table.get(base)
        return known, bool(known) or base.rsplit(".", 1)[-1] in self.exts


def _join(lines: Sequence[str]) -> str:
    """Lines as file text: no blank lines around it, one newline at the end."""
    text = "\n".join(line.rstrip() for line in lines).strip("\n")
    return text + "\n" if text else ""


def _scan(text: str) -> list[_Block]:
    """Find the fenced blocks and the bare SEARCH/REPLACE runs, with the prose before each."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks, prose, i = list[_Block](), list[str](), 0
    while i < len(lines):
        fence, before = _FENCE.match(lines[i]), tuple(reversed(prose[-_LOOKBACK:]))
        if fence and (fence["fence"][0] == "~" or "`" not in fence["info"]):
            mark, indent = fence["fence"], len(fence["indent"])
            close = re.compile(rf"^\s*{re.escape(mark[0])}{{{len(mark)},}}\s*$")
            j = next((k for k in range(i + 1, len(lines)) if close.match(lines[k])), len(lines))
            # Blocks indented under a list item carry that indent on every line.
            body = tuple(b[indent:] if b[:indent].isspace() else b for b in lines[i + 1 : j])
            blocks.append(_Block(i + 1, fence["info"].strip(), body, j < len(lines), before))
            prose, i = [], j + 1
        elif _SEARCH.match(lines[i]):
            # A run of bare SEARCH/REPLACE blocks, with the name lines and blank lines between.
            j = end = i
            while j < len(lines) and (
                _SEARCH.match(lines[j]) or _NAME_LINE.match(lines[j]) or not lines[j].strip()
            ):
                if _SEARCH.match(lines[j]):
                    ends = (k + 1 for k in range(j, len(lines)) if _REPLACE.match(lines[k]))
                    j = end = next(ends, len(lines))
                else:
                    j += 1
            blocks.append(_Block(i + 1, "", tuple(lines[i:end]), True, before))
            prose, i = [], end
        else:
            prose += [lines[i]] if lines[i].strip() else []
            i += 1
    return blocks


def _name_of(block: _Block, names: _Names) -> tuple[str | None, bool, str, tuple[str, ...]]:
    """(file, named by the block itself?, a non-editable file it names, body sans name line)."""
    for token in _PATH.findall(block.info):
        known, is_file = names.find(token)
        if is_file:
            return known, True, "" if known else token, block.body
    first = next((k for k, line in enumerate(block.body) if line.strip()), -1)
    match = _NAME_LINE.match(block.body[first]) if first >= 0 else None
    if match and names.find(match["name"])[1]:
        known = names.find(match["name"])[0]
        body = block.body if match["comment"] else block.body[first + 1 :]
        return known, True, "" if known else match["name"], body
    for line in block.prose:
        mentioned = [f for f in (names.find(t)[0] for t in _PATH.findall(line)) if f]
        if mentioned:
            return mentioned[0], False, "", block.body
    return None, False, "", block.body


def _spans(src: Sequence[str], want: Sequence[str], loose: bool) -> list[tuple[int, str]]:
    """Where ``want`` matches ``src`` line by line: (start, the indent to add to it)."""
    indent = min((w[: len(w) - len(w.lstrip())] for w in want if w.strip()), key=len)
    core = [w.removeprefix(indent if loose else "").rstrip() if w.strip() else "" for w in want]
    hits = []
    for start in range(len(src) - len(want) + 1):
        prefix: str | None = None
        for have, need in zip(src[start : start + len(want)], core, strict=True):
            have = have.rstrip()
            pad = have[: len(have) - len(need)]
            if not need:
                good = not have
            else:
                good = have.endswith(need) and not pad.strip() and prefix in (None, pad)
                good, prefix = good and (loose or not pad), pad
            if not good:
                break
        else:
            hits.append((start, prefix or ""))
    return hits


def _replace(source: str, rep: Replacement) -> tuple[str | None, str]:
    """Apply one replacement to whole lines: as written, else at another indentation."""
    if not rep.search.strip():
        if not source.strip():
            return rep.replace, ""
        return None, "the SEARCH part is empty: copy the lines to change from the current file"
    src, want = source.splitlines(keepends=True), rep.search.splitlines()
    for loose in (False, True):
        hits = _spans(src, want, loose)
        if len(hits) > 1:
            return None, f"the SEARCH text occurs {len(hits)} times: add lines to make it unique"
        if hits:
            start, pad = hits[0]
            cut = min((w[: len(w) - len(w.lstrip())] for w in want if w.strip()), key=len)
            new = [r.removeprefix(cut if loose else "") for r in rep.replace.splitlines()]
            lines = [(pad + r if r.strip() else "") + "\n" for r in new]
            return "".join([*src[:start], *lines, *src[start + len(want) :]]), ""
    first = next(w.strip() for w in want if w.strip())
    stripped = [s.strip() for s in src]
    near = difflib.get_close_matches(first, stripped, n=1, cutoff=0.6)
    hint = f"; its first line is closest to line {stripped.index(near[0]) + 1}" if near else ""
    return None, f"the SEARCH text matches nothing in the file{hint}: copy it exactly"


def _replacement_edits(
    block: _Block, name: str | None, body: Sequence[str], files: Mapping[str, str], names: _Names
) -> tuple[list[Edit], list[EditFailure]]:
    """A block's SEARCH/REPLACE pairs as edits; a bare name line switches the file."""
    edits: list[Edit] = []
    problems: list[EditFailure] = []
    i = 0
    while i < len(body):
        line, i = body[i], i + 1
        if (match := _NAME_LINE.match(line)) and names.find(match["name"])[0]:
            name = names.find(match["name"])[0]
        if not _SEARCH.match(line):
            continue
        parts: list[list[str]] = [[]]
        while i < len(body) and not _REPLACE.match(body[i]):
            if _DIVIDER.match(body[i]) and len(parts) == 1:
                parts.append([])
            else:
                parts[-1].append(body[i])
            i += 1
        if i == len(body) or len(parts) != 2:
            problems.append(EditFailure(name or "?", block.line, "a SEARCH block is cut off"))
            continue
        i += 1  # past the REPLACE line
        rep = Replacement(_join(parts[0]), _join(parts[1]))
        # An unnamed block belongs to the one file its SEARCH text is found in.
        found = [n for n, src in files.items() if _replace(src, rep)[0] is not None]
        target = name or (found[0] if len(found) == 1 else None)
        if target is None:
            problems.append(EditFailure("?", block.line, "a SEARCH block names no file"))
        elif edits and edits[-1].file == target:
            reps = (*edits[-1].replacements, rep)
            edits[-1] = Edit(target, EditKind.REPLACE, "", reps, block.line)
        else:
            edits.append(Edit(target, EditKind.REPLACE, "", (rep,), block.line))
    return edits, problems


def _closest_file(content: str, files: Mapping[str, str]) -> str | None:
    """The one current file an unnamed whole-file block clearly rewrites, if any."""
    lines = content.splitlines()
    ratios = [
        (difflib.SequenceMatcher(None, s.splitlines(), lines).ratio(), n) for n, s in files.items()
    ]
    (top, name), (second, _) = sorted([*ratios, (0.0, ""), (0.0, "")], reverse=True)[:2]
    return name if name and top >= _MIN_SIMILARITY and top - second >= _MARGIN else None


def _whole_file(
    block: _Block, name: str | None, named: bool, body: Sequence[str], files: Mapping[str, str]
) -> Edit | EditFailure | str | None:
    """A block read as a whole file: an edit, a problem, a note, or None when it is no edit."""
    language = block.info.split()[0].lower().strip("{}.") if block.info else ""
    if language in _DIFF_INFO or (body and body[0].startswith(("--- ", "diff --git"))):
        return f"line {block.line}: a unified diff was ignored: send whole files or SEARCH/REPLACE"
    if not named and language not in _PYTHON_INFO:
        return None  # shell commands, sample output and the like
    if not any(b.strip() and not b.lstrip().startswith("#") for b in body):
        return None  # an empty block: the file stays as it is
    content = _join(body)
    name = name or _closest_file(content, files)
    if name is None:
        return f"line {block.line}: a code block names no file and matches none: ignored"
    if not block.closed:
        return EditFailure(name, block.line, "the block is cut off (answer truncated)")
    if any(_ELISION.match(b) for b in body):
        return EditFailure(name, block.line, "a comment elides code: send the whole file")
    return Edit(name, EditKind.FILE, content, (), block.line)


def parse_edits(
    text: str, files: Mapping[str, str], aliases: Mapping[str, Sequence[str]] | None = None
) -> ParsedEdits:
    """Read an agent's answer into edits of ``files`` (name -> current source).

    ``aliases`` maps a file's name to other names an answer may use for it (a task's
    ``aliases``, e.g. train.py -> train_mps.py). A file given whole more than once keeps its
    last named block; a whole-file block with an empty or comment-only body leaves the file
    unchanged, as the seeds' answer format asks.
    """
    table = {a.lower(): n for n in files for a in (n, *(aliases or {}).get(n, ()))}
    names = _Names(table, frozenset(n.rsplit(".", 1)[-1].lower() for n in table))
    ordered: list[tuple[int, Edit]] = []
    whole: dict[str, list[tuple[bool, int, Edit]]] = {}
    problems: list[EditFailure] = []
    notes: list[str] = []
    for order, block in enumerate(_scan(text)):
        name, named, other, body = _name_of(block, names)
        if other:
            notes.append(f"line {block.line}: a block for {other} was ignored")
        elif any(_SEARCH.match(b) for b in body):
            edits, found = _replacement_edits(block, name, body, files, names)
            ordered += [(order, e) for e in edits]
            problems += found
        else:
            read = _whole_file(block, name, named, body, files)
            if isinstance(read, Edit):
                whole.setdefault(read.file, []).append((named, order, read))
            elif isinstance(read, EditFailure):
                problems.append(read)
            elif read:
                notes.append(read)
    for candidates in whole.values():
        strong = [c for c in candidates if c[0]]
        # Named blocks: the last is the answer. Weakly named ones: the longest, not a snippet.
        chosen = strong[-1] if strong else max(candidates, key=lambda c: len(c[2].content))
        ordered.append((chosen[1], chosen[2]))
        unused = [c[2] for c in candidates if c is not chosen]
        notes += [f"line {e.line}: a second block for {e.file} was not used" for e in unused]
    ordered.sort(key=lambda item: item[0])
    return ParsedEdits(tuple(e for _, e in ordered), tuple(problems), tuple(notes))


def apply_edits(files: Mapping[str, str], parsed: ParsedEdits) -> EditResult:
    """Apply parsed edits in order to ``files``; every problem is reported, none raised."""
    current = dict(files)
    failures = list(parsed.problems)
    for edit in parsed.edits:
        if edit.file not in current:
            failures.append(EditFailure(edit.file, edit.line, "not an editable file"))
        elif edit.kind is EditKind.FILE:
            current[edit.file] = edit.content
        for k, rep in enumerate(edit.replacements if edit.file in current else (), 1):
            new, why = _replace(current[edit.file], rep)
            if new is None:
                failures.append(EditFailure(edit.file, edit.line, f"SEARCH block {k}: {why}"))
            else:
                current[edit.file] = new
    changed = tuple(n for n in current if current[n] != files.get(n))
    return EditResult(MappingProxyType(current), changed, tuple(failures), parsed.notes)


def render_edits(edits: Iterable[Edit], display: Mapping[str, str] | None = None) -> str:
    """Write edits in the answer format that ``parse_edits`` reads (the seeds' format)."""
    out = []
    for edit in edits:
        lines = edit.content.splitlines() if edit.kind is EditKind.FILE else []
        for rep in edit.replacements:
            lines.append(f"<<<<<<< SEARCH\n{_join([rep.search])}=======")
            lines.append(f"{_join([rep.replace])}>>>>>>> REPLACE")
        body = "\n".join(lines)
        # A fence longer than any run of backticks inside keeps the block whole.
        longest = max((len(m) for m in re.findall(r"^\s*(`{3,})", body, re.MULTILINE)), default=2)
        fence = "`" * max(3, longest + 1)
        name = (display or {}).get(edit.file, edit.file)
        out.append(f"{fence}python\n{name}\n{body}\n{fence}\n")
    return "\n".join(out)


def diff_files(
    before: Mapping[str, str], after: Mapping[str, str], context: int = 3, labels: str = "a b"
) -> str:
    """A unified diff of the files that differ; `labels`: two words naming the two sides."""
    old_label, new_label, chunks = *labels.split(), []
    for name in [*before, *(n for n in after if n not in before)]:
        old, new = before.get(name, ""), after.get(name, "")
        if old != new:
            a, b = ([line + "\n" for line in t.splitlines()] for t in (old, new))
            head = (f"{old_label}/{name}", f"{new_label}/{name}")
            chunks.append("".join(difflib.unified_diff(a, b, *head, n=context)))
    return "".join(chunks)

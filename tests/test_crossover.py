"""Crossover: a candidate's change carried onto another candidate's code as SEARCH/REPLACE."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dreamteam.propose.crossover import cross, crossover_candidate, hunks
from dreamteam.records import CandidateRecord
from dreamteam.tasks import load_task

BASE = load_task("shakespeare").baseline_files()
TRAIN = BASE["train.py"]


def _with(old: str, new: str) -> dict[str, str]:
    assert TRAIN.count(old) == 1
    return {**BASE, "train.py": TRAIN.replace(old, new)}


def test_a_change_next_to_another_applies() -> None:
    first = _with("learning_rate = 3e-4", "learning_rate = 1e-3")
    second = _with("weight_decay = 0.1\n", "weight_decay = 0.05\n")
    result = cross(first, BASE, second)
    assert result.ok, result.reason
    assert "learning_rate = 1e-3" in result.files["train.py"]
    assert "weight_decay = 0.05" in result.files["train.py"]
    assert result.files["model.py"] == BASE["model.py"]
    assert "<<<<<<< SEARCH" in result.edits and "weight_decay = 0.05" in result.edits


def test_the_same_line_changed_both_ways_is_refused_with_the_reason() -> None:
    first = _with("learning_rate = 3e-4", "learning_rate = 1e-3")
    second = _with("learning_rate = 3e-4", "learning_rate = 2e-3")
    result = cross(first, BASE, second)
    assert not result.ok and result.files == first
    assert result.reason.startswith("the changes do not apply: train.py line ")


def test_nothing_to_carry_over() -> None:
    assert cross(BASE, BASE, BASE).reason == "the second candidate changed nothing"
    same = _with("learning_rate = 3e-4", "learning_rate = 1e-3")
    assert cross(same, BASE, same).reason == "the first candidate already has them"


_LINES = st.lists(st.text("abcdefgh", min_size=1, max_size=6), min_size=1, max_size=25, unique=True)


@given(_LINES, st.data())
def test_changes_replayed_onto_their_own_parent_give_the_child(lines, data) -> None:
    # unique lines: every SEARCH text is unique, so every change must apply exactly
    new_lines = data.draw(st.permutations(lines))
    keep = data.draw(st.lists(st.booleans(), min_size=len(lines), max_size=len(lines)))
    extra = data.draw(st.lists(st.text("xyz", min_size=1, max_size=4), max_size=4, unique=True))
    child_lines = [line for line, k in zip(new_lines, keep, strict=True) if k] + extra
    parent = {"f.py": "\n".join(lines) + "\n"}
    child = {"f.py": "\n".join(child_lines) + "\n" if child_lines else ""}
    result = cross(parent, parent, child)
    if child == parent:
        assert not result.ok
    elif child_lines:
        assert result.ok, result.reason
        assert result.files == child


def test_hunks_name_their_place_in_the_parent() -> None:
    second = _with("weight_decay = 0.1\n", "weight_decay = 0.05\n")
    (hunk,) = hunks(BASE, second)
    line = TRAIN.splitlines().index("weight_decay = 0.1") + 1
    assert hunk.file == "train.py" and hunk.line == line and len(hunk.options) >= 3


def _record(cid: str, files: dict[str, str], parent: str | None) -> CandidateRecord:
    return CandidateRecord(cid, 1, cid, "savant", parent, "proposal", "", files, status="ok")


def test_a_crossover_candidate_records_both_parents() -> None:
    origin = _record("g0-baseline", BASE, None)
    first = _record("g1-a", _with("learning_rate = 3e-4", "learning_rate = 1e-3"), origin.id)
    second = _record("g1-b", _with("weight_decay = 0.1\n", "weight_decay = 0.05\n"), origin.id)
    c = crossover_candidate("g2-crossover", 2, first, second, origin)
    assert (c.persona, c.mode, c.kind, c.parent, c.status) == (
        "crossover",
        "crossover",
        "crossover",
        "g1-a",
        "",
    )
    assert "g1-b" in c.summary and "+weight_decay = 0.05" in c.diff
    bad = crossover_candidate(
        "g2-crossover",
        2,
        first,
        _record("g1-c", _with("learning_rate = 3e-4", "x = 1"), "g0"),
        origin,
    )
    assert bad.status == "invalid" and "do not apply" in bad.reason and bad.files == first.files

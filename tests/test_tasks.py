"""The task abstraction and the built-in Shakespeare baseline."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dreamteam.errors import TaskError
from dreamteam.harness.checks import check_candidate
from dreamteam.tasks import builtin_tasks, load_task

PROTECTED = {
    "batch_size": 8,
    "block_size": 64,
    "n_layer": 4,
    "n_head": 4,
    "n_embd": 32,
    "max_iters": 10001,
    "eval_interval": 100,
}


def test_shakespeare_is_built_in_with_the_seeds_constants() -> None:
    task = load_task("shakespeare")
    assert "shakespeare" in builtin_tasks()
    assert dict(task.protected) == PROTECTED
    assert task.editable == ("train.py", "model.py")
    assert task.display_name("train.py") == "train_mps.py"
    assert task.iterations("full") == 10001
    assert task.iterations("low") == pytest.approx(10001 / 16, rel=0.01)


def test_baseline_holds_its_protected_constants_and_passes_the_checks() -> None:
    task = load_task("shakespeare")
    files = task.baseline_files()
    tree = ast.parse(files["train.py"])
    values = {
        t.id: ast.literal_eval(s.value)
        for s in tree.body
        if isinstance(s, ast.Assign)
        for t in s.targets
        if isinstance(t, ast.Name)
    }
    for name, value in PROTECTED.items():
        assert values[name] == value
    assert check_candidate(files, task).ok


def test_baseline_train_contract() -> None:
    task = load_task("shakespeare")
    tree = ast.parse(task.baseline_files()["train.py"])
    train = next(s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == "train")
    assert {"data_dir", "out_dir", "iters", "seed", "device"} <= {a.arg for a in train.args.args}
    returns = [n for n in ast.walk(train) if isinstance(n, ast.Return)]
    assert returns and all(
        isinstance(r.value, ast.Tuple) and len(r.value.elts) == 2 for r in returns
    )


def test_unknown_task_says_what_exists(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"no task named 'nope'.*shakespeare"):
        load_task("nope")
    with pytest.raises(TaskError, match="task init"):
        load_task(tmp_path)


def test_unknown_fidelity_lists_the_known_ones() -> None:
    with pytest.raises(TaskError, match="smoke, low, medium, full"):
        load_task("shakespeare").iterations("huge")

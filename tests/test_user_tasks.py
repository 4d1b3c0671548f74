"""User tasks: task.toml validation, the harness file, user data, the row plan and its probes."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamteam.errors import TaskError
from dreamteam.harness.checks import check_candidate
from dreamteam.harness.scoring.rows import N_PROBES, N_REPEATS, plan_rows, row_failures
from dreamteam.tasks import BUILTIN_DIR, load_task, load_task_dir
from dreamteam.tasks.data import resolve_task_data
from dreamteam.tasks.metric import load_metric, scored

SPIRALS = BUILTIN_DIR / "spirals"


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    """A copy of the spirals task to break."""
    target = tmp_path / "mytask"
    shutil.copytree(SPIRALS, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _edit(task_dir: Path, old: str, new: str) -> None:
    path = task_dir / "task.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# --- task.toml ------------------------------------------------------------------------------


def test_spirals_is_a_builtin_task_scored_by_its_harness_file() -> None:
    task = load_task("spirals")
    assert not task.is_lm and task.metric == "harness.py" and task.objective == "loss"
    assert task.data.source == "prepare" and task.data.train == ("train.npz",)
    assert "harness.py" not in task.editable
    assert set(task.hidden_names()) == {"eval.npz", "harness.py"}
    assert check_candidate(task.baseline_files(), task).ok
    assert task.smallest_fidelity() == "smoke"


def test_shakespeare_keeps_the_language_model_path() -> None:
    task = load_task("shakespeare")
    assert task.is_lm and task.metric_path is None and task.data.source == "shakespeare"
    assert task.objective == "val_loss" and task.hidden_names() == ("val.bin",)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('editable = ["train.py", "model.py"]', 'editable = "train.py"', r"\[files\] editable"),
        ('editable = ["train.py", "model.py"]', 'editable = ["train.py", "nn.py"]', "'nn.py'"),
        ('editable = ["train.py", "model.py"]', 'editable = ["../x.py"]', "inside the task"),
        ('metric = "harness.py"', 'metric = "train.py"', r"\[evaluation\] metric.*editable"),
        ('metric = "harness.py"', 'metric = "scorer.py"', r"\[evaluation\] metric.*missing"),
        ('metric = "harness.py"', 'metric = "lm"', r"\[data\] source"),
        ('source = "prepare"', 'source = "web"', r"\[data\] source.*unknown"),
        ('eval = ["eval.npz"]', 'eval = ["train.npz"]', r"\[data\] eval.*both"),
        ('eval = ["eval.npz"]', "eval = []", r"\[data\] eval.*at least one"),
        ("# seed = 0", 'seed = "x"', r"\[data\] seed"),
        ("smoke = 200", "smoke = 0", r"\[fidelity\] smoke.*>= 1"),
        ("smoke = 200", "smoke = 5000", r"\[fidelity\].*grow"),
        ("smoke = 200", "tiny = 200", r"\[fidelity\] tiny.*unknown"),
        ("batch_size = 64", "batch_size = [64]", r"\[protected\] batch_size"),
        ('model_file = "model.py"', 'model_file = "net.py"', r"\[contract\] model_file"),
        ("batch = 256", "batch = 0", r"\[evaluation\] batch"),
        ('"model", "__future__"', '"model", "harness"', r"\[checks\] allowed_imports"),
        ("\n[contract]\n", "\n[contracts]\n", r"\[contract\]: missing table"),
    ],
)
def test_task_toml_errors_name_the_file_and_the_field(
    task_dir: Path, old: str, new: str, field: str
) -> None:
    _edit(task_dir, old, new)
    with pytest.raises(TaskError, match=field) as raised:
        load_task_dir(task_dir)
    message = str(raised.value)
    assert str(task_dir / "task.toml") in message and "\n" not in message


def test_a_broken_toml_file_says_where(task_dir: Path) -> None:
    _edit(task_dir, "[files]", "[files")
    with pytest.raises(TaskError, match=r"task\.toml.*line"):
        load_task_dir(task_dir)


def test_a_file_given_as_the_task_is_not_told_to_become_one(task_dir: Path) -> None:
    """`task check DIR/train.py` says a task is a directory, not `task init DIR/train.py`."""
    with pytest.raises(TaskError, match=r"train\.py is a file: a task is the directory") as raised:
        load_task_dir(task_dir / "train.py")
    assert "task init" not in str(raised.value)


def test_a_harness_file_without_score_is_refused(task_dir: Path) -> None:
    harness = task_dir / "harness.py"
    harness.write_text(harness.read_text().replace("def score(", "def _score("))
    with pytest.raises(TaskError, match=r"harness\.py: defines no function score\(\)"):
        load_metric(load_task_dir(task_dir))


# --- the harness file and the data ----------------------------------------------------------


def test_score_is_checked_and_applied_in_the_harness() -> None:
    task = load_task("spirals")
    metric = load_metric(task)
    targets = np.array([0, 1, 2, 3, 4])
    sure = np.eye(5, dtype=np.float32)[targets] * 30
    figures = scored(metric, "loss", sure, targets)
    assert figures["accuracy"] == 1.0 and figures["loss"] < 1e-6
    uniform = np.zeros((5, 5), dtype=np.float32)
    assert scored(metric, "loss", uniform, targets)["loss"] == pytest.approx(np.log(5))
    with pytest.raises(ValueError, match=r"rejected the outputs.*shape"):
        scored(metric, "loss", np.zeros((5, 3), dtype=np.float32), targets)
    with pytest.raises(TaskError, match="'nll'"):
        scored(metric, "nll", uniform, targets)


def test_prepared_data_is_cached_and_secret_unless_seeded(tmp_path: Path, task_dir: Path) -> None:
    task = load_task(task_dir)
    first = resolve_task_data(task, tmp_path / "a")
    assert resolve_task_data(task, tmp_path / "a") == first
    assert [n for _, n in first.candidate_files()] == ["train.npz"]
    other = resolve_task_data(task, tmp_path / "b")
    x_first, _ = load_metric(task).eval_split(first.root)
    x_other, _ = load_metric(task).eval_split(other.root)
    assert not np.array_equal(x_first, x_other)  # each home drew its own secret seed
    _edit(task_dir, "# seed = 0", "seed = 7")
    seeded = load_task(task_dir)
    a = resolve_task_data(seeded, tmp_path / "a")
    b = resolve_task_data(seeded, tmp_path / "b")
    assert a.root != first.root  # a changed [data] table prepares afresh
    with np.load(a.root / "eval.npz") as fa, np.load(b.root / "eval.npz") as fb:
        assert np.array_equal(fa["x"], fb["x"]) and np.array_equal(fa["y"], fb["y"])


def test_shipped_data_files_are_used_in_place(tmp_path: Path, task_dir: Path) -> None:
    prepared = resolve_task_data(load_task(task_dir), tmp_path / "home")
    for name in ("train.npz", "eval.npz"):
        shutil.copyfile(prepared.root / name, task_dir / name)
    _edit(task_dir, 'source = "prepare"', 'source = "files"')
    data = resolve_task_data(load_task(task_dir), tmp_path / "other")
    assert data.root == task_dir.resolve()
    (task_dir / "eval.npz").unlink()
    with pytest.raises(TaskError, match=r"\[data\] names 'eval.npz', which is missing"):
        resolve_task_data(load_task(task_dir), tmp_path / "other")


def test_candidate_code_may_not_name_the_evaluation_files() -> None:
    task = load_task("spirals")
    files = task.baseline_files()
    for leak in ("np.load(os.path.join(data_dir, 'eval.npz'))", "open('harness.py').read()"):
        bad = dict(files, **{"train.py": files["train.py"] + f"\nleak = {leak}\n"})
        report = check_candidate(bad, task)
        assert not report.ok and "file-access" in report.reason()


# --- the row plan and its probes ------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), batch=st.integers(1, 512), seed=st.integers(0, 2**32))
def test_every_row_is_sent_once_and_repeats_land_in_other_batches(
    n: int, batch: int, seed: int
) -> None:
    plan = plan_rows(n, batch, random.Random(seed))
    assert sorted(set(plan.order.tolist())) == list(range(n))
    assert len(plan.order) == n + len(plan.repeats)
    assert len(plan.repeats) in (0, N_REPEATS) and (plan.repeats or n + N_REPEATS <= batch)
    assert (plan.order[plan.positions] == np.arange(n)).all()
    for a, b in plan.repeats:
        assert plan.order[a] == plan.order[b] and a // batch != b // batch
    assert len(set(plan.probe.tolist())) == len(plan.probe) == min(N_PROBES, n)


def test_row_plans_are_unpredictable() -> None:
    one, two = plan_rows(1000, 64, random.Random(1)), plan_rows(1000, 64, random.Random(2))
    assert not np.array_equal(one.order, two.order)


def _outputs_of(plan, fn):
    return np.stack([fn(int(src)) for src in plan.order]), np.stack(
        [fn(int(src)) for src in plan.probe]
    )


def test_row_probes_pass_a_function_of_the_row_and_flag_anything_else() -> None:
    plan = plan_rows(500, 64, random.Random(0))

    def honest(row: int) -> np.ndarray:
        return np.array([row, -row], dtype=np.float32) / 100

    main, probe = _outputs_of(plan, honest)
    assert row_failures(plan, main, probe) == []
    shifted = main.copy()
    _, b = plan.repeats[0]
    shifted[b] += 0.5  # one copy answers differently in its other batch
    assert any("another batch" in f for f in row_failures(plan, shifted, probe))
    assert any("another process" in f for f in row_failures(plan, main, probe + 0.5))

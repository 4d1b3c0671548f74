"""Writing a task of one's own: scaffold a directory from a template, then check it.

``init_task`` copies a built-in task (``spirals`` by default: its task.toml explains every
field) into a new directory under the directory's name. ``check_task`` goes through what the
harness will need, in order, and stops at the first problem with a one-line TaskError naming
the file and the field: the task.toml, the harness file's functions, the baseline against
the static checks, and the data (prepared, with an evaluation split the harness can read).
Training the baseline (``dreamteam task check --run``) is the CLI's, through the trial path.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from dreamteam.errors import TaskError
from dreamteam.harness.checks import check_candidate
from dreamteam.tasks import BUILTIN_DIR, Task, builtin_tasks, load_task_dir
from dreamteam.tasks.data import DataPaths, resolve_task_data
from dreamteam.tasks.metric import load_metric

DEFAULT_TEMPLATE = "spirals"
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc")


@dataclass(frozen=True)
class TaskCheck:
    """A task that passed every check, what each check found, and what looked odd."""

    task: Task
    data: DataPaths
    passed: tuple[str, ...]  # one line per check
    warnings: tuple[str, ...] = ()


def init_task(directory: Path, template: str = DEFAULT_TEMPLATE) -> Path:
    """Scaffold a working task in `directory` (new or empty) from a built-in task."""
    source = BUILTIN_DIR / template
    if template not in builtin_tasks():
        known = ", ".join(builtin_tasks())
        raise TaskError(f"no built-in task {template!r} to start from: use one of {known}")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise TaskError(f"{directory} exists and is not an empty directory: choose a new one")
    shutil.copytree(source, directory, ignore=_SKIP, dirs_exist_ok=True)
    toml = directory / "task.toml"
    text = toml.read_text(encoding="utf-8")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", directory.resolve().name) or "task"
    text = re.sub(r'^name = ".*"$', f'name = "{name}"', text, count=1, flags=re.MULTILINE)
    toml.write_text(text, encoding="utf-8")
    return directory


def _baseline(task: Task) -> str:
    report = check_candidate(task.baseline_files(), task)
    if not report.ok:
        first = report.violations[0]
        raise TaskError(
            f"{task.root / first.file}:{first.line}: the baseline fails the {first.rule} check: "
            f"{first.message}"
        )
    return f"baseline {', '.join(task.editable)} passes the static checks"


def _evaluation_split(task: Task, data: DataPaths) -> str:
    if task.is_lm:
        return f"evaluation split: {data.val}"
    inputs, _ = load_metric(task).eval_split(data.root)
    shape = "x".join(str(n) for n in inputs.shape[1:]) or "scalar"
    return f"evaluation split: {len(inputs)} rows of {shape} {inputs.dtype} inputs"


def check_task(directory: Path, home: Path, mirror: Path | None = None) -> TaskCheck:
    """Check a task directory as the harness will use it; raise TaskError at the first problem."""
    task = load_task_dir(directory)
    passed = [
        f"task.toml: task {task.name!r}, editable {', '.join(task.editable)}, fidelity "
        + ", ".join(f"{k}={v}" for k, v in task.fidelity.items())
    ]
    if task.is_lm:
        passed.append("metric: the built-in language-model evaluator")
    else:
        metric = load_metric(task)
        names = ["load_eval", "score"] + (["prepare"] if metric.prepare else [])
        passed.append(
            f"metric: {task.metric} defines {', '.join(names)}; objective {task.objective!r}"
        )
    passed.append(_baseline(task))
    data = resolve_task_data(task, home, mirror)
    training = ", ".join(name for _, name in data.candidate_files())
    passed.append(f"data: {data.root} ({training} for training)")
    passed.append(_evaluation_split(task, data))
    warnings = tuple(
        f"{task.root / 'task.toml'}: unknown key or table {key!r} is ignored" for key in task.extra
    )
    return TaskCheck(task, data, tuple(passed), warnings)

"""A task's harness file: the task author's data preparation and metric, loaded by the harness.

The file (``[evaluation] metric``) is trusted code: the user who defines a task writes it. It
runs only in the harness process, never in a candidate's sandbox, and is never copied into a
candidate's work dir. It defines ``load_eval(data_dir)`` and ``score(outputs, targets)``, and
``prepare(data_dir, seed)`` when the task's data is generated.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from dreamteam.errors import TaskError
from dreamteam.tasks import Task

_REQUIRED = {"load_eval": 1, "score": 2}  # function -> positional parameters it must take


@dataclass(frozen=True)
class TaskMetric:
    """The functions of a task's harness file."""

    path: Path
    load_eval: Callable[[Path], tuple[np.ndarray, np.ndarray]]
    score: Callable[[np.ndarray, np.ndarray], Mapping[str, float]]
    prepare: Callable[[Path, int], None] | None

    def eval_split(self, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
        """The evaluation inputs and targets, checked: arrays with one row per example."""
        try:
            inputs, targets = self.load_eval(data_dir)
        except Exception as exc:
            raise TaskError(f"{self.path}: load_eval({data_dir}) failed: {_one_line(exc)}") from exc
        if not isinstance(inputs, np.ndarray) or not isinstance(targets, np.ndarray):
            raise TaskError(f"{self.path}: load_eval must return two numpy arrays")
        if inputs.ndim < 1 or len(inputs) == 0 or len(inputs) != len(targets):
            raise TaskError(
                f"{self.path}: load_eval returned {len(inputs)} input rows and "
                f"{len(targets)} target rows: they must be equal and not zero"
            )
        if inputs.dtype.kind not in "biuf":
            raise TaskError(f"{self.path}: load_eval's inputs must be numbers, not {inputs.dtype}")
        return inputs, targets


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


def _import(path: Path) -> ModuleType:
    # a unique module name per file and content: two tasks' harness.py never collide
    digest = hashlib.sha256(str(path).encode() + path.read_bytes()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(f"_dreamteam_harness_{digest}", path)
    if spec is None or spec.loader is None:
        raise TaskError(f"{path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise TaskError(f"{path}: importing it failed: {_one_line(exc)}") from exc
    return module


def _function(module: ModuleType, path: Path, name: str, arity: int) -> Callable[..., Any]:
    fn = getattr(module, name, None)
    if not callable(fn):
        raise TaskError(f"{path}: defines no function {name}(): see `dreamteam task init`")
    try:
        inspect.signature(fn).bind(*range(arity))
    except TypeError as exc:
        raise TaskError(f"{path}: {name}() must take {arity} positional argument(s)") from exc
    except ValueError:  # a builtin without a signature: trust it
        pass
    return fn


_CACHE: dict[tuple[Path, float], TaskMetric] = {}


def load_metric(task: Task) -> TaskMetric:
    """The task's harness file, imported once per process (again when the file changes)."""
    path = task.metric_path
    if path is None:
        raise TaskError(f"task {task.name!r} is scored by the built-in LM evaluator")
    if not path.is_file():
        raise TaskError(f"{task.root / 'task.toml'}: [evaluation] metric: {path} is missing")
    key = (path, path.stat().st_mtime)
    if key not in _CACHE:
        module = _import(path)
        fns = {name: _function(module, path, name, n) for name, n in _REQUIRED.items()}
        prepare = None
        if task.data.source == "prepare":
            prepare = _function(module, path, "prepare", 2)
        _CACHE[key] = TaskMetric(path, fns["load_eval"], fns["score"], prepare)
    return _CACHE[key]


def scored(metric: TaskMetric, objective: str, outputs: np.ndarray, targets: np.ndarray) -> dict:
    """The figures score() gives the outputs, checked: numbers, the objective among them.

    Raises ValueError with a one-line reason when score() rejects the outputs (the
    candidate's fault), TaskError when it answers with something else than a table of
    numbers holding the objective (the task author's).
    """
    try:
        raw = metric.score(outputs, targets)
    except Exception as exc:  # the task's own check of the outputs' shape, usually
        raise ValueError(f"the task's score() rejected the outputs: {_one_line(exc)}") from exc
    if not isinstance(raw, Mapping) or objective not in raw:
        raise TaskError(f"{metric.path}: score() must return a dict with the key {objective!r}")
    figures = {}
    for name, value in raw.items():
        try:
            figures[str(name)] = float(value)
        except (TypeError, ValueError) as exc:
            raise TaskError(f"{metric.path}: score()[{name!r}] is not a number") from exc
    return figures


def finite(figures: Mapping[str, float]) -> bool:
    """Whether every figure is a finite number."""
    return all(math.isfinite(v) for v in figures.values())

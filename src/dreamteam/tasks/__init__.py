"""Tasks: what the team may edit, what it may not, how a candidate is run and scored.

A task is a directory with a ``task.toml`` and its baseline files. The built-in tasks live
beside this module (``shakespeare``, a language model; ``spirals``, a classifier); a user's
task is any directory of the same shape (``dreamteam task init DIR`` writes one). A task is
scored either by the built-in language-model evaluator (``metric = "lm"``) or by a harness
file of the task's own (``metric = "harness.py"``), which the candidate never sees.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from dreamteam.errors import TaskError

BUILTIN_DIR = Path(__file__).resolve().parent
FIDELITY_NAMES = ("smoke", "low", "medium", "full")
LM_METRIC = "lm"  # the built-in language-model evaluator (scoring/lm.py)
DATA_SOURCES = ("shakespeare", "files", "prepare")
_KNOWN = {"name", "description", "files", "contract", "protected", "fidelity", "checks"}
_KNOWN |= {"data", "evaluation"}


@dataclass(frozen=True)
class Contract:
    """How the harness calls a candidate and reads back what it trained."""

    entry_file: str
    entry_point: str
    arguments: tuple[str, ...]
    returns: tuple[str, ...]
    checkpoint: str
    model_file: str
    model_class: str
    config_class: str  # "": the model takes model_args as keyword arguments itself


@dataclass(frozen=True)
class TaskData:
    """Where a task's data comes from, and which files the candidate and the harness get."""

    source: str  # "shakespeare": the built-in set; "files": in the task dir; "prepare": generated
    train: tuple[str, ...] = ()  # files copied into each candidate's data dir
    eval: tuple[str, ...] = ()  # files only the harness reads (the metric file's load_eval)
    seed: int | None = None  # prepare: a fixed seed; None: each DREAMTEAM_HOME draws its own


@dataclass(frozen=True)
class Task:
    """A research task: editable baseline files, protected constants, data and budgets."""

    name: str
    root: Path
    description: str
    editable: tuple[str, ...]
    display: Mapping[str, str]
    aliases: Mapping[str, tuple[str, ...]]
    contract: Contract
    protected: Mapping[str, Any]
    fidelity: Mapping[str, int]
    allowed_imports: frozenset[str]
    data: TaskData
    metric: str  # LM_METRIC, or the task's harness file (relative to root)
    objective: str  # the figure selection minimises: val_loss (lm), or a key of score()'s dict
    vocab_size: int
    context: int
    eval_batch: int = 256  # rows per forward call when a harness-file task is scored
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_lm(self) -> bool:
        """Whether the built-in language-model evaluator scores this task."""
        return self.metric == LM_METRIC

    @property
    def data_source(self) -> str:
        return self.data.source

    @property
    def metric_path(self) -> Path | None:
        """The task's harness file, or None for the built-in LM evaluator."""
        return None if self.is_lm else self.root / self.metric

    def hidden_names(self) -> tuple[str, ...]:
        """File names a candidate's code may not mention: the harness's data and metric."""
        if self.is_lm:
            return ("val.bin",)
        return (*{PurePosixPath(n).name for n in self.data.eval}, PurePosixPath(self.metric).name)

    def baseline_files(self) -> dict[str, str]:
        """The baseline's editable files, name -> source."""
        return {name: (self.root / name).read_text(encoding="utf-8") for name in self.editable}

    def display_name(self, name: str) -> str:
        """The name a prompt shows for an editable file (the seeds say train_mps.py)."""
        return self.display.get(name, name)

    def iterations(self, fidelity: str) -> int:
        """Optimizer steps at a fidelity level."""
        if fidelity not in self.fidelity:
            known = ", ".join(self.fidelity)
            raise TaskError(f"task {self.name!r} has no fidelity {fidelity!r} (known: {known})")
        return self.fidelity[fidelity]

    def smallest_fidelity(self) -> str:
        """The cheapest fidelity level (by its steps)."""
        return min(self.fidelity, key=lambda name: self.fidelity[name])

    def level(self, preferred: str, rank: int) -> str:
        """`preferred` when the task defines it, else its level at `rank` by steps (0: the
        smallest): a default like `low` follows a task that has only smoke and full."""
        if preferred in self.fidelity:
            return preferred
        ordered = sorted(self.fidelity, key=lambda name: self.fidelity[name])
        return ordered[min(rank, len(ordered) - 1)]


class _Reader:
    """Typed reads from one task.toml; every error names the file, the table and the key."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path, self.data = path, data

    def fail(self, table: str, key: str, problem: str) -> TaskError:
        where = f"[{table}] {key}" if table and key else f"[{table}]" if table else key
        return TaskError(f"{self.path}: {where}: {problem}")

    def table(self, name: str, required: bool = True) -> dict[str, Any]:
        value = self.data.get(name)
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            raise self.fail(name, "", "missing table" if value is None else "must be a table")
        return value

    def text(self, table: str, key: str, default: str | None = None, empty: bool = False) -> str:
        """A string field; `empty`: "" is a value of its own (it means "none")."""
        scope = self.table(table, default is None) if table else self.data
        value = scope.get(key, default)
        if value is None:
            raise self.fail(table, key, "missing key")
        if not isinstance(value, str) or not (value.strip() or (empty and value == "")):
            raise self.fail(table, key, f"must be a non-empty string, got {value!r}")
        return value

    def texts(
        self, table: str, key: str, default: tuple[str, ...] | None = None
    ) -> tuple[str, ...]:
        value = self.table(table, default is None).get(key, default)
        if value is None:
            raise self.fail(table, key, "missing key")
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, str) and v.strip() for v in value
        ):
            raise self.fail(table, key, f"must be a list of strings, got {value!r}")
        return tuple(value)

    def count(self, table: str, key: str, default: int) -> int:
        value = self.table(table, False).get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(table, key, f"must be a whole number >= 1, got {value!r}")
        return value

    def relative(self, table: str, key: str, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            pure = PurePosixPath(name)
            if pure.is_absolute() or ".." in pure.parts:
                raise self.fail(table, key, f"{name!r} must be a path inside the task directory")
        return names


def _fidelity(r: _Reader) -> dict[str, int]:
    table = r.table("fidelity")
    levels = {}
    for name in table:
        if name not in FIDELITY_NAMES:
            raise r.fail("fidelity", name, f"unknown level: use {', '.join(FIDELITY_NAMES)}")
        levels[name] = r.count("fidelity", name, 0)
    for level in ("smoke", "full"):
        if level not in levels:
            raise r.fail("fidelity", level, "missing key (smoke and full are required)")
    ordered = [levels[n] for n in FIDELITY_NAMES if n in levels]
    if ordered != sorted(ordered):
        raise r.fail("fidelity", "", "steps must grow from smoke to full")
    return levels


def _contract(r: _Reader, editable: tuple[str, ...]) -> Contract:
    r.table("contract")  # required, even where every key has its default

    def text(key: str, default: str, empty: bool = False) -> str:
        return r.text("contract", key, default, empty)

    c = Contract(
        entry_file=text("entry_file", editable[0]),
        entry_point=text("entry_point", "train"),
        arguments=r.texts("contract", "arguments", ("data_dir", "out_dir", "iters", "seed")),
        returns=r.texts("contract", "returns", ()),
        checkpoint=text("checkpoint", "ckpt.pt"),
        model_file=text("model_file", "model.py"),
        model_class=text("model_class", "GPT"),
        # "": no config class, the model is model_class(**model_args)
        config_class=text("config_class", "GPTConfig", empty=True),
    )
    for key in ("entry_file", "model_file"):
        if getattr(c, key) not in editable:
            raise r.fail("contract", key, f"{getattr(c, key)!r} must be one of [files] editable")
    return c


def _protected(r: _Reader) -> dict[str, Any]:
    table = r.table("protected", False)
    for key, value in table.items():
        if not isinstance(value, bool | int | float | str):
            raise r.fail("protected", key, f"must be a number, string or boolean, got {value!r}")
    return dict(table)


def _data(r: _Reader, metric: str) -> TaskData:
    source = r.text("data", "source", "shakespeare" if metric == LM_METRIC else "files")
    if source not in DATA_SOURCES:
        raise r.fail("data", "source", f"{source!r} is unknown: use {', '.join(DATA_SOURCES)}")
    if (source == "shakespeare") != (metric == LM_METRIC):
        raise r.fail(
            "data", "source", 'the built-in "shakespeare" data goes with metric = "lm" only'
        )
    if source == "shakespeare":
        return TaskData(source)
    train = r.relative("data", "train", r.texts("data", "train"))
    held = r.relative("data", "eval", r.texts("data", "eval"))
    if not train or not held:
        raise r.fail("data", "train" if not train else "eval", "must name at least one file")
    if set(train) & set(held):
        raise r.fail("data", "eval", "a file cannot be in both train and eval")
    seed = r.table("data").get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise r.fail("data", "seed", f"must be a whole number, got {seed!r}")
    return TaskData(source, train, held, seed)


def _metric(r: _Reader, root: Path, editable: tuple[str, ...], allowed: frozenset[str]) -> str:
    metric = r.text("evaluation", "metric", LM_METRIC)
    if metric == LM_METRIC:
        return metric
    r.relative("evaluation", "metric", (metric,))
    if not metric.endswith(".py"):
        raise r.fail("evaluation", "metric", f'{metric!r} must be "lm" or a Python file')
    if metric in editable:
        raise r.fail("evaluation", "metric", f"{metric!r} is editable: the candidate would see it")
    if metric.removesuffix(".py") in allowed:
        raise r.fail("checks", "allowed_imports", f"must not list the harness file {metric!r}")
    if not (root / metric).is_file():
        raise r.fail("evaluation", "metric", f"{metric!r} is missing from {root}")
    return metric


def load_task_dir(root: Path) -> Task:
    """Load and validate a task directory; a problem is a one-line TaskError naming the field."""
    path = root / "task.toml"
    if root.is_file():
        raise TaskError(f"{root} is a file: a task is the directory holding task.toml")
    if not path.is_file():
        raise TaskError(f"{root} has no task.toml: create one with `dreamteam task init {root}`")
    try:
        r = _Reader(path, tomllib.loads(path.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{path}: {exc}") from exc
    editable = r.relative("files", "editable", r.texts("files", "editable"))
    if not editable:
        raise r.fail("files", "editable", "must name at least one file")
    for name in editable:
        if not (root / name).is_file():
            raise r.fail("files", "editable", f"{name!r} is missing from {root}")
    files = r.table("files")
    allowed = frozenset(r.texts("checks", "allowed_imports", ()))
    metric = _metric(r, root, editable, allowed)
    evaluation = r.table("evaluation", False)
    protected = _protected(r)
    return Task(
        name=r.text("", "name", root.resolve().name),
        root=root.resolve(),
        description=str(r.data.get("description", "")),
        editable=editable,
        display=MappingProxyType(dict(files.get("display", {}))),
        aliases=MappingProxyType({k: tuple(v) for k, v in files.get("aliases", {}).items()}),
        contract=_contract(r, editable),
        protected=MappingProxyType(protected),
        fidelity=MappingProxyType(_fidelity(r)),
        allowed_imports=allowed,
        data=_data(r, metric),
        metric=metric,
        objective="val_loss" if metric == LM_METRIC else r.text("evaluation", "objective", "loss"),
        vocab_size=int(evaluation.get("vocab_size", 50257)),
        context=int(evaluation.get("context", protected.get("block_size", 64))),
        eval_batch=r.count("evaluation", "batch", 256),
        extra=MappingProxyType({k: v for k, v in r.data.items() if k not in _KNOWN}),
    )


def builtin_tasks() -> list[str]:
    """Names of the tasks shipped with dreamteam."""
    return sorted(p.parent.name for p in BUILTIN_DIR.glob("*/task.toml"))


def load_task(name_or_dir: str | Path) -> Task:
    """A built-in task by name, or a user task by directory."""
    candidate = Path(name_or_dir)
    if candidate.is_dir():
        return load_task_dir(candidate)
    builtin = BUILTIN_DIR / str(name_or_dir)
    if (builtin / "task.toml").is_file():
        return load_task_dir(builtin)
    known = ", ".join(builtin_tasks())
    raise TaskError(f"no task named {str(name_or_dir)!r}: use one of {known} or a task directory")


__all__ = [
    "DATA_SOURCES",
    "FIDELITY_NAMES",
    "LM_METRIC",
    "Contract",
    "Task",
    "TaskData",
    "builtin_tasks",
    "load_task",
    "load_task_dir",
]

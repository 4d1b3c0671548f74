"""Tasks: what the team may edit, what it may not, how a candidate is run and scored.

A task is a directory with a ``task.toml`` and its baseline files. The built-in tasks live
beside this module (``shakespeare``); a user's task is any directory of the same shape.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dreamteam.errors import TaskError

BUILTIN_DIR = Path(__file__).resolve().parent
FIDELITY_NAMES = ("smoke", "low", "medium", "full")


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
    config_class: str


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
    data_source: str
    metric: str
    vocab_size: int
    context: int
    extra: Mapping[str, Any] = field(default_factory=dict)

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


def _section(data: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise TaskError(f"{path}: missing table [{name}]")
    return value


def _require(table: dict[str, Any], key: str, where: str) -> Any:
    if key not in table:
        raise TaskError(f"{where}: missing key {key!r}")
    return table[key]


def load_task_dir(root: Path) -> Task:
    """Load and validate a task directory."""
    path = root / "task.toml"
    if not path.is_file():
        raise TaskError(f"{root} has no task.toml: create one with `dreamteam task init {root}`")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{path}: {exc}") from exc
    files = _section(data, "files", path)
    contract = _section(data, "contract", path)
    evaluation = data.get("evaluation", {})
    editable = tuple(_require(files, "editable", f"{path} [files]"))
    for name in editable:
        if not (root / name).is_file():
            raise TaskError(f"{path}: editable file {name!r} is missing from {root}")
    fidelity = {k: int(v) for k, v in _section(data, "fidelity", path).items()}
    for level in ("smoke", "full"):
        _require(fidelity, level, f"{path} [fidelity]")
    c = Contract(
        entry_file=contract.get("entry_file", editable[0]),
        entry_point=contract.get("entry_point", "train"),
        arguments=tuple(contract.get("arguments", ("data_dir", "out_dir", "iters", "seed"))),
        returns=tuple(contract.get("returns", ())),
        checkpoint=contract.get("checkpoint", "ckpt.pt"),
        model_file=contract.get("model_file", "model.py"),
        model_class=contract.get("model_class", "GPT"),
        config_class=contract.get("config_class", "GPTConfig"),
    )
    return Task(
        name=str(data.get("name", root.name)),
        root=root.resolve(),
        description=str(data.get("description", "")),
        editable=editable,
        display=MappingProxyType(dict(files.get("display", {}))),
        aliases=MappingProxyType({k: tuple(v) for k, v in files.get("aliases", {}).items()}),
        contract=c,
        protected=MappingProxyType(dict(data.get("protected", {}))),
        fidelity=MappingProxyType(fidelity),
        allowed_imports=frozenset(data.get("checks", {}).get("allowed_imports", ())),
        data_source=str(data.get("data", {}).get("source", "")),
        metric=str(evaluation.get("metric", "lm")),
        vocab_size=int(evaluation.get("vocab_size", 50257)),
        context=int(evaluation.get("context", data.get("protected", {}).get("block_size", 64))),
        extra=MappingProxyType({k: v for k, v in data.items() if k not in _KNOWN}),
    )


_KNOWN = {"name", "description", "files", "contract", "protected", "fidelity", "checks", "data"}
_KNOWN |= {"evaluation"}


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


__all__ = ["FIDELITY_NAMES", "Contract", "Task", "builtin_tasks", "load_task", "load_task_dir"]

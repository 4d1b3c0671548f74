"""The offline agent's task-independent technique: tune the hyperparameters the code names.

Training code keeps its hyperparameters as module-level constants (``learning_rate = 1e-3``,
``hidden = 64``, ``dropout = 0.1``). This technique finds the numeric ones whose names say
what they are, in every editable file, leaves the task's protected constants alone, and moves
one or two of them by a step that suits their kind: a factor on a log scale for rates, a
multiple of 8 for widths, one layer for depths, a grid for probabilities. It is what the
offline agent can still do on a task it knows nothing else about; the catalogue's
transformer techniques simply do not apply there.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from dreamteam.agents.source_edit import Skip, fmt, parsed, set_constants
from dreamteam.agents.techniques_base import Change, Files, Technique

MAX_TUNED = 2  # hyperparameters moved in one change


@dataclass(frozen=True)
class _Kind:
    """A kind of hyperparameter: which names it covers and how a new value is drawn."""

    name: str
    pattern: re.Pattern[str]
    integer: bool
    draw: Callable[[float, random.Random], float]


def _scale(factors: tuple[float, ...], low: float = 0.0, high: float = float("inf")):
    def draw(value: float, rng: random.Random) -> float:
        return min(max(value * rng.choice(factors), low), high)

    return draw


def _grid(options: tuple[float, ...]):
    def draw(value: float, rng: random.Random) -> float:
        return rng.choice([o for o in options if abs(o - value) > 1e-12])

    return draw


def _decay(value: float, rng: random.Random) -> float:
    if value == 0:
        return rng.choice((1e-4, 1e-3, 1e-2))
    return rng.choice((0.0, value * 0.1, value * 0.3, value * 3))


def _width(value: float, rng: random.Random) -> float:
    return max(8, round(value * rng.choice((0.5, 1.5, 2.0)) / 8) * 8)


def _depth(value: float, rng: random.Random) -> float:
    return min(max(value + rng.choice((-1, 1)), 1), 12)


def _memory(value: float, rng: random.Random) -> float:
    """A momentum-like coefficient: halve or double its distance from 1."""
    return round(min(max(1 - (1 - value) * rng.choice((0.5, 2.0)), 0.5), 0.9999), 4)


_KINDS = (
    _Kind("rate", re.compile(r"(^|_)(lr|learning_rate)($|_)"), False, _scale((0.3, 0.5, 2, 3))),
    _Kind("decay", re.compile(r"^(weight_decay|wd)$"), False, _decay),
    _Kind(
        "dropout",
        re.compile(r"(^|_)(dropout|drop_rate|p_drop)$"),
        False,
        _grid((0.0, 0.05, 0.1, 0.2, 0.3)),
    ),
    _Kind(
        "width",
        re.compile(
            r"^(hidden|width|n_hidden|hidden_size|hidden_dim|d_hidden|n_units|units"
            r"|channels|n_channels|d_ff|ffn_dim|mlp_dim)$"
        ),
        True,
        _width,
    ),
    _Kind("depth", re.compile(r"^(depth|n_layers|num_layers|n_hidden_layers)$"), True, _depth),
    _Kind("memory", re.compile(r"^(momentum|beta|beta1|beta2)$"), False, _memory),
    _Kind("warmup", re.compile(r"^warmup(_iters|_steps)?$"), True, _scale((0.5, 2), 1)),
    _Kind("smoothing", re.compile(r"^label_smoothing$"), False, _grid((0.0, 0.05, 0.1))),
    _Kind(
        "clip",
        re.compile(r"^(grad_clip|max_grad_norm|clip_norm)$"),
        False,
        _grid((0.0, 0.5, 1.0, 2.0)),
    ),
)


_BY_NAME = {kind.name: kind for kind in _KINDS}


def draw(kind: str, value: float, rng: random.Random) -> float:
    """A new value for a hyperparameter of the named kind (``rate``, ``decay``, ``dropout``...)."""
    return _BY_NAME[kind].draw(value, rng)


@dataclass(frozen=True)
class _Found:
    """One tunable constant: in which file, its name, value and kind."""

    file: str
    name: str
    value: float
    kind: _Kind


def _kind(name: str, value: object) -> _Kind | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    for kind in _KINDS:
        if kind.pattern.search(name.lower()) and (not kind.integer or isinstance(value, int)):
            return kind
    return None


def tunable(files: Mapping[str, str], protected: Iterable[str] = ()) -> list[_Found]:
    """The named numeric hyperparameters of every Python file, protected ones left out."""
    keep_out = set(protected)
    found = []
    for file, src in files.items():
        if not file.endswith(".py"):
            continue
        seen: set[str] = set()
        for stmt in parsed(src).body:
            if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
                continue
            target = stmt.targets[0]
            if not isinstance(target, ast.Name) or target.id in keep_out | seen:
                continue
            seen.add(target.id)  # the first assignment is the one set_constants rewrites
            try:
                value = ast.literal_eval(stmt.value)
            except (ValueError, TypeError, SyntaxError, RecursionError):
                continue
            kind = _kind(target.id, value)
            if kind is not None:
                found.append(_Found(file, target.id, float(value), kind))
    return found


def _code(found: _Found, value: float) -> str:
    return str(int(value)) if found.kind.integer else fmt(float(f"{value:.4g}"))


def hyperparameter_tuner(protected: Iterable[str] = ()) -> Technique:
    """The technique, for a task whose protected constants are `protected`."""
    frozen = frozenset(protected)

    def applies(files: Mapping[str, str]) -> bool:
        return bool(tunable(files, frozen))

    def change(files: Files, rng: random.Random) -> Change:
        options = tunable(files, frozen)
        if not options:
            raise Skip("no named numeric hyperparameter to tune")
        picked = rng.sample(options, min(len(options), rng.randint(1, MAX_TUNED)))
        details = []
        for found in picked:
            new = _code(found, found.kind.draw(found.value, rng))
            old = _code(found, found.value)
            if new == old:
                continue
            files[found.file] = set_constants(files[found.file], {found.name: new})
            details.append(f"{found.name} {old} -> {new}")
        if not details:
            raise Skip("no new value drawn")
        return Change(files, ", ".join(details))

    return Technique(
        "tune_hyperparameters",
        ("adaptive_optimizers", "regularization", "nas"),
        "a task's own hyperparameters (step size, width, depth, regularisation) are the "
        "first thing to get right, before any new idea",
        applies,
        change,
    )

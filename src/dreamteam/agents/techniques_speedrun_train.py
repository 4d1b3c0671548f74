"""The speedrun playbook's training techniques, written afresh for this task: a learning-rate
floor at the end of a linear cooldown, momentum warmup for Muon, separate learning rates for
embeddings, matrices and scalars, and cautious (masked, decoupled) weight decay.

They find the training loop by what it does: a ``for`` over ``range(n)`` whose body calls
``<opt>.step()`` on an object the same function also calls ``.zero_grad()`` on (so Muon, a
class of the candidate's own, counts as well as ``torch.optim``). What they cannot find makes
them not apply (``Skip``), never a broken edit.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass

import libcst as cst

from dreamteam.agents.script_edit import argument, optimizer_class, rewrite_calls, step_pattern
from dreamteam.agents.snippets_speedrun import (
    CAUTIOUS_DECAY,
    CAUTIOUS_GROUPS,
    LR_COOLDOWN,
    LR_GROUPS,
    MOMENTUM_WARMUP,
    SET_COOLDOWN,
)
from dreamteam.agents.source_edit import (
    Skip,
    around,
    binds,
    code_of,
    constant,
    edit,
    fmt,
    insert_top,
    number,
    parsed,
    segment,
    set_constants,
)
from dreamteam.agents.speedrun_edit import local_names, method
from dreamteam.agents.techniques_base import TRAIN, Change, Files, Technique, registrar

TECHNIQUES: list[Technique] = []
"""This module's techniques, in definition order."""
_technique = registrar(TECHNIQUES)

_SCHEDULED = re.compile(r"lr_scheduler|\[\s*['\"]lr['\"]\s*\]\s*=")


@dataclass(frozen=True)
class Stepping:
    """The training loop: its function, the optimizer it steps, its variable and length."""

    function: str
    optimizer: str
    it: str
    steps: str  # the loop's length, as code (the argument of its range())


def _steps_directly(loop: ast.For, zeroed: set[str]) -> list[str]:
    """The optimizers whose ``.step()`` is a statement of the loop's own body."""
    return [
        ast.unparse(s.value.func.value)
        for s in loop.body
        if isinstance(s, ast.Expr)
        and isinstance(s.value, ast.Call)
        and not s.value.args
        and isinstance(s.value.func, ast.Attribute)
        and s.value.func.attr == "step"
        and ast.unparse(s.value.func.value) in zeroed
    ]


def stepping_loop(src: str) -> Stepping:
    """The one ``for it in range(n)`` loop that steps an optimizer; Skip unless exactly one."""
    found = []
    for fn in parsed(src).body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        zeroed = {
            ast.unparse(c.func.value)
            for c in ast.walk(fn)
            if isinstance(c, ast.Call)
            and isinstance(c.func, ast.Attribute)
            and c.func.attr == "zero_grad"
        }
        for loop in ast.walk(fn):
            if not (isinstance(loop, ast.For) and isinstance(loop.target, ast.Name)):
                continue
            it = loop.iter
            if isinstance(it, ast.Call) and ast.unparse(it.func) == "range" and len(it.args) == 1:
                steps = ast.unparse(it.args[0])
                for opt in _steps_directly(loop, zeroed):
                    found.append(Stepping(fn.name, opt, loop.target.id, steps))
    if len(found) != 1:
        raise Skip(f"{len(found)} training loops that step an optimizer")
    return found[0]


def _free(src: str, loop: Stepping, names: tuple[str, ...]) -> bool:
    """Whether none of ``names`` is bound or read anywhere in the file."""
    return not re.search(rf"\b({'|'.join(names)})\b", src) and bool(loop.function)


# --- a learning-rate floor -------------------------------------------------------------------


def _floorable(f: Mapping[str, str]) -> bool:
    src = f[TRAIN]
    if "def lr_multiplier" in src and isinstance(constant(src, "min_lr_ratio"), float | int):
        return True  # the cosine schedule's floor: move it
    loop = stepping_loop(src)
    names = ("lr_cooldown", "cooldown_frac", "lr_floor")
    return binds(src, "torch") and not _SCHEDULED.search(src) and _free(src, loop, names)


@_technique(
    "lr_floor",
    ("lr_schedules",),
    "hold the peak learning rate, then cool down linearly to a floor, not to zero (nanogpt "
    "speedrun): the last steps still move the weights while the noise settles",
    _floorable,
)
def _lr_floor(files: Files, rng: random.Random) -> Change:
    src, floor = files[TRAIN], rng.choice((0.05, 0.1, 0.2))
    if "def lr_multiplier" in src and "lr_cooldown" not in src:
        old = number(src, "min_lr_ratio")
        floor = rng.choice([v for v in (0.0, 0.05, 0.1, 0.2) if abs(v - old) > 1e-9])
        files[TRAIN] = set_constants(src, {"min_lr_ratio": fmt(floor)})
        return Change(files, f"cosine floor {fmt(old)} -> {fmt(floor)} of the peak")
    loop = stepping_loop(src)
    frac = rng.choice((0.3, 0.5, 0.7))
    src = set_constants(
        src,
        {"cooldown_frac": fmt(frac), "lr_floor": fmt(floor)},
        {
            "cooldown_frac": "the last fraction of the steps, decaying linearly",
            "lr_floor": "the decay ends at this fraction of the peak learning rate",
        },
    )
    src = insert_top(src, LR_COOLDOWN, (loop.function,))
    code = SET_COOLDOWN.format(optimizer=loop.optimizer, it=loop.it, steps=loop.steps)
    files[TRAIN] = edit(src, loop.function, around(step_pattern(loop.optimizer), code))
    return Change(files, f"linear cooldown over the last {frac:.0%} to {floor:g} of the peak")


# --- momentum warmup for Muon ----------------------------------------------------------------


def _has_momentum_groups(src: str) -> bool:
    """Whether the file builds Muon parameter groups (a dict with a "momentum" key)."""
    return re.search(r"\bMuon\b", src) is not None and any(
        isinstance(d, ast.Dict)
        and any(isinstance(k, ast.Constant) and k.value == "momentum" for k in d.keys)
        for d in ast.walk(parsed(src))
    )


def _warmable(f: Mapping[str, str]) -> bool:
    src = f[TRAIN]
    loop = stepping_loop(src)
    fn = method(src, loop.function)
    names = ("momentum_warmup", "momentum_start")
    return (
        _has_momentum_groups(src)
        and _free(src, loop, names)
        and not {"warm", "final"} & local_names(fn)
    )


@_technique(
    "muon_momentum_warmup",
    ("muon", "adaptive_optimizers"),
    "Muon's momentum warms up from 0.85 to its final value (nanogpt speedrun): early "
    "gradients change fast, so a short memory follows them better",
    _warmable,
)
def _momentum_warmup(files: Files, rng: random.Random) -> Change:
    start, steps = rng.choice((0.8, 0.85)), rng.choice((150, 300, 500))
    src = files[TRAIN]
    loop = stepping_loop(src)
    src = set_constants(
        src,
        {"momentum_warmup": str(steps), "momentum_start": fmt(start)},
        {
            "momentum_warmup": "steps over which Muon's momentum warms up (at most half a run)",
            "momentum_start": "Muon's momentum at the first step",
        },
    )
    code = MOMENTUM_WARMUP.format(optimizer=loop.optimizer, it=loop.it, steps=loop.steps)
    files[TRAIN] = edit(src, loop.function, around(step_pattern(loop.optimizer), code))
    return Change(files, f"Muon momentum {fmt(start)} -> final over {steps} steps")


# --- separate learning rates by parameter role -----------------------------------------------


def _one_optimizer(src: str, loop: Stepping) -> cst.Call:
    """The loop's optimizer construction: one ``torch.optim`` call in its function."""
    made = [
        c
        for c in ast.walk(method(src, loop.function))
        if isinstance(c, ast.Call) and optimizer_class(c, src) is not None
    ]
    if len(made) != 1:
        raise Skip(f"{len(made)} optimizer constructions")
    call = cst.parse_expression(ast.unparse(made[0]))
    assert isinstance(call, cst.Call)
    return call


def _model_name(src: str, loop: Stepping) -> str:
    """The one local whose ``.parameters()`` or ``.named_parameters()`` the function reads."""
    names = set(re.findall(r"\b(\w+)\.(?:named_)?parameters\(", segment(src, loop.function)))
    if len(names) != 1:
        raise Skip(f"{len(names)} models whose parameters are read")
    return names.pop()


def _splittable(f: Mapping[str, str]) -> bool:
    src = f[TRAIN]
    loop = stepping_loop(src)
    call = _one_optimizer(src, loop)
    names = ("lr_groups", "embed_lr_scale", "scalar_lr_scale")
    return (
        argument(call, "lr", 1) is not None
        and argument(call, "params", 0) is not None
        and bool(_model_name(src, loop))
        and _free(src, loop, names)
    )


def _decay_code(src: str, call: cst.Call) -> str:
    """The weight decay the groups get: the module constant, else the call's, else None."""
    if isinstance(constant(src, "weight_decay"), float | int):
        return "weight_decay"
    arg = argument(call, "weight_decay", 99)
    return code_of(arg.value) if arg is not None else "None"


@_technique(
    "split_lr",
    ("adaptive_optimizers", "lr_schedules", "meta_optimizers"),
    "separate learning rates for embeddings, matrices and scalars (nanogpt speedrun): an "
    "embedding row gets a gradient only when its token appears, and gains are single numbers, "
    "so both want larger steps than the matrices",
    _splittable,
)
def _split_lr(files: Files, rng: random.Random) -> Change:
    embed, scalar = rng.choice((3.0, 10.0, 30.0)), rng.choice((3.0, 10.0))
    src = files[TRAIN]
    loop = stepping_loop(src)
    model = _model_name(src, loop)
    wd = _decay_code(src, _one_optimizer(src, loop))

    def regroup(call: cst.Call) -> cst.BaseExpression | None:
        if optimizer_class(call, src) is None:
            return None
        lr, params = argument(call, "lr", 1), argument(call, "params", 0)
        if lr is None or params is None:
            raise Skip("the optimizer's params or lr are not given")
        groups = f"lr_groups({model}, {code_of(lr.value)}, {wd})"
        new = params.with_changes(value=cst.parse_expression(groups))
        return call.with_changes(args=[new if a is params else a for a in call.args])

    src = rewrite_calls(src, regroup)
    for name in re.findall(r"^\s*(\w+) = \[.*\.parameters\(\)", segment(src, loop.function), re.M):
        if len(re.findall(rf"(?<![\w.]){name}\b", segment(src, loop.function))) == 1:
            src = edit(src, loop.function, around(rf"^{name} = ", "", "instead"))  # now unused
    src = set_constants(
        src,
        {"embed_lr_scale": fmt(embed), "scalar_lr_scale": fmt(scalar)},
        {
            "embed_lr_scale": "embedding tables learn at this multiple of the learning rate",
            "scalar_lr_scale": "vectors and scalars (norm gains, biases) learn at this multiple",
        },
    )
    files[TRAIN] = insert_top(src, LR_GROUPS, (loop.function,))
    return Change(files, f"lr x{embed:g} for embeddings, x{scalar:g} for vectors and scalars")


# --- cautious weight decay -------------------------------------------------------------------


def _decays(f: Mapping[str, str]) -> bool:
    src = f[TRAIN]
    loop = stepping_loop(src)
    wd = constant(src, "weight_decay")
    return (
        "weight_decay" in src
        and (not isinstance(wd, float | int) or wd > 0)
        and re.search(rf"^\s*{loop.optimizer} = ", segment(src, loop.function), re.M) is not None
        and _free(src, loop, ("cautious_decay", "cautious_wd"))
    )


@_technique(
    "cautious_wd",
    ("regularization", "adaptive_optimizers"),
    "cautious weight decay: decoupled decay applied only where the update already pulls a "
    "weight toward zero, so decay never fights the gradient (Chen et al. 2025, nanogpt speedrun)",
    _decays,
)
def _cautious(files: Files, rng: random.Random) -> Change:
    src = files[TRAIN]
    loop = stepping_loop(src)
    src = insert_top(src, CAUTIOUS_DECAY, (loop.function,))
    groups = CAUTIOUS_GROUPS.format(optimizer=loop.optimizer)
    src = edit(src, loop.function, around(rf"^{loop.optimizer} = ", groups, "after"))
    step = f"cautious_decay({loop.optimizer})\n"
    files[TRAIN] = edit(src, loop.function, around(step_pattern(loop.optimizer), step, "after"))
    return Change(files, "weight decay only where the update moves a weight toward zero")

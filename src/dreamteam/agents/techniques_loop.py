"""Training-loop techniques for any PyTorch script: a learning-rate schedule and clipping.

Both find the loop by what it does (it calls ``<optimizer>.step()`` on an optimizer the same
function constructs, see ``script_edit.training_loops``), not by the baseline's names:

- ``warmup_schedule``: a ``LambdaLR`` with linear warmup, then cosine (or linear) decay,
  sized from the optimizer steps the harness asks for (the entry point's ``iters``, which the
  harness passes and counts) or else from the loops' ranges; stepped after each optimizer step;
- ``add_clipping``: gradient-norm clipping just before the optimizer step.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Callable, Mapping

import libcst as cst

from dreamteam.agents.script_edit import Loop, step_pattern, training_loops
from dreamteam.agents.source_edit import Skip, around, binds, edit, ensure_import
from dreamteam.agents.techniques_base import Change, Files, Technique

STEPS_ARG = "iters"  # the run contract's argument: optimizer steps, counted by the harness
_NAMES = ("lr_schedule", "schedule_steps", "warmup_steps")
_SCHEDULED = re.compile(r"lr_scheduler|\[\s*['\"]lr['\"]\s*\]\s*=")

_COSINE = (
    "{floor} + (1 - {floor}) * 0.5 * (1 + math.cos(math.pi * min(step / schedule_steps, 1.0)))"
)
_LINEAR = "1 - (1 - {floor}) * min(step / schedule_steps, 1.0)"
_SCHEDULE = """
schedule_steps = max(1, {total})  # optimizer steps the schedule spans
warmup_steps = max(1, int({warmup} * schedule_steps))
lr_schedule = torch.optim.lr_scheduler.LambdaLR(
    {optimizer},
    lambda step: min(1.0, (step + 1) / warmup_steps)
    * ({decay}),
)
"""


def _count(header: ast.For | ast.While) -> str:
    """How many times a loop runs, as code (Skip when the code cannot say)."""
    if isinstance(header, ast.While):
        raise Skip("a while loop's length is unknown")
    it = header.iter
    if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and not it.keywords:
        if it.func.id == "range" and len(it.args) == 1:
            arg = it.args[0]
            text = ast.unparse(arg)
            return text if isinstance(arg, ast.Name | ast.Constant | ast.Call) else f"({text})"
        if it.func.id == "range":
            return f"len({ast.unparse(it)})"
        if it.func.id == "enumerate" and len(it.args) == 1:
            return f"len({ast.unparse(it.args[0])})"
    if isinstance(it, ast.Name | ast.Attribute):
        return f"len({ast.unparse(it)})"
    raise Skip(f"cannot count the loop over {ast.unparse(it)}")


def total_steps(loop: Loop) -> str:
    """The optimizer steps the loop makes, as code: the harness's step count when the entry
    point takes it, else the product of the loops' lengths (both when both are known)."""
    mentions = any(
        isinstance(n, ast.Name) and n.id == STEPS_ARG
        for h in loop.headers
        for n in ast.walk(h.iter if isinstance(h, ast.For) else h.test)
    )
    if STEPS_ARG in loop.params and mentions:
        return STEPS_ARG
    try:
        product = " * ".join(_count(h) for h in loop.headers)
    except Skip:
        if STEPS_ARG in loop.params:
            return STEPS_ARG
        raise
    return f"min({STEPS_ARG}, {product})" if STEPS_ARG in loop.params else product


def _loops(files: Mapping[str, str], marker: re.Pattern[str]) -> list[tuple[str, Loop]]:
    """(file, loop) of the training loops in files without ``marker`` and with torch bound."""
    return [
        (file, loop)
        for file, src in files.items()
        if file.endswith(".py") and not marker.search(src) and binds(src, "torch")
        for loop in training_loops(src)
    ]


def _insert_before(top: int, code: str) -> Callable[[cst.FunctionDef], cst.FunctionDef]:
    def fn(func: cst.FunctionDef) -> cst.FunctionDef:
        block = func.body
        if not isinstance(block, cst.IndentedBlock):
            raise Skip("one-line function")
        body = list(block.body)
        new = list(cst.parse_module(code.strip() + "\n").body)
        return func.with_changes(body=block.with_changes(body=[*body[:top], *new, *body[top:]]))

    return fn


def _schedulable(files: Mapping[str, str]) -> list[tuple[str, Loop]]:
    taken = re.compile(rf"{_SCHEDULED.pattern}|\b({'|'.join(_NAMES)})\b")
    return [(f, loop) for f, loop in _loops(files, taken) if _sized(loop)]


def _sized(loop: Loop) -> bool:
    try:
        return bool(total_steps(loop))
    except Skip:
        return False


def schedule(imports: frozenset[str] | None) -> Callable[[Files, random.Random], Change]:
    """The schedule change; ``imports``: the modules a candidate may import (None: any)."""

    def change(files: Files, rng: random.Random) -> Change:
        found = _schedulable(files)
        if not found:
            raise Skip("no training loop to schedule")
        file, loop = rng.choice(found)
        src = files[file]
        cosine = binds(src, "math") or imports is None or "math" in imports
        shape = rng.choice(("cosine", "linear")) if cosine else "linear"
        floor, warmup = rng.choice(("0.0", "0.1")), rng.choice(("0.02", "0.05", "0.1"))
        decay = (_COSINE if shape == "cosine" else _LINEAR).format(floor=floor)
        code = _SCHEDULE.format(
            total=total_steps(loop), warmup=warmup, optimizer=loop.optimizer, decay=decay
        )
        if shape == "cosine":
            src = ensure_import(src, "math")
        src = edit(src, loop.function, _insert_before(loop.top, code))
        pattern = f"(?m){step_pattern(loop.optimizer)}"
        files[file] = edit(src, loop.function, around(pattern, "lr_schedule.step()", "after"))
        return Change(files, f"warmup {warmup} of the steps, then {shape} decay to {floor}")

    return change


def add_clipping(files: Files, rng: random.Random) -> Change:
    """Clip the gradient norm before the optimizer steps."""
    found = _loops(files, re.compile(r"clip_grad_"))
    if not found:
        raise Skip("no unclipped training loop")
    file, loop = rng.choice(found)
    norm = rng.choice(("0.5", "1.0", "2.0"))
    params = f'[p for group in {loop.optimizer}.param_groups for p in group["params"]]'
    code = f"torch.nn.utils.clip_grad_norm_({params}, {norm})"
    pattern = f"(?m){step_pattern(loop.optimizer)}"
    files[file] = edit(files[file], loop.function, around(pattern, code, "before"))
    return Change(files, f"gradient norm clipped at {norm}")


def techniques(imports: frozenset[str] | None = None) -> tuple[Technique, ...]:
    """This module's techniques; ``imports``: the modules a candidate may import (None: any)."""
    return (
        Technique(
            "warmup_schedule",
            ("lr_schedules",),
            "a short warmup then a decay to a small rate lets a run take large steps early "
            "and settle at the end, for the same number of steps",
            lambda f: bool(_schedulable(f)),
            schedule(imports),
        ),
        Technique(
            "add_clipping",
            ("gradient_clipping",),
            "clipping the gradient norm caps the rare huge step that throws a small model "
            "off, so it tolerates a higher learning rate",
            lambda f: bool(_loops(f, re.compile(r"clip_grad_"))),
            add_clipping,
        ),
    )

"""Optimizer techniques for any PyTorch training script, found by what the code does.

- ``tune_literals``: the literal hyperparameters written inline (``lr=0.05`` and the other
  optimizer arguments, ``nn.Dropout(0.1)``, ``clip_grad_norm_(..., 1.0)``) move like the
  tuner's module constants do;
- ``swap_optimizer``: SGD, SGD with Nesterov momentum, Adam and AdamW trade places, the
  learning rate rescaled into the new optimizer's usual range (SGD 0.05 -> Adam 0.003);
- ``split_decay``: weight decay on the 2-D weights only, not on biases and norm gains.

``nudge_lr`` is the small learning-rate re-tune the offline agent adds after a structural
change. The edits never touch a protected constant; each raises ``Skip`` when it finds nothing.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Mapping

import libcst as cst

from dreamteam.agents.script_edit import (
    Rate,
    argument,
    code_of,
    keyword,
    learning_rate,
    literal,
    optimizer_calls,
    optimizer_class,
    real,
    rewrite_calls,
    set_rate,
    short,
    with_value,
)
from dreamteam.agents.source_edit import Skip, binds
from dreamteam.agents.techniques_base import Change, Files, Technique
from dreamteam.agents.techniques_generic import draw

# --- inline literals -----------------------------------------------------------------------

_BETAS = ((0.9, 0.999), (0.9, 0.99), (0.9, 0.95), (0.8, 0.99), (0.95, 0.999))
_DROPOUTS = ("Dropout", "Dropout1d", "Dropout2d", "AlphaDropout")
_CLIPS = ("clip_grad_norm_", "clip_grad_norm")


def _momentum(value: float, rng: random.Random) -> float:
    return 0.9 if value == 0 else draw("memory", value, rng)


_DRAWS: dict[str, Callable[[float, random.Random], float]] = {
    "rate": lambda v, rng: draw("rate", v, rng),
    "decay": lambda v, rng: draw("decay", v, rng),
    "dropout": lambda v, rng: draw("dropout", v, rng),
    "memory": _momentum,
    "eps": lambda v, rng: rng.choice([e for e in (1e-10, 1e-8, 1e-6) if abs(e - v) > 1e-12]),
    "clip": lambda v, rng: rng.choice([c for c in (0.5, 1.0, 2.0, 5.0) if c != v]),
}


# what a user wrote, for the change's description: momentum=, not the draw's kind "memory"
_SHOWN = {"rate": "lr", "decay": "weight_decay", "memory": "momentum", "clip": "max_norm"}


def _sites(call: cst.Call, src: str) -> list[tuple[cst.Arg, str]]:
    """The literal hyperparameters of one call: (argument, kind)."""
    last = code_of(call.func).rpartition(".")[2]
    if optimizer_class(call, src) is not None:
        args = [
            (argument(call, "lr", 1), "rate"),
            (keyword(call, "weight_decay"), "decay"),
            (keyword(call, "momentum"), "memory"),
            (keyword(call, "betas"), "betas"),
            (keyword(call, "eps"), "eps"),
        ]
    elif last in _DROPOUTS:
        args = [(argument(call, "p", 0), "dropout")]
    elif last == "dropout":  # functional: dropout(x, p)
        args = [(argument(call, "p", 1), "dropout")]
    elif last in _CLIPS:
        args = [(argument(call, "max_norm", 1), "clip")]
    else:
        return []
    out = []
    for arg, kind in args:
        value = literal(arg.value) if arg is not None else None
        numbers = isinstance(value, tuple) and len(value) == 2 and all(map(real, value))
        if arg is not None and (real(value) is not None or (kind == "betas" and numbers)):
            out.append((arg, kind))
    return out


def _new_value(value: object, kind: str, rng: random.Random) -> str:
    if kind == "betas":
        b1, b2 = rng.choice([b for b in _BETAS if b != value])
        return f"({short(b1)}, {short(b2)})"
    number = real(value)
    assert number is not None
    new = _DRAWS[kind](number, rng)
    if kind == "memory":
        new = min(new, 0.99)
    return short(new)


def _literal_sites(files: Mapping[str, str]) -> list[tuple[str, int, str, object]]:
    """(file, index in that file, kind, value) of every inline literal hyperparameter."""
    found = []
    for file, src in files.items():
        if not file.endswith(".py"):
            continue
        index = 0

        def note(call: cst.Call, file: str = file, src: str = src) -> None:
            nonlocal index
            for arg, kind in _sites(call, src):
                found.append((file, index, kind, literal(arg.value)))
                index += 1

        with contextlib.suppress(Skip):  # nothing rewritten: noting is all it does
            rewrite_calls(src, note)
    return found


def _set_sites(src: str, values: Mapping[int, str]) -> str:
    index = 0

    def fn(call: cst.Call) -> cst.BaseExpression | None:
        nonlocal index
        out = None
        for arg, _ in _sites(call, src):
            if index in values:
                out = with_value(out or call, _same(out or call, arg), values[index])
            index += 1
        return out

    return rewrite_calls(src, fn)


def _same(call: cst.Call, arg: cst.Arg) -> cst.Arg:
    """``call``'s argument at the position ``arg`` had (``call`` may be a rewritten copy)."""
    return call.args[[code_of(a) for a in call.args].index(code_of(arg))]


def tune_literals(files: Files, rng: random.Random) -> Change:
    """Move one or two of the literal hyperparameters written inline."""
    sites = _literal_sites(files)
    if not sites:
        raise Skip("no inline literal hyperparameter")
    picked = rng.sample(sites, min(len(sites), rng.randint(1, 2)))
    details: list[str] = []
    todo: dict[str, dict[int, str]] = {}
    for file, index, kind, value in picked:
        new = _new_value(value, kind, rng)
        todo.setdefault(file, {})[index] = new
        details.append(f"{_SHOWN.get(kind, kind)} {value} -> {new}")
    for file, values in todo.items():
        files[file] = _set_sites(files[file], values)
    return Change(files, ", ".join(details))


# --- optimizer swap ------------------------------------------------------------------------

NESTEROV = "SGD+nesterov"
_TYPICAL = {"SGD": 0.05, NESTEROV: 0.01, "Adam": 3e-3, "AdamW": 3e-3, "RMSprop": 1e-3}
_RANGE = {
    "SGD": (1e-3, 0.5),
    NESTEROV: (1e-4, 0.1),
    "Adam": (1e-4, 1e-2),
    "AdamW": (1e-4, 1e-2),
    "RMSprop": (1e-4, 1e-2),
}
_TARGETS = {
    "SGD": (NESTEROV, "Adam", "AdamW"),
    NESTEROV: ("Adam", "AdamW"),
    "Adam": ("AdamW", NESTEROV),
    "AdamW": ("Adam", NESTEROV),
    "RMSprop": ("Adam", "AdamW"),
}
_KEEP = ("weight_decay", "foreach", "maximize", "fused", "capturable", "differentiable")


def family(call: cst.Call, cls: str) -> str:
    """The optimizer's family for the swap: SGD with momentum counts as Nesterov SGD, the
    other Adam variants as Adam."""
    if cls == "SGD":
        momentum = keyword(call, "momentum")
        plain = momentum is None or real(literal(momentum.value)) == 0
        return "SGD" if plain else NESTEROV
    return cls if cls in _TYPICAL else "Adam"


def rescaled(value: float, old: str, new: str) -> float:
    """A learning rate carried from one optimizer family's usual range into another's."""
    low, high = _RANGE[new]
    return float(short(min(max(value * _TYPICAL[new] / _TYPICAL[old], low), high)))


def _swapped(call: cst.Call, src: str, target: str, lr: str) -> str:
    head = code_of(call.func).rpartition(".")[0]
    if not head:
        if not binds(src, "torch"):
            raise Skip("no torch binding for another optimizer class")
        head = "torch.optim"
    params = argument(call, "params", 0)
    if params is None:
        raise Skip("optimizer without parameters")
    args = [code_of(params.value), f"lr={lr}"]
    args += [f"{name}={code_of(a.value)}" for name in _KEEP if (a := keyword(call, name))]
    if target == NESTEROV:
        args += ["momentum=0.9", "nesterov=True"]
    name = "SGD" if target == NESTEROV else target
    return f"{head}.{name}({', '.join(args)})"


def swap_optimizer(protected: frozenset[str]) -> Callable[[Files, random.Random], Change]:
    """The change: one optimizer becomes another family's, its learning rate rescaled."""

    def change(files: Files, rng: random.Random) -> Change:
        found = optimizer_calls(files)
        if not found:
            raise Skip("no torch.optim optimizer")
        file, call, cls = rng.choice(found)
        index = [c for f, c, _ in found if f == file].index(call)
        old = family(call, cls)
        target = rng.choice(_TARGETS[old])
        rate = learning_rate(files, file, call, protected)
        value = rate.value if rate else 1e-3  # torch's default
        new = rescaled(value, old, target)
        lr_arg = argument(call, "lr", 1)
        if rate is not None and rate.constant:
            lr = rate.constant
        elif rate is None and lr_arg is not None:  # an expression: scale it
            lr = f"({code_of(lr_arg.value)}) * {short(new / value)}"
        else:
            lr = short(new)
        files[file] = _replace_optimizer(files[file], index, target, lr)
        if rate is not None and rate.constant:
            set_rate(files, rate, new)
        return Change(files, f"{old} -> {target}, lr {short(value)} -> {short(new)}")

    return change


def _replace_optimizer(src: str, index: int, target: str, lr: str) -> str:
    seen = -1

    def fn(call: cst.Call) -> cst.BaseExpression | None:
        nonlocal seen
        if optimizer_class(call, src) is None:
            return None
        seen += 1
        return cst.parse_expression(_swapped(call, src, target, lr)) if seen == index else None

    return rewrite_calls(src, fn)


# --- weight decay by parameter shape -------------------------------------------------------


def _splittable(call: cst.Call) -> str | None:
    """The module whose ``.parameters()`` the optimizer takes whole, else None."""
    params = argument(call, "params", 0)
    if params is None or not isinstance(params.value, cst.Call) or params.value.args:
        return None
    func = params.value.func
    if isinstance(func, cst.Attribute) and func.attr.value == "parameters":
        return code_of(func.value)
    return None


def split_decay(files: Files, rng: random.Random) -> Change:
    """Decay the 2-D weights only: biases and norm gains get no weight decay."""
    found = [(f, c, k) for f, c, k in optimizer_calls(files) if _splittable(c)]
    if not found:
        raise Skip("no optimizer over a whole model.parameters()")
    file, call, cls = rng.choice(found)
    old = keyword(call, "weight_decay")
    value = real(literal(old.value)) if old is not None else None
    if value:
        wd = short(value)
    else:
        wd = short(rng.choice((0.01, 0.05, 0.1) if cls == "AdamW" else (1e-4, 5e-4, 1e-3)))
    src = files[file]

    def fn(node: cst.Call) -> cst.BaseExpression | None:
        module = _splittable(node)
        if optimizer_class(node, src) is None or module is None or code_of(node) != code_of(call):
            return None
        params = f"{module}.parameters()"
        groups = (
            f'[{{"params": [p for p in {params} if p.dim() >= 2], "weight_decay": {wd}}}, '
            f'{{"params": [p for p in {params} if p.dim() < 2], "weight_decay": 0.0}}]'
        )
        rest = [a for a in node.args[1:] if not (a.keyword and a.keyword.value == "weight_decay")]
        args = [groups, *(code_of(a).rstrip().rstrip(",") for a in rest)]
        return cst.parse_expression(f"{code_of(node.func)}({', '.join(args)})")

    files[file] = rewrite_calls(src, fn)
    return Change(files, f"weight decay {wd} on 2-D weights, none on biases and gains")


# --- the re-tune after a structural change -------------------------------------------------


def nudge_lr(files: Files, rng: random.Random, protected: frozenset[str]) -> Change:
    """Scale the first optimizer's learning rate by a small factor (literal or constant)."""
    for file, call, _ in optimizer_calls(files):
        rate: Rate | None = learning_rate(files, file, call, protected)
        if rate is not None:
            new = rate.value * rng.choice((0.5, 0.7, 1.4, 2.0))
            set_rate(files, rate, new)
            return Change(files, f"lr {short(rate.value)} -> {short(new)}")
    raise Skip("no learning rate to re-tune")


def retune_lr(protected: frozenset[str]) -> Technique:
    """The re-tune as a technique (not drawn by itself: the agent adds it after a structural
    change)."""

    def check(files: Mapping[str, str]) -> bool:
        found = optimizer_calls(files)
        return any(learning_rate(files, f, c, protected) for f, c, _ in found)

    return Technique(
        "retune_lr",
        ("lr_schedules", "adaptive_optimizers"),
        "a structural change moves the best learning rate, so it is tried a step off the old one",
        check,
        lambda files, rng: nudge_lr(files, rng, protected),
    )


def techniques(protected: frozenset[str]) -> tuple[Technique, ...]:
    """This module's techniques, for a task whose protected constants are ``protected``."""

    def has(fn: Callable[[Files], object]) -> Callable[[Mapping[str, str]], bool]:
        return lambda f: bool(fn(dict(f)))

    return (
        Technique(
            "tune_literals",
            ("adaptive_optimizers", "regularization"),
            "hyperparameters written inline (the optimizer's lr, dropout, clipping) are as "
            "much the task's to tune as named constants",
            has(_literal_sites),
            tune_literals,
        ),
        Technique(
            "swap_optimizer",
            ("adaptive_optimizers",),
            "plain SGD at a fixed rate is slow on small nets; momentum or Adam's per-weight "
            "scaling usually trains several times faster",
            has(optimizer_calls),
            swap_optimizer(protected),
            structural=True,
        ),
        Technique(
            "split_decay",
            ("regularization", "adaptive_optimizers"),
            "weight decay belongs on the weight matrices; decaying biases and gains only "
            "pulls the model off its offsets",
            has(lambda f: [c for _, c, _ in optimizer_calls(f) if _splittable(c)]),
            split_decay,
            structural=True,
        ),
    )

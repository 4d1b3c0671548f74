"""The catalogue's training techniques: lr schedule and hyperparameters, gradient clipping,
the Muon optimizer, and the loss's regularisation terms (label smoothing, z-loss).

They edit ``train.py``; the loss terms also extend ``model.py``'s fused loss. Their order here
is their order within the catalogue (see ``techniques.py``).
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Callable, Mapping

import libcst as cst

from dreamteam.agents.snippets import (
    FUSED_LOSS,
    LOSS_FIELDS,
    LOSS_TERMS,
    LR_MULTIPLIER,
    MUON,
    MUON_GROUPS,
    SET_LR,
)
from dreamteam.agents.source_edit import (
    Skip,
    add_fields,
    add_model_arg,
    arg_code,
    around,
    code_of,
    constant,
    edit,
    ensure_import,
    exprs,
    fmt,
    insert_top,
    number,
    parsed,
    replace_top,
    segment,
    set_constants,
)
from dreamteam.agents.techniques_base import MODEL, TRAIN, Change, Files, Technique, registrar

TECHNIQUES: list[Technique] = []
"""This module's techniques, in definition order."""
_technique = registrar(TECHNIQUES)


def _pick(rng: random.Random, options: tuple[float, ...], current: float) -> float:
    """A choice that differs from the current value by more than rounding."""
    fresh = [o for o in options if abs(o - current) > 1e-9 + 0.05 * abs(current)]
    if not fresh:
        raise Skip("no new value to try")
    return rng.choice(fresh)


def _tune(name: str, options: tuple[float, ...]) -> Callable[[Files, random.Random], Change]:
    def change(files: Files, rng: random.Random) -> Change:
        old = number(files[TRAIN], name)
        new = _pick(rng, options, old)
        files[TRAIN] = set_constants(files[TRAIN], {name: fmt(new)})
        return Change(files, f"{name} {fmt(old)} -> {fmt(new)}")

    return change


def _has(name: str) -> Callable[[Mapping[str, str]], bool]:
    return lambda f: isinstance(constant(f[TRAIN], name), int | float)


def _loop_var(train_fn: str) -> str:
    """The loop variable of the ``for`` that calls ``optimizer.step()`` in train()."""
    for node in ast.walk(parsed(train_fn)):
        if (
            isinstance(node, ast.For)
            and isinstance(node.target, ast.Name)
            and any(re.match(r"optimizer\.step\(", ast.unparse(s)) for s in node.body)
        ):
            return node.target.id
    raise Skip("no training loop that calls optimizer.step()")


def _schedulable(f: Mapping[str, str]) -> bool:
    fn = segment(f[TRAIN], "train")
    free = not re.search(r"lr_multiplier|param_groups|lr_scheduler", f[TRAIN])
    return free and bool(_loop_var(fn)) and _has("learning_rate")(f)


@_technique(
    "cosine_schedule",
    ("lr_schedules",),
    "warmup then cosine decay to 10% lets a higher peak lr train fast, then settle "
    "(warmup 200 + cosine at peak 1e-2 gained 0.30 nats at full fidelity here)",
    _schedulable,
)
def _cosine(files: Files, rng: random.Random) -> Change:
    peak = float(f"{10 ** rng.uniform(-3, -2):.0e}")  # log-uniform in 1e-3..1e-2, one digit
    warmup = rng.choice((100, 150, 200, 250, 300))
    src = set_constants(
        files[TRAIN],
        {"learning_rate": fmt(peak), "warmup_iters": str(warmup), "min_lr_ratio": "0.1"},
        {
            "warmup_iters": "linear warmup steps (capped at a tenth of a short run)",
            "min_lr_ratio": "the cosine decays to this fraction of the peak lr",
        },
    )
    src = insert_top(ensure_import(src, "math"), LR_MULTIPLIER, ("train",))
    it = _loop_var(segment(src, "train"))
    files[TRAIN] = edit(src, "train", around(r"^optimizer\.step\(", SET_LR.format(it=it)))
    return Change(files, f"peak lr {fmt(peak)}, warmup {warmup}, cosine to 10%")


_technique(
    "tune_lr",
    ("lr_schedules", "adaptive_optimizers"),
    "the baseline's 3e-4 is a large-model default; a 32-wide model tolerates a larger step",
    _has("learning_rate"),
)(_tune("learning_rate", (6e-4, 1e-3, 2e-3, 3e-3, 6e-3)))

_technique(
    "weight_decay",
    ("regularization", "adaptive_optimizers"),
    "~15 epochs over tiny Shakespeare overfit; decoupled weight decay sets how hard to pull back",
    _has("weight_decay"),
)(_tune("weight_decay", (0.0, 0.01, 0.05, 0.2)))

_technique(
    "dropout",
    ("regularization",),
    "dropout regularises a model that sees its small data set many times over",
    _has("dropout"),
)(_tune("dropout", (0.0, 0.05, 0.1, 0.2)))


@_technique(
    "adam_betas",
    ("adaptive_optimizers",),
    "AdamW's betas set how long its moment estimates remember; small models like a longer "
    "second-moment memory",
    lambda f: _has("beta1")(f) and _has("beta2")(f),
)
def _betas(files: Files, rng: random.Random) -> Change:
    old = (number(files[TRAIN], "beta1"), number(files[TRAIN], "beta2"))
    options = [(0.9, 0.99), (0.9, 0.98), (0.8, 0.95), (0.85, 0.99), (0.9, 0.95), (0.9, 0.999)]
    b1, b2 = rng.choice([o for o in options if o != old])
    files[TRAIN] = set_constants(files[TRAIN], {"beta1": fmt(b1), "beta2": fmt(b2)})
    return Change(files, f"betas {old} -> {(b1, b2)}")


@_technique(
    "grad_clip",
    ("gradient_clipping",),
    "the clipping threshold trades stability against step size; value clipping caps "
    "single outlier coordinates instead of the whole update",
    lambda f: _has("grad_clip")(f) and "clip_grad_" in f[TRAIN],
)
def _clip(files: Files, rng: random.Random) -> Change:
    src, old = files[TRAIN], number(files[TRAIN], "grad_clip")
    if "clip_grad_value_(" in src:  # back to norm clipping
        new, kind = _pick(rng, (0.5, 1.0), old), "norm"
        src = src.replace("clip_grad_value_(", "clip_grad_norm_(")
    elif rng.random() < 0.25:
        new, kind = rng.choice((0.01, 0.05)), "value"
        src = src.replace("clip_grad_norm_(", "clip_grad_value_(")
    else:
        new, kind = _pick(rng, (0.0, 0.25, 0.5, 2.0), old), "norm"
    files[TRAIN] = set_constants(src, {"grad_clip": fmt(new)})
    return Change(files, f"{kind} clipping at {fmt(new)}" if new else "clipping off")


def _optimizable(f: Mapping[str, str]) -> bool:
    fn = segment(f[TRAIN], "train")
    names = ("learning_rate", "beta1", "beta2", "weight_decay")
    return (
        "class Muon" not in f[TRAIN]
        and all(_has(n)(f) for n in names)
        and re.search(r"^\s*optimizer = ", fn, re.MULTILINE) is not None
        and re.search(r"^\s*model = ", fn, re.MULTILINE) is not None
        # Muon takes the blocks' matrices (parameters under `h.`) ...
        and re.search(r"\bself\.h = ", f[MODEL]) is not None
        # ... and its groups' locals would shadow module constants of the same names
        and re.search(r"^(hidden|rest|muon|adam|groups)\b", f[TRAIN], re.MULTILINE) is None
    )


@_technique(
    "muon",
    ("muon", "adaptive_optimizers"),
    "Muon orthogonalises the momentum of each hidden weight matrix (Newton-Schulz), so "
    "all its directions learn at once; AdamW keeps the embeddings, head and vectors",
    _optimizable,
)
def _muon(files: Files, rng: random.Random) -> Change:
    lr = rng.choice((0.01, 0.02, 0.03))
    src = set_constants(
        files[TRAIN],
        {"muon_lr": fmt(lr), "muon_momentum": "0.95"},
        {
            "muon_lr": "Muon's step for the blocks' matrices (AdamW's learning_rate for the rest)",
            "muon_momentum": "Nesterov momentum of the Muon groups",
        },
    )
    src = insert_top(src, MUON, ("get_batch", "estimate_loss", "train"))
    src = edit(src, "train", around(r"^optimizer = ", MUON_GROUPS, "instead"))
    for name in ("decay", "no_decay"):  # the AdamW groups' lists, now unused
        if len(re.findall(rf"(?<![\w.]){name}\b", segment(src, "train"))) == 1:
            src = edit(src, "train", around(rf"^{name} = ", "", "instead"))
    files[TRAIN] = src
    return Change(files, f"Muon lr {fmt(lr)}, momentum 0.95, 5 Newton-Schulz steps")


def _loss_ready(f: Mapping[str, str]) -> bool:
    """Whether the fused loss takes the extra terms, or is the baseline's and can be extended."""
    head = segment(f[MODEL], "FusedHeadLoss.forward")
    args = [a.arg for a in parsed(head).body[0].args.args] if head else []  # type: ignore[attr-defined]
    extended = args[5:] == ["smoothing", "z_weight"] and "label_smoothing" in segment(
        f[MODEL], "GPTConfig"
    )
    return (
        (extended or args == ["ctx", "x", "weight", "targets", "compute_dtype"])
        # one call: a second (multi-token prediction's) would take the terms half-way
        and segment(f[MODEL], "GPT.forward").count("FusedHeadLoss.apply(") == 1
        and re.search(r"model_args = dict\(", segment(f[TRAIN], "train")) is not None
    )


def _extend_loss(model: str) -> str:
    """Give the fused loss label-smoothing and z-loss terms, off unless GPTConfig turns them on."""
    if "z_weight" in segment(model, "FusedHeadLoss"):
        return model
    src = replace_top(model, "FusedHeadLoss", FUSED_LOSS)

    def more_args(node: cst.BaseExpression) -> cst.BaseExpression | None:
        if (
            isinstance(node, cst.Call)
            and code_of(node.func) == "FusedHeadLoss.apply"
            and len(node.args) == 4
        ):
            args = ", ".join(arg_code(node, i) for i in range(4))
            return cst.parse_expression(f"FusedHeadLoss.apply({args}, *terms)")
        return None

    src = edit(src, "GPT.forward", around(r"FusedHeadLoss\.apply\(", LOSS_TERMS))
    return add_fields(edit(src, "GPT.forward", exprs(more_args)), "GPTConfig", LOSS_FIELDS)


def _loss_term(
    name: str, options: tuple[float, ...], what: str
) -> Callable[[Files, random.Random], Change]:
    def change(files: Files, rng: random.Random) -> Change:
        old = constant(files[TRAIN], name)
        new = 0.0 if isinstance(old, float) and old > 0 else rng.choice(options)
        files[MODEL] = _extend_loss(files[MODEL])
        src = set_constants(files[TRAIN], {name: fmt(new)}, {name: f"{what} (training only)"})
        if not re.search(rf"\b{name}={name}\b", segment(src, "train")):
            src = add_model_arg(src, name)
        files[TRAIN] = src
        return Change(files, f"{what} {fmt(new)}" if new else f"{what} off")

    return change


_technique(
    "label_smoothing",
    ("label_smoothing", "regularization"),
    "label smoothing keeps the model from over-confident logits on a small corpus; the "
    "score stays plain cross-entropy, so it is a bet on generalisation",
    _loss_ready,
)(_loss_term("label_smoothing", (0.02, 0.05, 0.1), "label smoothing"))

_technique(
    "z_loss",
    ("regularization", "objectives", "mixed_precision"),
    "z-loss (PaLM) penalises log Z^2, keeping logits centred and the low-precision head "
    "well conditioned",
    _loss_ready,
)(_loss_term("z_loss", (1e-4, 1e-3), "z-loss weight"))

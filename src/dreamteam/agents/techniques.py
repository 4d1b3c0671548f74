"""The offline agent's catalogue: well-known improvements for small transformers, as code edits.

Each ``Technique`` rewrites a candidate's current ``train.py`` and ``model.py`` (not the
baseline text), so techniques stack across generations: ``applies`` looks for the structure a
technique needs and for signs it is already there, ``apply`` returns the new files. Edits go
through libcst and locate code by structure (a class, a method, a statement that calls X), so
earlier techniques, or an LLM's rewrite, only make a technique inapplicable, never corrupt it.

``for_any_script`` adds the techniques that find their code by what it does in any PyTorch
script (``techniques_script.py``, ``techniques_loop.py``, ``techniques_layers.py``): they
need the task's protected constants and allowed imports, so they are built per task.

The catalogue is assembled here from ``techniques_training.py`` and ``techniques_model.py``
(and the speedrun's playbook, ``techniques_speedrun_train.py`` and ``..._model.py``),
which define the techniques (``techniques_base.py``: the ``Technique`` record), out of the
helpers in ``source_edit.py`` and the code templates in ``snippets.py``.
"""

from __future__ import annotations

from collections.abc import Iterable

from dreamteam.agents import (
    techniques_layers,
    techniques_loop,
    techniques_model,
    techniques_script,
    techniques_speedrun_model,
    techniques_speedrun_train,
    techniques_training,
)
from dreamteam.agents.techniques_base import MODEL, TRAIN, Change, Files, Technique

__all__ = [
    "CATALOGUE",
    "MODEL",
    "TRAIN",
    "Change",
    "Files",
    "Technique",
    "for_any_script",
    "technique",
]

_ORDER = (
    # training: lr schedule, optimizer hyperparameters, clipping
    "cosine_schedule",
    "tune_lr",
    "weight_decay",
    "dropout",
    "adam_betas",
    "grad_clip",
    # model: norms, activations, attention, head, initialisation, residual scaling
    "rmsnorm",
    "relu_squared",
    "rope",
    "swiglu",
    "qk_norm",
    "untie_head",
    "zero_init_proj",
    "fan_in_init",
    "layer_scale",
    # training: the Muon optimizer and the loss's regularisation terms
    "muon",
    "label_smoothing",
    "z_loss",
    # the speedrun's playbook: schedule floor, Muon momentum, per-role lrs, cautious decay ...
    "lr_floor",
    "muon_momentum_warmup",
    "split_lr",
    "cautious_wd",
    # ... and the model's: soft-capped logits, U-net skips, value embeddings, multi-token loss
    "logit_softcap",
    "unet_skips",
    "value_embeddings",
    "mtp_loss",
)

_DEFINED = (
    *techniques_training.TECHNIQUES,
    *techniques_model.TECHNIQUES,
    *techniques_speedrun_train.TECHNIQUES,
    *techniques_speedrun_model.TECHNIQUES,
)
if sorted(t.name for t in _DEFINED) != sorted(_ORDER):
    raise RuntimeError("techniques._ORDER must name every defined technique exactly once")

CATALOGUE: tuple[Technique, ...] = tuple(sorted(_DEFINED, key=lambda t: _ORDER.index(t.name)))
"""Every technique, in a fixed order (the offline agent's draws depend on it)."""


def technique(name: str) -> Technique:
    """The catalogue entry called ``name``."""
    for t in CATALOGUE:
        if t.name == name:
            return t
    raise KeyError(name)


def for_any_script(
    protected: Iterable[str] = (), imports: Iterable[str] | None = None
) -> tuple[Technique, ...]:
    """The techniques for any training script, for a task with these protected constants and
    allowed imports (None: any import)."""
    frozen = frozenset(protected)
    allowed = None if imports is None else frozenset(imports)
    return (
        *techniques_script.techniques(frozen),
        *techniques_loop.techniques(allowed),
        *techniques_layers.techniques(),
    )

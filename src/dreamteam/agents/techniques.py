"""The offline agent's catalogue: well-known improvements for small transformers, as code edits.

Each ``Technique`` rewrites a candidate's current ``train.py`` and ``model.py`` (not the
baseline text), so techniques stack across generations: ``applies`` looks for the structure a
technique needs and for signs it is already there, ``apply`` returns the new files. Edits go
through libcst and locate code by structure (a class, a method, a statement that calls X), so
earlier techniques, or an LLM's rewrite, only make a technique inapplicable, never corrupt it.

The catalogue is assembled here from ``techniques_training.py`` and ``techniques_model.py``,
which define the techniques (``techniques_base.py``: the ``Technique`` record), out of the
helpers in ``source_edit.py`` and the code templates in ``snippets.py``.
"""

from __future__ import annotations

from dreamteam.agents import techniques_model, techniques_training
from dreamteam.agents.techniques_base import MODEL, TRAIN, Change, Files, Technique

__all__ = ["CATALOGUE", "MODEL", "TRAIN", "Change", "Files", "Technique", "technique"]

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
)

_DEFINED = (*techniques_training.TECHNIQUES, *techniques_model.TECHNIQUES)
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

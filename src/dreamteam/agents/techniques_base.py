"""What a catalogue technique is: the ``Technique`` record, the ``Change`` it makes, and the
decorator the definition modules (``techniques_training.py``, ``techniques_model.py``) define
their techniques with; ``techniques.py`` puts them in the catalogue.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dreamteam import pyparse

TRAIN, MODEL = "train.py", "model.py"
Files = dict[str, str]


@dataclass(frozen=True)
class Change:
    """The files after one technique, and the hyperparameters it drew (for the answer's prose)."""

    files: Files
    detail: str


Check = Callable[[Mapping[str, str]], bool]
ChangeFn = Callable[[Files, random.Random], Change]


@dataclass(frozen=True)
class Technique:
    """A named improvement: which persona keys it serves, why it helps, and the edit itself."""

    name: str
    keys: tuple[str, ...]  # persona technique keys (the vocabulary) this technique serves
    why: str  # one line for the answer's prose
    check: Check
    change: ChangeFn
    structural: bool = False  # changes the code's shape, not only its numbers: re-tune lr after

    def applies(self, files: Mapping[str, str]) -> bool:
        """Whether the files have the structure this technique edits and do not have it yet."""
        try:
            return bool(self.check(files))
        except Exception:  # code we cannot read is code we do not edit
            return False

    def transform(self, files: Mapping[str, str], rng: random.Random) -> Change:
        """The edited files and what was drawn; raises when the edit cannot be made."""
        out = self.change(dict(files), rng)
        for src in out.files.values():
            pyparse.parse(src)
        return out

    def apply(self, files: Mapping[str, str], rng: random.Random) -> dict[str, str]:
        """The edited files (see ``transform``)."""
        return self.transform(files, rng).files


def registrar(
    registry: list[Technique], structural: bool = False
) -> Callable[[str, tuple[str, ...], str, Check], Callable[[ChangeFn], ChangeFn]]:
    """A definition module's decorator: ``@technique(name, keys, why, check)`` on a change
    function makes it a ``Technique`` and appends that to ``registry``, in definition order.
    ``structural``: the module's techniques change the code's shape (see ``Technique``)."""

    def technique(
        name: str, keys: tuple[str, ...], why: str, check: Check
    ) -> Callable[[ChangeFn], ChangeFn]:
        def register(fn: ChangeFn) -> ChangeFn:
            registry.append(Technique(name, keys, why, check, fn, structural))
            return fn

        return register

    return technique

"""Layer-stack techniques for any PyTorch model: normalisation and activation swaps.

A stack is the argument list of ``nn.Sequential(...)`` or a list or tuple literal of layers
(``layers += [nn.Linear(a, b), nn.ReLU()]``); a hidden layer is a ``Linear`` followed by an
activation in it. Found by structure in every editable file, whatever the names:

- ``layer_norm``: a ``LayerNorm`` between each hidden ``Linear`` and its activation;
- ``swap_activation``: ReLU, GELU and SiLU (modules or ``F.`` functions) trade places.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import libcst as cst

from dreamteam.agents.script_edit import (
    argument,
    calls,
    code_of,
    module,
    nn_prefix,
    rewrite_calls,
)
from dreamteam.agents.source_edit import Skip
from dreamteam.agents.techniques_base import Change, Files, Technique

ACTIVATIONS = ("ReLU", "GELU", "SiLU", "Tanh", "LeakyReLU", "ELU", "Mish")
_SWAPS = ("ReLU", "GELU", "SiLU")
_FUNCTIONAL = {"relu": "ReLU", "gelu": "GELU", "silu": "SiLU"}
_NORMS = ("LayerNorm", "BatchNorm1d", "RMSNorm", "GroupNorm")

Item = cst.Arg | cst.BaseElement


def _class(node: cst.BaseExpression) -> str:
    """The last name of a call's callee (``nn.Linear(...)`` -> ``Linear``), else ''."""
    return code_of(node.func).rpartition(".")[2] if isinstance(node, cst.Call) else ""


def _hidden(items: Sequence[Item]) -> list[int]:
    """Indices of the ``Linear`` items followed by an activation, in an unnormalised stack."""
    names = [_class(i.value) for i in items]
    if any(n in _NORMS for n in names):
        return []
    return [
        i
        for i in range(len(names) - 1)
        if names[i] == "Linear" and names[i + 1] in ACTIVATIONS and not _keyword_or_star(items[i])
    ]


def _keyword_or_star(item: Item) -> bool:
    return bool(getattr(item, "keyword", None)) or bool(getattr(item, "star", ""))


class _Stacks(cst.CSTTransformer):
    """Insert a LayerNorm after each hidden Linear of every stack (or just count them)."""

    def __init__(self, src: str, write: bool):
        super().__init__()
        self.src, self.write, self.hits = src, write, 0

    def _items(self, items: Sequence[Item]) -> list[Item]:
        out: list[Item] = []
        hidden = set(_hidden(items))
        self.hits += len(hidden)
        for i, item in enumerate(items):
            out.append(item)
            if i in hidden and self.write:
                linear = item.value
                assert isinstance(linear, cst.Call)
                width = argument(linear, "out_features", 1)
                if width is None:
                    raise Skip("a Linear without its width")
                prefix = nn_prefix(self.src, code_of(linear.func))
                norm = cst.parse_expression(f"{prefix}LayerNorm({code_of(width.value)})")
                out.append(item.with_changes(value=norm))
        return out

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        if _class(updated) != "Sequential":
            return updated
        return updated.with_changes(args=self._items(updated.args))

    def leave_List(self, original: cst.List, updated: cst.List) -> cst.List:
        return updated.with_changes(elements=self._items(updated.elements))

    def leave_Tuple(self, original: cst.Tuple, updated: cst.Tuple) -> cst.Tuple:
        return updated.with_changes(elements=self._items(updated.elements))


def _stacks(src: str, write: bool) -> tuple[str, int]:
    tool = _Stacks(src, write)
    out = module(src).visit(tool)
    return out.code, tool.hits


def _normable(files: Mapping[str, str]) -> list[str]:
    return [f for f, src in files.items() if f.endswith(".py") and _stacks(src, False)[1]]


def layer_norm(files: Files, rng: random.Random) -> Change:
    """A LayerNorm after each hidden Linear of the stacks, before its activation."""
    found = _normable(files)
    if not found:
        raise Skip("no Linear stack to normalise")
    count = 0
    for file in found:
        files[file], hits = _stacks(files[file], True)
        count += hits
    return Change(files, f"LayerNorm before {count} hidden activation(s)")


def _activations(src: str) -> Counter[str]:
    """How often each swappable activation is used (functional ones under the module's name)."""
    found: Counter[str] = Counter()
    for call in calls(src):
        head, _, last = code_of(call.func).rpartition(".")
        if last in ACTIVATIONS:
            found[last] += 1
        elif last in _FUNCTIONAL and head.rpartition(".")[2] in ("F", "functional"):
            found[_FUNCTIONAL[last]] += 1
    return found


def swap_activation(files: Files, rng: random.Random) -> Change:
    """Every use of the most common activation becomes another of ReLU, GELU and SiLU."""
    used: Counter[str] = Counter()
    for file, src in files.items():
        if file.endswith(".py"):
            used += _activations(src)
    if not used:
        raise Skip("no activation to swap")
    old = used.most_common(1)[0][0]
    new = rng.choice([a for a in _SWAPS if a != old])
    functional = {v: k for k, v in _FUNCTIONAL.items()}

    def swap(src: str) -> Callable[[cst.Call], cst.BaseExpression | None]:
        def fn(call: cst.Call) -> cst.BaseExpression | None:
            head, _, last = code_of(call.func).rpartition(".")
            if last == old:  # a module: its arguments (inplace, slope) do not carry over
                return cst.parse_expression(f"{nn_prefix(src, code_of(call.func))}{new}()")
            if last == functional.get(old) and head.rpartition(".")[2] in ("F", "functional"):
                if not call.args or call.args[0].keyword or call.args[0].star:
                    return None
                value = code_of(call.args[0].value)
                return cst.parse_expression(f"{head}.{functional[new]}({value})")
            return None

        return fn

    for file, src in files.items():
        if file.endswith(".py") and _activations(src)[old]:
            files[file] = rewrite_calls(src, swap(src))
    return Change(files, f"{old} -> {new}")


def techniques() -> tuple[Technique, ...]:
    """This module's techniques."""
    return (
        Technique(
            "layer_norm",
            ("norms_activations",),
            "normalising each hidden layer's pre-activations keeps them in the activation's "
            "useful range, so deeper stacks train at higher rates",
            lambda f: bool(_normable(f)),
            layer_norm,
            structural=True,
        ),
        Technique(
            "swap_activation",
            ("norms_activations",),
            "smooth activations (GELU, SiLU) pass gradient where ReLU units die; which one "
            "wins depends on the data",
            lambda f: any(_activations(s) for n, s in f.items() if n.endswith(".py")),
            swap_activation,
            structural=True,
        ),
    )

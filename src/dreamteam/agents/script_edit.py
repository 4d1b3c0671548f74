"""Reading and editing any PyTorch training script by what its code does, not by its names.

The catalogue's first techniques were written against the built-in baseline's names
(``learning_rate``, ``GPT.forward``). A user's script names nothing the same way, so this
module finds things by structure instead: an optimizer is a call of a ``torch.optim`` class
(``torch.optim.SGD(...)``, ``optim.Adam(...)``, ``AdamW(...)`` imported from it), its learning
rate is its ``lr=`` (or second positional) argument, a training loop is a loop around
``<optimizer>.step()``, a layer stack is the argument list of ``nn.Sequential`` or a list
literal of layers. ``techniques_script.py`` and ``techniques_layers.py`` build their edits on
these; anything not found raises ``Skip``.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import libcst as cst

from dreamteam.agents.source_edit import (
    Skip,
    binds,
    code_of,
    constant,
    fmt,
    parsed,
    set_constants,
)

OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "NAdam", "RAdam", "Adamax")


def literal(node: cst.BaseExpression | None) -> object | None:
    """The value of a literal expression (``0.05``, ``-1``, ``(0.9, 0.99)``), else None."""
    if node is None:
        return None
    try:
        return ast.literal_eval(code_of(node))
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return None


def real(value: object) -> float | None:
    """A literal's value as a float when it is a number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def short(value: float) -> str:
    """A float rounded to three significant figures, as code that stays a float."""
    return fmt(float(f"{value:.3g}"))


def from_optim(src: str) -> set[str]:
    """The optimizer classes a ``from torch.optim import ...`` binds by their own name."""
    names: set[str] = set()
    for stmt in parsed(src).body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "torch.optim":
            names |= {a.name for a in stmt.names if a.asname is None}
    return names


def optimizer_class(call: cst.Call | ast.Call, src: str) -> str | None:
    """The torch optimizer class a call (libcst or ast) constructs (``SGD``), else None."""
    func = code_of(call.func) if isinstance(call, cst.Call) else ast.unparse(call.func)
    head, _, last = func.rpartition(".")
    if last not in OPTIMIZERS:
        return None
    if head.split(".")[-1] == "optim" or (not head and last in from_optim(src)):
        return last
    return None


def keyword(call: cst.Call, name: str) -> cst.Arg | None:
    """The call's keyword argument ``name``, else None."""
    return next((a for a in call.args if a.keyword is not None and a.keyword.value == name), None)


def argument(call: cst.Call, name: str, position: int) -> cst.Arg | None:
    """The argument ``name`` given by keyword or at ``position`` among the positional ones."""
    found = keyword(call, name)
    positional = [a for a in call.args if a.keyword is None and not a.star]
    if found is None and position < len(positional):
        found = positional[position]
    return found


def with_value(call: cst.Call, arg: cst.Arg, code: str) -> cst.Call:
    """The call with ``arg``'s value replaced by the expression ``code``."""
    args = [a.with_changes(value=cst.parse_expression(code)) if a is arg else a for a in call.args]
    return call.with_changes(args=args)


@functools.lru_cache(maxsize=32)
def module(src: str) -> cst.Module:
    """The libcst tree of ``src`` (cached: ``applies`` and the edit read the same files; libcst
    trees are immutable, so sharing one is safe)."""
    return cst.parse_module(src)


class _Calls(cst.CSTTransformer):
    """Rewrite calls with ``fn`` (which returns None to leave one alone), counting the hits."""

    def __init__(self, fn: Callable[[cst.Call], cst.BaseExpression | None]):
        super().__init__()
        self.fn, self.hits = fn, 0

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        new = self.fn(updated)
        if new is None:
            return updated
        self.hits += 1
        return new


def rewrite_calls(src: str, fn: Callable[[cst.Call], cst.BaseExpression | None]) -> str:
    """The module with every call ``fn`` rewrites replaced; Skip when it rewrites none."""
    tool = _Calls(fn)
    out = module(src).visit(tool)
    if not tool.hits:
        raise Skip("no call to rewrite")
    return out.code


def calls(src: str) -> Iterator[cst.Call]:
    """Every call in the module, in the order a transformer leaves them (inner first)."""
    found: list[cst.Call] = []

    def note(call: cst.Call) -> None:
        found.append(call)
        return None

    module(src).visit(_Calls(note))
    return iter(found)


def optimizer_calls(files: Mapping[str, str]) -> list[tuple[str, cst.Call, str]]:
    """(file, call, class) of every optimizer constructed in the Python files."""
    return [
        (file, call, kind)
        for file, src in files.items()
        if file.endswith(".py")
        for call in calls(src)
        if (kind := optimizer_class(call, src)) is not None
    ]


def _module_number(src: str, name: str) -> float | None:
    return real(constant(src, name))


@dataclass(frozen=True)
class Rate:
    """Where an optimizer's learning rate is set: a literal in the call, or a module constant."""

    file: str
    value: float
    constant: str = ""  # the module constant's name; empty for a literal in the call


def learning_rate(
    files: Mapping[str, str], file: str, call: cst.Call, protected: frozenset[str]
) -> Rate | None:
    """The optimizer call's learning rate, when it is a literal or an unprotected constant."""
    arg = argument(call, "lr", 1)
    if arg is None:
        return None
    value = real(literal(arg.value))
    if value is not None:
        return Rate(file, value)
    if isinstance(arg.value, cst.Name) and arg.value.value not in protected:
        number = _module_number(files[file], arg.value.value)
        if number is not None:
            return Rate(file, number, arg.value.value)
    return None


def set_rate(files: dict[str, str], rate: Rate, value: float) -> None:
    """Set the learning rate found by ``learning_rate`` to ``value`` (in place)."""
    code = short(value)
    if rate.constant:
        files[rate.file] = set_constants(files[rate.file], {rate.constant: code})
        return

    def fn(call: cst.Call) -> cst.BaseExpression | None:
        if optimizer_class(call, files[rate.file]) is None:
            return None
        arg = argument(call, "lr", 1)
        if arg is None or real(literal(arg.value)) != rate.value:
            return None
        return with_value(call, arg, code)

    files[rate.file] = rewrite_calls(files[rate.file], fn)


def nn_prefix(src: str, func: str) -> str:
    """The prefix a new ``torch.nn`` class takes where ``func`` (e.g. ``nn.Linear``) is used."""
    head, _, _ = func.rpartition(".")
    if head:
        return head + "."
    if binds(src, "nn"):
        return "nn."
    if binds(src, "torch"):
        return "torch.nn."
    raise Skip("no binding for torch.nn")


def step_pattern(name: str) -> str:
    """The regex of the statement ``name.step()``."""
    return rf"^\s*{re.escape(name)}\.step\(\)\s*(#.*)?$"


@dataclass(frozen=True)
class Loop:
    """A training loop: the function it is in, the optimizer it steps, the loops around the
    step (outermost first) and which statement of the function's body holds them."""

    function: str  # `train` or `Trainer.fit`
    optimizer: str  # the variable the optimizer is bound to
    params: tuple[str, ...]  # the function's parameter names
    top: int
    headers: tuple[ast.For | ast.While, ...]


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef]]:
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef):
            yield stmt.name, stmt
        elif isinstance(stmt, ast.ClassDef):
            for inner in stmt.body:
                if isinstance(inner, ast.FunctionDef):
                    yield f"{stmt.name}.{inner.name}", inner


def _steps(stmt: ast.stmt, name: str) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Call)
        and not stmt.value.args
        and not stmt.value.keywords
        and ast.unparse(stmt.value.func) == f"{name}.step"
    )


def _path(stmt: ast.stmt, name: str) -> list[ast.stmt] | None:
    """The compound statements from ``stmt`` down to a ``name.step()`` (None if none)."""
    if _steps(stmt, name):
        return []
    for field in ("body", "orelse", "finalbody"):
        for inner in getattr(stmt, field, ()):
            found = _path(inner, name)
            if found is not None:
                return [stmt, *found]
    return None


def training_loops(src: str) -> list[Loop]:
    """Every loop that steps an optimizer the same function constructs."""
    loops = []
    for qualname, fn in _functions(parsed(src)):
        names = {
            node.targets[0].id
            for node in ast.walk(fn)
            if isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Call)
            and optimizer_class(node.value, src) is not None
        }
        params = tuple(a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs))
        for name in sorted(names):
            for i, stmt in enumerate(fn.body):
                path = _path(stmt, name)
                headers = tuple(s for s in path or () if isinstance(s, ast.For | ast.While))
                if headers:
                    loops.append(Loop(qualname, name, params, i, headers))
    return loops

"""Research records: what a change did, read from the code (an AST diff), not the agent's prose.

    parent files + candidate files ─► extract_record ─► ChangeRecord
        moves       hyperparameters that moved: module- and class-level constants and the
                    constant keyword arguments of calls (name, before, after)
        edits       definitions added, removed or changed, each with the hash of its shape
                    (its code without docstrings, print calls, local names or hyperparameter
                    values)
        techniques  keys of the shared technique vocabulary whose identifiers the change touches

Two candidates made from the same parent code with the same moves and the same edits are one
experiment (`dedupe_key`); novelty.py uses that to skip repeats. Pure: strings in, values out.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import Any

from dreamteam import pyparse
from dreamteam.personas.vocabulary import TECHNIQUES
from dreamteam.records import MODULE, ChangeRecord, Edit, Move

_HP = "<hp>"  # what a hyperparameter's value becomes in a shape
_NOT_CONSTANT = object()
_MAX_POWER = 64  # folding 2**-10 is fine; 10**10**10 is not

# Vocabulary key -> the identifiers (lower case) that mark it. A change touches an identifier
# when it introduces or removes it, calls it more or less often, or moves a hyperparameter of
# that name.
_KEY_PATTERNS: dict[str, str] = {
    "lr_schedules": r"sched|warmup|cosine|lr_?mult|(^|_)lr($|_)|learning_rate|min_lr|"
    r"decay_(iters|steps)|get_lr|lr_lambda|onecycle|anneal",
    "adaptive_optimizers": r"^adam|adamw|^sgd$|lion|adafactor|rmsprop|adagrad|(^|_)betas?\d?$|"
    r"momentum|nesterov",
    "muon": r"muon|newton_?schulz|zeropower|orthogonali[sz]",
    "regularization": r"weight_decay|dropout|(^|_)l2($|_)|z_?loss",
    "gradient_clipping": r"clip_grad|grad_clip|clip_norm",
    "norms_activations": r"rms_?norm|layer_?norm|^ln_|gelu|relu|silu|swish|"
    r"^tanh$|mish|softplus|activation",
    "gated_mlp": r"swiglu|geglu|(^|_)glu($|_)|(^|_)gated?($|_)|w_?gate",
    "rope": r"rope|rotary|freqs|(^|_)theta($|_)|apply_rot",
    "qk_norm": r"qk_?norm|^[qk]_norm|(^|_)[qk]_gain",
    "initialization": r"init_weights|(^|_)init($|_)|xavier|kaiming|normal_$|trunc_normal|"
    r"orthogonal_$|zeros_$|(^|_)std($|_)",
    "weight_tying": r"(^|_)(un)?ti(e|ed|es|ing)($|_)|lm_head",
    "residual_scaling": r"(layer|res|residual|skip|attn|mlp|block)_?scale",
    "label_smoothing": r"label_?smooth",
    "mixed_precision": r"bfloat16|float16|autocast|grad_?scaler|(^|_)amp($|_)|"
    r"bf16|fp16|head_dtype",
    "flash_attention": r"scaled_dot_product|flash",
    "moe": r"expert|router|(^|_)moe($|_)",
    "ssm": r"(^|_)ssm($|_)|mamba|selective_scan|state_space",
    "mla": r"(^|_)mla($|_)|kv_?lora|latent",
    "quantization": r"quantiz|int8|qint|fake_quant",
    "tokenization": r"tokeniz|vocab_size|(^|_)bpe($|_)",
    "sampling": r"temperature|top_?[kp]($|_)|nucleus",
    "curriculum": r"curriculum|get_batch|shuffle|data_order",
}
_KEYS = {key: re.compile(pattern) for key, pattern in _KEY_PATTERNS.items()}
assert set(_KEYS) <= set(TECHNIQUES), "the table names keys outside the vocabulary"
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


# -- constants ------------------------------------------------------------------------------------
def _fold(node: ast.AST) -> Any:
    """The value of a constant expression (`3e-4`, `-1`, `2**-10`, `(0.9, 0.95)`), or
    _NOT_CONSTANT."""
    if isinstance(node, ast.Constant) and not isinstance(node.value, bytes | complex):
        return node.value
    if isinstance(node, ast.Tuple | ast.List):
        items = [_fold(e) for e in node.elts]
        return _NOT_CONSTANT if any(i is _NOT_CONSTANT for i in items) else tuple(items)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _fold(node.operand)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        return _fold_binop(node)
    return _NOT_CONSTANT


def _fold_binop(node: ast.BinOp) -> Any:
    left, right = _fold(node.left), _fold(node.right)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
    if not numbers:
        return _NOT_CONSTANT
    ops = {
        ast.Add: lambda a, b: a + b,
        ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b,
        ast.FloorDiv: lambda a, b: a // b,
        ast.Mod: lambda a, b: a % b,
        ast.Pow: lambda a, b: a**b,
    }
    op = ops.get(type(node.op))
    if op is None or (isinstance(node.op, ast.Pow) and abs(right) > _MAX_POWER):
        return _NOT_CONSTANT
    try:
        value = op(left, right)
    except (ZeroDivisionError, OverflowError, ValueError):
        return _NOT_CONSTANT
    if isinstance(value, float) and not math.isfinite(value):
        return _NOT_CONSTANT
    return value


def _canon(value: Any) -> str:
    """One spelling per value: floats through repr (1e-3 == 0.001), ints stay ints."""
    return repr(value)


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else "call"


def _bound(stmt: ast.stmt) -> Iterator[tuple[str, ast.expr]]:
    """(name, value node) for each name a top-level assignment binds."""
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
        yield stmt.target.id, stmt.value
    elif isinstance(stmt, ast.Assign):
        for target in stmt.targets:
            if isinstance(target, ast.Name):
                yield target.id, stmt.value
            elif (
                isinstance(target, ast.Tuple)
                and isinstance(stmt.value, ast.Tuple)
                and len(target.elts) == len(stmt.value.elts)
            ):
                for t, v in zip(target.elts, stmt.value.elts, strict=True):
                    if isinstance(t, ast.Name):
                        yield t.id, v


def _assigned(stmt: ast.stmt) -> Iterator[tuple[str, Any]]:
    """(name, value) for each constant a top-level assignment binds."""
    for name, node in _bound(stmt):
        yield name, _fold(node)


def is_hyper(stmt: ast.stmt) -> bool:
    """A top-level statement that only binds constants: described by moves, not by shape."""
    bound = list(_assigned(stmt))
    return bool(bound) and all(v is not _NOT_CONSTANT for _, v in bound)


def hyperparameter_nodes(tree: ast.Module) -> dict[str, ast.expr]:
    """name -> value node of every module/class constant and constant keyword argument, named
    as Move names them (`learning_rate`, `GPTConfig.dropout`, `train:AdamW(lr)`)."""
    found: dict[str, ast.expr] = {}
    for stmt in tree.body:
        if is_hyper(stmt):
            found.update(_bound(stmt))
        elif isinstance(stmt, ast.ClassDef):
            for inner in stmt.body:
                if is_hyper(inner):
                    found.update({f"{stmt.name}.{n}": v for n, v in _bound(inner)})
    for scope, node in _scoped(tree):
        seen: Counter[str] = Counter()
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            for kw in call.keywords:
                if not kw.arg or _fold(kw.value) is _NOT_CONSTANT:
                    continue
                name = f"{scope}:{_callee(call)}({kw.arg})"
                seen[name] += 1
                found[name if seen[name] == 1 else f"{name}#{seen[name]}"] = kw.value
    return found


def _hyperparameters(tree: ast.Module) -> dict[str, str]:
    """name -> canonical value of every hyperparameter."""
    return {name: _canon(_fold(node)) for name, node in hyperparameter_nodes(tree).items()}


# -- shapes ---------------------------------------------------------------------------------------
def _scoped(tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
    """(qualified name, node) of each top-level function, each method, each class body, and
    MODULE for the remaining top-level statements (hyperparameter assignments excluded)."""
    rest: list[ast.stmt] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            yield stmt.name, stmt
        elif isinstance(stmt, ast.ClassDef):
            fields: list[ast.stmt] = []
            for inner in stmt.body:
                if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield f"{stmt.name}.{inner.name}", inner
                elif not is_hyper(inner):  # constant fields are moves
                    fields.append(inner)
            head = copy.copy(stmt)
            head.body = fields
            yield stmt.name, head
        elif not is_hyper(stmt):
            rest.append(stmt)
    if rest:
        yield MODULE, ast.Module(body=rest, type_ignores=[])


class _Normalise(ast.NodeTransformer):
    """Drops what does not change an experiment: docstrings, print calls, local names
    (renamed in order of first binding) and hyperparameter values (they are moves)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _body(self, body: list[ast.stmt]) -> list[ast.stmt]:
        first = body[0] if body else None
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            body = body[1:]
        kept = [
            s
            for s in body
            if not (
                isinstance(s, ast.Expr)
                and isinstance(s.value, ast.Call)
                and _callee(s.value) == "print"
            )
        ]
        return kept or [ast.Pass()]

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.body = self._body(node.body)
        for n in ast.walk(ast.Module(body=node.body, type_ignores=[])):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                self.names.setdefault(n.id, f"v{len(self.names)}")
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Module(self, node: ast.Module) -> ast.AST:
        node.body = self._body(node.body)
        self.generic_visit(node)
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node.body = self._body(node.body)
        self.generic_visit(node)
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.Name(id=self.names.get(node.id, node.id), ctx=node.ctx)

    def visit_keyword(self, node: ast.keyword) -> ast.AST:
        if node.arg and _fold(node.value) is not _NOT_CONSTANT:
            return ast.keyword(arg=node.arg, value=ast.Constant(value=_HP))
        self.generic_visit(node)
        return node


def _shape(node: ast.AST) -> str:
    """A short hash of a definition's normalised code."""
    clean = _Normalise().visit(copy.deepcopy(node))
    if isinstance(clean, ast.Module):  # top-level statements: their order does not matter
        text = "\n".join(sorted(pyparse.dump(s) for s in clean.body))
    else:
        text = pyparse.dump(clean)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _shapes(tree: ast.Module) -> dict[str, str]:
    return {name: _shape(node) for name, node in _scoped(tree)}


# -- techniques -----------------------------------------------------------------------------------
def _identifier(node: ast.AST) -> str | None:
    """The identifier a node names, if any (an identifier-like string counts)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name
    if isinstance(node, ast.arg):
        return node.arg
    if isinstance(node, ast.keyword):
        return node.arg
    if isinstance(node, ast.alias):
        return node.asname or node.name
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value if _WORD.match(node.value) else None
    return None


def _identifiers(tree: ast.Module) -> Counter[str]:
    """How often each identifier occurs in a file; callees count under `name()` as well."""
    counts = Counter(i for i in map(_identifier, ast.walk(tree)) if i)
    counts.update(f"{_callee(n)}()" for n in ast.walk(tree) if isinstance(n, ast.Call))
    return counts


def _touched(old: Counter[str], new: Counter[str]) -> set[str]:
    """Identifiers a change introduced or removed, and functions it calls more or less often.

    A name merely used once more (`vocab_size` passed to a new layer) is not a technique."""
    words = {i for i in (old.keys() ^ new.keys()) if not i.endswith("()")}
    calls = {i[:-2] for i in old.keys() | new.keys() if i.endswith("()") and old[i] != new[i]}
    return words | calls


def technique_keys(identifiers: set[str]) -> tuple[str, ...]:
    """The vocabulary keys whose patterns match any of these identifiers, sorted."""
    lowered = [i.lower() for i in identifiers if not (i.startswith("__") and i.endswith("__"))]
    return tuple(sorted(k for k, rx in _KEYS.items() if any(rx.search(i) for i in lowered)))


def _move_words(name: str) -> set[str]:
    return {w for w in re.split(r"[.:()#]", name) if w and not w.isdigit()}


# -- the record -----------------------------------------------------------------------------------
def _parse(source: str) -> ast.Module | None:
    try:
        return pyparse.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def extract_record(before: Mapping[str, str], after: Mapping[str, str]) -> ChangeRecord | None:
    """The record of the change from `before` to `after` (file name -> source); None when a
    file does not parse (such a candidate fails its checks anyway)."""
    moves: list[Move] = []
    edits: list[Edit] = []
    touched: set[str] = set()
    for name in sorted(set(before) | set(after)):
        old_tree, new_tree = _parse(before.get(name, "")), _parse(after.get(name, ""))
        if old_tree is None or new_tree is None:
            return None
        old_hp, new_hp = _hyperparameters(old_tree), _hyperparameters(new_tree)
        for hp in sorted(set(old_hp) | set(new_hp)):
            a, b = old_hp.get(hp, ""), new_hp.get(hp, "")
            if a != b:
                moves.append(Move(hp if name == main_file(before) else f"{name}:{hp}", a, b))
                touched |= _move_words(hp)
        old_shapes, new_shapes = _shapes(old_tree), _shapes(new_tree)
        for d in sorted(set(old_shapes) | set(new_shapes)):
            a, b = old_shapes.get(d, ""), new_shapes.get(d, "")
            if a != b:
                op = "+" if not a else "-" if not b else "~"
                edits.append(Edit(name, d, op, b))
        old_ids, new_ids = _identifiers(old_tree), _identifiers(new_tree)
        touched |= _touched(old_ids, new_ids)
    return ChangeRecord(tuple(moves), tuple(edits), technique_keys(touched))


def main_file(files: Mapping[str, str]) -> str:
    """The file whose hyperparameters go unprefixed: train.py when there is one."""
    return "train.py" if "train.py" in files else min(files, default="")


def dedupe_key(parent_hash: str, record: ChangeRecord) -> str:
    """Equal for two candidates that make the same change to the same parent code."""
    body = json.dumps(
        [parent_hash, [asdict(m) for m in record.moves], [asdict(e) for e in record.edits]],
        sort_keys=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()[:16]

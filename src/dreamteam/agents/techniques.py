"""The offline agent's catalogue: well-known improvements for small transformers, as code edits.

Each ``Technique`` rewrites a candidate's current ``train.py`` and ``model.py`` (not the
baseline text), so techniques stack across generations: ``applies`` looks for the structure a
technique needs and for signs it is already there, ``apply`` returns the new files. Edits go
through libcst and locate code by structure (a class, a method, a statement that calls X), so
earlier techniques, or an LLM's rewrite, only make a technique inapplicable, never corrupt it.
The code each technique inserts is kept as templates in this module.
"""

from __future__ import annotations

import ast
import functools
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import libcst as cst

TRAIN, MODEL = "train.py", "model.py"
Files = dict[str, str]


class Skip(Exception):
    """A technique cannot be applied to these files (structure missing or already there)."""


@dataclass(frozen=True)
class Change:
    """The files after one technique, and the hyperparameters it drew (for the answer's prose)."""

    files: Files
    detail: str


# --- reading source ------------------------------------------------------------------------


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


@functools.lru_cache(maxsize=64)
def _tree(src: str) -> ast.Module:
    """The parsed module (cached: every ``applies`` reads the same few files; never mutated)."""
    return ast.parse(src)


def constant(src: str, name: str) -> object | None:
    """The literal value of the first module-level ``name = <literal>``, else None."""
    for stmt in _tree(src).body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id == name
        ):
            try:
                return ast.literal_eval(stmt.value)
            except (ValueError, TypeError, SyntaxError, RecursionError):
                return None
    return None


def _number(src: str, name: str) -> float:
    value = constant(src, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Skip(f"{name} is not a numeric constant")
    return float(value)


@functools.lru_cache(maxsize=256)
def segment(src: str, qualname: str) -> str:
    """The source of a top-level class or function, or a method as ``Class.method`` ('' if absent)."""
    body: list[ast.stmt] = _tree(src).body
    node: ast.AST | None = None
    for part in qualname.split("."):
        node = next(
            (n for n in body if isinstance(n, ast.ClassDef | ast.FunctionDef) and n.name == part),
            None,
        )
        if node is None:
            return ""
        body = node.body  # type: ignore[attr-defined]
    return (ast.get_source_segment(src, node) or "") if node is not None else ""


def _bound(src: str, name: str) -> bool:
    """Whether a top-level import binds ``name`` (e.g. ``nn``, ``F``)."""
    return any(
        (a.asname or a.name.split(".")[0]) == name
        for stmt in _tree(src).body
        if isinstance(stmt, ast.Import | ast.ImportFrom)
        for a in stmt.names
    )


def _fmt(value: float) -> str:
    """A float as short code that stays a float: 0.0, 0.003, 1e-05 -> 1e-5."""
    text = f"{value:g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}e{int(exponent)}"
    return text if "." in text else f"{text}.0"


# --- editing source ------------------------------------------------------------------------


def _stmts(code: str) -> list[cst.BaseStatement]:
    module = cst.parse_module(code)
    body: list[cst.BaseStatement] = list(module.body)
    comments = [line for line in module.header if line.comment is not None]
    if body and comments:  # a leading comment parses into the module header: keep it
        body[0] = body[0].with_changes(leading_lines=[*comments, *_leading(body[0])])
    return body


def _leading(node: cst.BaseStatement) -> list[cst.EmptyLine]:
    return list(getattr(node, "leading_lines", ()))


def _split_leading(node: cst.BaseStatement) -> tuple[list[cst.EmptyLine], list[cst.EmptyLine]]:
    """A statement's leading lines as (section lines up to the last blank, attached comments)."""
    lines = _leading(node)
    blanks = [i for i, line in enumerate(lines) if line.comment is None]
    cut = blanks[-1] + 1 if blanks else 0
    return lines[:cut], lines[cut:]


def _insert_top(src: str, code: str, before: tuple[str, ...]) -> str:
    """Insert top-level ``code`` before the first def/class named in ``before`` (else the end).

    Section comments above the anchor move up with the new code; a comment attached to the
    anchor itself stays with it.
    """
    module = cst.parse_module(src)
    body = list(module.body)
    names = [getattr(getattr(s, "name", None), "value", None) for s in body]
    index = next((names.index(n) for n in before if n in names), len(body))
    new = _stmts(code)
    if index < len(body):
        section, attached = _split_leading(body[index])
        new[0] = new[0].with_changes(leading_lines=section)
        gap = [cst.EmptyLine()] * 2
        body[index] = body[index].with_changes(leading_lines=gap + attached)
    else:
        new[0] = new[0].with_changes(leading_lines=[cst.EmptyLine()] * 2)
    return module.with_changes(body=body[:index] + new + body[index:]).code


def _ensure_import(src: str, module_name: str) -> str:
    if re.search(rf"^import {module_name}\b", src, re.MULTILINE):
        return src
    module = cst.parse_module(src)
    body = list(module.body)
    index = next(
        (i for i, s in enumerate(body) if re.match(r"(import|from) ", _code(s).lstrip())), 0
    )
    new = cst.parse_statement(f"import {module_name}\n")
    if body:
        new = new.with_changes(leading_lines=body[index].leading_lines)
        body[index] = body[index].with_changes(leading_lines=[])
    return module.with_changes(body=[*body[:index], new, *body[index:]]).code


def set_constants(src: str, values: Mapping[str, str], comments: Mapping[str, str] = {}) -> str:
    """Set module-level ``name = value`` (value as code); add missing ones to the config block."""
    module = cst.parse_module(src)
    body = list(module.body)
    todo = dict(values)
    last_config = -1
    for i, stmt in enumerate(body):
        if isinstance(stmt, cst.FunctionDef | cst.ClassDef):
            break
        small = stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) else None
        if isinstance(small, cst.Assign) and isinstance(small.targets[0].target, cst.Name):
            name = small.targets[0].target.value
            if name in todo and len(small.targets) == 1:
                value = cst.parse_expression(todo.pop(name))
                body[i] = stmt.with_changes(body=[small.with_changes(value=value)])
            last_config = i
    for name, code in todo.items():
        comment = f"  # {comments[name]}" if name in comments else ""
        last_config += 1
        body.insert(last_config, cst.parse_statement(f"{name} = {code}{comment}\n"))
    return module.with_changes(body=body).code


class _Edit(cst.CSTTransformer):
    """Apply ``fn`` to the function or method ``qualname`` (e.g. ``GPT.forward``)."""

    def __init__(self, qualname: str, fn: Callable[[cst.FunctionDef], cst.FunctionDef]):
        super().__init__()
        self.qualname, self.fn, self.found = qualname, fn, False
        self.stack: list[str] = []

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.stack.append(node.name.value)

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
        self.stack.pop()
        return updated

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.stack.append(node.name.value)

    def leave_FunctionDef(
        self, original: cst.FunctionDef, updated: cst.FunctionDef
    ) -> cst.FunctionDef:
        name = ".".join(self.stack)
        self.stack.pop()
        if name == self.qualname:
            self.found = True
            return self.fn(updated)
        return updated


def edit(src: str, qualname: str, fn: Callable[[cst.FunctionDef], cst.FunctionDef]) -> str:
    """Rewrite one function or method with ``fn``; Skip when it does not exist."""
    editor = _Edit(qualname, fn)
    out = cst.parse_module(src).visit(editor)
    if not editor.found:
        raise Skip(f"no {qualname}")
    return out.code


class _Blocks(cst.CSTTransformer):
    """Rewrite the statement lists of every indented block with ``fn``."""

    def __init__(self, fn: Callable[[list[cst.BaseStatement]], list[cst.BaseStatement]]):
        super().__init__()
        self.fn = fn

    def leave_IndentedBlock(
        self, original: cst.IndentedBlock, updated: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        return updated.with_changes(body=self.fn(list(updated.body)))


def around(
    pattern: str, code: str, where: str = "before", count: int = 1
) -> Callable[[cst.FunctionDef], cst.FunctionDef]:
    """A function edit: put ``code`` before/after (or ``instead`` of) one-line statements
    matching the regex ``pattern``; Skip unless exactly ``count`` match."""

    def fn(func: cst.FunctionDef) -> cst.FunctionDef:
        hits = 0

        def block(body: list[cst.BaseStatement]) -> list[cst.BaseStatement]:
            nonlocal hits
            out: list[cst.BaseStatement] = []
            for stmt in body:
                if isinstance(stmt, cst.SimpleStatementLine) and re.search(pattern, _code(stmt)):
                    hits += 1
                    new = _stmts(code) if code else []
                    out += {"before": [*new, stmt], "after": [stmt, *new], "instead": new}[where]
                else:
                    out.append(stmt)
            return out

        result = func.visit(_Blocks(block))
        if hits != count:
            raise Skip(f"{hits} statements match {pattern!r}")
        assert isinstance(result, cst.FunctionDef)
        return result

    return fn


def append_to(
    code: str, after: str | None = None, instead: str | None = None
) -> Callable[[cst.FunctionDef], cst.FunctionDef]:
    """A function edit on the body's top-level statements: replace the first one matching the
    regex ``instead``, else insert after the last one matching ``after``, else at the end."""

    def fn(func: cst.FunctionDef) -> cst.FunctionDef:
        block = func.body
        if not isinstance(block, cst.IndentedBlock):
            raise Skip("one-line function")
        body, new = list(block.body), _stmts(code)
        codes = [_code(stmt) for stmt in body]
        swap = [i for i, c in enumerate(codes) if instead and re.search(instead, c)]
        last = [i + 1 for i, c in enumerate(codes) if after and re.search(after, c)]
        if swap:
            body[swap[0] : swap[0] + 1] = new
        else:
            at = last[-1] if last else len(body)
            body[at:at] = new
        return func.with_changes(body=block.with_changes(body=body))

    return fn


class _Exprs(cst.CSTTransformer):
    def __init__(self, fn: Callable[[cst.BaseExpression], cst.BaseExpression | None]):
        super().__init__()
        self.fn, self.hits = fn, 0

    def on_leave(self, original, updated):  # type: ignore[no-untyped-def, override]
        if isinstance(updated, cst.BaseExpression):
            new = self.fn(updated)
            if new is not None:
                self.hits += 1
                return new
        return updated


def exprs(
    fn: Callable[[cst.BaseExpression], cst.BaseExpression | None],
) -> Callable[[cst.FunctionDef], cst.FunctionDef]:
    """A function edit: replace every expression for which ``fn`` returns a new one; Skip if none."""

    def edit_fn(func: cst.FunctionDef) -> cst.FunctionDef:
        tool = _Exprs(fn)
        result = func.visit(tool)
        if not tool.hits:
            raise Skip("no expression matched")
        assert isinstance(result, cst.FunctionDef)
        return result

    return edit_fn


def replace_top(src: str, name: str, code: str) -> str:
    """Replace the top-level class or function ``name`` with ``code``, keeping its leading lines."""
    module = cst.parse_module(src)
    body = list(module.body)
    for i, stmt in enumerate(body):
        if getattr(getattr(stmt, "name", None), "value", None) == name:
            new = _stmts(code)
            new[0] = new[0].with_changes(leading_lines=stmt.leading_lines)
            return module.with_changes(body=body[:i] + new + body[i + 1 :]).code
    raise Skip(f"no {name}")


def add_fields(src: str, cls: str, lines: str) -> str:
    """Append annotated fields (code) at the end of a top-level class body, e.g. a dataclass."""
    module = cst.parse_module(src)
    body = list(module.body)
    for i, stmt in enumerate(body):
        if isinstance(stmt, cst.ClassDef) and stmt.name.value == cls:
            inner = stmt.body
            assert isinstance(inner, cst.IndentedBlock)
            body[i] = stmt.with_changes(body=inner.with_changes(body=[*inner.body, *_stmts(lines)]))
            return module.with_changes(body=body).code
    raise Skip(f"no class {cls}")


def add_model_arg(src: str, name: str) -> str:
    """Pass the constant ``name`` through ``model_args`` (so it reaches GPTConfig and the ckpt)."""

    def fn(node: cst.BaseExpression) -> cst.BaseExpression | None:
        if isinstance(node, cst.Call) and _code(node.func) == "dict":
            kws = {a.keyword.value for a in node.args if a.keyword is not None}
            if {"block_size", "n_embd"} <= kws and name not in kws:
                args = list(node.args)
                # the new argument takes the last one's comma (and line break); the last one
                # takes its neighbour's, so a one-per-line layout stays one per line
                comma = (
                    args[-2].comma
                    if len(args) > 1
                    else cst.Comma(cst.SimpleWhitespace(""), cst.SimpleWhitespace(" "))
                )
                new = cst.Arg(cst.Name(name), keyword=cst.Name(name), comma=args[-1].comma)
                new = new.with_changes(equal=args[-1].equal)
                return node.with_changes(args=[*args[:-1], args[-1].with_changes(comma=comma), new])
        return None

    return edit(src, "train", exprs(fn))


# --- code the techniques insert ------------------------------------------------------------

_LR_MULTIPLIER = '''
def lr_multiplier(it: int, iters: int) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio of the peak at the last step."""
    warmup = min(warmup_iters, max(iters // 10, 1))  # short runs warm up for a tenth of their steps
    if it < warmup:
        return (it + 1) / warmup
    progress = (it - warmup) / max(iters - warmup - 1, 1)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
'''

_SET_LR = """
for group in optimizer.param_groups:
    group["lr"] = group.setdefault("peak_lr", group["lr"]) * lr_multiplier({it}, iters)
"""

_MUON = '''
class Muon(torch.optim.Optimizer):
    """Muon for 2-D hidden matrices, AdamW for every other parameter, in one optimizer.

    Muon takes SGD momentum (Nesterov) and replaces each update by its nearest semi-orthogonal
    matrix, found by a Newton-Schulz iteration: every direction of the matrix moves at the
    same rate. Groups with ``use_muon`` get that; the others a plain AdamW step. One optimizer
    (not two) keeps one step() per iteration, which the harness counts.
    """

    def __init__(self, param_groups: list[dict]):
        super().__init__(param_groups, {})

    @staticmethod
    def orthogonalize(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
        """About U V^T for g = U S V^T: quintic Newton-Schulz with Keller Jordan's coefficients."""
        a, b, c = 3.4445, -4.7750, 2.0315
        x = g / (g.norm() + 1e-7)
        tall = x.size(0) > x.size(1)
        if tall:
            x = x.T
        for _ in range(steps):
            s = x @ x.T
            x = a * x + (b * s + c * s @ s) @ x
        return x.T if tall else x

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                p.mul_(1 - lr * wd)
                if group["use_muon"]:
                    buf = state.setdefault("momentum", torch.zeros_like(p))
                    buf.lerp_(p.grad, 1 - group["momentum"])
                    update = self.orthogonalize(p.grad.lerp(buf, group["momentum"]))
                    p.add_(update, alpha=-lr * max(1.0, p.size(0) / p.size(1)) ** 0.5)
                    continue
                if not state:
                    state.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["step"] += 1
                b1, b2 = group["betas"]
                state["m"].lerp_(p.grad, 1 - b1)
                state["v"].lerp_(p.grad.square(), 1 - b2)
                denom = (state["v"] / (1 - b2 ** state["step"])).sqrt_().add_(group["eps"])
                p.addcdiv_(state["m"], denom, value=-lr / (1 - b1 ** state["step"]))
        return None
'''

_MUON_GROUPS = """
# Muon for the blocks' 2-D weights; AdamW for embeddings, the head and the vectors
hidden = [p for n, p in model.named_parameters() if p.dim() == 2 and n.startswith("h.")]
rest = [p for p in model.parameters() if all(p is not q for q in hidden)]
muon = {"use_muon": True, "lr": muon_lr, "momentum": muon_momentum, "weight_decay": 0.0}
adam = {"use_muon": False, "lr": learning_rate, "betas": (beta1, beta2), "eps": 1e-8}
groups = [
    {"params": hidden, **muon},
    {"params": [p for p in rest if p.dim() >= 2], **adam, "weight_decay": weight_decay},
    {"params": [p for p in rest if p.dim() < 2], **adam, "weight_decay": 0.0},
]
optimizer = Muon([g for g in groups if g["params"]])
"""

_RMSNORM = '''
class RMSNorm(nn.Module):
    """Root-mean-square norm: LayerNorm without centring or bias; cheaper and trains as well."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight
'''

_ROTARY = '''
def rotary_tables(head_dim: int, length: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, each (length, head_dim // 2)."""
    inv_freq = base ** -(torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the (first half, second half) pairs of x (B, H, T, D) by their position's angles."""
    T, half = x.size(-2), x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos[:T], sin[:T]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
'''

_SWIGLU = '''
class MLP(nn.Module):
    """SwiGLU feed-forward: silu(x W_gate) * (x W_up), projected back; ~the 4x MLP's parameters."""

    def __init__(self, config: "GPTConfig"):
        super().__init__()
        hidden = 8 * ((8 * config.n_embd // 3 + 7) // 8)  # 2/3 of 4x, rounded up to a multiple of 8
        self.c_fc = nn.Linear(config.n_embd, 2 * hidden, bias=config.bias)  # gate and up, fused
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.c_fc(x).chunk(2, dim=-1)
        return self.dropout(self.c_proj(F.silu(gate) * up))
'''

_FUSED_LOSS = '''
class FusedHeadLoss(torch.autograd.Function):
    """Linear LM head + cross-entropy in one pass, with the gradients computed in the forward.

    The logits of a batch are 512 x 50,257 floats (103 MB): materialising them, their softmax
    and their gradient separately is what makes a naive step slow on a CPU. Here one buffer
    holds the logits, becomes the softmax in place, then the gradient in place. Two optional
    training terms: label smoothing (mix the target with the uniform distribution) and z-loss
    (penalise log Z squared so the logits do not drift).
    """

    @staticmethod
    def forward(ctx, x, weight, targets, compute_dtype, smoothing=0.0, z_weight=0.0):  # type: ignore[override]
        n, vocab = x.shape[0], weight.shape[0]
        xc, wc = x.to(compute_dtype), weight.to(compute_dtype)
        logits = (xc @ wc.t()).float()
        lse = torch.logsumexp(logits, dim=-1)
        target_logit = logits.gather(1, targets[:, None]).squeeze(1)
        loss = (1 - smoothing) * (lse - target_logit).mean()
        if smoothing:
            loss = loss + smoothing * (lse - logits.mean(dim=-1)).mean()
        if z_weight:
            loss = loss + z_weight * lse.square().mean()
        # softmax in place; d(loss)/d(logits) = p (1 + 2 z lse) - (1 - s) onehot - s / V, over n
        probs = logits.sub_(lse[:, None]).exp_()
        if z_weight:
            probs.mul_(1 + 2 * z_weight * lse[:, None])
        probs.scatter_add_(1, targets[:, None], torch.full_like(target_logit[:, None], smoothing - 1))
        if smoothing:
            probs.sub_(smoothing / vocab)
        grad_logits = probs.div_(n).to(compute_dtype)
        grad_x = (grad_logits @ wc).to(x.dtype)
        grad_w = (grad_logits.t() @ xc).to(weight.dtype)
        ctx.save_for_backward(grad_x, grad_w)
        return loss

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        grad_x, grad_w = ctx.saved_tensors
        return grad_x * grad_out, grad_w * grad_out, None, None, None, None
'''

_LOSS_FIELDS = """
label_smoothing: float = 0.0  # training only: the harness scores plain cross-entropy
z_loss: float = 0.0  # training only: weight of the log-partition penalty
"""

_LOSS_TERMS = """
# label smoothing and z-loss shape training only: evaluation is plain cross-entropy
terms = (self.config.label_smoothing, self.config.z_loss) if self.training else (0.0, 0.0)
"""


# --- the catalogue -------------------------------------------------------------------------


@dataclass(frozen=True)
class Technique:
    """A named improvement: which persona keys it serves, why it helps, and the edit itself."""

    name: str
    keys: tuple[str, ...]  # persona technique keys (the vocabulary) this technique serves
    why: str  # one line for the answer's prose
    check: Callable[[Mapping[str, str]], bool]
    change: Callable[[Files, random.Random], Change]

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
            ast.parse(src)
        return out

    def apply(self, files: Mapping[str, str], rng: random.Random) -> dict[str, str]:
        """The edited files (see ``transform``)."""
        return self.transform(files, rng).files


_REGISTRY: list[Technique] = []


def _technique(
    name: str, keys: tuple[str, ...], why: str, check: Callable[[Mapping[str, str]], bool]
) -> Callable[[Callable[[Files, random.Random], Change]], Callable[[Files, random.Random], Change]]:
    def register(
        fn: Callable[[Files, random.Random], Change],
    ) -> Callable[[Files, random.Random], Change]:
        _REGISTRY.append(Technique(name, keys, why, check, fn))
        return fn

    return register


def _pick(rng: random.Random, options: tuple[float, ...], current: float) -> float:
    """A choice that differs from the current value by more than rounding."""
    fresh = [o for o in options if abs(o - current) > 1e-9 + 0.05 * abs(current)]
    if not fresh:
        raise Skip("no new value to try")
    return rng.choice(fresh)


def _tune(name: str, options: tuple[float, ...]) -> Callable[[Files, random.Random], Change]:
    def change(files: Files, rng: random.Random) -> Change:
        old = _number(files[TRAIN], name)
        new = _pick(rng, options, old)
        files[TRAIN] = set_constants(files[TRAIN], {name: _fmt(new)})
        return Change(files, f"{name} {_fmt(old)} -> {_fmt(new)}")

    return change


def _has(name: str) -> Callable[[Mapping[str, str]], bool]:
    return lambda f: isinstance(constant(f[TRAIN], name), int | float)


def _loop_var(train_fn: str) -> str:
    """The loop variable of the ``for`` that calls ``optimizer.step()`` in train()."""
    for node in ast.walk(_tree(train_fn)):
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
        {"learning_rate": _fmt(peak), "warmup_iters": str(warmup), "min_lr_ratio": "0.1"},
        {
            "warmup_iters": "linear warmup steps (capped at a tenth of a short run)",
            "min_lr_ratio": "the cosine decays to this fraction of the peak lr",
        },
    )
    src = _insert_top(_ensure_import(src, "math"), _LR_MULTIPLIER, ("train",))
    it = _loop_var(segment(src, "train"))
    files[TRAIN] = edit(src, "train", around(r"^optimizer\.step\(", _SET_LR.format(it=it)))
    return Change(files, f"peak lr {_fmt(peak)}, warmup {warmup}, cosine to 10%")


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
    old = (_number(files[TRAIN], "beta1"), _number(files[TRAIN], "beta2"))
    options = [(0.9, 0.99), (0.9, 0.98), (0.8, 0.95), (0.85, 0.99), (0.9, 0.95), (0.9, 0.999)]
    b1, b2 = rng.choice([o for o in options if o != old])
    files[TRAIN] = set_constants(files[TRAIN], {"beta1": _fmt(b1), "beta2": _fmt(b2)})
    return Change(files, f"betas {old} -> {(b1, b2)}")


@_technique(
    "grad_clip",
    ("gradient_clipping",),
    "the clipping threshold trades stability against step size; value clipping caps "
    "single outlier coordinates instead of the whole update",
    lambda f: _has("grad_clip")(f) and "clip_grad_" in f[TRAIN],
)
def _clip(files: Files, rng: random.Random) -> Change:
    src, old = files[TRAIN], _number(files[TRAIN], "grad_clip")
    if "clip_grad_value_(" in src:  # back to norm clipping
        new, kind = _pick(rng, (0.5, 1.0), old), "norm"
        src = src.replace("clip_grad_value_(", "clip_grad_norm_(")
    elif rng.random() < 0.25:
        new, kind = rng.choice((0.01, 0.05)), "value"
        src = src.replace("clip_grad_norm_(", "clip_grad_value_(")
    else:
        new, kind = _pick(rng, (0.0, 0.25, 0.5, 2.0), old), "norm"
    files[TRAIN] = set_constants(src, {"grad_clip": _fmt(new)})
    return Change(files, f"{kind} clipping at {_fmt(new)}" if new else "clipping off")


def replace_exprs(src: str, fn: Callable[[cst.BaseExpression], cst.BaseExpression | None]) -> str:
    """Replace, anywhere in the module, every expression for which ``fn`` returns a new one."""
    tool = _Exprs(fn)
    out = cst.parse_module(src).visit(tool)
    if not tool.hits:
        raise Skip("no expression matched")
    return out.code


def _call_to(
    names: tuple[str, ...], build: Callable[[cst.Call], str]
) -> Callable[[cst.BaseExpression], cst.BaseExpression | None]:
    """An expression rewrite: calls of ``names`` become the code ``build(call)`` returns."""

    def fn(node: cst.BaseExpression) -> cst.BaseExpression | None:
        if isinstance(node, cst.Call) and _code(node.func) in names:
            return cst.parse_expression(build(node))
        return None

    return fn


def _arg(call: cst.Call, i: int = 0) -> str:
    return _code(call.args[i].value)


def _sdpa_qk(model: str) -> bool:
    """Whether attention calls scaled_dot_product_attention(q, k, ...) on (B, H, T, D) q and k."""
    fn = segment(model, "CausalSelfAttention.forward")
    for node in ast.walk(_tree(fn)):
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(
            "scaled_dot_product_attention"
        ):
            return [ast.unparse(a) for a in node.args[:2]] == ["q", "k"]
    return False


def _nn(f: Mapping[str, str]) -> bool:
    return _bound(f[MODEL], "nn") and _bound(f[MODEL], "torch")


_LAYER_NORMS = ("nn.LayerNorm", "LayerNorm", "torch.nn.LayerNorm")


@_technique(
    "rmsnorm",
    ("norms_activations",),
    "RMSNorm drops LayerNorm's centring and bias: fewer operations, same or better loss "
    "(LLaMA, Gemma)",
    lambda f: (
        _nn(f) and "class RMSNorm" not in f[MODEL] and bool(re.search(r"\bLayerNorm\(", f[MODEL]))
    ),
)
def _rmsnorm(files: Files, rng: random.Random) -> Change:
    src = _insert_top(files[MODEL], _RMSNORM, ("CausalSelfAttention", "MLP", "Block", "GPTConfig"))
    files[MODEL] = replace_exprs(src, _call_to(_LAYER_NORMS, lambda c: f"RMSNorm({_arg(c)})"))
    return Change(files, "every LayerNorm -> RMSNorm")


@_technique(
    "relu_squared",
    ("norms_activations",),
    "squared ReLU in the MLP (Primer) learns faster than GELU at small scale",
    lambda f: _bound(f[MODEL], "F") and "F.gelu(" in segment(f[MODEL], "MLP.forward"),
)
def _relu2(files: Files, rng: random.Random) -> Change:
    rewrite = _call_to(("F.gelu",), lambda c: f"F.relu({_arg(c)}).square()")
    files[MODEL] = edit(files[MODEL], "MLP.forward", exprs(rewrite))
    return Change(files, "GELU -> relu(x)^2")


def _drop_wpe(node: cst.BaseExpression) -> cst.BaseExpression | None:
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add):
        if _code(node.right).startswith("self.wpe("):
            return node.left
        if _code(node.left).startswith("self.wpe("):
            return node.right
    return None


@_technique(
    "rope",
    ("rope",),
    "rotary embeddings rotate queries and keys by position, so attention sees relative "
    "offsets; the learned absolute table (wpe) goes",
    lambda f: (
        _nn(f)
        and _sdpa_qk(f[MODEL])
        and "apply_rotary" not in f[MODEL]
        and "self.wpe(" in segment(f[MODEL], "GPT.hidden")
        and "config" in segment(f[MODEL], "CausalSelfAttention.__init__")
    ),
)
def _rope(files: Files, rng: random.Random) -> Change:
    base = rng.choice((1000.0, 10000.0))
    src = edit(files[MODEL], "GPT.hidden", exprs(_drop_wpe))
    if len(re.findall(r"\bpos\b", segment(src, "GPT.hidden"))) == 1:  # only its assignment left
        src = edit(src, "GPT.hidden", around(r"^pos = ", "", "instead"))
    src = edit(src, "GPT.__init__", around(r"^self\.wpe = ", "", "instead"))
    if "wpe" in src or "wpe" in files[TRAIN]:
        raise Skip("wpe is used elsewhere")
    src = _insert_top(src, _ROTARY, ("CausalSelfAttention",))
    src = edit(
        src,
        "CausalSelfAttention.__init__",
        append_to(
            "# rotary phases for every position; not weights, so not in the checkpoint\n"
            f"cos, sin = rotary_tables(config.n_embd // config.n_head, config.block_size, {base:g})\n"
            'self.register_buffer("rope_cos", cos, persistent=False)\n'
            'self.register_buffer("rope_sin", sin, persistent=False)\n'
        ),
    )
    rotate = (
        "q = apply_rotary(q, self.rope_cos, self.rope_sin)\n"
        "k = apply_rotary(k, self.rope_cos, self.rope_sin)\n"
    )
    src = edit(
        src, "CausalSelfAttention.forward", around(r"scaled_dot_product_attention\(", rotate)
    )
    src = src.replace("Token + position embeddings", "Token embeddings (positions by RoPE)", 1)
    files[MODEL] = src
    return Change(files, f"RoPE (base {base:g}) in every attention layer; wpe removed")


@_technique(
    "swiglu",
    ("gated_mlp",),
    "a gated MLP (SwiGLU) beats GELU at equal parameters (Shazeer 2020; LLaMA)",
    lambda f: (
        _nn(f)
        and _bound(f[MODEL], "F")
        and "silu" not in segment(f[MODEL], "MLP")
        and "c_proj" in segment(f[MODEL], "MLP")
        and all(w in segment(f[MODEL], "GPTConfig") for w in ("bias", "dropout"))
    ),
)
def _swiglu(files: Files, rng: random.Random) -> Change:
    files[MODEL] = replace_top(files[MODEL], "MLP", _SWIGLU)
    return Change(files, "MLP -> SwiGLU with hidden width 88 (2/3 of 4x)")


@_technique(
    "qk_norm",
    ("qk_norm",),
    "RMS-normalising queries and keys per head (with learned gains) bounds attention "
    "logits, which lets higher learning rates train stably",
    lambda f: (
        _nn(f)
        and _sdpa_qk(f[MODEL])
        and "q_gain" not in f[MODEL]
        and "config" in segment(f[MODEL], "CausalSelfAttention.__init__")
    ),
)
def _qk_norm(files: Files, rng: random.Random) -> Change:
    gain = rng.choice((1.0, 2.0))
    src = edit(
        files[MODEL],
        "CausalSelfAttention.__init__",
        append_to(
            f"# QK-norm gains, one per head dimension; {gain:g} sets the initial attention temperature\n"
            f"self.q_gain = nn.Parameter(torch.full((config.n_embd // config.n_head,), {gain:.1f}))\n"
            f"self.k_gain = nn.Parameter(torch.full((config.n_embd // config.n_head,), {gain:.1f}))\n"
        ),
    )
    norm = (
        "q = q * torch.rsqrt(q.pow(2).mean(-1, keepdim=True) + 1e-6) * self.q_gain\n"
        "k = k * torch.rsqrt(k.pow(2).mean(-1, keepdim=True) + 1e-6) * self.k_gain\n"
    )
    files[MODEL] = edit(
        src, "CausalSelfAttention.forward", around(r"scaled_dot_product_attention\(", norm)
    )
    return Change(files, f"QK-norm with gains starting at {gain:g}")


@_technique(
    "untie_head",
    ("weight_tying",),
    "an untied output head frees the input embedding from doubling as the classifier; "
    "at width 32 the tie is a tight bottleneck",
    lambda f: (
        _nn(f)
        and "lm_head" not in f[MODEL]
        and "self.wte.weight" in segment(f[MODEL], "GPT.forward")
        and re.search(r"self\.wte = ", segment(f[MODEL], "GPT.__init__")) is not None
    ),
)
def _untie(files: Files, rng: random.Random) -> Change:
    head = "self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)  # untied head\n"
    src = edit(files[MODEL], "GPT.__init__", around(r"^self\.wte = ", head, "after"))
    head_weight = cst.parse_expression("self.lm_head.weight")
    src = edit(
        src, "GPT.forward", exprs(lambda n: head_weight if _code(n) == "self.wte.weight" else None)
    )
    files[MODEL] = src.replace("a head tied to wte", "an untied head", 1)
    return Change(files, "separate lm_head (std 0.02 init)")


_INITS = (
    r"nn\.init\.|_init_weights"  # statements that initialise weights: new init code follows them
)


@_technique(
    "zero_init_proj",
    ("initialization", "residual_scaling"),
    "zero-initialised residual projections make every block start as the identity, "
    "so depth is added gradually (modded-nanogpt)",
    lambda f: _nn(f) and "c_proj" in f[MODEL] and "nn.init.zeros_(p)" not in f[MODEL],
)
def _zero_proj(files: Files, rng: random.Random) -> Change:
    files[MODEL] = edit(
        files[MODEL],
        "GPT.__init__",
        append_to(
            "# zero-init the residual projections: every block starts as the identity map\n"
            "for name, p in self.named_parameters():\n"
            '    if name.endswith("c_proj.weight"):\n'
            "        nn.init.zeros_(p)\n",
            after=_INITS,
            instead=r"if name\.endswith\(\"c_proj\.weight\"\):\s*nn\.init\.normal_",  # GPT-2's
        ),
    )
    return Change(files, "c_proj weights start at zero")


@_technique(
    "fan_in_init",
    ("initialization",),
    "GPT-2's fixed std 0.02 was tuned for width 768; at width 32, std ~ 1/sqrt(fan_in) "
    "keeps each layer's output on the scale of its input",
    lambda f: _nn(f) and "fan-in init" not in f[MODEL] and bool(segment(f[MODEL], "GPT.__init__")),
)
def _fan_in(files: Files, rng: random.Random) -> Change:
    gain = rng.choice((0.5, 1.0))
    std = "p.size(1) ** -0.5" if gain == 1 else f"{gain} * p.size(1) ** -0.5"
    files[MODEL] = edit(
        files[MODEL],
        "GPT.__init__",
        append_to(
            "# fan-in init of the blocks' input matrices (residual projections keep theirs)\n"
            "for name, p in self.named_parameters():\n"
            '    if p.dim() == 2 and name.startswith("h.") and not name.endswith("c_proj.weight"):\n'
            f"        nn.init.normal_(p, mean=0.0, std={std})\n",
            after=_INITS,
        ),
    )
    return Change(files, f"std {gain:g}/sqrt(fan_in) for the blocks' input matrices")


@_technique(
    "layer_scale",
    ("residual_scaling",),
    "LayerScale: learned per-channel gains on each residual branch let the model tune "
    "how much each block writes to the stream (CaiT)",
    lambda f: (
        _nn(f)
        and "attn_scale" not in f[MODEL]
        and all(c in segment(f[MODEL], "Block.forward") for c in ("self.attn(", "self.mlp("))
        and "config" in segment(f[MODEL], "Block.__init__")
    ),
)
def _layer_scale(files: Files, rng: random.Random) -> Change:
    init = rng.choice((0.1, 0.5, 1.0))
    src = edit(
        files[MODEL],
        "Block.__init__",
        append_to(
            "# LayerScale: per-channel gains on the residual branches\n"
            f"self.attn_scale = nn.Parameter(torch.full((config.n_embd,), {init:.1f}))\n"
            f"self.mlp_scale = nn.Parameter(torch.full((config.n_embd,), {init:.1f}))\n"
        ),
    )

    def scale(node: cst.BaseExpression) -> cst.BaseExpression | None:
        if isinstance(node, cst.Call) and _code(node.func) in ("self.attn", "self.mlp"):
            return cst.parse_expression(f"{_code(node.func)}_scale * {_code(node)}")
        return None

    files[MODEL] = edit(src, "Block.forward", exprs(scale))
    return Change(files, f"residual gains starting at {init:g}")


def _optimizable(f: Mapping[str, str]) -> bool:
    fn = segment(f[TRAIN], "train")
    names = ("learning_rate", "beta1", "beta2", "weight_decay")
    return (
        "class Muon" not in f[TRAIN]
        and all(_has(n)(f) for n in names)
        and re.search(r"^\s*optimizer = ", fn, re.MULTILINE) is not None
        and re.search(r"^\s*model = ", fn, re.MULTILINE) is not None
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
        {"muon_lr": _fmt(lr), "muon_momentum": "0.95"},
        {
            "muon_lr": "Muon's step for the blocks' matrices (AdamW's learning_rate for the rest)",
            "muon_momentum": "Nesterov momentum of the Muon groups",
        },
    )
    src = _insert_top(src, _MUON, ("get_batch", "estimate_loss", "train"))
    src = edit(src, "train", around(r"^optimizer = ", _MUON_GROUPS, "instead"))
    for name in ("decay", "no_decay"):  # the AdamW groups' lists, now unused
        if len(re.findall(rf"(?<![\w.]){name}\b", segment(src, "train"))) == 1:
            src = edit(src, "train", around(rf"^{name} = ", "", "instead"))
    files[TRAIN] = src
    return Change(files, f"Muon lr {_fmt(lr)}, momentum 0.95, 5 Newton-Schulz steps")


def _loss_ready(f: Mapping[str, str]) -> bool:
    """Whether the fused loss takes the extra terms, or is the baseline's and can be extended."""
    head = segment(f[MODEL], "FusedHeadLoss.forward")
    args = [a.arg for a in _tree(head).body[0].args.args] if head else []  # type: ignore[attr-defined]
    extended = args[5:] == ["smoothing", "z_weight"] and "label_smoothing" in segment(
        f[MODEL], "GPTConfig"
    )
    return (
        (extended or args == ["ctx", "x", "weight", "targets", "compute_dtype"])
        and "FusedHeadLoss.apply(" in segment(f[MODEL], "GPT.forward")
        and re.search(r"model_args = dict\(", segment(f[TRAIN], "train")) is not None
    )


def _extend_loss(model: str) -> str:
    """Give the fused loss label-smoothing and z-loss terms, off unless GPTConfig turns them on."""
    if "z_weight" in segment(model, "FusedHeadLoss"):
        return model
    src = replace_top(model, "FusedHeadLoss", _FUSED_LOSS)

    def more_args(node: cst.BaseExpression) -> cst.BaseExpression | None:
        if (
            isinstance(node, cst.Call)
            and _code(node.func) == "FusedHeadLoss.apply"
            and len(node.args) == 4
        ):
            args = ", ".join(_arg(node, i) for i in range(4))
            return cst.parse_expression(f"FusedHeadLoss.apply({args}, *terms)")
        return None

    src = edit(src, "GPT.forward", around(r"FusedHeadLoss\.apply\(", _LOSS_TERMS))
    return add_fields(edit(src, "GPT.forward", exprs(more_args)), "GPTConfig", _LOSS_FIELDS)


def _loss_term(
    name: str, options: tuple[float, ...], what: str
) -> Callable[[Files, random.Random], Change]:
    def change(files: Files, rng: random.Random) -> Change:
        old = constant(files[TRAIN], name)
        new = 0.0 if isinstance(old, float) and old > 0 else rng.choice(options)
        files[MODEL] = _extend_loss(files[MODEL])
        src = set_constants(files[TRAIN], {name: _fmt(new)}, {name: f"{what} (training only)"})
        if not re.search(rf"\b{name}={name}\b", segment(src, "train")):
            src = add_model_arg(src, name)
        files[TRAIN] = src
        return Change(files, f"{what} {_fmt(new)}" if new else f"{what} off")

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


CATALOGUE: tuple[Technique, ...] = tuple(_REGISTRY)
"""Every technique, in a fixed order (the offline agent's draws depend on it)."""


def technique(name: str) -> Technique:
    """The catalogue entry called ``name``."""
    for t in CATALOGUE:
        if t.name == name:
            return t
    raise KeyError(name)

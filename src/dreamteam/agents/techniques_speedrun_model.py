"""The speedrun playbook's architecture techniques (modded-nanogpt's record moves, written
afresh for this 4-layer, 32-wide model): logit soft-capping, U-net skip connections between
early and late blocks, value embeddings, and an auxiliary multi-token-prediction loss.

Each finds its target by what the code does (``speedrun_edit.py``): the head's logits and
loss in the model's forward, the loop over the blocks, the attention's value projection. A
rewrite of the baseline that keeps the names but changes how a part is written makes the
technique find nothing (``Skip``), never a broken edit.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Callable, Mapping

import libcst as cst

from dreamteam.agents.snippets_speedrun import SOFTCAP, UNET_LOOP
from dreamteam.agents.source_edit import (
    Skip,
    add_fields,
    add_model_arg,
    append_to,
    around,
    binds,
    code_of,
    edit,
    exprs,
    fmt,
    insert_top,
    segment,
    set_constants,
    statements,
)
from dreamteam.agents.speedrun_edit import (
    MODEL_CLASS,
    add_param,
    assigned,
    attention_attribute,
    bare,
    block_loop,
    built_class,
    classes,
    local_names,
    method,
    module_names,
    params,
    renamed,
    rewrite_stmts,
)
from dreamteam.agents.techniques_base import MODEL, TRAIN, Change, Files, Technique, registrar

TECHNIQUES: list[Technique] = []
"""This module's techniques, in definition order."""
_technique = registrar(TECHNIQUES, structural=True)

_FORWARD = f"{MODEL_CLASS}.forward"
_INIT = f"{MODEL_CLASS}.__init__"
_HEAD_WEIGHT = re.compile(r"\bself\.(wte|lm_head)\.weight\b")


def _ready(f: Mapping[str, str], marker: str) -> bool:
    """torch and nn are bound, the model keeps its config, and ``marker`` is not there yet."""
    model = f[MODEL]
    return (
        binds(model, "torch")
        and binds(model, "nn")
        and marker not in model
        and "self.config = config" in segment(model, _INIT)
        and bool(segment(model, "GPTConfig"))
    )


# --- logit soft-capping ----------------------------------------------------------------------


def _is_logits(node: cst.BaseExpression) -> bool:
    """Whether an expression computes the head's logits: ``F.linear(x, <head weight>)``,
    ``self.lm_head(x)`` or ``x @ <head weight>.t()``."""
    if isinstance(node, cst.Call):
        func = code_of(node.func)
        if func == "self.lm_head":
            return True
        return func.endswith("linear") and bool(_HEAD_WEIGHT.search(code_of(node)))
    return (
        isinstance(node, cst.BinaryOperation)
        and isinstance(node.operator, cst.MatrixMultiply)
        and bool(_HEAD_WEIGHT.search(code_of(node.right)))
    )


def _fused_losses(model: str) -> list[ast.Call]:
    """Calls in the forward of an autograd Function of this file, ``Cls.apply(x, w, t, ...)``."""
    fn = method(model, _FORWARD)
    return [
        c
        for c in ast.walk(fn)
        if isinstance(c, ast.Call)
        and isinstance(c.func, ast.Attribute)
        and c.func.attr == "apply"
        and ast.unparse(c.func.value) in classes(model)
    ]


def _cappable(f: Mapping[str, str]) -> bool:
    model = f[MODEL]
    fused = _fused_losses(model)
    forward = segment(model, _FORWARD)
    return (
        _ready(f, "softcap")
        and all(len(c.args) >= 3 and not c.keywords for c in fused)
        and (bool(fused) or "cross_entropy" in forward)
        and bool(re.search(r"F\.linear\(|self\.lm_head\(|@", forward))
    )


def _capped(node: cst.BaseExpression) -> cst.BaseExpression | None:
    if _is_logits(node):
        return cst.parse_expression(f"softcap({code_of(node)}, self.config.logit_cap)")
    if (
        isinstance(node, cst.Call)
        and isinstance(node.func, cst.Attribute)
        and node.func.attr.value == "apply"
    ):
        args = [code_of(a.value) for a in node.args]
        dtype = args[3] if len(args) > 3 and "dtype" in args[3] else "torch.float32"
        return cst.parse_expression(
            f"SoftcapHeadLoss.apply({', '.join(args[:3])}, {dtype}, self.config.logit_cap)"
        )
    return None


@_technique(
    "logit_softcap",
    ("norms_activations", "objectives"),
    "soft-capping the logits (cap * tanh(logits / cap), Gemma 2 and the nanogpt speedrun) "
    "keeps the tied head from growing over-confident early; training and scoring see the "
    "same capped logits",
    _cappable,
)
def _softcap(files: Files, rng: random.Random) -> Change:
    cap = rng.choice((10.0, 15.0, 30.0))
    src = edit(files[MODEL], _FORWARD, exprs(_capped))
    if "softcap(" not in segment(src, _FORWARD):  # the scored logits must be capped too
        raise Skip("no logits to cap in the forward")
    src = insert_top(src, SOFTCAP, ("CausalSelfAttention", "GPTConfig", MODEL_CLASS))
    src = add_fields(
        src, "GPTConfig", f"logit_cap: float = {fmt(cap)}  # logits stay in (-cap, cap)\n"
    )
    files[MODEL] = src
    return Change(files, f"logits soft-capped at {cap:g} in training and evaluation")


# --- U-net skip connections ------------------------------------------------------------------


def _unet_ready(f: Mapping[str, str]) -> bool:
    if not _ready(f, "skip_weights"):
        return False
    loop = block_loop(f[MODEL])
    fn = method(f[MODEL], loop.method)
    return loop.header == f"for {loop.var} in {loop.blocks}:" and not (
        {"skips", "i"} & local_names(fn)
    )


def _unet_loop(
    loop_var: str, blocks: str, header: str
) -> Callable[[cst.BaseStatement], list[cst.BaseStatement] | None]:
    def fn(stmt: cst.BaseStatement) -> list[cst.BaseStatement] | None:
        if not (isinstance(stmt, cst.For) and bare(stmt).splitlines()[0] == header):
            return None
        body = stmt.body.body
        step = bare(body[0]) if len(body) == 1 else ""
        hit = re.fullmatch(rf"(\w+) = {loop_var}\(\1\b.*\)", step)
        if hit is None:
            raise Skip("the block loop does more than x = block(x)")
        code = UNET_LOOP.format(var=loop_var, blocks=blocks, call=step, x=hit.group(1))
        return statements(code)

    return fn


@_technique(
    "unet_skips",
    ("residual_scaling", "nas"),
    "U-net skips (nanogpt speedrun): the first half's block outputs are added back, with "
    "learned weights, into the second half in reverse order, so late blocks see early features",
    _unet_ready,
)
def _unet(files: Files, rng: random.Random) -> Change:
    init = rng.choice((0.5, 1.0))
    loop = block_loop(files[MODEL])
    src = edit(
        files[MODEL], loop.method, rewrite_stmts(_unet_loop(loop.var, loop.blocks, loop.header))
    )
    weights = (
        "# U-net skip weights: one per pair of (early, late) blocks\n"
        f"self.skip_weights = nn.Parameter(torch.full((len({loop.blocks}) // 2,), {init:.1f}))\n"
    )
    files[MODEL] = edit(src, _INIT, around(rf"^{re.escape(loop.blocks)} = ", weights, "after"))
    return Change(files, f"U-net skips, weights starting at {init:g}")


# --- value embeddings ------------------------------------------------------------------------


def _value_split(model: str, attn: str) -> tuple[str, str]:
    """(the value tensor's name, a regex of its statement) in attention: the third of three
    names unpacked from a ``.split`` (still (B, T, C), before the heads are split off)."""
    fn = method(model, f"{attn}.forward")
    for stmt in fn.body:
        if (
            isinstance(stmt, ast.Assign)
            and isinstance(stmt.targets[0], ast.Tuple)
            and len(stmt.targets[0].elts) == 3
            and ".split(" in ast.unparse(stmt.value)
        ):
            names = [ast.unparse(e) for e in stmt.targets[0].elts]
            return names[2], rf"^{re.escape(', '.join(names))} = .*\.split\("
    raise Skip("no q, k, v = ....split(...) in attention")


def _ve_plan(model: str) -> tuple[str, str, str, str]:
    """(block class, attention attribute, attention class, the token ids' name)."""
    loop = block_loop(model)
    block = built_class(model, loop.blocks, MODEL_CLASS)
    attr, attn = attention_attribute(model, block)
    _value_split(model, attn)
    for name in (f"{block}.forward", f"{attn}.forward"):
        fn = method(model, name)
        if len(params(fn)) != 2 or "ve" in local_names(fn):
            raise Skip(f"{name} does not take just (self, x)")
    ids = re.findall(r"self\.wte\((\w+)\)", segment(model, loop.method))
    if len(ids) != 1 or "ve" in local_names(method(model, loop.method)):
        raise Skip("no single token embedding in the block loop's method")
    return block, attr, attn, ids[0]


def _table(model: str) -> ast.Call:
    """The token embedding's construction in the model's __init__ (``nn.Embedding(V, C)``)."""
    value = assigned(method(model, _INIT), "self.wte")
    call = ast.parse(value, mode="eval").body if value else None
    if not (isinstance(call, ast.Call) and ast.unparse(call.func).endswith("Embedding")):
        raise Skip("no self.wte = nn.Embedding(...)")
    if len(call.args) != 2:
        raise Skip("the embedding's sizes are not two positional arguments")
    return call


def _ve_ready(f: Mapping[str, str]) -> bool:
    return _ready(f, "value_embed") and bool(_table(f[MODEL])) and bool(_ve_plan(f[MODEL]))


def _pass_ve(callee: str) -> Callable[[cst.BaseExpression], cst.BaseExpression | None]:
    def fn(node: cst.BaseExpression) -> cst.BaseExpression | None:
        if isinstance(node, cst.Call) and code_of(node.func) == callee:
            return node.with_changes(args=[*node.args, cst.Arg(cst.Name("ve"))])
        return None

    return fn


@_technique(
    "value_embeddings",
    ("memory_modules", "weight_tying"),
    "value embeddings (nanogpt speedrun): a second token table mixed into every attention "
    "layer's values with a learned gate, so each layer can copy token identity cheaply",
    _ve_ready,
)
def _value_embeddings(files: Files, rng: random.Random) -> Change:
    gate = rng.choice((0.5, 1.0))
    src = files[MODEL]
    block, attr, attn, ids = _ve_plan(src)
    loop = block_loop(src)
    new_table = f"self.value_embed = {ast.unparse(_table(src))}  # value embeddings, mixed into attention's v\n"
    src = edit(src, _INIT, around(r"^self\.wte = ", new_table, "after"))
    src = edit(src, loop.method, exprs(_pass_ve(loop.var)))
    src = edit(
        src,
        loop.method,
        around(r"^\w+ = .*self\.wte\(", f"ve = self.value_embed({ids})\n", "after"),
    )
    src = edit(src, f"{block}.forward", add_param("ve", "torch.Tensor | None", "None"))
    src = edit(src, f"{block}.forward", exprs(_pass_ve(attr)))
    v, split = _value_split(src, attn)
    src = edit(src, f"{attn}.forward", add_param("ve", "torch.Tensor | None", "None"))
    mix = f"if ve is not None:  # value embeddings, gated per layer\n    {v} = {v} + self.ve_gate * ve\n"
    src = edit(src, f"{attn}.forward", around(split, mix, "after"))
    src = edit(
        src,
        f"{attn}.__init__",
        append_to(
            f"self.ve_gate = nn.Parameter(torch.tensor({gate:.1f}))  # value-embedding gate\n"
        ),
    )
    files[MODEL] = src
    return Change(files, f"one value-embedding table, per-layer gates starting at {gate:g}")


# --- auxiliary multi-token prediction --------------------------------------------------------


def _loss_stmt(model: str) -> tuple[str, str, str]:
    """(loss name, the loss call's code, the targets' name) of the forward's one top-level
    ``loss = <call reading the targets>``."""
    fn = method(model, _FORWARD)
    names = params(fn)[2:3]
    if not names:
        raise Skip("the forward takes no targets")
    found = [
        (ast.unparse(s.targets[0]), ast.unparse(s.value))
        for s in ast.walk(fn)
        if isinstance(s, ast.Assign)
        and isinstance(s.targets[0], ast.Name)
        and isinstance(s.value, ast.Call)
        and names[0] in local_names(s.value)
    ]
    if len(found) != 1:
        raise Skip(f"{len(found)} loss assignments read the targets")
    return found[0][0], found[0][1], names[0]


def _hidden(model: str, call: str) -> tuple[str, str | None]:
    """(the hidden states' name, the loss input's name when it is derived from them)."""
    parsed_call = ast.parse(call, mode="eval").body
    if not (isinstance(parsed_call, ast.Call) and parsed_call.args):
        raise Skip("the loss takes no positional input")
    root = parsed_call.args[0]
    while isinstance(root, ast.Attribute | ast.Call | ast.Subscript):
        root = root.value if not isinstance(root, ast.Call) else root.func
    if not isinstance(root, ast.Name):
        raise Skip("the loss's input is not a local name")
    forward = method(model, _FORWARD)
    value = assigned(forward, root.id)
    if value is None:
        return root.id, None
    sources = local_names(ast.parse(value)) - module_names(model) - {"self", root.id}
    if sources <= set(params(forward)):  # computed by the model from its inputs: the states
        return root.id, None
    if len(sources) != 1:
        raise Skip("cannot tell which hidden states the loss reads")
    return sources.pop(), root.id


def _mtp_ready(f: Mapping[str, str]) -> bool:
    _, call, _ = _loss_stmt(f[MODEL])
    _hidden(f[MODEL], call)
    return (
        _ready(f, "mtp_weight")
        and bool(_table(f[MODEL]))
        and re.search(r"model_args = dict\(", segment(f[TRAIN], "train")) is not None
        and not re.search(r"\b(ahead|mtp_\w+)\b", segment(f[MODEL], _FORWARD))
    )


@_technique(
    "mtp_loss",
    ("objectives", "curriculum"),
    "an auxiliary multi-token-prediction loss (predict the token after next from a projection "
    "of the same hidden state) adds training signal per step; training only, the score is "
    "next-token cross-entropy",
    _mtp_ready,
)
def _mtp(files: Files, rng: random.Random) -> Change:
    weight = rng.choice((0.1, 0.3, 0.5))
    src = files[MODEL]
    loss, call, targets = _loss_stmt(src)
    hidden, derived = _hidden(src, call)
    width = ast.unparse(_table(src).args[1])
    lines = [f"ahead = self.mtp_proj({hidden}[:, :-1])"]
    if derived is not None:
        value = assigned(method(src, _FORWARD), derived) or derived
        lines.append(f"mtp_{derived} = {renamed(value, {hidden: 'ahead'})}")
    mapping = {
        derived or hidden: f"mtp_{derived}" if derived else "ahead",
        targets: f"{targets}[:, 1:].contiguous()",
    }
    lines.append(f"{loss} = {loss} + self.config.mtp_weight * {renamed(call, mapping)}")
    block = (
        "# auxiliary multi-token prediction: the token after next, from a projection of the\n"
        "# same hidden state (training only: the score is next-token cross-entropy)\n"
        "if self.training and self.config.mtp_weight:\n"
        + "".join(f"    {line}\n" for line in lines)
    )
    src = edit(src, _FORWARD, around(rf"^{loss} = .*\b{targets}\b", block, "after"))
    proj = f"self.mtp_proj = nn.Linear({width}, {width}, bias=False)  # multi-token head\n"
    src = edit(src, _INIT, around(r"^self\.wte = ", proj, "after"))
    files[MODEL] = add_fields(src, "GPTConfig", "mtp_weight: float = 0.0  # training only\n")
    train = set_constants(
        files[TRAIN],
        {"mtp_weight": fmt(weight)},
        {"mtp_weight": "weight of the auxiliary multi-token loss (training only)"},
    )
    files[TRAIN] = add_model_arg(train, "mtp_weight")
    return Change(files, f"multi-token loss weight {fmt(weight)}")

"""The catalogue's architecture techniques: norms and activations, rotary embeddings, a gated
MLP, QK-norm, an untied head, initialisation and residual scaling.

They edit ``model.py`` (RoPE also checks ``train.py`` for uses of ``wpe``). Their order here is
their order within the catalogue (see ``techniques.py``).
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Mapping

import libcst as cst

from dreamteam.agents.snippets import RMSNORM, ROTARY, SWIGLU
from dreamteam.agents.source_edit import (
    Skip,
    append_to,
    arg_code,
    around,
    binds,
    call_to,
    code_of,
    edit,
    exprs,
    insert_top,
    parsed,
    replace_exprs,
    replace_top,
    segment,
)
from dreamteam.agents.techniques_base import MODEL, TRAIN, Change, Files, Technique, registrar

TECHNIQUES: list[Technique] = []
"""This module's techniques, in definition order."""
_technique = registrar(TECHNIQUES, structural=True)


def _sdpa_qk(model: str) -> bool:
    """Whether attention calls scaled_dot_product_attention(q, k, ...) on (B, H, T, D) q and k."""
    fn = segment(model, "CausalSelfAttention.forward")
    for node in ast.walk(parsed(fn)):
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(
            "scaled_dot_product_attention"
        ):
            return [ast.unparse(a) for a in node.args[:2]] == ["q", "k"]
    return False


def _nn(f: Mapping[str, str]) -> bool:
    return binds(f[MODEL], "nn") and binds(f[MODEL], "torch")


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
    src = insert_top(files[MODEL], RMSNORM, ("CausalSelfAttention", "MLP", "Block", "GPTConfig"))
    files[MODEL] = replace_exprs(src, call_to(_LAYER_NORMS, lambda c: f"RMSNorm({arg_code(c)})"))
    return Change(files, "every LayerNorm -> RMSNorm")


@_technique(
    "relu_squared",
    ("norms_activations",),
    "squared ReLU in the MLP (Primer) learns faster than GELU at small scale",
    lambda f: binds(f[MODEL], "F") and "F.gelu(" in segment(f[MODEL], "MLP.forward"),
)
def _relu2(files: Files, rng: random.Random) -> Change:
    rewrite = call_to(("F.gelu",), lambda c: f"F.relu({arg_code(c)}).square()")
    files[MODEL] = edit(files[MODEL], "MLP.forward", exprs(rewrite))
    return Change(files, "GELU -> relu(x)^2")


def _drop_wpe(node: cst.BaseExpression) -> cst.BaseExpression | None:
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add):
        if code_of(node.right).startswith("self.wpe("):
            return node.left
        if code_of(node.left).startswith("self.wpe("):
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
    src = insert_top(src, ROTARY, ("CausalSelfAttention",))
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
        and binds(f[MODEL], "F")
        and "silu" not in segment(f[MODEL], "MLP")
        and "c_proj" in segment(f[MODEL], "MLP")
        and all(w in segment(f[MODEL], "GPTConfig") for w in ("bias", "dropout"))
    ),
)
def _swiglu(files: Files, rng: random.Random) -> Change:
    files[MODEL] = replace_top(files[MODEL], "MLP", SWIGLU)
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
        src,
        "GPT.forward",
        exprs(lambda n: head_weight if code_of(n) == "self.wte.weight" else None),
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
        if isinstance(node, cst.Call) and code_of(node.func) in ("self.attn", "self.mlp"):
            return cst.parse_expression(f"{code_of(node.func)}_scale * {code_of(node)}")
        return None

    files[MODEL] = edit(src, "Block.forward", exprs(scale))
    return Change(files, f"residual gains starting at {init:g}")

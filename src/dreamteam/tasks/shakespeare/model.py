"""The baseline GPT: a small pre-norm transformer with causal attention and tied embeddings.

Read top to bottom: the fused output head, attention, MLP, block, config, model.
The harness builds the model as ``GPT(GPTConfig(**model_args))`` from the checkpoint that
``train.py`` writes, and calls ``model(idx)`` for full-sequence logits of shape (B, T, vocab).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


def _fast_dtype(device_type: str) -> torch.dtype:
    """bf16 where the hardware does it natively (the LM head is ~all of the FLOPs), else fp32."""
    if device_type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device_type == "cpu" and torch.backends.mkldnn.is_available():
        try:
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():
                return torch.bfloat16
        except (AttributeError, RuntimeError):
            pass
    return torch.float32


class FusedHeadLoss(torch.autograd.Function):
    """Linear LM head + cross-entropy in one pass, with the gradients computed in the forward.

    The logits of a batch are 512 x 50,257 floats (103 MB): materialising them, their
    log-softmax and their gradient separately is what makes a naive step slow on a CPU. Here
    the softmax is computed in one pass and becomes the gradient in place.
    """

    @staticmethod
    def forward(ctx, x, weight, targets, compute_dtype):  # type: ignore[override]
        n = x.shape[0]
        xc, wc = x.to(compute_dtype), weight.to(compute_dtype)
        # one fused pass from logits to probabilities; the loss is -log p(target)
        probs = torch.softmax(xc @ wc.t(), dim=-1)
        rows = torch.arange(n, device=x.device)
        p_target = probs[rows, targets].float()
        loss = -p_target.clamp_min(1e-30).log().mean()
        if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]):
            return loss
        # d(loss)/d(logits) = (softmax - onehot) / n: the probabilities become the gradient in
        # place, and the 1/n is applied to the two small products, not to the big matrix.
        # Writing the n target entries by index touches n values; scatter_add_ on bf16 copied
        # the whole 512 x 50,257 matrix (~20% of a CPU step).
        probs[rows, targets] = (p_target - 1.0).to(probs.dtype)
        grad_x = (probs @ wc).to(x.dtype).div_(n)
        grad_w = (probs.t() @ xc).to(weight.dtype).div_(n)
        ctx.save_for_backward(grad_x, grad_w)
        return loss

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        grad_x, grad_w = ctx.saved_tensors
        return grad_x * grad_out, grad_w * grad_out, None, None


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees only positions <= t."""

    def __init__(self, config: "GPTConfig"):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.n_head = config.n_head
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    """Position-wise feed-forward network with a 4x expansion and GELU."""

    def __init__(self, config: "GPTConfig"):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: "GPTConfig"):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


@dataclass
class GPTConfig:
    block_size: int = 64
    vocab_size: int = 50257  # GPT-2 BPE; padding to 50,304 buys nothing on a CPU
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 32
    dropout: float = 0.0
    bias: bool = True


class GPT(nn.Module):
    """Token + position embeddings, n_layer blocks, a final norm and a head tied to wte."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.apply(self._init_weights)
        # GPT-2's scaled init of the residual projections
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        self.head_dtype = torch.float32
        self.head_threads: int | None = None

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def use_fast_head(self, device_type: str, threads: int | None = None) -> None:
        """Let training compute the LM head in bf16 where the hardware supports it, on
        `threads` CPU threads (None: as many as the rest of the step)."""
        self.head_dtype = _fast_dtype(device_type)
        self.head_threads = threads

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """The final normalised hidden states, shape (B, T, n_embd)."""
        _, T = idx.shape
        assert self.config.block_size >= T, f"sequence of {T} > block_size"
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits (B, T, vocab) and, when targets are given, the mean cross-entropy.

        With targets the logits are not returned (None): the fused head never builds them.
        Without, they are bf16 on a CPU that computes bf16 natively, else fp32.
        """
        x = self.hidden(idx)
        if targets is None:
            # scoring on a CPU: the head in bf16, as in training, is ~4x faster over the
            # whole split and changes the loss by <1e-4; oneDNN gives a row the same bits in
            # any batch, which the harness's probes check. Elsewhere the logits stay fp32.
            dtype = _fast_dtype("cpu") if x.device.type == "cpu" else torch.float32
            return F.linear(x.to(dtype), self.wte.weight.to(dtype)), None
        flat = x.reshape(-1, x.size(-1))
        threads = torch.get_num_threads()  # the head's big matmuls may take more (train.py)
        torch.set_num_threads(self.head_threads or threads)
        loss = FusedHeadLoss.apply(flat, self.wte.weight, targets.reshape(-1), self.head_dtype)
        torch.set_num_threads(threads)
        return None, loss

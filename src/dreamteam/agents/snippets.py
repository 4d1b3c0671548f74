"""The code the catalogue's techniques insert into candidates, as templates.

Each constant is Python source (a class, a function or a few statements) that a technique in
``techniques_training.py`` or ``techniques_model.py`` puts into a candidate's ``train.py`` or
``model.py``; ``SET_LR`` is a ``str.format`` template (``it``: the training loop's variable).
"""

LR_MULTIPLIER = '''
def lr_multiplier(it: int, iters: int) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio of the peak at the last step."""
    warmup = min(warmup_iters, max(iters // 10, 1))  # short runs warm up for a tenth of their steps
    if it < warmup:
        return (it + 1) / warmup
    progress = (it - warmup) / max(iters - warmup - 1, 1)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
'''

SET_LR = """
for group in optimizer.param_groups:
    group["lr"] = group.setdefault("peak_lr", group["lr"]) * lr_multiplier({it}, iters)
"""

MUON = '''
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

MUON_GROUPS = """
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

RMSNORM = '''
class RMSNorm(nn.Module):
    """Root-mean-square norm: LayerNorm without centring or bias; cheaper and trains as well."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight
'''

ROTARY = '''
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

SWIGLU = '''
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

FUSED_LOSS = '''
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

LOSS_FIELDS = """
label_smoothing: float = 0.0  # training only: the harness scores plain cross-entropy
z_loss: float = 0.0  # training only: weight of the log-partition penalty
"""

LOSS_TERMS = """
# label smoothing and z-loss shape training only: evaluation is plain cross-entropy
terms = (self.config.label_smoothing, self.config.z_loss) if self.training else (0.0, 0.0)
"""

"""The code the speedrun-playbook techniques insert into candidates, as templates.

Each constant is Python source that a technique in ``techniques_speedrun_model.py`` or
``techniques_speedrun_train.py`` puts into a candidate's ``model.py`` or ``train.py``.
``str.format`` templates name their fields in the comment above them.
"""

SOFTCAP = '''
def softcap(logits: torch.Tensor, cap: float) -> torch.Tensor:
    """cap * tanh(logits / cap): smooth, and bounded by the cap."""
    return cap * torch.tanh(logits / cap)


class SoftcapHeadLoss(torch.autograd.Function):
    """Linear LM head + cross-entropy on soft-capped logits, with the gradients computed in
    the forward (two logits-sized buffers: tanh, then the softmax that becomes the gradient)."""

    @staticmethod
    def forward(ctx, x, weight, targets, compute_dtype, cap):  # type: ignore[override]
        n = x.shape[0]
        xc, wc = x.to(compute_dtype), weight.to(compute_dtype)
        squashed = (xc @ wc.t()).float().div_(cap).tanh_()
        capped = squashed * cap
        lse = torch.logsumexp(capped, dim=-1)
        loss = (lse - capped.gather(1, targets[:, None]).squeeze(1)).mean()
        if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]):
            return loss
        # d(loss)/d(raw logits) = (softmax - onehot) * (1 - tanh^2) / n
        grad = capped.sub_(lse[:, None]).exp_()
        grad.scatter_add_(1, targets[:, None], torch.full_like(lse[:, None], -1.0))
        grad.mul_(squashed.square_().neg_().add_(1)).div_(n)
        grad_logits = grad.to(compute_dtype)
        ctx.save_for_backward((grad_logits @ wc).to(x.dtype), (grad_logits.t() @ xc).to(weight.dtype))
        return loss

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        grad_x, grad_w = ctx.saved_tensors
        return grad_x * grad_out, grad_w * grad_out, None, None, None
'''

# fields: blocks (the block list, e.g. `self.h`), var (the loop variable), call (the
# statement that runs one block, e.g. `x = block(x)`), x (the residual stream's name)
UNET_LOOP = """
# U-net: the first half's outputs come back, last in first out, to the second half
skips = []
for i, {var} in enumerate({blocks}):
    if i >= len({blocks}) - len(self.skip_weights):
        {x} = {x} + self.skip_weights[i - len({blocks}) + len(self.skip_weights)] * skips.pop()
    {call}
    if i < len(self.skip_weights):
        skips.append({x})
"""

CAUTIOUS_DECAY = '''
@torch.no_grad()
def cautious_decay(optimizer: torch.optim.Optimizer) -> None:
    """Decoupled weight decay, applied only where the update already moves a weight toward
    zero (the sign of its update direction, the momentum, equals the weight's sign)."""
    for group in optimizer.param_groups:
        wd = group.get("cautious_wd", 0.0)
        if not wd:
            continue
        for p in group["params"]:
            if p.grad is None:
                continue
            state = optimizer.state.get(p, {})
            direction = state.get("exp_avg", state.get("m", state.get("momentum", p.grad)))
            p.sub_(p * (direction * p > 0) * (group["lr"] * wd))
'''

# fields: optimizer (the variable the optimizer is bound to)
CAUTIOUS_GROUPS = """
# cautious weight decay: each group's decay moves out of the optimizer into a masked step
for group in {optimizer}.param_groups:
    group["cautious_wd"] = group.get("weight_decay", 0.0)
    group["weight_decay"] = 0.0
"""

LR_COOLDOWN = '''
def lr_cooldown(step: int, steps: int) -> float:
    """Hold the peak, then decay linearly over the last cooldown_frac of the steps to lr_floor."""
    left = 1 - step / max(steps, 1)
    return 1.0 if left >= cooldown_frac else lr_floor + (1 - lr_floor) * left / cooldown_frac
'''

# fields: optimizer, it (the loop variable), steps (the loop's length, as code)
SET_COOLDOWN = """
for group in {optimizer}.param_groups:
    group["lr"] = group.setdefault("peak_lr", group["lr"]) * lr_cooldown({it}, {steps})
"""

# fields: optimizer, it, steps
MOMENTUM_WARMUP = """
# Muon's momentum warms up from momentum_start over the first momentum_warmup steps
warm = min({it} / max(min(momentum_warmup, {steps} // 2), 1), 1.0)
for group in {optimizer}.param_groups:
    if "momentum" in group:
        final = group.setdefault("final_momentum", group["momentum"])
        group["momentum"] = (1 - warm) * momentum_start + warm * final
"""

LR_GROUPS = '''
def lr_groups(model: torch.nn.Module, lr: float, wd: float | None) -> list[dict]:
    """Parameter groups by role, each with its own learning rate: embedding tables (lr times
    embed_lr_scale), matrices (lr) and vectors and scalars (lr times scalar_lr_scale, no decay)."""
    tables = (m for _, m in model.named_modules() if isinstance(m, torch.nn.Embedding))
    embeds = {id(m.weight) for m in tables}
    roles: dict[str, list] = {"embed": [], "matrix": [], "scalar": []}
    for p in model.parameters():
        roles["embed" if id(p) in embeds else "matrix" if p.dim() >= 2 else "scalar"].append(p)
    decay = {} if wd is None else {"weight_decay": wd}
    groups = [
        {"params": roles["embed"], "lr": lr * embed_lr_scale, **decay},
        {"params": roles["matrix"], "lr": lr, **decay},
        {"params": roles["scalar"], "lr": lr * scalar_lr_scale, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]
'''

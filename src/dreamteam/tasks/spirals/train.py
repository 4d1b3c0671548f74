"""Train the baseline MLP on the spirals training split.

The harness runs this file in a sandbox as ``train(data_dir, out_dir, iters, seed, device)``.
``data_dir`` holds ``train.npz`` (arrays ``x``: float32 points, ``y``: int64 labels); the
evaluation split is never here. ``train`` must write ``out_dir/ckpt.pt`` =
{"model_args": dict, "state_dict": ...} so the harness can rebuild
``MLP(MLPConfig(**model_args))`` and score it itself, and return ``(best_vloss, elapsed_min)``:
an advisory loss on a held-out slice of the training split.
"""

import math
import os
import time

import numpy as np
import torch
from model import MLP, MLPConfig

# -----------------------------------------------------------------------------
# Protected: the harness checks these values before anything runs.
batch_size = 64
max_iters = 16000
# -----------------------------------------------------------------------------
# Free to change.
learning_rate = 1e-3
weight_decay = 0.0
beta1 = 0.9
beta2 = 0.999
hidden = 32
depth = 2
dropout = 0.0
grad_clip = 0.0  # 0 disables clipping
eval_interval = 100
holdout_fraction = 0.1  # tail of the training split kept out of training for the advisory vloss
# -----------------------------------------------------------------------------


@torch.no_grad()
def estimate_loss(model: MLP, x: torch.Tensor, y: torch.Tensor) -> float:
    """Loss on the whole holdout."""
    model.eval()
    _, loss = model(x, y)
    model.train()
    return loss.item()


def train(data_dir=".", out_dir=".", iters=max_iters, seed=1337, device="cpu"):
    """Train for ``iters`` optimizer steps; write the best checkpoint; return (best_vloss, minutes)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    with np.load(os.path.join(data_dir, "train.npz")) as data:
        x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    split = int(len(x) * (1 - holdout_fraction))
    x_train, y_train = x[:split].to(device), y[:split].to(device)
    x_hold, y_hold = x[split:].to(device), y[split:].to(device)

    model_args = dict(
        n_inputs=x.shape[1],
        n_classes=int(y.max()) + 1,
        hidden=hidden,
        depth=depth,
        dropout=dropout,
    )
    model = MLP(MLPConfig(**model_args)).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=learning_rate, betas=(beta1, beta2), weight_decay=weight_decay
    )

    best_vloss = math.inf
    start = time.time()
    for it in range(iters):
        ix = torch.randint(len(x_train), (batch_size,), generator=gen)
        _, loss = model(x_train[ix], y_train[ix])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if it % eval_interval == 0 or it == iters - 1:
            vloss = estimate_loss(model, x_hold, y_hold)
            print(f"iter {it}: loss {loss.item():.4f} vloss {vloss:.4f}", flush=True)
            if vloss < best_vloss:
                best_vloss = vloss
                ckpt = {"model_args": model_args, "state_dict": model.state_dict()}
                torch.save(ckpt, os.path.join(out_dir, "ckpt.pt"))
    elapsed_min = (time.time() - start) / 60
    return best_vloss, elapsed_min


if __name__ == "__main__":
    print(train())

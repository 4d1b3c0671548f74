"""Train the baseline MLP on the spirals training split.

The harness runs this file in a sandbox as ``train(data_dir, out_dir, iters, seed, device)``.
``data_dir`` holds ``train.npz`` (arrays ``x``: float32 points, ``y``: int64 labels); the
evaluation split is never here. ``train`` must write ``out_dir/ckpt.pt`` =
{"model_args": dict, "state_dict": ...} so the harness can rebuild
``MLP(MLPConfig(**model_args))`` and score it itself. It trains on all of ``train.npz`` and
saves its final weights (holding data out would only handicap it: the harness scores on a split
this file never sees), and returns ``(best_vloss, elapsed_min)``, ``best_vloss`` advisory: the
mean training loss over the last ``eval_interval`` steps.
"""

import os
import time
from collections import deque

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
# -----------------------------------------------------------------------------


def train(data_dir=".", out_dir=".", iters=max_iters, seed=1337, device="cpu"):
    """Train for ``iters`` optimizer steps; write the final checkpoint; return (best_vloss, minutes)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    with np.load(os.path.join(data_dir, "train.npz")) as data:
        x_train = torch.from_numpy(data["x"]).to(device)
        y_train = torch.from_numpy(data["y"]).to(device)

    model_args = dict(
        n_inputs=x_train.shape[1],
        n_classes=int(y_train.max()) + 1,
        hidden=hidden,
        depth=depth,
        dropout=dropout,
    )
    model = MLP(MLPConfig(**model_args)).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=learning_rate, betas=(beta1, beta2), weight_decay=weight_decay
    )

    recent: deque[torch.Tensor] = deque(maxlen=eval_interval)  # the last eval_interval losses
    start = time.time()
    for it in range(iters):
        ix = torch.randint(len(x_train), (batch_size,), generator=gen)
        _, loss = model(x_train[ix], y_train[ix])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        recent.append(loss.detach())
        if it % eval_interval == 0 or it == iters - 1:
            print(f"iter {it}: loss {torch.stack(list(recent)).mean().item():.4f}", flush=True)
    elapsed_min = (time.time() - start) / 60
    # the final weights are the ones the harness scores
    ckpt = {"model_args": model_args, "state_dict": model.state_dict()}
    torch.save(ckpt, os.path.join(out_dir, "ckpt.pt"))
    # advisory only (the contract's name): the mean training loss of the last eval_interval steps
    best_vloss = torch.stack(list(recent)).mean().item()
    return best_vloss, elapsed_min


if __name__ == "__main__":
    print(train())

"""Train the baseline GPT on tiny Shakespeare (GPT-2 BPE tokens).

The harness runs this file in a sandbox as ``train(data_dir, out_dir, iters, seed, device)``.
``data_dir`` holds ``train.bin`` (the training split, uint16 tokens); the validation split is
never here. ``train`` must write ``out_dir/ckpt.pt`` = {"model_args": dict, "state_dict": ...}
so the harness can rebuild ``GPT(GPTConfig(**model_args))`` and score it itself, and return
``(best_vloss, elapsed_min)``: an advisory loss on a held-out slice of the training split.

Run by hand:  python train.py  (from a folder holding train.bin and model.py)
"""

import math
import os
import time

import numpy as np
import torch
from model import GPT, GPTConfig

# -----------------------------------------------------------------------------
# Protected: the harness checks these values before anything runs.
batch_size = 8
block_size = 64
n_layer = 4
n_head = 4
n_embd = 32
max_iters = 10001
eval_interval = 100
# -----------------------------------------------------------------------------
# Free to change.
learning_rate = 3e-4
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
dropout = 0.0
grad_clip = 1.0  # 0 disables clipping
vocab_size = 50257  # GPT-2 BPE
holdout_fraction = 0.1  # tail of train.bin kept out of training for the advisory vloss
eval_batches = 8  # batches of the holdout per advisory evaluation
# -----------------------------------------------------------------------------


def get_batch(data: np.ndarray, gen: torch.Generator, device: str):
    """A random batch of (inputs, next-token targets), each batch_size x block_size."""
    ix = torch.randint(len(data) - block_size - 1, (batch_size,), generator=gen)
    rows = np.stack([data[i : i + block_size + 1] for i in ix.tolist()]).astype(np.int64)
    xy = torch.from_numpy(rows)
    return xy[:, :-1].to(device), xy[:, 1:].to(device)


@torch.no_grad()
def estimate_loss(model: GPT, holdout: np.ndarray, device: str) -> float:
    """Mean loss over a fixed set of holdout batches (same batches every time)."""
    model.eval()
    gen = torch.Generator().manual_seed(0)
    losses = [model(*get_batch(holdout, gen, device))[1].item() for _ in range(eval_batches)]
    model.train()
    return float(np.mean(losses))


def train(data_dir=".", out_dir=".", iters=max_iters, seed=1337, device="cpu"):
    """Train for ``iters`` optimizer steps; write the best checkpoint; return (best_vloss, minutes)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    tokens = np.memmap(os.path.join(data_dir, "train.bin"), dtype=np.uint16, mode="r")
    split = int(len(tokens) * (1 - holdout_fraction))
    train_data, holdout = tokens[:split], tokens[split:]

    model_args = dict(
        block_size=block_size,
        vocab_size=vocab_size,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        dropout=dropout,
    )
    model = GPT(GPTConfig(**model_args)).to(device)
    model.use_fast_head(torch.device(device).type)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=learning_rate,
        betas=(beta1, beta2),
        fused=torch.device(device).type in ("cpu", "cuda"),
    )

    best_vloss = math.inf
    start = time.time()
    for it in range(iters):
        x, y = get_batch(train_data, gen, device)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if it % eval_interval == 0 or it == iters - 1:
            vloss = estimate_loss(model, holdout, device)
            print(f"iter {it}: loss {loss.item():.4f} vloss {vloss:.4f}", flush=True)
            if vloss < best_vloss:
                best_vloss = vloss
                ckpt = {"model_args": model_args, "state_dict": model.state_dict()}
                torch.save(ckpt, os.path.join(out_dir, "ckpt.pt"))
    elapsed_min = (time.time() - start) / 60
    return best_vloss, elapsed_min


if __name__ == "__main__":
    print(train())

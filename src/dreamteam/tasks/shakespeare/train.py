"""Train the baseline GPT on tiny Shakespeare (GPT-2 BPE tokens).

The harness runs this file in a sandbox as ``train(data_dir, out_dir, iters, seed, device)``.
``data_dir`` holds ``train.bin`` (the training split, uint16 tokens); the validation split is
never here. ``train`` trains on all of ``train.bin`` and writes its final weights to
``out_dir/ckpt.pt`` = {"model_args": dict, "state_dict": ...}, so the harness can rebuild
``GPT(GPTConfig(**model_args))`` and score it itself on the whole validation split.
It returns ``(best_vloss, elapsed_min)``, where ``best_vloss`` is only advisory: the mean
training loss over the last ``eval_interval`` steps (no data is held out for it).

Run by hand:  python train.py  (from a folder holding train.bin and model.py)
"""

import os
import time
from collections import deque

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
# -----------------------------------------------------------------------------


def get_batch(data: np.ndarray, gen: torch.Generator, device: str):
    """A random batch of (inputs, next-token targets), each batch_size x block_size."""
    ix = torch.randint(len(data) - block_size - 1, (batch_size,), generator=gen)
    rows = np.stack([data[i : i + block_size + 1] for i in ix.tolist()]).astype(np.int64)
    xy = torch.from_numpy(rows)
    return xy[:, :-1].to(device), xy[:, 1:].to(device)


def train(data_dir=".", out_dir=".", iters=max_iters, seed=1337, device="cpu"):
    """Train ``iters`` steps on all of train.bin, save the final weights, return (loss, minutes).

    The returned loss is advisory: the mean training loss over the last ``eval_interval`` steps.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train_data = np.memmap(os.path.join(data_dir, "train.bin"), dtype=np.uint16, mode="r")

    model_args = dict(
        block_size=block_size,
        vocab_size=vocab_size,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        dropout=dropout,
    )
    model = GPT(GPTConfig(**model_args)).to(device)
    # On a CPU the LM head (512 x 50,257 logits) takes every thread, the rest of a step one:
    # the body, the backward and the update are ~300 tiny ops, and waking a second thread
    # for each costs more than it saves (steps 6% faster on 2 cores)
    threads = torch.get_num_threads()
    model.use_fast_head(torch.device(device).type, threads=threads)
    torch.set_num_threads(1)
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

    recent: deque[torch.Tensor] = deque(maxlen=eval_interval)  # the last eval_interval losses
    start = time.time()
    for it in range(iters):
        x, y = get_batch(train_data, gen, device)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        recent.append(loss.detach())
        if it % eval_interval == 0 or it == iters - 1:
            print(f"iter {it}: loss {torch.stack(list(recent)).mean().item():.4f}", flush=True)
    elapsed_min = (time.time() - start) / 60
    torch.set_num_threads(threads)
    # the final weights are the ones the harness scores
    ckpt = {"model_args": model_args, "state_dict": model.state_dict()}
    torch.save(ckpt, os.path.join(out_dir, "ckpt.pt"))
    # advisory only (the contract's name): the mean training loss of the last eval_interval steps
    best_vloss = torch.stack(list(recent)).mean().item()
    return best_vloss, elapsed_min


if __name__ == "__main__":
    print(train())

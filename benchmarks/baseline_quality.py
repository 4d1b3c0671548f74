"""Validation loss: dreamteam's baseline vs a plain fp32 nanoGPT-style reference recipe.

The reference is written afresh here as a task directory (train.py + model.py): the nanoGPT
model (LayerNorm, GELU MLP, tied embeddings, GPT-2 init, the 50,304-padded vocabulary) in
fp32 with `F.cross_entropy`, trained by `torch.optim.AdamW` at the seed hyperparameters of
the reference in benchmarks/baseline_speed.py (lr 3e-4 constant, betas 0.9/0.95, weight
decay 0.1, gradient clipping at 1.0) on all of train.bin, keeping the final weights. It has
the task's protected shape (batch 8, context 64, 4 layers, 4 heads, width 32).

Both recipes are scored the way a candidate is, by the CLI in a subprocess
(`dreamteam eval DIR --fidelity F --seeds N`: sandboxed training, then the whole validation
split), one after the other, never at once. The baseline is the built-in task's, copied out
by `dreamteam task init`.

    python benchmarks/baseline_quality.py [--fidelity full] [--seeds 2] [--quick]

The last line is `baseline - reference: <d> nats (...)`: negative means the baseline is better.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REFERENCE_MODEL = '''"""A plain nanoGPT-style GPT in fp32: LayerNorm, GELU MLP, tied embeddings."""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    block_size: int = 64
    vocab_size: int = 50304  # GPT-2's 50,257 padded to a multiple of 64, as nanoGPT does
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 32


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.n_head = config.n_head

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # tied
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss
'''

REFERENCE_TRAIN = '''"""The reference recipe: fp32, AdamW, all of train.bin, the final weights kept."""

import os
import time

import numpy as np
import torch
from model import GPT, GPTConfig

batch_size = 8
block_size = 64
n_layer = 4
n_head = 4
n_embd = 32
max_iters = 10001
eval_interval = 100


def get_batch(data, device):
    ix = torch.randint(len(data) - block_size - 1, (batch_size,))
    x = torch.stack([torch.from_numpy(data[i : i + block_size].astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + block_size].astype(np.int64)) for i in ix])
    return x.to(device), y.to(device)


def train(data_dir=".", out_dir=".", iters=max_iters, seed=1337, device="cpu"):
    torch.manual_seed(seed)
    data = np.memmap(os.path.join(data_dir, "train.bin"), dtype=np.uint16, mode="r")
    model_args = dict(block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd)
    model = GPT(GPTConfig(**model_args)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    start = time.time()
    for it in range(iters):
        _, loss = model(*get_batch(data, device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if it % eval_interval == 0 or it == iters - 1:
            print(f"iter {it}: loss {loss.item():.4f}", flush=True)
    ckpt = {"model_args": model_args, "state_dict": model.state_dict()}
    torch.save(ckpt, os.path.join(out_dir, "ckpt.pt"))
    return loss.item(), (time.time() - start) / 60
'''

SEED_LINE = re.compile(r"^seed (\d+): (\S+)(?: val_loss=([-+0-9.eE]+|nan|inf))?")


def write_reference(directory: Path) -> Path:
    """The reference recipe as a task directory (train.py + model.py)."""
    directory.mkdir(parents=True)
    (directory / "model.py").write_text(REFERENCE_MODEL, encoding="utf-8")
    (directory / "train.py").write_text(REFERENCE_TRAIN, encoding="utf-8")
    return directory


def write_baseline(directory: Path, env: dict[str, str]) -> Path:
    """The built-in task's baseline files, copied out by the CLI (not from a module path)."""
    subprocess.run(
        ["dreamteam", "task", "init", str(directory), "--from", "shakespeare"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    # scored as the built-in task (`--task shakespeare`), exactly like the reference
    (directory / "task.toml").unlink()
    return directory


def score(directory: Path, fidelity: str, seeds: int, env: dict[str, str]) -> list[float]:
    """Per-seed validation losses from `dreamteam eval`; exits if a seed does not score."""
    cmd = ["dreamteam", "eval", str(directory), "--task", "shakespeare"]
    cmd += ["--fidelity", fidelity, "--seeds", str(seeds)]
    print(f"$ {' '.join(cmd)}", flush=True)
    losses = []
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:  # streamed: a seed's line appears when it is scored
            print(line, end="", flush=True)
            m = SEED_LINE.match(line.strip())
            if m and m.group(2) == "ok" and m.group(3) is not None:
                losses.append(float(m.group(3)))
    if proc.returncode != 0 or len(losses) != seeds:
        sys.exit(f"{directory.name}: {len(losses)} of {seeds} seeds scored (see above)")
    return losses


def _sd(xs: list[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def main() -> None:
    """Score both recipes on the same seeds and print a table and the difference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fidelity", default="full", help="smoke, low, medium or full")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke fidelity, 1 seed")
    args = parser.parse_args()
    fidelity, seeds = ("smoke", 1) if args.quick else (args.fidelity, args.seeds)
    if shutil.which("dreamteam") is None:
        sys.exit("the `dreamteam` command is not on PATH: pip install -e . first")
    # wide enough that the CLI's console never wraps a per-seed line
    env = {**os.environ, "COLUMNS": "200"}

    with tempfile.TemporaryDirectory(prefix="baseline-quality-") as tmp:
        recipes = {
            "baseline": write_baseline(Path(tmp) / "baseline", env),
            "reference": write_reference(Path(tmp) / "reference"),
        }
        losses = {name: score(d, fidelity, seeds, env) for name, d in recipes.items()}

    print(f"\n{'recipe':<10} {'per-seed val_loss (seeds from 1337)':<40} {'mean':>8} {'sd':>8}")
    for name, xs in losses.items():
        per_seed = " ".join(f"{x:.4f}" for x in xs)
        print(f"{name:<10} {per_seed:<40} {statistics.fmean(xs):>8.4f} {_sd(xs):>8.4f}")
    (m1, s1), (m2, s2) = ((statistics.fmean(xs), _sd(xs)) for xs in losses.values())
    print(
        f"baseline - reference: {m1 - m2:+.4f} nats (baseline {m1:.4f} ± {s1:.4f}, "
        f"reference {m2:.4f} ± {s2:.4f}, fidelity={fidelity}, seeds={seeds})"
    )


if __name__ == "__main__":
    main()

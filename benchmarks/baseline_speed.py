"""Time per training iteration: a plain fp32 nanoGPT-style reference vs dreamteam's baseline.

Both train the same protected shape (batch 8, context 64, 4 layers, 4 heads, width 32,
GPT-2 vocabulary) on tiny Shakespeare, with an evaluation every 100 iterations, each in a
fresh subprocess; the two are interleaved (A B A B ...) so machine noise hits both alike.
The reference runs as a user would run it; the baseline runs in the environment the
sandbox gives every candidate (see dreamteam.harness.sandbox.launcher).

    python benchmarks/baseline_speed.py [--iters 300] [--rounds 2] [--quick] [--compare DIR]

--compare DIR also times another copy of the baseline (a folder holding its train.py and
model.py, e.g. an older checkout's) in the same rounds: a before/after from one run.

Each run also reports its CPU time per iteration (user + system, all threads: on a loaded
machine it moves less than the wall clock) and its mean training loss over its last 100
iterations (the same number of iterations on the same train.bin, seed 1337 for both), so a
speed-up that costs loss shows next to the ratio.
The last line is the ratio (reference wall ms/iter over baseline wall ms/iter).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

from dreamteam.harness.sandbox.launcher import candidate_environment
from dreamteam.tasks import load_task
from dreamteam.tasks.data import DataPaths, resolve_data

REFERENCE = r"""
import math, sys, time
import numpy as np, torch, torch.nn as nn
from torch.nn import functional as F

batch_size, block_size, n_layer, n_head, n_embd, vocab = 8, 64, 4, 4, 32, 50304

class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = Attn()
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))
    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))

class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, n_embd), nn.Embedding(block_size, n_embd)
        self.h = nn.ModuleList(Block() for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.wte.weight = self.lm_head.weight
    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.h:
            x = b(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))

data = np.memmap(sys.argv[1], dtype=np.uint16, mode="r")
iters = int(sys.argv[2])
torch.manual_seed(1337)
def batch():
    ix = torch.randint(len(data) - block_size - 1, (batch_size,))
    x = torch.stack([torch.from_numpy(data[i:i + block_size].astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + block_size].astype(np.int64)) for i in ix])
    return x, y
model = GPT()
opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
recent = []
start, cpu = time.perf_counter(), time.process_time()
for it in range(iters):
    if it % 100 == 0:
        with torch.no_grad():
            model.eval(); model(*batch()); model.train()
    loss = model(*batch())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    recent = (recent + [loss.item()])[-100:]
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
print(wall / iters * 1000, cpu / iters * 1000, sum(recent) / len(recent))
"""

OURS = r"""
import sys, time
sys.path.insert(0, sys.argv[3])
import torch._dynamo  # torch.optim imports it once (~1 s): the reference does before its clock
import train
iters = int(sys.argv[2])
start, cpu = time.perf_counter(), time.process_time()
loss, _ = train.train(data_dir=sys.argv[1], out_dir=sys.argv[4], iters=iters)
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
print(wall / iters * 1000, cpu / iters * 1000, loss)
"""


class Run(NamedTuple):
    """One training run: wall and CPU ms per iteration, mean loss of its last 100 iterations."""

    ms: float
    cpu_ms: float
    loss: float


def _time(script: str, args: list[str], env: dict[str, str]) -> Run:
    out = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, check=True
    )
    return Run(*map(float, out.stdout.strip().splitlines()[-1].split()))


def main() -> None:
    """Run both implementations side by side and print their medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="60 iterations, 1 round")
    parser.add_argument("--compare", type=Path, help="another baseline folder, timed alongside")
    args = parser.parse_args()
    iters, rounds = (60, 1) if args.quick else (args.iters, args.rounds)

    paths: DataPaths = resolve_data(mirror=os.environ.get("DREAMTEAM_DATA_MIRROR"))
    task = load_task("shakespeare")
    plain_env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    ref_runs: list[Run] = []
    our_runs: list[Run] = []
    other_runs: list[Run] = []
    with tempfile.TemporaryDirectory() as out:
        sandbox_env = candidate_environment(Path(out), threads=os.cpu_count() or 1)
        sandbox_env["PYTHONPATH"] = os.pathsep.join(sys.path)
        for _ in range(rounds):
            ref_runs.append(_time(REFERENCE, [str(paths.train), str(iters)], plain_env))
            our_args = [str(paths.train.parent), str(iters), str(task.root), out]
            our_runs.append(_time(OURS, our_args, sandbox_env))
            if args.compare:
                other_args = [str(paths.train.parent), str(iters), str(args.compare), out]
                other_runs.append(_time(OURS, other_args, sandbox_env))
    print(f"iterations per run: {iters}, rounds: {rounds}, torch threads: {os.cpu_count()}")
    ref = _report("reference (fp32 nanoGPT-style, plain env)", ref_runs)
    ours = _report("dreamteam baseline (sandbox env)         ", our_runs)
    if other_runs:
        other = _report(f"compared: {args.compare} (sandbox env)", other_runs)
        print(
            f"ratio reference/compared: {ref.ms / other.ms:.2f}x (cpu {ref.cpu_ms / other.cpu_ms:.2f}x)"
        )
    print(f"cpu ratio reference/baseline: {ref.cpu_ms / ours.cpu_ms:.2f}x")
    print(f"ratio reference/baseline: {ref.ms / ours.ms:.2f}x")


def _report(name: str, runs: list[Run]) -> Run:
    """Print one implementation's medians, its runs and losses; return the medians."""
    ms = statistics.median(r.ms for r in runs)
    cpu = statistics.median(r.cpu_ms for r in runs)
    times = ", ".join(f"{r.ms:.1f}" for r in runs)
    losses = ", ".join(f"{r.loss:.4f}" for r in runs)
    print(f"{name}: {ms:.1f} ms/iter (cpu {cpu:.1f})  runs=[{times}]  loss=[{losses}]")
    return Run(ms, cpu, statistics.median(r.loss for r in runs))


if __name__ == "__main__":
    main()

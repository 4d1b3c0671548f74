"""The baseline model and training script, run in-process (the harness runs them sandboxed)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from dreamteam.harness.scoring.common import PROBE_TOLERANCE
from dreamteam.tasks import load_task


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_fused_head_matches_plain_cross_entropy_and_its_gradients() -> None:
    model_mod = _load("model", load_task("shakespeare").root / "model.py")
    torch.manual_seed(0)
    x = torch.randn(16, 32, requires_grad=True)
    w = torch.randn(50257, 32, requires_grad=True)
    t = torch.randint(0, 50257, (16,))
    fused = model_mod.FusedHeadLoss.apply(x, w, t, torch.float32)
    gx, gw = torch.autograd.grad(fused, (x, w))
    plain = F.cross_entropy(x @ w.t(), t)
    px, pw = torch.autograd.grad(plain, (x, w))
    assert torch.allclose(fused, plain, atol=1e-5)
    assert torch.allclose(gx, px, atol=1e-6) and torch.allclose(gw, pw, atol=1e-7)


@pytest.mark.slow
def test_short_training_run_lowers_the_loss(tmp_path: Path, mirror: Path) -> None:
    root = load_task("shakespeare").root
    for name in ("model.py", "train.py"):
        shutil.copyfile(root / name, tmp_path / name)
    shutil.copyfile(mirror / "shakespeare" / "train.bin", tmp_path / "train.bin")
    sys.path.insert(0, str(tmp_path))
    try:
        model_mod = _load("model", tmp_path / "model.py")
        train = _load("train", tmp_path / "train.py")
        first, _ = train.train(data_dir=tmp_path, out_dir=tmp_path, iters=1)
        # advisory: the mean training loss of the last eval_interval steps (here all 25)
        recent, minutes = train.train(data_dir=tmp_path, out_dir=tmp_path, iters=25)
    finally:
        sys.path.remove(str(tmp_path))
    assert recent < first - 0.05
    assert minutes > 0
    # the checkpoint holds the final weights, which score well below a fresh model
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert ckpt["model_args"]["n_layer"] == 4
    config = model_mod.GPTConfig(**ckpt["model_args"])
    trained, fresh = model_mod.GPT(config).eval(), model_mod.GPT(config).eval()
    trained.load_state_dict(ckpt["state_dict"])
    tokens = np.fromfile(tmp_path / "train.bin", dtype=np.uint16)[:520].astype(np.int64)
    rows = torch.from_numpy(tokens).view(8, 65)
    with torch.no_grad():
        losses = [
            F.cross_entropy(m(rows[:, :-1])[0].flatten(0, 1), rows[:, 1:].flatten()).item()
            for m in (trained, fresh)
        ]
    assert losses[0] < losses[1] - 0.2, losses


def test_scoring_logits_of_a_row_agree_in_any_batch_and_prefix() -> None:
    # the harness's probes compare a window's logits across batches and processes at their
    # tolerance; logits rounded to bf16 would turn the least difference in the body into a
    # whole bf16 step, so there the scoring forward must give a row the same bits anywhere
    model_mod = _load("model", load_task("shakespeare").root / "model.py")
    torch.manual_seed(0)
    model = model_mod.GPT(model_mod.GPTConfig()).eval()
    x = torch.randint(0, 50257, (16, 64))
    with torch.no_grad():
        model.wte.weight.mul_(40)  # logits of a trained model's size (sd ~4): a bf16 step
        batch = model(x)[0]  # there is 0.03, ten times the probes' tolerance
        alone = model(x[5:6])[0]
        few = model(x[3:9])[0]
        changed = x[7:8].clone()
        changed[0, 40:] = torch.randint(0, 50257, (24,))
        prefix = model(changed)[0]
    assert batch.dtype == model_mod._fast_dtype("cpu")

    def agree(a: torch.Tensor, b: torch.Tensor) -> bool:  # as the probes compare them
        return torch.allclose(a.float(), b.float(), atol=PROBE_TOLERANCE, rtol=PROBE_TOLERANCE)

    assert agree(alone[0], batch[5]) and agree(few, batch[3:9])
    assert agree(prefix[0, :40], batch[7, :40])

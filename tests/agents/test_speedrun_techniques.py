"""The speedrun's playbook in the offline agent's catalogue: each edit passes the checks,
trains, rebuilds from its checkpoint and passes the harness's own causality probes; on code
written differently it edits what it can find, and otherwise finds nothing to change."""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import random
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from dreamteam.agents.snippets_speedrun import CAUTIOUS_DECAY, SOFTCAP
from dreamteam.agents.source_edit import Skip
from dreamteam.agents.techniques import CATALOGUE, MODEL, TRAIN, technique
from dreamteam.harness.checks import check_candidate
from dreamteam.harness.scoring.lm import build_windows, probe_failures
from dreamteam.personas.vocabulary import DIRECTIONS, TECHNIQUES
from dreamteam.tasks import load_task
from training import train_in_process

_MIRROR = Path(
    os.environ.get("DREAMTEAM_DATA_MIRROR")
    or Path(__file__).resolve().parents[3] / "shared" / "data"
)
DATA = _MIRROR / "shakespeare"
needs_data = pytest.mark.skipif(not (DATA / "val.bin").exists(), reason=f"no data at {DATA}")

PLAYBOOK = (
    "lr_floor",
    "muon_momentum_warmup",
    "split_lr",
    "cautious_wd",
    "logit_softcap",
    "unet_skips",
    "value_embeddings",
    "mtp_loss",
)
_NEEDS = {"muon_momentum_warmup": "muon"}  # edits what muon adds
_VOCAB, _CONTEXT = 50257, 64
_counter = itertools.count()

# The model's forward with a plain head (materialised logits, F.cross_entropy), as a user or
# another helper might write it: the techniques must find the head and the loss all the same.
PLAIN_FORWARD = '''
    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits (B, T, vocab) and, with targets, the mean cross-entropy."""
        x = self.hidden(idx)
        logits = F.linear(x, self.wte.weight)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss
'''


@pytest.fixture(scope="module")
def task():
    return load_task("shakespeare")


@pytest.fixture(scope="module")
def baseline(task) -> dict[str, str]:
    return task.baseline_files()


def _start(name: str, files: dict[str, str]) -> dict[str, str]:
    first = _NEEDS.get(name)
    return technique(first).apply(files, random.Random(0)) if first else dict(files)


def _plain_head(files: dict[str, str]) -> dict[str, str]:
    model = files[MODEL]
    cut = model.index("    def forward(self, idx")
    return {**files, MODEL: model[:cut] + PLAIN_FORWARD.lstrip("\n")}


def _import_model(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_speedrun_model_{next(_counter)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rebuilt(work: Path, trained: bool = True) -> torch.nn.Module:
    """The model as the harness rebuilds it: GPT(GPTConfig(**model_args)) + the state dict
    (``trained=False``: the same model as first built in training, train() seeds with 1)."""
    ckpt = torch.load(work / "ckpt.pt", weights_only=True)
    module = _import_model(work / MODEL)
    torch.manual_seed(1)
    model = module.GPT(module.GPTConfig(**ckpt["model_args"]))
    if trained:
        model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def _val_loss(model: torch.nn.Module) -> float:
    """Plain next-token cross-entropy on 8 validation windows, from the full logits."""
    tokens = np.fromfile(DATA / "val.bin", dtype=np.uint16)[: 8 * 65].astype(np.int64)
    rows = torch.from_numpy(tokens).view(8, 65)
    with torch.no_grad():
        logits = model(rows[:, :-1])[0][..., :_VOCAB].float()
    return F.cross_entropy(logits.reshape(-1, _VOCAB), rows[:, 1:].reshape(-1)).item()


def _kept(model: torch.nn.Module, rows: np.ndarray, columns: np.ndarray) -> dict[int, torch.Tensor]:
    """The logits of each row at the probed columns, 8 rows per forward pass."""
    kept, cols = {}, torch.from_numpy(columns)
    with torch.no_grad():
        for start in range(0, len(rows), 8):
            batch = torch.from_numpy(rows[start : start + 8])
            logits = model(batch)[0][..., :_VOCAB].float()
            for i, row in enumerate(logits):
                kept[start + i] = row[:, cols]
    return kept


def _probe(work: Path) -> list[str]:
    """The harness's integrity probes (causality, batch and process consistency) on the
    trained candidate: the scoring pass and the probe pass each get a freshly rebuilt model."""
    val = np.fromfile(DATA / "val.bin", dtype=np.uint16)[: _CONTEXT * 40 + 1]
    windows = build_windows(val, _CONTEXT, _VOCAB, random.Random(0))
    main = _kept(_rebuilt(work), windows.inputs, windows.columns)
    probe = _kept(_rebuilt(work), windows.probe_inputs, windows.columns)
    return probe_failures(windows, main, probe)


def _train_and_probe(files: dict[str, str], task, tmp: Path, iters: int) -> torch.nn.Module:
    report = check_candidate(files, task)
    assert report.ok, report.reason()
    data = tmp / "data"
    data.mkdir()
    (data / "train.bin").symlink_to(DATA / "train.bin")
    assert math.isfinite(train_in_process(files, data, tmp / "work", iters=iters))
    assert _probe(tmp / "work") == []
    model = _rebuilt(tmp / "work")
    before, after = _val_loss(_rebuilt(tmp / "work", trained=False)), _val_loss(model)
    assert after < before - 0.1, (before, after)  # it learned, and the checkpoint holds it
    return model


# --- the catalogue --------------------------------------------------------------------------


def test_the_playbook_is_in_the_catalogue_with_persona_keys():
    names = [t.name for t in CATALOGUE]
    for name in PLAYBOOK:
        t = technique(name)
        assert names.count(name) == 1 and t.why
        assert t.keys and set(t.keys) <= set(TECHNIQUES) | set(DIRECTIONS), name


@pytest.mark.parametrize("name", PLAYBOOK)
def test_each_applies_once_and_passes_the_checks(name, baseline, task):
    t, start = technique(name), _start(name, baseline)
    assert t.applies(start)
    out = t.apply(start, random.Random(1))
    assert out != start and check_candidate(out, task).ok
    assert not t.applies(out) or name == "lr_floor"  # a floor can move again, nothing else


@pytest.mark.parametrize("first", ["mtp_loss", "label_smoothing", "z_loss"])
def test_the_loss_techniques_stack_in_either_order(first, baseline, task):
    # CI's stacking fuzz found it: after mtp_loss the forward calls the fused loss twice, and the
    # loss terms' edit, written for one call, raised mid-edit instead of reporting it does not apply
    rng = random.Random(0)
    files = technique(first).apply(dict(baseline), rng)
    for name in ("mtp_loss", "label_smoothing", "z_loss"):
        if name != first and technique(name).applies(files):
            files = technique(name).apply(files, rng)
    assert check_candidate(files, task).ok


@needs_data
@pytest.mark.parametrize("name", PLAYBOOK)
def test_each_trains_rebuilds_and_passes_the_harness_probes(name, baseline, task, tmp_path):
    files = technique(name).apply(_start(name, baseline), random.Random(0))
    _train_and_probe(files, task, tmp_path, iters=20)


# --- code written differently ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["logit_softcap", "mtp_loss", "unet_skips", "value_embeddings"])
def test_model_techniques_find_a_plain_head(name, baseline, task):
    files = _plain_head(baseline)
    assert check_candidate(files, task).ok
    out = technique(name).apply(files, random.Random(0))
    assert check_candidate(out, task).ok
    if name == "mtp_loss":  # the auxiliary loss reads the next-but-one targets, contiguously
        assert "mtp_logits = F.linear(ahead, self.wte.weight)" in out[MODEL]
        assert "targets[:, 1:].contiguous().reshape(-1)" in out[MODEL]


@needs_data
def test_softcap_and_mtp_train_on_a_plain_head_and_cap_the_scored_logits(baseline, task, tmp_path):
    files = _plain_head(baseline)
    for name in ("logit_softcap", "mtp_loss"):
        files = technique(name).apply(files, random.Random(0))
    model = _train_and_probe(files, task, tmp_path, iters=20)
    cap = model.config.logit_cap
    with torch.no_grad():
        logits = model(torch.randint(0, _VOCAB, (2, _CONTEXT)))[0]
    assert logits.abs().max() <= cap


_NO_LOOP = ("        for block in self.h:\n            x = block(x)\n", "        x = self.h(x)\n")
_NO_LOSS = ("        loss = FusedHeadLoss.apply(", "        return None, FusedHeadLoss.apply(")
_WHILE = ("    for it in range(iters):\n", "    it = 0\n    while it < iters:\n        it += 1\n")


def _variant(files: dict[str, str], name: str, change: tuple[str, str]) -> dict[str, str]:
    assert change[0] in files[name]
    return {**files, name: files[name].replace(*change)}


@pytest.mark.parametrize(
    ("file", "change", "absent"),
    [
        (MODEL, _NO_LOOP, ("unet_skips", "value_embeddings")),
        (MODEL, _NO_LOSS, ("mtp_loss",)),
        (TRAIN, _WHILE, ("lr_floor", "split_lr", "cautious_wd")),
    ],
)
def test_a_missing_target_means_nothing_to_change(file, change, absent, baseline):
    files = _variant(baseline, file, change)
    for name in absent:
        t = technique(name)
        assert not t.applies(files), name
        with pytest.raises(Skip):
            t.transform(files, random.Random(0))


def test_the_floor_moves_the_cosine_schedule_floor(baseline, task):
    cosine = technique("cosine_schedule").apply(baseline, random.Random(0))
    out = technique("lr_floor").transform(cosine, random.Random(0))
    assert "cosine floor 0.1 ->" in out.detail and "lr_cooldown" not in out.files[TRAIN]
    assert re.search(r"^min_lr_ratio = (0\.0|0\.05|0\.2)\b", out.files[TRAIN], re.M)
    assert check_candidate(out.files, task).ok


# --- the inserted code, alone ---------------------------------------------------------------


def test_the_softcapped_head_has_the_gradient_autograd_computes():
    space: dict = {"torch": torch}
    exec(SOFTCAP, space)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    w = (3 * torch.randn(11, 5, generator=gen, dtype=torch.float64)).requires_grad_()
    targets = torch.randint(0, 11, (6,), generator=gen)
    fused = space["SoftcapHeadLoss"].apply(x, w, targets, torch.float64, 4.0)
    gx, gw = torch.autograd.grad(fused, (x, w))
    plain = torch.nn.functional.cross_entropy(space["softcap"](x @ w.t(), 4.0), targets)
    px, pw = torch.autograd.grad(plain, (x, w))
    # the head computes its logits in fp32, whatever the inputs' precision
    torch.testing.assert_close(fused.double(), plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gx, px, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw, pw, rtol=1e-5, atol=1e-6)


def test_cautious_decay_only_shrinks_weights_the_update_moves_toward_zero():
    space: dict = {"torch": torch}
    exec(CAUTIOUS_DECAY, space)
    p = torch.nn.Parameter(torch.tensor([1.0, -1.0, 1.0, -1.0]))
    p.grad = torch.ones(4)
    opt = torch.optim.SGD([p], lr=0.5)
    opt.param_groups[0]["cautious_wd"] = 0.2
    opt.state[p]["exp_avg"] = torch.tensor([1.0, 1.0, -1.0, -1.0])
    space["cautious_decay"](opt)
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, -1.0, 1.0, -0.9]))

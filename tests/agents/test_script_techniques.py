"""The techniques that find their code by what it does, on training scripts they have never
seen: each applies, parses, passes the checks and trains; each refuses a script with nothing
for it to change; a structural change may bring a learning-rate re-tune."""

from __future__ import annotations

import ast
import math
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamteam.agents.base import AgentRequest
from dreamteam.agents.offline import OfflineAgent, choose_and_apply
from dreamteam.agents.script_edit import optimizer_calls, training_loops
from dreamteam.agents.source_edit import Skip
from dreamteam.agents.techniques import for_any_script
from dreamteam.agents.techniques_loop import total_steps
from dreamteam.agents.techniques_script import rescaled, retune_lr, tune_literals
from dreamteam.harness.checks import check_candidate
from dreamteam.propose.changes import extract_record
from dreamteam.records import ChangeKind
from dreamteam.tasks import load_task_dir
from dreamteam.tasks.metric import load_metric
from training import train_in_process

RINGS = Path(__file__).resolve().parents[1] / "tasks" / "rings"
NAMES = (
    "tune_literals",
    "swap_optimizer",
    "split_decay",
    "warmup_schedule",
    "add_clipping",
    "layer_norm",
    "swap_activation",
)

# Another user's style for the same contract: optim imported from torch, a stack built from
# list literals, Tanh, an inline dropout, positional lr, epochs over a list of batches, a
# clipping call already there, the optimizer called `opt`.
UNSEEN = '''"""Rings, written differently."""

import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn, optim
from torch.nn import functional as F

batch_size = 32
steps = 300
epochs = 2


@dataclass
class ClassifierConfig:
    n_inputs: int = 2
    n_classes: int = 4
    width: int = 24


class Classifier(nn.Module):
    def __init__(self, config):
        super().__init__()
        layers = [nn.Linear(config.n_inputs, config.width), nn.Tanh(), nn.Dropout(0.1)]
        layers += [nn.Linear(config.width, config.width), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(config.width, config.n_classes)

    def forward(self, x):
        return self.out(self.body(x))


def train(data_dir=".", out_dir=".", iters=steps, seed=0, device="cpu"):
    torch.manual_seed(seed)
    with np.load(os.path.join(data_dir, "train.npz")) as data:
        x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    config = ClassifierConfig()
    net = Classifier(config)
    opt = optim.Adam(net.parameters(), 1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    start = time.time()
    done = 0
    for epoch in range(epochs):
        for xb, yb in batches:
            if done == iters:
                break
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            done += 1
    ckpt = {"model_args": asdict(config), "state_dict": net.state_dict()}
    torch.save(ckpt, os.path.join(out_dir, "ckpt.pt"))
    return loss.item(), (time.time() - start) / 60
'''

# Nothing any of the techniques looks for: no torch.optim, no layer stack, no activation.
BARE = '''"""A linear classifier trained by hand."""

import os

import numpy as np
import torch
from torch import nn

batch_size = 32
steps = 300
learning_rate = 0.1


class ClassifierConfig:
    def __init__(self, n_inputs=2, n_classes=4):
        self.n_inputs, self.n_classes = n_inputs, n_classes


class Classifier(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(config.n_inputs, config.n_classes))

    def forward(self, x):
        return x @ self.w


def train(data_dir=".", out_dir=".", iters=steps, seed=0, device="cpu"):
    data = np.load(os.path.join(data_dir, "train.npz"))
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    model = Classifier(ClassifierConfig())
    for _ in range(iters):
        idx = torch.randint(0, len(x), (batch_size,))
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        with torch.no_grad():
            model.w -= learning_rate * model.w.grad
            model.w.grad = None
    torch.save({"model_args": {}, "state_dict": model.state_dict()}, os.path.join(out_dir, "ckpt.pt"))
    return loss.item(), 0.0
'''


@pytest.fixture(scope="module")
def task():
    return load_task_dir(RINGS)


@pytest.fixture(scope="module")
def scripts(task) -> dict[str, dict[str, str]]:
    return {"rings": task.baseline_files(), "unseen": {"train.py": UNSEEN}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, task) -> Path:
    root = tmp_path_factory.mktemp("rings-data")
    metric = load_metric(task)
    assert metric.prepare is not None
    metric.prepare(root, 0)
    return root


def _technique(task, name: str):
    return next(t for t in for_any_script(task.protected, task.allowed_imports) if t.name == name)


def test_the_scripts_are_valid_candidates(task, scripts) -> None:
    for files in (*scripts.values(), {"train.py": BARE}):
        assert check_candidate(files, task).ok, check_candidate(files, task).reason()


@pytest.mark.parametrize("script", ["rings", "unseen"])
@pytest.mark.parametrize("name", NAMES)
def test_each_technique_edits_a_script_it_has_never_seen(task, scripts, name, script) -> None:
    files = scripts[script]
    t = _technique(task, name)
    if (name, script) == ("add_clipping", "unseen"):  # it clips already
        assert not t.applies(files)
        with pytest.raises(Skip):
            t.transform(files, random.Random(0))
        return
    assert t.applies(files)
    for seed in range(4):
        change = t.transform(files, random.Random(seed))
        assert change.files != files and change.detail
        report = check_candidate(change.files, task)
        assert report.ok, (name, seed, report.reason())


@pytest.mark.parametrize("name", [*NAMES, "retune_lr"])
def test_each_technique_refuses_a_script_with_nothing_to_change(task, name) -> None:
    files = {"train.py": BARE}
    t = retune_lr(frozenset()) if name == "retune_lr" else _technique(task, name)
    assert not t.applies(files)
    with pytest.raises(Skip):
        t.change(dict(files), random.Random(0))


@pytest.mark.parametrize("name", NAMES)
def test_each_technique_trains_on_the_rings_task(task, scripts, data_dir, tmp_path, name) -> None:
    files = _technique(task, name).apply(scripts["rings"], random.Random(3))
    assert math.isfinite(train_in_process(files, data_dir, tmp_path / "w", iters=30))


def test_the_unseen_scripts_schedule_trains(task, scripts, data_dir, tmp_path) -> None:
    files = _technique(task, "warmup_schedule").apply(scripts["unseen"], random.Random(0))
    assert math.isfinite(train_in_process(files, data_dir, tmp_path / "w", iters=30))


def test_swapping_the_optimizer_rescales_its_learning_rate(task, scripts) -> None:
    assert rescaled(0.05, "SGD", "Adam") == 0.003
    assert rescaled(0.05, "SGD", "SGD+nesterov") == 0.01
    assert rescaled(3e-3, "AdamW", "SGD+nesterov") == 0.01
    assert rescaled(10.0, "SGD", "Adam") == 0.01  # clamped into Adam's usual range
    seen = set()
    for seed in range(12):
        new = _technique(task, "swap_optimizer").apply(scripts["rings"], random.Random(seed))
        line = next(s for s in new["train.py"].splitlines() if "optimizer = " in s).strip()
        seen.add(line)
    assert seen == {
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)",
        "optimizer = torch.optim.Adam(model.parameters(), lr=0.003)",
        "optimizer = torch.optim.AdamW(model.parameters(), lr=0.003)",
    }


def test_a_learning_rate_constant_is_rescaled_unless_protected(task) -> None:
    src = task.baseline_files()["train.py"].replace("lr=0.05", "lr=learning_rate")
    src = src.replace("hidden = 32\n", "hidden = 32\nlearning_rate = 0.05\n")
    t = _technique(task, "swap_optimizer")
    out = t.apply({"train.py": src}, random.Random(1))["train.py"]
    assert "lr=learning_rate" in out and re.search(r"^learning_rate = 0\.0(03|1)$", out, re.M)
    # protected: the constant stays, the call scales it instead
    frozen = next(x for x in for_any_script(("learning_rate",), None) if x.name == "swap_optimizer")
    out = frozen.apply({"train.py": src}, random.Random(1))["train.py"]
    assert "learning_rate = 0.05\n" in out and "lr=(learning_rate) * 0." in out
    # and the re-tune leaves a protected learning rate alone
    assert retune_lr(frozenset()).applies({"train.py": src})
    assert not retune_lr(frozenset({"learning_rate"})).applies({"train.py": src})


def test_the_schedule_spans_the_steps_the_harness_asks_for(task, scripts) -> None:
    (rings,) = training_loops(scripts["rings"]["train.py"])
    assert total_steps(rings) == "iters"
    (unseen,) = training_loops(UNSEEN)
    assert unseen.optimizer == "opt" and total_steps(unseen) == "min(iters, epochs * len(batches))"
    # without the harness's argument, the loops' own ranges
    plain = UNSEEN.replace("iters=steps, ", "").replace("done == iters", "done == steps")
    (loop,) = training_loops(plain)
    assert total_steps(loop) == "epochs * len(batches)"
    out = _technique(task, "warmup_schedule").apply(scripts["unseen"], random.Random(0))
    assert out["train.py"].count("lr_schedule.step()") == 1
    # a task that may not import math gets the linear decay
    no_math = next(
        x for x in for_any_script(task.protected, ("torch", "numpy")) if x.name == "warmup_schedule"
    )
    for seed in range(6):
        text = no_math.apply(scripts["unseen"], random.Random(seed))["train.py"]
        assert "import math" not in text and "math.cos" not in text


def test_weight_decay_is_split_by_parameter_shape(task, scripts) -> None:
    out = _technique(task, "split_decay").apply(scripts["unseen"], random.Random(0))["train.py"]
    call = next(
        n
        for n in ast.walk(ast.parse(out))
        if isinstance(n, ast.Call) and "Adam" in ast.unparse(n.func)
    )
    assert [k.arg for k in call.keywords] == ["betas", "eps"]  # weight_decay moved to the groups
    groups = ast.unparse(call.args[0])
    assert "p.dim() >= 2" in groups and "p.dim() < 2" in groups and "'weight_decay': 0.0" in groups


def test_layer_norms_go_between_each_hidden_linear_and_its_activation(task, scripts) -> None:
    t = _technique(task, "layer_norm")
    rings = t.apply(scripts["rings"], random.Random(0))["train.py"]
    assert rings.count("nn.LayerNorm(config.hidden),\n            nn.ReLU()") == 2
    unseen = t.apply(scripts["unseen"], random.Random(0))["train.py"]
    assert unseen.count("nn.LayerNorm(config.width), nn.Tanh()") == 2
    assert not t.applies({"train.py": rings})  # normalised already


def test_the_activation_swap_replaces_every_use(task, scripts) -> None:
    out = _technique(task, "swap_activation").apply(scripts["unseen"], random.Random(0))["train.py"]
    assert "Tanh" not in out and len(re.findall(r"nn\.(ReLU|GELU|SiLU)\(\)", out)) == 2
    functional = UNSEEN.replace("return self.out(self.body(x))", "return self.out(F.relu(x))")
    functional = functional.replace("nn.Tanh()", "nn.ReLU()")
    out = _technique(task, "swap_activation").apply({"train.py": functional}, random.Random(0))
    assert "relu" not in out["train.py"].lower()


@settings(max_examples=60, deadline=None)
@given(
    lr=st.floats(1e-5, 1.0),
    momentum=st.floats(0.0, 0.99),
    p=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**32),
)
def test_inline_literals_move_one_or_two_and_stay_numbers(
    lr: float, momentum: float, p: float, seed: int
) -> None:
    src = (
        "import torch\nfrom torch import nn\nbatch_size = 32\n"
        "def build(model):\n"
        f"    drop = nn.Dropout({p!r})\n"
        f"    return torch.optim.SGD(model.parameters(), lr={lr!r}, momentum={momentum!r})\n"
    )
    try:
        out = tune_literals({"train.py": src}, random.Random(seed)).files["train.py"]
    except Skip:  # only when no new value could be drawn
        return
    tree = ast.parse(out)
    (opt,) = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func).endswith("SGD")
    ]
    new = {k.arg: ast.literal_eval(k.value) for k in opt.keywords}
    (drop,) = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and "Dropout" in ast.unparse(n.func)
    ]
    new_p = ast.literal_eval(drop.args[0])
    moved = [
        float(f"{lr:.3g}") != new["lr"] and lr != new["lr"],
        momentum != new["momentum"],
        p != new_p,
    ]
    assert 1 <= sum(moved) <= 2
    assert 0 < new["lr"] <= 3 * lr * 1.01 and new["lr"] >= 0.3 * lr * 0.99
    assert 0 <= new["momentum"] <= 0.99 and 0 <= new_p <= 0.5
    assert "batch_size = 32" in out


def test_a_structural_change_brings_a_learning_rate_retune(task, scripts) -> None:
    swap = _technique(task, "swap_optimizer")
    literals = _technique(task, "tune_literals")
    retune = retune_lr(frozenset(task.protected))
    counts = {}
    for priors in ((), ("adaptive_optimizers",)):
        retuned = 0
        for seed in range(30):
            files, done = choose_and_apply(
                scripts["rings"], priors, random.Random(seed), 1, [swap], retune
            )
            names = [t.name for t, _ in done]
            assert names[0] == "swap_optimizer" and names[1:] in ([], ["retune_lr"])
            if names[1:]:
                retuned += 1
                assert len(optimizer_calls(files)) == 1 and check_candidate(files, task).ok
            # hyperparameter moves never bring one
            _, done = choose_and_apply(
                scripts["rings"], priors, random.Random(seed), 1, [literals], retune
            )
            assert [t.name for t, _ in done] == ["tune_literals"]
        counts[priors] = retuned
    assert 0 < counts[()] < counts[("adaptive_optimizers",)] < 30


def test_change_records_say_structural_or_hyperparameter(task, scripts) -> None:
    base = scripts["rings"]
    lr_only = base["train.py"].replace("lr=0.05", "lr=0.1")
    assert extract_record(base, {"train.py": lr_only}).kind is ChangeKind.HYPERPARAMETER
    hidden = base["train.py"].replace("hidden = 32", "hidden = 64")
    assert extract_record(base, {"train.py": hidden}).kind is ChangeKind.HYPERPARAMETER
    for name in ("swap_optimizer", "layer_norm", "warmup_schedule"):
        files = _technique(task, name).apply(base, random.Random(0))
        assert extract_record(base, files).kind is ChangeKind.STRUCTURAL, name
    assert extract_record(base, base).kind is None


def test_persona_priors_pick_among_the_script_edits(task, scripts) -> None:
    agent = OfflineAgent(max_techniques=1, protected=task.protected, imports=task.allowed_imports)
    files = tuple(scripts["rings"].items())

    def drawn(keys: tuple[str, ...]) -> Counter[str]:
        texts = [
            agent.propose(AgentRequest("p", persona="p", techniques=keys, seed=s, files=files)).text
            for s in range(40)
        ]
        return Counter(t.splitlines()[1].split(":")[0].lstrip("- ") for t in texts)

    plain, norms, steps = drawn(()), drawn(("norms_activations",)), drawn(("lr_schedules",))
    layers = ("layer_norm", "swap_activation")
    assert sum(norms[n] for n in layers) > sum(plain[n] for n in layers) + 5
    assert steps["warmup_schedule"] > plain["warmup_schedule"] + 3
    # the script edits, plus the speedrun's two that fit any loop stepping an optimizer
    allowed = {*NAMES, "tune_hyperparameters", "split_lr", "lr_floor"}
    assert set(plain) <= allowed and len(plain) >= 6


def test_inline_literals_are_described_by_the_names_written_in_the_code() -> None:
    """`momentum 0.9 -> 0.8`, as in the call, not the draw's own kind (`memory`)."""
    src = "import torch\ndef build(m):\n    return torch.optim.SGD(m, lr=0.05, momentum=0.9)\n"
    for seed in range(20):
        detail = tune_literals({"train.py": src}, random.Random(seed)).detail
        assert detail.startswith(("lr 0.05 -> ", "momentum 0.9 -> ")), detail
        assert "memory" not in detail and "rate" not in detail

"""The offline agent on a task that is not the language model: the hyperparameter tuner, and
the catalogue techniques that apply to any torch training loop (the rest skip cleanly)."""

from __future__ import annotations

import ast
import contextlib
import itertools
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamteam.agents.base import AgentRequest
from dreamteam.agents.offline import OfflineAgent
from dreamteam.agents.techniques import CATALOGUE, technique
from dreamteam.agents.techniques_generic import hyperparameter_tuner, tunable
from dreamteam.harness.checks import check_candidate
from dreamteam.propose.edits import apply_edits, parse_edits
from dreamteam.tasks import load_task
from dreamteam.tasks.metric import load_metric
from training import train_in_process

TUNER_KINDS = {
    "learning_rate": "rate",
    "weight_decay": "decay",
    "beta1": "memory",
    "beta2": "memory",
    "hidden": "width",
    "depth": "depth",
    "dropout": "dropout",
    "grad_clip": "clip",
}


@pytest.fixture(scope="module")
def task():
    return load_task("spirals")


@pytest.fixture(scope="module")
def baseline(task) -> dict[str, str]:
    return task.baseline_files()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, task) -> Path:
    root = tmp_path_factory.mktemp("spirals-data")
    metric = load_metric(task)
    assert metric.prepare is not None
    metric.prepare(root, 0)
    return root


def _values(src: str) -> dict[str, object]:
    out = {}
    for stmt in ast.parse(src).body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                out[stmt.targets[0].id] = ast.literal_eval(stmt.value)
    return out


def test_the_tuner_finds_the_named_hyperparameters_and_not_the_protected(baseline, task) -> None:
    found = {f.name: f.kind.name for f in tunable(baseline, task.protected)}
    assert found == TUNER_KINDS
    assert "hidden" not in {f.name for f in tunable(baseline, ("hidden",))}
    # numbers without a hyperparameter's name are not guessed at
    assert tunable({"train.py": "x = 1\nvocab_size = 50257\neval_interval = 100\n"}) == []
    assert (
        tunable({"train.py": "hidden = 64.5\nlearning_rate = True\n", "notes.md": "lr = 1"}) == []
    )


def test_the_tuner_leaves_the_language_models_protected_constants_alone() -> None:
    lm = load_task("shakespeare")
    names = {f.name for f in tunable(lm.baseline_files())}
    assert names and not names & set(lm.protected)


@settings(max_examples=80, deadline=None)
@given(
    value=st.floats(1e-6, 0.999, allow_nan=False),
    width=st.integers(1, 4096),
    depth=st.integers(1, 12),
    seed=st.integers(0, 2**32),
)
def test_drawn_values_keep_their_kind_and_bounds(
    value: float, width: int, depth: int, seed: int
) -> None:
    names = ("learning_rate", "weight_decay", "dropout", "beta2", "hidden", "depth")
    src = (
        f"learning_rate = {value!r}\nweight_decay = {value!r}\ndropout = {value!r}\n"
        f"beta2 = {value!r}\nhidden = {width}\ndepth = {depth}\n"
    )
    files = {"train.py": src}
    try:
        out = hyperparameter_tuner().apply(files, random.Random(seed))
    except Exception as exc:  # only "nothing new to draw" may stop it
        assert type(exc).__name__ == "Skip"
        return
    new = _values(out["train.py"])
    assert set(new) == set(names)
    assert isinstance(new["hidden"], int)
    assert new["hidden"] == width or (new["hidden"] % 8 == 0 and new["hidden"] >= 8)
    assert isinstance(new["depth"], int) and 1 <= new["depth"] <= 12
    assert (isinstance(new["dropout"], float) and 0 <= new["dropout"] <= 0.3) or new[
        "dropout"
    ] == value
    assert 0.5 <= new["beta2"] <= 0.9999 or new["beta2"] == value
    assert new["learning_rate"] > 0 and new["weight_decay"] >= 0
    assert sum(new[n] != _values(src)[n] for n in names) in (1, 2)


def test_transformer_techniques_skip_the_classifier_and_the_rest_pass_the_checks(
    baseline, task
) -> None:
    applying = [t.name for t in CATALOGUE if t.applies(baseline)]
    # the training techniques fit any torch loop; attention, norms, heads and Muon do not
    assert set(applying) == {
        "cosine_schedule",
        "tune_lr",
        "weight_decay",
        "dropout",
        "adam_betas",
        "grad_clip",
        "lr_floor",  # the speedrun's schedule floor and per-role learning rates
        "split_lr",  # need only a loop that steps an optimizer
    }
    for name in [*applying, "tune_hyperparameters"]:
        t = technique(name) if name != "tune_hyperparameters" else hyperparameter_tuner()
        for seed in range(4):
            out = t.apply(baseline, random.Random(seed))
            report = check_candidate(out, task)
            assert report.ok, (name, report.reason())


@pytest.mark.parametrize(
    "name",
    [
        "cosine_schedule",
        "tune_lr",
        "weight_decay",
        "dropout",
        "adam_betas",
        "grad_clip",
        "lr_floor",
        "split_lr",
        "tuner",
    ],
)
def test_each_applicable_technique_trains_on_the_classifier(name, baseline, data_dir, tmp_path):
    t = hyperparameter_tuner() if name == "tuner" else technique(name)
    files = t.apply(baseline, random.Random(1))
    assert math.isfinite(train_in_process(files, data_dir, tmp_path / "w", iters=60))


def _answer(agent: OfflineAgent, files: dict[str, str], persona: str, seed: int, task) -> dict:
    request = AgentRequest(
        prompt="(prompt)", persona=persona, seed=seed, files=tuple(files.items())
    )
    text = agent.propose(request).text
    assert "```python\ntrain.py\n" in text  # the names the request used
    result = apply_edits(files, parse_edits(text, files, task.aliases))
    assert not result.failures, result.failures
    return dict(result.files)


def test_the_offline_agent_gives_many_distinct_valid_candidates(baseline, task) -> None:
    agent = OfflineAgent(protected=task.protected)
    seen = set()
    for persona, seed in itertools.product(("archimedes", "hopper", "noether"), range(5)):
        files = _answer(agent, baseline, persona, seed, task)
        assert check_candidate(files, task).ok
        seen.add(tuple(sorted(files.items())))
    assert len(seen) >= 10


def test_the_offline_agent_never_tunes_a_protected_constant(baseline, task) -> None:
    agent = OfflineAgent(max_techniques=2, protected=("hidden", *task.protected))
    for seed in range(20):
        files = _answer(agent, baseline, "p", seed, task)
        assert _values(files["train.py"])["hidden"] == 32

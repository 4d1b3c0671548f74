"""Ablation of a winner: its change split into parts, each reverted alone (nothing else moves),
the contributions and the simplest recipe from seeds, and `dreamteam ablate` on a real run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamteam.agents import Credentials, build_team, parse_model_map
from dreamteam.agents.offline import OfflineAgent
from dreamteam.agents.source_edit import number
from dreamteam.cli.ablation import ablate_run
from dreamteam.config import RunConfig
from dreamteam.errors import StoreError
from dreamteam.harness.checks import check_candidate
from dreamteam.loop.ablate import NotSeparable, revert, split_parts
from dreamteam.loop.ablation import PartStatus, ablate, load, save
from dreamteam.loop.build import build_search
from dreamteam.personas import load_library
from dreamteam.propose.changes import extract_record
from dreamteam.records import Status, TrialResult
from dreamteam.store import RunStore
from dreamteam.tasks import load_task
from loopback import LoopbackLLM
from test_search import FakeExecutor

TASK = load_task("shakespeare")
BASE = TASK.baseline_files()
LR, WD, CLIP = "learning_rate = 3e-4", "weight_decay = 0.1", "grad_clip = 1.0"
WIN_TRAIN = (
    BASE["train.py"]
    .replace(LR, "learning_rate = 3e-3")
    .replace(WD, "weight_decay = 0.0")
    .replace(CLIP, "grad_clip = 0.0")
)
WINNER = {**BASE, "train.py": WIN_TRAIN}

SCALE = '''class Scale(nn.Module):
    """A learned scale."""

    def __init__(self, n: int):
        super().__init__()
        self.g = nn.Parameter(torch.ones(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.g


class Block(nn.Module):'''


def _structural() -> dict[str, str]:
    """A winner with every kind of part: constant, keyword value, keyword added with an
    edited function, an edited method, an added class, other top-level code."""
    train = (
        WIN_TRAIN.replace("fused=torch.device", "eps=1e-6,\n        fused=torch.device")
        .replace("set_to_none=True", "set_to_none=False")
        .replace(
            "        _, loss = model(x, y)\n",
            "        _, loss = model(x, y)\n        loss = loss * 1.0\n",
        )
        .replace("import os\n", "import math\nimport os\n")
    )
    model = (
        BASE["model.py"]
        .replace("F.gelu(self.c_fc(x))", "F.silu(self.c_fc(x))")
        .replace("class Block(nn.Module):", SCALE)
    )
    return {"train.py": train, "model.py": model}


def _only(variant: Mapping[str, str], winner: Mapping[str, str], part: object) -> None:
    """The variant differs from the winner in exactly that part."""
    record = extract_record(variant, winner)
    assert record is not None
    assert set(record.moves) == set(part.moves)  # type: ignore[attr-defined]
    assert set(record.edits) == set(part.edits)  # type: ignore[attr-defined]


def test_the_hand_made_winner_splits_into_its_three_moves() -> None:
    parts = split_parts(BASE, WINNER)
    assert [p.label for p in parts] == [
        "grad_clip 1.0→0.0",
        "learning_rate 0.0003→0.003",
        "weight_decay 0.1→0.0",
    ]
    for part in parts:
        variant = revert(BASE, WINNER, parts, [part])
        _only(variant, WINNER, part)
        assert check_candidate(variant, TASK).ok
        # text-wise too: one line differs, spelled as the baseline spells it
        changed = set(variant["train.py"].splitlines()) - set(WIN_TRAIN.splitlines())
        assert len(changed) == 1 and changed <= set(BASE["train.py"].splitlines())
    assert revert(BASE, WINNER, parts, parts) == BASE


def test_structural_parts_revert_alone_and_together() -> None:
    winner = _structural()
    parts = split_parts(BASE, winner)
    labels = [p.label for p in parts]
    assert sorted(labels) == sorted(
        [
            "learning_rate 0.0003→0.003",
            "weight_decay 0.1→0.0",
            "grad_clip 1.0→0.0",
            "train:zero_grad(set_to_none) True→False",
            "edited MLP.forward (model.py)",
            "added Scale (model.py)",  # one part with its methods
            "edited top-level code (train.py)",
            "edited train (train.py)",  # with the keyword it added
        ]
    )
    by_label = {p.label: p for p in parts}
    assert [m.name for m in by_label["edited train (train.py)"].moves] == ["train:AdamW(eps)"]
    assert len(by_label["added Scale (model.py)"].edits) == 3
    for part in parts:
        variant = revert(BASE, winner, parts, [part])
        _only(variant, winner, part)
        assert check_candidate(variant, TASK).ok, part.label
    # the function's baseline text came back, but its moved keyword kept the winner's value
    without_edit = revert(BASE, winner, parts, [by_label["edited train (train.py)"]])
    assert (
        "set_to_none=False" in without_edit["train.py"] and "eps=" not in without_edit["train.py"]
    )
    record = extract_record(BASE, revert(BASE, winner, parts, parts))
    assert record is not None and record.empty


def test_a_removed_definition_goes_back_after_its_baseline_neighbour() -> None:
    gone = BASE["model.py"].replace(
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
        "        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))\n",
        "",
    )
    assert gone != BASE["model.py"]
    winner = {**BASE, "model.py": gone}
    parts = split_parts(BASE, winner)
    assert [p.label for p in parts] == ["removed MLP.forward (model.py)"]
    back = revert(BASE, winner, parts, parts)
    record = extract_record(BASE, back)
    assert record is not None and record.empty and check_candidate(back, TASK).ok
    assert back["model.py"].index("def forward") < back["model.py"].index("class Block")


def test_a_class_whose_own_lines_changed_is_not_separable() -> None:
    winner = {
        **BASE,
        "model.py": BASE["model.py"].replace(
            "class MLP(nn.Module):", "class MLP(nn.Module, object):"
        ),
    }
    parts = split_parts(BASE, winner)
    assert [p.label for p in parts] == ["edited MLP (model.py)"]
    with pytest.raises(NotSeparable, match="class MLP"):
        revert(BASE, winner, parts, parts)


@settings(max_examples=10, deadline=None, database=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["learning_rate", "weight_decay", "beta1", "beta2", "dropout", "grad_clip"]
        ),
        st.floats(min_value=1e-6, max_value=10.0, allow_nan=False),
        min_size=1,
    )
)
def test_any_set_of_moved_constants_reverts_one_at_a_time(values: dict[str, float]) -> None:
    train = BASE["train.py"]
    for name, value in values.items():
        train = re.sub(rf"^{name} = \S+", f"{name} = {value!r}", train, flags=re.M)
    winner = {**BASE, "train.py": train}
    parts = split_parts(BASE, winner)
    for part in parts:
        _only(revert(BASE, winner, parts, [part]), winner, part)
    assert revert(BASE, winner, parts, parts) == BASE


def _fake_train(files: Mapping[str, str]) -> list[TrialResult]:
    """Loss 5.0, minus 0.5 for the higher learning rate; weight decay and clipping worth nothing;
    a seed-to-seed spread of 0.01."""
    lr = number(files["train.py"], "learning_rate")
    mean = 5.0 - (0.5 if lr > 1e-3 else 0.0)
    return [
        TrialResult(Status.OK, "", seed, "smoke", 10, mean + 0.01 * (i % 2 * 2 - 1))
        for i, seed in enumerate((1, 2, 3))
    ]


def test_contributions_the_recipe_and_what_carries_the_gain(tmp_path: Path) -> None:
    seen = []
    result = ablate(
        TASK,
        BASE,
        WINNER,
        _fake_train,
        candidate="g1-x",
        fidelity="smoke",
        seeds=(1, 2, 3),
        on_part=seen.append,
    )
    assert [p.status for p in seen] == [PartStatus.MEASURED] * 3
    contributions = {p.label: p.contribution for p in result.parts}
    lr = contributions["learning_rate 0.0003→0.003"]
    assert lr is not None and lr.delta == pytest.approx(0.5) and lr.ci95 > 0
    assert result.carries == "learning_rate 0.0003→0.003"
    assert result.recipe is not None
    assert set(result.recipe.dropped) == {"grad_clip 1.0→0.0", "weight_decay 0.1→0.0"}
    assert result.recipe.vs_winner is not None and result.recipe.vs_winner.delta == pytest.approx(0)
    assert result.recipe.vs_baseline is not None
    assert result.recipe.vs_baseline.delta == pytest.approx(-0.5)
    save(tmp_path, result)
    stored = load(tmp_path)["g1-x"]
    assert stored["carries"] == result.carries and len(stored["parts"]) == 3
    assert json.loads((tmp_path / "ablation.json").read_text())["g1-x"]["fidelity"] == "smoke"


# -- end to end -----------------------------------------------------------------------------
CLI = [sys.executable, "-c", "from dreamteam.cli import main; main()"]
ANSWER = (
    "Raise the learning rate, drop weight decay and clipping.\n\n"
    "```python\ntrain.py\n" + WIN_TRAIN + "```\n"
)


@pytest.mark.slow
def test_ablate_a_real_run_names_the_learning_rate(tmp_path: Path, mirror: Path) -> None:
    env = dict(os.environ, DREAMTEAM_HOME=str(tmp_path), DREAMTEAM_DATA_MIRROR=str(mirror))
    run_dir = tmp_path / "run"
    with LoopbackLLM(ANSWER) as llm:
        done = subprocess.run(
            [
                *CLI,
                "run",
                "--model",
                f"openai-compatible:tiny@{llm.url}",
                "--fidelity",
                "smoke",
                "--screen-fidelity",
                "smoke",
                "--generations",
                "1",
                "--team-size",
                "1",
                "--run-dir",
                str(run_dir),
                "--plain",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    ablated = subprocess.run(
        [*CLI, "ablate", str(run_dir), "--fidelity", "smoke", "--seeds", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert ablated.returncode == 0, ablated.stderr[-2000:]
    print(done.stdout[-600:], ablated.stdout)  # the figures, for the record (-s)
    lines = ablated.stdout.strip().splitlines()
    assert lines[-1].startswith("carries the gain: learning_rate 0.0003→0.003 (+")
    stored = load(run_dir)
    (entry,) = stored.values()
    assert entry["carries"] == "learning_rate 0.0003→0.003" and len(entry["parts"]) == 3


def test_ablating_the_baseline_or_an_unknown_candidate_is_a_one_line_error(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.create_run("run", "shakespeare", {"task": "shakespeare"}, [])
    team = build_team(parse_model_map("offline"), Credentials.from_env({}), offline=OfflineAgent)
    config = RunConfig(generations=1, personas=("archimedes",), fidelity="smoke")
    build_search(
        config, store, task=TASK, library=load_library(), agents=team, executor=FakeExecutor()
    ).run()
    team.close()
    store.close()
    with pytest.raises(StoreError, match="the best is the baseline"):
        ablate_run(tmp_path / "run", "g0-baseline", "smoke", 2)
    with pytest.raises(StoreError, match=r"no candidate 'g9-nobody'.*dreamteam show"):
        ablate_run(tmp_path / "run", "g9-nobody", "smoke", 2)

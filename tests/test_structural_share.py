"""--structural-share: a share of each generation's proposals is asked for a structural change;
LLM agents read the request in their prompt, the offline agent draws accordingly."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dreamteam.agents import build_team, parse_model_map
from dreamteam.agents.base import AgentRequest
from dreamteam.agents.factory import Credentials
from dreamteam.agents.offline import OfflineAgent
from dreamteam.config import RunConfig, load_run_config
from dreamteam.errors import ConfigError
from dreamteam.propose.allocation import reserved_for_structure
from dreamteam.propose.changes import extract_record
from dreamteam.propose.edits import apply_edits, parse_edits
from dreamteam.propose.prompt import STRUCTURAL_REQUEST
from dreamteam.records import CandidateKind, ChangeKind
from dreamteam.store import RunStore
from dreamteam.tasks import load_task
from test_search import FakeExecutor, _Scripted, fake_search

TEAM = 6
_MAIN = "from dreamteam.cli import main; main()"


@pytest.mark.parametrize("share", [0.0, 0.1, 0.25, 0.5, 0.7, 1.0])
def test_every_first_n_slots_hold_their_share(share: float) -> None:
    marks = [reserved_for_structure(k, share) for k in range(40)]
    for n in range(1, 41):
        assert sum(marks[:n]) == math.ceil(n * share - 1e-9), n


def test_the_share_is_a_fraction() -> None:
    assert load_run_config(None, {"structural_share": 0.5}).structural_share == 0.5
    assert RunConfig().structural_share == 0.0  # off unless asked
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ConfigError, match="--structural-share"):
            load_run_config(None, {"structural_share": bad})


def _run(tmp_path: Path, share: float, agents) -> RunStore:
    store = RunStore(tmp_path / "run")
    store.create_run("run", "shakespeare", {}, [])
    config = RunConfig(
        generations=2, team_size=TEAM, fidelity="smoke", structural_share=share, seed=3, repair=0
    )
    fake_search(config, store, agents, FakeExecutor()).run()
    return store


def _kinds(store: RunStore) -> dict[int, list[ChangeKind | None]]:
    """Each generation's proposals' labels, from their change records."""
    kinds: dict[int, list[ChangeKind | None]] = {}
    for c in store.candidates():
        if c.kind != CandidateKind.BASELINE and not c.id.endswith("-r"):
            kinds.setdefault(c.generation, []).append(c.record.kind if c.record else None)
    return kinds


def _offline():
    return build_team(
        parse_model_map("offline"), Credentials.from_env({}), offline=lambda: OfflineAgent(seed=0)
    )


@pytest.mark.parametrize("share", [1.0, 0.5])
def test_the_offline_agent_gives_each_generation_its_structural_share(tmp_path, share) -> None:
    kinds = _kinds(_run(tmp_path, share, _offline()))
    assert sorted(kinds) == [1, 2]
    for generation, labels in kinds.items():
        assert len(labels) == TEAM, generation
        structural = labels.count(ChangeKind.STRUCTURAL)
        assert structural >= math.ceil(share * TEAM), (generation, labels)


def test_the_offline_agent_draws_a_structural_change_when_asked() -> None:
    task = load_task("shakespeare")
    files = task.baseline_files()
    agent = OfflineAgent(seed=0, max_techniques=1)
    for seed in range(12):
        request = AgentRequest(
            prompt="p",
            persona="ada",
            techniques=("lr_schedules", "regularization"),  # priors on value-only moves
            seed=seed,
            files=tuple(files.items()),
            structural=True,
        )
        text = agent.propose(request).text
        after = apply_edits(files, parse_edits(text, files, {})).files
        record = extract_record(files, after)
        assert record is not None and record.kind is ChangeKind.STRUCTURAL, text[:200]


def test_an_llm_agent_reads_the_request_in_its_prompt(tmp_path) -> None:
    agent = _Scripted(["No change."])
    team = build_team(parse_model_map("offline"), Credentials.from_env({}), offline=lambda: agent)
    _run(tmp_path, 0.5, team)
    per_generation = len(agent.prompts) // 2
    first = agent.prompts[:per_generation]
    asked = [STRUCTURAL_REQUEST in p for p in first]
    assert asked == [reserved_for_structure(k, 0.5) for k in range(per_generation)]
    assert "must be structural" in agent.prompts[0]


def test_no_share_no_request(tmp_path) -> None:
    agent = _Scripted(["No change."])
    team = build_team(parse_model_map("offline"), Credentials.from_env({}), offline=lambda: agent)
    _run(tmp_path, 0.0, team)
    assert agent.prompts and not any(STRUCTURAL_REQUEST in p for p in agent.prompts)


@pytest.mark.parametrize("value", ["1.5", "-0.2"])
def test_a_share_outside_0_to_1_is_a_one_line_error(tmp_path, value) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _MAIN, "run", "--plain", "--structural-share", value],
        capture_output=True,
        text=True,
        env=dict(os.environ, DREAMTEAM_HOME=str(tmp_path / "home")),
        timeout=120,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "--structural-share" in done.stderr
    assert not (tmp_path / "home" / "runs").exists() or not any(
        (tmp_path / "home" / "runs").iterdir()
    )

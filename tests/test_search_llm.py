"""The research loop with a real LLM client: a local OpenAI-compatible server, then a replay.

The server runs on 127.0.0.1 in this process and answers in the seeds' format; the run is
recorded to a cassette and a second run replays it with no server at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dreamteam.agents import Credentials, build_team, parse_model_map
from dreamteam.agents.offline import OfflineAgent
from dreamteam.config import RunConfig
from dreamteam.store import RunStore
from dreamteam.tasks import load_task
from loopback import LoopbackLLM
from test_search import fake_search

BASELINE_TRAIN = load_task("shakespeare").baseline_files()["train.py"]
ANSWER = (
    "Raise the learning rate: the baseline's 3e-4 is far too timid for a 32-wide model.\n\n"
    "```python\ntrain_mps.py\n"
    + BASELINE_TRAIN.replace("learning_rate = 3e-4", "learning_rate = 2e-3")
    + "```\n\n```python\nmodel.py\n```\n"
)


@pytest.fixture
def server() -> Iterator[LoopbackLLM]:
    with LoopbackLLM(ANSWER) as llm:
        yield llm


def _run(tmp_path: Path, name: str, model: str, record: Path | None = None) -> RunStore:
    config = RunConfig(
        generations=1, personas=("archimedes", "aristotle"), fidelity="smoke", model=model
    )
    team = build_team(
        parse_model_map(model),
        Credentials.from_env({}),
        record=record,
        offline=lambda: OfflineAgent(),
    )
    store = RunStore(tmp_path / name)
    store.create_run(name, "shakespeare", {}, [])
    fake_search(config, store, team).run()
    team.close()
    return store


def test_a_run_through_a_local_server_then_replayed_without_it(
    tmp_path: Path, server: LoopbackLLM
) -> None:
    cassette = tmp_path / "cassette.jsonl"
    live = _run(tmp_path, "live", f"openai-compatible:tiny@{server.url}", record=cassette)
    proposals = [c for c in live.candidates() if c.generation == 1]
    assert [c.persona for c in proposals] == ["archimedes", "aristotle"]
    first = proposals[0]
    assert first.status == "ok" and "learning_rate = 2e-3" in first.files["train.py"]
    assert first.tokens_in == 1200 and first.tokens_out == 900
    assert proposals[1].kind == "duplicate"  # the same answer twice is trained once
    prompts = sorted(server.prompts, key=lambda p: "Aristotle" in p)  # asked at once
    assert "You are Archimedes of Syracuse" in prompts[0]
    assert "## The current code" in prompts[0]

    replayed = _run(tmp_path, "replay", f"replay:{cassette}")
    again = [c for c in replayed.candidates() if c.generation == 1]
    assert [c.code_hash for c in again] == [c.code_hash for c in proposals]

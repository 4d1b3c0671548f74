"""Repair and steering through a real LLM client: a loopback OpenAI-compatible server first
answers with a candidate that fails the checks, then, shown the failure, with a fixed one;
and steering text written during a run reaches the next generation's prompts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from typer.testing import CliRunner

from dreamteam.agents import Credentials, build_team, parse_model_map
from dreamteam.cli import app
from dreamteam.config import RunConfig
from dreamteam.harness.checks import check_candidate
from dreamteam.loop.build import build_search
from dreamteam.loop.plan import BASELINE_ID, seed_plan
from dreamteam.loop.search import Event, Search
from dreamteam.personas import load_library
from dreamteam.propose.allocation import Outcome, Yardstick, attempts, repair_rescue
from dreamteam.records import Status, TrialResult
from dreamteam.select.judge import Judge
from dreamteam.store import RunStore
from dreamteam.tasks import load_task
from loopback import LoopbackLLM
from test_search import FakeExecutor

TRAIN = load_task("shakespeare").baseline_files()["train.py"]
FASTER = TRAIN.replace("learning_rate = 3e-4", "learning_rate = 2e-3")
DEEPER = FASTER.replace("n_layer = 4", "n_layer = 8")  # a protected constant: fails the checks


class _CheckingExecutor(FakeExecutor):
    """The fake trainer behind the real static checks, as a trial runs them first."""

    def _score(self, job):
        report = check_candidate(job.files, load_task("shakespeare"))
        if not report.ok:
            return TrialResult(Status.INVALID, report.reason(), job.seed, job.fidelity, 0)
        return super()._score(job)


def _answer(prompt: str) -> str:
    """The broken answer first; the fixed one once the prompt shows the failure."""
    train = FASTER if "Your previous attempt failed" in prompt else DEEPER
    return f"More depth and a larger step.\n\n```python\ntrain_mps.py\n{train}```\n"


def _search(
    tmp_path: Path, llm: LoopbackLLM, on_event=lambda e: None, **overrides
) -> tuple[Search, RunStore]:
    model = f"openai-compatible:tiny@{llm.url}"
    config = RunConfig(
        **{"generations": 1, "personas": ("archimedes",), "fidelity": "smoke", "model": model}
        | overrides
    )
    team = build_team(parse_model_map(model), Credentials.from_env({}))
    store = RunStore(tmp_path / "run")
    store.create_run("run", "shakespeare", dataclasses.asdict(config), [])
    task = load_task("shakespeare")
    search = build_search(
        config,
        store,
        task=task,
        library=load_library(),
        agents=team,
        executor=_CheckingExecutor(),
        on_event=on_event,
    )
    return search, store


def test_a_repair_round_trip_through_a_local_llm_server(tmp_path: Path) -> None:
    with LoopbackLLM(_answer) as llm:
        search, store = _search(tmp_path, llm, repair=1)
        search.run()
    failed, repaired = store.candidate("g1-archimedes"), store.candidate("g1-archimedes-r")
    assert failed is not None and failed.status == "invalid" and "n_layer" in failed.reason
    assert repaired is not None and repaired.kind == "repair" and repaired.parent == failed.id
    assert repaired.status == "ok" and "learning_rate = 2e-3" in repaired.files["train.py"]
    assert repaired.tokens_in == 1200  # answered by the server, through the HTTP client
    assert len(llm.prompts) == 2 and failed.reason in llm.prompts[1]
    assert "n_layer = 8" in llm.prompts[1]  # the failed code is what the repair starts from
    rescue = repair_rescue(store.candidates())
    assert (rescue.repaired, rescue.rescued) == (1, 1)
    # the repair is judged as selection judged it: against the generation's parent
    plan = seed_plan(search.config)
    judge = Judge(store, search.config, BASELINE_ID, plan.confirm, plan.recheck)
    tried = {a.candidate: a for a in attempts(store, Yardstick("smoke", plan.screen, judge))}
    assert tried["g1-archimedes"].outcome is Outcome.LOSS
    assert tried["g1-archimedes-r"].outcome is Outcome.WIN and tried["g1-archimedes-r"].replaced
    shown = CliRunner().invoke(app, ["show", str(store.run_dir)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "repair: rescued 1 of 1 failed candidates (100%)" in shown.output
    assert "gen 1 slots (uniform): archimedes 1" in shown.output


def test_steering_written_during_a_run_reaches_the_next_generation(tmp_path: Path) -> None:
    guidance = "Focus on the optimiser; leave attention alone."

    def steer(event: Event) -> None:  # written by hand after the first generation
        path = tmp_path / "run" / "steering.md"
        if event.kind == "generation" and not path.exists():
            path.write_text(guidance, encoding="utf-8")

    with LoopbackLLM(lambda prompt: _answer("Your previous attempt failed")) as llm:
        search, store = _search(tmp_path, llm, steer, generations=2, repair=0)
        search.run()
    assert len(llm.prompts) == 2
    assert guidance not in llm.prompts[0] and guidance in llm.prompts[1]
    assert [(s.generation, s.text) for s in store.steering()] == [(2, guidance)]

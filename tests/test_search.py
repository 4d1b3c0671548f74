"""The research loop with the real offline agent, store and personas, and a fake trainer.

The fake executor scores a candidate from its code (a higher learning rate or a schedule
is better), so these tests run in a second; the real trainer is exercised by test_run_e2e.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from dreamteam.agents import AgentTeam, build_team, parse_model_map
from dreamteam.agents.factory import Credentials
from dreamteam.agents.offline import OfflineAgent
from dreamteam.config import RunConfig
from dreamteam.errors import TaskError
from dreamteam.execute.jobs import Job
from dreamteam.loop.build import build_search, checked_task
from dreamteam.loop.search import BASELINE_ID, Search, code_hash
from dreamteam.personas import load_library
from dreamteam.propose.team import pick_team
from dreamteam.records import Event, Status, TrialResult
from dreamteam.report.data import gather
from dreamteam.store import RunStore
from dreamteam.tasks import load_task

Scorer = Callable[[Job], tuple[float, float]]  # a job -> (val loss, training seconds)


def lr_scorer(job: Job) -> tuple[float, float]:
    """Lower loss for a larger learning rate, a little lower with a cosine schedule."""
    train = job.files["train.py"]
    m = re.search(r"^learning_rate = ([0-9.e-]+)", train, re.M)
    lr = float(m.group(1)) if m else 3e-4
    return 6.0 - min(lr, 1e-2) * 50 - (0.1 if "cos" in train else 0.0), 1.0


class FakeExecutor:
    """Trains nothing: scores each job by its code with `scorer`, plus seed noise of +-0.01."""

    def __init__(self, scorer: Scorer = lr_scorer) -> None:
        self.scorer = scorer
        self.calls: list[tuple[str, str, int]] = []

    def run(self, jobs):
        for job in jobs:
            self.calls.append((job.candidate, job.fidelity, job.seed))
            yield job, self._score(job)

    def _score(self, job: Job) -> TrialResult:
        loss, seconds = self.scorer(job)
        loss += 0.01 * ((job.seed % 3) - 1)
        return TrialResult(
            Status.OK,
            "",
            job.seed,
            job.fidelity,
            40,
            val_loss=loss,
            bpb=loss / 2,
            train_seconds=seconds,
            log=f"fake {loss}",
        )


def fake_search(
    config: RunConfig,
    store: RunStore,
    agents: AgentTeam,
    executor: FakeExecutor | None = None,
    on_event: Callable[[Event], None] = lambda e: None,
) -> Search:
    """A search on the built-in task and persona library, trained by a fake executor."""
    return build_search(
        config,
        store,
        task=load_task("shakespeare"),
        library=load_library(),
        agents=agents,
        executor=executor or FakeExecutor(),
        on_event=on_event,
    )


def _search(
    tmp_path: Path, scorer: Scorer = lr_scorer, **overrides
) -> tuple[Search, FakeExecutor, RunStore]:
    config = RunConfig(**{"generations": 2, "team_size": 4, "fidelity": "smoke", **overrides})
    team = build_team(
        parse_model_map("offline"), Credentials.from_env({}), offline=lambda: OfflineAgent(seed=0)
    )
    store = RunStore(tmp_path / "run")
    store.create_run("run", "shakespeare", {}, [])
    executor = FakeExecutor(scorer)
    return fake_search(config, store, team, executor), executor, store


def test_team_leads_with_the_seeds_and_spans_the_modes() -> None:
    team = pick_team(load_library(), RunConfig(team_size=5))
    assert [p.slug for p in team[:2]] == ["archimedes", "aristotle"]
    assert {str(p.mode) for p in team} == {"savant", "collaborator", "specialist"}


@functools.cache
def _baseline_files() -> dict[str, str]:
    return load_task("shakespeare").baseline_files()


def _changes_help(job: Job) -> tuple[float, float]:
    # lr_scorer's gains depend on what the offline agent happens to draw (its draws follow
    # the baseline's text); here every change to the baseline is 0.2 better, so that the run
    # has something beyond the noise to find whatever it draws
    loss, seconds = lr_scorer(job)
    return loss - (0.2 if job.files != _baseline_files() else 0.0), seconds


def test_a_run_improves_on_the_baseline_and_writes_the_tree(tmp_path: Path) -> None:
    search, _, store = _search(tmp_path, _changes_help)
    summary = search.run()
    assert summary.best != BASELINE_ID
    assert summary.delta < -summary.ci95
    assert (tmp_path / "run" / "gen_1" / "results.txt").is_file()
    assert (tmp_path / "run" / "gen_0" / "baseline" / "train.py").is_file()
    gens = store.generations()
    assert [g.number for g in gens] == [0, 1, 2]
    assert all(c.status for c in store.candidates())


def test_resume_recomputes_nothing_finished(tmp_path: Path) -> None:
    search, _, _ = _search(tmp_path)
    search.run()
    again, second, _ = _search(tmp_path)
    again.run()
    assert second.calls == []  # every trial came from the store


def test_identical_code_is_not_retrained(tmp_path: Path) -> None:
    task = load_task("shakespeare")
    fixed = task.baseline_files()["train.py"].replace(
        "learning_rate = 3e-4", "learning_rate = 2e-3"
    )
    answers = [
        f"```python\ntrain_mps.py\n{fixed}```\n",
        f"```python\ntrain_mps.py\n# hi\n{fixed}```\n",
    ]
    team = build_team(
        parse_model_map("offline"), Credentials.from_env({}), offline=lambda: _Scripted(answers)
    )
    store = RunStore(tmp_path / "run")
    store.create_run("run", "shakespeare", {}, [])
    config = RunConfig(generations=1, personas=("archimedes", "archimedes"), fidelity="smoke")
    executor = FakeExecutor()
    build_search(
        config, store, task=task, library=load_library(), agents=team, executor=executor
    ).run()
    kinds = [c.kind for c in store.candidates() if c.generation == 1]
    assert kinds == ["proposal", "duplicate"]
    hashes = {c.code_hash for c in store.candidates() if c.generation == 1}
    assert len(hashes) == 1  # the comment does not count
    twin = store.candidate("g1-archimedes-2")
    assert twin is not None and twin.twin == "g1-archimedes" and twin.status == "ok"
    assert not [c for c in executor.calls if c[0] == "g1-archimedes-2"]


def test_code_hash_ignores_comments_and_layout() -> None:
    a = {"train.py": "x = 1  # one\n", "model.py": "def f():\n    return 2\n"}
    b = {"train.py": "x = (1)\n", "model.py": "def f():\n\n    return 2\n"}
    assert code_hash(a) == code_hash(b)
    assert code_hash(a) != code_hash({**a, "train.py": "x = 2\n"})


class _Scripted:
    """An agent that answers from a script: here, first with no code, then with a fix."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.prompts: list[str] = []

    @property
    def name(self) -> str:
        return "scripted"

    def propose(self, request):
        from dreamteam.agents import AgentResponse

        self.prompts.append(request.prompt)
        return AgentResponse(
            text=self.answers[min(len(self.prompts), len(self.answers)) - 1], model="scripted"
        )


def test_a_failed_answer_gets_a_repair_turn_that_is_stored_as_its_child(tmp_path: Path) -> None:
    task = load_task("shakespeare")
    fixed = task.baseline_files()["train.py"].replace(
        "learning_rate = 3e-4", "learning_rate = 2e-3"
    )
    agent = _Scripted(
        ["I would raise the learning rate.", f"```python\ntrain_mps.py\n{fixed}```\n"]
    )
    team = build_team(parse_model_map("offline"), Credentials.from_env({}), offline=lambda: agent)
    store = RunStore(tmp_path / "run")
    store.create_run("run", "shakespeare", {}, [])
    config = RunConfig(generations=1, personas=("archimedes",), fidelity="smoke", repair=1)
    build_search(
        config, store, task=task, library=load_library(), agents=team, executor=FakeExecutor()
    ).run()
    failed = store.candidate("g1-archimedes")
    repaired = store.candidate("g1-archimedes-r")
    assert failed is not None and failed.status == "invalid"
    assert repaired is not None and repaired.kind == "repair" and repaired.parent == failed.id
    assert repaired.status == "ok"
    assert "Your previous attempt failed" in agent.prompts[1] and failed.reason in agent.prompts[1]


def test_repair_zero_disables_it(tmp_path: Path) -> None:
    agent = _Scripted(["no code here"])
    team = build_team(parse_model_map("offline"), Credentials.from_env({}), offline=lambda: agent)
    store = RunStore(tmp_path / "run")
    store.create_run("run", "shakespeare", {}, [])
    config = RunConfig(generations=1, personas=("archimedes",), fidelity="smoke", repair=0)
    fake_search(config, store, team).run()
    assert store.candidate("g1-archimedes-r") is None and len(agent.prompts) == 1


def test_the_final_claim_is_measured_at_the_final_fidelity_on_fresh_seeds(tmp_path: Path) -> None:
    search, executor, store = _search(tmp_path, _changes_help, final_fidelity="medium")
    summary = search.run()
    assert summary.fidelity == "medium" and summary.steps == 2500
    final = {(cid, seed) for cid, fidelity, seed in executor.calls if fidelity == "medium"}
    assert final == {(cid, s) for cid in (BASELINE_ID, summary.best) for s in (1340, 1341)}
    assert summary.seeds == (1340, 1341)
    # the confirmation noise (measured at smoke) is not carried to medium
    assert summary.ci95 > 0
    store.finish_run("done", summary)
    headline = gather(store).headline
    assert headline.fidelity == "medium" and headline.best.id == summary.best


def _fading_scorer(job: Job) -> tuple[float, float]:
    """Every change beats the baseline before `medium`, each by a margin of its own (from its
    code's hash, so whatever the offline agent draws); at `medium` the larger the margin, the
    worse: the short-run winner fades."""
    changed = job.files != _baseline_files()
    margin = 0.2 + 0.1 * int(code_hash(job.files)[:8], 16) / 16**8 if changed else 0.0
    return (5.0 + margin if job.fidelity == "medium" else 6.0 - margin), 1.0


def test_final_top_claims_the_elite_member_that_lasts(tmp_path: Path) -> None:
    search, executor, store = _search(tmp_path, final_fidelity="medium", final_top=3, elite=3)
    executor.scorer = _fading_scorer
    summary = search.run()
    elite = [cid for cid in search.standing.elite() if cid != BASELINE_ID][:3]
    picked = {cid for cid, f, seed in executor.calls if f == "medium" and seed == 1337}
    assert len(elite) >= 2 and picked == set(elite)  # each trained once, on the screening seed
    losses = dict(summary.reranked)
    assert set(losses) == set(elite) and list(losses.values()) == sorted(losses.values())
    # the claim is the member with the lowest loss at medium, not the search's own best
    assert summary.best == min(losses, key=lambda c: losses[c]) == summary.reranked[0][0]
    assert summary.best != store.generations()[-1].best
    fresh = {(cid, s) for cid, f, s in executor.calls if f == "medium" and s != 1337}
    assert fresh == {(cid, s) for cid in (BASELINE_ID, summary.best) for s in (1340, 1341)}
    store.finish_run("done", summary)
    assert store.summary() == summary  # the ranking is stored with the summary


def test_final_top_trains_nothing_more_at_the_confirmation_fidelity(tmp_path: Path) -> None:
    search, executor, _ = _search(tmp_path / "a", final_top=3)
    summary = search.run()
    plain, alone, _ = _search(tmp_path / "b")
    assert summary.reranked == () and summary == plain.run()
    assert executor.calls == alone.calls


def test_an_unknown_final_fidelity_is_refused_before_anything_runs() -> None:
    with pytest.raises(TaskError, match="fidelity 'huge'"):
        checked_task(RunConfig(final_fidelity="huge"))

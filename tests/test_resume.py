"""Resume never rewrites history: a run stopped at any point and resumed ends exactly as the
run never stopped (same candidates, statuses, promotions, parents, elite and closing
figures), trains nothing twice, and resuming a finished run changes no row of any table.

The interruption is an exception raised from the run's event hook at the n-th event: events
come right after each store write (a proposal recorded, a trial stored, a generation
finished), so every n stops the run at a different point, as a `kill -9` would. The real
kill -9 of a real `dreamteam run` is in test_run_e2e.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from dreamteam.agents import AgentResponse, Usage, build_team, parse_model_map
from dreamteam.agents.factory import Credentials
from dreamteam.config import RunConfig
from dreamteam.errors import DiskFullError
from dreamteam.execute.jobs import Job
from dreamteam.loop.build import build_search, conclude
from dreamteam.loop.search import seed_plan
from dreamteam.personas import load_library
from dreamteam.records import DISK_FULL, Event, RunSummary, Status, TrialResult
from dreamteam.store import RunStore
from dreamteam.store.schema import TABLES
from dreamteam.tasks import load_task

TASK = load_task("shakespeare")
TRAIN = TASK.baseline_files()["train.py"]
PLAN = seed_plan(RunConfig(seeds=2))


def _answer(old: str, new: str) -> str:
    assert TRAIN.count(old) == 1
    return f"- change {old}\n\n```python\ntrain.py\n{TRAIN.replace(old, new)}```\n"


# per persona, one answer per generation: a pure function of the request, as the offline
# agent is, so a resumed process is asked exactly what the first one would have been
ANSWERS = {
    "archimedes": [
        _answer("learning_rate = 3e-4", "learning_rate = 1e-3"),  # a fluke: fails its recheck
        _answer("learning_rate = 3e-4", "learning_rate = 1e-4"),
        _answer("weight_decay = 0.1\n", "weight_decay = 0.02\n"),
    ],
    "aristotle": [
        _answer("weight_decay = 0.1\n", "weight_decay = 0.05\n"),
        _answer("learning_rate = 3e-4", "learning_rate = 2e-3"),  # crashes on a confirm seed
        _answer("learning_rate = 3e-4", "learning_rate = 1e-3"),  # a repeat: a duplicate
    ],
    "ada-lovelace": ["no code at all", "still none", "none"],  # invalid, repaired: invalid
}


class ByGeneration:
    """Answers persona p in generation g with ANSWERS[p][g - 1] (g from the request's seed)."""

    name = "openai:gpt-4o"

    def propose(self, request):
        generation = request.seed % 1000
        script = ANSWERS[request.persona]
        text = script[min(generation, len(script)) - 1]
        return AgentResponse(text=text, model=self.name, usage=Usage(100, 50))

    def close(self) -> None:
        pass


def _score(job: Job) -> TrialResult:
    train = job.files["train.py"]
    m = re.search(r"^learning_rate = ([0-9.e-]+)", train, re.M)
    lr = float(m.group(1)) if m else 3e-4
    if lr == 2e-3 and job.seed == PLAN.confirm[1]:
        return TrialResult(Status.CRASHED, "RuntimeError: boom", job.seed, job.fidelity, 40)
    loss = 6.0 - {1e-3: 0.08, 2e-3: 0.06}.get(lr, 0.0)
    if lr == 1e-3 and job.seed == PLAN.recheck:
        loss = 6.3  # lucky on every seed it was chosen on, not on a new one
    loss -= 0.04 if "weight_decay = 0.05" in train else 0.0
    loss += 0.002 * (job.seed % 3)
    return TrialResult(
        Status.OK, "", job.seed, job.fidelity, 40, val_loss=loss, bpb=loss / 2, log=f"{loss}"
    )


class Executor:
    """Scores by the code; keeps every job it ran."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def run(self, jobs):
        for job in jobs:
            self.calls.append((job.candidate, job.fidelity, job.seed))
            yield job, _score(job)


class Stop(Exception):
    """The interruption: raised at the n-th event, as a kill would land there."""


CONFIG = RunConfig(
    generations=3,
    personas=tuple(ANSWERS),
    fidelity="smoke",
    promote_fraction=1.0,
    repair=1,
    elite=3,
    crossover=1,
    agent_concurrency=1,
)


def _conclude(run_dir: Path, on_event: Callable[[Event], None]) -> tuple[RunSummary, Executor]:
    store = RunStore(run_dir)
    store.create_run("run", "shakespeare", dataclasses.asdict(CONFIG), [])
    agent = ByGeneration()
    team = build_team(parse_model_map("offline"), Credentials.from_env({}), offline=lambda: agent)
    executor = Executor()
    search = build_search(
        CONFIG,
        store,
        task=TASK,
        library=load_library(),
        agents=team,
        executor=executor,
        on_event=on_event,
    )
    try:
        return conclude(search), executor
    finally:
        store.close()


def _history(run_dir: Path) -> dict[str, list[tuple]]:
    """Every stored fact a run decided, timestamps aside."""
    with sqlite3.connect(run_dir / "dreamteam.sqlite") as db:
        q = {
            "generations": "SELECT number, parent, best, promoted, note FROM generations",
            "elite": "SELECT generation, members FROM elite",
            "candidates": "SELECT id, generation, persona, parent, kind, code_hash, status,"
            " reason, twin, record_key, files FROM candidates",
            "trials": "SELECT candidate, fidelity, seed, status, reason, val_loss FROM trials",
            "allocations": "SELECT generation, policy, slots, posterior, floor FROM allocations",
            "runs": "SELECT status, summary FROM runs",
        }
        return {k: sorted(db.execute(sql).fetchall()) for k, sql in q.items()}


def _checksums(run_dir: Path) -> dict[str, str]:
    """A hash of every row of every table, timestamps included."""
    with sqlite3.connect(run_dir / "dreamteam.sqlite") as db:
        sums = {}
        for table in TABLES:
            rows = sorted(repr(r) for r in db.execute(f"SELECT * FROM {table}"))
            sums[table] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        return sums


Whole = tuple[Path, RunSummary, int, int]  # run dir, summary, trials run, events seen


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Whole:
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    events: list[Event] = []
    summary, executor = _conclude(run_dir, events.append)
    return run_dir, summary, len(executor.calls), len(events)


def test_the_scenario_exercises_what_resume_must_keep(uninterrupted: Whole) -> None:
    run_dir, summary, _, _ = uninterrupted
    history = _history(run_dir)
    notes = " ".join(n for *_, n in history["generations"])
    kinds = {c[4] for c in history["candidates"]}
    statuses = {c[6] for c in history["candidates"]}
    assert "took over from g1-archimedes" in notes  # the elite rescued a fluke
    assert {"proposal", "repair", "crossover", "duplicate"} <= kinds
    assert {"ok", "crashed", "invalid"} <= statuses
    assert summary.best != "g0-baseline"


def test_resuming_a_finished_run_changes_no_table(uninterrupted: Whole, tmp_path: Path) -> None:
    run_dir, summary, _, _ = uninterrupted
    before = _checksums(run_dir)
    again, executor = _conclude(run_dir, lambda e: None)
    assert _checksums(run_dir) == before
    assert executor.calls == [] and again == summary


def _check_resumed_at(uninterrupted: Whole, tmp_path: Path, n: int) -> None:
    whole, summary, whole_calls, _ = uninterrupted
    seen = 0
    first = Executor()

    def stop_at_n(event: Event) -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            raise Stop(f"event {n}: {event.kind} {event.candidate}")

    run_dir = tmp_path / f"run-{n}"
    store = RunStore(run_dir)
    store.create_run("run", "shakespeare", dataclasses.asdict(CONFIG), [])
    agent = ByGeneration()
    team = build_team(parse_model_map("offline"), Credentials.from_env({}), offline=lambda: agent)
    search = build_search(
        CONFIG,
        store,
        task=TASK,
        library=load_library(),
        agents=team,
        executor=first,
        on_event=stop_at_n,
    )
    with pytest.raises(Stop):
        conclude(search)
    store.close()
    resumed, second = _conclude(run_dir, lambda e: None)
    assert _history(run_dir) == _history(whole), f"interrupted at event {n}"
    assert resumed == summary
    ran = first.calls + second.calls
    assert len(ran) == len(set(ran)) == whole_calls, "a finished trial was trained again"


@pytest.mark.parametrize("share", [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95])
def test_a_run_stopped_anywhere_resumes_to_the_same_history(
    uninterrupted: Whole, tmp_path: Path, share: float
) -> None:
    n = max(1, int(share * uninterrupted[3]))
    _check_resumed_at(uninterrupted, tmp_path, n)


@pytest.mark.slow
def test_a_run_stopped_at_every_event_resumes_to_the_same_history(
    uninterrupted: Whole, tmp_path: Path
) -> None:
    for n in range(1, uninterrupted[3] + 1):
        _check_resumed_at(uninterrupted, tmp_path, n)


class FullOnce(Executor):
    """The disk fills under one trial (the harness's DISK_FULL result), once."""

    def __init__(self, victim: tuple[str, str, int]) -> None:
        super().__init__()
        self.victim = victim

    def run(self, jobs):
        for job in jobs:
            self.calls.append((job.candidate, job.fidelity, job.seed))
            if (job.candidate, job.fidelity, job.seed) == self.victim:
                reason = f"{DISK_FULL}: the harness could not write ckpt.pt"
                yield job, TrialResult(Status.CRASHED, reason, job.seed, job.fidelity, 40)
            else:
                yield job, _score(job)


@pytest.mark.parametrize(
    "victim", [("g1-aristotle", "smoke", PLAN.screen), ("g1-aristotle", "smoke", PLAN.confirm[0])]
)
def test_a_full_disk_stops_the_run_and_the_resumed_run_ends_as_if_it_never_filled(
    uninterrupted: Whole, tmp_path: Path, victim: tuple[str, str, int]
) -> None:
    whole, summary, _, _ = uninterrupted
    run_dir = tmp_path / "run"
    store = RunStore(run_dir)
    store.create_run("run", "shakespeare", dataclasses.asdict(CONFIG), [])
    agent = ByGeneration()
    team = build_team(parse_model_map("offline"), Credentials.from_env({}), offline=lambda: agent)
    full = FullOnce(victim)
    search = build_search(
        CONFIG, store, task=TASK, library=load_library(), agents=team, executor=full
    )
    with pytest.raises(DiskFullError, match=f"--resume {run_dir}"):
        conclude(search)
    stored = store.trial(*victim)
    assert stored is not None and stored.disk_full  # recorded, with its reason
    candidate = store.candidate(victim[0])
    assert candidate is not None and candidate.status != "crashed"  # not the candidate's fault
    assert full.calls[-1] == victim  # nothing started after it
    store.close()
    resumed, again = _conclude(run_dir, lambda e: None)
    assert again.calls[0] == victim  # trained again, first
    assert _history(run_dir) == _history(whole) and resumed == summary

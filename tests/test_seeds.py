"""Close calls get more seeds (loop/seeds.py, --max-seeds): a finalist whose interval straddles
the threshold trains on extra seeds, one at a time and beside its parent, up to the cap; a
clear win does not; a run killed between extra seeds resumes without training any again.

The fake executor scores by the learning rate, plus a seed offset shared by every candidate
(+-0.01 by seed % 3): the baseline's spread is 0.007 on the confirmation seeds, so a change
worth 0.015 is inside the (Student t) interval on 2 seeds and beyond it on 5.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dreamteam.agents import build_team, parse_model_map
from dreamteam.agents.factory import Credentials
from dreamteam.config import RunConfig, load_run_config
from dreamteam.errors import ConfigError
from dreamteam.execute.jobs import Job
from dreamteam.loop.plan import BASELINE_ID, seed_plan
from dreamteam.records import Event
from dreamteam.store import RunStore
from dreamteam.tasks import load_task
from test_search import FakeExecutor, _Scripted, fake_search

TRAIN = load_task("shakespeare").baseline_files()["train.py"]
# learning rate -> how much lower the loss is than the baseline's
GAIN = {"3.1e-4": 0.002, "5e-4": 0.015, "3e-3": 0.5}


def _scorer(job: Job) -> tuple[float, float]:
    m = re.search(r"^learning_rate = ([0-9.e-]+)", job.files["train.py"], re.M)
    return 6.0 - GAIN.get(m.group(1) if m else "", 0.0), 1.0


def _run(tmp_path: Path, lr: str, max_seeds: int, on_event=None) -> tuple[FakeExecutor, RunStore]:
    answer = f"```python\ntrain.py\n{TRAIN.replace('learning_rate = 3e-4', f'learning_rate = {lr}')}```\n"
    team = build_team(
        parse_model_map("offline"), Credentials.from_env({}), offline=lambda: _Scripted([answer])
    )
    store = RunStore(tmp_path / "run")
    store.create_run("run", "shakespeare", {}, [])
    config = RunConfig(
        generations=1, personas=("archimedes",), fidelity="smoke", max_seeds=max_seeds, elite=0
    )
    executor = FakeExecutor(_scorer)
    fake_search(config, store, team, executor, on_event or (lambda e: None)).run()
    return executor, store


PLAN = seed_plan(RunConfig(seeds=2, max_seeds=5))


def _seeds(executor: FakeExecutor, candidate: str) -> list[int]:
    """The seeds a candidate was confirmed on (neither the screening nor the final ones)."""
    other = {PLAN.screen, *PLAN.final}
    return [s for c, _, s in executor.calls if c == candidate and s not in other]


def test_a_close_call_gets_extra_seeds_beside_its_parent_and_then_wins(tmp_path: Path) -> None:
    executor, store = _run(tmp_path, "5e-4", max_seeds=5)
    extra = list(PLAN.extra)
    assert len(extra) == 3 and not set(extra) & {*PLAN.confirm, *PLAN.final, PLAN.recheck}
    assert _seeds(executor, "g1-archimedes") == [*PLAN.confirm, *extra]
    assert set(extra) <= set(_seeds(executor, BASELINE_ID))
    g = store.generation(1)
    assert g is not None and g.best == "g1-archimedes"
    assert "close calls: g1-archimedes on 5 seeds" in g.note


def test_a_clear_win_gets_no_extra_seed(tmp_path: Path) -> None:
    executor, store = _run(tmp_path, "3e-3", max_seeds=5)
    assert _seeds(executor, "g1-archimedes") == list(PLAN.confirm)
    assert not set(PLAN.extra) & set(_seeds(executor, BASELINE_ID))
    g = store.generation(1)
    assert g is not None and g.best == "g1-archimedes" and "close calls" not in g.note


@pytest.mark.parametrize("cap", [2, 4])
def test_the_cap_holds_and_a_close_call_that_stays_close_is_not_kept(
    tmp_path: Path, cap: int
) -> None:
    executor, store = _run(tmp_path, "3.1e-4", max_seeds=cap)
    assert len(_seeds(executor, "g1-archimedes")) == max(2, cap)
    g = store.generation(1)
    assert g is not None and g.best == BASELINE_ID


class Kill(Exception):
    """Where a kill -9 would land: right after an extra seed's trial is stored."""


def test_a_run_killed_between_extra_seeds_resumes_without_training_any_again(
    tmp_path: Path,
) -> None:
    def kill_after_first_extra(event: Event) -> None:
        if event.kind == "trial" and f"seed {PLAN.extra[0]}" in event.detail:
            raise Kill

    with pytest.raises(Kill):
        _run(tmp_path, "5e-4", max_seeds=5, on_event=kill_after_first_extra)
    stored = {
        (t.candidate, t.seed) for c in ("g1-archimedes", BASELINE_ID) for t in _trials(tmp_path, c)
    }
    assert ("g1-archimedes", PLAN.extra[0]) in stored or (BASELINE_ID, PLAN.extra[0]) in stored
    executor, store = _run(tmp_path, "5e-4", max_seeds=5)
    again = {(c, s) for c, f, s in executor.calls if f == "smoke"}
    assert not again & stored, "a stored trial was trained again"
    assert _seeds(executor, "g1-archimedes")[-1] == PLAN.extra[-1]
    g = store.generation(1)
    assert g is not None and g.best == "g1-archimedes"


def _trials(tmp_path: Path, candidate: str):
    store = RunStore(tmp_path / "run")
    try:
        return store.trials(candidate)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_seeds = 0", "--max-seeds must be a whole number, 1 or more"),
        ('max_seeds = "five"', "max_seeds"),
    ],
)
def test_a_bad_max_seeds_is_a_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "run.toml"
    path.write_text(f"[run]\n{text}\n")
    with pytest.raises(ConfigError, match=message):
        load_run_config(path, {})


def test_max_seeds_at_or_below_seeds_means_no_extra_seed() -> None:
    assert seed_plan(RunConfig(seeds=3, max_seeds=2)).extra == ()
    assert seed_plan(RunConfig(seeds=3, max_seeds=3)).extra == ()
    assert load_run_config(None, {"max_seeds": 7}).max_seeds == 7

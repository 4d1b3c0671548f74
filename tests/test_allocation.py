"""Persona allocation: the uniform default, the Thompson-sampling bandit with its floor, the
per-persona tallies and the repair rescue fraction."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamteam.agents import AgentResponse, build_team, parse_model_map
from dreamteam.agents.factory import Credentials
from dreamteam.config import RunConfig, load_run_config
from dreamteam.errors import ConfigError
from dreamteam.execute.jobs import Job
from dreamteam.loop.build import build_search
from dreamteam.personas import load_library
from dreamteam.propose.allocation import Attempt, Outcome, bandit, repair_rescue, tally, uniform
from dreamteam.records import Allocation, CandidateRecord, Status, TrialResult
from dreamteam.store import RunStore
from dreamteam.tasks import load_task

LIBRARY = load_library()
TEAM = ("archimedes", "aristotle", "ada-lovelace")
WINNER = "aristotle"


class _Rigged:
    """Every persona adds a new constant; the winner's are `tweak_*`, which the executor rewards."""

    name = "rigged"

    def propose(self, request):
        files = dict(request.files)
        word = "tweak" if request.persona == WINNER else "idle"
        line = f"{word}_{request.persona.replace('-', '_')}_{request.seed} = 1\n"
        return AgentResponse(f"```python\ntrain_mps.py\n{files['train.py']}{line}```\n", "rigged")


class _TweakExecutor:
    """Loss 6.0, 0.05 lower per `tweak_` constant; seed noise of +-0.01, as test_search's."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def run(self, jobs):
        for job in jobs:
            self.calls.append(job.candidate)
            yield job, self._score(job)

    def _score(self, job: Job) -> TrialResult:
        loss = 6.0 - 0.05 * len(re.findall(r"^tweak_", job.files["train.py"], re.M))
        loss += 0.01 * ((job.seed % 3) - 1)
        return TrialResult(Status.OK, "", job.seed, job.fidelity, 40, val_loss=loss, bpb=loss / 2)


def _run(tmp_path: Path, name: str, **overrides) -> RunStore:
    config = RunConfig(
        **{"generations": 6, "personas": TEAM, "fidelity": "smoke", "allocation": "bandit"}
        | overrides
    )
    team = build_team(parse_model_map("offline"), Credentials.from_env({}), offline=_Rigged)
    store = RunStore(tmp_path / name)
    store.create_run(name, "shakespeare", {}, [])
    build_search(
        config,
        store,
        task=load_task("shakespeare"),
        library=LIBRARY,
        agents=team,
        executor=_TweakExecutor(),
    ).run()
    return store


def test_the_bandit_favours_the_persona_that_wins_and_keeps_the_floor(tmp_path: Path) -> None:
    store = _run(tmp_path, "bandit")
    allocations = store.allocations()
    assert [a.generation for a in allocations] == list(range(1, 7))
    assert all(sum(n for _, n in a.slots) == len(TEAM) for a in allocations)
    totals = Counter({slug: 0 for slug in TEAM})
    for a in allocations:
        totals.update(dict(a.slots))
    assert totals[WINNER] > max(totals[s] for s in TEAM if s != WINNER)
    # the floor (3): nobody goes three generations in a row without a slot
    for slug in TEAM:
        had = [a.count(slug) > 0 for a in allocations]
        assert not any(not any(had[i : i + 3]) for i in range(len(had) - 2)), (slug, had)
    # several slots of one persona are several candidates, each with its own answer
    ids = [c.id for c in store.candidates() if c.persona == WINNER]
    assert any(i.endswith("-2") for i in ids)
    assert not [c for c in store.candidates() if c.kind == "duplicate"]


def test_the_bandit_is_deterministic_and_a_resume_keeps_its_allocations(tmp_path: Path) -> None:
    first = _run(tmp_path, "one", generations=4)
    second = _run(tmp_path, "two", generations=4)
    assert first.allocations() == second.allocations()  # same seed, same draws
    other = _run(tmp_path, "other", generations=4, seed=5)
    assert other.allocations() != first.allocations()  # the draws do depend on the seed
    # a resumed run reads its allocations back, whatever it would draw now
    again = _run(tmp_path, "one", generations=4, seed=5)
    assert again.allocations() == first.allocations()


def test_uniform_gives_every_team_member_one_turn_and_says_so(tmp_path: Path) -> None:
    store = _run(tmp_path, "uniform", generations=2, allocation="uniform")
    for a in store.allocations():
        assert a.policy == "uniform" and a.slots == tuple((s, 1) for s in TEAM)
    proposals = [c.id for c in store.candidates() if c.generation == 2]
    assert proposals == [f"g2-{s}" for s in TEAM]


def test_outcomes_and_tallies_count_wins_beyond_the_noise(tmp_path: Path) -> None:
    from dreamteam.loop.search import BASELINE_ID, seed_plan
    from dreamteam.propose.allocation import Yardstick, attempts
    from dreamteam.select.judge import Judge

    store = _run(tmp_path, "tally", generations=2, allocation="uniform")
    config = RunConfig(generations=2, personas=TEAM, fidelity="smoke")
    plan = seed_plan(config)
    judge = Judge(store, config, BASELINE_ID, plan.confirm, plan.recheck)
    tried = attempts(store, Yardstick(config.screen_fidelity, plan.screen, judge))
    outcomes = {a.candidate: a.outcome for a in tried}
    assert outcomes["g1-aristotle"] is Outcome.WIN and outcomes["g2-aristotle"] is Outcome.WIN
    assert outcomes["g1-archimedes"] is Outcome.LOSS  # no better at screening
    stats = {s.persona: s for s in tally(tried)}
    assert stats[WINNER].wins == 2 and stats[WINNER].replaced == 2
    assert stats["archimedes"].wins == 0 and stats["archimedes"].losses == 2
    modes = {s.persona: s for s in tally(tried, by="mode")}
    assert sum(s.proposals for s in modes.values()) == len(tried) == 6


def _attempt(persona: str, generation: int, outcome: Outcome) -> Attempt:
    return Attempt(f"g{generation}-{persona}", generation, persona, "savant", "proposal",
                   "ok", "", None, outcome, False)  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(TEAM), st.sampled_from(list(Outcome))), max_size=30),
    st.integers(min_value=2, max_value=8),
    st.integers(min_value=1, max_value=4),
    st.integers(min_value=0, max_value=10_000),
)
def test_every_allocation_fills_the_team_and_honours_the_floor(
    history: list[tuple[str, Outcome]], generation: int, floor: int, seed: int
) -> None:
    team = [LIBRARY.get(s) for s in TEAM]
    past = [_attempt(p, 1, o) for p, o in history]
    # archimedes last had a slot in generation 1; the others in the last generation
    earlier = [Allocation(1, "bandit", tuple((s, 1) for s in TEAM))] + [
        Allocation(g, "bandit", (("aristotle", 2), ("ada-lovelace", 1)))
        for g in range(2, generation)
    ]
    a = bandit(team, generation, past, earlier, seed, floor)
    assert sum(n for _, n in a.slots) == len(team)
    assert bandit(team, generation, past, earlier, seed, floor) == a  # deterministic
    judged = {p for p, o in history if o is not Outcome.OPEN}
    for slug in TEAM:
        last = 1 if slug == "archimedes" else generation - 1
        if slug not in judged or generation - last >= floor:
            assert a.count(slug) >= 1 and slug in a.floor


def test_uniform_allocation_repeats_a_persona_named_twice() -> None:
    team = [LIBRARY.get("archimedes"), LIBRARY.get("archimedes"), LIBRARY.get("aristotle")]
    assert uniform(team, 1).slots == (("archimedes", 2), ("aristotle", 1))


def test_repair_rescue_counts_failures_saved_by_a_repair_turn() -> None:
    def c(cid: str, kind: str, status: str, parent: str = "g0-baseline") -> CandidateRecord:
        return CandidateRecord(cid, 1, "x", "savant", parent, kind, "", {}, status=status)

    records = [
        c("g1-a", "proposal", "invalid"),
        c("g1-a-r", "repair", "ok", "g1-a"),
        c("g1-b", "proposal", "crashed"),
        c("g1-b-r", "repair", "crashed", "g1-b"),
        c("g1-b-r-r", "repair", "ok", "g1-b-r"),  # a second round counts for g1-b
        c("g1-c", "proposal", "invalid"),
        c("g1-c-r", "repair", "invalid", "g1-c"),
        c("g1-d", "proposal", "timeout"),  # never repaired: not counted
    ]
    rescue = repair_rescue(records)
    assert (rescue.repaired, rescue.rescued) == (3, 2)
    assert rescue.fraction == pytest.approx(2 / 3)
    assert repair_rescue([]).fraction is None


def test_the_allocation_options_are_checked() -> None:
    assert load_run_config(None, {"allocation": "bandit"}).allocation == "bandit"
    with pytest.raises(ConfigError, match="uniform or bandit"):
        load_run_config(None, {"allocation": "greedy"})
    with pytest.raises(ConfigError, match="allocation-floor"):
        load_run_config(None, {"allocation_floor": 0})

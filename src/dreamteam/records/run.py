"""The records of a run: allocations, generations, steering, statistics, the summary, seeds."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from dreamteam.records.core import StatTest

# --final-top: (candidate, loss at the final fidelity on the re-rank seed), best first
Ranking = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Allocation:
    """The proposal slots of one generation, and what decided them."""

    generation: int
    policy: str  # uniform | bandit
    slots: tuple[tuple[str, int], ...]  # (persona slug, proposals) in team order
    posterior: tuple[tuple[str, int, int], ...] = ()  # (slug, wins, losses) the draw saw
    floor: tuple[str, ...] = ()  # personas given a slot by the floor (or for being untried)

    def count(self, persona: str) -> int:
        return dict(self.slots).get(persona, 0)


@dataclass(frozen=True)
class RunInfo:
    """A run as started: its id, task, the config it was started with, the sandbox's layers."""

    id: str
    created: float
    task: str
    config: Mapping[str, object]
    isolation: tuple[str, ...]
    status: str  # running | finished | stopped | ...
    finished: float | None


@dataclass(frozen=True)
class GenerationRecord:
    """One generation as stored: the parent it started from and what it decided."""

    number: int
    parent: str
    best: str  # "" until the generation finished
    promoted: tuple[str, ...]
    note: str
    started: float
    finished: float | None


@dataclass(frozen=True)
class SteeringVersion:
    """One version of the steering text, and the generation that first read it."""

    version: int
    generation: int
    text: str
    created: float


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho between screening losses and confirmation means (None: under 3 pairs)."""

    rho: float | None
    pairs: int
    by_generation: tuple[tuple[int, float | None, int], ...] = ()  # (generation, rho, pairs)


@dataclass(frozen=True)
class KeptChange:
    """A kept change against its parent or the baseline: one-sided p-values, raw and Holm's."""

    candidate: str
    against: str
    fidelity: str
    test: StatTest
    seeds: tuple[int, ...]  # the candidate's seeds in the test (paired: those both share)
    delta: float  # mean loss difference, negative is better
    p: float
    p_holm: float  # adjusted for every comparison the run made


@dataclass(frozen=True)
class RunSummary:
    """The outcome of a run, as the CLI's last lines report it."""

    best: str
    persona: str
    val_loss: float
    baseline: float
    delta: float
    ci95: float
    fidelity: str
    seeds: tuple[int, ...]
    candidates: int
    statuses: dict[str, int] = field(default_factory=dict)
    stopped: str = ""  # why the run ended early, if it did
    elite: tuple[str, ...] = ()  # the top confirmed candidates, best first
    tokens: int = 0  # agent input + output tokens over the run
    cost: float = 0.0  # USD
    better: bool = False  # the best beat the baseline beyond the noise
    agent_failures: dict[str, int] = field(default_factory=dict)  # failed calls by fault
    steps: int = 0  # optimizer steps of `fidelity`: the budget the claim holds at
    screen_confirm: RankCorrelation | None = None  # do screening ranks predict confirmation?
    kept: tuple[KeptChange, ...] = ()  # each kept change's p-values
    reranked: Ranking = ()  # --final-top: the elite's losses at `fidelity`, best first

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunSummary:
        data = json.loads(text)
        data["seeds"] = tuple(data.get("seeds", ()))
        data["elite"] = tuple(data.get("elite", ()))
        if (rc := data.get("screen_confirm")) is not None:
            rc["by_generation"] = tuple(tuple(g) for g in rc.get("by_generation", ()))
            data["screen_confirm"] = RankCorrelation(**rc)
        data["kept"] = tuple(
            KeptChange(**{**k, "test": StatTest(k["test"]), "seeds": tuple(k["seeds"])})
            for k in data.get("kept", ())
        )
        data["reranked"] = tuple((str(c), float(v)) for c, v in data.get("reranked", ()))
        return cls(**data)


@dataclass(frozen=True)
class SeedPlan:
    """A run's seeds: to screen, to confirm, the final figure's, a parent's recheck, close calls'."""

    screen: int
    confirm: tuple[int, ...]
    final: tuple[int, ...]
    recheck: int
    extra: tuple[int, ...] = ()  # a close call's further seeds, one at a time (--max-seeds)

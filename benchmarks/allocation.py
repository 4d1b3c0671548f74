"""Uniform vs bandit allocation: the best confirmed loss reached per evaluation spent.

Two runs of the research loop with the offline agent, the same team, seeds and number of
generations, real sandboxed training: one gives every persona one proposal per generation
(`uniform`), the other lets Thompson sampling hand the slots to the personas that beat their
parents (`bandit`, floor 3). After each generation it records the evaluations spent (trials
run, the baseline's included) and the incumbent's loss at the confirmation fidelity. A trial
both arms run with the same code, fidelity and seed (all of generation 1, where the bandit has
no data yet and gives everyone one slot) is trained once and counted in both arms.

    python benchmarks/allocation.py [--generations 6] [--team 4] [--seed 0] [--smoke]

Screening is at `smoke`; confirmation at `low` (625 steps, 2 seeds), or at `smoke` with
--smoke (minutes instead of an hour on 2 cores). The last line is the ratio of evaluations
the bandit needed to reach the uniform arm's final best (below 1: the bandit got there with
fewer).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dreamteam.agents import Credentials, build_team, parse_model_map
from dreamteam.agents.offline import OfflineAgent
from dreamteam.config import RunConfig
from dreamteam.execute.devices import cpu_threads
from dreamteam.execute.jobs import Executor, Job
from dreamteam.execute.local import LocalExecutor
from dreamteam.harness.sandbox.launcher import probe_isolation
from dreamteam.harness.trial import TrialBudget
from dreamteam.loop.build import build_search
from dreamteam.loop.search import Event, code_hash, seed_plan
from dreamteam.personas import load_library
from dreamteam.propose.allocation import repair_rescue
from dreamteam.records import Status, TrialResult
from dreamteam.select.rules import estimate
from dreamteam.store import RunStore
from dreamteam.tasks import load_task
from dreamteam.tasks.data import resolve_data


@dataclass(frozen=True)
class Point:
    """The state of one arm after a generation."""

    generation: int
    evaluations: int  # trials spent so far (baseline included)
    steps: int  # optimizer steps of those trials
    best: str
    loss: float  # the incumbent's mean loss at the confirmation fidelity


class Shared:
    """Runs trials on a real executor, remembering each result by (code, fidelity, seed), so
    the second arm replays what the first already trained. Counts what each arm spends."""

    def __init__(self, inner: Executor):
        self.inner = inner
        self.cache: dict[tuple[str, str, int], TrialResult] = {}
        self.evaluations = 0
        self.steps = 0
        self.trained = 0  # trials actually run (not replayed), both arms together

    def _spent(self, result: TrialResult) -> None:
        self.evaluations += 1
        self.steps += result.iters if result.status is Status.OK else 0

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, TrialResult]]:
        fresh = []
        for job in jobs:
            hit = self.cache.get((code_hash(job.files), job.fidelity, job.seed))
            if hit is None:
                fresh.append(job)
            else:
                self._spent(hit)
                yield job, hit
        for job, result in self.inner.run(fresh):
            self.cache[(code_hash(job.files), job.fidelity, job.seed)] = result
            self.trained += 1
            self._spent(result)
            yield job, result


def _incumbent_loss(store: RunStore, config: RunConfig, cid: str) -> float:
    seeds = seed_plan(config).confirm
    losses = [
        t.val_loss
        for t in store.trials(cid)
        if t.fidelity == config.fidelity and t.seed in seeds and t.val_loss is not None
    ]
    est = estimate(losses)
    return est.mean if est else float("nan")


def run_arm(config: RunConfig, executor: Shared, root: Path) -> list[Point]:
    """One search; the incumbent after each generation."""
    store = RunStore(root / config.allocation)
    store.create_run(config.allocation, "shakespeare", {}, [])
    team = build_team(
        parse_model_map("offline"),
        Credentials.from_env({}),
        offline=lambda: OfflineAgent(seed=config.seed),
    )
    executor.evaluations = executor.steps = 0
    points: list[Point] = []

    def track(event: Event) -> None:
        if event.kind == "generation":
            loss = _incumbent_loss(store, config, event.candidate)
            points.append(
                Point(len(points) + 1, executor.evaluations, executor.steps, event.candidate, loss)
            )
            print(f"  {config.allocation} gen {len(points)}: {executor.evaluations} evaluations,"
                  f" best {event.candidate} {loss:.4f}", flush=True)  # fmt: skip

    task = load_task(config.task)
    build_search(
        config,
        store,
        task=task,
        library=load_library(),
        agents=team,
        executor=executor,
        on_event=track,
    ).run()
    for a in store.allocations():
        slots = ", ".join(f"{slug} {n}" for slug, n in a.slots if n)
        print(f"  {config.allocation} gen {a.generation} slots: {slots}", flush=True)
    rescue = repair_rescue(store.candidates())
    print(f"  {config.allocation} repairs: rescued {rescue.rescued} of {rescue.repaired}")
    store.close()
    return points


def reach(points: list[Point], target: float) -> Point | None:
    """The first point at or below `target`."""
    return next((p for p in points if p.loss <= target + 1e-12), None)


def best_within(points: list[Point], evaluations: int) -> float:
    """The incumbent's loss once no more than `evaluations` had been spent."""
    return min((p.loss for p in points if p.evaluations <= evaluations), default=float("nan"))


def main() -> None:
    """Run both arms and print them side by side, then the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=6)
    parser.add_argument("--team", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="the search's seed (team, agent)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="confirm at smoke, not low")
    args = parser.parse_args()
    base = dict(
        team_size=args.team,
        generations=args.generations,
        screen_fidelity="smoke",
        fidelity="smoke" if args.smoke else "low",
        seeds=2,
        seed=args.seed,
        workers=args.workers,
        elite=0,  # the arms differ only in who proposes
    )
    task = load_task("shakespeare")
    data = resolve_data(mirror=os.environ.get("DREAMTEAM_DATA_MIRROR", "../shared/data"))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        inner = LocalExecutor(
            task,
            data,
            probe_isolation(),
            TrialBudget(threads=cpu_threads(args.workers)),
            Path(tmp) / "work",
            workers=args.workers,
        )
        shared = Shared(inner)
        arms = {
            name: run_arm(RunConfig(**base, allocation=name), shared, Path(tmp))  # type: ignore[arg-type]
            for name in ("uniform", "bandit")
        }
    wall = time.perf_counter() - start
    uniform, bandit = arms["uniform"], arms["bandit"]
    print(
        f"team {args.team}, {args.generations} generations, seed {args.seed}; screen smoke, "
        f"confirm {base['fidelity']} x 2 seeds; {shared.trained} trials trained in "
        f"{wall / 60:.1f} min"
    )
    print(f"{'gen':>3}  {'uniform evals':>13} {'best':>8}   {'bandit evals':>12} {'best':>8}")
    for u, b in zip(uniform, bandit, strict=True):
        print(
            f"{u.generation:>3}  {u.evaluations:>13} {u.loss:>8.4f}   {b.evaluations:>12} "
            f"{b.loss:>8.4f}"
        )
    target, spent = uniform[-1].loss, uniform[-1].evaluations
    print(f"uniform's final best: {target:.4f} ({uniform[-1].best}) after {spent} evaluations")
    print(f"bandit's final best:  {bandit[-1].loss:.4f} ({bandit[-1].best}) after "
          f"{bandit[-1].evaluations} evaluations")  # fmt: skip
    budget = min(uniform[-1].evaluations, bandit[-1].evaluations)
    u_at, b_at = best_within(uniform, budget), best_within(bandit, budget)
    print(f"best within {budget} evaluations: uniform {u_at:.4f}, bandit {b_at:.4f}")
    got = reach(bandit, target)
    if got is None:
        print("ratio: the bandit did not reach the uniform arm's best (ratio > 1)")
    else:
        print(
            f"ratio (bandit / uniform evaluations to reach {target:.4f}): "
            f"{got.evaluations} / {spent} = {got.evaluations / spent:.2f}"
        )


if __name__ == "__main__":
    main()

"""Harness overhead per candidate, in units of the baseline's own training step.

Runs the baseline through the whole trial path several times with a 1-step training budget
and once more with N steps, all in one run, and reports:
  - the baseline's ms per training step: (training time at N steps - at 1 step) / (N - 1),
    as the sandboxed child times its `train()` call;
  - the overhead per candidate: a 1-step trial's wall time minus its training time, split
    into the static checks, the training process's start-up (spawn, confinement, imports,
    staging) and the evaluation from the moment the checkpoint is there (the sandboxed probe
    and scoring passes over the whole validation split, whose processes start, and import,
    while the candidate trains; and the harness's own reduction of their logits to the loss).
The last line is the overhead in seconds and in baseline training steps. Timings on a shared
machine are noisy: compare figures from one run, and note the load printed first.

    python benchmarks/harness_overhead.py [--rounds 3] [--steps 40] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dreamteam.execute.devices import cpu_threads
from dreamteam.harness.checks import check_candidate
from dreamteam.harness.sandbox.launcher import probe_isolation
from dreamteam.harness.scoring import lm
from dreamteam.harness.trial import TrialBudget, run_trial
from dreamteam.records import TrialResult
from dreamteam.tasks import load_task
from dreamteam.tasks.data import resolve_data


class _Clock:
    """Wall time spent in parts of the harness (its reduction of the logits), per trial."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.parts[name] = self.parts.get(name, 0.0) + time.perf_counter() - start

        return timed


def _instrument(clock: _Clock) -> None:
    """Time the harness's reduction (a benchmark may patch; the product never)."""
    reducer_add = lm._Reducer.add
    lm._Reducer.add = clock.wrap("reduction (harness)", reducer_add)  # type: ignore[method-assign]


def main() -> None:
    """Measure and print the overhead figures in seconds and in baseline training steps."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="1-step trials (median taken)")
    parser.add_argument("--steps", type=int, default=40, help="the N-step trial (>= 2)")
    parser.add_argument("--quick", action="store_true", help="1 round, 20 steps")
    args = parser.parse_args()
    rounds, steps = (1, 20) if args.quick else (max(args.rounds, 1), max(args.steps, 2))
    task = load_task("shakespeare")
    data = resolve_data(mirror=os.environ.get("DREAMTEAM_DATA_MIRROR", "../shared/data"))
    files = task.baseline_files()
    isolation = probe_isolation()
    budget = TrialBudget(threads=cpu_threads(1))
    clock = _Clock()
    _instrument(clock)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    start = time.perf_counter()
    for _ in range(20):
        assert check_candidate(files, task).ok
    checks = (time.perf_counter() - start) / 20

    def trial(name: str, iters: int) -> tuple[TrialResult, float]:
        t0 = time.perf_counter()
        r = run_trial(task, files, data, "smoke", 1337, Path(tmp) / name, budget, isolation,
                      iters=iters)  # fmt: skip
        assert r.ok, r.reason
        return r, time.perf_counter() - t0

    overheads, startups, evals, parts = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            clock.parts = {}
            one, wall = trial(f"one{i}", 1)
            overheads.append(wall - one.train_seconds)
            evals.append(one.eval_seconds)
            startups.append(wall - one.eval_seconds - one.train_seconds)
            parts.append(dict(clock.parts))
        many, many_wall = trial("many", steps)
    step = (many.train_seconds - one.train_seconds) / (steps - 1)
    overhead = statistics.median(overheads)
    print(f"load average after:  {os.getloadavg()[0]:.2f}")
    print(f"isolation layers: {', '.join(isolation.layers())}")
    print(f"baseline training step:       {step * 1000:.1f} ms ({steps} vs 1 steps, seed 1337)")
    print(f"static checks:                {checks * 1000:.1f} ms")
    print(f"training process start-up:    {statistics.median(startups):.2f} s "
          "(spawn, confine, imports, staging)")  # fmt: skip
    print(f"evaluation (whole split):     {statistics.median(evals):.2f} s")
    for name in parts[0]:
        print(f"  {name + ':':<28}{statistics.median(p.get(name, 0.0) for p in parts):.2f} s")
    print(f"rounds: {[round(t, 2) for t in overheads]}")
    # the whole trial, for overlaps that only borrow time from a busy training
    print(f"whole trial at {steps} steps:    {many_wall:.2f} s")
    print(
        f"overhead per candidate: {overhead:.2f} s = {overhead / step:.1f} baseline training steps"
    )


if __name__ == "__main__":
    main()

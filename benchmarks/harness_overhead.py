"""Harness overhead per candidate, in units of the baseline's own training step.

Runs the baseline through the whole trial path several times with a 1-step training budget
on each of the two start paths in turn (stages spawned afresh, or forked from a template
that imported torch once: sandbox/forks.py), and once more with N steps, all in one run,
and reports for each path:
  - the baseline's ms per training step: (training time at N steps - at 1 step) / (N - 1),
    as the sandboxed child times its `train()` call;
  - the 1-step trial's training time (train() with its fixed costs: building the model and
    the optimizer, the first step, the checkpoint's save);
  - the overhead per candidate: a 1-step trial's wall time minus its training time, split
    into the static checks, the training process's start-up (spawn, confinement, imports,
    staging) and the evaluation from the moment the checkpoint is there (the sandboxed probe
    and scoring passes over the whole validation split, whose processes start, and import,
    while the candidate trains; and the harness's own reduction of their logits to the loss).
The N-step trial runs on both paths too: a forked child must train as fast as a spawned one.
The unit is the spawned child's step. The last line is the default (fork) path's overhead in
seconds and in baseline training steps. Timings on a shared machine are noisy: compare
figures from one run, and note the load printed first.

    python benchmarks/harness_overhead.py [--rounds 3] [--steps 40] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from dreamteam.execute.devices import cpu_threads
from dreamteam.harness.checks import check_candidate
from dreamteam.harness.sandbox.forks import ForkServer
from dreamteam.harness.sandbox.launcher import probe_isolation
from dreamteam.harness.sandbox.limits import StartMethod
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


def _path_figures(trials: list[tuple[TrialResult, float]]) -> dict[str, float]:
    """Median overhead, training start-up and evaluation of one start path's 1-step trials."""
    return {
        "overhead": statistics.median(wall - r.train_seconds for r, wall in trials),
        "startup": statistics.median(wall - r.eval_seconds - r.train_seconds for r, wall in trials),
        "eval": statistics.median(r.eval_seconds for r, _ in trials),
        "train1": statistics.median(r.train_seconds for r, _ in trials),
    }


def main() -> None:
    """Measure and print the overhead figures of both start paths, in seconds and in baseline
    training steps; the last line is the default path's (fork)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="1-step trials per path (median)")
    parser.add_argument("--steps", type=int, default=40, help="the N-step trial (>= 2)")
    parser.add_argument("--quick", action="store_true", help="1 round, 20 steps")
    args = parser.parse_args()
    rounds, steps = (1, 20) if args.quick else (max(args.rounds, 1), max(args.steps, 2))
    task = load_task("shakespeare")
    data = resolve_data(mirror=os.environ.get("DREAMTEAM_DATA_MIRROR", "../shared/data"))
    files = task.baseline_files()
    spawn = probe_isolation()
    budget = TrialBudget(threads=cpu_threads(1))
    forks = ForkServer(spawn, budget.threads)
    paths = {StartMethod.SPAWN: spawn, StartMethod.FORK: replace(spawn, forks=forks)}
    clock = _Clock()
    _instrument(clock)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    start = time.perf_counter()
    for _ in range(20):
        assert check_candidate(files, task).ok
    checks = (time.perf_counter() - start) / 20

    def trial(name: str, iters: int, start: StartMethod) -> tuple[TrialResult, float]:
        t0 = time.perf_counter()
        r = run_trial(task, files, data, "smoke", 1337, Path(tmp) / name, budget, paths[start],
                      iters=iters)  # fmt: skip
        assert r.ok, r.reason
        return r, time.perf_counter() - t0

    ones: dict[StartMethod, list[tuple[TrialResult, float]]] = {m: [] for m in paths}
    parts: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        # unmeasured first trials: the fork path's starts the template (once per run)
        warm = {m: trial(f"warm-{m.value}", 1, m)[1] for m in paths}
        for i in range(rounds):  # the two paths in turn, so that both see the same load
            for method in paths:
                clock.parts = {}
                ones[method].append(trial(f"one{i}-{method.value}", 1, method))
                parts.append(dict(clock.parts))
        many = {m: trial(f"many-{m.value}", steps, m) for m in paths}
    forks.close()
    assert forks.forked > 0 and not forks.refused, forks.refused
    per_step = {
        m: (many[m][0].train_seconds - ones[m][-1][0].train_seconds) / (steps - 1) for m in paths
    }
    step = per_step[StartMethod.SPAWN]
    figures = {m: _path_figures(trials) for m, trials in ones.items()}
    print(f"load average after:  {os.getloadavg()[0]:.2f}")
    print(f"isolation layers: {', '.join(spawn.layers())}")
    print(f"baseline training step:       {step * 1000:.1f} ms spawned, "
          f"{per_step[StartMethod.FORK] * 1000:.1f} ms forked ({steps} vs 1 steps, seed 1337)")  # fmt: skip
    print(f"static checks:                {checks * 1000:.1f} ms")
    print(f"first trial (warm-up):        spawn {warm[StartMethod.SPAWN]:.2f} s, "
          f"fork {warm[StartMethod.FORK]:.2f} s (starts the template, once per run)")  # fmt: skip
    for method, f in figures.items():
        print(f"{method.value:>5}: training start-up {f['startup']:.2f} s, evaluation (whole "
              f"split) {f['eval']:.2f} s, overhead {f['overhead']:.2f} s = "
              f"{f['overhead'] / step:.1f} steps; rounds "
              f"{[round(w - r.train_seconds, 2) for r, w in ones[method]]}")  # fmt: skip
        # train() of one step: the fixed part of training (model, optimizer, first step, save)
        print(f"       1-step training {f['train1']:.2f} s")
    for name in parts[0]:
        print(f"  {name + ':':<28}{statistics.median(p.get(name, 0.0) for p in parts):.2f} s")
    spawned, forked = figures[StartMethod.SPAWN]["overhead"], figures[StartMethod.FORK]["overhead"]
    print(f"overhead fork/spawn: {forked / spawned:.2f} (same run, interleaved)")
    # the whole trial, for overlaps that only borrow time from a busy training
    print(f"whole trial at {steps} steps:    spawn {many[StartMethod.SPAWN][1]:.2f} s, "
          f"fork {many[StartMethod.FORK][1]:.2f} s")  # fmt: skip
    print(f"overhead per candidate: {forked:.2f} s = {forked / step:.1f} baseline training steps")


if __name__ == "__main__":
    main()

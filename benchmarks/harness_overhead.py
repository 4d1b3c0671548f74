"""Harness overhead per candidate: static checks, sandbox start-up and the honest evaluation.

Runs the baseline through the whole trial path with a 1-step training budget, several times,
and splits the wall time into: checks (in the harness), the training process minus the
training itself (spawn, confinement, imports, data), and the evaluation (two sandboxed
logits passes over the whole validation split plus the harness's reduction). For scale, the
last line compares the overhead with the training time of one low-fidelity trial measured
in the same run.

    python benchmarks/harness_overhead.py [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from dreamteam.execute.devices import cpu_threads
from dreamteam.harness.checks import check_candidate
from dreamteam.harness.sandbox.launcher import probe_isolation
from dreamteam.harness.trial import TrialBudget, run_trial
from dreamteam.tasks import load_task
from dreamteam.tasks.data import resolve_data


def main() -> None:
    """Measure and print the overhead figures and their ratio to a low-fidelity training."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 round; the low trial at 100 steps")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    task = load_task("shakespeare")
    data = resolve_data(mirror=os.environ.get("DREAMTEAM_DATA_MIRROR", "../shared/data"))
    files = task.baseline_files()
    isolation = probe_isolation()
    budget = TrialBudget(threads=cpu_threads(1))

    start = time.perf_counter()
    for _ in range(20):
        assert check_candidate(files, task).ok
    checks = (time.perf_counter() - start) / 20

    spawn, evals, totals = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            t0 = time.perf_counter()
            r = run_trial(
                task, files, data, "smoke", 1337, Path(tmp) / f"o{i}", budget, isolation, iters=1
            )
            total = time.perf_counter() - t0
            assert r.ok, r.reason
            spawn.append(total - r.eval_seconds - r.train_seconds)
            evals.append(r.eval_seconds)
            totals.append(total - r.train_seconds)
        low_iters = 100 if args.quick else task.iterations("low")
        r = run_trial(
            task, files, data, "low", 1337, Path(tmp) / "low", budget, isolation, iters=low_iters
        )
        assert r.ok, r.reason
    overhead = statistics.median(totals)
    print(f"isolation layers: {', '.join(isolation.layers())}")
    print(f"static checks:                {checks * 1000:.1f} ms")
    print(
        f"training process start-up:    {statistics.median(spawn):.2f} s (spawn, confine, imports)"
    )
    print(f"evaluation (whole split):     {statistics.median(evals):.2f} s")
    print(f"overhead per candidate:       {overhead:.2f} s  runs={[round(t, 2) for t in totals]}")
    print(f"training, {low_iters} steps:        {r.train_seconds:.2f} s")
    print(f"ratio overhead/training({low_iters} steps): {overhead / r.train_seconds:.3f}")


if __name__ == "__main__":
    main()

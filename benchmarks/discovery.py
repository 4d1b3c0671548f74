"""What the default search finds, measured at the real budget.

Runs `dreamteam run` on its defaults (offline agent, the built-in task, the default budget),
or reads a run that already exists (`--run DIR`), then trains its final best and the
baseline at `--fidelity` (default `full`, the protected 10,001 steps) on 3 fresh seeds each,
seeds no run's seed plan uses, one training at a time. Every figure is the harness's
whole-split loss through `dreamteam.evaluate_files`, the path a candidate is scored on.

    python benchmarks/discovery.py [--fidelity full] [--seeds 3] [--run DIR] [--quick]

`--quick`: a one-generation search of two personas with screening and confirmation at
`smoke`, to check the script works (use it with a cheap `--fidelity`). The last line is
`discovery: delta=<d> ci95=<w> fidelity=<level> steps=<n>`: best minus baseline, negative
is better, the 95 % interval from the larger of the two spreads (select/rules.compare).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from dreamteam import RunConfig, RunStore, evaluate_files, load_task, run_search, settings_from_env
from dreamteam.config import config_from_dict
from dreamteam.loop.plan import BASELINE_ID
from dreamteam.select.rules import compare, estimate
from dreamteam.select.stats import paired_p

FRESH = 4242  # first fresh seed: far from every run's seed plan (1337 onwards)


def _search(quick: bool, root: Path) -> Path:
    """Run the default search (or the quick one) in `root/run`; returns the run folder."""
    config = RunConfig()
    if quick:
        config = RunConfig(
            generations=1, team_size=2, screen_fidelity="smoke", fidelity="smoke", max_seeds=2
        )
    run_dir = root / "run"
    summary = run_search(config, run_dir)
    print(
        f"search: best {summary.best} delta={summary.delta:+.4f} ci95={summary.ci95:.4f} "
        f"at {summary.fidelity} ({summary.steps} steps); run {run_dir}",
        flush=True,
    )
    return run_dir


def _best_files(run_dir: Path) -> tuple[str, dict[str, str], dict[str, str], str]:
    """(best id, its files, the baseline's files, the task) of a finished run."""
    store = RunStore.open_existing(run_dir)
    try:
        summary = store.summary()
        if summary is None:
            sys.exit(f"error: {run_dir} has not finished: resume it first")
        best, base = store.candidate(summary.best), store.candidate(BASELINE_ID)
        if best is None or base is None:
            sys.exit(f"error: {run_dir} lacks its best or baseline candidate")
        task = config_from_dict(store.run_info().config).task
        return best.id, dict(best.files), dict(base.files), task
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fidelity", default="full")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--run", type=Path, help="measure this finished run's best instead")
    parser.add_argument("--quick", action="store_true", help="a tiny search, to check the script")
    args = parser.parse_args()
    if args.seeds < 2:
        sys.exit("error: --seeds must be at least 2: one seed has no spread")
    with tempfile.TemporaryDirectory(prefix="discovery-") as tmp:
        run_dir = args.run or _search(args.quick, Path(tmp))
        best, files, base_files, task_name = _best_files(run_dir)
        task = load_task(task_name)
        if args.fidelity not in task.fidelity:
            sys.exit(f"error: unknown fidelity {args.fidelity}: use {', '.join(task.fidelity)}")
        settings = settings_from_env(os.environ)
        seeds = [FRESH + i for i in range(args.seeds)]
        losses = {}
        pairs = [("baseline", base_files)] + ([(best, files)] if best != BASELINE_ID else [])
        for name, which in pairs:
            results = evaluate_files(task, which, args.fidelity, seeds, settings)
            losses[name] = {r.seed: r.val_loss for r in results if r.val_loss is not None}
            shown = ", ".join(
                f"{r.val_loss:.4f}" if r.val_loss is not None else str(r.status) for r in results
            )
            print(f"{name} at {args.fidelity}, seeds {seeds}: {shown}", flush=True)
    report(best, losses, args.fidelity, task.iterations(args.fidelity))


def report(best: str, losses: dict[str, dict[int, float]], fidelity: str, steps: int) -> None:
    """The best against the baseline on the same fresh seeds."""
    b = estimate(list(losses["baseline"].values()))
    c = estimate(list(losses[best].values())) if best in losses else b
    if b is None or c is None:
        sys.exit("error: a training failed on every seed: see the lines above")
    cmp = compare(c, b, 0.0)
    p = paired_p(losses.get(best, {}), losses["baseline"])
    print(f"baseline {b.mean:.4f} ± {b.sd:.4f}, {best} {c.mean:.4f} ± {c.sd:.4f} (n={c.n})")
    if best == BASELINE_ID:
        print("the search kept the baseline: no change to measure (delta 0 by definition)")
    elif p is not None:
        print(f"one-sided paired t: p={p.p:.3g} over {p.n} seeds")
    print(
        f"discovery: delta={cmp.delta:+.4f} ci95={cmp.ci95:.4f} fidelity={fidelity} steps={steps}"
    )


if __name__ == "__main__":
    main()

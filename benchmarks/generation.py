"""One generation of a large team, screened and confirmed: wall time and the share of full cost.

A team of N personas (default 36) proposes once with the offline agent; every candidate is
screened at `low`, the top 3 are confirmed at `medium` with 2 seeds, then the best is
measured again on fresh seeds. Prints the wall time, the optimizer steps spent, and the
fraction of what training every candidate once at full fidelity would have cost.

    python benchmarks/generation.py [--team 36] [--workers 1] [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from dreamteam.agents import Credentials, build_team, parse_model_map
from dreamteam.agents.offline import OfflineAgent
from dreamteam.config import RunConfig
from dreamteam.execute.devices import cpu_threads
from dreamteam.execute.local import LocalExecutor
from dreamteam.harness.sandbox.launcher import probe_isolation
from dreamteam.harness.trial import TrialBudget
from dreamteam.loop.build import build_search
from dreamteam.loop.search import Event
from dreamteam.personas import load_library
from dreamteam.store import RunStore
from dreamteam.tasks import load_task
from dreamteam.tasks.data import resolve_data


def main() -> None:
    """Run one generation and print its cost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--team", type=int, default=36)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="4 personas, smoke fidelities")
    args = parser.parse_args()
    team_size, screen, confirm = (
        (4, "smoke", "smoke") if args.quick else (args.team, "low", "medium")
    )
    config = RunConfig(
        team_size=team_size,
        generations=1,
        screen_fidelity=screen,
        fidelity=confirm,
        seeds=2,
        max_promoted=3,
        promote_fraction=1.0,
        workers=args.workers,
    )
    task = load_task("shakespeare")
    data = resolve_data(mirror=os.environ.get("DREAMTEAM_DATA_MIRROR", "../shared/data"))
    team = build_team(
        parse_model_map("offline"), Credentials.from_env({}), offline=lambda: OfflineAgent(seed=0)
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "run")
        store.create_run("bench", task.name, {}, [])
        executor = LocalExecutor(
            task,
            data,
            probe_isolation(),
            TrialBudget(threads=cpu_threads(args.workers)),
            Path(tmp) / "work",
            workers=args.workers,
        )
        marks: dict[str, float] = {}

        def mark(event: Event) -> None:
            # the ranked result: generation 1's confirmation done, before the final re-measure
            if event.kind == "generation":
                marks["ranked"] = time.perf_counter()

        start = time.perf_counter()
        summary = build_search(
            config,
            store,
            task=task,
            library=load_library(),
            agents=team,
            executor=executor,
            on_event=mark,
        ).run()
        wall = time.perf_counter() - start
        ranked = marks.get("ranked", start + wall) - start
        steps = sum(t.iters for t in store.trials())
    full = team_size * task.iterations("full")
    print(f"team {team_size}, screen {screen}, confirm {confirm} x 2 seeds, workers {args.workers}")
    print(f"best: {summary.best} delta={summary.delta:+.4f} ci95={summary.ci95:.4f}")
    print(f"ranked result (baseline + screening + confirmation): {ranked / 60:.1f} min")
    print(
        f"wall time with the final fresh-seed figure: {wall / 60:.1f} min; optimizer steps: {steps}"
    )
    print(f"fraction of full-fidelity cost (one full run per candidate): {steps / full:.3f}")


if __name__ == "__main__":
    main()

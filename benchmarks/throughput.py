"""Candidates screened per hour: 1 worker vs 2, and LLM calls in line vs overlapped with training.

A team of N personas (default 4) proposes once through an OpenAI-compatible server on
127.0.0.1 (tests/loopback.py) that answers each persona with its own learning rate, so every
candidate is new and valid; each is screened at one fixed fidelity (smoke by default). The
baseline is measured once beforehand and copied into every run (the runs resume from it), so
the timed part is exactly one generation's proposals and screening. Four runs:

    workers 1 vs 2               (answers at once)          -> the executor's scaling
    LLM in line vs overlapped    (answers after --delay s)  -> agent_concurrency 1 vs N

    python benchmarks/throughput.py [--candidates 4] [--fidelity smoke|low] [--delay 5]
                                    [--executor local|ray] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dreamteam.agents import Credentials, build_team, parse_model_map
from dreamteam.config import RunConfig
from dreamteam.execute.choose import make_executor
from dreamteam.execute.devices import cpu_threads
from dreamteam.harness.sandbox.launcher import probe_isolation
from dreamteam.harness.trial import TrialBudget
from dreamteam.loop.build import build_search
from dreamteam.loop.search import Search
from dreamteam.personas import Persona, load_library
from dreamteam.store import RunStore
from dreamteam.tasks import Task, load_task
from dreamteam.tasks.data import resolve_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from loopback import LoopbackLLM  # the tests' server, shared

PERSONAS = ("archimedes", "aristotle", "research-lead", "optimization-theory", "euler", "gauss")
RATES = ("1e-3", "1.5e-3", "2e-3", "2.5e-3", "3e-3", "4e-3")


@dataclass(frozen=True)
class Setup:
    """One timed run: how many trials at once, how slow the LLM, how many calls in flight."""

    label: str
    workers: int
    delay: float
    concurrency: int


@dataclass(frozen=True)
class Timing:
    """What one run measured."""

    setup: Setup
    seconds: float
    screened: int

    @property
    def per_hour(self) -> float:
        return 3600 * self.screened / self.seconds


def _answers(task: Task, team: list[Persona]):
    """Each persona's answer: the baseline with that persona's own learning rate."""
    train = task.baseline_files()["train.py"]

    def answer(prompt: str) -> str:
        index = next(i for i, p in enumerate(team) if f"You are {p.name}" in prompt[:400])
        code = train.replace("learning_rate = 3e-4", f"learning_rate = {RATES[index]}")
        return f"A learning rate of {RATES[index]}.\n\n```python\ntrain_mps.py\n{code}```\n"

    return answer


def _config(args: argparse.Namespace, workers: int = 1, concurrency: int = 1) -> RunConfig:
    return RunConfig(
        personas=PERSONAS[: args.candidates],
        generations=1,
        screen_fidelity=args.fidelity,
        fidelity=args.fidelity,
        max_promoted=0,  # screening only: the generation is the N screening trials
        repair=0,
        elite=0,
        workers=workers,
        executor=args.executor,
        agent_concurrency=concurrency,
    )


def _search(config: RunConfig, run_dir: Path, url: str, task: Task, data) -> tuple[Search, Any]:
    """A search over `run_dir` whose agents ask the loopback server; and its executor."""
    model = f"openai-compatible:bench@{url}"
    team = build_team(parse_model_map(model), Credentials.from_env({}))
    executor = make_executor(
        config.executor,
        task,
        data,
        probe_isolation(),
        TrialBudget(threads=cpu_threads(config.workers)),
        run_dir / "work",
        workers=config.workers,
        device="cpu",
    )
    store = RunStore(run_dir)
    store.create_run(run_dir.name, task.name, {}, [])
    return build_search(
        config, store, task=task, library=load_library(), agents=team, executor=executor
    ), executor


def _timed(args, setup: Setup, template: Path, root: Path, task: Task, data, answer) -> Timing:
    run_dir = root / setup.label.replace(" ", "-")
    shutil.copytree(template, run_dir)  # the measured baseline: nothing of it is rerun
    config = _config(args, setup.workers, setup.concurrency)
    with LoopbackLLM(answer, delay=setup.delay) as llm:
        search, executor = _search(config, run_dir, llm.url, task, data)
        start = time.perf_counter()
        search.run()
        seconds = time.perf_counter() - start
    executor.close()
    screened = sum(1 for t in search.store.trials() if t.candidate.startswith("g1-"))
    search.store.close()
    return Timing(setup, seconds, screened)


def _show(t: Timing) -> None:
    s = t.setup
    print(
        f"  {s.label:<15} workers={s.workers} llm_delay={s.delay:g}s calls_in_flight="
        f"{s.concurrency}: {t.seconds:6.1f} s, {t.screened} screened, "
        f"{t.per_hour:6.1f} candidates/hour",
        flush=True,
    )


def main() -> None:
    """Measure the four runs and print candidates per hour and both ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=4, choices=range(1, len(PERSONAS) + 1))
    parser.add_argument("--fidelity", default="smoke", choices=("smoke", "low"))
    parser.add_argument("--delay", type=float, default=5.0, help="simulated LLM latency, s")
    parser.add_argument("--executor", default="local", choices=("local", "ray"))
    parser.add_argument("--quick", action="store_true", help="2 candidates, 2 s latency")
    args = parser.parse_args()
    if args.quick:
        args.candidates, args.delay = 2, 2.0
    n = args.candidates
    task = load_task("shakespeare")
    data = resolve_data(mirror=os.environ.get("DREAMTEAM_DATA_MIRROR", "../shared/data"))
    library = load_library()
    answer = _answers(task, [library.get(slug) for slug in PERSONAS[:n]])
    setups = [
        Setup("workers 1", 1, 0.0, n),
        Setup("workers 2", 2, 0.0, n),
        Setup("LLM in line", 1, args.delay, 1),
        Setup("LLM overlapped", 1, args.delay, n),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        template = root / "template"
        with LoopbackLLM(answer) as llm:  # generations=0: only the baseline is measured
            base, executor = _search(replace(_config(args), generations=0), template, llm.url, task, data)  # fmt: skip
            base.run()
            executor.close()
            base.store.close()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(
            f"{n} candidates screened at {args.fidelity}, executor {args.executor}, "
            f"{cores} cores; simulated LLM latency {args.delay:g} s",
            flush=True,
        )
        timings = []
        for setup in setups:
            timings.append(_timed(args, setup, template, root, task, data, answer))
            _show(timings[-1])
    w1, w2, off, on = timings
    trial = w1.seconds / max(w1.screened, 1)
    ideal = n * (args.delay + trial) / (args.delay + n * trial)
    print(f"overlap: the ideal for these figures is x{ideal:.2f} (one latency instead of {n})")
    print(
        f"ratios: workers 2 vs 1 x{w2.per_hour / w1.per_hour:.2f}; "
        f"LLM overlapped vs in line x{on.per_hour / off.per_hour:.2f}"
    )


if __name__ == "__main__":
    main()

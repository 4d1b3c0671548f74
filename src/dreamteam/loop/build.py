"""The one place a search is wired from a config: task, personas, agents, sandbox, executor.

The CLI, the benchmarks, the tests and users' scripts all build a search here; each part may
be handed in instead (a test's fake executor, a script's own agents), and what is built here
is closed by `Search.close()`. `writing` is how a process takes a run to write: one writer
per run, and no folder left behind by a run that never started.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from dreamteam.agents import AgentTeam, Credentials, LLMSettings, build_team, parse_model_map
from dreamteam.agents.offline import OfflineAgent
from dreamteam.config import RunConfig, Settings, settings_from_env
from dreamteam.errors import ConfigError, StoreError
from dreamteam.execute.choose import make_executor
from dreamteam.execute.devices import cpu_threads
from dreamteam.execute.jobs import Executor
from dreamteam.harness.sandbox.launcher import probe_isolation
from dreamteam.harness.trial import TrialBudget
from dreamteam.loop.search import Search
from dreamteam.personas import PersonaLibrary, load_library
from dreamteam.records import Event, ObjectiveName, RunSummary
from dreamteam.store import DB_NAME, RunStore
from dreamteam.store.faults import os_fault
from dreamteam.store.lock import RunLock
from dreamteam.store.runs import holds_run
from dreamteam.tasks import Task, load_task
from dreamteam.tasks.data import resolve_task_data


def checked_task(config: RunConfig) -> Task:
    """The run's task, with the run's fidelities and objective checked against it."""
    task = load_task(config.task)
    for level in (
        config.screen_fidelity,
        config.fidelity,
        config.final_fidelity or config.fidelity,
    ):
        task.iterations(level)
    if config.objective == ObjectiveName.BPB and not task.is_lm:
        raise ConfigError(f"--objective bpb needs a language-model task; {task.name!r} has none")
    return task


def build_agents(
    config: RunConfig, task: Task, environ: Mapping[str, str] = os.environ
) -> AgentTeam:
    """The agents of each persona mode, from the config's model strings and the environment's
    keys (read, never stored); each call bounded by the config's `agent_timeout`."""
    return build_team(
        parse_model_map(config.model),
        Credentials.from_env(environ),
        LLMSettings(deadline_s=config.agent_timeout),
        record=Path(config.record) if config.record else None,
        offline=lambda: OfflineAgent(
            seed=config.seed, protected=task.protected, imports=task.allowed_imports
        ),
    )


def build_search(
    config: RunConfig,
    store: RunStore,
    *,
    task: Task | None = None,
    library: PersonaLibrary | None = None,
    agents: AgentTeam | None = None,
    executor: Executor | None = None,
    on_event: Callable[[Event], None] = lambda e: None,
    settings: Settings | None = None,
) -> Search:
    """A search over `store` as `config` describes it. The run record is written to the store
    last, once every part is built (a resumed run keeps the one it has): a bad option leaves
    no run behind."""
    task = task or checked_task(config)
    library = library or load_library([Path(p) for p in config.persona_dirs])
    agents = agents or build_agents(config, task)
    layers: list[str] | None = None
    if executor is None:
        env = settings or settings_from_env(os.environ)
        isolation = probe_isolation()
        layers = list(isolation.layers())
        executor = make_executor(
            config.executor,
            task,
            resolve_task_data(task, env.home, env.mirror),
            isolation,
            TrialBudget(threads=cpu_threads(config.workers)),
            store.run_dir / "work",
            workers=config.workers,
            device=config.device,
            address=config.address,
            start=env.sandbox_start,
        )
    search = Search(config, task, library, agents, store, executor, on_event)
    if layers is not None:
        store.create_run(store.run_dir.name, task.name, dataclasses.asdict(config), layers)
    return search


@contextmanager
def writing(run_dir: Path, *, resume: bool) -> Iterator[RunStore]:
    """The store of a run for this process to run, locked so no second process writes it
    (store/lock.py). A new run must go to a folder holding none; a resumed one must have its
    record. A folder this call created is removed again when no run record was written in it
    (the run failed before it started: a bad --model, --fidelity or task)."""
    run_dir = run_dir.absolute()
    if resume and not (run_dir / DB_NAME).is_file():
        raise StoreError(f"{run_dir} is not a dreamteam run (no {DB_NAME}): check the path")
    if not resume and holds_run(run_dir):
        raise StoreError(
            f"{run_dir} already holds a run: resume it with `dreamteam run --resume {run_dir}`,"
            " or choose another --run-dir"
        )
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_fault(run_dir, exc) from exc
    lock = RunLock(run_dir)
    store: RunStore | None = None
    try:
        store = RunStore(run_dir)
        if resume:
            store.run_info()  # one that never started has no record: say so now
        yield store
    finally:
        if store is not None:
            store.close()
        if created and not holds_run(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        lock.release()


def run_search(
    config: RunConfig,
    run_dir: Path,
    on_event: Callable[[Event], None] = lambda e: None,
) -> RunSummary:
    """Run (or resume) a search in `run_dir` to its end and return its summary; the summary
    is stored with the run, for `dreamteam show` and the report."""
    with writing(run_dir, resume=holds_run(run_dir)) as store:
        search = build_search(config, store, on_event=on_event)
        return conclude(search)


def conclude(search: Search) -> RunSummary:
    """Run the search to its end and store its summary (a run already done stays as stored)."""
    try:
        summary = search.run()
    finally:
        search.close()
    search.store.finish_run("stopped" if summary.stopped else "done", summary)
    search.trials.live.final()  # the finished page: no reload, the run's final figures
    return summary

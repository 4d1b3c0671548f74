"""The one place a search is wired from a config: task, personas, agents, sandbox, executor.

The CLI, the benchmarks, the tests and users' scripts all build a search here; each part may
be handed in instead (a test's fake executor, a script's own agents), and what is built here
is closed by `Search.close()`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from dreamteam.agents import AgentTeam, Credentials, LLMSettings, build_team, parse_model_map
from dreamteam.agents.offline import OfflineAgent
from dreamteam.config import RunConfig, Settings, settings_from_env
from dreamteam.errors import ConfigError
from dreamteam.execute.choose import make_executor
from dreamteam.execute.devices import cpu_threads
from dreamteam.execute.jobs import Executor
from dreamteam.harness.sandbox.launcher import probe_isolation
from dreamteam.harness.trial import TrialBudget
from dreamteam.loop.search import Search
from dreamteam.personas import PersonaLibrary, load_library
from dreamteam.records import Event, ObjectiveName, RunSummary
from dreamteam.store import RunStore
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
    """A search over `store` as `config` describes it; the run record is written to the store
    (a resumed run keeps the one it has)."""
    task = task or checked_task(config)
    library = library or load_library([Path(p) for p in config.persona_dirs])
    agents = agents or build_agents(config, task)
    if executor is None:
        env = settings or settings_from_env(os.environ)
        isolation = probe_isolation()
        store.create_run(
            store.run_dir.name, task.name, dataclasses.asdict(config), list(isolation.layers())
        )
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
        )
    return Search(config, task, library, agents, store, executor, on_event)


def run_search(
    config: RunConfig,
    run_dir: Path,
    on_event: Callable[[Event], None] = lambda e: None,
) -> RunSummary:
    """Run (or resume) a search in `run_dir` to its end and return its summary; the summary
    is stored with the run, for `dreamteam show` and the report."""
    store = RunStore(run_dir)
    search = build_search(config, store, on_event=on_event)
    try:
        summary = search.run()
    finally:
        search.close()
    store.finish_run("stopped" if summary.stopped else "done", summary)
    return summary

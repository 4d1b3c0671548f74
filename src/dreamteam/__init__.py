"""dreamteam: a team of persona agents doing machine-learning research, evaluated honestly.

The names below are the public API for scripts; they are imported on first use, so that
`import dreamteam` stays cheap (the sandboxed child imports this package before it confines
itself). Everything else is internal and may move.

    import dreamteam as dt

    config = dt.RunConfig(generations=1, screen_fidelity="smoke", fidelity="smoke")
    summary = dt.run_search(config, Path("runs/scripted"))
    print(summary.best, summary.delta, summary.fidelity)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    # running a search
    "RunConfig": "dreamteam.config",
    "load_run_config": "dreamteam.config",
    "build_search": "dreamteam.loop.build",
    "run_search": "dreamteam.loop.build",
    "Search": "dreamteam.loop.search",
    "RunStore": "dreamteam.store",
    "list_runs": "dreamteam.store",
    # evaluating files by hand
    "evaluate_files": "dreamteam.harness.by_hand",
    "read_task_files": "dreamteam.harness.by_hand",
    "Settings": "dreamteam.config",
    "settings_from_env": "dreamteam.config",
    # tasks and personas
    "Task": "dreamteam.tasks",
    "load_task": "dreamteam.tasks",
    "Persona": "dreamteam.personas",
    "PersonaLibrary": "dreamteam.personas",
    "load_library": "dreamteam.personas",
    # records and enums
    "CandidateKind": "dreamteam.records",
    "CandidateRecord": "dreamteam.records",
    "ChangeRecord": "dreamteam.records",
    "Event": "dreamteam.records",
    "Mode": "dreamteam.records",
    "RunSummary": "dreamteam.records",
    "Status": "dreamteam.records",
    "TrialRecord": "dreamteam.records",
    "TrialResult": "dreamteam.records",
    # errors
    "AgentError": "dreamteam.errors",
    "ConfigError": "dreamteam.errors",
    "DataError": "dreamteam.errors",
    "DreamteamError": "dreamteam.errors",
    "PersonaError": "dreamteam.errors",
    "SandboxError": "dreamteam.errors",
    "StoreError": "dreamteam.errors",
    "TaskError": "dreamteam.errors",
}

__all__ = [
    "AgentError",
    "CandidateKind",
    "CandidateRecord",
    "ChangeRecord",
    "ConfigError",
    "DataError",
    "DreamteamError",
    "Event",
    "Mode",
    "Persona",
    "PersonaError",
    "PersonaLibrary",
    "RunConfig",
    "RunStore",
    "RunSummary",
    "SandboxError",
    "Search",
    "Settings",
    "Status",
    "StoreError",
    "Task",
    "TaskError",
    "TrialRecord",
    "TrialResult",
    "__version__",
    "build_search",
    "evaluate_files",
    "list_runs",
    "load_library",
    "load_run_config",
    "load_task",
    "read_task_files",
    "run_search",
    "settings_from_env",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dreamteam' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__

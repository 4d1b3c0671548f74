"""The package's shape: no import cycles between dreamteam modules, a small public API."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import dreamteam

SRC = Path(dreamteam.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The dreamteam modules a file imports anywhere (TYPE_CHECKING and function bodies too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from dreamteam.harness.sandbox import walls` imports the submodule walls; a
            # package's __init__ that only hands names on is not a dependency of its own
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            found |= subs
            if node.module in modules and len(subs) < len(node.names):
                found.add(node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {
        _module_name(p): p
        for p in SRC.rglob("*.py")
        if "tasks/" not in str(p.relative_to(SRC)) or p.parent.name == "tasks"
    }
    modules = set(files)
    return {name: _imports(path, modules) - {name} for name, path in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the path round it, or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_dreamteam_modules() -> None:
    assert _cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_few_modules_at_the_top_and_none_too_long() -> None:
    assert len(list(SRC.glob("*.py"))) <= 8
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}


PUBLIC = [
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


def test_public_api_is_pinned_and_every_name_resolves() -> None:
    assert dreamteam.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(dreamteam, name) is not None


def test_importing_dreamteam_stays_cheap() -> None:
    # the sandboxed child imports the package before it confines itself: nothing heavy
    code = "import sys, dreamteam; print(sorted(m for m in ('torch', 'numpy', 'httpx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""Configuration as plain values: where things live, and how a run is set up.

Only the CLI reads the environment; it builds these dataclasses and passes them down.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import pydantic

from dreamteam.errors import ConfigError
from dreamteam.harness.sandbox.limits import StartMethod
from dreamteam.records import AllocationPolicy, Mode, ObjectiveName
from dreamteam.tasks import load_task

DEFAULT_HOME = Path(platformdirs.user_data_dir("dreamteam", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Where caches and runs live, and where data comes from."""

    home: Path  # data cache and, by default, runs
    mirror: Path | None  # a local copy of the data (DREAMTEAM_DATA_MIRROR): no network
    # how sandboxed stages start (DREAMTEAM_SANDBOX_START): forked from a template that
    # imported torch once, or spawned afresh; the walls are the same either way
    sandbox_start: StartMethod = StartMethod.FORK

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"


def settings_from_env(environ: Mapping[str, str]) -> Settings:
    """Settings from DREAMTEAM_HOME, DREAMTEAM_DATA_MIRROR and DREAMTEAM_SANDBOX_START."""
    home = (
        Path(environ["DREAMTEAM_HOME"]).expanduser()
        if environ.get("DREAMTEAM_HOME")
        else DEFAULT_HOME
    )
    mirror = environ.get("DREAMTEAM_DATA_MIRROR")
    start = environ.get("DREAMTEAM_SANDBOX_START") or StartMethod.FORK.value
    if start not in {m.value for m in StartMethod}:
        raise ConfigError(
            f"DREAMTEAM_SANDBOX_START={start!r}: set it to fork or spawn (or leave it unset)"
        )
    return Settings(
        home=home,
        mirror=Path(mirror).expanduser().resolve() if mirror else None,
        sandbox_start=StartMethod(start),
    )


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a research run; stored with the run so --resume repeats it."""

    task: str = "shakespeare"  # a built-in task's name, or a task directory (made absolute)
    personas: tuple[str, ...] = ()  # explicit team (slugs); empty: drawn from `modes`
    modes: tuple[str, ...] = ("savant", "collaborator", "specialist")
    team_size: int = 4
    model: str = "offline"  # a model string, or MODE=SPEC,... per mode
    generations: int = 2
    screen_fidelity: str = "smoke"  # every valid candidate, one seed
    fidelity: str = "low"  # promoted candidates are confirmed here, with `seeds` seeds
    seeds: int = 2
    max_seeds: int = 5  # a close call is trained on more seeds, one at a time, up to this many
    final_fidelity: str = ""  # the final claim is measured here ("": the confirmation fidelity)
    # the elite's top N train once at the final fidelity, and the best there is the claim
    final_top: int = 1
    promote_fraction: float = 0.34  # successive halving: the top third goes on
    max_promoted: int = 2
    workers: int = 1  # trials at once (local), or the size of a local Ray instance
    executor: str = "local"  # local | ray
    address: str = ""  # ray: a cluster to attach to (`auto`: this machine's); empty: start one
    agent_concurrency: int = 4  # LLM calls in flight at once (parallel strategy); 1: in line
    agent_timeout: float = 600.0  # seconds for a whole agent call, every retry included
    budget_minutes: float = 0.0  # 0: no limit
    budget_tokens: int = 0  # agent input + output tokens over the run; 0: no limit
    budget_cost: float = 0.0  # USD over the run, priced by `prices`; 0: no limit
    # USD per million (input, output) tokens by model family, over budget.DEFAULT_PRICES
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    objective: str = "loss"  # loss | bpb | loss+time | pareto
    time_weight: float = 0.05  # loss+time: nats per training minute (at the confirmation fidelity)
    time_tolerance: float = 0.1  # pareto: up to 10 % slower still counts as not slower
    elite: int = 3  # confirmed candidates kept across generations; 0 turns the elite off
    crossover: int = 0  # 1: one candidate per generation merges two elite members' changes
    strategy: str = "parallel"  # parallel: all from the parent; chain: each from the last best
    device: str = "auto"
    seed: int = 0  # the search's own randomness (team draw, offline agent)
    repair: int = 1
    allocation: str = "uniform"  # uniform: each persona once; bandit: Thompson sampling on wins
    allocation_floor: int = 3  # bandit: every persona proposes at least once every N generations
    # the share of each generation's proposals asked for a structural change (0: no request)
    structural_share: float = 0.0
    persona_dirs: tuple[str, ...] = ()
    record: str = ""  # a cassette file to record LLM answers into


_TUPLES = {"personas", "modes", "persona_dirs"}
# how a field's type reads in an error message
_TYPE_NAMES = {
    "<class 'int'>": "a whole number",
    "<class 'float'>": "a number",
    "<class 'str'>": "a string (in quotes)",
    "tuple[str, ...]": "a list of strings",
}


def load_run_config(path: Path | None, overrides: Mapping[str, object]) -> RunConfig:
    """A RunConfig from a TOML file (optional) with command-line overrides on top."""
    import tomllib

    values: dict[str, object] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        values.update(data.get("run", data))
        if "run" in data and "prices" in data:
            values["prices"] = data["prices"]  # its own [prices] table beside [run]
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)} in {path or 'options'}: "
            f"known are {', '.join(sorted(known))}"
        )
    if "prices" in values:
        values["prices"] = _prices(values["prices"], path)
    for key in _TUPLES & set(values):
        value = values[key]
        if isinstance(value, str):
            values[key] = tuple(v.strip() for v in value.split(",") if v.strip())
        elif isinstance(value, list | tuple):
            values[key] = tuple(value)
    task = values.get("task")
    if isinstance(task, str) and Path(task).expanduser().is_dir():
        # a task directory is stored absolute, so that --resume finds it from anywhere
        values["task"] = str(Path(task).expanduser().resolve())
    _follow_task(values)
    config = RunConfig(**_typed(values, path))
    _validate(config)
    return config


# a default level the task lacks becomes its level at this rank by steps (0: the smallest)
_LEVEL_RANKS = {"screen_fidelity": 0, "fidelity": 1}


def _follow_task(values: dict[str, object]) -> None:
    """Fill the fidelity levels nobody chose with levels the task has (its own
    [fidelity] table may lack `low` and `medium`)."""
    unset = [key for key in _LEVEL_RANKS if key not in values]
    task = values.get("task", RunConfig.task)
    if unset and isinstance(task, str):  # a task of the wrong type: the type check names it
        levels = load_task(task)
        for key in unset:
            values[key] = levels.level(getattr(RunConfig, key), _LEVEL_RANKS[key])


def _schema() -> type[pydantic.BaseModel]:
    """RunConfig's fields as one strict pydantic schema (every field optional: the values
    given are checked, the rest keep RunConfig's defaults)."""
    hints = typing.get_type_hints(RunConfig)
    fields: dict[str, Any] = {
        f.name: (hints[f.name] | None, None) for f in dataclasses.fields(RunConfig)
    }
    return pydantic.create_model(
        "RunSettings", __config__=pydantic.ConfigDict(strict=True, extra="forbid"), **fields
    )


def _toml(value: object) -> str:
    """A default value as it is written in TOML."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _typed(values: Mapping[str, object], path: Path | None) -> dict[str, Any]:
    """`values` checked against RunConfig's field types: a wrong type is a one-line error
    naming the key, the expected type and the value given."""
    try:
        checked = _schema().model_validate(dict(values))
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0])
        hint = str(typing.get_type_hints(RunConfig)[key]).replace("typing.", "")
        given = json.dumps(error["input"], default=str)
        if path is None:
            where, example = f"--{key.replace('_', '-')}", ""
        else:
            default = RunConfig.__dataclass_fields__[key].default
            where = f"{key} in {path}"
            example = "" if default is dataclasses.MISSING else f", e.g. {key} = {_toml(default)}"
        raise ConfigError(
            f"{where} must be {_TYPE_NAMES.get(hint, hint)}, not {given}: fix the value{example}"
        ) from exc
    return {k: getattr(checked, k) for k in values}


_CHOICES = {
    "strategy": ("parallel", "chain"),
    "objective": tuple(ObjectiveName),
    "crossover": (0, 1),
    "executor": ("local", "ray"),
    "allocation": tuple(AllocationPolicy),
}


def _validate(config: RunConfig) -> None:
    unknown_modes = [m for m in config.modes if m not in tuple(Mode)]
    if unknown_modes:
        raise ConfigError(
            f"--modes {unknown_modes[0]!r} is not a mode: use one or more of {', '.join(Mode)}"
        )
    for name, allowed in _CHOICES.items():
        value = getattr(config, name)
        if value not in allowed:
            choices = " or ".join(str(a) for a in allowed)
            raise ConfigError(f"--{name} {value!r} is not available: use {choices}")
    if config.seeds < 2:
        raise ConfigError("--seeds must be at least 2: one seed cannot measure noise")
    floor = config.allocation_floor
    if isinstance(floor, bool) or not isinstance(floor, int) or floor < 1:
        raise ConfigError("--allocation-floor must be a whole number of generations, 1 or more")
    for name in ("workers", "agent_concurrency", "max_seeds", "final_top"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be a whole number, 1 or more")
    timeout = config.agent_timeout
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ConfigError("--agent-timeout must be a number of seconds above 0, e.g. 600")
    if config.address and config.executor != "ray":
        raise ConfigError("--address names a Ray cluster: add --executor ray, or drop --address")
    for name in ("budget_tokens", "budget_cost", "time_weight", "time_tolerance", "elite"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be a number, 0 or more")
    share = config.structural_share
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise ConfigError("--structural-share must be a fraction from 0 to 1, e.g. 0.5")
    if config.crossover and config.elite < 2:
        raise ConfigError("--crossover 1 needs an elite of at least 2: set --elite 2 or more")


def _prices(raw: object, path: Path | None) -> dict[str, tuple[float, float]]:
    """A [prices] table as {family: (input, output)} USD per million tokens."""
    where = path or "options"
    if not isinstance(raw, Mapping):
        raise ConfigError(f'[prices] in {where} must be a table like "gpt-4o" = [2.5, 10.0]')
    prices = {}
    for name, pair in raw.items():
        ok = isinstance(pair, list | tuple) and len(pair) == 2
        ok = ok and all(isinstance(x, int | float) and x >= 0 for x in pair)
        if not ok:
            raise ConfigError(
                f"price of {name!r} in {where} must be [input, output] USD per million tokens, "
                f"two numbers >= 0, e.g. [2.5, 10.0]"
            )
        prices[str(name)] = (float(pair[0]), float(pair[1]))
    return prices


def config_from_dict(raw: Mapping[str, object]) -> RunConfig:
    """A stored config as a RunConfig: lists back to tuples; unknown keys (from newer
    versions) are ignored and missing ones take their defaults."""
    known = {f.name for f in dataclasses.fields(RunConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
    prices = values.get("prices")
    if isinstance(prices, Mapping):
        values["prices"] = {k: (float(a), float(b)) for k, (a, b) in prices.items()}
    return RunConfig(**values)  # type: ignore[arg-type]

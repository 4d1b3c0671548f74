"""Configuration as plain values: where things live, and how a run is set up.

Only the CLI reads the environment; it builds these dataclasses and passes them down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from dreamteam.errors import ConfigError

DEFAULT_HOME = Path(platformdirs.user_data_dir("dreamteam", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Where caches and runs live, and where data comes from."""

    home: Path  # data cache and, by default, runs
    mirror: Path | None  # a local copy of the data (DREAMTEAM_DATA_MIRROR): no network

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"


def settings_from_env(environ: Mapping[str, str]) -> Settings:
    """Settings from DREAMTEAM_HOME and DREAMTEAM_DATA_MIRROR."""
    home = (
        Path(environ["DREAMTEAM_HOME"]).expanduser()
        if environ.get("DREAMTEAM_HOME")
        else DEFAULT_HOME
    )
    mirror = environ.get("DREAMTEAM_DATA_MIRROR")
    return Settings(home=home, mirror=Path(mirror).expanduser().resolve() if mirror else None)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a research run; stored with the run so --resume repeats it."""

    task: str = "shakespeare"
    personas: tuple[str, ...] = ()  # explicit team (slugs); empty: drawn from `modes`
    modes: tuple[str, ...] = ("savant", "collaborator", "specialist")
    team_size: int = 4
    model: str = "offline"  # a model string, or MODE=SPEC,... per mode
    generations: int = 2
    screen_fidelity: str = "smoke"  # every valid candidate, one seed
    fidelity: str = "low"  # promoted candidates are confirmed here, with `seeds` seeds
    seeds: int = 2
    promote_fraction: float = 0.34  # successive halving: the top third goes on
    max_promoted: int = 2
    workers: int = 1
    executor: str = "local"
    address: str = ""  # ray cluster address
    budget_minutes: float = 0.0  # 0: no limit
    strategy: str = "parallel"  # parallel: all from the parent; chain: each from the last best
    device: str = "auto"
    seed: int = 0  # the search's own randomness (team draw, offline agent)
    repair: int = 1
    allocation: str = "uniform"
    persona_dirs: tuple[str, ...] = ()
    record: str = ""  # a cassette file to record LLM answers into


_TUPLES = {"personas", "modes", "persona_dirs"}


def load_run_config(path: Path | None, overrides: Mapping[str, object]) -> RunConfig:
    """A RunConfig from a TOML file (optional) with command-line overrides on top."""
    import dataclasses
    import tomllib

    values: dict[str, object] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        values.update(data.get("run", data))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)} in {path or 'options'}: "
            f"known are {', '.join(sorted(known))}"
        )
    for key in _TUPLES & set(values):
        value = values[key]
        if isinstance(value, str):
            values[key] = tuple(v.strip() for v in value.split(",") if v.strip())
        elif isinstance(value, list | tuple):
            values[key] = tuple(value)
    try:
        config = RunConfig(**values)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ConfigError(f"bad setting in {path or 'options'}: {exc}") from exc
    _validate(config)
    return config


_CHOICES = {
    "strategy": ("parallel", "chain"),
    "executor": ("local",),  # ray: planned
    "allocation": ("uniform",),  # bandit: planned
}


def _validate(config: RunConfig) -> None:
    for name, allowed in _CHOICES.items():
        value = getattr(config, name)
        if value not in allowed:
            raise ConfigError(f"--{name} {value!r} is not available: use {' or '.join(allowed)}")
    if config.seeds < 2:
        raise ConfigError("--seeds must be at least 2: one seed cannot measure noise")


def config_from_dict(raw: Mapping[str, object]) -> RunConfig:
    """A stored config as a RunConfig: lists back to tuples; unknown keys (from newer
    versions) are ignored and missing ones take their defaults."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(RunConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
    return RunConfig(**values)  # type: ignore[arg-type]

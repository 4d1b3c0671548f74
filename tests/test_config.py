"""Run configuration: the research loop's keys from TOML and options, and one-line errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dreamteam.config import config_from_dict, load_run_config
from dreamteam.errors import ConfigError


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_budgets_objective_elite_and_prices_from_toml(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        '[run]\nbudget_tokens = 5000\nbudget_cost = 1.5\nobjective = "pareto"\n'
        'time_tolerance = 0.2\nelite = 4\ncrossover = 1\n\n[prices]\n"gpt-4o" = [2, 8.5]\n',
    )
    cfg = load_run_config(path, {})
    assert (cfg.budget_tokens, cfg.budget_cost, cfg.objective) == (5000, 1.5, "pareto")
    assert (cfg.time_tolerance, cfg.elite, cfg.crossover) == (0.2, 4, 1)
    assert cfg.prices == {"gpt-4o": (2.0, 8.5)}


def test_options_override_the_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[run]\nobjective = "bpb"\n')
    cfg = load_run_config(path, {"objective": "loss+time", "time_weight": 0.2})
    assert cfg.objective == "loss+time" and cfg.time_weight == 0.2


def test_the_defaults() -> None:
    cfg = load_run_config(None, {})
    assert (cfg.objective, cfg.elite, cfg.crossover, cfg.budget_tokens) == ("loss", 3, 0, 0)


def test_a_stored_config_round_trips_with_its_prices() -> None:
    cfg = load_run_config(None, {"prices": {"my-model": [1, 2]}, "budget_cost": 2.0})
    stored = json.loads(json.dumps(dataclasses.asdict(cfg)))
    assert config_from_dict(stored) == cfg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"objective": "speed"}, "--objective 'speed' is not available: use loss or bpb or"),
        ({"crossover": 2}, "--crossover 2 is not available: use 0 or 1"),
        ({"crossover": 1, "elite": 1}, "--crossover 1 needs an elite of at least 2"),
        ({"budget_tokens": -1}, "--budget-tokens must be a number, 0 or more"),
        ({"time_weight": "a lot"}, "--time-weight must be a number"),
        ({"elite": -2}, "--elite must be a number, 0 or more"),
        ({"prices": {"gpt-4o": [1]}}, "price of 'gpt-4o' in options must be [input, output]"),
        ({"prices": {"gpt-4o": ["1", 2]}}, "price of 'gpt-4o'"),
        ({"prices": "cheap"}, "[prices] in options must be a table"),
    ],
)
def test_bad_values_are_one_line_errors(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_run_config(None, overrides)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)

"""Budgets: prices by model family, the cost of an answer, and which budget is spent."""

from __future__ import annotations

import math

import pytest

from dreamteam.agents.base import AgentRequest, AgentResponse, Usage
from dreamteam.agents.budget import (
    BudgetSpent,
    Limits,
    Meter,
    MeteredAgent,
    answer_cost,
    check_prices,
    cost_of,
    metered,
    price_of,
    spent_reason,
)
from dreamteam.agents.factory import AgentTeam
from dreamteam.errors import ConfigError
from dreamteam.records import Mode, Spend


def test_the_longest_family_name_prices_a_model() -> None:
    assert price_of("openai:gpt-4o") == (2.5, 10.0)
    assert price_of("openai:gpt-4o-mini-2024-07-18") == (0.15, 0.6)
    assert price_of("anthropic:claude-opus-4-5-20251101") == (5.0, 25.0)
    assert price_of("anthropic:claude-opus-4-1") == (15.0, 75.0)
    assert price_of("openai-compatible:gpt-4o@http://localhost:8000/v1") == (2.5, 10.0)


def test_offline_replay_and_local_models_are_free() -> None:
    for model in ("offline", "replay:/tmp/cassette.jsonl", "ollama:llama3"):
        assert price_of(model) == (0.0, 0.0)


def test_config_prices_override_and_extend_the_table() -> None:
    overrides = {"gpt-4o": (1.0, 2.0), "openai:my-model": (3.0, 4.0)}
    assert price_of("openai:gpt-4o", overrides) == (1.0, 2.0)
    assert price_of("openai:my-model-v2", overrides) == (3.0, 4.0)
    assert price_of("openai:unknown-model") is None


def test_cost_of_an_answer() -> None:
    assert math.isclose(cost_of("openai:gpt-4o", 1_000_000, 100_000), 2.5 + 1.0)
    assert cost_of("openai:unknown-model", 10, 10) == 0.0
    usage = Usage(input_tokens=2_000, output_tokens=1_000)
    assert math.isclose(answer_cost("anthropic:claude-sonnet-4-5", "", usage), 0.006 + 0.015)
    # a replayed answer names the model that recorded it, and costs nothing now
    assert answer_cost("replay:c.jsonl", "anthropic:claude-sonnet-4-5", usage) == 0.0


def test_which_budget_is_spent() -> None:
    limits = Limits(minutes=10, tokens=1_000, cost=0.5)
    assert spent_reason(Spend(999, 0.49, 9.9), limits) == ""
    assert spent_reason(Spend(1_000, 0.0, 0.0), limits).startswith("token budget of 1,000")
    assert spent_reason(Spend(0, 0.5, 0.0), limits).startswith("cost budget of $0.50")
    assert spent_reason(Spend(0, 0.0, 10.0), limits).startswith("budget of 10 minutes")
    assert spent_reason(Spend(0, 0.0, 10.0), limits, minutes=False) == ""
    assert spent_reason(Spend(10**9, 1e9, 1e9), Limits()) == ""  # no limits set


def test_a_cost_budget_needs_every_agent_priced() -> None:
    check_prices(["openai:mystery"], Limits())  # no cost budget: nothing to price
    check_prices(["offline", "openai:gpt-4o"], Limits(cost=1.0))
    with pytest.raises(ConfigError, match=r'openai:mystery.*\[prices\] "mystery"'):
        check_prices(["openai:mystery", "offline"], Limits(cost=1.0))


class _Echo:
    name = "openai:gpt-4o"

    def __init__(self) -> None:
        self.calls = 0

    def propose(self, request: AgentRequest) -> AgentResponse:
        self.calls += 1
        return AgentResponse("ok", self.name, usage=Usage(300, 200))


def test_a_metered_agent_stops_asking_once_the_budget_is_spent() -> None:
    inner = _Echo()
    meter = Meter(Limits(tokens=1_200), tokens=200)  # 200 spent before a resume
    agent = MeteredAgent(inner, meter)
    for _ in range(2):
        agent.propose(AgentRequest(prompt="p"))
    assert (meter.tokens, inner.calls) == (1_200, 2)
    assert math.isclose(meter.cost, 2 * (300 * 2.5 + 200 * 10.0) / 1e6)
    with pytest.raises(BudgetSpent, match="token budget of 1,200 reached"):
        agent.propose(AgentRequest(prompt="p"))
    assert inner.calls == 2


def test_a_metered_team_keeps_shared_agents_shared() -> None:
    shared, other = _Echo(), _Echo()
    team = AgentTeam(((Mode.SAVANT, shared), (Mode.COLLABORATOR, shared), (Mode.SPECIALIST, other)))
    wrapped = metered(team, Meter(Limits()))
    assert wrapped.for_mode(Mode.SAVANT) is wrapped.for_mode(Mode.COLLABORATOR)
    assert len(wrapped.agents()) == 2

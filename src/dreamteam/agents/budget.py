"""A run's budgets: wall time, agent tokens, and what those tokens cost in US dollars.

Prices are USD per million input and output tokens, by model family. A model's price is the
one of the longest family name that its name starts with, so `gpt-4o-mini-2024-07-18` is
priced as `gpt-4o-mini`, not `gpt-4o`. The built-in table holds the providers' list prices
when it was written; a run config's `[prices]` table overrides or extends it. Answers that
cost nothing (the offline agent, replayed cassettes, a local Ollama) are free whatever the
table says.

Agent calls overlap (propose/overlap.py), so the tokens spent are counted by a thread-safe `Meter`
as answers come back, and a `MeteredAgent` refuses to start a call once a budget is spent:
at most the calls already in flight finish past it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dreamteam.agents.base import Agent, AgentRequest, AgentResponse, Usage
from dreamteam.agents.factory import PROVIDERS, AgentTeam
from dreamteam.errors import AgentError, ConfigError
from dreamteam.records import Spend

Price = tuple[float, float]  # USD per million (input, output) tokens

DEFAULT_PRICES: Mapping[str, Price] = {
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1-nano": (0.1, 0.4),
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.4),
    "o3": (2.0, 8.0),
    "o3-mini": (1.1, 4.4),
    "o4-mini": (1.1, 4.4),
    "claude-opus-4": (15.0, 75.0),
    "claude-opus-4-5": (5.0, 25.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-3-5-sonnet": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "gemini-2.5-pro": (1.25, 10.0),  # prompts under 200k tokens, which ours are
    "gemini-2.5-flash": (0.3, 2.5),
    "gemini-2.5-flash-lite": (0.1, 0.4),
    "gemini-2.0-flash": (0.1, 0.4),
}
_FREE = tuple(str(p) for p, info in PROVIDERS.items() if info.free)  # cost no money


@dataclass(frozen=True)
class Limits:
    """A run's budgets; 0 means no limit."""

    minutes: float = 0.0
    tokens: int = 0
    cost: float = 0.0


def _split(model: str) -> tuple[str, str]:
    """(provider, model name) of a model string; a bare name has no provider."""
    provider, _, name = model.partition(":")
    if not name:
        return "", provider
    return provider, name.split("@", 1)[0]  # openai-compatible: MODEL@BASE_URL


def price_of(model: str, overrides: Mapping[str, Price] | None = None) -> Price | None:
    """The price of a model string (`openai:gpt-4o`, `gpt-4o`), or None when unknown."""
    provider, name = _split(model)
    if provider in _FREE or name in _FREE:
        return (0.0, 0.0)
    table = {**DEFAULT_PRICES, **(overrides or {})}
    # a key may name the family ("gpt-4o") or the whole string ("openai:gpt-4o")
    keys = [k for k in table if name.startswith(k) or model.startswith(k)]
    return table[max(keys, key=len)] if keys else None


def cost_of(
    model: str, tokens_in: int, tokens_out: int, overrides: Mapping[str, Price] | None = None
) -> float:
    """The USD cost of one answer; 0 for a model with no known price."""
    price = price_of(model, overrides)
    if price is None:
        return 0.0
    return (tokens_in * price[0] + tokens_out * price[1]) / 1_000_000


def answer_cost(
    agent: str, model: str, usage: Usage, overrides: Mapping[str, Price] | None = None
) -> float:
    """The USD cost of one answer from `agent` (its model string), which says `model`
    answered: a replayed or local answer is free whatever model it names."""
    if price_of(agent) == (0.0, 0.0):
        return 0.0
    return cost_of(model or agent, usage.input_tokens, usage.output_tokens, overrides)


def check_prices(
    agents: Iterable[str], limits: Limits, overrides: Mapping[str, Price] | None = None
) -> None:
    """A cost budget needs a price for every agent: ConfigError names the ones missing."""
    missing = sorted({a for a in agents if price_of(a, overrides) is None})
    if limits.cost and missing:
        raise ConfigError(
            f"--budget-cost needs a price for {', '.join(missing)}: add it to the run "
            f'config, e.g. [prices] "{missing[0].split(":")[-1]}" = [2.5, 10.0]'
        )


def spent_reason(spend: Spend, limits: Limits, *, minutes: bool = True) -> str:
    """Which budget is used up, as the summary's `stopped` says it; empty when none is.

    `minutes=False` checks only tokens and cost, which the store totals exactly on resume.
    """
    if limits.tokens and spend.tokens >= limits.tokens:
        return f"token budget of {limits.tokens:,} reached ({spend.tokens:,} used)"
    if limits.cost and spend.cost >= limits.cost:
        return f"cost budget of ${limits.cost:.2f} reached (${spend.cost:.4f} used)"
    if minutes and limits.minutes and spend.minutes >= limits.minutes:
        return f"budget of {limits.minutes:g} minutes reached ({spend.minutes:.1f} used)"
    return ""


class BudgetSpent(AgentError):
    """A token or cost budget was spent before this call, so the agent was not asked."""


class Meter:
    """Tokens and USD spent on agents over the run; safe to share between threads."""

    def __init__(
        self,
        limits: Limits,
        prices: Mapping[str, Price] | None = None,
        tokens: int = 0,
        cost: float = 0.0,
    ):
        self.limits, self.prices = limits, prices
        self.tokens, self.cost = tokens, cost  # what the run spent before (resume)
        self._lock = threading.Lock()

    def spent(self) -> str:
        """Why no further call may start (token or cost budget used up); empty if one may."""
        with self._lock:
            return spent_reason(Spend(self.tokens, self.cost, 0.0), self.limits, minutes=False)

    def add(self, agent: str, response: AgentResponse) -> None:
        """Count one answer from `agent` (its model string)."""
        usage = response.usage
        with self._lock:
            self.tokens += usage.input_tokens + usage.output_tokens
            self.cost += answer_cost(agent, response.model, usage, self.prices)


class MeteredAgent:
    """An agent whose calls are counted by a meter and refused once a budget is spent."""

    def __init__(self, agent: Agent, meter: Meter):
        self.agent, self.meter = agent, meter

    @property
    def name(self) -> str:
        return self.agent.name

    def propose(self, request: AgentRequest) -> AgentResponse:
        """The agent's answer; BudgetSpent, without asking, once a budget is used up."""
        why = self.meter.spent()
        if why:
            raise BudgetSpent(why)
        response = self.agent.propose(request)
        self.meter.add(self.agent.name, response)
        return response


def metered(team: AgentTeam, meter: Meter) -> AgentTeam:
    """The same team with every agent behind `meter` (modes that share an agent still do)."""
    wrapped: dict[int, MeteredAgent] = {}
    members = []
    for mode, agent in team.members:
        members.append((mode, wrapped.setdefault(id(agent), MeteredAgent(agent, meter))))
    return AgentTeam(tuple(members))

"""From model strings to agents: credentials, one agent per spec, one team per run.

The environment is read by the caller (the CLI) and handed in as a mapping, so this module
stays free of global state and a test can pass any environment it likes. Keys live only in
``Credentials`` (hidden from its repr) and in the request headers of the backend that uses
them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from dreamteam.agents.base import Agent
from dreamteam.agents.providers import (
    ANTHROPIC_URL,
    GEMINI_URL,
    OLLAMA_URL,
    OPENAI_URL,
    AnthropicAgent,
    GeminiAgent,
    OllamaAgent,
    OpenAIAgent,
    OpenAICompatibleAgent,
)
from dreamteam.agents.replay import RecordingAgent, ReplayAgent
from dreamteam.agents.spec import ModelMap, ModelSpec, Provider
from dreamteam.agents.transport import HTTPAgent, LLMSettings
from dreamteam.errors import ConfigError
from dreamteam.records import Mode


@dataclass(frozen=True)
class ProviderInfo:
    """What the code needs to know of a provider: its backend class and default URL (network
    providers), the variable holding its key, whether its calls wait on a server, and
    whether its answers cost money."""

    backend: type[HTTPAgent] | None
    url: str
    key_variable: str  # "" when it needs none
    network: bool
    free: bool


# The one table of providers: the factory, the budget and the call overlap all read it.
PROVIDERS: Mapping[Provider, ProviderInfo] = {
    Provider.OFFLINE: ProviderInfo(None, "", "", network=False, free=True),
    Provider.REPLAY: ProviderInfo(None, "", "", network=False, free=True),
    Provider.OPENAI: ProviderInfo(OpenAIAgent, OPENAI_URL, "OPENAI_API_KEY", True, False),
    Provider.OPENAI_COMPATIBLE: ProviderInfo(OpenAICompatibleAgent, "", "", True, False),
    Provider.ANTHROPIC: ProviderInfo(
        AnthropicAgent, ANTHROPIC_URL, "ANTHROPIC_API_KEY", True, False
    ),
    Provider.GEMINI: ProviderInfo(
        GeminiAgent, GEMINI_URL, "GEMINI_API_KEY (or GOOGLE_API_KEY)", True, False
    ),
    Provider.OLLAMA: ProviderInfo(OllamaAgent, OLLAMA_URL, "", network=True, free=True),
}


@dataclass(frozen=True)
class Credentials:
    """Provider keys and endpoints, as read from the environment; never written anywhere."""

    openai_api_key: str = field(default="", repr=False)
    openai_base_url: str = ""  # points openai:MODEL at another OpenAI-style server
    anthropic_api_key: str = field(default="", repr=False)
    anthropic_base_url: str = ""
    gemini_api_key: str = field(default="", repr=False)
    ollama_host: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Credentials:
        """Read ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``ANTHROPIC_API_KEY``,
        ``ANTHROPIC_BASE_URL``, ``GEMINI_API_KEY`` (else ``GOOGLE_API_KEY``) and
        ``OLLAMA_HOST`` from ``environ``."""

        def get(name: str) -> str:
            return environ.get(name, "").strip()

        return cls(
            openai_api_key=get("OPENAI_API_KEY"),
            openai_base_url=get("OPENAI_BASE_URL"),
            anthropic_api_key=get("ANTHROPIC_API_KEY"),
            anthropic_base_url=get("ANTHROPIC_BASE_URL"),
            gemini_api_key=get("GEMINI_API_KEY") or get("GOOGLE_API_KEY"),
            ollama_host=get("OLLAMA_HOST"),
        )


@dataclass(frozen=True)
class AgentTeam:
    """The agents of one run, one per persona mode; modes whose specs agree share one."""

    members: tuple[tuple[Mode, Agent], ...]

    def for_mode(self, mode: Mode) -> Agent:
        """The agent that answers for personas of ``mode``."""
        for key, agent in self.members:
            if key is mode:
                return agent
        raise KeyError(mode)

    def agents(self) -> tuple[Agent, ...]:
        """Each distinct agent once, in mode order."""
        distinct: list[Agent] = []
        for _, agent in self.members:
            if not any(agent is other for other in distinct):
                distinct.append(agent)
        return tuple(distinct)

    def close(self) -> None:
        """Close every agent that holds a connection pool."""
        for agent in self.agents():
            close_agent(agent)


def build_agent(
    spec: ModelSpec,
    credentials: Credentials,
    settings: LLMSettings | None = None,
    *,
    offline: Callable[[], Agent] | None = None,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    seed: int = 0,
) -> Agent:
    """The agent for one spec; ConfigError when the key it needs is missing.

    ``offline`` makes the offline agent (it lives in its own module); ``transport`` and
    ``sleep`` let tests answer HTTP in memory and skip the backoff waits.
    ``openai-compatible`` sends ``OPENAI_API_KEY`` to its base URL when that key is set.
    """
    settings = settings or LLMSettings()
    name = str(spec)
    if spec.provider is Provider.OFFLINE:
        if offline is None:
            raise ValueError("build_agent needs an offline factory for the 'offline' model")
        return offline()
    if spec.provider is Provider.REPLAY:
        return ReplayAgent(Path(spec.model).expanduser())
    cls, base, key = _route(spec, credentials)
    return cls(name, spec.model, base, key, settings, transport=transport, sleep=sleep, seed=seed)


def build_team(
    models: ModelMap,
    credentials: Credentials,
    settings: LLMSettings | None = None,
    *,
    record: Path | None = None,
    offline: Callable[[], Agent] | None = None,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> AgentTeam:
    """One agent per distinct spec in ``models``, checked for credentials before any call.

    With ``record``, every answer (except replayed ones) is appended to that cassette.
    """
    built: dict[ModelSpec, Agent] = {}
    try:
        for mode in Mode:
            spec = models.for_mode(mode)
            if spec in built:
                continue
            agent = build_agent(
                spec, credentials, settings, offline=offline, transport=transport, sleep=sleep
            )
            if record is not None and spec.provider is not Provider.REPLAY:
                agent = RecordingAgent(agent, record)
            built[spec] = agent
    except BaseException:
        for agent in built.values():
            close_agent(agent)
        raise
    return AgentTeam(tuple((mode, built[models.for_mode(mode)]) for mode in Mode))


def _route(spec: ModelSpec, credentials: Credentials) -> tuple[type[HTTPAgent], str, str]:
    """The backend class, base URL and key for a network spec."""
    info = PROVIDERS[spec.provider]
    if info.backend is None:
        raise ValueError(f"no network backend for {str(spec)!r}")
    keys = {
        Provider.OPENAI: (credentials.openai_api_key, credentials.openai_base_url),
        # openai-compatible sends OPENAI_API_KEY when set, and needs none
        Provider.OPENAI_COMPATIBLE: (credentials.openai_api_key, spec.base_url),
        Provider.ANTHROPIC: (credentials.anthropic_api_key, credentials.anthropic_base_url),
        Provider.GEMINI: (credentials.gemini_api_key, ""),
        Provider.OLLAMA: ("", _ollama_url(credentials.ollama_host)),
    }
    key, url = keys[spec.provider]
    if info.key_variable and not key:
        raise ConfigError(
            f"model {str(spec)!r} needs {info.key_variable}: set it, or use --model offline"
        )
    return info.backend, url or info.url, key


def _ollama_url(host: str) -> str:
    if not host:
        return OLLAMA_URL
    if "://" not in host:
        host = f"http://{host}"
    # OLLAMA_HOST often holds the server's bind address; 0.0.0.0 is no place to connect to.
    return host.replace("://0.0.0.0", "://127.0.0.1").rstrip("/")


def http_agents(team: AgentTeam) -> list[HTTPAgent]:
    """The team's HTTP backends, each once, found inside wrappers (recording, metering)."""
    found: list[HTTPAgent] = []
    for agent in team.agents():
        layer: object = agent
        while layer is not None:
            if isinstance(layer, HTTPAgent) and not any(layer is f for f in found):
                found.append(layer)
            layer = getattr(layer, "inner", None)
    return found


def close_agent(agent: Agent) -> None:
    """Close an agent, and the agent it wraps, where they hold resources."""
    inner = getattr(agent, "inner", None)
    if inner is not None:
        close_agent(inner)
    close = getattr(agent, "close", None)
    if callable(close):
        close()

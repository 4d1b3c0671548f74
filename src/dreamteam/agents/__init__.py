"""Agents: the one ``Agent`` seam and what plugs into it (LLM backends, record and replay).

Build agents from model strings with ``parse_model_map`` and ``build_team``; every backend
answers an ``AgentRequest`` with an ``AgentResponse``.
"""

from dreamteam.agents.base import (
    Agent,
    AgentRequest,
    AgentResponse,
    FinishReason,
    Message,
    Role,
    Usage,
)
from dreamteam.agents.factory import AgentTeam, Credentials, build_agent, build_team, close_agent
from dreamteam.agents.providers import (
    AnthropicAgent,
    GeminiAgent,
    OllamaAgent,
    OpenAIAgent,
    OpenAICompatibleAgent,
)
from dreamteam.agents.replay import (
    CassetteEntry,
    RecordingAgent,
    ReplayAgent,
    load_cassette,
    request_key,
)
from dreamteam.agents.spec import (
    DEFAULT_SPEC,
    ModelMap,
    ModelSpec,
    Provider,
    parse_model_map,
    parse_model_spec,
)
from dreamteam.agents.transport import HTTPAgent, LLMSettings

__all__ = [
    "DEFAULT_SPEC",
    "Agent",
    "AgentRequest",
    "AgentResponse",
    "AgentTeam",
    "AnthropicAgent",
    "CassetteEntry",
    "Credentials",
    "FinishReason",
    "GeminiAgent",
    "HTTPAgent",
    "LLMSettings",
    "Message",
    "ModelMap",
    "ModelSpec",
    "OllamaAgent",
    "OpenAIAgent",
    "OpenAICompatibleAgent",
    "Provider",
    "RecordingAgent",
    "ReplayAgent",
    "Role",
    "Usage",
    "build_agent",
    "build_team",
    "close_agent",
    "load_cassette",
    "parse_model_map",
    "parse_model_spec",
    "request_key",
]

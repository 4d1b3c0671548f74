"""From model strings and an environment to a team of agents."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from dreamteam.agents import (
    Agent,
    AgentRequest,
    AgentResponse,
    AnthropicAgent,
    Credentials,
    GeminiAgent,
    LLMSettings,
    ModelSpec,
    OllamaAgent,
    OpenAIAgent,
    OpenAICompatibleAgent,
    Provider,
    RecordingAgent,
    ReplayAgent,
    build_agent,
    build_team,
    load_cassette,
    parse_model_map,
    parse_model_spec,
)
from dreamteam.errors import ConfigError
from dreamteam.records import Mode

ENV = {
    "OPENAI_API_KEY": "sk-o",
    "ANTHROPIC_API_KEY": "sk-a",
    "GOOGLE_API_KEY": "g-key",
    "OLLAMA_HOST": "0.0.0.0:11434",
}


class Offline:
    """Stands in for the offline agent."""

    closed = False

    @property
    def name(self) -> str:
        return "offline"

    def propose(self, request: AgentRequest) -> AgentResponse:
        return AgentResponse(text=f"offline answer to {request.persona}", model=self.name)

    def close(self) -> None:
        self.closed = True


def _echo(request: httpx.Request) -> httpx.Response:
    prompt = json.loads(request.content)["messages"][-1]["content"]
    return httpx.Response(200, json={"choices": [{"message": {"content": f"llm: {prompt}"}}]})


def test_credentials_come_from_the_given_environment_and_hide_their_keys() -> None:
    creds = Credentials.from_env(
        {**ENV, "GEMINI_API_KEY": " gem ", "OPENAI_BASE_URL": "http://h/v1"}
    )
    assert (creds.openai_api_key, creds.gemini_api_key, creds.openai_base_url) == (
        "sk-o",
        "gem",
        "http://h/v1",
    )
    assert Credentials.from_env(ENV).gemini_api_key == "g-key"
    assert "sk-" not in repr(creds) and "gem" not in repr(creds)


@pytest.mark.parametrize(
    ("spec", "cls", "base"),
    [
        ("openai:gpt-4o", OpenAIAgent, "https://api.openai.com/v1"),
        ("anthropic:claude", AnthropicAgent, "https://api.anthropic.com"),
        ("gemini:gemini-2.5-flash", GeminiAgent, "https://generativelanguage.googleapis.com"),
        ("ollama:qwen", OllamaAgent, "http://127.0.0.1:11434"),
        (
            "openai-compatible:m@http://127.0.0.1:8/v1",
            OpenAICompatibleAgent,
            "http://127.0.0.1:8/v1",
        ),
    ],
)
def test_each_provider_gets_its_backend_and_endpoint(spec: str, cls: type, base: str) -> None:
    agent = build_agent(parse_model_spec(spec), Credentials.from_env(ENV))
    assert type(agent) is cls
    assert isinstance(agent, Agent) and agent.name == spec
    assert agent.base_url == base  # type: ignore[attr-defined]


def test_openai_base_url_points_openai_models_elsewhere() -> None:
    creds = Credentials.from_env(
        {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1/"}
    )
    agent = build_agent(ModelSpec(Provider.OPENAI, "m"), creds)
    assert agent.base_url == "http://127.0.0.1:9/v1"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("spec", "variable"),
    [
        ("openai:gpt-4o", "OPENAI_API_KEY"),
        ("anthropic:claude", "ANTHROPIC_API_KEY"),
        ("gemini:gemini-2.5-pro", "GEMINI_API_KEY"),
    ],
)
def test_a_missing_key_is_a_config_error_before_any_call(spec: str, variable: str) -> None:
    with pytest.raises(ConfigError, match=f"needs {variable}.*--model offline"):
        build_agent(parse_model_spec(spec), Credentials.from_env({}))


def test_local_servers_need_no_key() -> None:
    creds = Credentials.from_env({})
    assert isinstance(build_agent(parse_model_spec("ollama:q"), creds), OllamaAgent)
    spec = parse_model_spec("openai-compatible:m@http://127.0.0.1:8/v1")
    assert isinstance(build_agent(spec, creds), OpenAICompatibleAgent)


def test_modes_with_the_same_spec_share_one_agent() -> None:
    models = parse_model_map("openai-compatible:m@http://127.0.0.1:8/v1,specialist=offline")
    team = build_team(models, Credentials.from_env({}), offline=Offline)
    assert team.for_mode(Mode.SAVANT) is team.for_mode(Mode.COLLABORATOR)
    assert isinstance(team.for_mode(Mode.SPECIALIST), Offline)
    assert len(team.agents()) == 2
    team.close()
    assert team.for_mode(Mode.SPECIALIST).closed  # type: ignore[attr-defined]


def test_an_unused_default_needs_no_credentials() -> None:
    models = parse_model_map(
        "openai:gpt-4o,savant=ollama:a,collaborator=ollama:a,specialist=ollama:a"
    )
    team = build_team(models, Credentials.from_env({}))
    assert {type(agent) for agent in team.agents()} == {OllamaAgent}


def test_offline_needs_a_factory() -> None:
    with pytest.raises(ValueError, match="offline factory"):
        build_agent(ModelSpec(Provider.OFFLINE), Credentials())


def test_a_team_records_every_answer_and_a_replay_team_answers_the_same(tmp_path: Path) -> None:
    cassette = tmp_path / "run.jsonl"
    models = parse_model_map("openai:gpt-4o,specialist=offline")
    team = build_team(
        models,
        Credentials.from_env(ENV),
        LLMSettings(max_retries=0),
        record=cassette,
        offline=Offline,
        transport=httpx.MockTransport(_echo),
    )
    assert all(isinstance(agent, RecordingAgent) for agent in team.agents())
    requests = {
        mode: AgentRequest(prompt=f"improve for {mode}", persona=f"p-{mode}", mode=mode)
        for mode in Mode
    }
    first = {mode: team.for_mode(mode).propose(req).text for mode, req in requests.items()}
    team.close()
    assert first[Mode.SAVANT] == "llm: improve for savant"
    assert first[Mode.SPECIALIST] == "offline answer to p-specialist"
    assert {e.response.model for e in load_cassette(cassette)} == {"openai:gpt-4o", "offline"}

    replay = build_team(parse_model_map(f"replay:{cassette}"), Credentials(), record=tmp_path / "x")
    assert isinstance(replay.for_mode(Mode.SAVANT), ReplayAgent)
    again = {mode: replay.for_mode(mode).propose(req).text for mode, req in requests.items()}
    assert again == first
    assert not (tmp_path / "x").exists()


def test_a_failed_build_closes_what_it_had_built() -> None:
    closed: list[Offline] = []

    def make_offline() -> Offline:
        agent = Offline()
        closed.append(agent)
        return agent

    models = parse_model_map("offline,specialist=anthropic:claude")
    with pytest.raises(ConfigError):
        build_team(models, Credentials(), offline=make_offline)
    assert closed and closed[0].closed

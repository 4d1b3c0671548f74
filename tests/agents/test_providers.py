"""The LLM backends: what each sends, how it reads answers, and how it fails and retries."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from dreamteam.agents import (
    Agent,
    AgentRequest,
    AnthropicAgent,
    FinishReason,
    GeminiAgent,
    LLMSettings,
    Message,
    OllamaAgent,
    OpenAIAgent,
    OpenAICompatibleAgent,
    Role,
    Usage,
)
from dreamteam.agents.transport import HTTPAgent
from dreamteam.errors import AgentError

KEY = "sk-test-secret-0123456789"
REQUEST = AgentRequest(
    prompt="Improve train.py",
    persona="archimedes",
    system="Answer with code blocks.",
    history=(Message(Role.USER, "first try"), Message(Role.ASSISTANT, "an answer")),
)
OPENAI_OK = {
    "choices": [
        {"message": {"role": "assistant", "content": "```python\nx\n```"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 11, "completion_tokens": 7},
}
FAST = LLMSettings(max_retries=3, backoff_s=1.0, backoff_max_s=8.0, temperature=0.3)


Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


@dataclass
class ScriptedTransport(httpx.BaseTransport):
    """Answers each request with the next scripted step and keeps what it was sent."""

    steps: list[Step]
    requests: list[httpx.Request] = field(default_factory=list)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return step(request)

    def body(self, index: int = -1) -> dict[str, Any]:
        """The JSON body of a request it received."""
        return json.loads(self.requests[index].content)


def reply(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    """A JSON response."""
    return httpx.Response(status, json=body, headers=headers)


@pytest.fixture
def sleeps() -> list[float]:
    """Collects the waits an agent asked for instead of sleeping."""
    return []


def make(
    cls: type[HTTPAgent],
    transport: ScriptedTransport,
    sleeps: list[float],
    model: str = "m",
    settings: LLMSettings = FAST,
) -> HTTPAgent:
    return cls(
        f"x:{model}",
        model,
        "https://api.test/v1/",
        KEY,
        settings,
        transport=transport,
        sleep=sleeps.append,
    )


def test_openai_sends_chat_completions_with_the_key_and_the_whole_conversation(
    sleeps: list[float],
) -> None:
    transport = ScriptedTransport([reply(200, OPENAI_OK)])
    response = make(OpenAIAgent, transport, sleeps, "gpt-4o").propose(REQUEST)
    sent = transport.requests[0]
    assert str(sent.url) == "https://api.test/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert transport.body() == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Answer with code blocks."},
            {"role": "user", "content": "first try"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "Improve train.py"},
        ],
        "max_completion_tokens": FAST.max_output_tokens,
        "temperature": 0.3,
    }
    assert response.text == "```python\nx\n```"
    assert (response.finish, response.usage, response.attempts) == (
        FinishReason.STOP,
        Usage(11, 7),
        1,
    )
    assert response.model == "x:gpt-4o"


def test_openai_reasoning_models_get_no_temperature(sleeps: list[float]) -> None:
    transport = ScriptedTransport([reply(200, OPENAI_OK)])
    make(OpenAIAgent, transport, sleeps, "o3-mini").propose(REQUEST)
    assert "temperature" not in transport.body()


def test_compatible_servers_get_max_tokens_and_no_auth_without_a_key(sleeps: list[float]) -> None:
    transport = ScriptedTransport([reply(200, OPENAI_OK)])
    agent = OpenAICompatibleAgent(
        "c", "llama", "http://127.0.0.1:1/v1", "", FAST, transport=transport, sleep=sleeps.append
    )
    agent.propose(AgentRequest(prompt="hi"))
    body = transport.body()
    assert body["max_tokens"] == FAST.max_output_tokens and "max_completion_tokens" not in body
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert "authorization" not in transport.requests[0].headers


@pytest.mark.parametrize(
    ("choice", "finish"),
    [
        ({"message": {"content": "a"}, "finish_reason": "length"}, FinishReason.LENGTH),
        (
            {"message": {"content": None, "refusal": "no"}, "finish_reason": "stop"},
            FinishReason.REFUSED,
        ),
        ({"message": {"content": "a"}, "finish_reason": "content_filter"}, FinishReason.REFUSED),
        (
            {
                "message": {"content": [{"type": "text", "text": "a"}]},
                "finish_reason": "tool_calls",
            },
            FinishReason.OTHER,
        ),
    ],
)
def test_openai_finish_reasons_map_to_one_vocabulary(
    choice: dict[str, object], finish: FinishReason, sleeps: list[float]
) -> None:
    transport = ScriptedTransport([reply(200, {"choices": [choice]})])
    response = make(OpenAIAgent, transport, sleeps).propose(REQUEST)
    assert response.finish is finish
    assert response.usage == Usage(0, 0)


def test_anthropic_sends_the_messages_api_format(sleeps: list[float]) -> None:
    answer = {
        "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "done"}],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 5, "output_tokens": 9},
    }
    transport = ScriptedTransport([reply(200, answer)])
    agent = AnthropicAgent(
        "anthropic:c",
        "claude-x",
        "https://api.test",
        KEY,
        FAST,
        transport=transport,
        sleep=sleeps.append,
    )
    response = agent.propose(REQUEST)
    sent = transport.requests[0]
    assert str(sent.url) == "https://api.test/v1/messages"
    assert sent.headers["x-api-key"] == KEY and sent.headers["anthropic-version"] == "2023-06-01"
    body = transport.body()
    assert body["system"] == "Answer with code blocks."
    assert body["max_tokens"] == FAST.max_output_tokens and body["temperature"] == 0.3
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert (response.text, response.finish, response.usage) == (
        "done",
        FinishReason.LENGTH,
        Usage(5, 9),
    )


def test_gemini_sends_generate_content_and_skips_thought_parts(sleeps: list[float]) -> None:
    answer = {
        "candidates": [
            {
                "content": {"parts": [{"text": "thinking...", "thought": True}, {"text": "code"}]},
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 3,
            "candidatesTokenCount": 4,
            "thoughtsTokenCount": 6,
        },
    }
    transport = ScriptedTransport([reply(200, answer)])
    agent = GeminiAgent(
        "gemini:g",
        "models/gemini-2.5-flash",
        "https://api.test",
        KEY,
        FAST,
        transport=transport,
        sleep=sleeps.append,
    )
    response = agent.propose(REQUEST)
    sent = transport.requests[0]
    assert str(sent.url) == "https://api.test/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == KEY
    body = transport.body()
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["systemInstruction"] == {"parts": [{"text": "Answer with code blocks."}]}
    assert body["generationConfig"] == {
        "temperature": 0.3,
        "maxOutputTokens": FAST.max_output_tokens,
    }
    assert (response.text, response.finish, response.usage) == (
        "code",
        FinishReason.STOP,
        Usage(3, 10),
    )


def test_gemini_blocked_prompts_come_back_as_empty_refusals(sleeps: list[float]) -> None:
    transport = ScriptedTransport([reply(200, {"promptFeedback": {"blockReason": "SAFETY"}})])
    response = make(GeminiAgent, transport, sleeps).propose(REQUEST)
    assert (response.text, response.finish) == ("", FinishReason.REFUSED)


def test_ollama_uses_its_native_chat_api_with_a_context_window(sleeps: list[float]) -> None:
    answer = {
        "message": {"role": "assistant", "content": "ok"},
        "done_reason": "length",
        "prompt_eval_count": 100,
        "eval_count": 20,
    }
    transport = ScriptedTransport([reply(200, answer)])
    settings = LLMSettings(context_tokens=8192, max_output_tokens=512)
    agent = OllamaAgent(
        "ollama:q",
        "qwen",
        "http://127.0.0.1:11434",
        "",
        settings,
        transport=transport,
        sleep=sleeps.append,
    )
    response = agent.propose(AgentRequest(prompt="p"))
    assert str(transport.requests[0].url) == "http://127.0.0.1:11434/api/chat"
    body = transport.body()
    assert body["stream"] is False
    assert body["options"] == {"temperature": 0.7, "num_predict": 512, "num_ctx": 8192}
    assert (response.text, response.finish, response.usage) == (
        "ok",
        FinishReason.LENGTH,
        Usage(100, 20),
    )


@pytest.mark.parametrize(
    "failure",
    [
        reply(429, {"error": {"message": "slow down"}}),
        reply(529, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}),
        reply(503, "unavailable"),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
    ],
)
def test_transient_failures_are_retried_with_growing_waits(
    failure: httpx.Response | Exception, sleeps: list[float]
) -> None:
    transport = ScriptedTransport([failure, failure, reply(200, OPENAI_OK)])
    response = make(OpenAIAgent, transport, sleeps).propose(REQUEST)
    assert response.attempts == 3 and len(transport.requests) == 3
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0


def test_retry_after_is_honoured_up_to_the_cap(sleeps: list[float]) -> None:
    busy = reply(429, {"error": {"message": "wait"}}, headers={"retry-after": "5"})
    greedy = reply(429, {"error": {"message": "wait"}}, headers={"retry-after": "3600"})
    transport = ScriptedTransport([busy, greedy, reply(200, OPENAI_OK)])
    make(OpenAIAgent, transport, sleeps).propose(REQUEST)
    assert sleeps[0] == 5.0 and sleeps[1] == FAST.backoff_max_s


def test_giving_up_names_the_attempts_and_the_last_failure(sleeps: list[float]) -> None:
    transport = ScriptedTransport([reply(500, {"error": {"message": "internal oops"}})])
    with pytest.raises(
        AgentError, match=r"gave up after 4 attempts; last: HTTP 500: internal oops"
    ):
        make(OpenAIAgent, transport, sleeps).propose(REQUEST)
    assert len(transport.requests) == 4 and len(sleeps) == 3


def test_exhausted_quota_is_not_retried(sleeps: list[float]) -> None:
    quota = reply(
        429, {"error": {"message": "You exceeded your quota", "code": "insufficient_quota"}}
    )
    transport = ScriptedTransport([quota])
    with pytest.raises(AgentError, match="HTTP 429: You exceeded your quota"):
        make(OpenAIAgent, transport, sleeps).propose(REQUEST)
    assert len(transport.requests) == 1 and sleeps == []


@pytest.mark.parametrize(
    ("cls", "hint"),
    [
        (OpenAIAgent, "OPENAI_API_KEY"),
        (AnthropicAgent, "ANTHROPIC_API_KEY"),
        (GeminiAgent, "GEMINI_API_KEY"),
    ],
)
def test_a_rejected_key_fails_at_once_naming_the_variable_but_not_the_key(
    cls: type[HTTPAgent], hint: str, sleeps: list[float]
) -> None:
    transport = ScriptedTransport([reply(401, {"error": {"message": "invalid x-api-key"}})])
    agent = make(cls, transport, sleeps)
    with pytest.raises(AgentError) as caught:
        agent.propose(REQUEST)
    message = str(caught.value)
    assert "HTTP 401" in message and hint in message and "\n" not in message
    assert KEY not in message and KEY not in repr(agent)
    assert len(transport.requests) == 1


def test_ollama_bare_string_errors_are_quoted(sleeps: list[float]) -> None:
    transport = ScriptedTransport([reply(404, {"error": "model 'qwen' not found"})])
    with pytest.raises(
        AgentError, match=r"check the model name.*\(HTTP 404: model 'qwen' not found\)"
    ):
        make(OllamaAgent, transport, sleeps, "qwen").propose(REQUEST)


def test_an_unknown_model_says_to_check_the_name(sleeps: list[float]) -> None:
    transport = ScriptedTransport([reply(404, {"error": {"message": "model not found"}})])
    with pytest.raises(AgentError, match="model 'nope' or endpoint not found"):
        make(OpenAIAgent, transport, sleeps, "nope").propose(REQUEST)


@pytest.mark.parametrize(
    "body",
    [
        httpx.Response(200, text="<html>login</html>"),
        reply(200, [1, 2]),
        reply(200, {"choices": []}),
    ],
)
def test_a_malformed_success_is_an_agent_error(body: httpx.Response, sleeps: list[float]) -> None:
    with pytest.raises(AgentError, match="answer"):
        make(OpenAIAgent, ScriptedTransport([body]), sleeps).propose(REQUEST)


def test_backends_satisfy_the_agent_protocol(sleeps: list[float]) -> None:
    agent = make(AnthropicAgent, ScriptedTransport([reply(200, {})]), sleeps)
    assert isinstance(agent, Agent)
    with agent:
        assert agent.name == "x:m"


class _FakeOpenAI(http.server.BaseHTTPRequestHandler):
    """A tiny OpenAI-style server: echoes the last user message back."""

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        text = f"echo: {body['messages'][-1]['content']}"
        payload = json.dumps({"choices": [{"message": {"content": text}, "finish_reason": "stop"}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_a_real_local_server_answers_over_http(local_server: str) -> None:
    with OpenAICompatibleAgent("c", "m", local_server, "", LLMSettings(timeout_s=10)) as agent:
        response = agent.propose(AgentRequest(prompt="hello"))
    assert response.text == "echo: hello"
    assert response.latency_s > 0


def test_a_closed_port_gives_up_with_a_reachability_message(sleeps: list[float]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = LLMSettings(timeout_s=5, max_retries=1)
    agent = OpenAICompatibleAgent(
        "c", "m", f"http://127.0.0.1:{port}/v1", "", settings, sleep=sleeps.append
    )
    with pytest.raises(AgentError, match="cannot reach"):
        agent.propose(AgentRequest(prompt="hello"))
    assert len(sleeps) == 1

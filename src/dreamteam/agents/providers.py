"""The LLM backends: each maps an AgentRequest to one provider's JSON and reads the answer.

All of them speak plain HTTP through httpx (see transport.py), so no provider SDK is needed:
- OpenAIAgent: OpenAI's Chat Completions API; OpenAICompatibleAgent: any server that
  speaks it (vLLM, llama.cpp, LM Studio, OpenRouter, ...).
- AnthropicAgent: the Messages API.
- GeminiAgent: the Gemini API's generateContent.
- OllamaAgent: Ollama's own chat API, which, unlike its OpenAI-compatible one, lets us set
  the context window so long prompts are not cut.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from dreamteam.agents.base import AgentRequest, FinishReason, Role, Usage
from dreamteam.agents.transport import HTTPAgent, Reply, chat_turns
from dreamteam.errors import AgentError

OPENAI_URL = "https://api.openai.com/v1"
ANTHROPIC_URL = "https://api.anthropic.com"
GEMINI_URL = "https://generativelanguage.googleapis.com"
OLLAMA_URL = "http://localhost:11434"
ANTHROPIC_VERSION = "2023-06-01"  # the API version header the Messages API requires

# OpenAI's reasoning models reject a temperature other than the default.
_OPENAI_REASONING = re.compile(r"^(o\d|gpt-5)")
_OPENAI_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}
_ANTHROPIC_FINISH = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "refusal": FinishReason.REFUSED,
}
_GEMINI_FINISH = {"STOP": FinishReason.STOP, "MAX_TOKENS": FinishReason.LENGTH}
_GEMINI_BLOCKED = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
)


class OpenAIAgent(HTTPAgent):
    """OpenAI's Chat Completions API, or a server that speaks it (``official=False``)."""

    provider_label = "OpenAI"
    key_hint = "OPENAI_API_KEY"
    # OpenAI itself wants max_completion_tokens; many compatible servers know only the
    # older max_tokens.
    official = True

    def _endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _payload(self, request: AgentRequest, max_tokens: int) -> dict[str, Any]:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": str(role), "content": text} for role, text in chat_turns(request)]
        payload: dict[str, Any] = {"model": self.model, "messages": messages}
        limit_key = "max_completion_tokens" if self.official else "max_tokens"
        payload[limit_key] = max_tokens
        if not (self.official and _OPENAI_REASONING.match(self.model)):
            payload["temperature"] = self.settings.temperature
        return payload

    def _parse(self, body: Mapping[str, Any]) -> Reply:
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            raise AgentError(f"{self.provider_label} {self.name}: the answer holds no choices")
        choice = choices[0]
        message = choice.get("message") or {}
        text = _join_text(message.get("content"))
        finish = _OPENAI_FINISH.get(str(choice.get("finish_reason")), FinishReason.OTHER)
        if message.get("refusal") or choice.get("finish_reason") == "content_filter":
            finish = FinishReason.REFUSED
        usage = body.get("usage") or {}
        return Reply(
            text,
            finish,
            Usage(_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))),
        )


class OpenAICompatibleAgent(OpenAIAgent):
    """A server that speaks OpenAI's Chat Completions API at a base URL of the user's."""

    provider_label = "OpenAI-compatible server"
    key_hint = "the server's key in OPENAI_API_KEY"
    official = False


class AnthropicAgent(HTTPAgent):
    """Anthropic's Messages API."""

    provider_label = "Anthropic"
    key_hint = "ANTHROPIC_API_KEY"

    def _endpoint(self) -> str:
        return f"{self.base_url}/v1/messages"

    def _headers(self) -> dict[str, str]:
        return {"x-api-key": self._api_key, "anthropic-version": ANTHROPIC_VERSION}

    def _payload(self, request: AgentRequest, max_tokens: int) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": self.settings.temperature,
            "messages": [
                {"role": str(role), "content": text} for role, text in chat_turns(request)
            ],
        }
        if request.system:
            payload["system"] = request.system
        return payload

    def _parse(self, body: Mapping[str, Any]) -> Reply:
        content = body.get("content")
        if not isinstance(content, list):
            raise AgentError(f"{self.provider_label} {self.name}: the answer holds no content")
        text = _join_text(content)
        finish = _ANTHROPIC_FINISH.get(str(body.get("stop_reason")), FinishReason.OTHER)
        usage = body.get("usage") or {}
        return Reply(
            text, finish, Usage(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")))
        )


class GeminiAgent(HTTPAgent):
    """The Gemini API's generateContent."""

    provider_label = "Gemini"
    key_hint = "GEMINI_API_KEY or GOOGLE_API_KEY"

    def _endpoint(self) -> str:
        model = self.model.removeprefix("models/")
        return f"{self.base_url}/v1beta/models/{model}:generateContent"

    def _headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self._api_key}

    def _payload(self, request: AgentRequest, max_tokens: int) -> dict[str, Any]:
        contents = [
            {"role": "model" if role is Role.ASSISTANT else "user", "parts": [{"text": text}]}
            for role, text in chat_turns(request)
        ]
        payload: dict[str, Any] = {
            "contents": contents,
            "generationConfig": {
                "temperature": self.settings.temperature,
                "maxOutputTokens": max_tokens,
            },
        }
        if request.system:
            payload["systemInstruction"] = {"parts": [{"text": request.system}]}
        return payload

    def _parse(self, body: Mapping[str, Any]) -> Reply:
        meta = body.get("usageMetadata") or {}
        # Thinking tokens are billed as output, so they count towards the answer's cost.
        usage = Usage(
            _int(meta.get("promptTokenCount")),
            _int(meta.get("candidatesTokenCount")) + _int(meta.get("thoughtsTokenCount")),
        )
        candidates = body.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            # The prompt itself was blocked: an empty answer, not a harness fault.
            if (body.get("promptFeedback") or {}).get("blockReason"):
                return Reply("", FinishReason.REFUSED, usage)
            raise AgentError(f"{self.provider_label} {self.name}: the answer holds no candidates")
        candidate = candidates[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        # Parts flagged "thought" are the model's reasoning summary, not its answer.
        text = _join_text([part for part in parts if not part.get("thought")])
        reason = str(candidate.get("finishReason"))
        finish = _GEMINI_FINISH.get(reason, FinishReason.OTHER)
        if reason in _GEMINI_BLOCKED:
            finish = FinishReason.REFUSED
        return Reply(text, finish, usage)


class OllamaAgent(HTTPAgent):
    """Ollama's native chat API, non-streaming, with the context window set explicitly."""

    provider_label = "Ollama"
    key_hint = "the Ollama server (OLLAMA_HOST)"

    def _endpoint(self) -> str:
        return f"{self.base_url}/api/chat"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _payload(self, request: AgentRequest, max_tokens: int) -> dict[str, Any]:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": str(role), "content": text} for role, text in chat_turns(request)]
        return {
            "model": self.model,
            "messages": messages,
            "stream": False,
            "options": {
                "temperature": self.settings.temperature,
                "num_predict": max_tokens,
                "num_ctx": self.settings.context_tokens,
            },
        }

    def _parse(self, body: Mapping[str, Any]) -> Reply:
        message = body.get("message")
        if not isinstance(message, dict):
            raise AgentError(f"{self.provider_label} {self.name}: the answer holds no message")
        reason = str(body.get("done_reason") or "stop")
        finish = _OPENAI_FINISH.get(reason, FinishReason.OTHER)
        usage = Usage(_int(body.get("prompt_eval_count")), _int(body.get("eval_count")))
        return Reply(_join_text(message.get("content")), finish, usage)


def _join_text(content: object) -> str:
    """Text from a plain string or from a list of typed parts, ignoring non-text parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, Sequence):
        return ""
    pieces = []
    for part in content:
        if isinstance(part, str):
            pieces.append(part)
        elif (
            isinstance(part, dict)
            and isinstance(part.get("text"), str)
            and part.get("type", "text") == "text"
        ):
            pieces.append(part["text"])
    return "".join(pieces)


def _int(value: object) -> int:
    """A token count, or 0 where the provider gave none a store can hold (SQLite: 64 bits)."""
    return value if isinstance(value, int) and 0 <= value < 2**53 else 0

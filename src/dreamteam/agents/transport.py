"""The HTTP side shared by every LLM backend: one POST with retries, and the agent skeleton.

Providers differ only in URL, headers, payload and how an answer is read back; those four
are what a backend in providers.py supplies. Everything about waiting (timeouts, backoff,
Retry-After) and about turning an HTTP failure into one actionable AgentError lives here.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from dreamteam.agents.base import AgentRequest, AgentResponse, FinishReason, Role, Usage
from dreamteam.errors import AgentError

# Statuses worth another try: rate limits, timeouts, and the providers' "overloaded" (529).
_RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
# A 429 that says the account is out of money will not heal by waiting.
_FATAL_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
_EXCERPT = 300  # characters of a provider's error text worth quoting


@dataclass(frozen=True)
class LLMSettings:
    """How an LLM backend asks: sampling, limits and patience."""

    temperature: float = 0.7
    # Two whole files of a few hundred lines each come back in every answer, and reasoning
    # models spend part of this budget thinking; lower it for models with smaller caps.
    max_output_tokens: int = 16384
    timeout_s: float = 300.0  # for one HTTP attempt: long answers take minutes
    max_retries: int = 4  # further attempts after the first, on retryable failures only
    backoff_s: float = 2.0  # the first wait; doubled per retry
    backoff_max_s: float = 60.0  # no single wait is longer than this
    # Ollama only: its default context window (a few thousand tokens) would silently cut
    # a prompt that carries two whole files, so the backend asks for this many.
    context_tokens: int = 32768

    def __post_init__(self) -> None:
        if self.max_output_tokens < 1 or self.timeout_s <= 0 or self.max_retries < 0:
            raise ValueError(
                "LLMSettings needs max_output_tokens >= 1, timeout_s > 0, retries >= 0"
            )


@dataclass(frozen=True)
class Reply:
    """What a backend read out of a provider's JSON answer."""

    text: str
    finish: FinishReason
    usage: Usage


class HTTPAgent:
    """An agent that answers by one JSON POST to a provider; subclasses fill in the format.

    The API key is held only in request headers and never appears in a message or repr.
    """

    provider_label = "LLM"  # how errors name the service, e.g. "Anthropic"
    key_hint = ""  # the environment variable to fix after a 401, for the error message

    def __init__(
        self,
        name: str,
        model: str,
        base_url: str,
        api_key: str = "",
        settings: LLMSettings | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int = 0,
    ) -> None:
        self._name = name
        self.model = model
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.settings = settings or LLMSettings()
        self._sleep = sleep
        self._rng = random.Random(seed)  # jitter only; seeded so tests see fixed waits
        self._client = httpx.Client(
            timeout=httpx.Timeout(
                self.settings.timeout_s, connect=min(30.0, self.settings.timeout_s)
            ),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, base_url={self.base_url!r})"

    @property
    def name(self) -> str:
        """The model spec this agent answers as."""
        return self._name

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> HTTPAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def propose(self, request: AgentRequest) -> AgentResponse:
        """Send the request to the provider and return its answer."""
        started = time.monotonic()
        body, attempts = self._post(self._endpoint(), self._headers(), self._payload(request))
        reply = self._parse(body)
        return AgentResponse(
            text=reply.text,
            model=self._name,
            finish=reply.finish,
            usage=reply.usage,
            latency_s=time.monotonic() - started,
            attempts=attempts,
        )

    # The four hooks a provider fills in.
    def _endpoint(self) -> str:
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _payload(self, request: AgentRequest) -> dict[str, Any]:
        raise NotImplementedError

    def _parse(self, body: Mapping[str, Any]) -> Reply:
        raise NotImplementedError

    def _post(
        self, url: str, headers: Mapping[str, str], payload: Mapping[str, Any]
    ) -> tuple[dict[str, Any], int]:
        attempts = self.settings.max_retries + 1
        last = ""
        for attempt in range(1, attempts + 1):
            retry_after: float | None = None
            try:
                response = self._client.post(url, headers=dict(headers), json=payload)
            except httpx.TimeoutException:
                last = f"no answer within {self.settings.timeout_s:g} s"
            except httpx.TransportError as exc:
                last = f"cannot reach {url} ({type(exc).__name__}: {exc})"
            else:
                if response.is_success:
                    return self._json(response), attempt
                last = self._describe(response)
                if not _retryable(response):
                    raise AgentError(f"{self.provider_label} {self._name}: {last}")
                retry_after = _retry_after(response.headers)
            if attempt < attempts:
                self._sleep(self._delay(attempt, retry_after))
        raise AgentError(
            f"{self.provider_label} {self._name}: gave up after {attempts} attempts; last: {last}"
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        cap = min(self.settings.backoff_max_s, self.settings.backoff_s * 2 ** (attempt - 1))
        # Half fixed, half random: spread out workers that failed together.
        delay = cap / 2 + self._rng.uniform(0, cap / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.settings.backoff_max_s))
        return delay

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise AgentError(
                f"{self.provider_label} {self._name}: the answer is not a JSON object "
                f"({_excerpt(response.text)}); check the base URL {self.base_url}"
            )
        return body

    def _describe(self, response: httpx.Response) -> str:
        status = response.status_code
        detail = _error_message(response)
        if status in (401, 403):
            fix = f"check {self.key_hint}" if self.key_hint else "check the API key"
            return f"the provider rejected the credentials (HTTP {status}: {detail}); {fix}"
        if status == 404:
            return (
                f"model {self.model!r} or endpoint not found (HTTP 404: {detail}); "
                "check the model name and the base URL"
            )
        return f"HTTP {status}: {detail}"


def chat_turns(request: AgentRequest) -> list[tuple[Role, str]]:
    """The conversation to send: the earlier turns, then the prompt as the last user turn."""
    turns = [(message.role, message.content) for message in request.history]
    turns.append((Role.USER, request.prompt))
    return turns


def _retryable(response: httpx.Response) -> bool:
    if response.status_code not in _RETRYABLE:
        return False
    return _error_code(response) not in _FATAL_CODES


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from these APIs, so fall back to the backoff
    return seconds if seconds >= 0 else None


def _error_payload(response: httpx.Response) -> Mapping[str, Any]:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    # OpenAI, Anthropic and Gemini nest the detail under "error"; Ollama puts a bare string.
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return {"message": error}
    return error if isinstance(error, dict) else {}


def _error_code(response: httpx.Response) -> str:
    error = _error_payload(response)
    return str(error.get("code") or error.get("type") or "")


def _error_message(response: httpx.Response) -> str:
    message = _error_payload(response).get("message")
    if isinstance(message, str) and message:
        return _excerpt(message)
    return _excerpt(response.text) or response.reason_phrase or "no detail"


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _EXCERPT else flat[: _EXCERPT - 3] + "..."

"""The HTTP side shared by every LLM backend: one POST with retries, and the agent skeleton.

Providers differ only in URL, headers, payload and how an answer is read back; those four
are what a backend in providers.py supplies. Everything about waiting (the call's deadline,
timeouts, backoff, Retry-After), about reading any answer without crashing, and about turning
an HTTP failure into one actionable AgentError with its `AgentFault` lives here.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from dreamteam.agents.base import (
    AgentRequest,
    AgentResponse,
    CallNote,
    CallStage,
    FinishReason,
    Listener,
    Role,
    Usage,
    clean_text,
)
from dreamteam.agents.deadline import Deadlines, DeadlineTransport
from dreamteam.agents.http_answers import (
    RAW_KEEP,
    RawAnswer,
    error_message,
    excerpt,
    fault_of,
    retry_after,
    retryable,
)
from dreamteam.errors import AgentError, AgentFault

# A parser meeting a JSON shape it did not expect fails with one of these.
_SHAPE_ERRORS = (AttributeError, TypeError, KeyError, IndexError, ValueError, RecursionError)
PING = "Reply with the word OK."  # the check before a run: any answer will do
PING_TOKENS = 16


@dataclass(frozen=True)
class LLMSettings:
    """How an LLM backend asks: sampling, limits and patience."""

    temperature: float = 0.7
    # Two whole files of a few hundred lines each come back in every answer, and reasoning
    # models spend part of this budget thinking; lower it for models with smaller caps.
    max_output_tokens: int = 16384
    timeout_s: float = 300.0  # the longest silence one attempt waits out
    deadline_s: float = 600.0  # the whole call: every attempt and every wait between them
    max_retries: int = 4  # further attempts after the first, on retryable failures only
    backoff_s: float = 2.0  # the first wait; doubled per retry
    backoff_max_s: float = 60.0  # no single wait is longer than this
    # Ollama only: its default context window (a few thousand tokens) would silently cut
    # a prompt that carries two whole files, so the backend asks for this many.
    context_tokens: int = 32768
    max_answer_bytes: int = 16 << 20  # a longer answer is not read (answers are ~100 kB)

    def __post_init__(self) -> None:
        if (
            self.max_output_tokens < 1
            or self.timeout_s <= 0
            or self.deadline_s <= 0
            or self.max_retries < 0
            or self.max_answer_bytes < 1
        ):
            raise ValueError(
                "LLMSettings needs max_output_tokens >= 1, timeout_s > 0, deadline_s > 0, "
                "retries >= 0, max_answer_bytes >= 1"
            )


@dataclass(frozen=True)
class Reply:
    """What a backend read out of a provider's JSON answer."""

    text: str
    finish: FinishReason
    usage: Usage


@dataclass(frozen=True)
class _Call:
    """One call under way: what it asks, when it started, when it must end."""

    request: AgentRequest
    started: float
    deadline_s: float

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.deadline_s - self.elapsed()


_CUT = "the call's deadline passed"  # how an attempt the deadline cut short ends


class _Transient(Exception):
    """An attempt failed in a way that another attempt may not."""

    def __init__(
        self, reason: str, fault: AgentFault, retry_after: float | None = None, cut: bool = False
    ):
        super().__init__(reason)
        self.reason, self.fault, self.retry_after = reason, fault, retry_after
        self.cut = cut  # the call's deadline ended this attempt: it says nothing of the server


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
        self._deadlines = Deadlines()
        self._listener: Listener | None = None
        self._client = httpx.Client(
            timeout=httpx.Timeout(
                self.settings.timeout_s, connect=min(30.0, self.settings.timeout_s)
            ),
            transport=transport or DeadlineTransport(self._deadlines),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, base_url={self.base_url!r})"

    @property
    def name(self) -> str:
        """The model spec this agent answers as."""
        return self._name

    def listen(self, listener: Listener | None) -> None:
        """Report each call's start, retries and end to `listener` (None: to nobody)."""
        self._listener = listener

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> HTTPAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def propose(self, request: AgentRequest) -> AgentResponse:
        """Send the request to the provider and return its answer, within the deadline."""
        return self._ask(request, self.settings.max_output_tokens, self.settings.deadline_s)

    def check(self, deadline_s: float) -> AgentResponse:
        """Ask a tiny question, so that a rejected key, an unknown model or a wrong URL shows
        before a run spends compute; fails like `propose`."""
        request = AgentRequest(prompt=PING, tag="check")
        return self._ask(request, PING_TOKENS, min(deadline_s, self.settings.deadline_s))

    def _ask(self, request: AgentRequest, max_tokens: int, deadline_s: float) -> AgentResponse:
        call = _Call(request, time.monotonic(), deadline_s)
        self._tell(CallStage.ASKING, call, f"{self._name}, deadline {deadline_s:g} s")
        try:
            raw, attempts = self._post(call, self._payload(request, max_tokens))
            reply = self._reply(raw)
        except AgentError as exc:
            self._tell(CallStage.FAILED, call, str(exc))
            raise
        self._tell(CallStage.ANSWERED, call, f"{attempts} attempt(s)")
        return AgentResponse(
            text=clean_text(reply.text),
            model=self._name,
            finish=reply.finish,
            usage=reply.usage,
            latency_s=call.elapsed(),
            attempts=attempts,
        )

    def _tell(self, stage: CallStage, call: _Call, detail: str) -> None:
        if self._listener is not None:
            tag, persona = call.request.tag, call.request.persona
            self._listener(CallNote(stage, self._name, tag, persona, call.elapsed(), detail))

    # The four hooks a provider fills in.
    def _endpoint(self) -> str:
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _payload(self, request: AgentRequest, max_tokens: int) -> dict[str, Any]:
        raise NotImplementedError

    def _parse(self, body: Mapping[str, Any]) -> Reply:
        raise NotImplementedError

    def _post(self, call: _Call, payload: Mapping[str, Any]) -> tuple[RawAnswer, int]:
        """The first successful answer, retrying transient failures while the deadline lets."""
        url, headers = self._endpoint(), self._headers()
        attempts = self.settings.max_retries + 1
        cause: _Transient | None = None  # the last failure the deadline did not cut short
        for attempt in range(1, attempts + 1):
            try:
                return self._attempt(url, headers, payload, call), attempt
            except _Transient as failure:
                last = failure
                cause = cause if failure.cut else failure
            wait = self._delay(attempt, last.retry_after)
            if attempt == attempts or wait >= call.left():
                break
            self._tell(
                CallStage.RETRY,
                call,
                f"attempt {attempt + 1} of {attempts} in {wait:.1f} s: {last.reason}",
            )
            self._sleep(wait)
        if attempt < attempts:  # the deadline, not the retries, ran out
            # an attempt the deadline cut short says nothing of why the earlier ones failed
            why = last if cause is None else cause
            cut = "; the last attempt was cut short" if why is not last else ""
            raise AgentError(
                f"{self.provider_label} {self._name}: no answer within the call's "
                f"{call.deadline_s:g} s deadline (--agent-timeout; {attempt} attempt(s)); "
                f"last: {why.reason}{cut}",
                why.fault,
            )
        raise AgentError(
            f"{self.provider_label} {self._name}: gave up after {attempts} attempts; "
            f"last: {last.reason}",
            last.fault,
        )

    def _attempt(
        self, url: str, headers: Mapping[str, str], payload: Mapping[str, Any], call: _Call
    ) -> RawAnswer:
        """One POST, read whole; _Transient when another attempt may do better."""
        left = call.left()
        if left <= 0:
            raise _Transient(_CUT, AgentFault.TIMEOUT, cut=True)
        silence = min(self.settings.timeout_s, left)
        timeout = httpx.Timeout(silence, connect=min(30.0, left))
        try:
            with (
                self._deadlines.until(call.started + call.deadline_s),
                self._client.stream(
                    "POST", url, headers=dict(headers), json=payload, timeout=timeout
                ) as response,
            ):
                raw = self._read(response, call)
        except httpx.TimeoutException:
            cut = call.left() <= 0
            why = _CUT if cut else f"silent for {silence:g} s"
            raise _Transient(f"no complete answer: {why}", AgentFault.TIMEOUT, cut=cut) from None
        except httpx.ConnectError as exc:
            reason = f"cannot reach {url} ({type(exc).__name__}: {exc})"
            raise _Transient(reason, AgentFault.UNREACHABLE) from None
        except httpx.TransportError as exc:
            reason = f"the connection to {url} broke ({type(exc).__name__}: {exc})"
            raise _Transient(reason, AgentFault.SERVER_ERROR) from None
        except httpx.HTTPError as exc:  # an undecodable body, a redirect loop, ...
            raise AgentError(
                f"{self.provider_label} {self._name}: the answer cannot be read "
                f"({type(exc).__name__}: {excerpt(str(exc))})",
                AgentFault.BAD_ANSWER,
            ) from None
        if 200 <= raw.status < 300:
            return raw
        detail = self._describe(raw)
        if retryable(raw):
            raise _Transient(detail, fault_of(raw.status), retry_after(raw.headers))
        raise AgentError(f"{self.provider_label} {self._name}: {detail}", fault_of(raw.status))

    def _read(self, response: httpx.Response, call: _Call) -> RawAnswer:
        """The body, up to `max_answer_bytes`, stopping at the deadline between chunks too
        (for transports that are not bounded at the socket)."""
        cap = self.settings.max_answer_bytes
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                head = b"".join(chunks)[: min(cap, RAW_KEEP)].decode("utf-8", "replace")
                raise AgentError(
                    f"{self.provider_label} {self._name}: the answer is over {cap:,} bytes; "
                    "not read",
                    AgentFault.BAD_ANSWER,
                    clean_text(head),
                )
            if call.left() <= 0:
                raise httpx.ReadTimeout(_CUT, request=response.request)
        text = b"".join(chunks).decode("utf-8", "replace")  # JSON is UTF-8 (RFC 8259)
        return RawAnswer(response.status_code, response.headers, text)

    def _reply(self, raw: RawAnswer) -> Reply:
        """The provider's answer read by `_parse`; any shape it cannot read is a BAD_ANSWER
        AgentError that keeps the raw text."""
        kept = clean_text(raw.text[:RAW_KEEP])
        try:
            body = json.loads(raw.text)
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            raise AgentError(
                f"{self.provider_label} {self._name}: the answer is not a JSON object "
                f"({excerpt(raw.text)}); check the base URL {self.base_url}",
                AgentFault.BAD_ANSWER,
                kept,
            )
        try:
            reply = self._parse(body)
        except AgentError as exc:
            raise AgentError(str(exc), AgentFault.BAD_ANSWER, kept) from None
        except _SHAPE_ERRORS as exc:
            raise AgentError(
                f"{self.provider_label} {self._name}: the answer is not in "
                f"{self.provider_label}'s format ({type(exc).__name__}: {excerpt(str(exc))})",
                AgentFault.BAD_ANSWER,
                kept,
            ) from None
        if not isinstance(reply.text, str):
            raise AgentError(
                f"{self.provider_label} {self._name}: the answer holds no text",
                AgentFault.BAD_ANSWER,
                kept,
            )
        return reply

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        cap = min(self.settings.backoff_max_s, self.settings.backoff_s * 2 ** (attempt - 1))
        # Half fixed, half random: spread out workers that failed together.
        delay = cap / 2 + self._rng.uniform(0, cap / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.settings.backoff_max_s))
        return delay

    def _describe(self, raw: RawAnswer) -> str:
        """An HTTP failure in one line, the fix before the provider's own words."""
        status = raw.status
        detail = error_message(raw)
        if status in (401, 403):
            fix = f"check {self.key_hint}" if self.key_hint else "check the API key"
            return f"the provider rejected the credentials: {fix} (HTTP {status}: {detail})"
        if status == 404:
            return (
                f"model {self.model!r} or endpoint not found: check the model name and the "
                f"base URL {self.base_url} (HTTP 404: {detail})"
            )
        if 300 <= status < 400:
            where = excerpt(raw.headers.get("location", "elsewhere"))
            return f"HTTP {status}: redirected to {where}: check the base URL {self.base_url}"
        return f"HTTP {status}: {detail}"


def chat_turns(request: AgentRequest) -> list[tuple[Role, str]]:
    """The conversation to send: the earlier turns, then the prompt as the last user turn."""
    turns = [(message.role, message.content) for message in request.history]
    turns.append((Role.USER, request.prompt))
    return turns

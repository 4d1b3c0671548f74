"""Reading what a provider sent back over HTTP: the raw answer, its error and its fault.

Nothing here trusts the answer: bodies may be any bytes, any JSON shape, or huge, and every
piece of them quoted in a message is cut to one short line that any sink can store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from dreamteam.agents.base import clean_text
from dreamteam.errors import AgentFault

# Statuses worth another try: rate limits, timeouts, and the providers' "overloaded" (529).
_RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
# A 429 that says the account is out of money will not heal by waiting.
_FATAL_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
_FAULTS = {
    401: AgentFault.CREDENTIALS,
    403: AgentFault.CREDENTIALS,
    404: AgentFault.NOT_FOUND,
    408: AgentFault.TIMEOUT,
    429: AgentFault.RATE_LIMITED,
}
EXCERPT = 300  # characters of a provider's error text worth quoting
RAW_KEEP = 1 << 20  # characters of an unreadable answer kept with its candidate


@dataclass(frozen=True)
class RawAnswer:
    """An HTTP answer as read: its status, headers and body (as text)."""

    status: int
    headers: httpx.Headers
    text: str


def retryable(raw: RawAnswer) -> bool:
    """Whether another attempt may get a different answer."""
    if raw.status not in _RETRYABLE:
        return False
    return _error_code(raw) not in _FATAL_CODES


def fault_of(status: int) -> AgentFault:
    """The fault an unsuccessful status stands for (a retryable one, once retries ran out)."""
    if status in _FAULTS:
        return _FAULTS[status]
    return AgentFault.SERVER_ERROR if status in _RETRYABLE else AgentFault.REJECTED


def retry_after(headers: httpx.Headers) -> float | None:
    """The seconds a Retry-After header asks for; None when absent or not a number."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from these APIs, so fall back to the backoff
    return seconds if 0 <= seconds < float("inf") else None


def error_message(raw: RawAnswer) -> str:
    """The provider's own words about a failure, as an excerpt."""
    message = _error_payload(raw).get("message")
    if isinstance(message, str) and message:
        return excerpt(message)
    return excerpt(raw.text) or f"status {raw.status}"


def excerpt(text: str) -> str:
    """One line of at most EXCERPT characters, safe to store and print."""
    flat = " ".join(clean_text(text[: EXCERPT * 4]).split())
    return flat if len(flat) <= EXCERPT else flat[: EXCERPT - 3] + "..."


def _error_payload(raw: RawAnswer) -> Mapping[str, Any]:
    try:
        body = json.loads(raw.text)
    except (ValueError, RecursionError):
        return {}
    # OpenAI, Anthropic and Gemini nest the detail under "error"; Ollama puts a bare string.
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return {"message": error}
    return error if isinstance(error, dict) else {}


def _error_code(raw: RawAnswer) -> str:
    error = _error_payload(raw)
    return str(error.get("code") or error.get("type") or "")

"""Model strings: what ``--model`` accepts, parsed into plain values.

Forms (the user-facing contract): ``offline``, ``openai:MODEL``, ``anthropic:MODEL``,
``gemini:MODEL``, ``ollama:MODEL``, ``openai-compatible:MODEL@BASE_URL`` and
``replay:CASSETTE_PATH``. Per mode, a comma-separated map such as
``savant=gemini:gemini-2.5-flash,specialist=offline``; a bare entry sets the default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from dreamteam.errors import ConfigError
from dreamteam.records import Mode

DEFAULT_SPEC = "offline"
# A base URL starts with a scheme, so "MODEL@http..." splits at the right "@" even when
# the model name or the URL's user info holds one.
_COMPAT = re.compile(r"^(?P<model>.+?)@(?P<url>https?://\S+)$")
_FORMS = (
    "offline, openai:MODEL, anthropic:MODEL, gemini:MODEL, ollama:MODEL, "
    "openai-compatible:MODEL@BASE_URL, replay:CASSETTE_PATH"
)


class Provider(StrEnum):
    """The kinds of agent a model string can name."""

    OFFLINE = "offline"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    OLLAMA = "ollama"
    OPENAI_COMPATIBLE = "openai-compatible"
    REPLAY = "replay"


@dataclass(frozen=True)
class ModelSpec:
    """One parsed model string."""

    provider: Provider
    model: str = ""  # the provider's model name; for replay, the cassette path
    base_url: str = ""  # only for openai-compatible

    def __str__(self) -> str:
        if self.provider is Provider.OFFLINE:
            return "offline"
        if self.provider is Provider.OPENAI_COMPATIBLE:
            return f"{self.provider}:{self.model}@{self.base_url}"
        return f"{self.provider}:{self.model}"


@dataclass(frozen=True)
class ModelMap:
    """Which model each persona mode uses: a default plus per-mode overrides."""

    default: ModelSpec
    per_mode: tuple[tuple[Mode, ModelSpec], ...] = ()

    def for_mode(self, mode: Mode) -> ModelSpec:
        """The spec for personas of ``mode``."""
        for key, spec in self.per_mode:
            if key is mode:
                return spec
        return self.default

    def specs(self) -> tuple[ModelSpec, ...]:
        """Every distinct spec in the map, default first."""
        seen: list[ModelSpec] = [self.default]
        for _, spec in self.per_mode:
            if spec not in seen:
                seen.append(spec)
        return tuple(seen)

    def __str__(self) -> str:
        parts = [str(self.default)] + [f"{mode}={spec}" for mode, spec in self.per_mode]
        return ",".join(parts)


def parse_model_spec(text: str) -> ModelSpec:
    """Parse one model string such as ``anthropic:claude-sonnet-4-5``; ConfigError if malformed."""
    raw = text.strip()
    if raw == Provider.OFFLINE:
        return ModelSpec(Provider.OFFLINE)
    prefix, sep, rest = raw.partition(":")
    rest = rest.strip()
    try:
        provider = Provider(prefix.strip().lower())
    except ValueError:
        raise ConfigError(f"unknown model {text!r}: use one of {_FORMS}") from None
    if provider is Provider.OFFLINE:
        raise ConfigError(f"model {text!r}: 'offline' takes no model name; write just 'offline'")
    if not sep or not rest:
        raise ConfigError(f"model {text!r} names no model: write it as {provider}:MODEL")
    if provider is Provider.OPENAI_COMPATIBLE:
        match = _COMPAT.match(rest)
        if match is None:
            raise ConfigError(
                f"model {text!r}: write it as openai-compatible:MODEL@BASE_URL, "
                "e.g. openai-compatible:qwen2.5-coder@http://127.0.0.1:8000/v1"
            )
        return ModelSpec(provider, match["model"], match["url"].rstrip("/"))
    return ModelSpec(provider, rest)


def parse_model_map(text: str) -> ModelMap:
    """Parse ``--model``: one spec, or ``MODE=SPEC`` entries plus at most one bare default.

    An entry counts as per-mode only when the text before its first ``=`` is a mode name,
    so a spec whose URL holds ``=`` still parses as a spec.
    """
    default: ModelSpec | None = None
    per_mode: dict[Mode, ModelSpec] = {}
    entries = [entry.strip() for entry in text.split(",")]
    if not any(entries):
        raise ConfigError(f"--model is empty: use one of {_FORMS}")
    modes = {mode.value: mode for mode in Mode}
    for entry in entries:
        if not entry:
            continue
        key, sep, value = entry.partition("=")
        key = key.strip().lower()
        if sep and key in ("default", *modes):
            spec = parse_model_spec(value)
            if key == "default":
                default = _set_once(default, spec, "the default model")
            elif modes[key] in per_mode:
                raise ConfigError(f"--model sets mode {key!r} twice: keep one entry per mode")
            else:
                per_mode[modes[key]] = spec
        elif sep and "=" not in value and ":" not in key:
            raise ConfigError(
                f"--model entry {entry!r}: {key!r} is no mode (use savant, collaborator or "
                "specialist)"
            )
        else:
            default = _set_once(default, parse_model_spec(entry), "the default model")
    ordered = tuple((mode, per_mode[mode]) for mode in Mode if mode in per_mode)
    return ModelMap(default or ModelSpec(Provider.OFFLINE), ordered)


def _set_once(current: ModelSpec | None, spec: ModelSpec, what: str) -> ModelSpec:
    if current is not None:
        raise ConfigError(f"--model sets {what} twice: give one bare model, the rest as MODE=SPEC")
    return spec

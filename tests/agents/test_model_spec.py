"""Model strings: every contract form parses, round-trips, and bad ones say what to write."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dreamteam.agents import ModelSpec, Provider, parse_model_map, parse_model_spec
from dreamteam.errors import ConfigError
from dreamteam.records import Mode


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("offline", ModelSpec(Provider.OFFLINE)),
        ("openai:gpt-4o", ModelSpec(Provider.OPENAI, "gpt-4o")),
        ("anthropic:claude-sonnet-4-5", ModelSpec(Provider.ANTHROPIC, "claude-sonnet-4-5")),
        ("gemini:gemini-2.5-flash", ModelSpec(Provider.GEMINI, "gemini-2.5-flash")),
        ("ollama:qwen2.5-coder:7b", ModelSpec(Provider.OLLAMA, "qwen2.5-coder:7b")),
        (
            "openai-compatible:meta/llama-3@http://127.0.0.1:8000/v1/",
            ModelSpec(Provider.OPENAI_COMPATIBLE, "meta/llama-3", "http://127.0.0.1:8000/v1"),
        ),
        ("replay:runs/a b/cassette.jsonl", ModelSpec(Provider.REPLAY, "runs/a b/cassette.jsonl")),
        ("  OpenAI:gpt-4o-mini ", ModelSpec(Provider.OPENAI, "gpt-4o-mini")),
    ],
)
def test_every_contract_form_parses(text: str, expected: ModelSpec) -> None:
    assert parse_model_spec(text) == expected


def test_compatible_url_with_user_info_splits_at_the_scheme() -> None:
    spec = parse_model_spec("openai-compatible:m@x@https://u:p@host.example/v1")
    assert (spec.model, spec.base_url) == ("m@x", "https://u:p@host.example/v1")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("gpt-4o", "unknown model"),
        ("azure:gpt-4o", "unknown model"),
        ("openai:", "names no model"),
        ("anthropic", "names no model"),
        ("offline:x", "takes no model name"),
        ("openai-compatible:llama", "MODEL@BASE_URL"),
        ("openai-compatible:llama@localhost:8000", "MODEL@BASE_URL"),
    ],
)
def test_malformed_specs_raise_config_errors_that_say_the_form(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_model_spec(text)


_names = st.from_regex(r"[a-z][a-z0-9.\-/:]{0,20}", fullmatch=True)


@given(
    provider=st.sampled_from(
        [Provider.OPENAI, Provider.ANTHROPIC, Provider.GEMINI, Provider.OLLAMA, Provider.REPLAY]
    ),
    model=_names,
)
def test_str_of_a_spec_parses_back_to_it(provider: Provider, model: str) -> None:
    spec = ModelSpec(provider, model)
    assert parse_model_spec(str(spec)) == spec


@given(model=_names, port=st.integers(1, 65535))
def test_compatible_specs_round_trip(model: str, port: int) -> None:
    spec = ModelSpec(Provider.OPENAI_COMPATIBLE, model, f"http://127.0.0.1:{port}/v1")
    assert parse_model_spec(str(spec)) == spec


def test_a_single_spec_is_the_default_for_every_mode() -> None:
    models = parse_model_map("anthropic:claude-sonnet-4-5")
    assert all(
        models.for_mode(m) == ModelSpec(Provider.ANTHROPIC, "claude-sonnet-4-5") for m in Mode
    )


def test_per_mode_entries_override_the_default_and_unset_modes_stay_offline() -> None:
    models = parse_model_map("savant=gemini:gemini-2.5-flash,specialist=offline")
    assert models.for_mode(Mode.SAVANT) == ModelSpec(Provider.GEMINI, "gemini-2.5-flash")
    assert models.for_mode(Mode.SPECIALIST).provider is Provider.OFFLINE
    assert models.for_mode(Mode.COLLABORATOR).provider is Provider.OFFLINE
    assert parse_model_map(str(models)) == models


def test_a_bare_entry_sets_the_default_next_to_per_mode_ones() -> None:
    models = parse_model_map("openai:gpt-4o, Collaborator=ollama:llama3.1")
    assert models.default == ModelSpec(Provider.OPENAI, "gpt-4o")
    assert models.for_mode(Mode.COLLABORATOR) == ModelSpec(Provider.OLLAMA, "llama3.1")
    assert models.specs() == (models.default, ModelSpec(Provider.OLLAMA, "llama3.1"))


def test_a_url_with_an_equals_sign_is_still_one_spec() -> None:
    models = parse_model_map("openai-compatible:m@http://127.0.0.1:9/v1?key=a")
    assert models.default.base_url == "http://127.0.0.1:9/v1?key=a"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("savant=offline,savant=openai:gpt-4o", "twice"),
        ("openai:gpt-4o,anthropic:claude", "twice"),
        ("wizard=offline", "no mode"),
        ("savant=", "names no model|unknown model"),
    ],
)
def test_bad_model_maps_raise_config_errors(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_model_map(text)

"""Record and replay: a recorded run answers again, identically, with no network."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dreamteam.agents import (
    AgentRequest,
    AgentResponse,
    FinishReason,
    Message,
    RecordingAgent,
    ReplayAgent,
    Role,
    Usage,
    load_cassette,
    request_key,
)
from dreamteam.errors import AgentError, ConfigError


@dataclass
class CannedAgent:
    """Answers every request with a numbered fixed text."""

    text: str = "answer"
    calls: list[AgentRequest] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "canned:model"

    def propose(self, request: AgentRequest) -> AgentResponse:
        self.calls.append(request)
        return AgentResponse(
            text=f"{self.text} {len(self.calls)}",
            model=self.name,
            finish=FinishReason.LENGTH,
            usage=Usage(3, 4),
            latency_s=0.25,
            attempts=2,
        )


def _request(prompt: str, persona: str = "archimedes") -> AgentRequest:
    return AgentRequest(prompt=prompt, persona=persona, system="sys")


def test_the_key_covers_what_the_model_sees_and_nothing_else() -> None:
    base = _request("p")
    assert request_key(base) == request_key(AgentRequest(prompt="p", system="sys", seed=9))
    assert request_key(base) != request_key(_request("q"))
    assert request_key(base) != request_key(AgentRequest(prompt="p"))
    with_history = AgentRequest(prompt="p", system="sys", history=(Message(Role.USER, "x"),))
    assert request_key(base) != request_key(with_history)


def test_a_recorded_run_replays_the_same_answers(tmp_path: Path) -> None:
    cassette = tmp_path / "sub" / "run.jsonl"
    recorder = RecordingAgent(CannedAgent(), cassette)
    history = (Message(Role.USER, "before"), Message(Role.ASSISTANT, "reply"))
    requests = [
        _request("a"),
        _request("b", "aristotle"),
        AgentRequest(prompt="c", history=history),
    ]
    recorded = [recorder.propose(r) for r in requests]
    assert recorder.name == "canned:model"

    replayer = ReplayAgent(cassette)
    assert len(replayer) == 3 and replayer.name == f"replay:{cassette}"
    replayed = [replayer.propose(r) for r in reversed(requests)]
    assert list(reversed(replayed)) == [
        AgentResponse(r.text, r.model, r.finish, r.usage, round(r.latency_s, 3), r.attempts)
        for r in recorded
    ]


def test_a_prompt_asked_twice_gets_its_answers_in_order_then_the_last_again(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    recorder = RecordingAgent(CannedAgent(), cassette)
    recorder.propose(_request("same"))
    recorder.propose(_request("same"))
    replayer = ReplayAgent(cassette)
    texts = [replayer.propose(_request("same")).text for _ in range(3)]
    assert texts == ["answer 1", "answer 2", "answer 2"]


def test_an_unrecorded_prompt_is_an_agent_error_naming_the_persona(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    RecordingAgent(CannedAgent(), cassette).propose(_request("a"))
    with pytest.raises(
        AgentError, match=r"no answer for persona 'hypatia'.*record the cassette again"
    ):
        ReplayAgent(cassette).propose(_request("changed", "hypatia"))


def test_an_unrecorded_prompt_goes_to_the_fallback_when_there_is_one(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    cassette.write_text("")
    fallback = CannedAgent("fallback")
    response = ReplayAgent(cassette, fallback=fallback).propose(_request("x"))
    assert response.text == "fallback 1" and len(fallback.calls) == 1


def test_a_hand_edited_prompt_replays_under_its_new_text(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    RecordingAgent(CannedAgent(), cassette).propose(_request("old"))
    record = json.loads(cassette.read_text())
    record["prompt"] = "new"
    cassette.write_text(json.dumps(record) + "\n")
    assert ReplayAgent(cassette).propose(_request("new")).text == "answer 1"


def test_a_missing_cassette_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist: record one first"):
        ReplayAgent(tmp_path / "none.jsonl")


@pytest.mark.parametrize("line", ["{not json", '{"v": 1}', '{"v": 99, "key": "k"}', "[1]"])
def test_a_corrupt_line_names_the_file_and_line(tmp_path: Path, line: str) -> None:
    cassette = tmp_path / "c.jsonl"
    RecordingAgent(CannedAgent(), cassette).propose(_request("a"))
    with cassette.open("a") as f:
        f.write(line + "\n")
    with pytest.raises(ConfigError, match=rf"{cassette.name}, line 2: not a recorded answer"):
        load_cassette(cassette)


def test_concurrent_recording_keeps_every_line_whole(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    recorder = RecordingAgent(CannedAgent("x" * 20_000), cassette)

    def work(worker: int) -> None:
        for i in range(10):
            recorder.propose(_request(f"{worker}-{i}"))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = load_cassette(cassette)
    assert len(entries) == 40
    assert {e.prompt for e in entries} == {f"{w}-{i}" for w in range(4) for i in range(10)}


def test_a_failed_answer_is_not_recorded(tmp_path: Path) -> None:
    class Failing(CannedAgent):
        def propose(self, request: AgentRequest) -> AgentResponse:
            raise AgentError("provider down")

    cassette = tmp_path / "c.jsonl"
    with pytest.raises(AgentError):
        RecordingAgent(Failing(), cassette).propose(_request("a"))
    assert not cassette.exists()

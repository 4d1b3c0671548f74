"""Agent faults over real HTTP: a scripted server on 127.0.0.1 answers with every shape,
status, hang and trickle users meet, and no answer crashes a run, hangs it or goes unsaid.

Each case drives the real client (httpx, the deadline at the socket) and, where a run is at
stake, the real proposer, store and search with a fake trainer (test_search.FakeExecutor).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from dreamteam.agents import (
    AnthropicAgent,
    Credentials,
    GeminiAgent,
    LLMSettings,
    OllamaAgent,
    OpenAICompatibleAgent,
    build_team,
    parse_model_map,
)
from dreamteam.agents.base import AgentRequest, AgentResponse, CallNote, CallStage
from dreamteam.agents.budget import Limits
from dreamteam.agents.offline import OfflineAgent
from dreamteam.agents.transport import HTTPAgent
from dreamteam.cli import app
from dreamteam.cli.progress import Progress, Tally, render
from dreamteam.config import RunConfig, load_run_config
from dreamteam.errors import (
    AgentError,
    AgentFault,
    AgentOutageError,
    AgentSetupError,
    ConfigError,
)
from dreamteam.loop.build import build_search
from dreamteam.loop.search import Search
from dreamteam.personas import load_library
from dreamteam.records import CandidateKind, CandidateRecord, Event
from dreamteam.store import RunStore
from dreamteam.tasks import load_task
from loopback import Script, Scripted, ScriptedLLM, answer_checks, closed_port_url, openai_body
from test_search import FakeExecutor
from test_search_llm import ANSWER

TASK = load_task("shakespeare")
QUICK = LLMSettings(max_retries=2, backoff_s=0.001, backoff_max_s=0.01, deadline_s=30)
PERSONAS = ("archimedes", "aristotle")
KEY_ERROR = json.dumps({"error": {"message": "Incorrect API key provided"}}).encode()


def _no_sleep(_seconds: float) -> None:
    pass


def _search(
    tmp_path: Path, url: str, on_event=lambda e: None, **overrides: Any
) -> tuple[Search, FakeExecutor, RunStore]:
    """A search of the two seed personas asking `url`, over a store in tmp_path/run."""
    model = f"openai-compatible:tiny@{url}"
    config = RunConfig(
        **{"generations": 1, "personas": PERSONAS, "fidelity": "smoke", "model": model} | overrides
    )
    team = build_team(
        parse_model_map(model),
        Credentials.from_env({}),
        replace(QUICK, deadline_s=config.agent_timeout),
        offline=lambda: OfflineAgent(),
        sleep=_no_sleep,
    )
    store = RunStore(tmp_path / "run")
    store.create_run("run", "shakespeare", {}, [])
    executor = FakeExecutor()
    library = load_library()
    search = build_search(
        config, store, task=TASK, library=library, agents=team, executor=executor, on_event=on_event
    )
    return search, executor, store


def _by_persona(answers: dict[str, Scripted]) -> Script:
    """Each persona's prompt gets its own reply; the run's first request a good one."""

    def script(body: dict[str, Any]) -> Scripted:
        text = json.dumps(body)
        for name, reply in answers.items():
            if name in text:
                return reply
        return Scripted(body=openai_body(ANSWER))

    return answer_checks(script)


# -- 1. no answer crashes a run --------------------------------------------------------------

_ODD = st.sampled_from(["\ud800", "\udfff", "\ud83d", "\x00", "\u2028"])
_TEXT = st.text(alphabet=st.one_of(st.characters(), _ODD), max_size=30)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)
_SHAPES = (
    lambda v: {"choices": v},
    lambda v: {"choices": [v]},
    lambda v: {"choices": [{"message": v}], "usage": v},
    lambda v: {"choices": [{"message": {"content": v}}], "usage": {"prompt_tokens": v}},
    lambda v: {"content": v, "stop_reason": v},  # Anthropic
    lambda v: {"content": [v], "usage": {"output_tokens": v}},
    lambda v: {"candidates": [{"content": {"parts": v}}]},  # Gemini
    lambda v: {"candidates": v, "promptFeedback": v, "usageMetadata": v},
    lambda v: {"message": v, "done_reason": v},  # Ollama
    lambda v: {"message": {"content": v}, "eval_count": v},
    lambda v: v,
)


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    """Bytes a provider might send back: JSON of any shape (some in each provider's wire
    format), lone surrogates raw or escaped, binary, HTML, deep nesting."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return draw(st.sampled_from([b"<html><body>Sign in</body></html>", b"[" * 100_000, b""]))
    value = draw(st.sampled_from(_SHAPES))(draw(_JSON))
    if kind == 2:  # surrogates as raw, invalid UTF-8 bytes
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(value).encode()


@dataclass
class _Bench:
    """One server and one search for every example: each example sets `reply` and takes a
    fresh turn (a new slot index, so a new candidate id)."""

    server: ScriptedLLM
    search: Search
    parent: CandidateRecord
    reply: Scripted = field(default_factory=Scripted)
    turns: int = 0

    def __repr__(self) -> str:  # hypothesis prints it on failure: keep it short
        return f"_Bench({self.server.url})"


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Bench]:
    box: list[_Bench] = []
    with ScriptedLLM(lambda _body: box[0].reply) as server:
        search, _, store = _search(tmp_path_factory.mktemp("any"), server.url)
        box.append(_Bench(server, search, store_baseline(store)))
        yield box[0]
        search.close()


_PROVIDERS: tuple[type[HTTPAgent], ...] = (
    OpenAICompatibleAgent,
    AnthropicAgent,
    GeminiAgent,
    OllamaAgent,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=_bodies(),
    status=st.sampled_from([200, 200, 200, 201, 301, 400, 401, 404, 418, 429, 500]),
    provider=st.sampled_from(_PROVIDERS),
)
def test_any_answer_becomes_a_stored_candidate(
    bench: _Bench, body: bytes, status: int, provider: type[HTTPAgent]
) -> None:
    bench.reply, bench.turns = Scripted(status, body), bench.turns + 1
    search, store = bench.search, bench.search.store
    with provider("x:m", "m", bench.server.url, "key", QUICK, sleep=_no_sleep) as agent:
        turn = search.proposer.turn(1, search.team[0], bench.parent, bench.turns, "", [])
        turn = replace(turn, agent=agent)
        answer = turn.ask()  # an AgentResponse, or the AgentError: nothing else escapes
        assert isinstance(answer, AgentResponse | AgentError)
        record = search.proposer.record(turn, answer)
    stored = store.candidate(record.id)
    assert stored is not None and stored.status in ("", "invalid")
    if isinstance(answer, AgentError):
        assert stored.reason.startswith(f"agent failed ({answer.fault}): ")
        assert "\n" not in stored.reason
        if answer.fault is AgentFault.BAD_ANSWER and body and 200 <= status < 300:
            assert stored.response  # the raw answer is kept


def store_baseline(store: RunStore) -> CandidateRecord:
    """The task's baseline as the stored parent of generation 1."""
    files = TASK.baseline_files()
    kind = CandidateKind.BASELINE
    record = CandidateRecord("g0-baseline", 0, "baseline", "baseline", None, kind, "", files)
    store.add_candidate(record)
    return record


def test_odd_answers_are_stored_raw_and_a_resume_does_not_ask_again(tmp_path: Path) -> None:
    shapes = {
        "Archimedes": Scripted(body=b'{"choices":["hello"]}'),
        "Aristotle": Scripted(body=openai_body("\ud800 fix \x00")),
    }
    with ScriptedLLM(_by_persona(shapes)) as server:
        search, _, store = _search(tmp_path, server.url)
        search.run()
        search.close()
        asked = len(server.asked())
        first, second = store.candidate("g1-archimedes"), store.candidate("g1-aristotle")
        assert first is not None and first.status == "invalid"
        assert first.reason.startswith("agent failed (bad answer): ")
        assert first.response == '{"choices":["hello"]}'
        assert second is not None and second.status == "invalid"
        assert second.response == "\\ud800 fix \\x00"  # escaped, kept, readable
        again, executor, _ = _search(tmp_path, server.url)
        again.run()
        again.close()
        assert len(server.asked()) == asked  # every turn had its answer stored
        assert executor.calls == []


def test_a_huge_answer_is_not_read_whole(tmp_path: Path) -> None:
    body = openai_body("x" * 50_000)
    with ScriptedLLM(lambda _body: Scripted(body=body)) as server:
        agent = OpenAICompatibleAgent(
            "c", "m", server.url, "", replace(QUICK, max_answer_bytes=4096)
        )
        with pytest.raises(AgentError, match="over 4,096 bytes") as caught:
            agent.propose(AgentRequest(prompt="hi"))
    assert caught.value.fault is AgentFault.BAD_ANSWER and 0 < len(caught.value.raw) < 50_000


# -- 2. a whole-call deadline --------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        Scripted(hang=True),
        Scripted(body=openai_body("slow"), trickle=0.5),  # the status line and headers too
        Scripted(body=openai_body("slow " * 200), trickle=0.5, head_first=True),
    ],
    ids=["silent", "trickle-all", "trickle-body"],
)
def test_a_silent_or_trickling_server_is_cut_off_at_the_deadline(reply: Scripted) -> None:
    deadline = 2.0
    notes: list[CallNote] = []
    with ScriptedLLM(lambda _body: reply) as server:
        agent = OpenAICompatibleAgent("c", "m", server.url, "", replace(QUICK, deadline_s=deadline))
        agent.listen(notes.append)
        started = time.monotonic()
        with pytest.raises(AgentError, match="deadline") as caught:
            agent.propose(AgentRequest(prompt="hi", tag="g1-a"))
        took = time.monotonic() - started
    assert caught.value.fault is AgentFault.TIMEOUT
    assert took < 10 * deadline
    assert next(n.stage for n in notes) is CallStage.ASKING
    assert notes[-1].stage is CallStage.FAILED and notes[-1].tag == "g1-a"


def test_the_deadline_bounds_the_retries_and_their_waits() -> None:
    error = json.dumps({"error": {"message": "overloaded"}}).encode()
    with ScriptedLLM(lambda _body: Scripted(503, error)) as server:
        slow = LLMSettings(max_retries=50, backoff_s=0.5, backoff_max_s=0.5, deadline_s=2.0)
        agent = OpenAICompatibleAgent("c", "m", server.url, "", slow)
        started = time.monotonic()
        with pytest.raises(
            AgentError, match=r"2 s deadline .*last: HTTP 503: overloaded"
        ) as caught:
            agent.propose(AgentRequest(prompt="hi"))
    assert time.monotonic() - started < 20 and caught.value.fault is AgentFault.SERVER_ERROR
    assert 1 < len(server.requests) < 51


def test_an_attempt_the_deadline_cuts_short_does_not_hide_why_the_others_failed() -> None:
    # two 503s, then a server that never answers: the deadline ends the third attempt, and the
    # error still names the overload, the reason the call needed a third attempt at all
    error = json.dumps({"error": {"message": "overloaded"}}).encode()
    replies = [Scripted(503, error), Scripted(503, error), Scripted(hang=True)]
    with ScriptedLLM(lambda _body: replies.pop(0) if len(replies) > 1 else replies[0]) as server:
        quick = LLMSettings(backoff_s=0.05, backoff_max_s=0.05, deadline_s=1.5)
        agent = OpenAICompatibleAgent("c", "m", server.url, "", quick)
        with pytest.raises(AgentError) as caught:
            agent.propose(AgentRequest(prompt="hi"))
    message = str(caught.value)
    assert "1.5 s deadline" in message and "3 attempt(s)" in message
    assert "last: HTTP 503: overloaded; the last attempt was cut short" in message
    assert caught.value.fault is AgentFault.SERVER_ERROR and len(server.requests) == 3


def test_a_call_whose_only_attempt_is_cut_short_is_a_timeout() -> None:
    with ScriptedLLM(lambda _body: Scripted(hang=True)) as server:
        agent = OpenAICompatibleAgent("c", "m", server.url, "", LLMSettings(deadline_s=1.0))
        with pytest.raises(AgentError, match=r"deadline passed$") as caught:
            agent.propose(AgentRequest(prompt="hi"))
    assert caught.value.fault is AgentFault.TIMEOUT


def test_retry_after_is_waited_and_each_retry_is_reported() -> None:
    replies = [Scripted(429, b'{"error":{"message":"slow down"}}', (("Retry-After", "3"),))]
    replies.append(Scripted(body=openai_body("fine")))
    sleeps: list[float] = []
    notes: list[CallNote] = []
    with ScriptedLLM(lambda _body: replies.pop(0) if len(replies) > 1 else replies[0]) as server:
        settings_ = LLMSettings(backoff_s=0.1, backoff_max_s=10)
        agent = OpenAICompatibleAgent("c", "m", server.url, "", settings_, sleep=sleeps.append)
        agent.listen(notes.append)
        response = agent.propose(AgentRequest(prompt="hi", persona="archimedes"))
    assert response.text == "fine" and response.attempts == 2 and sleeps == [3.0]
    retry = [n for n in notes if n.stage is CallStage.RETRY]
    assert len(retry) == 1 and "attempt 2 of 5 in 3.0 s: HTTP 429: slow down" in retry[0].detail
    assert notes[-1].stage is CallStage.ANSWERED and notes[-1].persona == "archimedes"


# -- 3. fail fast and loud -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "named"),
    [
        (Scripted(401, KEY_ERROR), "check the server's key in OPENAI_API_KEY"),
        (Scripted(403, KEY_ERROR), "OPENAI_API_KEY"),
        (Scripted(404, b'{"error":"model tiny not found"}'), "model 'tiny' or endpoint not found"),
        (Scripted(body=b"<html>a login page</html>"), "not a JSON object"),
    ],
    ids=["401", "403", "404", "html"],
)
def test_a_model_that_cannot_work_stops_the_run_before_the_baseline(
    tmp_path: Path, reply: Scripted, named: str
) -> None:
    with ScriptedLLM(lambda _body: reply) as server:
        search, executor, _store = _search(tmp_path, server.url)
        with pytest.raises(AgentSetupError, match=named) as caught:
            search.run()
        search.close()
    message = str(caught.value)
    assert "\n" not in message and server.url in message
    assert executor.calls == [] and len(server.requests) == 1  # one tiny request, no training


def test_a_refused_connection_stops_the_run_naming_the_url(tmp_path: Path) -> None:
    url = closed_port_url()
    search, executor, _ = _search(tmp_path, url)
    with pytest.raises(AgentSetupError, match=f"cannot reach {url}/chat/completions"):
        search.run()
    search.close()
    assert executor.calls == []


def test_a_slow_first_answer_is_a_warning_not_a_stop(tmp_path: Path) -> None:
    def script(body: dict[str, Any]) -> Scripted:
        return (
            Scripted(503, b"busy")
            if "Reply with the word OK" in json.dumps(body)
            else Scripted(body=openai_body(ANSWER))
        )

    events: list[Event] = []
    with ScriptedLLM(script) as server:
        search, _, _store = _search(tmp_path, server.url, on_event=events.append)
        summary = search.run()
        search.close()
    warning = [e for e in events if e.kind == "agents"]
    assert len(warning) == 1 and "server error" in warning[0].detail
    assert summary.agent_failures == {}


def test_failures_past_their_retries_are_shown_stored_and_counted(tmp_path: Path) -> None:
    out = io.StringIO()
    progress = Progress(Console(file=out, width=300), "plain", 1, Limits())
    broken = Scripted(500, b'{"error":{"message":"internal oops"}}')
    with ScriptedLLM(_by_persona({"Archimedes": broken})) as server:
        search, _, store = _search(tmp_path, server.url, on_event=progress)
        summary = search.run()
        search.close()
    failed = store.candidate("g1-archimedes")
    assert failed is not None and failed.status == "invalid" and failed.response == ""
    assert failed.reason.startswith("agent failed (server error): ")
    assert failed.reason.endswith("last: HTTP 500: internal oops")
    assert summary.agent_failures == {"server error": 1}
    lines = out.getvalue().splitlines()
    assert any(
        line.startswith("  retry g1-archimedes (archimedes) after ") and "internal oops" in line
        for line in lines
    )
    assert any(
        line.startswith("  proposed g1-archimedes (archimedes): invalid: agent failed (server")
        for line in lines
    )
    assert any(line.startswith("  answered g1-aristotle (aristotle): in ") for line in lines)


def test_a_generation_nobody_answered_stops_and_a_resume_asks_again(tmp_path: Path) -> None:
    state = {"down": True}

    def script(body: dict[str, Any]) -> Scripted:
        return (
            Scripted(502, b"bad gateway") if state["down"] else Scripted(body=openai_body(ANSWER))
        )

    with ScriptedLLM(answer_checks(script)) as server:
        search, _executor, store = _search(tmp_path, server.url)
        with pytest.raises(AgentOutageError, match=r"generation 1: all 2 agent calls failed") as e:
            search.run()
        search.close()
        assert f"--resume {store.run_dir}" in str(e.value) and "HTTP 502" in str(e.value)
        state["down"] = False
        asked = len(server.asked())
        again, _, _ = _search(tmp_path, server.url)
        summary = again.run()
        again.close()
    assert len(server.asked()) == asked + 2  # the two turns without an answer, asked again
    first = store.candidate("g1-archimedes")
    assert first is not None and first.status == "ok" and summary.agent_failures == {}


# -- the display, the options and `show` --------------------------------------------------


def test_the_panel_shows_calls_in_flight_with_their_time_and_retries() -> None:
    tally = Tally(generations=1)
    tally.add(Event("asking", "g1-archimedes", "archimedes", "m, deadline 600 s"), now=100.0)
    tally.add(Event("asking", "g1-aristotle", "aristotle", "m, deadline 600 s"), now=101.0)
    tally.add(Event("retry", "g1-aristotle", "aristotle", "after 3.0 s: HTTP 500"), now=104.0)
    tally.add(Event("answered", "g1-archimedes", "archimedes", "in 9.0 s"), now=109.0)
    out = io.StringIO()
    Console(file=out, width=200).print(render(tally, Limits(), 1.0, [], now=131.0))
    text = out.getvalue()
    assert "g1-aristotle 30s (retry after 3.0 s: HTTP 500)" in text
    assert "g1-archimedes" not in text


def test_agent_timeout_comes_from_the_option_or_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("[run]\nagent_timeout = 90\n", encoding="utf-8")
    assert load_run_config(path, {}).agent_timeout == 90
    assert load_run_config(path, {"agent_timeout": 5.5}).agent_timeout == 5.5
    assert RunConfig().agent_timeout == 600
    with pytest.raises(ConfigError, match="--agent-timeout"):
        load_run_config(None, {"agent_timeout": 0})


def test_show_prints_the_whole_reason(dt_env: Path) -> None:
    store = RunStore(dt_env / "runs" / "r1")
    store.create_run("r1", "shakespeare", RunConfig().__dict__, [])
    reason = (
        "agent failed (credentials): OpenAI-compatible server openai-compatible:qwen@"
        "http://127.0.0.1:9/v1: the provider rejected the credentials: check the server's "
        "key in OPENAI_API_KEY (HTTP 401: Incorrect API key provided)"
    )
    kind = CandidateKind.PROPOSAL
    record = CandidateRecord("g1-archimedes", 1, "archimedes", "savant", None, kind, "", {})
    store.add_candidate(replace(record, status="invalid", reason=reason))
    store.close()
    result = CliRunner().invoke(app, ["show", "r1"], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert f"g1-archimedes: {reason} " in " ".join(result.output.split()) + " "  # never cut


def test_dreamteam_run_with_a_rejected_key_exits_1_with_one_line(dt_env: Path) -> None:
    """The real command, in its own process, against a server that answers 401."""
    code = "from dreamteam.cli import main; main()"
    with ScriptedLLM(lambda _body: Scripted(401, KEY_ERROR)) as server:
        model = f"openai-compatible:qwen@{server.url}"
        env = dict(os.environ, OPENAI_API_KEY="sk-wrong")
        done = subprocess.run(
            [sys.executable, "-c", code, "run", "--model", model, "--plain"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("AgentSetupError: ")
    assert (
        "check the server's key in OPENAI_API_KEY" in done.stderr and "sk-wrong" not in done.stderr
    )
    assert len(server.requests) == 1

"""The research loop with a real LLM client: a local OpenAI-compatible server, then a replay.

The server runs on 127.0.0.1 in this process and answers in the seeds' format; the run is
recorded to a cassette and a second run replays it with no server at all.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dreamteam.agents import Credentials, build_team, parse_model_map
from dreamteam.agents.offline import OfflineAgent
from dreamteam.config import RunConfig
from dreamteam.personas import load_library
from dreamteam.search import Search
from dreamteam.store import RunStore
from dreamteam.tasks import load_task
from test_search import FakeExecutor

BASELINE_TRAIN = load_task("shakespeare").baseline_files()["train.py"]
ANSWER = (
    "Raise the learning rate: the baseline's 3e-4 is far too timid for a 32-wide model.\n\n"
    "```python\ntrain_mps.py\n"
    + BASELINE_TRAIN.replace("learning_rate = 3e-4", "learning_rate = 2e-3")
    + "```\n\n```python\nmodel.py\n```\n"
)


PROMPTS: list[str] = []  # what the server was asked, in order


class _ChatServer(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path.endswith("/chat/completions")
        PROMPTS.append(body["messages"][-1]["content"])
        reply = {
            "id": "x",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": ANSWER},
                }
            ],
            "usage": {"prompt_tokens": 1200, "completion_tokens": 900, "total_tokens": 2100},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ChatServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def _run(tmp_path: Path, name: str, model: str, record: Path | None = None) -> RunStore:
    config = RunConfig(
        generations=1, personas=("archimedes", "aristotle"), fidelity="smoke", model=model
    )
    team = build_team(
        parse_model_map(model),
        Credentials.from_env({}),
        record=record,
        offline=lambda: OfflineAgent(),
    )
    store = RunStore(tmp_path / name)
    store.create_run(name, "shakespeare", {}, [])
    Search(config, load_task("shakespeare"), load_library(), team, store, FakeExecutor()).run()
    team.close()
    return store


def test_a_run_through_a_local_server_then_replayed_without_it(tmp_path: Path, server: str) -> None:
    cassette = tmp_path / "cassette.jsonl"
    live = _run(tmp_path, "live", f"openai-compatible:tiny@{server}", record=cassette)
    proposals = [c for c in live.candidates() if c.generation == 1]
    assert [c.persona for c in proposals] == ["archimedes", "aristotle"]
    first = proposals[0]
    assert first.status == "ok" and "learning_rate = 2e-3" in first.files["train.py"]
    assert first.tokens_in == 1200 and first.tokens_out == 900
    assert proposals[1].kind == "duplicate"  # the same answer twice is trained once
    assert "You are Archimedes of Syracuse" in PROMPTS[0]
    assert "## The current code" in PROMPTS[0]

    replayed = _run(tmp_path, "replay", f"replay:{cassette}")
    again = [c for c in replayed.candidates() if c.generation == 1]
    assert [c.code_hash for c in again] == [c.code_hash for c in proposals]

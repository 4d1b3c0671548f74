"""A loopback OpenAI-compatible chat server, for tests and benchmarks that need a real LLM
client without a network: it listens on 127.0.0.1 in this process, answers each
`/chat/completions` request with `answer(prompt)` after `delay` seconds, and keeps the prompts
it was sent. Requests are served on their own threads, so concurrent calls wait concurrently.

    with LoopbackLLM(lambda prompt: "...") as llm:
        model = f"openai-compatible:tiny@{llm.url}"
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable
from types import TracebackType

USAGE = {"prompt_tokens": 1200, "completion_tokens": 900, "total_tokens": 2100}


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self.path.endswith("/chat/completions"):
            self.send_error(404, "only /chat/completions is served here")
            return
        text = self.server.owner._reply(body["messages"][-1]["content"])
        reply = {
            "id": "loopback",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text},
                }
            ],
            "usage": USAGE,
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: LoopbackLLM


class LoopbackLLM:
    """An OpenAI-compatible server on 127.0.0.1 answering `answer(prompt)` after `delay` s."""

    def __init__(self, answer: Callable[[str], str] | str, delay: float = 0.0):
        self._answer = answer if callable(answer) else (lambda _prompt: answer)
        self.delay = delay
        self.prompts: list[str] = []  # in the order they arrived
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The base URL to put after `openai-compatible:MODEL@`."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def _reply(self, prompt: str) -> str:
        with self._lock:
            self.prompts.append(prompt)
        time.sleep(self.delay)  # the model "thinking": what the search should overlap
        return self._answer(prompt)

    def __enter__(self) -> LoopbackLLM:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

"""A loopback OpenAI-compatible chat server, for tests and benchmarks that need a real LLM
client without a network: it listens on 127.0.0.1 in this process, answers each
`/chat/completions` request with `answer(prompt)` after `delay` seconds, and keeps the prompts
it was sent. Requests are served on their own threads, so concurrent calls wait concurrently.

    with LoopbackLLM(lambda prompt: "...") as llm:
        model = f"openai-compatible:tiny@{llm.url}"

A run's first tiny request to each model (the check before any training) is answered too,
and counted in `checks`, not in `prompts`.

`ScriptedLLM` is the hostile kind: each POST gets a scripted `Scripted` reply (any status,
headers and bytes; or a hang; or the whole reply trickled a byte at a time), for fault tests.
`closed_port_url()` is a base URL where nothing listens (connection refused).
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from dreamteam.agents.transport import PING

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
        self.checks = 0  # a run's first tiny requests (see PING)
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
            if prompt == PING:
                self.checks += 1
                return "OK"
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


def openai_body(content: object, finish: str = "stop") -> bytes:
    """An OpenAI chat completion whose message content is `content` (any JSON value)."""
    message = {"role": "assistant", "content": content}
    choice = {"index": 0, "finish_reason": finish, "message": message}
    return json.dumps({"choices": [choice], "usage": USAGE}).encode()


@dataclass(frozen=True)
class Scripted:
    """One scripted reply: status, headers and body, sent at once, a byte every `trickle`
    seconds (status line and headers included, unless `head_first`), or never (`hang`)."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    trickle: float = 0.0
    hang: bool = False
    head_first: bool = False  # with `trickle`: the status line and headers at once

    def wire(self) -> tuple[bytes, bytes]:
        """The HTTP/1.1 response as bytes: what goes at once, and what may trickle."""
        head = [f"HTTP/1.1 {self.status} Scripted"]
        head += [f"{k}: {v}" for k, v in self.headers]
        head += [f"Content-Length: {len(self.body)}", "Connection: close", "", ""]
        data = "\r\n".join(head).encode("latin-1") + self.body
        if not self.trickle:
            return data, b""
        at_once = len(data) - len(self.body) if self.head_first else 0
        return data[:at_once], data[at_once:]


Script = Callable[[dict[str, Any]], Scripted]  # the request's JSON body -> the reply


def answer_checks(script: Script) -> Script:
    """`script`, except that a run's first tiny request gets a plain good answer."""

    def scripted(body: dict[str, Any]) -> Scripted:
        if is_check(body):
            return Scripted(body=openai_body("OK"))
        return script(body)

    return scripted


def is_check(body: dict[str, Any]) -> bool:
    """Whether a request is a run's first tiny request (any provider's format)."""
    return PING in json.dumps(body)


class _ScriptedHandler(http.server.BaseHTTPRequestHandler):
    server: _ScriptedServer

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        owner = self.server.owner
        reply = owner.script(body)
        with owner.lock:
            owner.requests.append(body)
        if reply.hang:
            owner.stopping.wait()
            return
        at_once, slowly = reply.wire()
        try:
            self.wfile.write(at_once)
            self.wfile.flush()
            for i in range(len(slowly)):
                if owner.stopping.wait(reply.trickle):
                    return
                self.wfile.write(slowly[i : i + 1])
                self.wfile.flush()
        except OSError:  # the client hung up: what a deadline does
            return
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


class _ScriptedServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: ScriptedLLM


@dataclass
class ScriptedLLM:
    """A server on 127.0.0.1 answering every POST (any path) with `script(request body)`."""

    script: Script
    requests: list[dict[str, Any]] = field(default_factory=list)  # the bodies it was sent
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._server = _ScriptedServer(("127.0.0.1", 0), _ScriptedHandler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """A base URL for any provider (they add their own paths)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def asked(self) -> list[dict[str, Any]]:
        """The requests that were not a run's first tiny request."""
        with self.lock:
            return [body for body in self.requests if not is_check(body)]

    def __enter__(self) -> ScriptedLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()  # hanging and trickling replies end
        self._server.shutdown()
        self._server.server_close()


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"

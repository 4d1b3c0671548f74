"""A whole-call deadline, enforced at the socket.

httpx's timeouts bound each read, not a call: a server that sends one byte a second never
trips them, and neither does one that trickles its headers. Here every connect, TLS
handshake, read and write of a call waits at most until the call's deadline, and fails with
the matching timeout once it has passed. Calls to one agent may overlap on several threads,
so the deadline is kept per thread.
"""

from __future__ import annotations

import ssl
import threading
import time
import typing
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import httpcore
import httpx


class Deadlines:
    """The deadline (a `time.monotonic()` instant) of the call under way on each thread."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextmanager
    def until(self, when: float) -> Iterator[None]:
        """Bound every socket wait on this thread by `when` while the block runs."""
        previous = getattr(self._local, "when", None)
        self._local.when = when
        try:
            yield
        finally:
            self._local.when = previous

    def clamp(self, timeout: float | None, error: type[Exception]) -> float | None:
        """`timeout` cut to what is left before the deadline; `error` once none is left."""
        when: float | None = getattr(self._local, "when", None)
        if when is None:
            return timeout
        left = when - time.monotonic()
        if left <= 0:
            raise error("the call's deadline passed")
        return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadlines: Deadlines) -> None:
        self._inner, self._deadlines = inner, deadlines

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadlines.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadlines.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        wait = self._deadlines.clamp(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, wait), self._deadlines)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, deadlines: Deadlines) -> None:
        self._inner, self._deadlines = httpcore.SyncBackend(), deadlines

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        wait = self._deadlines.clamp(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, wait, local_address, socket_options)
        return _Stream(stream, self._deadlines)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        wait = self._deadlines.clamp(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_unix_socket(path, wait, socket_options)
        return _Stream(stream, self._deadlines)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's own transport, its sockets bounded by `deadlines`.

    httpx takes no network backend, so its connection pool is rebuilt here with the same
    defaults and one; the fault tests (a trickling and a silent server) fail if a new httpx
    stops using it.
    """

    def __init__(self, deadlines: Deadlines) -> None:
        super().__init__()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_Backend(deadlines),
        )

"""uvicorn's httptools protocol with the limits a public server needs (docs/adr/0010).

uvicorn bounds none of these itself: no header size or count, no deadline for a request to
arrive, no timer on a connection before its first request, and `limit_concurrency` answers in
plain text only once a request's head has arrived. Each connection gets one timer: idle (fresh,
or between requests), then the request deadline from a request's first byte to its last.
"""

import asyncio
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from api.errors import problem_response
from api.problems import SERVER_BUSY
from api.settings import HttpSettings

log = logging.getLogger(__name__)

# After a refusal, the rest of what the client is sending is read and dropped for at most this
# long before the socket closes: closing with unread data sends a reset, and a reset can destroy
# the refusal in the client's receive buffer before the client has read it.
LINGER_SECONDS = 2.0
RETRY_AFTER_SECONDS = 1
ON_SERVER_STOPPING = "on_server_stopping"
"""Lifespan state key: a callable the server calls when it starts to stop. uvicorn waits for
open responses to end before it shuts the application down; long responses (change streams)
end when called, so the shutdown does not wait on them forever."""
# Descriptors a worker needs besides client connections: database pools, listeners, logs, files.
RESERVED_DESCRIPTORS = 256


@dataclass(frozen=True, kw_only=True)
class HttpLimits:
    max_head_bytes: int
    max_headers: int
    request_timeout_seconds: float
    keep_alive_seconds: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: HttpSettings) -> "HttpLimits":
        return cls(
            max_head_bytes=settings.http_max_head_bytes,
            max_headers=settings.http_max_headers,
            request_timeout_seconds=settings.http_request_timeout_seconds,
            keep_alive_seconds=settings.http_keep_alive_seconds,
            max_connections=settings.http_max_connections,
        )


def server_options(settings: HttpSettings) -> dict[str, Any]:
    """`uvicorn.Config` keywords that put the limits in place (picklable: they go to workers).

    Also lets this process, and the workers it starts, open as many descriptors as the cap needs.
    """
    limits = HttpLimits.from_settings(settings)
    allow_descriptors(limits.max_connections + RESERVED_DESCRIPTORS)
    return {
        "http": partial(LimitedHttpToolsProtocol, limits=limits),
        # The protocol keeps its own idle timer too: uvicorn's is armed only after a response
        # and any byte (a bare CRLF) disarms it.
        "timeout_keep_alive": limits.keep_alive_seconds,
        # Counted by the protocol instead, which answers with a problem document.
        "limit_concurrency": None,
        # The API serves no WebSockets; an upgraded connection would leave these limits behind.
        "ws": "none",
    }


def allow_descriptors(needed: int) -> None:
    """Raise the soft limit on open files towards `needed`, as far as the hard limit allows.

    Past the limit `accept()` fails, so the connection cap's 503 would never be sent; the soft
    limit is often 1024 while the hard one is far higher (Go's runtime raises it the same way).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    allowed = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if allowed > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (allowed, hard))
    if allowed < needed:
        log.warning(
            "open files are limited to %d, fewer than the %d that HTTP_MAX_CONNECTIONS needs: "
            "lower it or raise the limit (ulimit -n)",
            allowed,
            needed,
        )


class HeadTooLarge(Exception):
    """Raised inside a parser callback: the parser stops there and uvicorn calls
    `send_400_response`, which sends the 431 prepared beforehand instead."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        # One timer per connection, for whichever deadline is current; moving a deadline later
        # only assigns a float, so a request costs no timer of its own (see `arm`).
        self.timer: asyncio.TimerHandle | None = None
        self.deadline = 0.0
        self.expire: Callable[[], None] | None = None
        self.receiving = False  # between a request's first byte and its last
        self.in_head = False  # between a request's first byte and the end of its head
        self.requests_begun = 0
        self.read_size = 0
        self.head_reads = 0  # bytes of the reads the head was open in: at least the head's size
        self.head_only_reads = 0  # bytes of the reads that were all head: at most its size
        self.refusal: Response | None = None
        self.lingering = False
        self.close_on_data = False  # refused at once: the first read is its whole request

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            # Refused before its request arrives: a client writes its request before it reads,
            # so it reads this as the answer; the descriptor is free once the request has been
            # read (or after LINGER_SECONDS), not after the idle and request deadlines.
            self.close_on_data = True
            self.refuse(
                problem_response(
                    503,
                    f"The server is at its limit of {self.limits.max_connections} connections; "
                    "retry shortly.",
                    kind=SERVER_BUSY,
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            )
            return
        self.arm(self.limits.keep_alive_seconds, self.close_idle)

    def shutdown(self) -> None:
        on_stopping = self.app_state.get(ON_SERVER_STOPPING)
        if on_stopping is not None:
            on_stopping()
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self.expire = None
        if self.timer is not None:
            self.timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            if self.close_on_data:
                self.transport.close()  # its request is read: closing now sends no reset
            return
        self.read_size = len(data)
        inside = self.requests_begun if self.in_head else -1
        if self.in_head:
            self.head_reads += self.read_size
        super().data_received(data)
        # A read that starts and ends inside one request's head is all head. Counted here, a
        # single huge field is refused after at most one read past the limit; the parser would
        # report it only once complete, after joining every piece of it.
        if inside == self.requests_begun and self.in_head and not self.lingering:
            self.head_only_reads += self.read_size
            if self.head_only_reads > self.limits.max_head_bytes:
                self.refuse(self.head_too_large())

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.receiving = self.in_head = True
        self.requests_begun += 1
        self.head_reads = self.read_size  # this read holds the head's start
        self.head_only_reads = 0
        self.arm(self.limits.request_timeout_seconds, self.request_too_slow)

    def on_headers_complete(self) -> None:
        if len(self.headers) > self.limits.max_headers:
            self.refusal = problem_response(
                431, f"The request has more than {self.limits.max_headers} header fields."
            )
            raise HeadTooLarge
        # Measured exactly only when the reads it came in could have held too much.
        too_large = self.head_reads > self.limits.max_head_bytes
        if too_large and self.head_size() > self.limits.max_head_bytes:
            self.refusal = self.head_too_large()
            raise HeadTooLarge
        self.in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.receiving = False
        self.expire = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The last request read is answered (an earlier one's answer may have started the next).
        if not self.transport.is_closing() and not self.receiving and self.cycle.response_complete:
            self.arm(self.limits.keep_alive_seconds, self.close_idle)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what the parser rejects, as a problem document."""
        self.refuse(self.refusal or problem_response(400, msg))

    # Limits

    def head_size(self) -> int:
        """The request target and header fields, with ": " and CRLF for each field."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def head_too_large(self) -> Response:
        return problem_response(
            431,
            f"The request target and header fields exceed {self.limits.max_head_bytes} bytes.",
        )

    def request_too_slow(self) -> None:
        self.refuse(
            problem_response(
                408,
                "The request did not arrive within "
                f"{self.limits.request_timeout_seconds:g} seconds of its first byte.",
            )
        )

    def close_idle(self) -> None:
        # Nothing of a request has arrived, so there is nothing to answer.
        self.transport.close()

    def arm(self, seconds: float, expire: Callable[[], None]) -> None:
        """Call `expire` in `seconds` unless re-armed or disarmed (`self.expire = None`) first."""
        self.deadline = self.loop.time() + seconds
        self.expire = expire
        if self.timer is None or self.timer.when() > self.deadline:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(self.deadline, self.check_deadline)

    def check_deadline(self) -> None:
        self.timer = None
        if self.expire is None:
            return
        if self.loop.time() < self.deadline:  # moved later since the timer was set
            self.timer = self.loop.call_at(self.deadline, self.check_deadline)
            return
        expire, self.expire = self.expire, None
        expire()

    def refuse(self, response: Response) -> None:
        """Stop reading requests, answer `response` if the client waits for nothing else, close."""
        if self.lingering or self.transport.is_closing():
            return
        self.lingering = True
        self.flow.resume_reading()
        self.arm(LINGER_SECONDS, self.transport.close)
        if self.pipeline or (self.in_head and self.cycle and not self.cycle.response_complete):
            # A pipelining client still waits for an earlier answer: nothing may go before it.
            self.transport.close()
            return
        # The request being received, once its head is complete.
        current = None if self.in_head or self.cycle is None else self.cycle
        if current and current.response_started and not current.response_complete:
            current.keep_alive = False  # uvicorn closes the connection once it is sent
            return
        if current and not current.response_complete:
            # The application may be waiting for this body: it now sees a disconnect, and
            # whatever it sends is dropped.
            current.disconnected = True
            current.message_event.set()
        self.transport.write(self.encode(response))
        if self.transport.can_write_eof():
            self.transport.write_eof()

    def encode(self, response: Response) -> bytes:
        head = [STATUS_LINE[response.status_code]]
        headers = [*self.server_state.default_headers, *response.raw_headers]
        head += [name + b": " + value + b"\r\n" for name, value in headers]
        return b"".join([*head, b"connection: close\r\n\r\n", response.body])

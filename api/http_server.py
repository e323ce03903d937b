"""uvicorn's httptools protocol with the limits a public server needs (docs/adr/0010).

uvicorn bounds none of these itself: no header size or count, no deadline for a request to
arrive, no timer on a connection before its first request, and `limit_concurrency` answers in
plain text only once a request's head has arrived. Each connection gets one timer: idle (fresh,
or between requests), then the request deadline from a request's first byte to its last.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from api.errors import problem_response
from db.settings import Settings

# After a refusal, the rest of what the client is sending is read and dropped for at most this
# long before the socket closes: closing with unread data sends a reset, and a reset can destroy
# the refusal in the client's receive buffer before the client has read it.
LINGER_SECONDS = 2.0
RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True, kw_only=True)
class HttpLimits:
    max_head_bytes: int
    max_headers: int
    request_timeout_seconds: float
    keep_alive_seconds: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "HttpLimits":
        return cls(
            max_head_bytes=settings.http_max_head_bytes,
            max_headers=settings.http_max_headers,
            request_timeout_seconds=settings.http_request_timeout_seconds,
            keep_alive_seconds=settings.http_keep_alive_seconds,
            max_connections=settings.http_max_connections,
        )


def server_options(settings: Settings) -> dict[str, Any]:
    """`uvicorn.Config` keywords that put the limits in place (picklable: they go to workers)."""
    limits = HttpLimits.from_settings(settings)
    return {
        "http": partial(LimitedHttpToolsProtocol, limits=limits),
        # The protocol keeps its own idle timer too: uvicorn's is armed only after a response
        # and any byte (a bare CRLF) disarms it.
        "timeout_keep_alive": limits.keep_alive_seconds,
        # Counted by the protocol instead, which answers with a problem document.
        "limit_concurrency": None,
    }


class HeadTooLarge(Exception):
    """Raised inside a parser callback: the parser stops there and uvicorn calls
    `send_400_response`, which sends the 431 prepared beforehand instead."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.timer: asyncio.TimerHandle | None = None
        self.receiving = False  # between a request's first byte and its last
        self.in_head = False  # between a request's first byte and the end of its head
        self.requests_begun = 0
        self.head_bytes = 0  # request line and header fields, as the parser reports them
        self.head_chunk_bytes = 0  # whole reads inside one head (see data_received)
        self.header_count = 0
        self.over_capacity = False
        self.refusal: Response | None = None
        self.lingering = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Decided on arrival, so the first `max_connections` are served however the rest behave.
        self.over_capacity = len(self.connections) > self.limits.max_connections
        self.set_timer(self.limits.keep_alive_seconds, self.close_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        # A read that starts and ends inside one request's head is all head. Counted here, a
        # single huge field is refused after at most one read past the limit; the parser would
        # only report it once complete, after concatenating every piece of it.
        inside = self.requests_begun if self.in_head else None
        super().data_received(data)
        if self.in_head and inside == self.requests_begun and not self.lingering:
            self.head_chunk_bytes += len(data)
            if self.head_chunk_bytes > self.limits.max_head_bytes:
                self.refuse(self.head_too_large())

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.receiving = self.in_head = True
        self.requests_begun += 1
        self.head_bytes = self.head_chunk_bytes = self.header_count = 0
        self.set_timer(self.limits.request_timeout_seconds, self.request_too_slow)

    def on_url(self, url: bytes) -> None:
        self.count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > self.limits.max_headers:
            self.refusal = problem_response(
                431, f"The request has more than {self.limits.max_headers} header fields."
            )
            raise HeadTooLarge
        self.count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.over_capacity:
            # This connection's only request: the response closes it.
            self.app = problem_response(
                503,
                f"The server is at its limit of {self.limits.max_connections} connections; "
                "retry shortly.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Connection": "close"},
            )
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.receiving = False
        self.cancel_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The last request read is answered (an earlier one's answer may have started the next).
        if not self.transport.is_closing() and not self.receiving and self.cycle.response_complete:
            self.set_timer(self.limits.keep_alive_seconds, self.close_idle)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what the parser rejects, as a problem document."""
        self.refuse(self.refusal or problem_response(400, msg))

    # Limits

    def count_head(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > self.limits.max_head_bytes:
            self.refusal = self.head_too_large()
            raise HeadTooLarge

    def head_too_large(self) -> Response:
        return problem_response(
            431,
            f"The request line and header fields exceed {self.limits.max_head_bytes} bytes.",
        )

    def request_too_slow(self) -> None:
        self.timer = None
        self.refuse(
            problem_response(
                408,
                "The request did not arrive within "
                f"{self.limits.request_timeout_seconds:g} seconds of its first byte.",
            )
        )

    def close_idle(self) -> None:
        # Nothing of a request has arrived, so there is nothing to answer.
        self.timer = None
        self.transport.close()

    def set_timer(self, seconds: float, callback: Callable[[], object]) -> None:
        self.cancel_timer()
        self.timer = self.loop.call_later(seconds, callback)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def may_answer(self) -> bool:
        """No response to an earlier request is owed or under way on this connection."""
        if self.pipeline:
            return False
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return True
        # A cycle in progress is this request's own once its head is complete.
        return not self.in_head and not cycle.response_started

    def refuse(self, response: Response) -> None:
        """Answer `response` if nothing else is owed, then stop reading requests and close."""
        if self.lingering or self.transport.is_closing():
            return
        if self.may_answer():
            if self.cycle is not None and not self.cycle.response_complete:
                # The application may still be waiting for this body: it now sees a disconnect
                # and whatever it sends is dropped.
                self.cycle.disconnected = True
                self.cycle.message_event.set()
            self.transport.write(self.encode(response))
        self.lingering = True
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.set_timer(LINGER_SECONDS, self.transport.close)

    def encode(self, response: Response) -> bytes:
        head = [STATUS_LINE[response.status_code]]
        headers = [*self.server_state.default_headers, *response.raw_headers]
        head += [name + b": " + value + b"\r\n" for name, value in headers]
        return b"".join([*head, b"connection: close\r\n\r\n", response.body])

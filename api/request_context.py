"""What every request gets before routing: an id, HEAD answered as GET, no trailing slash.

- `X-Request-ID`: the client's, when it is a sane token, else a new one; echoed on every response,
  put in every problem body (`request_id`) and in the log line of every failed request.
- `HEAD` runs the `GET` route and sends its status and headers without the body (RFC 9110 9.3.2).
- `/api/alice/tasks/` is served as `/api/alice/tasks`: no redirect to an absolute `http://` URL.
"""

import logging
import random
import re
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("taskapi.requests")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being answered (None outside a request)."""
    return _request_id.get()


def _request_id_of(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _SANE_REQUEST_ID.fullmatch(value):
            given: str = value.decode("ascii")
            return given
    # Unique, not secret: 128 random bits from the process's generator (seeded from the OS, and
    # again in a forked child) as 32 hex digits, without uuid4's system call per request.
    return f"{random.getrandbits(128):032x}"


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id_of(scope)
        _request_id.set(request_id)
        method = scope["method"]
        scope = _without_trailing_slash(scope)
        if method == "HEAD":
            scope = {**scope, "method": "GET"}
        status = 0
        head_sent = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, head_sent
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            elif method == "HEAD" and message["type"] == "http.response.body":
                # The first body message ends the answer, so that a response that never ends
                # (a change stream) ends for HEAD; the route then sees the client leave.
                if head_sent:
                    return
                head_sent = True
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(scope, receive, send_with_id)
        if status >= 400:
            log.log(
                logging.WARNING if status >= 500 else logging.INFO,
                "%s %s -> %s (request %s)",
                method,
                scope["path"],
                status,
                request_id,
            )


def _without_trailing_slash(scope: Scope) -> Scope:
    path: str = scope["path"]
    if len(path) <= 1 or not path.endswith("/"):
        return scope
    raw_path: bytes | None = scope.get("raw_path")
    return {
        **scope,
        "path": path.rstrip("/") or "/",
        "raw_path": None if raw_path is None else (raw_path.rstrip(b"/") or b"/"),
    }

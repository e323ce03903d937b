"""Refuse oversized and non-JSON request bodies before anything reads or parses them."""

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem_response

MAX_BODY_BYTES = 64 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def is_json_media_type(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class RequestLimits:
    """413 when Content-Length exceeds the limit, 415 for a body that is not JSON.

    Bodies sent without a Content-Length (chunked) are counted as they stream, and refused
    with 413 as soon as they pass the limit.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            response = problem_response(
                413, f"The request body is larger than {MAX_BODY_BYTES} bytes."
            )
            await response(scope, receive, send)
            return
        has_body = (length is not None and int(length) > 0) or "transfer-encoding" in headers
        if has_body and not is_json_media_type(headers.get("content-type", "")):
            response = problem_response(
                415, "Send the body as JSON with Content-Type: application/json."
            )
            await response(scope, receive, send)
            return
        await self.app(scope, counting(receive), send)


def counting(receive: Receive) -> Receive:
    received = 0

    async def receive_within_limit() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > MAX_BODY_BYTES:
            raise HTTPException(413, f"The request body is larger than {MAX_BODY_BYTES} bytes.")
        return message

    return receive_within_limit

"""Every error leaves the service here, as application/problem+json (RFC 9457)."""

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import psycopg
import psycopg2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from api.auth.errors import KeysUnavailable, NotAuthenticated, WrongUser
from api.change_stream import StreamsFull, TooManyStreams
from api.etags import etag
from api.problems import (
    CHANGES_GONE,
    IDEMPOTENCY_KEY_REUSED,
    KEYS_UNAVAILABLE,
    MAX_SHOWN,
    SERVER_BUSY,
    TOO_MANY_STREAMS,
    ProblemKind,
    kind_for_status,
    shown,
)
from api.request_context import REQUEST_ID_HEADER, current_request_id
from api.schemas import TaskOut
from commands.errors import TaskNotFound, VersionConflict
from commands.idempotency import IdempotencyKeyInUse, IdempotencyKeyReused
from queries.changes import ChangesGone

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
DATABASE_RETRY_AFTER_SECONDS = 5


MAX_ERRORS = 20
"""A 422 lists at most this many errors and says how many more there were."""


class FieldError(BaseModel):
    model_config = ConfigDict(frozen=True)

    location: str
    field: str
    message: str


class Problem(BaseModel):
    """The error body of every 4xx and 5xx response."""

    type: str = Field(description="Stable URI of the kind of problem; see docs/problems.md.")
    title: str
    status: int
    detail: str
    request_id: str | None = Field(None, description="The X-Request-ID of the request.")
    errors: list[FieldError] | None = None
    current: TaskOut | None = None
    """With 412: the task as it is now, so the client can merge and retry."""


def problem_response(
    status: int,
    detail: str,
    *,
    kind: ProblemKind | None = None,
    headers: Mapping[str, str] | None = None,
    errors: list[FieldError] | None = None,
    current: TaskOut | None = None,
) -> JSONResponse:
    kind = kind or kind_for_status(status)
    request_id = current_request_id()
    body = Problem(
        type=kind.type,
        title=kind.title if kind.status == status else HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        request_id=request_id,
        errors=errors,
    )
    content = body.model_dump(mode="json", exclude_none=True)
    if current is not None:
        content["current"] = current.model_dump(mode="json")
    response_headers = dict(headers or {})
    if request_id is not None:
        response_headers[REQUEST_ID_HEADER] = request_id
    return JSONResponse(
        content, status_code=status, headers=response_headers, media_type=PROBLEM_JSON
    )


def _name(location: str, part: object) -> str:
    name = str(part)
    if location == "header":
        name = "-".join(word.capitalize() for word in name.replace("_", "-").split("-"))
    return name[:MAX_SHOWN]


def _field_error(error: Mapping[str, Any]) -> FieldError:
    location, *path = error["loc"] if error["loc"] else ("request",)
    location = str(location)
    if error["type"] == "json_invalid":
        path = []  # the position is not a field; the message names it
    field = ".".join(_name(location, part) for part in path) or location
    return FieldError(location=location, field=field, message=_message(error, field))


# Patterns are for the OpenAPI document; people are told the rule in words.
_PATTERN_RULES = {
    "user_id": "must be 1-128 characters: letters, digits and -_.@:",
    "Idempotency-Key": "must be 1-255 visible ASCII characters (no spaces)",
}


def _message(error: Mapping[str, Any], field: str) -> str:
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "extra_forbidden" and error["loc"][:1] == ("query",):
        return "is not a known query parameter"
    if kind == "extra_forbidden":
        return "is not an accepted field (unknown, or owned by the server)"
    if kind == "json_invalid":
        position = error["loc"][1] if len(error["loc"]) > 1 else None
        where = "" if position is None else f" at character {position}"
        return f"is not valid JSON{where}: {context.get('error', 'cannot be parsed')}"
    if kind == "string_pattern_mismatch":
        return _PATTERN_RULES.get(field, "contains characters that are not allowed here")
    if kind == "literal_error":
        return f"{shown(error.get('input'))} is not one of {context.get('expected', '')}"
    return str(error["msg"]).removeprefix("Value error, ")


def validation_errors(errors: Sequence[Any]) -> tuple[list[FieldError], int]:
    """One entry per distinct problem, at most MAX_ERRORS, and how many more there were."""
    unique = list(dict.fromkeys(_field_error(error) for error in errors))
    return unique[:MAX_ERRORS], max(0, len(unique) - MAX_ERRORS)


def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors, more = validation_errors(exc.errors())
    fields = ", ".join(dict.fromkeys(e.field for e in errors))
    beyond = f" (and {more} more errors)" if more else ""
    return problem_response(422, f"The request is not valid: {fields}{beyond}.", errors=errors)


def _allowed_methods(request: Request) -> str:
    """Every method the API documents at this path (Starlette names only the first route's)."""
    matching = [
        (template.count("{"), operations)
        for template, operations in request.app.openapi()["paths"].items()
        if compile_path(template)[0].match(request.url.path)
    ]
    # A literal segment wins over a parameter: /tasks/stats is not the task "stats".
    fewest = min((count for count, _ in matching), default=0)
    methods = {
        method.upper() for count, operations in matching if count == fewest for method in operations
    }
    if "GET" in methods:
        methods.add("HEAD")  # answered as GET without the body (api/request_context.py)
    return ", ".join(sorted(methods))


# FastAPI's answer when a body declared as JSON cannot even be decoded (e.g. invalid UTF-8).
_UNPARSEABLE_BODY = "There was an error parsing the body"


def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).description
    headers = dict(exc.headers or {})
    if exc.status_code == 400 and detail == _UNPARSEABLE_BODY:
        message = "is not valid JSON text (it must be UTF-8 encoded JSON)"
        return problem_response(
            422,
            "The request is not valid: body.",
            errors=[FieldError(location="body", field="body", message=message)],
        )
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No resource lives at this URL."
    elif exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
        detail = "This URL does not accept that method; see the Allow header."
    return problem_response(exc.status_code, detail, headers=headers)


def _on_task_not_found(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TaskNotFound)
    return problem_response(404, f"Task {exc.task_id} does not exist.")


def _on_version_conflict(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VersionConflict)
    current = TaskOut.model_validate(exc.current)
    return problem_response(
        412,
        f"Task {current.id} has changed: it is at version {current.version}, which If-Match did"
        " not name. Apply your change to the current task and retry with its ETag.",
        headers={"ETag": etag(current.version)},
        current=current,
    )


def _on_key_in_use(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IdempotencyKeyInUse)
    return problem_response(
        409,
        "A request with this Idempotency-Key is still being processed; retry shortly.",
        headers={"Retry-After": "1"},
    )


def _on_key_reused(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IdempotencyKeyReused)
    message = "was already used for a different request; use a new key for a new request"
    return problem_response(
        422,
        "The Idempotency-Key was used before with a different request.",
        kind=IDEMPOTENCY_KEY_REUSED,
        errors=[FieldError(location="header", field="Idempotency-Key", message=message)],
    )


def _on_changes_gone(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ChangesGone)
    return problem_response(
        410,
        "Deletions after this token are no longer kept. Sync again from the start: call the"
        " change feed without `since`, replace your copy, then continue with its `next`.",
        kind=CHANGES_GONE,
    )


STREAM_RETRY_AFTER_SECONDS = 30


def _on_too_many_streams(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TooManyStreams)
    return problem_response(
        429,
        "This user has as many change streams open on this server as it allows.",
        kind=TOO_MANY_STREAMS,
        headers={"Retry-After": str(STREAM_RETRY_AFTER_SECONDS)},
    )


def _on_streams_full(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StreamsFull)
    return problem_response(
        503,
        "This server holds as many change streams as it allows; retry shortly.",
        kind=SERVER_BUSY,
        headers={"Retry-After": str(STREAM_RETRY_AFTER_SECONDS)},
    )


def _on_not_authenticated(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NotAuthenticated)
    # RFC 6750: name the error only when a token was sent.
    challenge = 'Bearer error="invalid_token"' if exc.token_given else "Bearer"
    return problem_response(
        401, f"Authentication failed: {exc.reason}.", headers={"WWW-Authenticate": challenge}
    )


def _on_wrong_user(_request: Request, _exc: Exception) -> JSONResponse:
    return problem_response(403, "The bearer token belongs to another user than the path's.")


def _on_keys_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.error("authentication keys unavailable: %s", exc)
    return problem_response(
        503,
        "The token issuer's keys cannot be fetched; try again shortly.",
        kind=KEYS_UNAVAILABLE,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def _on_database_error(_: Request, exc: Exception) -> JSONResponse:
    log.error("database error: %s", exc.__class__.__name__, exc_info=exc)
    return problem_response(
        503,
        "The database is unavailable; try again shortly.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def _on_unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error (request %s)", current_request_id(), exc_info=exc)
    return problem_response(500, "The server failed to answer this request.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(TaskNotFound, _on_task_not_found)
    app.add_exception_handler(VersionConflict, _on_version_conflict)
    app.add_exception_handler(IdempotencyKeyInUse, _on_key_in_use)
    app.add_exception_handler(IdempotencyKeyReused, _on_key_reused)
    app.add_exception_handler(ChangesGone, _on_changes_gone)
    app.add_exception_handler(TooManyStreams, _on_too_many_streams)
    app.add_exception_handler(StreamsFull, _on_streams_full)
    app.add_exception_handler(NotAuthenticated, _on_not_authenticated)
    app.add_exception_handler(WrongUser, _on_wrong_user)
    app.add_exception_handler(KeysUnavailable, _on_keys_unavailable)
    # Lost connections, an unreachable server, timeouts: the client may retry later.
    driver_errors: tuple[type[Exception], ...] = (
        OperationalError,  # the write side: psycopg2 through SQLAlchemy
        InterfaceError,
        psycopg.OperationalError,  # the query side: psycopg 3 (db/reads.py)
        psycopg.InterfaceError,
        psycopg2.OperationalError,  # and its inline reads: psycopg2, no SQLAlchemy
        psycopg2.InterfaceError,
    )
    for driver_error in driver_errors:
        app.add_exception_handler(driver_error, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected_error)

"""Every error leaves the service here, as application/problem+json (RFC 9457)."""

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from commands.errors import TaskNotFound

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
DATABASE_RETRY_AFTER_SECONDS = 5


class FieldError(BaseModel):
    location: str
    field: str
    message: str


class Problem(BaseModel):
    """The error body of every 4xx and 5xx response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


def problem_response(
    status: int,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    errors: list[FieldError] | None = None,
) -> JSONResponse:
    body = Problem(title=HTTPStatus(status).phrase, status=status, detail=detail, errors=errors)
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        headers=dict(headers or {}),
        media_type=PROBLEM_JSON,
    )


def _field_error(error: Mapping[str, Any]) -> FieldError:
    location, *path = error["loc"] if error["loc"] else ("request",)
    return FieldError(
        location=str(location),
        field=".".join(str(part) for part in path) or str(location),
        message=_message(error),
    )


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden" and error["loc"][:1] == ("query",):
        return "is not a known query parameter"
    if kind == "extra_forbidden":
        return "is not an accepted field (unknown, or owned by the server)"
    if kind == "json_invalid":
        return "the body is not valid JSON: " + str(error.get("ctx", {}).get("error", ""))
    return str(error["msg"]).removeprefix("Value error, ")


def _validation_errors(errors: Sequence[Any]) -> list[FieldError]:
    return [_field_error(error) for error in errors]


def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc.errors())
    fields = ", ".join(sorted({e.field for e in errors}))
    return problem_response(422, f"The request is not valid: {fields}.", errors=errors)


def _allowed_methods(request: Request) -> str:
    """Every method the API documents at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        pattern, _, _ = compile_path(template)
        if pattern.match(request.url.path):
            methods.update(method.upper() for method in operations)
    return ", ".join(sorted(methods))


def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).description
    headers = dict(exc.headers or {})
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No resource lives at this URL."
    elif exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
        detail = "This URL does not accept that method; see the Allow header."
    return problem_response(exc.status_code, detail, headers=headers)


def _on_task_not_found(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TaskNotFound)
    return problem_response(404, f"Task {exc.task_id} does not exist.")


def _on_database_error(_: Request, exc: Exception) -> JSONResponse:
    log.error("database error: %s", exc.__class__.__name__, exc_info=exc)
    return problem_response(
        503,
        "The database is unavailable; try again shortly.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def _on_unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return problem_response(500, "The server failed to answer this request.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(TaskNotFound, _on_task_not_found)
    # Lost connections, an unreachable server, timeouts: the client may retry later.
    app.add_exception_handler(OperationalError, _on_database_error)
    app.add_exception_handler(InterfaceError, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected_error)

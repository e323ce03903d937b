"""The OpenAPI document, made to say exactly what the running service does.

It is the same document whatever the authentication mode, so that a client generated on a
developer's machine (AUTH_MODE=none) matches production.
"""

from typing import Any

from fastapi import FastAPI

from api.errors import PROBLEM_JSON
from api.request_context import REQUEST_ID_HEADER

_PROBLEM = {"schema": {"$ref": "#/components/schemas/Problem"}}
_REQUEST_ID = {
    "description": "The request's id (the client's X-Request-ID if it sent a sane one); quote it"
    " when reporting a problem.",
    "schema": {"type": "string"},
}
_RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "string"},
}


def _describe_response(status: str, response: dict[str, Any]) -> None:
    headers = response.setdefault("headers", {})
    headers[REQUEST_ID_HEADER] = _REQUEST_ID
    if status in ("409", "429", "503"):
        headers["Retry-After"] = _RETRY_AFTER
    if status[0] in "45":
        response["content"] = {PROBLEM_JSON: _PROBLEM}


def _optional_body_not_null(operation: dict[str, Any]) -> None:
    """An optional body is declared optional (`required: false`), not as "X or null": a
    generated client would send a JSON null for a body the caller left out."""
    body = operation.get("requestBody")
    if body is None or body.get("required"):
        return
    for media in body.get("content", {}).values():
        options = media.get("schema", {}).get("anyOf", [])
        if len(options) == 2 and {"type": "null"} in options:
            media["schema"] = next(option for option in options if option != {"type": "null"})


def describe_service(app: FastAPI) -> None:
    """Every 4xx/5xx response is `Problem` as application/problem+json; every response names
    the headers it carries."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                _optional_body_not_null(operation)
                for status, response in operation.get("responses", {}).items():
                    _describe_response(status, response)
        components = schema.get("components", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

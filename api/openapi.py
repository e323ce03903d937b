"""The OpenAPI document, made to say exactly what the running service does."""

from typing import Any

from fastapi import FastAPI

from api.errors import PROBLEM_JSON

_PROBLEM = {"schema": {"$ref": "#/components/schemas/Problem"}}


def describe_service(app: FastAPI, *, authenticated: bool) -> None:
    """Every 4xx/5xx response is `Problem` as application/problem+json; and when authentication
    is off (AUTH_MODE=none), no operation claims to need a bearer token."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    if status[0] in "45":
                        response["content"] = {PROBLEM_JSON: _PROBLEM}
                if not authenticated:
                    operation.pop("security", None)
                    operation.get("responses", {}).pop("401", None)
                    operation.get("responses", {}).pop("403", None)
        components = schema.get("components", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(unused, None)
        if not authenticated:
            components.pop("securitySchemes", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

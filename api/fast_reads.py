"""The two commonest reads, answered without FastAPI's routing and dependency solving.

`GET /api/{user_id}/tasks` and `GET /api/{user_id}/tasks/{task_id}` are most of a task app's
traffic, and FastAPI spends more CPU finding their route and solving their dependencies and query
model than the reads themselves take (docs/PERFORMANCE.md). This middleware answers them with
the same parts the routes use: the same authenticator, the same `ListParams` model, the same
query functions and rendering (`list_answer`, `task_read_answer` in api/routers/tasks.py). The
routes stay, and the OpenAPI document with them.

Whatever it is not sure of goes on to FastAPI untouched: a token that needs keys fetched or is
refused, a query parameter that is unknown, repeated or invalid, an id out of range. FastAPI
then answers exactly as it would have, errors included. An error raised while answering is
rendered by the app's own handler for it (api/errors.py), as FastAPI would. See ADR 0017.
"""

import inspect
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import ValidationError
from starlette.datastructures import URL, Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth.errors import AuthError
from api.auth.tokens import Authenticator
from api.clock import current_time
from api.list_params import ListParams
from api.routers.tasks import list_answer, task_read_answer
from api.schemas import TASK_ID_MAX, USER_ID_PATTERN

_TASKS_PATH = re.compile(
    "/api/(" + USER_ID_PATTERN.removeprefix("^").removesuffix("$") + ")/tasks(?:/([1-9][0-9]*))?"
)
_LIST_FIELDS = frozenset(ListParams.model_fields)
_REPEATABLE = frozenset({"priority", "tag"})
"""Sequence-typed parameters: FastAPI hands them to the model as the list of their repetitions."""


class FastReads:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = _TASKS_PATH.fullmatch(scope["path"])
            if match is not None:
                response = await _answer(scope, match[1], match[2])
                if response is not None:
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


async def _answer(scope: Scope, path_user: str, task_id: str | None) -> Response | None:
    """The answer, or None to leave the request to FastAPI."""
    app: FastAPI = scope["app"]
    headers = Headers(scope=scope)
    user_id = _caller(app.state.authenticator, path_user, headers.get("authorization"))
    if user_id is None:
        return None
    reader = app.state.readers.as_user(user_id)
    try:
        if task_id is None:
            params = _list_params(scope["query_string"])
            if params is None:
                return None
            now = await _now(app)
            return await list_answer(
                reader, user_id, params, now, app.state.cursors, URL(scope=scope)
            )
        if int(task_id) > TASK_ID_MAX:
            return None
        return await task_read_answer(reader, user_id, int(task_id), headers.get("if-none-match"))
    except Exception as exc:
        handler = _handler_for(app, exc)
        if handler is None:
            raise  # as from a route: ServerErrorMiddleware logs it and answers 500
        answer = handler(Request(scope), exc)
        return await answer if inspect.isawaitable(answer) else answer  # type: ignore[no-any-return]


def _caller(authenticator: Authenticator, path_user: str, authorization: str | None) -> str | None:
    """The caller, when the token can be checked without I/O and is the path user's own."""
    # As FastAPI's HTTPBearer(auto_error=False) reads the header.
    scheme, credentials = get_authorization_scheme_param(authorization)
    token = credentials if authorization and scheme.lower() == "bearer" and credentials else None
    try:
        return authenticator.authorize_without_io(path_user, token)
    except AuthError:
        return None


def _list_params(query_string: bytes) -> ListParams | None:
    values: dict[str, Any] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name not in _LIST_FIELDS:
            return None
        if name in _REPEATABLE:
            values.setdefault(name, []).append(value)
        elif name in values:
            return None
        else:
            values[name] = value
    try:
        return ListParams.model_validate(values)
    except ValidationError:
        return None


async def _now(app: FastAPI) -> datetime:
    """The service's clock, or the one a test put in its place."""
    clock: Callable[[], Any] = app.dependency_overrides.get(current_time, current_time)
    now = clock()
    return await now if inspect.isawaitable(now) else now  # type: ignore[no-any-return]


def _handler_for(app: FastAPI, exc: Exception) -> Callable[[Request, Exception], Any] | None:
    """The app's handler for `exc`'s class or its nearest base, short of `Exception` itself."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        handler = app.exception_handlers.get(cls)
        if handler is not None:
            return handler
    return None

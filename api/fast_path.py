"""The commonest requests, answered without FastAPI's routing and dependency solving.

Listing, reading, creating and completing tasks, and polling the change feed, are most of a
task app's traffic, and FastAPI
spends more CPU finding their route and solving their dependencies, parameters and body than
the work itself takes (docs/PERFORMANCE.md). This middleware calls those route functions itself
(api/routers/tasks.py), with arguments checked as their declarations ask: the same
authenticator, `ListParams`, `TaskCreate`, `CompletionBody`, header rules and read and write
sides. The routes stay registered, and the OpenAPI document with them.

Whatever it is not sure of goes on to FastAPI untouched (a body it has read is handed over as
it came): a token that needs keys fetched or is refused, a query parameter that is unknown,
repeated or invalid, a body or header the model refuses, an id out of range. FastAPI then
answers exactly as it would have, errors included. An error raised while answering is rendered
by the app's own handler for it (api/errors.py), as FastAPI's would be. See ADR 0017.
"""

import inspect
import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth.errors import AuthError
from api.clock import current_time
from api.consistency import position_of
from api.list_params import ListParams
from api.responses import CONSISTENCY_TOKEN_HEADER
from api.routers import changes as change_routes
from api.routers import tasks as routes
from api.schemas import (
    TASK_ID_MAX,
    USER_ID_PATTERN,
    ChangesQuery,
    CompletionBody,
    TaskCreate,
)
from db.reads import Reader, Readers
from db.scope import WriteSessions

_TASKS_PATH = re.compile(
    "/api/("
    + USER_ID_PATTERN.removeprefix("^").removesuffix("$")
    + ")/(?:tasks(?:/([1-9][0-9]*)(/complete)?)?|(changes))"
)
_REPEATABLE = frozenset({"priority", "tag"})
"""Sequence-typed parameters: FastAPI hands them to the model as the list of their repetitions."""
_NONE: frozenset[str] = frozenset()
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # the header's declared rules
Model = TypeVar("Model", bound=BaseModel)


class Call:
    """One request on its way through the fast path."""

    def __init__(self, scope: Scope, receive: Receive, path_user: str, task_id: str | None):
        self.scope = scope
        self.app: FastAPI = scope["app"]
        self.headers = Headers(scope=scope)
        self.path_user = path_user
        self.task_id = None if task_id is None else int(task_id)
        self._receive = receive
        self._body: bytes | None = None

    async def body(self) -> bytes:
        if self._body is None:
            chunks = []
            while True:
                message = await self._receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            self._body = b"".join(chunks)
        return self._body

    def replay(self) -> Receive:
        """`receive` for FastAPI: the body as it came, if it was read here."""
        if self._body is None:
            return self._receive
        pending = [{"type": "http.request", "body": self._body, "more_body": False}]

        async def receive() -> Message:
            return pending.pop() if pending else await self._receive()

        return receive

    def caller(self) -> str | None:
        """The path user, when the token can be checked without I/O and is theirs."""
        authorization = self.headers.get("authorization")
        # As FastAPI's HTTPBearer(auto_error=False) reads the header.
        scheme, credentials = get_authorization_scheme_param(authorization)
        bearer = authorization and scheme.lower() == "bearer" and credentials
        try:
            known: str | None = self.app.state.authenticator.authorize_without_io(
                self.path_user, credentials if bearer else None
            )
        except AuthError:
            return None
        return known

    def reader(self, user_id: str) -> Reader | None:
        """The caller's reader, after the position their X-Consistency-Token names (None: a
        malformed token, which FastAPI refuses)."""
        token = self.headers.get(CONSISTENCY_TOKEN_HEADER)
        try:
            after = None if token is None else position_of(token)
        except ValueError:
            return None
        readers: Readers = self.app.state.readers
        return readers.as_user(user_id, after)

    def writes(self) -> WriteSessions:
        writes: WriteSessions = self.app.state.writes
        return writes

    def idempotency_key(self) -> tuple[bool, str | None]:
        """(whether the header is acceptable, its value)."""
        key = self.headers.get("idempotency-key")
        return key is None or _IDEMPOTENCY_KEY.fullmatch(key) is not None, key

    async def json_body(self, model: type[Model]) -> Model | None:
        """The body as `model`, when it is JSON the model accepts."""
        if self.headers.get("content-type") != "application/json":
            return None
        try:
            return model.model_validate(json.loads(await self.body()))
        except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError included
            return None

    async def answer_with(self, answer: "Answer") -> Response | None:
        user_id = self.caller()
        if user_id is None:
            return None
        try:
            return await answer(self, user_id)
        except Exception as exc:
            handler = _handler_for(self.app, exc)
            if handler is None:
                raise  # as from a route: ServerErrorMiddleware logs it and answers 500
            response = handler(Request(self.scope), exc)
            return await response if inspect.isawaitable(response) else response  # type: ignore[no-any-return]


Answer = Callable[[Call, str], Awaitable[Response | None]]


async def _list(call: Call, user_id: str) -> Response | None:
    params = _query(ListParams, call.scope["query_string"], _REPEATABLE)
    reader = call.reader(user_id)
    if params is None or reader is None:
        return None
    return await routes.list_tasks(
        user_id=user_id,
        reader=reader,
        params=params,
        request=Request(call.scope),
        now=await _now(call.app),
    )


async def _read(call: Call, user_id: str) -> Response | None:
    assert call.task_id is not None
    reader = call.reader(user_id)
    if call.task_id > TASK_ID_MAX or reader is None:
        return None
    return await routes.read_task(
        user_id=user_id,
        task_id=call.task_id,
        reader=reader,
        if_none_match=call.headers.get("if-none-match"),
    )


async def _create(call: Call, user_id: str) -> Response | None:
    acceptable, key = call.idempotency_key()
    body = await call.json_body(TaskCreate) if acceptable else None
    if body is None:
        return None
    return await run_in_threadpool(
        routes.create_task,
        user_id=user_id,
        body=body,
        writes=call.writes(),
        request=Request(call.scope),
        idempotency_key=key,
    )


async def _complete(call: Call, user_id: str) -> Response | None:
    assert call.task_id is not None
    acceptable, key = call.idempotency_key()
    if not acceptable or call.task_id > TASK_ID_MAX:
        return None
    body = None
    if await call.body():
        body = await call.json_body(CompletionBody)
        if body is None:
            return None
    return await run_in_threadpool(
        routes.complete_task,
        user_id=user_id,
        task_id=call.task_id,
        writes=call.writes(),
        request=Request(call.scope),
        body=body,
        if_match=call.headers.get("if-match"),
        idempotency_key=key,
    )


async def _changes(call: Call, user_id: str) -> Response | None:
    params = _query(ChangesQuery, call.scope["query_string"], _NONE)
    if params is None:
        return None
    return await change_routes.list_changes(
        user_id=user_id,
        reader=call.app.state.readers.primary_as_user(user_id),
        params=params,
        request=Request(call.scope),
    )


# (method, names a task, ends in /complete, is the change feed) -> the answer
_ANSWERS: dict[tuple[str, bool, bool, bool], Answer] = {
    ("GET", False, False, False): _list,
    ("GET", True, False, False): _read,
    ("POST", False, False, False): _create,
    ("PATCH", True, True, False): _complete,
    ("GET", False, False, True): _changes,
}


class FastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            match = _TASKS_PATH.fullmatch(scope["path"])
            if match is not None:
                kind = (scope["method"], *(match[n] is not None for n in (2, 3, 4)))
                answer = _ANSWERS.get(kind)
                if answer is not None:
                    call = Call(scope, receive, match[1], match[2])
                    response = await call.answer_with(answer)
                    if response is not None:
                        await response(scope, receive, send)
                        return
                    receive = call.replay()
        await self.app(scope, receive, send)


def _query(model: type[Model], query_string: bytes, repeatable: frozenset[str]) -> Model | None:
    """The query string as `model`, when the model accepts it as FastAPI would hand it over."""
    values: dict[str, Any] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name not in model.model_fields:
            return None
        if name in repeatable:
            values.setdefault(name, []).append(value)
        elif name in values:
            return None
        else:
            values[name] = value
    try:
        return model.model_validate(values)
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

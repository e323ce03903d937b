"""HTTP routes for tasks: parse, build a command or call a query, respond."""

import re
from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qsl, quote_plus, urlencode

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response, status
from pydantic import BaseModel, WithJsonSchema
from starlette.types import Scope

from api.clock import Now
from api.consistency import token_of
from api.cursors import CursorCodec, binding
from api.deps import CurrentUser, ReaderDep, WritesDep
from api.etags import (
    IF_MATCH_SCHEMA,
    IF_NONE_MATCH_SCHEMA,
    etag,
    if_match_versions,
    none_match,
)
from api.list_params import ListParams
from api.responses import (
    CONDITIONAL,
    CONSISTENCY_TOKEN_HEADER,
    ETAG,
    IDEMPOTENT,
    IDEMPOTENT_REPLAYED,
    LOCATION,
    NEXT_PAGE_LINK,
    NOT_FOUND,
    TASK_PROBLEMS,
    WRITTEN,
    task_answer,
)
from api.schemas import TASK_ID_MAX, CompletionBody, TaskCreate, TaskOut, TaskUpdate
from api.task_json import task_json, tasks_json
from commands.dispatch import Command, dispatch, dispatch_once
from commands.errors import TaskNotFound
from commands.idempotency import IdempotencyKey, fingerprint
from commands.tasks import (
    CreateTask,
    DeleteTask,
    SetTaskCompletion,
    ToggleTask,
    UpdateTask,
)
from db.models import Task
from db.reads import Reader
from db.scope import COMMITTED_AT
from queries import tasks as queries
from queries.tasks import Position, TaskRow

router = APIRouter(prefix="/api/{user_id}/tasks", tags=["tasks"], responses=TASK_PROBLEMS)

TaskId = Annotated[int, Path(ge=1, le=TASK_ID_MAX, description="The task's id.")]
IfMatch = Annotated[
    str | None,
    Header(description='Make the write conditional on the task\'s ETag (e.g. `"3"`, with quotes).'),
    WithJsonSchema(IF_MATCH_SCHEMA),
]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Makes the write safe to retry: a repeat within 24 hours replays the answer.",
    ),
]


def written() -> dict[str, str]:
    """The consistency token of this request's write: send it back to read your writes."""
    position = COMMITTED_AT.get()
    return {} if position is None else {CONSISTENCY_TOKEN_HEADER: token_of(position)}


def task_response(task: Task, status_code: int = 200, *, replayed: bool = False) -> Response:
    """The task as JSON with its ETag (and Location when created) and the consistency token;
    a replay says it is one."""
    out = TaskOut.model_validate(task)
    headers = {"ETag": etag(out.version), **written()}
    if status_code == status.HTTP_201_CREATED:
        headers["Location"] = f"/api/{out.user_id}/tasks/{out.id}"
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(out.model_dump_json(), status_code, headers, media_type="application/json")


def run(
    cmd: Command,
    writes: WritesDep,
    request: Request,
    key: str | None,
    body: BaseModel | None,
    status_code: int = 200,
) -> Response:
    """Dispatch, once per Idempotency-Key when one was sent, and answer with the task."""
    if key is None:
        return task_response(dispatch(cmd, writes), status_code)
    sent = "" if body is None else body.model_dump_json(exclude_unset=True)
    idempotency = IdempotencyKey(
        user_id=cmd.user_id,
        key=key,
        fingerprint=fingerprint(request.method, request.url.path, sent),
    )
    task, replayed = dispatch_once(cmd, writes, idempotency)
    return task_response(task, status_code, replayed=replayed)


async def read_page(
    reader: Reader, user_id: str, params: ListParams, now: datetime, cursors: CursorCodec
) -> tuple[list[TaskRow], str | None]:
    """One page of the list, and the cursor of the next page when more rows remain."""
    bound_to = binding(user_id, params.bound_parameters())
    after = None if params.cursor is None else cursors.decode(params.cursor, bound_to)
    rows = await queries.list_tasks(
        reader,
        user_id=user_id,
        status=params.status,
        sort=params.sort,
        order=params.direction(),
        filters=params.filters(now),
        limit=params.limit + 1,  # one more than asked: is there a next page?
        after=after,
    )
    if len(rows) <= params.limit:
        return rows, None
    last = rows[params.limit - 1]
    assert last.sort_key is not None
    return rows[: params.limit], cursors.encode(Position(key=last.sort_key, id=last.id), bound_to)


# `name=value` pairs that `urlencode` writes back as they are: such a query is kept as sent.
_PLAIN_QUERY = re.compile(r"(?:[\w.~-]+=[\w.~-]*(?:&|$))*", re.ASCII)


def next_link(scope: Scope, cursor: str) -> str:
    """An RFC 8288 Link to the next page: this request's path and query, its `cursor` replaced
    by the new one at the end (what Starlette's `URL.include_query_params` gives, without
    building and splitting the whole URL twice)."""
    path = scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    query = scope.get("query_string", b"").decode()
    if _PLAIN_QUERY.fullmatch(query):
        kept = [pair for pair in query.split("&") if pair and not pair.startswith("cursor=")]
        return f'<{path}?{"&".join([*kept, "cursor=" + quote_plus(cursor)])}>; rel="next"'
    pairs = [pair for pair in parse_qsl(query, keep_blank_values=True) if pair[0] != "cursor"]
    return f'<{path}?{urlencode([*pairs, ("cursor", cursor)])}>; rel="next"'


@router.get(
    "",
    response_model=list[TaskOut],
    operation_id="listTasks",
    summary="List the user's tasks",
    responses={200: {"headers": {"Link": NEXT_PAGE_LINK}}},
)
async def list_tasks(
    user_id: CurrentUser,
    reader: ReaderDep,
    params: Annotated[ListParams, Query()],
    request: Request,
    now: Now,
) -> Response:
    """At most `limit` tasks (a JSON array); `Link: <...>; rel="next"` when more remain."""
    rows, cursor = await read_page(reader, user_id, params, now, request.app.state.cursors)
    headers = None if cursor is None else {"Link": next_link(request.scope, cursor)}
    return Response(tasks_json(rows), headers=headers, media_type="application/json")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskOut,
    responses={
        **IDEMPOTENT,
        **task_answer(
            201, Location=LOCATION, **{"Idempotent-Replayed": IDEMPOTENT_REPLAYED}, **WRITTEN
        ),
    },
    operation_id="createTask",
    summary="Create a task",
)
def create_task(
    user_id: CurrentUser,
    body: TaskCreate,
    writes: WritesDep,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    cmd = CreateTask(
        user_id=user_id,
        title=body.title,
        description=body.description,
        due_date=body.due_date,
        due_at=body.due_at,
        priority=body.priority,
        tags=tuple(body.tags),
    )
    return run(cmd, writes, request, idempotency_key, body, status.HTTP_201_CREATED)


@router.get(
    "/{task_id}",
    response_model=TaskOut,
    responses={
        **NOT_FOUND,
        **task_answer(200),
        304: {"description": "If-None-Match named the current version", "headers": {"ETag": ETAG}},
    },
    operation_id="readTask",
    summary="Read a task",
)
async def read_task(
    user_id: CurrentUser,
    task_id: TaskId,
    reader: ReaderDep,
    if_none_match: Annotated[
        str | None,
        Header(description='Answer 304 if the task is still at this ETag (e.g. `"3"`).'),
        WithJsonSchema(IF_NONE_MATCH_SCHEMA),
    ] = None,
) -> Response:
    row = await queries.get_task(reader, user_id=user_id, task_id=task_id)
    if row is None:
        raise TaskNotFound(task_id)
    headers = {"ETag": etag(row.version)}
    if none_match(if_none_match, row.version):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(task_json(row), headers=headers, media_type="application/json")


# PUT and PATCH (a JSON Merge Patch of our flat task) are the same partial update (ADR 0004).
@router.put(
    "/{task_id}",
    response_model=TaskOut,
    responses={**CONDITIONAL, **task_answer(200, **WRITTEN)},
    operation_id="updateTask",
    summary="Update a task",
)
@router.patch(
    "/{task_id}",
    response_model=TaskOut,
    responses={**CONDITIONAL, **task_answer(200, **WRITTEN)},
    operation_id="patchTask",
    summary="Change some fields (JSON Merge Patch, RFC 7396)",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/merge-patch+json": {
                    "schema": {"$ref": "#/components/schemas/TaskUpdate"}
                }
            }
        }
    },
)
def update_task(
    user_id: CurrentUser,
    task_id: TaskId,
    body: TaskUpdate,
    writes: WritesDep,
    if_match: IfMatch = None,
) -> Response:
    cmd = UpdateTask(
        user_id=user_id,
        task_id=task_id,
        if_version=if_match_versions(if_match),
        changes=body.changes(),
    )
    return task_response(dispatch(cmd, writes))


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**CONDITIONAL, 204: {"headers": WRITTEN}},
    operation_id="deleteTask",
    summary="Delete a task",
)
def delete_task(
    user_id: CurrentUser, task_id: TaskId, writes: WritesDep, if_match: IfMatch = None
) -> Response:
    cmd = DeleteTask(user_id=user_id, task_id=task_id, if_version=if_match_versions(if_match))
    dispatch(cmd, writes)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=written())


@router.patch(
    "/{task_id}/complete",
    response_model=TaskOut,
    responses={
        **CONDITIONAL,
        **IDEMPOTENT,
        **task_answer(200, **{"Idempotent-Replayed": IDEMPOTENT_REPLAYED}, **WRITTEN),
    },
    operation_id="completeTask",
    summary='Toggle completion, or set it with a body {"completed": true|false}',
)
def complete_task(
    user_id: CurrentUser,
    task_id: TaskId,
    writes: WritesDep,
    request: Request,
    body: Annotated[CompletionBody | None, Body()] = None,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    versions = if_match_versions(if_match)
    cmd: Command = (
        ToggleTask(user_id=user_id, task_id=task_id, if_version=versions)
        if body is None
        else SetTaskCompletion(
            user_id=user_id, task_id=task_id, if_version=versions, completed=body.completed
        )
    )
    return run(cmd, writes, request, idempotency_key, body)

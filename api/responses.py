"""What the routes declare about their responses in OpenAPI: problems, headers and links.

Every header the service sends is declared on the responses that carry it, so generated clients
can read it. `X-Request-ID` (every response) and `Retry-After` (409, 429, 503) are added to every
operation by api/openapi.py.
"""

from typing import Any

from api.errors import Problem

Responses = dict[int | str, dict[str, Any]]


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


ETAG = _header('The task\'s version as a strong entity tag, e.g. `"3"`; send it in If-Match.')
LOCATION = _header("The new task's URL, relative to the service.")
NEXT_PAGE_LINK = _header('When more tasks remain: `<url of the next page>; rel="next"`.')
IDEMPOTENT_REPLAYED = _header(
    "`true` when this is the stored answer to an earlier request with the same Idempotency-Key."
)
CONSISTENCY_TOKEN_HEADER = "X-Consistency-Token"  # noqa: S105 (a header name, no secret)
CONSISTENCY_TOKEN = _header(
    "Where the database was once this write committed (an opaque token, e.g. `1A2B3C4D`), sent"
    " when the service reads from replicas. Send it back as `X-Consistency-Token` on the reads"
    " that must see this write: a read without it may be answered by a replica that has not"
    " caught up yet."
)
WRITTEN = {CONSISTENCY_TOKEN_HEADER: CONSISTENCY_TOKEN}
"""The headers of every successful write's answer, beyond the task's own."""

READ_PROBLEMS: Responses = {
    401: {"model": Problem, "description": "Missing or invalid bearer token"},
    403: {"model": Problem, "description": "The token belongs to another user"},
    422: {"model": Problem, "description": "Invalid path, query or header"},
    503: {"model": Problem, "description": "Database unavailable; see Retry-After"},
}
TASK_PROBLEMS: Responses = {
    **READ_PROBLEMS,
    413: {"model": Problem, "description": "Body larger than 64 KiB"},
    415: {"model": Problem, "description": "Body is not JSON"},
    422: {"model": Problem, "description": "Invalid path, query, header or body"},
}
NOT_FOUND: Responses = {404: {"model": Problem, "description": "No such task for this user"}}
CONDITIONAL: Responses = {
    **NOT_FOUND,
    412: {
        "model": Problem,
        "description": "If-Match named a stale version; body has `current`",
        "headers": {"ETag": ETAG},
    },
}
IDEMPOTENT: Responses = {
    409: {"model": Problem, "description": "A request with this Idempotency-Key is running"},
}

# OpenAPI links: how a client (or a stateful fuzzer) goes from a task it got to the next call.
_TASK_LINK_PARAMETERS = {
    "user_id": "$request.path.user_id",
    "task_id": "$response.body#/id",
}
_CONDITIONAL_LINK_PARAMETERS = {**_TASK_LINK_PARAMETERS, "header.If-Match": "$response.header.ETag"}
TASK_LINKS = {
    "ReadTask": {"operationId": "readTask", "parameters": _TASK_LINK_PARAMETERS},
    "UpdateTask": {"operationId": "updateTask", "parameters": _CONDITIONAL_LINK_PARAMETERS},
    "PatchTask": {"operationId": "patchTask", "parameters": _CONDITIONAL_LINK_PARAMETERS},
    "CompleteTask": {"operationId": "completeTask", "parameters": _CONDITIONAL_LINK_PARAMETERS},
    "DeleteTask": {"operationId": "deleteTask", "parameters": _CONDITIONAL_LINK_PARAMETERS},
}


def task_answer(status_code: int, **headers: dict[str, Any]) -> Responses:
    """A response that carries one task: its ETag, these headers, and the links onwards."""
    return {status_code: {"links": TASK_LINKS, "headers": {"ETag": ETAG, **headers}}}

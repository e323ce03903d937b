"""HTTP routes of the change feed: a page of changes, and the same as a live event stream."""

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from api.change_stream import ChangeStreams, feed_json
from api.change_tokens import ChangeTokens
from api.deps import CurrentUser, PrimaryReaderDep
from api.errors import Problem
from api.responses import READ_PROBLEMS
from api.schemas import CHANGE_TOKEN_MAX, ChangeFeed, ChangesQuery, StreamQuery
from api.tombstones import TombstonePurger
from queries.changes import read_changes

router = APIRouter(
    prefix="/api/{user_id}/changes",
    tags=["changes"],
    responses={
        **READ_PROBLEMS,
        410: {"model": Problem, "description": "The token is too old: sync from the start"},
    },
)

LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        min_length=1,
        max_length=CHANGE_TOKEN_MAX,
        description="The `id` of the last event received; the stream resumes after it.",
    ),
]
EVENT_STREAM_DOC = {
    "description": "Server-Sent Events: a `retry:` line, then one event per change (`data` is"
    " a change object as in the feed, `TaskUpserted` or `TaskDeleted`; `id` is the token after"
    " it), and a `: heartbeat` comment when idle.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def purge_after(request: Request, user_id: str) -> BackgroundTask | None:
    """Purge the user's expired tombstones once the answer is sent, when it is due."""
    purger: TombstonePurger = request.app.state.tombstone_purger
    return BackgroundTask(purger.purge, user_id) if purger.due(user_id) else None


@router.get(
    "",
    response_model=ChangeFeed,
    operation_id="listChanges",
    summary="What changed since a token: created, changed and deleted tasks",
)
async def list_changes(
    user_id: CurrentUser,
    reader: PrimaryReaderDep,
    params: Annotated[ChangesQuery, Query()],
    request: Request,
) -> Response:
    """Without `since`: the user's current tasks. With it: each task created, changed or deleted
    after it, once, in its latest state, in commit order. Call again with `next` while
    `has_more`; later, call with the last `next` to get what changed since."""
    tokens: ChangeTokens = request.app.state.change_tokens
    since = (
        None
        if params.since is None
        else tokens.decode(params.since, user_id, location="query", field="since")
    )
    page = await read_changes(reader, user_id=user_id, since=since, limit=params.limit)
    body = feed_json(page, tokens.encode(user_id, page.next))
    return Response(body, media_type="application/json", background=purge_after(request, user_id))


@router.get(
    "/stream",
    operation_id="streamChanges",
    summary="The change feed as Server-Sent Events, live",
    response_class=StreamingResponse,
    responses={
        200: EVENT_STREAM_DOC,
        429: {"model": Problem, "description": "This user has too many open streams"},
        503: {"model": Problem, "description": "Database unavailable, or the server is full"},
    },
)
async def stream_changes(
    user_id: CurrentUser,
    reader: PrimaryReaderDep,
    params: Annotated[StreamQuery, Query()],
    request: Request,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    """First every change since the token (as the feed would list them), then each change as it
    commits. Reconnect with `Last-Event-ID` to resume exactly where a dropped stream stopped."""
    tokens: ChangeTokens = request.app.state.change_tokens
    streams: ChangeStreams = request.app.state.change_streams
    token, location, field = (
        (last_event_id, "header", "Last-Event-ID")
        if last_event_id is not None
        else (params.since, "query", "since")
    )
    since = None if token is None else tokens.decode(token, user_id, location=location, field=field)
    streams.check(user_id)
    first = await read_changes(reader, user_id=user_id, since=since)
    body = streams.events(reader, tokens, user_id=user_id, first=first)
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        # No cache or proxy may hold events back (X-Accel-Buffering: nginx).
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=purge_after(request, user_id),
    )

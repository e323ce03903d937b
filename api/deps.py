"""FastAPI dependencies: the caller's identity, the write side and a reader."""

from typing import Annotated

from fastapi import Depends, Header, Path, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import WithJsonSchema

from api.auth.tokens import Authenticator
from api.consistency import TOKEN_PATTERN, position_of
from api.problems import invalid_input
from api.responses import CONSISTENCY_TOKEN_HEADER
from api.schemas import USER_ID_PATTERN
from db.reads import Reader, Readers
from db.replication import WalPosition
from db.scope import WriteSessions

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="A JWT from the frontend's Better Auth (JWKS) or signed with the shared secret."
    " Required in production; a development server (AUTH_MODE=none) accepts requests without"
    " it.",
)


# The dependencies below are `async def` where they do no I/O: FastAPI runs every sync
# dependency in the thread pool, and those hops cost more CPU than the work itself. Whatever may
# block (verifying a token that may need the JWKS) still goes to the thread pool. Write routes
# stay sync functions (one hop for the whole command, session included); read routes are async
# and await the query side's driver on the event loop.


async def current_user_id(
    request: Request,
    user_id: Annotated[
        str,
        Path(
            pattern=USER_ID_PATTERN,
            description="The owner of the tasks: letters, digits and `-_.@:`, 1-128 characters.",
        ),
    ],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> str:
    """The one place that decides who is calling: the path's user, if the bearer token is theirs."""
    authenticator: Authenticator = request.app.state.authenticator
    token = None if credentials is None else credentials.credentials
    known = authenticator.authorize_without_io(user_id, token)
    if known is not None:
        return known
    return await run_in_threadpool(authenticator.authorize, user_id, token)


CurrentUser = Annotated[str, Depends(current_user_id)]


async def get_writes(request: Request, _caller: CurrentUser) -> WriteSessions:
    """The write side, once the caller is known: `dispatch` opens a session acting for the
    command's user (db/scope.py)."""
    writes: WriteSessions = request.app.state.writes
    return writes


async def read_after(
    x_consistency_token: Annotated[
        str | None,
        Header(
            description="The X-Consistency-Token of a write this read must see (read your"
            " writes). Without it the answer may come from a replica a little behind the"
            " primary, and miss the latest writes.",
        ),
        # Checked below, not by the model: the document's pattern is read with Python's
        # notion of whitespace (as by a client's or fuzzer's generator), which is the parser's.
        WithJsonSchema({"type": "string", "pattern": TOKEN_PATTERN}),
    ] = None,
) -> WalPosition | None:
    """The position a read must see, from the client's token; a malformed one is a 422."""
    if x_consistency_token is None:
        return None
    try:
        return position_of(x_consistency_token)
    except ValueError:
        raise invalid_input(
            "header",
            CONSISTENCY_TOKEN_HEADER,
            "must be an X-Consistency-Token the service sent (1-16 hex digits)",
        ) from None


async def get_reader(
    request: Request,
    user_id: CurrentUser,
    after: Annotated[WalPosition | None, Depends(read_after)],
) -> Reader:
    """The query side as the caller: no I/O until a query runs (db/reads.py)."""
    readers: Readers = request.app.state.readers
    return readers.as_user(user_id, after)


async def get_primary_reader(request: Request, user_id: CurrentUser) -> Reader:
    """The query side as the caller, on the primary only: for the change feed, which must
    never answer from behind a token it gave out itself (docs/adr/0016)."""
    readers: Readers = request.app.state.readers
    return readers.primary_as_user(user_id)


WritesDep = Annotated[WriteSessions, Depends(get_writes)]
ReaderDep = Annotated[Reader, Depends(get_reader)]
PrimaryReaderDep = Annotated[Reader, Depends(get_primary_reader)]

"""FastAPI dependencies: the caller's identity, a write session and a reader."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from api.auth.tokens import Authenticator
from api.schemas import USER_ID_PATTERN
from db.engine import write_as
from db.reads import Reader, ReadPool

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="A JWT from the frontend's Better Auth (JWKS) or signed with the shared secret."
    " Required in production; a development server (AUTH_MODE=none) accepts requests without"
    " it.",
)


# The dependencies below are `async def` where they do no I/O: FastAPI runs every sync
# dependency in the thread pool, and those hops cost more CPU than the work itself. Whatever may
# block (verifying a token that may need the JWKS, closing a write transaction) still goes to the
# thread pool. Write routes stay sync functions (one hop for the session's work); read routes
# are async and await the query side's driver on the event loop.


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


async def get_session(request: Request, user_id: CurrentUser) -> AsyncIterator[Session]:
    session: Session = request.app.state.session_factory()  # connects lazily: no I/O here
    write_as(session, user_id)
    try:
        yield session
    finally:
        # After dispatch's commit or rollback nothing is open and closing is bookkeeping.
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


async def get_reader(request: Request, user_id: CurrentUser) -> Reader:
    """The query side as the caller: no I/O until a query runs (db/reads.py)."""
    pool: ReadPool = request.app.state.read_pool
    return pool.as_user(user_id)


SessionDep = Annotated[Session, Depends(get_session)]
ReaderDep = Annotated[Reader, Depends(get_reader)]

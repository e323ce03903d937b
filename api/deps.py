"""FastAPI dependencies: the caller's identity, a write session and a read connection."""

import random
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session

from api.auth.tokens import Authenticator
from api.schemas import USER_ID_PATTERN
from db.engine import read_as, write_as

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="A JWT from the frontend's Better Auth (JWKS) or signed with the shared secret.",
)


# The dependencies below are `async def` where they do no I/O: FastAPI runs every sync
# dependency in the thread pool, and those hops cost more CPU than the work itself. Whatever may
# block (connecting, verifying a token that may need the JWKS, closing a transaction) still goes
# to the thread pool; the route itself stays a sync function, the one hop for its queries.


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


READ_CONNECT_ATTEMPTS = 3
READ_RETRY_BASE_SECONDS = 0.05


def connect_for_reading(engine: Engine) -> Connection:
    """A read connection, retried with jittered exponential backoff on transient failures.

    Only reads are retried, and only while connecting: nothing has been sent yet, so a retry can
    never repeat an effect. Writes are never retried here (clients use Idempotency-Key).
    """
    for attempt in range(READ_CONNECT_ATTEMPTS):
        try:
            return engine.connect()
        except (OperationalError, InterfaceError):
            if attempt == READ_CONNECT_ATTEMPTS - 1:
                raise
            time.sleep(READ_RETRY_BASE_SECONDS * 3**attempt * random.uniform(0.5, 1.5))  # noqa: S311
    raise AssertionError("unreachable")


async def get_read_connection(request: Request, user_id: CurrentUser) -> AsyncIterator[Connection]:
    conn = await run_in_threadpool(connect_for_reading, request.app.state.read_engine)
    try:
        read_as(conn, user_id)
        yield conn
    finally:
        # An autocommit connection has no transaction to roll back: returning it sends nothing.
        conn.close()


SessionDep = Annotated[Session, Depends(get_session)]
ReadConnection = Annotated[Connection, Depends(get_read_connection)]

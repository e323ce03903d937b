"""FastAPI dependencies: the caller's identity, a write session and a read connection."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection
from sqlmodel import Session

from api.auth.tokens import Authenticator
from api.schemas import USER_ID_PATTERN
from db.engine import read_as, write_as

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="A JWT from the frontend's Better Auth (JWKS) or signed with the shared secret.",
)


def current_user_id(
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
    return authenticator.authorize(
        user_id, None if credentials is None else credentials.credentials
    )


CurrentUser = Annotated[str, Depends(current_user_id)]


def get_session(request: Request, user_id: CurrentUser) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        write_as(session, user_id)
        yield session


def get_read_connection(request: Request, user_id: CurrentUser) -> Iterator[Connection]:
    with request.app.state.read_engine.connect() as conn:
        read_as(conn, user_id)
        yield conn


SessionDep = Annotated[Session, Depends(get_session)]
ReadConnection = Annotated[Connection, Depends(get_read_connection)]

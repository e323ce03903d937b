"""FastAPI dependencies: the caller's identity, a write session and a read connection."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy import Connection
from sqlmodel import Session

from api.schemas import USER_ID_PATTERN


def current_user_id(
    user_id: Annotated[
        str,
        Path(
            pattern=USER_ID_PATTERN,
            description="The owner of the tasks: letters, digits and `-_.@:`, 1-128 characters.",
        ),
    ],
) -> str:
    """The one place that decides who is calling; today the path says so."""
    return user_id


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


def get_read_connection(request: Request) -> Iterator[Connection]:
    with request.app.state.read_engine.connect() as conn:
        yield conn


CurrentUser = Annotated[str, Depends(current_user_id)]
SessionDep = Annotated[Session, Depends(get_session)]
ReadConnection = Annotated[Connection, Depends(get_read_connection)]

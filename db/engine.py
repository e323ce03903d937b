"""The write side's engine: commands write through its sessions (db/scope.py's WriteSessions),
the query side reads through db/reads.py."""

from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import NullPool

from db.connections import has_unread_input, sqlalchemy_url
from db.settings import DatabaseSettings

_BYPASSES_RLS = text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")


def bypasses_row_security(url: str) -> bool:
    """Does `url` connect as a role that row-level security does not apply to?"""
    engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(_BYPASSES_RLS).scalar())
    finally:
        engine.dispose()


def make_write_engine(settings: DatabaseSettings) -> Engine:
    # connect_timeout is a libpq connection parameter, not a server startup option, so poolers
    # accept it. Dead connections are caught at checkout: by pre-ping (the default), or without
    # a round trip by a socket check when POOL_PRE_PING is off (see below, and ADR 0006).
    engine = create_engine(
        sqlalchemy_url(settings.write_url()),
        pool_pre_ping=settings.pool_pre_ping,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_recycle=settings.pool_recycle_seconds,
        connect_args={"connect_timeout": settings.connect_timeout_seconds},
    )
    if not settings.pool_pre_ping:
        discard_closed_connections(engine)
    return engine


def discard_closed_connections(engine: Engine) -> None:
    """Replace, at checkout, a pooled connection the server has closed (instead of pre-ping).

    Raising DisconnectionError makes the pool discard the connection and check out another (or
    connect anew), up to three times, before the request ever sees it.
    """

    def check(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if has_unread_input(dbapi_connection):
            raise DisconnectionError("the server closed this pooled connection")

    event.listen(engine, "checkout", check)

"""Engines for the two sides: commands write through sessions, queries read through connections.

Row-level security (migration 0002) shows a connection only the rows of the user named by the
transaction-local setting `app.user_id`. Both sides set it per transaction, never per session,
so a pooled connection (or a PgBouncer/Neon pooler backend) never carries one user's setting into
another client's transaction. See docs/adr/0003-authentication-and-row-level-security.md.
"""

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import ExecutionContext, make_url
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.pool import NullPool

from db.settings import Settings

USER_OPTION = "taskapi_user_id"
"""Execution option (read connections) and `Session.info` key (write sessions): the caller."""

SET_USER_SQL = text("SELECT set_config('app.user_id', :user_id, true)")
# psycopg2's paramstyle, because it is glued in front of an already compiled statement.
_SET_USER_PREFIX = "SELECT set_config('app.user_id', %(taskapi_rls_user)s, true); "


def sqlalchemy_url(url: str) -> str:
    """Accept the `postgres://` and `postgresql://` forms and pin the psycopg2 driver."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


_BYPASSES_RLS = text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")


def bypasses_row_security(url: str) -> bool:
    """Does `url` connect as a role that row-level security does not apply to?"""
    engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(_BYPASSES_RLS).scalar())
    finally:
        engine.dispose()


def make_write_engine(settings: Settings) -> Engine:
    return create_engine(
        sqlalchemy_url(settings.write_url()),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_pre_ping=True,
    )


def make_read_engine(settings: Settings) -> Engine:
    # Reads are single statements: autocommit spares each one a BEGIN/ROLLBACK round trip.
    engine = create_engine(
        sqlalchemy_url(settings.read_url()),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_pre_ping=True,
        isolation_level="AUTOCOMMIT",
    )
    scope_reads_to_user(engine)
    return engine


def read_as(conn: Connection, user_id: str | None) -> None:
    """Run every later statement on `conn` as `user_id` (None: as nobody, so no rows)."""
    conn.execution_options(**{USER_OPTION: user_id})


def scope_reads_to_user(engine: Engine) -> None:
    """Prefix each statement on `engine` with the transaction-local user setting.

    In autocommit mode each statement is its own transaction, so the setting must travel with the
    statement: psycopg2 sends both as one simple query (one round trip, one implicit transaction)
    and returns the last statement's rows.
    """
    event.listen(engine, "before_cursor_execute", _prefix_with_user, retval=True)


def _prefix_with_user(
    _conn: Connection,
    _cursor: Any,
    statement: str,
    parameters: Any,
    context: ExecutionContext | None,
    executemany: bool,
) -> tuple[str, Any]:
    user_id = None if context is None else context.execution_options.get(USER_OPTION)
    if user_id is None or executemany or not isinstance(parameters, dict):
        return statement, parameters
    return _SET_USER_PREFIX + statement, {**parameters, "taskapi_rls_user": user_id}


def write_as(session: Session, user_id: str) -> None:
    """Make every transaction `session` begins start by setting `app.user_id` to `user_id`."""
    session.info[USER_OPTION] = user_id


@event.listens_for(Session, "after_begin")
def _set_user_for_transaction(
    session: Session, _transaction: SessionTransaction, connection: Connection
) -> None:
    user_id = session.info.get(USER_OPTION)
    if user_id is not None:
        connection.execute(SET_USER_SQL, {"user_id": user_id})

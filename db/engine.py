"""The write side's engine: commands write through SQLAlchemy sessions (reads: db/reads.py).

Row-level security (migration 0002) shows a connection only the rows of the user named by the
transaction-local setting `app.user_id`. Both sides set it per transaction, never per session,
so a pooled connection (or a PgBouncer/Neon pooler backend) never carries one user's setting into
another client's transaction. See docs/adr/0003-authentication-and-row-level-security.md.
"""

import re
import select
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.pool import NullPool

from db.settings import Settings

USER_OPTION = "taskapi_user_id"
"""`Session.info` key (write sessions): the caller."""

TIMEOUTS_OPTION = "taskapi_timeouts"
"""`Session.info` key: the write side's Timeouts (set by the session factory)."""

# One statement scopes a transaction: the caller for row-level security, and how long any
# statement may run or wait for a lock. All three are transaction-local (`true`), never session
# settings, so they survive PgBouncer/Neon's pooler and never leak to the next client.
SET_USER_SQL = text(
    "SELECT set_config('app.user_id', :user_id, true),"
    " set_config('statement_timeout', :statement_timeout, true),"
    " set_config('lock_timeout', :lock_timeout, true)"
)


@dataclass(frozen=True)
class Timeouts:
    statement_ms: int = 5000
    lock_ms: int = 2000

    @classmethod
    def from_settings(cls, settings: Settings) -> "Timeouts":
        return cls(statement_ms=settings.statement_timeout_ms, lock_ms=settings.lock_timeout_ms)

    def parameters(self) -> dict[str, str]:
        return {"statement_timeout": f"{self.statement_ms}ms", "lock_timeout": f"{self.lock_ms}ms"}

    def binds(self, user_id: str) -> dict[str, str]:
        """SET_USER_SQL's binds: the caller, under these timeouts."""
        return {"user_id": user_id, **self.parameters()}


def act_as(conn: Connection, user_id: str, timeouts: Timeouts | None = None) -> None:
    """Name the caller (and the timeouts) for the rest of `conn`'s transaction."""
    conn.execute(SET_USER_SQL, (timeouts or Timeouts()).binds(user_id))


def _with_driver(url: str, drivername: str, database: str | None = None) -> str:
    """Accept the `postgres://`, `postgresql://` and `postgresql+driver://` forms."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1)).set(drivername=drivername)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def sqlalchemy_url(url: str) -> str:
    """`url` for SQLAlchemy, with the psycopg2 driver pinned."""
    return _with_driver(url, "postgresql+psycopg2")


def libpq_url(url: str, database: str | None = None) -> str:
    """`url` as libpq takes it (psycopg 3, pgbench, psql), for `database` if given."""
    return _with_driver(url, "postgresql", database)


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


def has_unread_input(dbapi_connection: Any) -> bool:
    """Is there anything to read on an idle connection? Then the server has closed it.

    An idle PostgreSQL connection receives nothing unless the server ends it: a terminated
    backend, a restart or an idle-session timeout send a FATAL message and close the socket, a
    pooler or proxy closes it. Either makes the socket readable, which one `poll` with a zero
    timeout sees without the round trip of a pre-ping.
    """
    if dbapi_connection.closed:
        return True
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def discard_closed_connections(engine: Engine) -> None:
    """Replace, at checkout, a pooled connection the server has closed (instead of pre-ping).

    Raising DisconnectionError makes the pool discard the connection and check out another (or
    connect anew), up to three times, before the request ever sees it.
    """

    def check(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if has_unread_input(dbapi_connection):
            raise DisconnectionError("the server closed this pooled connection")

    event.listen(engine, "checkout", check)


def write_as(session: Session, user_id: str) -> None:
    """Make every transaction `session` begins start by setting `app.user_id` to `user_id`."""
    session.info[USER_OPTION] = user_id


# SET_USER_SQL in psycopg2's paramstyle, to glue in front of a statement already compiled; its
# binds renamed (`taskapi_user_id`, ...) so that they cannot meet the statement's own.
_SET_USER_PREFIX = re.sub(r":(\w+)", r"%(taskapi_\1)s", SET_USER_SQL.text) + "; "
_PENDING_SETTINGS = "taskapi_pending_settings"
"""`Connection.info` key: the settings a transaction must apply before its first statement."""


@event.listens_for(Session, "after_begin")
def _set_user_for_transaction(
    session: Session, _transaction: SessionTransaction, connection: Connection
) -> None:
    user_id = session.info.get(USER_OPTION)
    if user_id is not None:
        timeouts: Timeouts = session.info.get(TIMEOUTS_OPTION) or Timeouts()
        binds = timeouts.binds(user_id)
        connection.info[_PENDING_SETTINGS] = {"taskapi_" + name: binds[name] for name in binds}


@event.listens_for(Engine, "before_cursor_execute", retval=True)
def _settings_before_first_statement(
    conn: Connection,
    cursor: Any,
    statement: str,
    parameters: Any,
    _context: Any,
    executemany: bool,
) -> tuple[str, Any]:
    """Send a transaction's settings with its first statement: one round trip, not two.

    psycopg2 sends the two statements as one query, inside the transaction, and returns the
    last one's rows. A statement whose parameters cannot be merged gets the settings sent just
    before it instead.
    """
    settings = conn.info.pop(_PENDING_SETTINGS, None)
    if settings is None:
        return statement, parameters
    if executemany or not isinstance(parameters, dict):
        cursor.execute(_SET_USER_PREFIX, settings)
        return statement, parameters
    return _SET_USER_PREFIX + statement, {**parameters, **settings}


@event.listens_for(Engine, "commit")
@event.listens_for(Engine, "rollback")
def _forget_pending_settings(conn: Connection) -> None:
    # A transaction that ended before any statement ran must not hand its user to the next.
    # An invalidated connection (the server went away mid-transaction) is discarded with its
    # info, and asking for that info now would raise instead of rolling back.
    if not conn.invalidated:
        conn.info.pop(_PENDING_SETTINGS, None)

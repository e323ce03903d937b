"""One way to scope a transaction to its caller, for both sides.

Row-level security (migration 0002) shows a connection only the rows of the user named by the
transaction-local setting `app.user_id`. Reads (db/reads.py) and writes (`WriteSessions` below)
both send SET_USER_SQL as their transaction's first statement, never a session setting, so a
pooled connection (or a PgBouncer/Neon pooler backend) never carries one user's setting into
another client's transaction. See docs/adr/0003 and 0007.
"""

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.orm import SessionTransaction, sessionmaker
from sqlmodel import Session

from db.replication import POSITION_NOW_SQL, WalPosition
from db.settings import DatabaseSettings

log = logging.getLogger(__name__)

# One statement scopes a transaction: the caller for row-level security, and how long any
# statement may run or wait for a lock. All three are transaction-local (`true`).
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
    def from_settings(cls, settings: DatabaseSettings) -> "Timeouts":
        return cls(statement_ms=settings.statement_timeout_ms, lock_ms=settings.lock_timeout_ms)

    def parameters(self) -> dict[str, str]:
        return {"statement_timeout": f"{self.statement_ms}ms", "lock_timeout": f"{self.lock_ms}ms"}

    def binds(self, user_id: str) -> dict[str, str]:
        """SET_USER_SQL's binds: the caller, under these timeouts."""
        return {"user_id": user_id, **self.parameters()}


def act_as(conn: Connection, user_id: str, timeouts: Timeouts | None = None) -> None:
    """Name the caller (and the timeouts) for the rest of `conn`'s transaction."""
    conn.execute(SET_USER_SQL, (timeouts or Timeouts()).binds(user_id))


_CALLER = "taskapi_user_id"
"""`Session.info` key: the user a write session acts for."""
_CONNECTION = "taskapi_connection"
"""`Session.info` key: the connection of the transaction the session is in."""
_COMMITTED_AT = "taskapi_committed_at"
"""`Session.info` key: the WAL position at or past the session's last commit."""
COMMITTED_AT: ContextVar[WalPosition | None] = ContextVar("taskapi_committed_at", default=None)
"""Where the primary's WAL was once the last write of this context (a request: one thread or
task) committed, when positions are noted; None otherwise. Read by the route that wrote."""


class WriteSessions:
    """The write side's sessions, each acting for one caller.

    Every transaction such a session begins names its caller with SET_USER_SQL, sent in the
    same round trip as the transaction's first statement (see `_glue_settings`). With
    `positions` on (the service turns it on when it reads from replicas), each commit is followed
    by one more round trip that notes the primary's WAL position in COMMITTED_AT: the consistency
    token a read on a replica waits for (docs/adr/0016).
    """

    def __init__(
        self,
        bind: Engine | Connection,
        timeouts: Timeouts | None = None,
        *,
        positions: bool = False,
        **options: Any,
    ) -> None:
        self._timeouts = timeouts or Timeouts()
        self._factory = sessionmaker(bind, class_=Session, expire_on_commit=False, **options)
        event.listen(self._factory, "after_begin", self._name_the_caller)
        if positions:
            event.listen(self._factory, "after_begin", _remember_the_connection)
            event.listen(self._factory, "after_commit", _note_the_position)
        _glue_settings(bind.engine)

    @contextmanager
    def as_user(self, user_id: str) -> Iterator[Session]:
        COMMITTED_AT.set(None)
        with self._factory(info={_CALLER: user_id}) as session:
            yield session
        COMMITTED_AT.set(session.info.get(_COMMITTED_AT))

    def _name_the_caller(
        self, session: Session, _transaction: SessionTransaction, connection: Connection
    ) -> None:
        binds = self._timeouts.binds(session.info[_CALLER])
        connection.info[_PENDING_SETTINGS] = {"taskapi_" + name: binds[name] for name in binds}


def _remember_the_connection(
    session: Session, _transaction: SessionTransaction, connection: Connection
) -> None:
    session.info[_CONNECTION] = connection


def _note_the_position(session: Session) -> None:
    """Right after the commit, on the connection that committed, before it goes back to the
    pool: the primary's insert position, which is at or past the end of the commit's record."""
    connection: Connection | None = session.info.pop(_CONNECTION, None)
    if connection is None or connection.closed:
        return
    try:
        session.info[_COMMITTED_AT] = position_now(connection.connection.dbapi_connection)
    except Exception:  # psycopg2's errors (it has no stubs), after a commit that stands
        # The write is committed: failing its request now would invite a retry that writes
        # twice. It is answered without a token; a read may then miss it until the replica
        # catches up, as any read without one may.
        log.warning("the position of a committed write could not be read", exc_info=True)


_PSYCOPG2_STATUS_READY = 1
"""psycopg2.extensions.STATUS_READY: no transaction open (psycopg2 ships no type stubs)."""


def position_now(dbapi_connection: Any) -> WalPosition:
    """The primary's WAL insert position, read on a psycopg2 connection in one round trip."""
    # Outside a transaction, psycopg2 would send a BEGIN (a round trip of its own) before the
    # query and leave a transaction for the pool to roll back: autocommit for this one query.
    # Inside one (tests join their own transaction), the query simply runs in it.
    idle = dbapi_connection.status == _PSYCOPG2_STATUS_READY
    if idle:
        dbapi_connection.autocommit = True
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(POSITION_NOW_SQL)
            (text,) = cursor.fetchone()
    finally:
        if idle:
            dbapi_connection.autocommit = False
    return WalPosition.parse(text)


# SET_USER_SQL in psycopg2's paramstyle, to glue in front of a statement already compiled; its
# binds renamed (`taskapi_user_id`, ...) so that they cannot meet the statement's own.
_SET_USER_PREFIX = re.sub(r":(\w+)", r"%(taskapi_\1)s", SET_USER_SQL.text) + "; "
_PENDING_SETTINGS = "taskapi_pending_settings"
"""`Connection.info` key: the settings a transaction must apply before its first statement."""


def _glue_settings(engine: Engine) -> None:
    """Make `engine` send a transaction's pending settings with its first statement."""
    if not event.contains(engine, "before_cursor_execute", _settings_before_first_statement):
        event.listen(engine, "before_cursor_execute", _settings_before_first_statement, retval=True)
        event.listen(engine, "commit", _forget_pending_settings)
        event.listen(engine, "rollback", _forget_pending_settings)


def _settings_before_first_statement(
    conn: Connection,
    cursor: Any,
    statement: str,
    parameters: Any,
    _context: Any,
    executemany: bool,
) -> tuple[str, Any]:
    """One round trip, not two: psycopg2 sends both statements as one query, inside the
    transaction, and returns the last one's rows. A statement whose parameters cannot be merged
    gets the settings sent just before it instead."""
    settings = conn.info.pop(_PENDING_SETTINGS, None)
    if settings is None:
        return statement, parameters
    if executemany or not isinstance(parameters, dict):
        cursor.execute(_SET_USER_PREFIX, settings)
        return statement, parameters
    return _SET_USER_PREFIX + statement, {**parameters, **settings}


def _forget_pending_settings(conn: Connection) -> None:
    # A transaction that ended before any statement ran must not hand its user to the next.
    # An invalidated connection (the server went away mid-transaction) is discarded with its
    # info, and asking for that info now would raise instead of rolling back.
    if not conn.invalidated:
        conn.info.pop(_PENDING_SETTINGS, None)

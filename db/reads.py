"""The query side's connections: psycopg 3 on the event loop, one message per read; and, for
reads an index bounds, one psycopg2 connection called on the event loop itself (ADR 0018).

Each read is one simple-query message of two statements: the `set_config` that names the caller
for row-level security (with the statement and lock timeouts), then the query itself, as
`EXECUTE` of a statement prepared on the connection (its `PREPARE` sent along the first time).
PostgreSQL runs a message's statements as a single implicit transaction, so the
transaction-local settings cover the query and vanish with it, exactly as on the write side
(docs/adr/0003). Values are bound on the client (psycopg quotes them as literals). No BEGIN, no
COMMIT, no pre-ping, no thread: see ADR 0007, and ADR 0017 for the single message.
"""

import asyncio
import contextlib
import hashlib
import logging
import random
import re
import socket
import threading
import time
import weakref
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import TextClause
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.engine import make_url

from db.connections import has_unread_input, libpq_url
from db.replicas import Replica, Replicas, first_line
from db.replication import WalPosition
from db.scope import SET_USER_SQL, Timeouts
from db.settings import DatabaseSettings

log = logging.getLogger(__name__)

Row = tuple[Any, ...]

READ_ATTEMPTS = 3
"""A read whose connection turns out to be dead is sent again on another one, at most this
often in all. Only reads: they change nothing, so sending one twice is harmless."""
READ_RETRY_BASE_SECONDS = 0.05


class Reader(Protocol):
    """Runs read-only statements as one user and returns their rows as tuples."""

    async def fetch(self, statement: TextClause, params: Mapping[str, Any]) -> list[Row]: ...


class Readers(Protocol):
    """Hands out Readers bound to a caller (ReadPool in production)."""

    def as_user(self, user_id: str, after: WalPosition | None = None) -> Reader: ...

    def primary_as_user(self, user_id: str) -> Reader:
        """Reads as `user_id` on the primary only: never behind any write."""
        ...


_DIALECT = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]
COMPILED_STATEMENTS = 1024
"""Compiled statements kept per process: the list shapes reachable from query parameters number
in the hundreds of thousands, the ones in use at a time a few dozen."""

_COMPILED: dict[tuple[str, bool, bool], "CompiledRead"] = {}
_BIND = re.compile(r"%\((\w+)\)s")
INDEX_BOUNDED = {"taskapi_index_bounded": True}
"""Execution options of a statement whose worst case an index bounds (a row by its key, a page
in an index's order): where INLINE_READS allows, it runs on the event loop itself (ADR 0018).
Written where the statement is, `text(...).execution_options(**INDEX_BOUNDED)`."""
PLANNED_EACH_TIME = {"taskapi_prepared": False}
"""Execution options of a statement never prepared: its best plan depends on its values (a
search, whose matches for one user may be 20 or 200,000), and a prepared statement's generic
plan, made for an average user, reads every row of a large one (docs/PERFORMANCE.md)."""


PREPARED_PER_CONNECTION = 100
"""Statements kept prepared on one connection; past that, all are deallocated and begun anew."""


@dataclass(frozen=True, slots=True)
class CompiledRead:
    """A read statement in the forms one message needs (psycopg's `%(name)s` binds)."""

    plain: str
    prepare: str
    execute: str
    name: str
    bounded: bool = False  # by an index: see INDEX_BOUNDED
    prepared: bool = True  # False: see PLANNED_EACH_TIME

    @classmethod
    def of(cls, sql: str, *, bounded: bool = False, prepared: bool = True) -> "CompiledRead":
        names: list[str] = []
        for bind in _BIND.findall(sql):
            if bind not in names:
                names.append(bind)
        positional = _BIND.sub(lambda m: f"${names.index(m[1]) + 1}", sql)
        name = "r_" + hashlib.sha1(sql.encode(), usedforsecurity=False).hexdigest()[:24]
        arguments = ", ".join(f"%({bind})s" for bind in names)
        execute = f"EXECUTE {name}({arguments})" if names else f"EXECUTE {name}"
        prepare = f"PREPARE {name} AS {positional}"
        return cls(
            plain=sql,
            prepare=prepare,
            execute=execute,
            name=name,
            bounded=bounded,
            prepared=prepared,
        )


def psycopg_sql(statement: TextClause) -> str:
    """The statement in psycopg's `%(name)s` style."""
    return compiled_read(statement).plain


def compiled_read(statement: TextClause) -> CompiledRead:
    """Compiled once per statement text and options; the oldest is forgotten once
    COMPILED_STATEMENTS are kept."""
    options = statement.get_execution_options()
    bounded = bool(options.get("taskapi_index_bounded", False))
    prepared = bool(options.get("taskapi_prepared", True))
    key = (statement.text, bounded, prepared)
    compiled = _COMPILED.get(key)
    if compiled is None:
        if len(_COMPILED) >= COMPILED_STATEMENTS:
            del _COMPILED[next(iter(_COMPILED))]
        sql = str(statement.compile(dialect=_DIALECT))
        compiled = _COMPILED[key] = CompiledRead.of(sql, bounded=bounded, prepared=prepared)
    return compiled


# SET_USER_SQL with its binds renamed (`taskapi_user_id`, ...): they cannot meet the query's own.
_SET_USER = re.sub(r":(\w+)", r"%(taskapi_\1)s", SET_USER_SQL.text) + "; "


async def _refuse_closed(conn: psycopg.AsyncConnection[Any]) -> None:
    # The pool's check at checkout: a socket poll, not a round trip (db/connections.py explains it).
    # Closed here, the connection is discarded by the pool, which hands out or makes another.
    if has_unread_input(conn):
        await conn.close()
        raise psycopg.OperationalError("the server closed this pooled connection")


def _connection_pool(settings: DatabaseSettings, url: str, name: str) -> AsyncConnectionPool[Any]:
    return AsyncConnectionPool(
        libpq_url(url),
        kwargs={"autocommit": True, "connect_timeout": settings.connect_timeout_seconds},
        # One connection kept open; more are made while requests wait for one, up to the
        # maximum, and closed again after ten idle minutes.
        min_size=1,
        max_size=settings.pool_size + settings.max_overflow,
        open=False,
        check=_refuse_closed,
        timeout=settings.pool_timeout_seconds,
        # The pool retries a failed connect in the background with doubling delays; it stops
        # after this long, and the next request starts a fresh attempt. Kept as short as a
        # request's wait, so a database that comes back is used within a second or two
        # instead of after a delay grown long during the outage.
        reconnect_timeout=settings.pool_timeout_seconds,
        max_lifetime=settings.pool_recycle_seconds,
        name=name,
    )


# A read that sent a consistency token asks, in its own message and just before its query,
# whether the replica has replayed that far; the query's snapshot, taken after, then includes
# the write. A promoted replica has left the primary's history: never caught up.
_CAUGHT_UP = (
    "SELECT pg_is_in_recovery() AND pg_last_wal_replay_lsn() >= %(taskapi_after)s::pg_lsn; "
)
_PRIMARY_POSITION_SQL = "SELECT pg_current_wal_flush_lsn()::text"

REPLICA_CHECKOUT_SECONDS = 1.0
"""Longest a read waits for a replica's pooled connection before the replica is taken out of
rotation and the primary answers (a replica that went down refuses connections at once)."""
FIRST_POLL_SECONDS = 0.002
"""A read waiting for its replica to catch up asks again after this long, then after doubling
delays, until REPLICA_WAIT_MS have passed."""


class ReadPool:
    """Connections for the query side, shared by every request of a worker: a pool on the
    primary, and one on each replica of READ_DATABASE_URL (db/replicas.py, ADR 0016)."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self._timeouts = Timeouts.from_settings(settings)
        self._prepare = settings.prepared_statements
        self._prepared: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], set[str]] = (
            weakref.WeakKeyDictionary()
        )
        self._wait_seconds = settings.replica_wait_ms / 1000
        self._pool = _connection_pool(settings, settings.write_url(), "reads")
        self.replicas = Replicas(
            settings,
            lambda url, number: _connection_pool(settings, url, f"reads-replica-{number}"),
        )
        self.inline = InlineConnection(settings) if inline_reads(settings) else None

    async def open(self) -> None:
        await self._pool.open(wait=False)
        await self.replicas.open(self.primary_position)

    async def close(self) -> None:
        if self.inline is not None:
            self.inline.stop()
        await self.replicas.close()
        await self._pool.close()

    def connection(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """A pooled connection to the primary with nothing set on it (readiness, tests)."""
        return self._pool.connection()

    async def ping(self) -> None:
        async with self.connection() as conn:
            await conn.execute("SELECT 1")

    async def primary_position(self) -> WalPosition | None:
        """How far the primary has written (and flushed); None if it does not answer."""
        try:
            async with self.connection() as conn:
                cursor = await conn.execute(_PRIMARY_POSITION_SQL, prepare=False)
                row = await cursor.fetchone()
        except psycopg.OperationalError:
            return None
        return None if row is None else WalPosition.parse(row[0])

    def as_user(self, user_id: str, after: WalPosition | None = None) -> "UserReader":
        """Reads as `user_id`; with `after`, reads that see everything up to that position."""
        return UserReader(self, user_id, after)

    def primary_as_user(self, user_id: str) -> "UserReader":
        """Reads as `user_id` on the primary only (the change feed: ADR 0014, 0016)."""
        return UserReader(self, user_id, primary=True)

    async def fetch(
        self,
        user_id: str,
        statement: TextClause,
        params: Mapping[str, Any],
        after: WalPosition | None = None,
        *,
        primary: bool = False,
    ) -> list[Row]:
        """The statement's rows: from a replica in rotation when one has replayed `after` (or
        at once without it), else (or when `primary` is asked for) from the primary."""
        read = compiled_read(statement)
        binds = {**params, **{"taskapi_" + k: v for k, v in self._timeouts.binds(user_id).items()}}
        if self.inline is not None and read.bounded and (primary or not self.replicas.all):
            inline = self.inline.fetch(read, binds)
            if inline is not None:
                return inline
        replica = None if primary else self.replicas.next()
        if replica is not None:
            rows = await self._on_replica(replica, read, binds, after)
            if rows is not None:
                return rows
        rows = await self._fetch(self._pool, read, binds)
        assert rows is not None  # no position asked for: always an answer
        return rows

    async def _on_replica(
        self,
        replica: Replica,
        read: CompiledRead,
        binds: dict[str, Any],
        after: WalPosition | None,
    ) -> list[Row] | None:
        """The rows from `replica`, or None: it has not replayed `after` within REPLICA_WAIT_MS,
        or it failed (and is out of rotation), and the primary must answer."""
        deadline = time.monotonic() + self._wait_seconds
        delay = FIRST_POLL_SECONDS
        try:
            while True:
                rows = await self._fetch(replica.pool, read, binds, after, REPLICA_CHECKOUT_SECONDS)
                left = deadline - time.monotonic()
                if rows is not None or left <= 0:
                    return rows
                await asyncio.sleep(min(delay, left))
                delay *= 2
        except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable):
            raise  # the statement's own timeout: the answer, as it would be on the primary
        except psycopg.errors.SerializationFailure:
            return None  # cancelled by a conflict with the replica's replay: ask the primary
        except psycopg.OperationalError as exc:
            replica.take_out(f"down: a read failed ({first_line(exc)})")
            return None

    async def _fetch(
        self,
        pool: AsyncConnectionPool[Any],
        read: CompiledRead,
        binds: dict[str, Any],
        after: WalPosition | None = None,
        checkout_seconds: float | None = None,
    ) -> list[Row] | None:
        for attempt in range(1, READ_ATTEMPTS + 1):
            async with pool.connection(checkout_seconds) as conn:
                try:
                    return await self._fetch_once(conn, read, binds, after)
                except psycopg.OperationalError:
                    # On a live connection the statement itself failed (a timeout, say): that
                    # is the answer. On a dead one it may or may not have run, and a read
                    # changes nothing either way: send it again on another connection.
                    if not conn.closed or attempt == READ_ATTEMPTS:
                        raise
            delay = READ_RETRY_BASE_SECONDS * 3 ** (attempt - 1) * random.uniform(0.5, 1.5)  # noqa: S311
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _fetch_once(
        self,
        conn: psycopg.AsyncConnection[Any],
        read: CompiledRead,
        binds: dict[str, Any],
        after: WalPosition | None,
    ) -> list[Row] | None:
        """One message: the caller's settings, the replay check if asked, the query. None when
        the replica has not replayed `after`."""
        check = ""
        if after is not None:
            check = _CAUGHT_UP
            binds = {**binds, "taskapi_after": str(after)}
        if not (self._prepare and read.prepared):
            return await _run(conn, _SET_USER + check + read.plain, binds, checked=bool(check))
        prepared = self._prepared.setdefault(conn, set())
        preparation = _preparation(prepared, read)
        try:
            message = _SET_USER + check + preparation + read.execute
            rows = await _run(conn, message, binds, checked=bool(check))
        except (psycopg.errors.DuplicatePreparedStatement, psycopg.errors.InvalidSqlStatementName):
            # The connection's prepared statements are not what we noted (a failed message
            # after its PREPARE, say): start its list again, with this statement prepared anew.
            prepared.clear()
            message = _SET_USER + check + "DEALLOCATE ALL; " + read.prepare + "; " + read.execute
            rows = await _run(conn, message, binds, checked=bool(check))
        prepared.add(read.name)
        return rows


def _preparation(prepared: set[str], read: CompiledRead) -> str:
    """What a message must send before EXECUTE on a connection that has `prepared`: PREPARE the
    first time, after DEALLOCATE ALL once PREPARED_PER_CONNECTION are kept (`prepared` cleared)."""
    if read.name in prepared:
        return ""
    if len(prepared) >= PREPARED_PER_CONNECTION:
        prepared.clear()
        return "DEALLOCATE ALL; " + read.prepare + "; "
    return read.prepare + "; "


async def _run(
    conn: psycopg.AsyncConnection[Any], message: str, binds: dict[str, Any], *, checked: bool
) -> list[Row] | None:
    """Send `message` (several statements) once and return the last statement's rows; with
    `checked`, None instead when the message's second statement answered false."""
    cursor = psycopg.AsyncClientCursor(conn)
    await cursor.execute(message, binds)
    caught_up = True
    if checked:
        cursor.nextset()
        caught_up = bool(_first_value(await cursor.fetchone()))
    while cursor.nextset():
        pass
    rows = await cursor.fetchall()
    return rows if caught_up else None


def _first_value(row: Row | None) -> Any:
    return None if row is None else row[0]


LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
INLINE_RETRY_SECONDS = 1.0
"""After a failed connect, the inline connection leaves reads to the pool for this long."""
INLINE_GRACE_SECONDS = 1.0
"""An inline read still waiting this long past the statement timeout has a server that no
longer answers: the watchdog severs its connection, and the event loop is free again."""
WATCH_EVERY_SECONDS = 0.25


def inline_reads(settings: DatabaseSettings) -> bool:
    """INLINE_READS: `on`, `off`, or (`auto`) on when the primary is on this machine."""
    if settings.inline_reads != "auto":
        return settings.inline_reads == "on"
    url = make_url(libpq_url(settings.write_url()))
    host = str(url.query.get("host") or url.host or "")
    return host in LOCAL_HOSTS or host.startswith("/") or host == ""


class InlineConnection:
    """One psycopg2 connection per process for reads an index bounds, run on the event loop
    itself: no task switch, no pool checkout, libpq end to end (ADR 0018). While one runs, the
    worker's other requests wait, so it is used only where the server answers in microseconds
    and the statement timeout caps the worst case. The message is the pool's: the caller's
    settings, then the query, in one implicit transaction.

    `fetch` answers None when it cannot serve a read (another thread holds the connection, it
    cannot connect, or its connection turns out dead): the pool then serves it."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self._dsn = libpq_url(settings.write_url())
        self._connect_timeout = settings.connect_timeout_seconds
        self._prepare = settings.prepared_statements
        self._longest = settings.statement_timeout_ms / 1000 + INLINE_GRACE_SECONDS
        self._conn: psycopg2.extensions.connection | None = None
        self._prepared: set[str] = set()
        self._connect_after = 0.0
        self._lock = threading.Lock()
        self._busy_since: float | None = None
        self._closing = threading.Event()
        self._watchdog: threading.Thread | None = None

    def fetch(self, read: CompiledRead, binds: dict[str, Any]) -> list[Row] | None:
        if not self._lock.acquire(blocking=False):
            return None
        try:
            conn = self._connection()
            if conn is None:
                return None
            self._busy_since = time.monotonic()
            try:
                return self._fetch_once(conn, read, binds)
            except psycopg2.OperationalError:
                if not conn.closed:
                    raise  # the statement's own failure (a timeout): the answer
                self.close()  # dead: a read changes nothing, so the pool sends it again
                return None
            finally:
                self._busy_since = None
        finally:
            self._lock.release()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._prepared.clear()
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._closing.set()
        self.close()

    def _watch(self) -> None:
        """Sever the connection of a read the server has left hanging (a stopped or unreachable
        server sends neither the answer nor the statement timeout's error)."""
        while not self._closing.wait(WATCH_EVERY_SECONDS):
            since, conn = self._busy_since, self._conn
            if since is None or conn is None or time.monotonic() - since < self._longest:
                continue
            log.error(
                "an inline read got no answer in %.1fs: closing its connection", self._longest
            )
            # On a duplicate of its descriptor: shutdown acts on the socket itself, so libpq's
            # blocked read returns at once, and the connection's own descriptor stays libpq's.
            with (
                contextlib.suppress(OSError),
                socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as duplicate,
            ):
                duplicate.shutdown(socket.SHUT_RDWR)

    def _connection(self) -> psycopg2.extensions.connection | None:
        if self._conn is not None and has_unread_input(self._conn):
            self.close()  # the server closed it while idle
        if self._conn is None and time.monotonic() >= self._connect_after:
            try:
                conn = psycopg2.connect(self._dsn, connect_timeout=self._connect_timeout)
            except psycopg2.Error:
                self._connect_after = time.monotonic() + INLINE_RETRY_SECONDS
                return None
            conn.autocommit = True
            self._conn = conn
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, daemon=True)
                self._watchdog.start()
        return self._conn

    def _fetch_once(
        self, conn: psycopg2.extensions.connection, read: CompiledRead, binds: dict[str, Any]
    ) -> list[Row]:
        if not (self._prepare and read.prepared):
            return _run_inline(conn, _SET_USER + read.plain, binds)
        preparation = _preparation(self._prepared, read)
        try:
            rows = _run_inline(conn, _SET_USER + preparation + read.execute, binds)
        except (
            psycopg2.errors.DuplicatePreparedStatement,
            psycopg2.errors.InvalidSqlStatementName,
        ):
            self._prepared.clear()  # not what we noted: begin the list again, as the pool does
            message = _SET_USER + "DEALLOCATE ALL; " + read.prepare + "; " + read.execute
            rows = _run_inline(conn, message, binds)
        self._prepared.add(read.name)
        return rows


def _run_inline(
    conn: psycopg2.extensions.connection, message: str, binds: dict[str, Any]
) -> list[Row]:
    """Send `message` (several statements) once; the last statement's rows."""
    with conn.cursor() as cursor:
        cursor.execute(message, binds)
        return cursor.fetchall()


class UserReader:
    """A ReadPool bound to the caller (and to the position its reads must see, if it sent
    one, or to the primary): what a request's read routes and queries receive."""

    __slots__ = ("_after", "_pool", "_primary", "_user_id")

    def __init__(
        self,
        pool: ReadPool,
        user_id: str,
        after: WalPosition | None = None,
        *,
        primary: bool = False,
    ) -> None:
        self._pool = pool
        self._user_id = user_id
        self._after = after
        self._primary = primary

    async def fetch(self, statement: TextClause, params: Mapping[str, Any]) -> list[Row]:
        return await self._pool.fetch(
            self._user_id, statement, params, self._after, primary=self._primary
        )

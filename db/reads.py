"""The query side's connections: psycopg 3 on the event loop, one message per read.

Each read is one simple-query message of two statements: the `set_config` that names the caller
for row-level security (with the statement and lock timeouts), then the query itself, as
`EXECUTE` of a statement prepared on the connection (its `PREPARE` sent along the first time).
PostgreSQL runs a message's statements as a single implicit transaction, so the
transaction-local settings cover the query and vanish with it, exactly as on the write side
(docs/adr/0003). Values are bound on the client (psycopg quotes them as literals). No BEGIN, no
COMMIT, no pre-ping, no thread: see ADR 0007, and ADR 0017 for the single message.
"""

import asyncio
import hashlib
import random
import re
import weakref
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import TextClause
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect

from db.connections import has_unread_input, libpq_url
from db.scope import SET_USER_SQL, Timeouts
from db.settings import DatabaseSettings

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

    def as_user(self, user_id: str) -> Reader: ...


_DIALECT = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]
COMPILED_STATEMENTS = 1024
"""Compiled statements kept per process: the list shapes reachable from query parameters number
in the hundreds of thousands, the ones in use at a time a few dozen."""

_COMPILED: dict[str, "CompiledRead"] = {}
_BIND = re.compile(r"%\((\w+)\)s")

PREPARED_PER_CONNECTION = 100
"""Statements kept prepared on one connection; past that, all are deallocated and begun anew."""


@dataclass(frozen=True, slots=True)
class CompiledRead:
    """A read statement in the forms one message needs (psycopg's `%(name)s` binds)."""

    plain: str
    prepare: str
    execute: str
    name: str

    @classmethod
    def of(cls, sql: str) -> "CompiledRead":
        names: list[str] = []
        for bind in _BIND.findall(sql):
            if bind not in names:
                names.append(bind)
        positional = _BIND.sub(lambda m: f"${names.index(m[1]) + 1}", sql)
        name = "r_" + hashlib.sha1(sql.encode(), usedforsecurity=False).hexdigest()[:24]
        arguments = ", ".join(f"%({bind})s" for bind in names)
        execute = f"EXECUTE {name}({arguments})" if names else f"EXECUTE {name}"
        return cls(plain=sql, prepare=f"PREPARE {name} AS {positional}", execute=execute, name=name)


def psycopg_sql(statement: TextClause) -> str:
    """The statement in psycopg's `%(name)s` style."""
    return compiled_read(statement).plain


def compiled_read(statement: TextClause) -> CompiledRead:
    """Compiled once per statement text; the oldest is forgotten once COMPILED_STATEMENTS are
    kept."""
    compiled = _COMPILED.get(statement.text)
    if compiled is None:
        if len(_COMPILED) >= COMPILED_STATEMENTS:
            del _COMPILED[next(iter(_COMPILED))]
        sql = str(statement.compile(dialect=_DIALECT))
        compiled = _COMPILED[statement.text] = CompiledRead.of(sql)
    return compiled


# SET_USER_SQL with its binds renamed (`taskapi_user_id`, ...): they cannot meet the query's own.
_SET_USER = re.sub(r":(\w+)", r"%(taskapi_\1)s", SET_USER_SQL.text) + "; "


async def _refuse_closed(conn: psycopg.AsyncConnection[Any]) -> None:
    # The pool's check at checkout: a socket poll, not a round trip (db/connections.py explains it).
    # Closed here, the connection is discarded by the pool, which hands out or makes another.
    if has_unread_input(conn):
        await conn.close()
        raise psycopg.OperationalError("the server closed this pooled connection")


class ReadPool:
    """Autocommit connections for the query side, shared by every request of a worker."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self._timeouts = Timeouts.from_settings(settings)
        self._prepare = settings.prepared_statements
        self._prepared: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], set[str]] = (
            weakref.WeakKeyDictionary()
        )
        self._pool = AsyncConnectionPool(
            libpq_url(settings.read_url()),
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
            name="reads",
        )

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    def connection(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """A pooled connection with nothing set on it (readiness probes, tests)."""
        return self._pool.connection()

    async def ping(self) -> None:
        async with self.connection() as conn:
            await conn.execute("SELECT 1")

    def as_user(self, user_id: str) -> "UserReader":
        return UserReader(self, user_id)

    async def fetch(
        self, user_id: str, statement: TextClause, params: Mapping[str, Any]
    ) -> list[Row]:
        read = compiled_read(statement)
        binds = {**params, **{"taskapi_" + k: v for k, v in self._timeouts.binds(user_id).items()}}
        for attempt in range(1, READ_ATTEMPTS + 1):
            async with self._pool.connection() as conn:
                try:
                    return await self._fetch_once(conn, read, binds)
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
        self, conn: psycopg.AsyncConnection[Any], read: CompiledRead, binds: dict[str, Any]
    ) -> list[Row]:
        if not self._prepare:
            return await _run(conn, _SET_USER + read.plain, binds)
        prepared = self._prepared.setdefault(conn, set())
        message = _SET_USER
        if read.name not in prepared:
            if len(prepared) >= PREPARED_PER_CONNECTION:
                message += "DEALLOCATE ALL; "
                prepared.clear()
            message += read.prepare + "; "
        try:
            rows = await _run(conn, message + read.execute, binds)
        except (psycopg.errors.DuplicatePreparedStatement, psycopg.errors.InvalidSqlStatementName):
            # The connection's prepared statements are not what we noted (a failed message
            # after its PREPARE, say): start its list again, with this statement prepared anew.
            prepared.clear()
            message = _SET_USER + "DEALLOCATE ALL; " + read.prepare + "; " + read.execute
            rows = await _run(conn, message, binds)
        prepared.add(read.name)
        return rows


async def _run(
    conn: psycopg.AsyncConnection[Any], message: str, binds: dict[str, Any]
) -> list[Row]:
    """Send `message` (several statements) once and return the last statement's rows."""
    cursor = psycopg.AsyncClientCursor(conn)
    await cursor.execute(message, binds)
    while cursor.nextset():
        pass
    return await cursor.fetchall()


class UserReader:
    """A ReadPool bound to the caller: what a request's read routes and queries receive."""

    __slots__ = ("_pool", "_user_id")

    def __init__(self, pool: ReadPool, user_id: str) -> None:
        self._pool = pool
        self._user_id = user_id

    async def fetch(self, statement: TextClause, params: Mapping[str, Any]) -> list[Row]:
        return await self._pool.fetch(self._user_id, statement, params)

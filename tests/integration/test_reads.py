"""The query side's pool (db/reads.py): one pipelined round trip per read, scoped to the caller,
under the read timeouts, and unbothered by connections the server has closed."""

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
import pytest
from sqlalchemy import Engine, text

from api.settings import Settings
from db import reads
from db.reads import ReadPool

T = TypeVar("T")

BACKEND_PID = text("SELECT pg_backend_pid()")
SETTINGS_NOW = text(
    "SELECT current_setting('app.user_id', true), current_setting('statement_timeout'),"
    " current_setting('lock_timeout')"
)
SHOW_SETTINGS = "SELECT current_setting('app.user_id', true), current_setting('statement_timeout')"


def with_pool(settings: Settings, use: Callable[[ReadPool], Awaitable[T]]) -> T:
    async def run() -> T:
        pool = ReadPool(settings)
        await pool.open()
        try:
            return await use(pool)
        finally:
            await pool.close()

    return asyncio.run(run())


@pytest.fixture
def one_connection(app_database_url: str) -> Settings:
    """A pool of exactly one connection, so every read reuses the connection just used."""
    return Settings(
        database_url=app_database_url,
        pool_size=1,
        max_overflow=0,
        statement_timeout_ms=200,
        lock_timeout_ms=100,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again when the with block ends: connections are refused


async def backend_pid(pool: ReadPool) -> int:
    ((pid,),) = await pool.fetch("alice", BACKEND_PID, {})
    return int(pid)


def test_a_read_runs_as_its_user_under_the_read_timeouts(one_connection: Settings) -> None:
    rows = with_pool(one_connection, lambda pool: pool.fetch("alice", SETTINGS_NOW, {}))
    assert rows == [("alice", "200ms", "100ms")]


def test_nothing_a_read_sets_outlives_it(one_connection: Settings) -> None:
    async def read_then_look(pool: ReadPool) -> tuple[object, ...] | None:
        await pool.fetch("alice", SETTINGS_NOW, {})
        async with pool.connection() as conn:
            return await (await conn.execute(SHOW_SETTINGS)).fetchone()

    assert with_pool(one_connection, read_then_look) in [(None, "0"), ("", "0")]


def test_a_read_that_runs_too_long_is_cancelled_and_not_retried(one_connection: Settings) -> None:
    async def sleep_then_read(pool: ReadPool) -> tuple[float, list[tuple[object, ...]]]:
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            await pool.fetch("alice", text("SELECT pg_sleep(2)"), {})
        elapsed = time.monotonic() - started
        return elapsed, await pool.fetch("alice", text("SELECT 1"), {})

    elapsed, after = with_pool(one_connection, sleep_then_read)

    assert elapsed < 0.6  # one 200 ms statement; a retry would have run it again
    assert after == [(1,)]  # and the connection still serves the next read


def test_a_pooled_connection_is_reused(one_connection: Settings) -> None:
    async def two_reads(pool: ReadPool) -> tuple[int, int]:
        return await backend_pid(pool), await backend_pid(pool)

    first, second = with_pool(one_connection, two_reads)
    assert first == second


@pytest.mark.parametrize("notice_seconds", [0.2, 0.0])
def test_a_read_on_a_connection_the_server_killed_still_answers(
    one_connection: Settings, engine: Engine, notice_seconds: float
) -> None:
    """0.2 s: the FATAL message has reached the socket, and the checkout check sees it. 0 s: it
    may not have, the read fails on the dead connection and is sent again on a new one."""

    async def kill_then_read(pool: ReadPool) -> tuple[int, int]:
        first = await backend_pid(pool)
        with engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        await asyncio.sleep(notice_seconds)
        return first, await backend_pid(pool)

    first, second = with_pool(one_connection, kill_then_read)
    assert second != first


def test_an_unreachable_database_fails_the_read_within_the_pool_timeout() -> None:
    settings = Settings(
        database_url=f"postgresql://nobody@127.0.0.1:{closed_port()}/none",
        pool_timeout_seconds=0.5,
    )
    started = time.monotonic()

    with pytest.raises(psycopg.OperationalError):
        with_pool(settings, backend_pid)

    assert time.monotonic() - started < 3


def test_compiled_statements_are_kept_up_to_a_bound() -> None:
    for n in range(reads.COMPILED_STATEMENTS + 50):
        assert reads.psycopg_sql(text(f"SELECT {n} WHERE :x")) == f"SELECT {n} WHERE %(x)s"
    assert len(reads._COMPILED) == reads.COMPILED_STATEMENTS

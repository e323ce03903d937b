"""Reads an index bounds, run on the event loop on one psycopg2 connection (db/reads.py,
ADR 0018): scoped and timed like the pool's, and never the reason a read fails."""

import asyncio
import socket
import time

import psycopg
import psycopg2
import pytest
from sqlalchemy import Engine, TextClause, text
from sqlalchemy.engine import make_url

from api.settings import Settings
from db import reads
from db.reads import ReadPool
from db.settings import DatabaseSettings
from tests.readers import with_pool
from tests.reliability.proxy import Proxy, upstream_for

# Marked as index-bounded so that they take the inline path.
INLINE_PID = text("SELECT pg_backend_pid() /* inline */").execution_options(**reads.INDEX_BOUNDED)
POOL_PID = text("SELECT pg_backend_pid() /* pool test */")
INLINE_SETTINGS = text(
    "SELECT current_setting('app.user_id', true), current_setting('statement_timeout'),"
    " current_setting('lock_timeout')"
).execution_options(**reads.INDEX_BOUNDED)
INLINE_SLEEP = text("SELECT pg_sleep(2)").execution_options(**reads.INDEX_BOUNDED)


@pytest.fixture
def inline(app_database_url: str) -> Settings:
    return Settings(
        database_url=app_database_url,
        inline_reads="on",
        pool_size=1,
        max_overflow=0,
        statement_timeout_ms=200,
        lock_timeout_ms=100,
        pool_timeout_seconds=1,
    )


async def pid(pool: ReadPool, statement: TextClause = INLINE_PID) -> int:
    ((found,),) = await pool.fetch("alice", statement, {})
    return int(found)


def test_bounded_reads_share_one_connection_apart_from_the_pool(inline: Settings) -> None:
    async def three_reads(pool: ReadPool) -> tuple[int, int, int]:
        return await pid(pool), await pid(pool), await pid(pool, POOL_PID)

    first, second, pooled = with_pool(inline, three_reads)
    assert first == second
    assert pooled != first


def test_an_inline_read_runs_as_its_user_under_the_read_timeouts(inline: Settings) -> None:
    rows = with_pool(inline, lambda pool: pool.fetch("alice", INLINE_SETTINGS, {}))
    assert rows == [("alice", "200ms", "100ms")]


def test_nothing_an_inline_read_sets_outlives_it(inline: Settings) -> None:
    async def read_then_look(pool: ReadPool) -> tuple[object, ...] | None:
        await pool.fetch("alice", INLINE_SETTINGS, {})
        assert pool.inline is not None
        assert pool.inline._conn is not None
        with pool.inline._conn.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('app.user_id', true), current_setting('statement_timeout')"
            )
            return cursor.fetchone()

    assert with_pool(inline, read_then_look) in [(None, "0"), ("", "0")]


def test_an_inline_read_that_runs_too_long_is_cancelled_once(inline: Settings) -> None:
    async def sleep_then_read(pool: ReadPool) -> tuple[float, int, int]:
        before = await pid(pool)
        started = time.monotonic()
        with pytest.raises(psycopg2.errors.QueryCanceled, match="statement timeout"):
            await pool.fetch("alice", INLINE_SLEEP, {})
        return time.monotonic() - started, before, await pid(pool)

    elapsed, before, after = with_pool(inline, sleep_then_read)
    assert elapsed < 0.6  # one 200 ms statement, not sent again to the pool
    assert after == before  # and the connection serves the next read


@pytest.mark.parametrize("notice_seconds", [0.2, 0.0])
def test_an_inline_read_on_a_connection_the_server_killed_still_answers(
    inline: Settings, engine: Engine, notice_seconds: float
) -> None:
    async def kill_then_read(pool: ReadPool) -> tuple[int, int, int]:
        first = await pid(pool)
        with engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        await asyncio.sleep(notice_seconds)
        answered = await pid(pool)  # by the pool if the dead connection was found mid-read
        return first, answered, await pid(pool)

    first, answered, later = with_pool(inline, kill_then_read)
    assert answered != first
    assert later != first  # a new inline connection


def test_an_unreachable_database_fails_an_inline_read_as_the_pool_does() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(  # the port is closed again: connections are refused
        database_url=f"postgresql://nobody@127.0.0.1:{port}/none",
        inline_reads="on",
        pool_timeout_seconds=0.5,
    )
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        with_pool(settings, pid)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app@127.0.0.1:5432/tasks", True),
        ("postgresql://app@localhost/tasks", True),
        ("postgresql://app:@/tasks?host=%2Fsrv%2Fpg", True),
        ("postgresql://app@ep-cool-name-pooler.eu-central-1.aws.neon.tech/tasks", False),
        ("postgresql://app@10.0.0.7:5432/tasks", False),
    ],
)
def test_inline_reads_are_on_by_themselves_only_for_a_server_on_this_machine(
    url: str, expected: bool
) -> None:
    assert reads.inline_reads(DatabaseSettings(database_url=url)) is expected
    assert reads.inline_reads(DatabaseSettings(database_url=url, inline_reads="off")) is False
    assert reads.inline_reads(DatabaseSettings(database_url=url, inline_reads="on")) is True


def test_a_server_that_stops_answering_holds_the_event_loop_only_briefly(
    app_database_url: str, inline: Settings
) -> None:
    """The proxy holds every reply for 4 s: the inline read's connection is severed once the
    statement timeout (0.2 s) and the grace have passed, and the pool then serves the read."""
    proxy = Proxy(upstream_for(app_database_url))
    url = make_url(app_database_url).set(host="127.0.0.1", port=proxy.port, query={})
    settings = inline.model_copy(
        update={
            "database_url": url.render_as_string(hide_password=False),
            "pool_timeout_seconds": 10,
        }
    )

    async def read_while_frozen(pool: ReadPool) -> tuple[float, list[tuple[object, ...]]]:
        await pid(pool)
        await pid(pool, POOL_PID)  # both connections made and the statement prepared
        gaps = [0.0]

        async def tick() -> None:
            while True:
                before = time.monotonic()
                await asyncio.sleep(0.02)
                gaps.append(time.monotonic() - before)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.1)
        proxy.delay = 4.0
        rows = await pool.fetch("alice", INLINE_SETTINGS, {})
        await asyncio.sleep(0.1)  # the ticker notes the gap a blocked loop left
        ticker.cancel()
        return max(gaps), rows

    try:
        longest_stall, rows = with_pool(settings, read_while_frozen)
    finally:
        proxy.delay = 0.0
        proxy.close()
    grace = 0.2 + reads.INLINE_GRACE_SECONDS
    assert grace - 0.1 < longest_stall < grace + 2 * reads.WATCH_EVERY_SECONDS + 0.3
    assert rows == [("alice", "200ms", "100ms")]  # from the pool, once the proxy delivered it

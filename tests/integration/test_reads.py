"""The query side's pool (db/reads.py): one message per read, scoped to the caller,
under the read timeouts, and unbothered by connections the server has closed."""

import asyncio
import socket
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from api.settings import Settings
from db import reads
from db.reads import ReadPool
from queries import tasks as queries
from queries.tasks import DueBound, Position, TaskFilters, TaskRow
from tests.readers import ConnectionReader, with_pool

BACKEND_PID = text("SELECT pg_backend_pid()")
SETTINGS_NOW = text(
    "SELECT current_setting('app.user_id', true), current_setting('statement_timeout'),"
    " current_setting('lock_timeout')"
)
SHOW_SETTINGS = "SELECT current_setting('app.user_id', true), current_setting('statement_timeout')"


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


SHAPES_USER = "reads-shapes"
SEED = text(
    """
    INSERT INTO tasks (user_id, id, title, description, completed, completed_at, due_date, due_at,
                       priority, tags)
    SELECT :user, n, 'task ' || n || CASE WHEN n % 3 = 0 THEN ' 100% _done_ \\' ELSE '' END,
           CASE WHEN n % 2 = 0 THEN 'note ' || n END,
           n % 4 = 0, CASE WHEN n % 4 = 0 THEN now() END,
           CASE WHEN n % 5 = 0 THEN DATE '2026-06-01' + n END,
           CASE WHEN n % 7 = 0 AND n % 5 <> 0
                THEN TIMESTAMPTZ '2026-06-01 12:00+00' + n * interval '1 hour' END,
           1 + n % 3, ARRAY['t' || n % 4, 'u' || n % 2]
    FROM generate_series(1, 60) AS n
    """
)
NOW = datetime(2026, 6, 20, 12, tzinfo=UTC)
BOUND = DueBound(day=date(2026, 6, 20), at=NOW)


@pytest.fixture
def committed_shapes(engine: Engine) -> Iterator[str]:
    """Tasks of every kind, committed so that the pool's own connections see them."""
    with engine.begin() as conn:
        conn.execute(SEED, {"user": SHAPES_USER})
    try:
        yield SHAPES_USER
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM tasks WHERE user_id = :user"), {"user": SHAPES_USER})


def shapes() -> list[dict[str, Any]]:
    filters = [
        TaskFilters(),
        TaskFilters(terms=("task",)),
        TaskFilters(terms=("100%", "_done_")),
        TaskFilters(terms=("\\",)),
        TaskFilters(tags=("t1", "u1"), tag_mode="any"),
        TaskFilters(tags=("t2", "u0"), tag_mode="all"),
        TaskFilters(priorities=frozenset({1, 3})),
        TaskFilters(due_before=BOUND, due_after=DueBound(day=date(2026, 6, 1), at=NOW)),
        TaskFilters(overdue=True, as_of=BOUND),
        TaskFilters(has_due=False),
        TaskFilters(updated_after=NOW - timedelta(days=3650)),
    ]
    return [
        {"status": status, "sort": sort, "order": order, "filters": f, "limit": 7, "after": after}
        for f in filters
        for status, sort, order, after in [
            ("all", "created", None, None),
            ("pending", "title", "desc", None),
            ("completed", "due_date", "asc", None),
            ("all", "priority", None, Position(key="2", id=30)),
            ("pending", "created", "asc", None),  # and the next two: read inline where allowed
            ("all", "updated", None, None),
        ]
    ]


def test_every_list_shape_reads_the_same_through_the_pool_as_in_sql(
    committed_shapes: str, app_engine: Engine, one_connection: Settings
) -> None:
    async def through_pool(pool: ReadPool) -> list[list[TaskRow]]:
        reader = pool.as_user(committed_shapes)
        return [await queries.list_tasks(reader, user_id=committed_shapes, **s) for s in shapes()]

    async def through_sqlalchemy() -> list[list[TaskRow]]:
        with app_engine.connect() as conn:
            reader = ConnectionReader(conn, committed_shapes, app_role=False)
            return [
                await queries.list_tasks(reader, user_id=committed_shapes, **s) for s in shapes()
            ]

    expected = asyncio.run(through_sqlalchemy())
    assert sum(map(len, expected)) > 100  # the shapes find rows, most of them
    for inline in ("on", "off"):
        settings = one_connection.model_copy(update={"inline_reads": inline})
        assert with_pool(settings, through_pool) == expected
        unprepared = settings.model_copy(update={"prepared_statements": False})
        assert with_pool(unprepared, through_pool) == expected


PREPARED = text("SELECT count(*) FROM pg_prepared_statements")


def test_a_connection_keeps_a_bounded_number_of_prepared_statements(
    one_connection: Settings,
) -> None:
    async def many_shapes(pool: ReadPool) -> tuple[list[int], int]:
        answers = [
            (await pool.fetch("alice", text(f"SELECT {n} + :x"), {"x": 1}))[0][0]
            for n in range(reads.PREPARED_PER_CONNECTION + 20)
        ]
        ((kept,),) = await pool.fetch("alice", PREPARED, {})
        return answers, int(kept)

    answers, kept = with_pool(one_connection, many_shapes)
    assert answers == [n + 1 for n in range(reads.PREPARED_PER_CONNECTION + 20)]
    assert 0 < kept <= reads.PREPARED_PER_CONNECTION


def test_a_statement_prepared_behind_the_pools_back_is_prepared_anew(
    one_connection: Settings,
) -> None:
    statement = text("SELECT :x || ' from the real statement'")

    async def collide(pool: ReadPool) -> list[tuple[object, ...]]:
        name = reads.compiled_read(statement).name
        async with pool.connection() as conn:
            await conn.execute(f"PREPARE {name} AS SELECT 'a stale statement'")
        return await pool.fetch("alice", statement, {"x": "an answer"})

    assert with_pool(one_connection, collide) == [("an answer from the real statement",)]


def test_searches_are_planned_for_their_values_and_never_prepared(
    one_connection: Settings,
) -> None:
    """A generic plan, made for an average user, walked all of a 200,000-task user's rows."""
    search, params = queries.list_query(user_id="alice", filters=TaskFilters(terms=("milk",)))
    plain, plain_params = queries.list_query(user_id="alice")
    names = text("SELECT name FROM pg_prepared_statements")

    async def both(pool: ReadPool) -> set[object]:
        for _ in range(6):  # past the five custom plans before a generic one is considered
            await pool.fetch("alice", search, params)
            await pool.fetch("alice", plain, plain_params)
        return {name for (name,) in await pool.fetch("alice", names, {})}

    for inline in ("on", "off"):
        settings = one_connection.model_copy(update={"inline_reads": inline})
        prepared = with_pool(settings, both)
        assert reads.compiled_read(search).name not in prepared
        assert reads.compiled_read(plain).name in prepared or inline == "on"

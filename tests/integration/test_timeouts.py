"""Every statement of the service runs under a statement and a lock timeout, set per transaction
in the same round trip that names the user, so they survive connection poolers."""

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from db.engine import (
    TIMEOUTS_OPTION,
    Timeouts,
    read_as,
    scope_reads_to_user,
    sqlalchemy_url,
    write_as,
)

SHORT = Timeouts(statement_ms=200, lock_ms=100)


@pytest.fixture
def short_read_engine(app_database_url: str) -> Iterator[Engine]:
    engine = create_engine(sqlalchemy_url(app_database_url), isolation_level="AUTOCOMMIT")
    scope_reads_to_user(engine, SHORT)
    yield engine
    engine.dispose()


def test_a_read_that_runs_too_long_is_cancelled(short_read_engine: Engine) -> None:
    with short_read_engine.connect() as conn:
        read_as(conn, "alice")
        assert conn.execute(text("SELECT current_setting('statement_timeout')")).scalar() == (
            "200ms"
        )
        with pytest.raises(OperationalError, match="statement timeout"):
            conn.execute(text("SELECT pg_sleep(2)"))


def test_the_read_timeout_does_not_outlive_its_statement(short_read_engine: Engine) -> None:
    with short_read_engine.connect() as conn:
        read_as(conn, "alice")
        conn.execute(text("SELECT 1"))
        read_as(conn, None)
        assert conn.execute(text("SELECT current_setting('statement_timeout')")).scalar() == "0"


def test_a_write_waiting_too_long_for_a_lock_is_cancelled(app_engine: Engine) -> None:
    with (
        Session(app_engine, info={TIMEOUTS_OPTION: SHORT}) as holder,
        Session(app_engine, info={TIMEOUTS_OPTION: SHORT}) as waiter,
    ):
        write_as(holder, "alice")
        write_as(waiter, "alice")
        holder.execute(text("SELECT pg_advisory_xact_lock(4242)"))
        assert waiter.execute(text("SELECT current_setting('lock_timeout')")).scalar() == "100ms"
        with pytest.raises(OperationalError, match="lock timeout"):
            waiter.execute(text("SELECT pg_advisory_xact_lock(4242)"))
        holder.rollback()

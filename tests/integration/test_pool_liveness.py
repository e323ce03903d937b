"""Pooled connections the server has closed are replaced at checkout, without a pre-ping."""

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, event, text

from db.engine import make_read_engine
from db.settings import Settings


@pytest.fixture
def read_engine(app_database_url: str) -> Iterator[Engine]:
    engine = make_read_engine(
        Settings(database_url=app_database_url, pool_size=1, pool_pre_ping=False)
    )
    yield engine
    engine.dispose()


def backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        pid: int = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return pid


def test_a_terminated_pooled_connection_is_replaced_before_use(
    read_engine: Engine, engine: Engine
) -> None:
    first = backend_pid(read_engine)
    with engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    time.sleep(0.2)  # the backend's FATAL message reaches the pooled socket

    assert backend_pid(read_engine) != first


def test_a_healthy_pooled_connection_is_reused_without_a_round_trip(read_engine: Engine) -> None:
    first = backend_pid(read_engine)
    statements: list[str] = []
    event.listen(read_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    assert backend_pid(read_engine) == first
    assert statements == ["SELECT pg_backend_pid()"]

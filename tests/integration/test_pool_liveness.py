"""Write-side pooled connections the server has closed are replaced at checkout, without a
pre-ping (the query side: tests/integration/test_reads.py)."""

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError

from api.settings import Settings
from db.engine import make_write_engine
from db.scope import WriteSessions


@pytest.fixture
def write_engine(app_database_url: str) -> Iterator[Engine]:
    engine = make_write_engine(
        Settings(database_url=app_database_url, pool_size=1, pool_pre_ping=False)
    )
    yield engine
    engine.dispose()


def backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        pid: int = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return pid


def test_a_terminated_pooled_connection_is_replaced_before_use(
    write_engine: Engine, engine: Engine
) -> None:
    first = backend_pid(write_engine)
    with engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    time.sleep(0.2)  # the backend's FATAL message reaches the pooled socket

    assert backend_pid(write_engine) != first


def test_a_healthy_pooled_connection_is_reused_without_a_round_trip(write_engine: Engine) -> None:
    first = backend_pid(write_engine)
    statements: list[str] = []
    event.listen(write_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    assert backend_pid(write_engine) == first
    assert statements == ["SELECT pg_backend_pid()"]


def test_a_write_whose_connection_dies_mid_transaction_fails_as_a_database_error(
    write_engine: Engine, engine: Engine
) -> None:
    with WriteSessions(write_engine).as_user("alice") as session:
        session.execute(text("SELECT 1"))  # the transaction has begun and named its user
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        time.sleep(0.2)

        with pytest.raises(OperationalError):
            session.execute(text("SELECT 2"))
        session.rollback()  # not PendingRollbackError: the dead connection is let go
    assert backend_pid(write_engine) != pid

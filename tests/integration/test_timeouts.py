"""Every statement of the service runs under a statement and a lock timeout, set per transaction
in the same round trip that names the user, so they survive connection poolers."""

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from db.scope import Timeouts, WriteSessions

SHORT = Timeouts(statement_ms=200, lock_ms=100)


def test_a_write_waiting_too_long_for_a_lock_is_cancelled(app_engine: Engine) -> None:
    with (
        WriteSessions(app_engine, SHORT).as_user("alice") as holder,
        WriteSessions(app_engine, SHORT).as_user("alice") as waiter,
    ):
        holder.execute(text("SELECT pg_advisory_xact_lock(4242)"))
        assert waiter.execute(text("SELECT current_setting('lock_timeout')")).scalar() == "100ms"
        with pytest.raises(OperationalError, match="lock timeout"):
            waiter.execute(text("SELECT pg_advisory_xact_lock(4242)"))
        holder.rollback()

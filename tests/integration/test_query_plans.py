"""The read side is served by per-user indexes, never by scanning other users' rows."""

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, TextClause, text

from queries.tasks import GET_TASK_SQL, LIST_TASKS_SQL, Sort, Status

USERS = 1_000
TASKS_PER_USER = 100

FILL = text(
    """
    INSERT INTO tasks (user_id, id, title, completed, completed_at, due_date)
    SELECT 'user-' || (n % :users),
           n,
           'task ' || n,
           n % 3 = 0,
           CASE WHEN n % 3 = 0 THEN now() END,
           CASE WHEN n % 2 = 0 THEN date '2026-01-01' + (n % 365) END
    FROM generate_series(1, :rows) AS n
    """
)


@pytest.fixture(scope="module")
def crowded(engine: Engine) -> Iterator[Connection]:
    """One filled table for the whole module, rolled back at its end."""
    with engine.connect() as conn, conn.begin() as transaction:
        conn.execute(FILL, {"users": USERS, "rows": USERS * TASKS_PER_USER})
        conn.execute(text("ANALYZE tasks"))
        yield conn
        transaction.rollback()


def plan(conn: Connection, statement: TextClause, **params: object) -> str:
    rows = conn.execute(text("EXPLAIN " + statement.text), params)
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize(("status", "sort"), sorted(LIST_TASKS_SQL))
def test_every_list_query_uses_a_user_index(
    crowded: Connection, status: Status, sort: Sort
) -> None:
    shown = plan(crowded, LIST_TASKS_SQL[(status, sort)], user_id="user-7", limit=101)

    assert "Seq Scan" not in shown, shown
    assert "Index" in shown, shown
    assert "tasks_" in shown, shown


def test_pending_list_uses_the_partial_index(crowded: Connection) -> None:
    shown = plan(crowded, LIST_TASKS_SQL[("pending", "created")], user_id="user-7", limit=101)
    assert "tasks_user_pending_created_idx" in shown, shown


def test_reading_one_task_uses_the_primary_key(crowded: Connection) -> None:
    shown = plan(crowded, GET_TASK_SQL, user_id="user-7", task_id=7)
    assert "Index Scan using tasks_pkey" in shown, shown

"""The change feed is read through per-user indexes on a sizeable table (100,000 tasks and
50,000 tombstones over 1,000 users): a poll with a current token merges two short index scans,
a first sync walks one, and the purge finds expired tombstones by their own index."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, TextClause, text

from commands.changes import PURGE_TOMBSTONES_SQL
from queries.changes import CHANGES_SINCE_SQL, CURRENT_TASKS_SQL

USERS = 1_000
TASKS_PER_USER = 100
TOMBSTONES_PER_USER = 50
USER = "user-7"
HEAVY_USER = "user-heavy"
HEAVY_TASKS = 20_000

# Numbered here as migration 0007's trigger would number them (each user's tasks 1, 2, 3...),
# with triggers off for the fill: a trigger per row made it take a minute.
NO_TRIGGERS = text("SET LOCAL session_replication_role = replica")
FILL_TASKS = text(
    "INSERT INTO tasks (user_id, id, title, change_seq)"
    " SELECT 'user-' || (n % :users), n, 'task ' || n, n / :users + 1"
    " FROM generate_series(1, :rows) AS n"
)
FILL_HEAVY = text(
    "INSERT INTO tasks (user_id, id, title, change_seq)"
    " SELECT :user_id, n, 'task ' || n, n FROM generate_series(1, :rows) AS n"
)
FILL_TOMBSTONES = text(
    """
    INSERT INTO task_tombstones (user_id, id, change_seq, deleted_at)
    SELECT 'user-' || (n % :users), 1000000 + n, 1000 + n / :users,
           now() - (n % 60) * interval '1 day'
    FROM generate_series(1, :rows) AS n
    """
)


@pytest.fixture(scope="module")
def crowded(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin() as transaction:
        conn.execute(NO_TRIGGERS)
        conn.execute(FILL_TASKS, {"users": USERS, "rows": USERS * TASKS_PER_USER})
        conn.execute(FILL_HEAVY, {"user_id": HEAVY_USER, "rows": HEAVY_TASKS})
        conn.execute(FILL_TOMBSTONES, {"users": USERS, "rows": USERS * TOMBSTONES_PER_USER})
        conn.execute(text("ANALYZE tasks"))
        conn.execute(text("ANALYZE task_tombstones"))
        conn.execute(text("RESET session_replication_role"))
        yield conn
        transaction.rollback()


def plan(conn: Connection, statement: TextClause, **params: object) -> str:
    rows = conn.execute(text("EXPLAIN " + statement.text), params)
    return "\n".join(row[0] for row in rows)


def test_a_poll_with_a_current_token_merges_two_index_scans(crowded: Connection) -> None:
    shown = plan(crowded, CHANGES_SINCE_SQL, user_id=USER, since=2000, limit=501)

    assert "Seq Scan" not in shown, shown
    assert "Merge Append" in shown, shown
    assert "tasks_user_change_idx" in shown, shown
    assert "task_tombstones_user_change_idx" in shown, shown


def test_a_first_sync_reads_only_the_users_tasks_and_no_tombstones(crowded: Connection) -> None:
    shown = plan(crowded, CURRENT_TASKS_SQL, user_id=USER, since=0, limit=501)

    assert "Seq Scan" not in shown, shown
    assert "Index Cond: ((user_id)::text = 'user-7'::text)" in shown, shown
    assert "task_tombstones" not in shown, shown


def test_a_first_sync_of_many_tasks_walks_the_change_index_in_order(crowded: Connection) -> None:
    shown = plan(crowded, CURRENT_TASKS_SQL, user_id=HEAVY_USER, since=0, limit=501)

    assert "Seq Scan" not in shown, shown
    assert "Index Scan using tasks_user_change_idx" in shown, shown


def test_the_purge_finds_expired_tombstones_by_their_deletion_index(crowded: Connection) -> None:
    before = datetime.now(UTC) - timedelta(days=30)
    shown = plan(crowded, PURGE_TOMBSTONES_SQL, user_id=USER, before=before, batch=500)

    assert "Seq Scan on task_tombstones" not in shown, shown
    assert "task_tombstones_user_deleted_idx" in shown, shown

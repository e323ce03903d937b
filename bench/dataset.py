"""The benchmark's dataset, generated inside PostgreSQL with INSERT ... SELECT generate_series.

Generating rows server-side measured about 3x faster here than streaming COPY text from Python
(1M rows: 6.0 s against 18.4 s, of which 11 s was Python formatting the lines), so the rows
never leave the server. Keys and indexes are dropped first and rebuilt afterwards: one sorted
build per index beats a million index insertions.

Task `i` (1..tasks) belongs to user `1 + (i - 1) % users`, so pgbench can pick a real
(user_id, id) pair with integer arithmetic alone (its `\\set` has no strings). User ids are
decimal strings, which the service's user_id pattern accepts. Ids rise with `created_at`, as
identity values do in production, so each user's newest tasks are its highest ids.
"""

import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

COMPLETED_SHARE = 0.4
DUE_DATE_SHARE = 0.5
DESCRIPTION_SHARE = 0.3

# Titles draw from a small vocabulary so a future `q=` search has words to find.
GENERATE_TASKS_SQL = text(
    """
INSERT INTO tasks (user_id, id, title, description, completed, completed_at, due_date,
                   created_at, updated_at)
SELECT (1 + (i - 1) % :users)::text,
       i,
       (ARRAY['buy', 'call', 'write', 'review', 'fix', 'plan', 'book', 'send', 'clean',
              'read'])[1 + i % 10]
         || ' ' || (ARRAY['milk', 'report', 'invoice', 'tickets', 'garden', 'slides', 'car',
                          'letter', 'budget'])[1 + i % 9]
         || ' ' || i,
       CASE WHEN random() < :description_share THEN 'notes for task ' || i END,
       done,
       CASE WHEN done THEN created + make_interval(hours => 1 + i % 97) END,
       CASE WHEN random() < :due_date_share THEN date '2025-06-01' + i % 400 END,
       created,
       CASE WHEN done THEN created + make_interval(hours => 1 + i % 97) ELSE created END
FROM (SELECT i,
             random() < :completed_share AS done,
             timestamptz '2025-01-01 00:00:00+00' + i * (interval '365 days' / :tasks) AS created
      FROM generate_series(1, :tasks) AS i) AS generated
"""
)
SET_SEED_SQL = text("SELECT setseed(:seed)")
# The next POST must not collide with the ids the load chose.
ADVANCE_IDS_SQL = text("SELECT setval(pg_get_serial_sequence('tasks', 'id'), :tasks)")
DELETE_ADDED_SQL = text("DELETE FROM tasks WHERE id > :tasks")
KEYS_SQL = text(
    "SELECT conname AS name, pg_get_constraintdef(oid) AS ddl FROM pg_constraint"
    " WHERE conrelid = 'tasks'::regclass AND contype IN ('p', 'u')"
)
INDEXES_SQL = text(
    "SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS ddl"
    " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " WHERE i.indrelid = 'tasks'::regclass"
    " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"
)


@dataclass(frozen=True, kw_only=True)
class LoadStats:
    tasks: int
    users: int
    method: str
    insert_seconds: float
    index_seconds: float
    vacuum_seconds: float

    @property
    def total_seconds(self) -> float:
        return self.insert_seconds + self.index_seconds + self.vacuum_seconds


@dataclass(frozen=True)
class Schema:
    """The keys and indexes of `tasks`, as DDL that recreates them."""

    keys: list[tuple[str, str]]
    indexes: list[tuple[str, str]]


def load(engine: Engine, *, tasks: int, users: int, seed: int) -> LoadStats:
    """Replace the contents of `tasks` with the generated dataset, then VACUUM ANALYZE it."""
    with engine.begin() as conn:
        schema = _drop_keys_and_indexes(conn)
        started = time.perf_counter()
        _generate(conn, tasks=tasks, users=users, seed=seed)
        inserted = time.perf_counter()
        _rebuild(conn, schema)
        conn.execute(ADVANCE_IDS_SQL, {"tasks": tasks})
        indexed = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM (ANALYZE) tasks"))
    return LoadStats(
        tasks=tasks,
        users=users,
        method="INSERT ... SELECT generate_series (server-side), keys and indexes rebuilt after",
        insert_seconds=inserted - started,
        index_seconds=indexed - inserted,
        vacuum_seconds=time.perf_counter() - indexed,
    )


def remove_added_rows(engine: Engine, *, tasks: int) -> float:
    """Undo a write workload's inserts and vacuum away its dead rows; return the seconds taken.

    pgbench inserts hundreds of thousands of rows in a `create` run; left in place they would
    lengthen every later `list` and make the workloads depend on their order. Toggled rows stay
    toggled: the completed share drifts by a few points at most.
    """
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(DELETE_ADDED_SQL, {"tasks": tasks})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM (ANALYZE) tasks"))
    return time.perf_counter() - started


def _generate(conn: Connection, *, tasks: int, users: int, seed: int) -> None:
    # setseed makes random() repeatable within this session: the same seed, the same dataset.
    conn.execute(SET_SEED_SQL, {"seed": (seed % 1000) / 1000})
    conn.execute(
        GENERATE_TASKS_SQL,
        {
            "tasks": tasks,
            "users": users,
            "completed_share": COMPLETED_SHARE,
            "due_date_share": DUE_DATE_SHARE,
            "description_share": DESCRIPTION_SHARE,
        },
    )


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _drop_keys_and_indexes(conn: Connection) -> Schema:
    schema = Schema(
        keys=[(row.name, row.ddl) for row in conn.execute(KEYS_SQL)],
        indexes=[(row.name, row.ddl) for row in conn.execute(INDEXES_SQL)],
    )
    for name, _ in schema.indexes:
        conn.execute(text("DROP INDEX " + _quote(name)))
    for name, _ in schema.keys:
        conn.execute(text("ALTER TABLE tasks DROP CONSTRAINT " + _quote(name)))
    conn.execute(text("TRUNCATE tasks"))
    return schema


def _rebuild(conn: Connection, schema: Schema) -> None:
    conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
    for name, ddl in schema.keys:
        conn.execute(text("ALTER TABLE tasks ADD CONSTRAINT " + _quote(name) + " " + ddl))
    for _, ddl in schema.indexes:
        conn.execute(text(ddl))

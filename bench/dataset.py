"""The benchmark's dataset, generated inside PostgreSQL (3x faster here than COPY from Python),
with keys and indexes dropped first and rebuilt after (one sorted build beats a million inserts).

Task `i` (1..tasks) belongs to user `1 + (i - 1) % users`, so pgbench picks a real (user, id)
pair with integer arithmetic; HEAVY_USER owns the ids after those. A growth run appends ordinary
tasks with the same owners and spacing in time.
"""

import logging
import time
from dataclasses import asdict, dataclass, replace

from sqlalchemy import Connection, Engine, text

from bench.config import BenchConfig
from bench.workloads import HEAVY_MATCHES, HEAVY_USER, HEAVY_WORD

log = logging.getLogger(__name__)

# Titles draw from a small vocabulary so `q=` has words to find. Series rows `first..last` get
# ids `i + id_offset`, spaced over one year by `scale`, owned by `owner` or else, by id, by the
# ordinary users; each row's number in its owner's change feed (migration 0007) rises with id.
GENERATE_TASKS_SQL = text(
    """
INSERT INTO tasks (user_id, id, title, description, completed, completed_at, due_date,
                   created_at, updated_at, change_seq)
SELECT coalesce(CAST(:owner AS text), (1 + (id - 1) % :users)::text),
       id,
       CASE WHEN :match_every > 0 AND i % greatest(:match_every, 1) = 0
                 AND i <= :match_every * :matches
            THEN 'see the ' || :match_word || ' ' || id
            ELSE (ARRAY['buy', 'call', 'write', 'review', 'fix', 'plan', 'book', 'send', 'clean',
                        'read'])[1 + id % 10]
              || ' ' || (ARRAY['milk', 'report', 'invoice', 'tickets', 'garden', 'slides', 'car',
                               'letter', 'budget'])[1 + id % 9]
              || ' ' || id
       END,
       CASE WHEN random() < 0.3 THEN 'notes for task ' || id END,
       done,
       CASE WHEN done THEN created + make_interval(hours => 1 + id % 97) END,
       CASE WHEN random() < 0.5 THEN date '2025-06-01' + id % 400 END,
       created,
       CASE WHEN done THEN created + make_interval(hours => 1 + id % 97) ELSE created END,
       CASE WHEN CAST(:owner AS text) IS NULL THEN (id - 1) / :users + 1 ELSE i END
FROM (SELECT i, i + :id_offset AS id, random() < 0.4 AS done,
             timestamptz '2025-01-01 00:00:00+00' + i * (interval '365 days' / :scale) AS created
      FROM generate_series(:first, :last) AS i) AS generated
"""
)
# The triggers (change numbers, tombstones, the search copy of migration 0008) are off while
# rows are generated; the search copy is filled in one statement instead, row by row costs 20x.
TRIGGERS_OFF_SQL = text("ALTER TABLE tasks DISABLE TRIGGER USER")
TRIGGERS_ON_SQL = text("ALTER TABLE tasks ENABLE TRIGGER USER")
FILL_SEARCH_SQL = text(
    "INSERT INTO task_search (user_id, task_id, search_text, tags)"
    " SELECT user_id, id, title || ' ' || coalesce(description, ''), tags FROM tasks"
    " ON CONFLICT DO NOTHING"
)
SET_SEED_SQL = text("SELECT setseed(:seed)")
# Every user's next create takes the id after its highest, and the next change the number after
# its highest (its tombstones' included: a number is never given twice).
SYNC_COUNTERS_SQL = text(
    """
    DELETE FROM task_counters;
    INSERT INTO task_counters (user_id, last_id, last_change)
    SELECT user_id, coalesce(max(id) FILTER (WHERE live), 0), max(change_seq)
    FROM (SELECT user_id, id, change_seq, true AS live FROM tasks
          UNION ALL SELECT user_id, id, change_seq, false FROM task_tombstones) AS numbered
    GROUP BY user_id
    """
)
# A workload's new task continues its user's ids, which interleave with other users' loaded ones,
# so what the load wrote is recognised by its owner-and-id pattern, not by an id threshold.
DELETE_ADDED_SQL = text(
    """
    DELETE FROM tasks
    WHERE NOT (id <= :tasks AND user_id = (1 + (id - 1) % :users)::text)
      AND NOT (user_id = :heavy AND id > :tasks AND id <= :last_id)
    """
)
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
VACUUM_SQL = text("VACUUM (ANALYZE) tasks")


@dataclass(frozen=True, kw_only=True)
class LoadStats:
    tasks: int  # ordinary tasks: ids 1..tasks
    users: int
    heavy_user_tasks: int  # tasks of HEAVY_USER: the ids after the ordinary ones
    method: str
    insert_seconds: float = 0
    index_seconds: float = 0
    vacuum_seconds: float = 0

    @property
    def last_id(self) -> int:
        """The highest id the load wrote; anything above it a workload added."""
        return self.tasks + self.heavy_user_tasks

    @property
    def total_seconds(self) -> float:
        return self.insert_seconds + self.index_seconds + self.vacuum_seconds


@dataclass(frozen=True, kw_only=True)
class Rows:
    """One INSERT ... SELECT of the generator: series rows `first..last`, owned as `owner` says."""

    first: int
    last: int
    id_offset: int = 0
    scale: int  # rows per year of `created_at`: the spacing of the series in time
    owner: str | None = None  # one user for every row; None: the ordinary users, by id
    match_every: int = 0  # every this many rows has HEAVY_WORD in the title (0: none)


def load(engine: Engine, config: BenchConfig) -> LoadStats:
    """Replace the contents of `tasks` with the generated dataset, then VACUUM ANALYZE it."""
    tasks, heavy_tasks = config.tasks, config.heavy_user_tasks
    batches = [Rows(first=1, last=tasks, scale=tasks)]
    if heavy_tasks:
        # Spread over the same year as everyone else's, with the ids after theirs.
        every = max(1, heavy_tasks // HEAVY_MATCHES)
        heavy = Rows(first=1, last=heavy_tasks, scale=heavy_tasks, match_every=every)
        batches.append(replace(heavy, id_offset=tasks, owner=HEAVY_USER))
    method = "INSERT ... SELECT generate_series (server-side), keys and indexes rebuilt after"
    stats = LoadStats(tasks=tasks, users=config.users, heavy_user_tasks=heavy_tasks, method=method)
    return _write(engine, batches, stats=stats, seed=config.seed, truncate=True)


def grow(engine: Engine, loaded: LoadStats, config: BenchConfig) -> LoadStats:
    """Append ordinary tasks up to `growth_tasks` in batches, like the loaded; rebuild; VACUUM."""
    batch, tasks = config.growth_batch, config.growth_tasks
    method = f"appended by INSERT ... SELECT generate_series in batches of {batch:,} rows"
    method += " (server-side), keys and indexes rebuilt after"
    stats = replace(loaded, tasks=tasks, method=method)
    batches = growth_batches(loaded.tasks, tasks, batch=batch)
    return _write(engine, batches, stats=stats, seed=config.seed + 1, truncate=False)


def growth_batches(loaded: int, tasks: int, *, batch: int) -> list[Rows]:
    """Ordinary rows `loaded + 1 .. tasks`, `batch` per statement, spaced as the first `loaded`."""
    return [
        Rows(first=first, last=min(first + batch - 1, tasks), scale=loaded)
        for first in range(loaded + 1, tasks + 1, batch)
    ]


def _write(
    engine: Engine, batches: list[Rows], *, stats: LoadStats, seed: int, truncate: bool
) -> LoadStats:
    with engine.begin() as conn:
        conn.execute(TRIGGERS_OFF_SQL)
        schema = _drop_keys_and_indexes(conn, truncate=truncate)
        started = time.perf_counter()
        # setseed makes random() repeatable within this session: the same seed, the same rows.
        conn.execute(SET_SEED_SQL, {"seed": (seed % 1000) / 1000})
        binds = {"users": stats.users, "matches": HEAVY_MATCHES, "match_word": HEAVY_WORD}
        for number, rows in enumerate(batches, start=1):
            conn.execute(GENERATE_TASKS_SQL, asdict(rows) | binds)
            log.info("  rows %s..%s written (%d/%d)", rows.first, rows.last, number, len(batches))
        inserted = time.perf_counter()
        conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
        for ddl in schema:
            conn.execute(text(ddl))
        conn.execute(FILL_SEARCH_SQL)
        conn.execute(SYNC_COUNTERS_SQL)
        conn.execute(TRIGGERS_ON_SQL)
        indexed = time.perf_counter()
    _vacuum(engine)
    vacuumed = time.perf_counter()
    log.info("  %s tasks written in %.1fs", f"{stats.tasks:,}", vacuumed - started)
    return replace(
        stats,
        insert_seconds=inserted - started,
        index_seconds=indexed - inserted,
        vacuum_seconds=vacuumed - indexed,
    )


def remove_added_rows(engine: Engine, loaded: LoadStats) -> float:
    """Undo a write workload's inserts (so later workloads see the loaded rows) and vacuum;
    return the seconds taken. Toggled rows stay toggled: the completed share drifts a little."""
    started = time.perf_counter()
    binds = {"tasks": loaded.tasks, "users": loaded.users, "heavy": HEAVY_USER}
    with engine.begin() as conn:
        conn.execute(DELETE_ADDED_SQL, binds | {"last_id": loaded.last_id})
        conn.execute(SYNC_COUNTERS_SQL)  # the next run's new tasks get the same ids as this one's
    _vacuum(engine)
    return time.perf_counter() - started


def _vacuum(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(VACUUM_SQL)


def _drop_keys_and_indexes(conn: Connection, *, truncate: bool) -> list[str]:
    """Drop the keys and indexes of `tasks` (and its rows if `truncate`); DDL to rebuild them."""
    quote = conn.dialect.identifier_preparer.quote_identifier
    keys = [(row.name, row.ddl) for row in conn.execute(KEYS_SQL)]
    indexes = [(row.name, row.ddl) for row in conn.execute(INDEXES_SQL)]
    for name, _ in indexes:
        conn.execute(text("DROP INDEX " + quote(name)))
    for name, _ in keys:
        conn.execute(text("ALTER TABLE tasks DROP CONSTRAINT " + quote(name)))
    if truncate:
        conn.execute(text("TRUNCATE tasks, task_search, task_tombstones"))
    rebuild = ["ALTER TABLE tasks ADD CONSTRAINT " + quote(name) + " " + ddl for name, ddl in keys]
    return rebuild + [ddl for _, ddl in indexes]

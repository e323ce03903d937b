"""Tombstone purging: the write side of the change feed (the read side is queries/changes.py).

A deleted task's tombstone (migration 0007) is kept TOMBSTONE_RETENTION_DAYS. The service purges
a user's expired tombstones itself, in batches of at most PURGE_BATCH rows, each batch its own
short transaction, and raises the user's purge mark past them in the same statement: a change
token from before the mark is then answered 410 (docs/adr/0014).
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlmodel import Session

PURGE_BATCH = 500

PURGE_TOMBSTONES_SQL = text(
    """
    WITH purged AS (
        DELETE FROM task_tombstones
        WHERE user_id = :user_id AND id IN (
            SELECT id FROM task_tombstones
            WHERE user_id = :user_id AND deleted_at < :before
            ORDER BY deleted_at LIMIT :batch)
        RETURNING change_seq
    ), marked AS (
        UPDATE task_counters SET purged_through = greatest(purged_through, top.seq)
        FROM (SELECT max(change_seq) AS seq FROM purged) AS top
        WHERE user_id = :user_id AND top.seq IS NOT NULL
        RETURNING 1
    )
    SELECT count(*) FROM purged
    """
)


@dataclass(frozen=True, kw_only=True)
class PurgeTombstones:
    user_id: str
    before: datetime
    """Tombstones of deletions before this instant go."""
    batch: int = PURGE_BATCH


def purge_tombstones(cmd: PurgeTombstones, session: Session) -> int:
    """Delete one batch of the user's expired tombstones; how many went (the caller commits)."""
    binds = {"user_id": cmd.user_id, "before": cmd.before, "batch": cmd.batch}
    return int(session.execute(PURGE_TOMBSTONES_SQL, binds).scalar_one())

"""Read side of the change feed: the user's changes after a number of their change sequence.

Every task insert, update and delete takes the next number of its user's sequence under the
user's counter row lock (migration 0007), so numbers become visible in order: a page that reads
up to number n in one statement has seen every change up to n (docs/adr/0014). A task appears
once, at the number of its latest change; a deleted task as its tombstone.

The page and the user's feed state (last number, purge mark) come from one statement, so they
are read in one snapshot: a `next` taken from the state is never ahead of the rows read with it.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import text

from db.reads import INDEX_BOUNDED, Reader
from queries.tasks import TaskRow

Op = Literal["upsert", "delete"]

DEFAULT_LIMIT = 500
MAX_LIMIT = 1000

_STATE = (
    "SELECT coalesce(max(last_change), 0) AS last_change,"
    " coalesce(max(purged_through), 0) AS purged_through"
    " FROM change_state_v WHERE user_id = :user_id"
)
_PAGE_COLUMNS = (
    "change_seq, op, deleted_at, id, user_id, title, description, completed, completed_at,"
    " due_date, created_at, updated_at, version, priority, tags, due_at"
)


def _page_sql(only_tasks: bool) -> str:
    where = " AND op = 'upsert'" if only_tasks else ""
    return (
        "SELECT state.last_change, state.purged_through, page.*"
        " FROM (" + _STATE + ") AS state"
        " LEFT JOIN LATERAL (SELECT " + _PAGE_COLUMNS + " FROM task_changes_v"
        " WHERE user_id = :user_id AND change_seq > :since" + where + ""
        " ORDER BY change_seq LIMIT :limit) AS page ON true"
        " ORDER BY page.change_seq"
    )


CHANGES_SINCE_SQL = text(_page_sql(only_tasks=False)).execution_options(**INDEX_BOUNDED)
"""Tasks changed and tombstones left after number `:since`."""
CURRENT_TASKS_SQL = text(_page_sql(only_tasks=True))
"""The user's current tasks after number `:since` (a first download: no tombstones)."""


class ChangesGone(Exception):
    """Deletions after the token may have been missed: tombstones after it were purged, or the
    database was restored from a backup older than the token."""

    def __init__(self, since: int, purged_through: int) -> None:
        super().__init__(f"changes after {since} are gone (purged through {purged_through})")
        self.since = since


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    op: Op
    id: int
    deleted_at: datetime | None
    task: TaskRow | None
    """The task as it is now (op "upsert"); None for a deletion."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangePage:
    changes: list[Change]
    next: int
    """The number a following read starts after."""
    has_more: bool


def _change(row: tuple[Any, ...]) -> Change:
    seq, op, deleted_at, task_id = row[2:6]
    task = TaskRow(*row[5:]) if op == "upsert" else None
    return Change(seq=seq, op=op, id=task_id, deleted_at=deleted_at, task=task)


async def read_changes(
    reader: Reader,
    *,
    user_id: str,
    since: int | None,
    limit: int = DEFAULT_LIMIT,
) -> ChangePage:
    """At most `limit` changes after number `since`, in order; with `since` None, the user's
    current tasks instead (no deletions), from the start. ChangesGone if a tombstone after
    `since` has been purged."""
    statement = CURRENT_TASKS_SQL if since is None else CHANGES_SINCE_SQL
    binds = {"user_id": user_id, "since": since or 0, "limit": limit + 1}
    rows = await reader.fetch(statement, binds)
    last_change, purged_through = rows[0][0], rows[0][1]
    # Below the purge mark a deletion may have been missed; above the last number, the token
    # is from before a restore of an older backup, whose numbers will be given out again.
    if since is not None and not purged_through <= since <= last_change:
        raise ChangesGone(since, purged_through)
    changes = [_change(row) for row in rows if row[2] is not None]
    has_more = len(changes) > limit
    changes = changes[:limit]
    next_seq = changes[-1].seq if has_more else last_change
    return ChangePage(changes=changes, next=next_seq, has_more=has_more)

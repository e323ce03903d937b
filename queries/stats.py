"""Read side for a user's task counts: one aggregate over the user-scoped view `task_list_v`."""

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import text

from db.reads import Reader

# "Overdue" and "due today" are as the caller's time zone sees them: the router passes today's
# date there and the instants at which today starts and ends.
TASK_STATS_SQL = text(
    """
    SELECT count(*) AS total,
           count(*) FILTER (WHERE NOT completed) AS pending,
           count(*) FILTER (WHERE completed) AS completed,
           count(*) FILTER (WHERE NOT completed AND (due_date < :today OR due_at < :now))
               AS overdue,
           count(*) FILTER (WHERE NOT completed
                            AND (due_date = :today
                                 OR (due_at >= :today_starts AND due_at < :today_ends)))
               AS due_today,
           count(*) FILTER (WHERE priority_rank = 1) AS low,
           count(*) FILTER (WHERE priority_rank = 2) AS medium,
           count(*) FILTER (WHERE priority_rank = 3) AS high
    FROM task_list_v
    WHERE user_id = :user_id
    """
)


@dataclass(frozen=True, slots=True)
class StatsRow:
    total: int
    pending: int
    completed: int
    overdue: int
    due_today: int
    low: int
    medium: int
    high: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Today:
    """Today in the caller's time zone: its date, the current instant, and the day's bounds."""

    day: date
    now: datetime
    starts: datetime
    ends: datetime


async def task_stats(reader: Reader, *, user_id: str, today: Today) -> StatsRow:
    params = {
        "user_id": user_id,
        "today": today.day,
        "now": today.now,
        "today_starts": today.starts,
        "today_ends": today.ends,
    }
    (row,) = await reader.fetch(TASK_STATS_SQL, params)
    return StatsRow(*row)

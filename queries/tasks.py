"""Read side for tasks: parameterised SQL over the user-scoped view `task_list_v`.

Every function takes `user_id` as a required keyword and puts it in the WHERE clause; the view's
rows are never read without it.
"""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from sqlalchemy import Connection, TextClause, text

Status = Literal["all", "pending", "completed"]
Sort = Literal["created", "title", "due_date"]


@dataclass(frozen=True, slots=True)
class TaskRow:
    id: int
    user_id: str
    title: str
    description: str | None
    completed: bool
    completed_at: datetime | None
    due_date: date | None
    created_at: datetime
    updated_at: datetime
    version: int


_COLUMNS = (
    "id, user_id, title, description, completed, completed_at, due_date, created_at, updated_at,"
    " version"
)
_FROM_VIEW = "SELECT " + _COLUMNS + " FROM task_list_v WHERE user_id = :user_id"

_STATUS_FILTERS: dict[Status, str] = {
    "all": "",
    "pending": " AND NOT completed",
    "completed": " AND completed",
}
# Each order ends in id so ties are stable; each matches an index on tasks (see db/models.py).
_ORDERS: dict[Sort, str] = {
    "created": " ORDER BY created_at DESC, id DESC",
    "title": " ORDER BY lower(title), id",
    "due_date": " ORDER BY due_date ASC NULLS LAST, id",
}

LIST_TASKS_SQL: dict[tuple[Status, Sort], TextClause] = {
    (status, sort): text(_FROM_VIEW + status_filter + order)
    for status, status_filter in _STATUS_FILTERS.items()
    for sort, order in _ORDERS.items()
}

GET_TASK_SQL = text(_FROM_VIEW + " AND id = :task_id")


def list_tasks(
    conn: Connection, *, user_id: str, status: Status = "all", sort: Sort = "created"
) -> list[TaskRow]:
    rows = conn.execute(LIST_TASKS_SQL[(status, sort)], {"user_id": user_id})
    return [TaskRow(**row._mapping) for row in rows]


def get_task(conn: Connection, *, user_id: str, task_id: int) -> TaskRow | None:
    row = conn.execute(GET_TASK_SQL, {"user_id": user_id, "task_id": task_id}).one_or_none()
    return None if row is None else TaskRow(**row._mapping)

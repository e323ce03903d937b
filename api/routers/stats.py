"""HTTP route for a user's task counts. Registered before the tasks router: `/tasks/stats` must
not be taken for a task id."""

from datetime import timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from api.clock import Now
from api.deps import CurrentUser, ReaderDep
from api.list_params import Zone, start_of
from api.responses import READ_PROBLEMS
from api.schemas import PriorityCounts, TaskStats
from queries import stats as queries

router = APIRouter(
    prefix="/api/{user_id}/tasks",
    tags=["tasks"],
    responses=READ_PROBLEMS,
)


class StatsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tz: Zone = Field("UTC", description="IANA time zone that decides what today is.")


def today_in(zone: ZoneInfo, now: Now) -> queries.Today:
    day = now.astimezone(zone).date()
    ends = start_of(day + timedelta(days=1), zone)
    return queries.Today(day=day, now=now, starts=start_of(day, zone), ends=ends)


@router.api_route("/stats", methods=["PUT", "PATCH", "DELETE", "POST"], include_in_schema=False)
def stats_are_read_only() -> None:
    """Without this, `PUT .../tasks/stats` would reach the task routes as task id "stats"."""
    raise HTTPException(status.HTTP_405_METHOD_NOT_ALLOWED)


@router.get("/stats", operation_id="taskStats", summary="Count the user's tasks")
async def task_stats(
    user_id: CurrentUser, reader: ReaderDep, params: Annotated[StatsParams, Query()], now: Now
) -> TaskStats:
    today = today_in(ZoneInfo(params.tz), now)
    row = await queries.task_stats(reader, user_id=user_id, today=today)
    counts = PriorityCounts(low=row.low, medium=row.medium, high=row.high)
    return TaskStats(
        total=row.total,
        pending=row.pending,
        completed=row.completed,
        overdue=row.overdue,
        due_today=row.due_today,
        by_priority=counts,
    )

"""HTTP routes for tasks: parse, build a command or call a query, respond."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict

from api.deps import CurrentUser, ReadConnection, SessionDep
from api.errors import Problem
from api.schemas import TASK_ID_MAX, TaskCreate, TaskOut, TaskUpdate
from commands.dispatch import dispatch
from commands.errors import TaskNotFound
from commands.tasks import UNSET, CreateTask, DeleteTask, ToggleTask, UpdateTask
from queries import tasks as queries

router = APIRouter(
    prefix="/api/{user_id}/tasks",
    tags=["tasks"],
    responses={422: {"model": Problem, "description": "Invalid path, query or body"}},
)

TaskId = Annotated[int, Path(ge=1, le=TASK_ID_MAX, description="The task's id.")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such task for this user"}
}


class ListParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: queries.Status = "all"
    sort: queries.Sort = "created"


@router.get("", summary="List the user's tasks")
def list_tasks(
    user_id: CurrentUser, conn: ReadConnection, params: Annotated[ListParams, Query()]
) -> list[TaskOut]:
    rows = queries.list_tasks(conn, user_id=user_id, status=params.status, sort=params.sort)
    return [TaskOut.model_validate(row) for row in rows]


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a task")
def create_task(
    user_id: CurrentUser, body: TaskCreate, session: SessionDep, response: Response
) -> TaskOut:
    cmd = CreateTask(
        user_id=user_id, title=body.title, description=body.description, due_date=body.due_date
    )
    task = TaskOut.model_validate(dispatch(cmd, session))
    response.headers["Location"] = f"/api/{user_id}/tasks/{task.id}"
    return task


@router.get("/{task_id}", responses=NOT_FOUND, summary="Read a task")
def read_task(user_id: CurrentUser, task_id: TaskId, conn: ReadConnection) -> TaskOut:
    row = queries.get_task(conn, user_id=user_id, task_id=task_id)
    if row is None:
        raise TaskNotFound(task_id)
    return TaskOut.model_validate(row)


@router.put("/{task_id}", responses=NOT_FOUND, summary="Update a task's fields")
def update_task(
    user_id: CurrentUser, task_id: TaskId, body: TaskUpdate, session: SessionDep
) -> TaskOut:
    sent = body.model_fields_set
    cmd = UpdateTask(
        user_id=user_id,
        task_id=task_id,
        title=body.title if "title" in sent and body.title is not None else UNSET,
        description=body.description if "description" in sent else UNSET,
        due_date=body.due_date if "due_date" in sent else UNSET,
    )
    return TaskOut.model_validate(dispatch(cmd, session))


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
    summary="Delete a task",
)
def delete_task(user_id: CurrentUser, task_id: TaskId, session: SessionDep) -> Response:
    dispatch(DeleteTask(user_id=user_id, task_id=task_id), session)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.patch("/{task_id}/complete", responses=NOT_FOUND, summary="Toggle a task's completion")
def toggle_task(user_id: CurrentUser, task_id: TaskId, session: SessionDep) -> TaskOut:
    return TaskOut.model_validate(dispatch(ToggleTask(user_id=user_id, task_id=task_id), session))

"""Task commands and their handlers. Handlers change rows through SQLModel and never commit.

Every change is one conditional statement (UPDATE/DELETE ... WHERE user_id, id [, version]
RETURNING): the ownership check, the version check and the write cannot be separated by another
writer. Only when that statement matches nothing does a handler look again, to say why.
"""

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Insert,
    Update,
    and_,
    case,
    delete,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)
from sqlmodel import Session, col

from commands.errors import TaskNotFound, VersionConflict
from db.models import PRIORITY_RANK, Priority, Task


class Unset(enum.Enum):
    """Marks an update field the client left out, as opposed to one it set to null."""

    UNSET = enum.auto()


UNSET: Literal[Unset.UNSET] = Unset.UNSET


@dataclass(frozen=True, kw_only=True)
class CreateTask:
    user_id: str
    title: str
    description: str | None = None
    due_date: date | None = None
    due_at: datetime | None = None
    priority: Priority = "medium"
    tags: tuple[str, ...] = ()
    """Already normalised: lower-cased, unique, sorted."""


@dataclass(frozen=True, kw_only=True)
class TaskWrite:
    """Addresses one task; `if_version`, when set, makes the write conditional (If-Match)."""

    user_id: str
    task_id: int
    if_version: frozenset[int] | None = None


@dataclass(frozen=True, kw_only=True)
class UpdateTask(TaskWrite):
    title: str | Literal[Unset.UNSET] = UNSET
    description: str | Literal[Unset.UNSET] | None = UNSET
    due_date: date | Literal[Unset.UNSET] | None = UNSET
    due_at: datetime | Literal[Unset.UNSET] | None = UNSET
    priority: Priority | Literal[Unset.UNSET] = UNSET
    tags: tuple[str, ...] | Literal[Unset.UNSET] = UNSET


@dataclass(frozen=True, kw_only=True)
class DeleteTask(TaskWrite):
    pass


@dataclass(frozen=True, kw_only=True)
class ToggleTask(TaskWrite):
    pass


@dataclass(frozen=True, kw_only=True)
class SetTaskCompletion(TaskWrite):
    completed: bool


def create_statement(cmd: CreateTask) -> Insert:
    # One INSERT ... RETURNING, like every other write: no unit-of-work flush for one row.
    return (
        insert(Task)
        .values(
            user_id=cmd.user_id,
            title=cmd.title,
            description=cmd.description,
            completed=False,
            completed_at=None,
            due_date=cmd.due_date,
            due_at=cmd.due_at,
            priority=PRIORITY_RANK[cmd.priority],
            tags=list(cmd.tags),
        )
        .returning(Task)
    )


def create_task(cmd: CreateTask, session: Session) -> Task:
    task: Task = session.execute(create_statement(cmd)).scalar_one()
    return task


def update_task(cmd: UpdateTask, session: Session) -> Task:
    fields: dict[str, Any] = {
        name: value
        for name, value in (
            ("title", cmd.title),
            ("description", cmd.description),
            ("due_date", cmd.due_date),
            ("due_at", cmd.due_at),
            ("priority", PRIORITY_RANK[cmd.priority] if cmd.priority is not UNSET else UNSET),
            ("tags", list(cmd.tags) if cmd.tags is not UNSET else UNSET),
        )
        if value is not UNSET
    }
    # A task is due on a day or at an instant: setting one kind clears the other.
    if fields.get("due_at") is not None:
        fields.setdefault("due_date", None)
    if fields.get("due_date") is not None:
        fields.setdefault("due_at", None)
    if not fields:
        return current_or_raise(session, cmd)
    differs = or_(*(getattr(Task, name).is_distinct_from(value) for name, value in fields.items()))
    return change(session, cmd, fields, only_if=differs)


_TOGGLED = {
    "completed": not_(col(Task.completed)),
    "completed_at": case((col(Task.completed), None), else_=func.now()),
}


def toggle_statement(cmd: ToggleTask) -> Update:
    return change_statement(cmd, _TOGGLED)


def toggle_task(cmd: ToggleTask, session: Session) -> Task:
    return change(session, cmd, _TOGGLED)


def set_task_completion(cmd: SetTaskCompletion, session: Session) -> Task:
    values = {"completed": cmd.completed, "completed_at": func.now() if cmd.completed else None}
    return change(session, cmd, values, only_if=col(Task.completed).is_distinct_from(cmd.completed))


def delete_task(cmd: DeleteTask, session: Session) -> Task:
    statement = delete(Task).where(addressed(cmd)).returning(Task)
    task: Task | None = session.execute(statement).scalar_one_or_none()
    return task if task is not None else current_or_raise(session, cmd)


def addressed(cmd: TaskWrite) -> ColumnElement[bool]:
    """The caller's task, at one of the expected versions when the write is conditional."""
    where = and_(col(Task.user_id) == cmd.user_id, col(Task.id) == cmd.task_id)
    if cmd.if_version is not None:
        where = and_(where, col(Task.version).in_(cmd.if_version))
    return where


def change(
    session: Session,
    cmd: TaskWrite,
    values: Mapping[str, Any],
    *,
    only_if: ColumnElement[bool] | None = None,
) -> Task:
    """Apply `values` and bump version and updated_at, unless `only_if` says nothing changes."""
    task: Task | None = session.execute(change_statement(cmd, values, only_if)).scalar_one_or_none()
    return task if task is not None else current_or_raise(session, cmd)


def change_statement(
    cmd: TaskWrite, values: Mapping[str, Any], only_if: ColumnElement[bool] | None = None
) -> Update:
    where = addressed(cmd) if only_if is None else and_(addressed(cmd), only_if)
    return (
        update(Task)
        .where(where)
        .values(**values, version=col(Task.version) + 1, updated_at=func.now())
        .returning(Task)
        .execution_options(synchronize_session=False)
    )


def current_or_raise(session: Session, cmd: TaskWrite) -> Task:
    """The task as it is, when a write matched no row: else absent (404) or stale (412)."""
    current: Task | None = session.execute(
        select(Task)
        .where(col(Task.user_id) == cmd.user_id, col(Task.id) == cmd.task_id)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if current is None:
        raise TaskNotFound(cmd.task_id)
    if cmd.if_version is not None and current.version not in cmd.if_version:
        raise VersionConflict(current)
    return current

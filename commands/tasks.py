"""Task commands and their handlers. Handlers change rows through SQLModel and never commit."""

import enum
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, cast

from sqlalchemy import func
from sqlmodel import Session

from commands.errors import TaskNotFound
from db.models import Task


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


@dataclass(frozen=True, kw_only=True)
class UpdateTask:
    user_id: str
    task_id: int
    title: str | Literal[Unset.UNSET] = UNSET
    description: str | Literal[Unset.UNSET] | None = UNSET
    due_date: date | Literal[Unset.UNSET] | None = UNSET


@dataclass(frozen=True, kw_only=True)
class DeleteTask:
    user_id: str
    task_id: int


@dataclass(frozen=True, kw_only=True)
class ToggleTask:
    user_id: str
    task_id: int


def database_now() -> datetime:
    """The database's transaction time, evaluated inside the UPDATE (one clock for every row)."""
    return cast(datetime, func.now())


def load_for_change(session: Session, user_id: str, task_id: int) -> Task:
    """The caller's task, locked until commit so concurrent writers apply one after another."""
    task = session.get(Task, (user_id, task_id), with_for_update=True)
    if task is None:
        raise TaskNotFound(task_id)
    return task


def create_task(cmd: CreateTask, session: Session) -> Task:
    task = Task(
        user_id=cmd.user_id, title=cmd.title, description=cmd.description, due_date=cmd.due_date
    )
    session.add(task)
    session.flush()
    return task


def update_task(cmd: UpdateTask, session: Session) -> Task:
    task = load_for_change(session, cmd.user_id, cmd.task_id)
    changes = {
        name: value
        for name, value in (
            ("title", cmd.title),
            ("description", cmd.description),
            ("due_date", cmd.due_date),
        )
        if value is not UNSET and getattr(task, name) != value
    }
    if changes:
        for name, value in changes.items():
            setattr(task, name, value)
        task.updated_at = database_now()
        session.flush()
    return task


def toggle_task(cmd: ToggleTask, session: Session) -> Task:
    task = load_for_change(session, cmd.user_id, cmd.task_id)
    task.completed = not task.completed
    task.completed_at = database_now() if task.completed else None
    task.updated_at = database_now()
    session.flush()
    return task


def delete_task(cmd: DeleteTask, session: Session) -> Task:
    task = load_for_change(session, cmd.user_id, cmd.task_id)
    session.delete(task)
    session.flush()
    return task

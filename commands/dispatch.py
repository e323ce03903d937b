"""The write side's single entry point and its one commit."""

from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from commands.tasks import (
    CreateTask,
    DeleteTask,
    ToggleTask,
    UpdateTask,
    create_task,
    delete_task,
    toggle_task,
    update_task,
)
from db.models import Task

Command = CreateTask | UpdateTask | DeleteTask | ToggleTask

HANDLERS: dict[type[Any], Callable[[Any, Session], Task]] = {
    CreateTask: create_task,
    UpdateTask: update_task,
    DeleteTask: delete_task,
    ToggleTask: toggle_task,
}


def dispatch(cmd: Command, session: Session) -> Task:
    """Run the command's handler and commit; on any error roll back and re-raise unchanged."""
    handler = HANDLERS[type(cmd)]
    try:
        result = handler(cmd, session)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return result

"""The write side's single entry point and its one commit."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlmodel import Session

from commands.idempotency import IdempotencyKey, StoredResponse, claim, remember
from commands.tasks import (
    CreateTask,
    DeleteTask,
    SetTaskCompletion,
    ToggleTask,
    UpdateTask,
    create_task,
    delete_task,
    set_task_completion,
    toggle_task,
    update_task,
)
from db.models import Task

Command = CreateTask | UpdateTask | DeleteTask | ToggleTask | SetTaskCompletion

HANDLERS: dict[type[Any], Callable[[Any, Session], Task]] = {
    CreateTask: create_task,
    UpdateTask: update_task,
    DeleteTask: delete_task,
    ToggleTask: toggle_task,
    SetTaskCompletion: set_task_completion,
}


@contextmanager
def unit_of_work(session: Session) -> Iterator[None]:
    """Commit when the block ends; on any error roll back and re-raise unchanged."""
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise


def dispatch(cmd: Command, session: Session) -> Task:
    """Run the command's handler and commit."""
    with unit_of_work(session):
        return HANDLERS[type(cmd)](cmd, session)


def dispatch_once(
    cmd: Command,
    session: Session,
    key: IdempotencyKey,
    render: Callable[[Task], StoredResponse],
) -> tuple[StoredResponse, bool]:
    """Like `dispatch`, under an idempotency key: (response, replayed).

    The first use runs the command and stores `render(task)` in the same transaction; a repeat
    returns the stored response and changes nothing.
    """
    with unit_of_work(session):
        stored = claim(session, key)
        if stored is not None:
            return stored, True
        response = render(HANDLERS[type(cmd)](cmd, session))
        remember(session, key, response)
        return response, False

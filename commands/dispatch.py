"""The write side's single entry point and its one commit."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import assert_never

from sqlmodel import Session

from commands.idempotency import IdempotencyKey, claim, remember
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
from db.scope import WriteSessions

Command = CreateTask | UpdateTask | DeleteTask | ToggleTask | SetTaskCompletion


def handle(cmd: Command, session: Session) -> Task:
    """Run the command's handler (a command without one fails `mypy --strict` here)."""
    match cmd:
        case CreateTask():
            return create_task(cmd, session)
        case UpdateTask():
            return update_task(cmd, session)
        case DeleteTask():
            return delete_task(cmd, session)
        case ToggleTask():
            return toggle_task(cmd, session)
        case SetTaskCompletion():
            return set_task_completion(cmd, session)
        case _:
            assert_never(cmd)


@contextmanager
def unit_of_work(session: Session) -> Iterator[None]:
    """Commit when the block ends; on any error roll back and re-raise unchanged."""
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise


def dispatch(cmd: Command, writes: WriteSessions) -> Task:
    """Run the command's handler, as the command's user, and commit."""
    with writes.as_user(cmd.user_id) as session, unit_of_work(session):
        return handle(cmd, session)


def dispatch_once(cmd: Command, writes: WriteSessions, key: IdempotencyKey) -> tuple[Task, bool]:
    """Like `dispatch`, under an idempotency key: (the task, whether it is a replay).

    The first use runs the command and stores its result in the same transaction; a repeat
    returns the stored result and changes nothing.
    """
    with writes.as_user(cmd.user_id) as session, unit_of_work(session):
        stored = claim(session, key)
        if stored is not None:
            return stored, True
        task = handle(cmd, session)
        remember(session, key, task)
        return task, False

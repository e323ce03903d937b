"""Domain errors raised by command handlers. They carry no HTTP; `api/errors.py` maps them."""

from typing import Any

from db.models import Task


class CommandError(Exception):
    """Base for every error a command handler raises on purpose."""


class TaskNotFound(CommandError):
    """The task does not exist for this user (another user's task counts as absent)."""

    def __init__(self, task_id: int) -> None:
        super().__init__(f"task {task_id} not found")
        self.task_id = task_id


class VersionConflict(CommandError):
    """A conditional write (If-Match) named a version the task no longer has."""

    def __init__(self, current: Task) -> None:
        super().__init__(f"task {current.id} is at version {current.version}")
        # A snapshot: the rollback that follows this error expires the ORM object.
        self.current: dict[str, Any] = current.model_dump()

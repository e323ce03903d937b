"""Domain errors raised by command handlers. They carry no HTTP; `api/errors.py` maps them."""


class CommandError(Exception):
    """Base for every error a command handler raises on purpose."""


class TaskNotFound(CommandError):
    """The task does not exist for this user (another user's task counts as absent)."""

    def __init__(self, task_id: int) -> None:
        super().__init__(f"task {task_id} not found")
        self.task_id = task_id

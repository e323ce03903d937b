"""Read rows as TaskOut's JSON, built directly: no model instance and no validation per row.

The rows come from our own view, already typed by the driver, so validating them again only
costs time (a third of a list request's CPU, measured in docs/PERFORMANCE.md). The output is
byte-for-byte what `TaskOut.model_dump_json()` gives; a property test holds the two together.
"""

from collections.abc import Sequence
from datetime import UTC
from typing import Any

import orjson

from queries.tasks import TaskRow

_FIELDS = TaskRow._fields[: TaskRow._fields.index("due_at") + 1]
"""TaskOut's fields, in its order: the row's, less the sort key."""
_INSTANTS = ("completed_at", "created_at", "updated_at", "due_at")


def task_document(row: TaskRow) -> dict[str, Any]:
    """TaskOut's fields, in its order, with instants in UTC."""
    document: dict[str, Any] = dict(zip(_FIELDS, row, strict=False))
    for name in _INSTANTS:
        value = document[name]
        # A server whose TimeZone is UTC sends instants at offset zero, which orjson writes as
        # +00:00 whatever their tzinfo: only others are converted.
        if value is not None and value.tzinfo is not UTC and value.utcoffset():
            document[name] = value.astimezone(UTC)
    return document


def task_json(row: TaskRow) -> bytes:
    return orjson.dumps(task_document(row))


def tasks_json(rows: Sequence[TaskRow]) -> bytes:
    return orjson.dumps([task_document(row) for row in rows])

"""Request and response bodies, validated strictly: nothing is coerced or silently clamped."""

import re
import unicodedata
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    StrictBool,
    StrictStr,
    field_validator,
)
from pydantic_core import PydanticCustomError

from db.models import DESCRIPTION_MAX, TITLE_MAX, USER_ID_MAX

USER_ID_PATTERN = r"^[A-Za-z0-9_.@:-]{1," + str(USER_ID_MAX) + "}$"
TASK_ID_MAX = 2**63 - 1  # PostgreSQL bigint

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Whitespace that a multi-line description may hold; every other control character is refused.
_TEXT_CONTROLS_ALLOWED = frozenset("\t\n\r")


def _refuse_unstorable(value: str, allowed_controls: frozenset[str]) -> str:
    for char in value:
        category = unicodedata.category(char)
        if category == "Cc" and char not in allowed_controls:
            raise PydanticCustomError(
                "control_character",
                "must not contain control characters (found U+{code:04X})",
                {"code": ord(char)},
            )
        if category == "Cs":
            raise PydanticCustomError(
                "surrogate_character", "must not contain unpaired surrogate code points"
            )
    return value


def _clean_title(value: str) -> str:
    value = _refuse_unstorable(value.strip(), frozenset())
    if not 1 <= len(value) <= TITLE_MAX:
        raise PydanticCustomError(
            "title_length",
            "must be 1 to {max} characters after trimming (got {length})",
            {"max": TITLE_MAX, "length": len(value)},
        )
    return value


def _clean_description(value: str) -> str:
    if len(value) > DESCRIPTION_MAX:
        raise PydanticCustomError(
            "description_length",
            "must be at most {max} characters (got {length})",
            {"max": DESCRIPTION_MAX, "length": len(value)},
        )
    return _refuse_unstorable(value, _TEXT_CONTROLS_ALLOWED)


def _iso_date(value: Any) -> Any:
    if value is None or isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise PydanticCustomError("date_format", "must be a date in the form YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("date_value", "is not a valid calendar date") from None


def _utc_rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


Title = Annotated[StrictStr, AfterValidator(_clean_title)]
Description = Annotated[StrictStr, AfterValidator(_clean_description)]
DueDate = Annotated[date, BeforeValidator(_iso_date)]
Timestamp = Annotated[datetime, PlainSerializer(_utc_rfc3339, return_type=str)]


class TaskCreate(BaseModel):
    """A new task. Server-owned fields (id, user_id, completed, timestamps) are refused."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Description | None = None
    due_date: DueDate | None = None


class TaskUpdate(BaseModel):
    """A change to a task (PUT, or PATCH as a JSON Merge Patch): fields left out keep their
    values; `null` clears an optional one."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    description: Description | None = None
    due_date: DueDate | None = None

    @field_validator("title", mode="before")
    @classmethod
    def _title_cannot_be_cleared(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError("title_required", "cannot be null; a task needs a title")
        return value


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    user_id: str
    title: str
    description: str | None
    completed: bool
    completed_at: Timestamp | None
    due_date: date | None
    created_at: Timestamp
    updated_at: Timestamp
    version: int


class CompletionBody(BaseModel):
    """Sets the completion state; unlike a bodiless toggle, it is safe to retry."""

    model_config = ConfigDict(extra="forbid")

    completed: StrictBool

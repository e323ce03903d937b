"""Request and response bodies, validated strictly: nothing is coerced or silently clamped."""

import re
import unicodedata
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictStr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from commands.tasks import TaskChanges
from db.models import (
    DESCRIPTION_MAX,
    PRIORITIES,
    TAG_MAX,
    TAGS_MAX,
    TITLE_MAX,
    USER_ID_MAX,
    Priority,
)
from queries.changes import DEFAULT_LIMIT as CHANGES_DEFAULT_LIMIT
from queries.changes import MAX_LIMIT as CHANGES_MAX_LIMIT

USER_ID_PATTERN = r"^[A-Za-z0-9_.@:-]{1," + str(USER_ID_MAX) + "}$"
TASK_ID_MAX = 2**63 - 1  # PostgreSQL bigint

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# RFC 3339 date-time with a mandatory offset; at most microseconds, which is what is stored.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})")
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


def _instant(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise PydanticCustomError(
            "instant_format",
            "must be an RFC 3339 date-time with an offset, e.g. 2026-05-01T09:30:00Z"
            " (in a URL, write + as %2B)",
        )
    try:
        # In UTC: RFC 3339 allows offsets up to 23:59, PostgreSQL only up to 15:59.
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    except (ValueError, OverflowError):
        raise PydanticCustomError("instant_value", "is not a valid date-time") from None


def _date_or_instant(value: Any) -> Any:
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        return _iso_date(value)
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise PydanticCustomError(
            "bound_format",
            "must be a date (YYYY-MM-DD) or an RFC 3339 date-time with an offset, e.g."
            " 2026-05-01T09:30:00Z (in a URL, write + as %2B)",
        )
    return _instant(value)


def _clean_tag(value: str) -> str:
    tag = _refuse_unstorable(value.strip(), frozenset()).lower()
    if not 1 <= len(tag) <= TAG_MAX:
        raise PydanticCustomError(
            "tag_length",
            "each tag must be 1 to {max} characters after trimming (got {length})",
            {"max": TAG_MAX, "length": len(tag)},
        )
    if "," in tag:
        raise PydanticCustomError("tag_comma", "a tag cannot contain a comma")
    return tag


def _clean_tags(tags: list[str]) -> list[str]:
    return sorted(set(tags))


def _priority_name(value: Any) -> Any:
    # Tables store the rank (1-3); responses name it (PRIORITIES, in rank order, is the mapping).
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= len(PRIORITIES):
        return PRIORITIES[value - 1]
    return value


def _refuse_both_dues(value: Any, info: ValidationInfo) -> Any:
    if value is not None and info.data.get("due_date") is not None:
        raise PydanticCustomError(
            "due_conflict", "cannot be set together with due_date: a task has one or the other"
        )
    return value


# The OpenAPI schemas state the same rules as the validators above, so that clients (and the
# contract fuzzer) see exactly what is accepted: control characters (Unicode Cc) and unpaired
# surrogates are refused; a title is 1-200 characters once surrounding whitespace is trimmed.
# (Unpaired surrogates are refused too, but are left out of the patterns: JSON Schema validators
# built on Rust's regex cannot name them, and valid UTF-8 text cannot carry them.)
_CONTROL = r"\x00-\x1f\x7f-\x9f"
_TEXT_CONTROL = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
TITLE_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "pattern": (rf"^\s*[^\s{_CONTROL}](?:[^{_CONTROL}]{{0,{TITLE_MAX - 2}}}[^\s{_CONTROL}])?\s*$"),
}
DESCRIPTION_SCHEMA = {
    "type": "string",
    "maxLength": DESCRIPTION_MAX,
    "pattern": rf"^[^{_TEXT_CONTROL}]*$",
}

Title = Annotated[StrictStr, AfterValidator(_clean_title), WithJsonSchema(TITLE_SCHEMA)]
Description = Annotated[
    StrictStr, AfterValidator(_clean_description), WithJsonSchema(DESCRIPTION_SCHEMA)
]
DueDate = Annotated[date, BeforeValidator(_iso_date)]
Timestamp = Annotated[
    datetime,
    PlainSerializer(_utc_rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Instant = Annotated[datetime, BeforeValidator(_instant)]
"""An RFC 3339 date-time with an offset; naive date-times are refused."""
DateOrInstant = Annotated[date | datetime, BeforeValidator(_date_or_instant)]
TAG_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "pattern": (rf"^\s*[^\s,{_CONTROL}](?:[^,{_CONTROL}]{{0,{TAG_MAX - 2}}}[^\s,{_CONTROL}])?\s*$"),
}
Tag = Annotated[StrictStr, AfterValidator(_clean_tag), WithJsonSchema(TAG_SCHEMA)]
# At most TAGS_MAX items are accepted at all (before duplicates are merged), as the schema says.
Tags = Annotated[list[Tag], Field(max_length=TAGS_MAX), AfterValidator(_clean_tags)]
"""Trimmed, lower-cased, de-duplicated and sorted: tags compare case-insensitively."""
# In OpenAPI: a body may not carry both a due_date and a due_at (either may be null).
ONE_KIND_OF_DUE: dict[str, Any] = {
    "not": {
        "required": ["due_date", "due_at"],
        "properties": {"due_date": {"type": "string"}, "due_at": {"type": "string"}},
    }
}


def _defaults_in_words(schema: dict[str, Any]) -> None:
    """State request defaults in the description instead of `default`: generators (e.g.
    openapi-typescript) make a property with a default required in the request type."""
    schema.update(ONE_KIND_OF_DUE)
    for prop in schema.get("properties", {}).values():
        default = prop.pop("default", None)
        if default is not None:
            said = "none" if default == [] else f"`{default}`"
            prop["description"] = (prop.get("description", "") + f" Default: {said}.").strip()


class TaskCreate(BaseModel):
    """A new task. Server-owned fields (id, user_id, completed, timestamps) are refused."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_defaults_in_words)

    title: Title
    description: Description | None = None
    due_date: DueDate | None = None
    due_at: Instant | None = None
    priority: Priority = "medium"
    tags: Tags = []

    _one_kind_of_due = field_validator("due_at")(_refuse_both_dues)


# Fields an update may leave out but not clear.
_CANNOT_BE_NULL = {
    "title": "cannot be null; a task needs a title",
    "priority": "cannot be null: low, medium or high",
}


class TaskUpdate(BaseModel):
    """A change to a task (PUT, or PATCH as a JSON Merge Patch): fields left out keep their
    values; `null` clears an optional one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_defaults_in_words)

    # Optional but never null: the schema says "string", so clients and fuzzers see the rule.
    title: Annotated[Title | None, WithJsonSchema(TITLE_SCHEMA)] = None
    description: Description | None = None
    due_date: DueDate | None = None
    due_at: Instant | None = None
    """Setting one of due_date and due_at clears the other."""
    priority: Annotated[Priority | None, WithJsonSchema({"enum": list(PRIORITIES)})] = None
    tags: Tags | None = None
    """`null` or `[]` removes every tag."""

    _one_kind_of_due = field_validator("due_at")(_refuse_both_dues)

    def changes(self) -> TaskChanges:
        """The fields the client sent, as the update command carries them."""
        sent = self.model_dump(exclude_unset=True)
        if "tags" in sent:
            sent["tags"] = tuple(sent["tags"] or ())
        return cast(TaskChanges, sent)

    @field_validator("title", "priority", mode="before")
    @classmethod
    def _required_fields_cannot_be_cleared(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            field = str(info.field_name)
            raise PydanticCustomError(f"{field}_required", _CANNOT_BE_NULL[field])
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
    priority: Annotated[Priority, BeforeValidator(_priority_name)]
    tags: list[str]
    due_at: Timestamp | None


class CompletionBody(BaseModel):
    """Sets the completion state; unlike a bodiless toggle, it is safe to retry."""

    model_config = ConfigDict(extra="forbid")

    completed: StrictBool


class PriorityCounts(BaseModel):
    low: int
    medium: int
    high: int


class TaskStats(BaseModel):
    total: int
    pending: int
    completed: int
    overdue: int
    """Pending, and due on a day that has ended in `tz` or at an instant that has passed."""
    due_today: int
    """Pending and due today in `tz` (all day, or at any time of today)."""
    by_priority: PriorityCounts


class TagOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    tag: str
    tasks: int
    """How many of the user's tasks carry the tag."""
    pending: int


# The change feed (api/routers/changes.py, docs/adr/0014).
CHANGE_TOKEN_MAX = 1024


class ChangesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: str | None = Field(
        None,
        min_length=1,
        max_length=CHANGE_TOKEN_MAX,
        description="A `next` (or stream event `id`) from an earlier answer; leave it out to"
        " start from the user's current tasks.",
    )
    limit: int = Field(
        CHANGES_DEFAULT_LIMIT,
        ge=1,
        le=CHANGES_MAX_LIMIT,
        description="Most changes in this answer.",
    )


class StreamQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: str | None = Field(
        None,
        min_length=1,
        max_length=CHANGE_TOKEN_MAX,
        description="Start after this token (a `Last-Event-ID` header, if sent, wins);"
        " leave both out to get every current task first.",
    )


class TaskUpserted(BaseModel):
    """The task was created or changed; `task` is its latest state."""

    op: Literal["upsert"]
    task: TaskOut


class TaskDeleted(BaseModel):
    """The task was deleted."""

    op: Literal["delete"]
    id: int
    deleted_at: Timestamp


ChangeOut = Annotated[TaskUpserted | TaskDeleted, Field(discriminator="op")]


class ChangeFeed(BaseModel):
    changes: list[ChangeOut]
    """In commit order; each task at most once, in its latest state."""
    next: str
    """Send as `since` to get what changed after this answer."""
    has_more: bool
    """More changes are waiting: call again with `next` straight away."""

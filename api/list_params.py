"""The list endpoint's query parameters, validated strictly and turned into the query's terms,
and its pages.

Time zones are resolved here, so the read side only sees dates and instants: an all-day task
due on day D counts as due at the start of D in `tz` for `due_before`/`due_after`, and becomes
overdue when D has ended in `tz`.
"""

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, available_timezones

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from api.problems import invalid_input, shown
from api.schemas import TAG_SCHEMA, DateOrInstant, Tag
from db.models import PRIORITIES, PRIORITY_RANK, TAGS_MAX, Priority
from queries.tasks import (
    DEFAULT_LIMIT,
    DEFAULT_ORDER,
    MAX_SEARCH_TERMS,
    DueBound,
    Order,
    Sort,
    Status,
    TagMode,
    TaskFilters,
)

MAX_LIMIT = 500
SEARCH_MAX = 200


MAX_LIST_ITEMS = TAGS_MAX
"""A list filter takes at most this many items, counted before any item is validated."""


def _comma_list(value: Any) -> Any:
    """Repetitions (`tag=a&tag=b`) and comma lists (`tag=a,b`) alike, counted before checking.

    FastAPI hands a sequence-typed query parameter over as the list of its repetitions.
    """
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in values):
        return value
    count = sum(item.count(",") + 1 for item in values)
    if count > MAX_LIST_ITEMS:
        raise PydanticCustomError(
            "list_length",
            "at most {max} items (got {count})",
            {"max": MAX_LIST_ITEMS, "count": count},
        )
    return [part for item in values for part in item.split(",")]


def _priority_names(value: Any) -> Any:
    names = _comma_list(value)
    unknown = [name for name in names if name not in PRIORITY_RANK]
    if unknown:
        raise PydanticCustomError(
            "priority_name",
            "{values} is not a priority: {names}",
            {
                "values": ", ".join(shown(name) for name in unknown[:3]),
                "names": ", ".join(PRIORITIES),
            },
        )
    return names


def _unique_sorted(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(values)))


def _search(value: str) -> str:
    terms = value.split()
    if not terms:
        raise PydanticCustomError("search_empty", "must contain something to search for")
    if len(terms) > MAX_SEARCH_TERMS:
        raise PydanticCustomError("search_terms", "at most {max} words", {"max": MAX_SEARCH_TERMS})
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise PydanticCustomError("control_character", "must not contain control characters")
    return " ".join(terms)


def _flag(value: Any) -> Any:
    if value in ("true", "false"):
        return value == "true"
    raise PydanticCustomError("flag", "must be true or false")


# Names that zoneinfo knows but that are not IANA zones a client may mean.
_NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})
ZONES = frozenset(available_timezones()) - _NOT_ZONES


def _zone(name: str) -> str:
    if name not in ZONES:
        raise PydanticCustomError(
            "time_zone",
            "{value} is not an IANA time zone name such as Europe/Paris or UTC",
            {"value": shown(name)},
        )
    return name


Priorities = Annotated[
    tuple[Priority, ...],
    BeforeValidator(_priority_names),
    AfterValidator(_unique_sorted),
    WithJsonSchema({"type": "array", "items": {"type": "string", "enum": list(PRIORITIES)}}),
]
Tags = Annotated[
    tuple[Tag, ...],
    BeforeValidator(_comma_list),
    AfterValidator(_unique_sorted),
    WithJsonSchema({"type": "array", "items": TAG_SCHEMA, "maxItems": MAX_LIST_ITEMS}),
]
Flag = Annotated[bool, BeforeValidator(_flag), WithJsonSchema({"type": "boolean"})]
Search = Annotated[str, Field(max_length=SEARCH_MAX), AfterValidator(_search)]
# A string in OpenAPI: the zone database differs between machines (and generators choke on an
# enum of ~600 names); the server says which names it knows.
Zone = Annotated[
    str,
    AfterValidator(_zone),
    WithJsonSchema({"type": "string", "maxLength": 64, "example": "Europe/Paris"}),
]


class ListParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status = "all"
    priority: Priorities | None = Field(
        None, description="Any of these priorities (repeat the parameter, or a comma list)."
    )
    tag: Tags | None = Field(
        None,
        description="Tasks with any (or all) of these tags (repeat the parameter, or a comma list)",
    )
    tag_mode: TagMode = Field("any", description="`any`: at least one tag; `all`: every tag.")
    q: Search | None = Field(
        None, description="Words that must each occur (case-insensitively) in title or text."
    )
    due_before: DateOrInstant | None = Field(None, description="Due before this date or instant.")
    due_after: DateOrInstant | None = Field(
        None, description="Due at or after this date or instant."
    )
    overdue: Flag | None = Field(None, description="Pending and past due (or not).")
    has_due: Flag | None = Field(None, description="Has a due date or due time (or not).")
    updated_after: DateOrInstant | None = Field(None, description="Changed after this.")
    tz: Zone = Field(
        "UTC",
        description="IANA time zone name (e.g. `Europe/Paris`) that decides what a date means.",
    )
    sort: Sort = "created"
    order: Order | None = Field(
        None, description="Default: desc for created, updated, priority; asc for title, due_date."
    )
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(
        None, min_length=1, max_length=1024, description="From the previous page's Link header."
    )

    def direction(self) -> Order:
        return self.order or DEFAULT_ORDER[self.sort]

    def bound_parameters(self) -> dict[str, Any]:
        """What a cursor is bound to: every parameter but `cursor` and `limit`, normalised."""
        parameters = self.model_dump(mode="json", exclude={"cursor", "limit"})
        return {**parameters, "order": self.direction()}

    def filters(self, now: datetime) -> TaskFilters:
        zone = ZoneInfo(self.tz)
        due_before, due_after, updated_after = (
            self._bound(name, zone) for name in ("due_before", "due_after", "updated_after")
        )
        return TaskFilters(
            priorities=frozenset(PRIORITY_RANK[name] for name in self.priority or ()),
            tags=self.tag or (),
            tag_mode=self.tag_mode,
            terms=tuple(self.q.split()) if self.q else (),
            due_before=due_before,
            due_after=due_after,
            overdue=self.overdue,
            as_of=DueBound(day=now.astimezone(zone).date(), at=now),
            has_due=self.has_due,
            updated_after=None if updated_after is None else updated_after.at,
        )

    def _bound(self, name: str, zone: ZoneInfo) -> DueBound | None:
        value: date | datetime | None = getattr(self, name)
        if value is None:
            return None
        try:
            return due_bound(value, zone)
        except OverflowError:
            message = "is too close to the ends of the calendar to be read in this time zone"
            raise invalid_input("query", name, message) from None


def start_of(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of `day` in `zone` (where midnight is skipped, the moment it jumps)."""
    return datetime.combine(day, time(), tzinfo=zone)


def due_bound(value: date | datetime, zone: ZoneInfo) -> DueBound:
    """A bound as the day and instant it means in `zone`.

    All-day tasks count as due at the start of their day, so for an instant bound `day` is the
    first day that starts at or after it.
    """
    if not isinstance(value, datetime):
        return DueBound(day=value, at=start_of(value, zone))
    day = value.astimezone(zone).date()
    if start_of(day, zone) < value and day < date.max:
        day += timedelta(days=1)
    return DueBound(day=day, at=value)

"""Read side for tasks: parameterised SQL over the user-scoped view `task_list_v`.

Every function takes `user_id` as a required keyword and puts it in the WHERE clause; the view's
rows are never read without it.
"""

import functools
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import TextClause, text

from db.models import DUE_ASC_KEY, DUE_DESC_KEY
from db.reads import INDEX_BOUNDED, PLANNED_EACH_TIME, Reader

Status = Literal["all", "pending", "completed"]
Sort = Literal["created", "updated", "title", "due_date", "priority"]
Order = Literal["asc", "desc"]
TagMode = Literal["any", "all"]

DEFAULT_ORDER: dict[Sort, Order] = {
    "created": "desc",
    "updated": "desc",
    "title": "asc",
    "due_date": "asc",
    "priority": "desc",
}
DEFAULT_LIMIT = 100
MAX_SEARCH_TERMS = 8


class TaskRow(NamedTuple):
    """A row of `task_list_v`, in the order of the select list (a tuple: built in C per row)."""

    id: int
    user_id: str
    title: str
    description: str | None
    completed: bool
    completed_at: datetime | None
    due_date: date | None
    created_at: datetime
    updated_at: datetime
    version: int
    priority: str
    tags: list[str]
    due_at: datetime | None
    sort_key: str | None = None
    """In lists: the row's sort key as text, which a keyset cursor carries (with the id)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DueBound:
    """A point on the "due" axis in the caller's time zone: all-day tasks compare their date with
    `day`, timed tasks their instant with `at`."""

    day: date
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFilters:
    """Filters beyond status; each one that is set narrows the list (they combine with AND)."""

    priorities: frozenset[int] = frozenset()
    """Ranks (1 low, 2 medium, 3 high); empty: any priority."""
    tags: tuple[str, ...] = ()
    tag_mode: TagMode = "any"
    terms: tuple[str, ...] = ()
    """Each must occur, case-insensitively, in the title or the description."""
    due_before: DueBound | None = None
    due_after: DueBound | None = None
    overdue: bool | None = None
    as_of: DueBound | None = None
    """Now and today in the caller's time zone; needed by `overdue`."""
    has_due: bool | None = None
    updated_after: datetime | None = None


NO_FILTERS = TaskFilters()


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """A keyset position: the sort key (as text) and id of the last row already seen."""

    key: str
    id: int


_COLUMNS = (
    "id, user_id, title, description, completed, completed_at, due_date, created_at, updated_at,"
    " version, priority, tags, due_at"
)
_FROM_VIEW = "SELECT " + _COLUMNS + " FROM task_list_v WHERE user_id = :user_id"

_STATUS_FILTERS: dict[Status, str] = {
    "all": "",
    "pending": " AND NOT completed",
    "completed": " AND completed",
}
_PRIORITY_FILTER = " AND priority_rank = ANY(:priorities)"
_TAG_FILTERS: dict[TagMode, str] = {
    "any": " AND tags && CAST(:tags AS text[])",
    "all": " AND tags @> CAST(:tags AS text[])",
}
# What `q=` matches: the title, a space, the description; one ILIKE per term.
SEARCH_TEXT = "(title || ' ' || coalesce(description, ''))"
_SEARCH_FILTERS = tuple(
    " AND " + SEARCH_TEXT + " ILIKE :term_" + str(n) for n in range(MAX_SEARCH_TERMS)
)
# Under row-level security the operators above cannot use an index (ADR 0013), so a list with
# search or tags by a user with more than WALKED_TASKS tasks first asks `matching_task_ids`
# (migration 0008), which finds the caller's matching ids through the indexes of `task_search`,
# at most INDEXED_MATCHES + 1 of them. Up to INDEXED_MATCHES, the list reads those tasks by
# primary key; beyond, the terms are common enough that walking the sort's index with the
# filters above finds a page sooner. A user with at most WALKED_TASKS tasks is walked at once:
# reading their few rows costs less than the index's entries for a common word, which span every
# user (ADR 0019). Each branch is gated by a one-time filter, so only one of them runs.
INDEXED_MATCHES = 1000
WALKED_TASKS = 500
_TAG_ARGUMENTS: dict[TagMode | None, str] = {
    None: "CAST('{}' AS text[]), false",
    "any": "CAST(:tags AS text[]), false",
    "all": "CAST(:tags AS text[]), true",
}
_PATTERNS = tuple(
    "CAST(ARRAY[" + ", ".join(":term_" + str(n) for n in range(count)) + "] AS text[])"
    for count in range(MAX_SEARCH_TERMS + 1)
)
_MATCH_ARGUMENTS: dict[tuple[TagMode | None, int], str] = {
    (mode, terms): _PATTERNS[terms] + ", " + tags
    for mode, tags in _TAG_ARGUMENTS.items()
    for terms in range(MAX_SEARCH_TERMS + 1)
    if mode is not None or terms
}
_FOUND_BY_ID = (
    " AND id = ANY(CAST((SELECT ids FROM found) AS bigint[])) AND NOT (SELECT walk FROM found)"
)
_WALK = " AND (SELECT walk FROM found)"
# A NULL date or instant compares as NULL, so an undated task matches neither bound.
_DUE_BEFORE_FILTER = " AND (due_date < :due_before_day OR due_at < :due_before_at)"
_DUE_AFTER_FILTER = " AND (due_date >= :due_after_day OR due_at >= :due_after_at)"
# COALESCE: an undated pending task's comparison is NULL, and NOT NULL would drop it too.
_OVERDUE = "coalesce(NOT completed AND (due_date < :today OR due_at < :now), false)"
_OVERDUE_FILTERS: dict[bool, str] = {True: " AND " + _OVERDUE, False: " AND NOT " + _OVERDUE}
_HAS_DUE_FILTERS: dict[bool, str] = {
    True: " AND (due_date IS NOT NULL OR due_at IS NOT NULL)",
    False: " AND due_date IS NULL AND due_at IS NULL",
}
_UPDATED_AFTER_FILTER = " AND updated_at > :updated_after"

# (expression, its type) per sort and direction. Each is never NULL, so a keyset comparison on
# (key, id) stays an index condition; each matches an index on tasks (see db/models.py).
_SORT_KEYS: dict[tuple[Sort, Order], tuple[str, str]] = {
    ("created", "asc"): ("created_at", "timestamptz"),
    ("created", "desc"): ("created_at", "timestamptz"),
    ("updated", "asc"): ("updated_at", "timestamptz"),
    ("updated", "desc"): ("updated_at", "timestamptz"),
    ("title", "asc"): ("lower(title)", "text"),
    ("title", "desc"): ("lower(title)", "text"),
    ("due_date", "asc"): (DUE_ASC_KEY, "timestamptz"),
    ("due_date", "desc"): (DUE_DESC_KEY, "timestamptz"),
    ("priority", "asc"): ("priority_rank", "smallint"),
    ("priority", "desc"): ("priority_rank", "smallint"),
}
_AFTER = {"asc": " > ", "desc": " < "}
_DIRECTION = {"asc": " ASC", "desc": " DESC"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ListShape:
    """Which fragments a list statement has; one statement text per shape."""

    status: Status = "all"
    sort: Sort = "created"
    order: Order = "desc"
    priorities: bool = False
    tag_mode: TagMode | None = None
    terms: int = 0
    due_before: bool = False
    due_after: bool = False
    overdue: bool | None = None
    has_due: bool | None = None
    updated_after: bool = False
    after: bool = False
    indexed_matches: int = INDEXED_MATCHES
    """With search or tags: the most matches read by id (tests lower it to walk instead)."""
    walked_tasks: int = WALKED_TASKS
    """With search or tags: the most tasks a user may have and be walked without the index."""

    @classmethod
    def of(
        cls, status: Status, sort: Sort, order: Order, filters: TaskFilters, after: bool
    ) -> "ListShape":
        return cls(
            status=status,
            sort=sort,
            order=order,
            priorities=bool(filters.priorities),
            tag_mode=filters.tag_mode if filters.tags else None,
            terms=len(filters.terms),
            due_before=filters.due_before is not None,
            due_after=filters.due_after is not None,
            overdue=filters.overdue,
            has_due=filters.has_due,
            updated_after=filters.updated_after is not None,
            after=after,
        )


_INDEX_ORDERED = {("all", "created"), ("pending", "created"), ("all", "updated")}
"""Status and sort whose pages an index reads in order, stopping at the limit (db/models.py)."""


def _read_in_index_order(shape: ListShape) -> bool:
    """No filter but a status the index covers: a page costs its rows, whoever asks."""
    plain = ListShape(status=shape.status, sort=shape.sort, order=shape.order, after=shape.after)
    return shape == plain and (shape.status, shape.sort) in _INDEX_ORDERED


@functools.lru_cache(maxsize=1024)
def list_statement(shape: ListShape) -> TextClause:
    """The statement for one shape, assembled from the constant fragments above."""
    key, key_type = _SORT_KEYS[(shape.sort, shape.order)]
    where = " FROM task_list_v WHERE user_id = :user_id"
    where += _STATUS_FILTERS[shape.status]
    where += _PRIORITY_FILTER if shape.priorities else ""
    matching = _TAG_FILTERS[shape.tag_mode] if shape.tag_mode else ""
    matching += "".join(_SEARCH_FILTERS[: shape.terms])
    rest = _DUE_BEFORE_FILTER if shape.due_before else ""
    rest += _DUE_AFTER_FILTER if shape.due_after else ""
    rest += _OVERDUE_FILTERS[shape.overdue] if shape.overdue is not None else ""
    rest += _HAS_DUE_FILTERS[shape.has_due] if shape.has_due is not None else ""
    rest += _UPDATED_AFTER_FILTER if shape.updated_after else ""
    if shape.after:
        rest += " AND (" + key + ", id)" + _AFTER[shape.order]
        rest += "(CAST(:after_key AS " + key_type + "), :after_id)"
    direction = _DIRECTION[shape.order]
    arguments = _MATCH_ARGUMENTS.get((shape.tag_mode, shape.terms))
    if arguments is None:
        sql = "SELECT " + _COLUMNS + ", CAST(" + key + " AS text) AS sort_key" + where + rest
        sql += " ORDER BY " + key + direction + ", id" + direction + " LIMIT :limit"
        bounded = INDEX_BOUNDED if _read_in_index_order(shape) else {}
        return text(sql).execution_options(**bounded)
    branch = "(SELECT " + _COLUMNS + ", " + key + " AS sort_value" + where + rest
    order = " ORDER BY " + key + direction + ", id" + direction + " LIMIT :limit)"
    # OFFSET 0 keeps the subquery whole, so the function runs once, not once per use of `ids`;
    # CASE asks it only when the user has more than `walked` tasks (`ids` is NULL otherwise).
    most, walked = shape.indexed_matches, shape.walked_tasks
    sql = "WITH found AS MATERIALIZED (SELECT ids, ids IS NULL OR cardinality(ids) > " + str(most)
    # Counted in the order of the primary key, so that no plan reads other users' rows first.
    sql += " AS walk FROM (SELECT CASE WHEN (SELECT count(*) FROM (SELECT id FROM task_list_v"
    sql += " WHERE user_id = :user_id ORDER BY id LIMIT " + str(walked + 1) + ") AS mine)"
    sql += " <= " + str(walked)
    sql += " THEN NULL ELSE ARRAY(SELECT matching_task_ids(" + arguments + ", " + str(most + 1)
    sql += ")) END AS ids OFFSET 0) AS matched) "
    sql += "SELECT " + _COLUMNS + ", CAST(sort_value AS text) AS sort_key FROM ("
    # The found rows are filtered again: the answer never rests on the copy alone.
    sql += branch + _FOUND_BY_ID + matching + order
    sql += " UNION ALL " + branch + matching + _WALK + order
    sql += ") AS listed ORDER BY sort_value" + direction + ", id" + direction + " LIMIT :limit"
    return text(sql).execution_options(**PLANNED_EACH_TIME)


# The first page of each status and sort in its default order (the benchmark and plan tests).
LIST_TASKS_SQL: dict[tuple[Status, Sort], TextClause] = {
    (status, sort): list_statement(ListShape(status=status, sort=sort, order=order))
    for status in _STATUS_FILTERS
    for sort, order in DEFAULT_ORDER.items()
}

GET_TASK_SQL = text(_FROM_VIEW + " AND id = :task_id").execution_options(**INDEX_BOUNDED)


def like_pattern(term: str) -> str:
    """`%term%`, with LIKE's own wildcards in the term matched literally."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "%" + escaped + "%"


def _binds(filters: TaskFilters, after: Position | None) -> dict[str, Any]:
    binds: dict[str, Any] = {
        "priorities": sorted(filters.priorities),
        "tags": list(filters.tags),
        "updated_after": filters.updated_after,
    }
    binds |= {"term_" + str(n): like_pattern(term) for n, term in enumerate(filters.terms)}
    for name, bound in (
        ("due_before", filters.due_before),
        ("due_after", filters.due_after),
    ):
        if bound is not None:
            binds |= {name + "_day": bound.day, name + "_at": bound.at}
    if filters.as_of is not None:
        binds |= {"today": filters.as_of.day, "now": filters.as_of.at}
    if after is not None:
        binds |= {"after_key": after.key, "after_id": after.id}
    return binds


def list_query(
    *,
    user_id: str,
    status: Status = "all",
    sort: Sort = "created",
    order: Order | None = None,
    filters: TaskFilters = NO_FILTERS,
    limit: int = DEFAULT_LIMIT,
    after: Position | None = None,
) -> tuple[TextClause, dict[str, Any]]:
    """The statement and parameters of one list request (also what the plan tests EXPLAIN)."""
    shape = ListShape.of(status, sort, order or DEFAULT_ORDER[sort], filters, after is not None)
    return list_statement(shape), {**_binds(filters, after), "user_id": user_id, "limit": limit}


async def list_tasks(
    reader: Reader,
    *,
    user_id: str,
    status: Status = "all",
    sort: Sort = "created",
    order: Order | None = None,
    filters: TaskFilters = NO_FILTERS,
    limit: int = DEFAULT_LIMIT,
    after: Position | None = None,
) -> list[TaskRow]:
    """At most `limit` rows in order, starting after `after` when given."""
    statement, params = list_query(
        user_id=user_id,
        status=status,
        sort=sort,
        order=order,
        filters=filters,
        limit=limit,
        after=after,
    )
    # Rows come as tuples in the order of the select list, which is TaskRow's field order.
    return [TaskRow._make(row) for row in await reader.fetch(statement, params)]


async def get_task(reader: Reader, *, user_id: str, task_id: int) -> TaskRow | None:
    rows = await reader.fetch(GET_TASK_SQL, {"user_id": user_id, "task_id": task_id})
    return TaskRow(*rows[0]) if rows else None

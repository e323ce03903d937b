"""pgbench scripts holding the SQL the service sends for each request kind.

Read statements and the per-transaction settings are imported from the service's own modules, and
the two write statements are compiled from the statements the command handlers execute for POST
and PATCH .../complete, so none of them can drift; bind values the service sends are written in
as the literals psycopg2 would interpolate.
"""

import re
from datetime import date
from typing import Any

from sqlalchemy import Insert, Update
from sqlalchemy.dialects.postgresql import psycopg2

from bench.server import Features
from bench.workloads import CREATE_BODY, LIST_LIMIT, SEARCH_WORD, Kind
from commands.tasks import (
    CreateTask,
    ToggleTask,
    address,
    create_binds,
    create_statement,
    toggle_statement,
)
from db.scope import SET_USER_SQL, Timeouts
from queries import tasks as task_queries

# pgbench's \set makes integers only. With task i owned by user 1 + (i - 1) % users (see
# bench/dataset.py), integer arithmetic picks a real pair; prepared mode sends the values as
# untyped parameters, so `user_id = $1` compares as text exactly as the service's query does.
PICK_USER = "\\set user_id random(1, :users)\n"
PICK_TASK = "\\set task_id random(1, :tasks)\n\\set user_id 1 + (:task_id - 1) % :users\n"
# The service asks for one row more than a page, to know whether a next page exists.
FETCH_LIMIT = f"\\set limit {LIST_LIMIT + 1}\n"

# Stand-ins for the values pgbench draws: the write statements are compiled from the very
# statements the command handlers execute (commands/tasks.py), so they cannot drift.
_USER_STAND_IN = "\x00user_id"
_TASK_STAND_IN = 987_654_321_987_654


def _literal(value: object) -> str:
    """A bind value written into the SQL as psycopg2 would send it (or a pgbench variable)."""
    if value == _USER_STAND_IN:
        return ":user_id"
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == _TASK_STAND_IN:
        return ":task_id"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return _literal("{" + ",".join('"' + str(item) + '"' for item in value) + "}")
    return _quoted(str(value))


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def orm_sql(statement: Insert | Update, binds: dict[str, Any]) -> str:
    """What the service sends for `statement` with `binds`, the values written in."""
    compiled = statement.compile(dialect=psycopg2.dialect())  # type: ignore[no-untyped-call]
    sql = str(compiled)
    for name, value in (compiled.params | binds).items():
        sql = sql.replace("%(" + name + ")s", _literal(value))
    return sql.replace("%%", "%")


def create_sql() -> str:
    body = CREATE_BODY
    cmd = CreateTask(
        user_id=_USER_STAND_IN, title=body["title"], due_date=date.fromisoformat(body["due_date"])
    )
    return orm_sql(create_statement(), create_binds(cmd))


def toggle_sql() -> str:
    cmd = ToggleTask(user_id=_USER_STAND_IN, task_id=_TASK_STAND_IN)
    return orm_sql(toggle_statement(conditional=False), address(cmd))


def inline(sql: str, literals: dict[str, str]) -> str:
    """Write string binds in as quoted literals; the other `:name`s stay pgbench variables."""
    for name, value in literals.items():
        quoted = _quoted(value)
        # Backslashes are the only special characters in a replacement string.
        sql = re.sub(r"(?<!:):" + name + r"\b", quoted.replace("\\", "\\\\"), sql)
    return sql


def set_user_sql() -> str:
    """What the service runs first in every transaction under row-level security."""
    return inline(SET_USER_SQL.text, Timeouts().parameters())


def _list_statement(features: Features) -> tuple[str, str]:
    sql: str = task_queries.LIST_TASKS_SQL[("pending", "created")].text
    if ":limit" in sql:
        return PICK_USER + FETCH_LIMIT, sql
    # A service without `limit` returns every pending task; an older statement has no LIMIT.
    return PICK_USER, sql + (f" LIMIT {LIST_LIMIT}" if features.limit else "")


def _search_statement() -> tuple[str, str]:
    """The list statement with one search term, as GET ...?q=<word> runs it."""
    shape = task_queries.ListShape(terms=1)
    sql = task_queries.list_statement(shape).text
    pattern = task_queries.like_pattern(SEARCH_WORD)
    return PICK_USER + FETCH_LIMIT, inline(sql, {"term_0": pattern})


def _statements(kind: Kind, features: Features) -> tuple[str, str] | None:
    """(variables, statement) for one request kind; None when no statement is known for it."""
    if kind == "search":
        return _search_statement() if features.search else None
    if kind == "slow_search":
        # One user's search, sent next to another workload: no pgbench limit of its own.
        return None
    scripts: dict[Kind, tuple[str, str]] = {
        "list": _list_statement(features),
        "get": (PICK_TASK, task_queries.GET_TASK_SQL.text),
        "create": (PICK_USER, create_sql()),
        "toggle": (PICK_TASK, toggle_sql()),
    }
    return scripts[kind]


def pgbench_script(kind: Kind, features: Features, *, row_security: bool) -> str | None:
    """A pgbench script for one request kind, or None when no statement is known for it.

    Under row-level security the service names the caller (and its timeouts) in the same
    transaction before each statement (db/engine.py). A pipeline sends both in one round trip and
    one implicit transaction, as the service's reads do; its writes add BEGIN and COMMIT trips.
    """
    parts = _statements(kind, features)
    if parts is None:
        return None
    variables, statement = parts
    if not row_security:
        return variables + statement + ";\n"
    pipeline = set_user_sql() + ";\n" + statement + ";\n"
    return variables + "\\startpipeline\n" + pipeline + "\\endpipeline\n"

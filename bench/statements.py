"""pgbench scripts holding the SQL the service sends for each request kind.

Read statements and the per-transaction settings are imported from the service's own modules, so
they cannot drift; bind values the service sends as strings are written in as the literals
psycopg2 would interpolate. The two write statements are what the ORM emits for POST and for
PATCH .../complete, captured with SQLAlchemy's echo on 2026-11-29: keep them in step with
commands/tasks.py (a change there shows as a new statement in the service's echo).
"""

import re

from bench.server import Features
from bench.workloads import LIST_LIMIT, SEARCH_WORD, Kind
from db.engine import SET_USER_SQL, Timeouts
from queries import tasks as task_queries

# pgbench's \set makes integers only. With task i owned by user 1 + (i - 1) % users (see
# bench/dataset.py), integer arithmetic picks a real pair; prepared mode sends the values as
# untyped parameters, so `user_id = $1` compares as text exactly as the service's query does.
PICK_USER = "\\set user_id random(1, :users)\n"
PICK_TASK = "\\set task_id random(1, :tasks)\n\\set user_id 1 + (:task_id - 1) % :users\n"
# The service asks for one row more than a page, to know whether a next page exists.
FETCH_LIMIT = f"\\set limit {LIST_LIMIT + 1}\n"

CREATE_SQL = (
    "INSERT INTO tasks (user_id, title, description, completed, completed_at, due_date, due_at,"
    " priority, tags) VALUES (:user_id, 'bench task', NULL, false, NULL, '2026-12-31', NULL, 2,"
    " '{}'::TEXT[]) RETURNING tasks.id, tasks.version, tasks.created_at, tasks.updated_at"
)
TOGGLE_SQL = (
    "UPDATE tasks SET completed=NOT tasks.completed,"
    " completed_at=CASE WHEN tasks.completed THEN NULL ELSE now() END,"
    " version=(tasks.version + 1), updated_at=now()"
    " WHERE tasks.user_id = :user_id AND tasks.id = :task_id"
    " RETURNING tasks.user_id, tasks.id, tasks.title, tasks.description, tasks.completed,"
    " tasks.completed_at, tasks.due_date, tasks.due_at, tasks.priority, tasks.tags,"
    " tasks.version, tasks.created_at, tasks.updated_at"
)


def inline(sql: str, literals: dict[str, str]) -> str:
    """Write string binds in as quoted literals; the other `:name`s stay pgbench variables."""
    for name, value in literals.items():
        quoted = "'" + value.replace("'", "''") + "'"
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
        "create": (PICK_USER, CREATE_SQL),
        "toggle": (PICK_TASK, TOGGLE_SQL),
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

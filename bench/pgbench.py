"""PostgreSQL's own limit for a workload's statements, measured with pgbench on the SQL the
service sends, taken from the service's own modules and compiled from the command handlers'
statements, so none can drift. Each transaction names its caller first (row-level security) in one
pipeline, as the service's reads do; every transaction is logged, for nearest-rank percentiles."""

import re
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from psycopg2.extensions import adapt
from sqlalchemy import Insert, Update
from sqlalchemy.dialects.postgresql import psycopg2

from bench.dataset import LoadStats
from bench.processes import run_at_once
from bench.results import PgbenchResult, latency_from_ns
from bench.workloads import CREATE_BODY, HEAVY_WORD, LIST_LIMIT, ROUTES, SEARCH_WORD, Kind, Mix
from commands import tasks as task_commands
from db.embedded import client_program
from db.scope import SET_USER_SQL, Timeouts
from queries import changes as change_queries
from queries import tasks as task_queries

LOG_PREFIX = "pgbench_log"
NS_PER_US = 1000
# pgbench's \set makes integers only. Task i belongs to user 1 + (i - 1) % users (see
# bench/dataset.py), so integer arithmetic picks a real pair; prepared mode sends the values as
# untyped parameters, so `user_id = $1` compares as text exactly as the service's query does.
PICK_USER = "\\set user_id random(1, :users)\n"
PICK_TASK = "\\set task_id random(1, :tasks)\n\\set user_id 1 + (:task_id - 1) % :users\n"
# The service asks for one row more than a page, to know whether a next page exists.
FETCH_LIMIT = f"\\set limit {LIST_LIMIT + 1}\n"
CURRENT_SINCE = f"\\set since :tasks\n\\set limit {change_queries.DEFAULT_LIMIT + 1}\n"
# Stand-ins for the values pgbench draws, in the statements the command handlers execute.
_USER_STAND_IN = "\x00user_id"
_TASK_STAND_IN = 987_654_321_987_654


def _literal(value: object) -> str:
    """A bind value written into the SQL as psycopg2 sends it (or the pgbench variable)."""
    if value == _USER_STAND_IN:
        return ":user_id"
    if value == _TASK_STAND_IN:
        return ":task_id"
    return str(adapt(value).getquoted().decode())


def orm_sql(statement: Insert | Update, binds: dict[str, Any]) -> str:
    """What the service sends for `statement` with `binds`, the values written in."""
    compiled = statement.compile(dialect=psycopg2.dialect())  # type: ignore[no-untyped-call]
    sql = str(compiled)
    for name, value in (compiled.params | binds).items():
        sql = sql.replace("%(" + name + ")s", _literal(value))
    return sql.replace("%%", "%")


def create_sql() -> str:
    due = date.fromisoformat(CREATE_BODY["due_date"])
    cmd = task_commands.CreateTask(user_id=_USER_STAND_IN, title=CREATE_BODY["title"], due_date=due)
    return orm_sql(task_commands.create_statement(), task_commands.create_binds(cmd))


def toggle_sql() -> str:
    cmd = task_commands.ToggleTask(user_id=_USER_STAND_IN, task_id=_TASK_STAND_IN)
    return orm_sql(task_commands.toggle_statement(conditional=False), task_commands.address(cmd))


def inline(sql: str, literals: dict[str, str]) -> str:
    """Write string binds in as quoted literals; the other `:name`s stay pgbench variables."""
    for name, value in literals.items():
        quoted = "'" + value.replace("'", "''") + "'"
        # Backslashes are the only special characters in a replacement string.
        sql = re.sub(r"(?<!:):" + name + r"\b", quoted.replace("\\", "\\\\"), sql)
    return sql


def _search(word: str) -> str:
    """The list statement with one search term, as GET ...?q=<word> runs it."""
    sql = task_queries.list_statement(task_queries.ListShape(terms=1)).text
    return inline(sql, {"term_0": task_queries.like_pattern(word)})


def script(kind: Kind) -> str:
    """A pgbench script: the caller and timeouts named, then the statement, in one pipeline."""
    scripts: dict[Kind, tuple[str, str]] = {  # (variables, statement) of each request kind
        "list": (PICK_USER + FETCH_LIMIT, task_queries.LIST_TASKS_SQL[("pending", "created")].text),
        "get": (PICK_TASK, task_queries.GET_TASK_SQL.text),
        # Past every user's last change (at most tasks/users + writes): a poll that finds nothing.
        "changes": (PICK_USER + CURRENT_SINCE, change_queries.CHANGES_SINCE_SQL.text),
        "search": (PICK_USER + FETCH_LIMIT, _search(SEARCH_WORD)),
        "heavy_search": (FETCH_LIMIT, _search(HEAVY_WORD)),
        "create": (PICK_USER, create_sql()),
        "toggle": (PICK_TASK, toggle_sql()),
    }
    variables, statement = scripts[kind]
    pipeline = inline(SET_USER_SQL.text, Timeouts().parameters()) + ";\n" + statement + ";\n"
    if user := ROUTES[kind].user:  # one user, whom no pgbench arithmetic can name
        pipeline = inline(pipeline, {"user_id": user})
    return variables + "\\startpipeline\n" + pipeline + "\\endpipeline\n"


def write_scripts(name: str, mix: Mix, directory: Path) -> list[str]:
    """`-f file@weight` arguments for a mix of request kinds."""
    directory.mkdir(parents=True, exist_ok=True)
    arguments = []
    for kind, weight in mix:
        path = directory / f"{name}-{kind}.sql"
        path.write_text(script(kind))
        arguments += ["-f", f"{path}@{weight}"]
    return arguments


def run(
    loads: list[tuple[list[str], int]], *, url: str, seconds: float, dataset: LoadStats
) -> PgbenchResult:
    """One pgbench per (scripts, connections), all at once; the first one's result, with the
    latencies it logged to a directory of its own (the others are load beside it)."""
    whole = max(1, round(seconds))
    options = ["--no-vacuum", "--protocol=prepared", "--jobs=1", f"--time={whole}"]
    options += [f"--define=tasks={dataset.tasks}", f"--define=users={dataset.users}"]
    program = str(client_program("pgbench"))
    commands = [[program, *options, f"--client={c}", *scripts, url] for scripts, c in loads]
    with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as log_dir:
        commands[0][1:1] = ["--log", f"--log-prefix={Path(log_dir) / LOG_PREFIX}"]
        outputs = run_at_once(commands, timeout=whole + 60)
        return parse(outputs[0], read_latencies(Path(log_dir)), seconds=whole)


def parse(stdout: str, latencies_ns: list[int], *, seconds: float) -> PgbenchResult:
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", stdout)
    if tps is None:
        raise RuntimeError(f"pgbench printed no tps:\n{stdout}")
    return PgbenchResult(
        transactions=_number(r"number of transactions actually processed: (\d+)", stdout),
        seconds=seconds,
        tps=float(tps.group(1)),
        failed=_number(r"number of failed transactions: (\d+)", stdout),
        latency=latency_from_ns(latencies_ns),
    )


def _number(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    return int(found.group(1)) if found else 0


def read_latencies(log_dir: Path) -> list[int]:
    """Per-transaction latencies (ns) from pgbench's --log files; failed ones are skipped."""
    # Each line: client_id transaction_no time_us script_no time_epoch time_us [...]
    logs = (path.read_text().splitlines() for path in log_dir.glob(LOG_PREFIX + "*"))
    rows = (line.split() for lines in logs for line in lines)
    return [int(row[2]) * NS_PER_US for row in rows if len(row) > 2 and row[2].isdigit()]

"""For random tasks and random list parameters, the API answers what the same filter and sort
give on an in-memory model, and walking its pages with any limit yields that answer once.

The model is written from the documented rules (README, "List parameters"), not from the SQL:
an all-day task counts as due at the start of its day in `tz` for the due bounds, and is overdue
once its day has ended there; undated tasks sort last in both directions; ties go by id.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, text

from api.clock import current_time
from tests.auth_support import TokenIssuer
from tests.conftest import client_on

USER = "prop-alice"
NOW = datetime(2026, 3, 3, 23, 30, tzinfo=UTC)
ZONES = ("UTC", "Pacific/Honolulu", "Pacific/Kiritimati", "America/New_York", "Europe/Paris")
WORDS = ("milk", "Milk", "report", "bike", "mum", "rent", "apple")
TAGS = ("home", "work", "urgent")
PRIORITIES = ("low", "medium", "high")
BASE = datetime(2026, 3, 1, tzinfo=UTC)

INSERT = text(
    """
    INSERT INTO tasks (user_id, id, title, description, completed, completed_at, due_date,
                       due_at, priority, tags, created_at, updated_at)
    VALUES (:user_id, :id, :title, :description, :completed,
            CASE WHEN :completed THEN CAST(:created_at AS timestamptz) END,
            :due_date, :due_at, :priority, CAST(:tags AS text[]), :created_at, :updated_at)
    """
)


@dataclass
class ModelTask:
    id: int
    title: str
    description: str | None
    completed: bool
    due_date: date | None
    due_at: datetime | None
    priority: int
    tags: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


# Few days and instants on a coarse grid, so that bounds often fall exactly on a task's due.
days = st.integers(0, 5).map(lambda n: date(2026, 3, 1) + timedelta(days=n))
instants = st.integers(0, 5 * 4).map(lambda n: BASE + timedelta(hours=6 * n - 1))
moments = instants  # created and updated: few values, so that sort keys tie and bounds hit
dues = st.one_of(
    st.tuples(st.none(), st.none()),
    st.tuples(days, st.none()),
    st.tuples(st.none(), instants),
    st.tuples(days, st.none()),
)
tasks = st.fixed_dictionaries(
    {
        "title": st.sampled_from(WORDS),
        "description": st.none() | st.sampled_from(WORDS),
        "completed": st.booleans(),
        "due": dues,
        "priority": st.integers(1, 3),
        "tags": st.lists(st.sampled_from(TAGS), unique=True, max_size=3).map(sorted),
        "created_at": moments,
        "updated_at": moments,
    }
)


def bounds() -> st.SearchStrategy[str]:
    return days.map(date.isoformat) | instants.map(
        lambda moment: moment.astimezone(ZoneInfo("Europe/Paris")).isoformat()
    )


def one(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({name: values})


# Groups of parameters that belong together (a tag mode needs tags; time-zone rules need a
# zone); a few groups at a time, since with every filter at once almost nothing would match.
GROUPS: dict[str, st.SearchStrategy[dict[str, str]]] = {
    "status": one("status", st.sampled_from(["all", "pending", "completed"])),
    "priority": one(
        "priority", st.lists(st.sampled_from(PRIORITIES), min_size=1, max_size=3).map(",".join)
    ),
    "tag": st.fixed_dictionaries(
        {"tag": st.lists(st.sampled_from(TAGS), min_size=1, max_size=2).map(",".join)},
        optional={"tag_mode": st.sampled_from(["any", "all"])},
    ),
    "q": one("q", st.sampled_from(["mil", "MILK", "ort", "e", "app le", "bike mum", "pp"])),
    "due": st.one_of(
        st.fixed_dictionaries({"due_before": bounds()}, optional={"tz": st.sampled_from(ZONES)}),
        st.fixed_dictionaries({"due_after": bounds()}, optional={"tz": st.sampled_from(ZONES)}),
        st.fixed_dictionaries({"due_before": bounds(), "due_after": bounds()}),
    ),
    "overdue": st.fixed_dictionaries(
        {"overdue": st.sampled_from(["true", "false"])},
        optional={"tz": st.sampled_from(ZONES)},
    ),
    "has_due": one("has_due", st.sampled_from(["true", "false"])),
    "updated_after": one("updated_after", bounds()),
    "sort": st.fixed_dictionaries(
        {"sort": st.sampled_from(["created", "updated", "title", "due_date", "priority"])},
        optional={"order": st.sampled_from(["asc", "desc"])},
    ),
}


def merged(groups: list[dict[str, str]]) -> dict[str, str]:
    return {name: value for group in groups for name, value in group.items()}


parameters = (
    st.lists(st.sampled_from(sorted(GROUPS)), unique=True, max_size=3)
    .flatmap(lambda names: st.tuples(*(GROUPS[name] for name in names)))
    .map(lambda groups: merged(list(groups)))
)


def start_of(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone)


def instant(bound: str, zone: ZoneInfo) -> datetime:
    return (
        start_of(date.fromisoformat(bound), zone)
        if len(bound) == 10
        else datetime.fromisoformat(bound)
    )


def due_instant(task: ModelTask, zone: ZoneInfo) -> datetime | None:
    if task.due_date is not None:
        return start_of(task.due_date, zone)
    return task.due_at


def matches(task: ModelTask, params: dict[str, str]) -> bool:
    zone = ZoneInfo(params.get("tz", "UTC"))
    due = due_instant(task, zone)
    text_ = f"{task.title} {task.description or ''}".lower()
    overdue = not task.completed and (
        (task.due_date is not None and task.due_date < NOW.astimezone(zone).date())
        or (task.due_at is not None and task.due_at < NOW)
    )
    wanted_tags = set(params["tag"].split(",")) if "tag" in params else set()
    checks: dict[str, Callable[[str], bool]] = {
        "status": lambda v: v == "all" or task.completed == (v == "completed"),
        "priority": lambda v: PRIORITIES[task.priority - 1] in v.split(","),
        "tag": lambda v: (
            wanted_tags <= set(task.tags)
            if params.get("tag_mode") == "all"
            else bool(wanted_tags & set(task.tags))
        ),
        "q": lambda v: all(term.lower() in text_ for term in v.split()),
        "due_before": lambda v: due is not None and due < instant(v, zone),
        "due_after": lambda v: due is not None and due >= instant(v, zone),
        "overdue": lambda v: overdue == (v == "true"),
        "has_due": lambda v: (due is not None) == (v == "true"),
        "updated_after": lambda v: task.updated_at > instant(v, zone),
    }
    return all(check(params[name]) for name, check in checks.items() if name in params)


def ordered(found: list[ModelTask], params: dict[str, str]) -> list[int]:
    sort = params.get("sort", "created")
    default = "asc" if sort in ("title", "due_date") else "desc"
    descending = params.get("order", default) == "desc"
    keys: dict[str, Any] = {
        "created": lambda t: (t.created_at, t.id),
        "updated": lambda t: (t.updated_at, t.id),
        "title": lambda t: (t.title.lower(), t.id),
        "priority": lambda t: (t.priority, t.id),
    }
    if sort != "due_date":
        return [t.id for t in sorted(found, key=keys[sort], reverse=descending)]
    dated = [t for t in found if due_instant(t, ZoneInfo("UTC")) is not None]
    undated = [t for t in found if due_instant(t, ZoneInfo("UTC")) is None]
    dated.sort(key=lambda t: (due_instant(t, ZoneInfo("UTC")), t.id), reverse=descending)
    undated.sort(key=lambda t: t.id, reverse=descending)
    return [t.id for t in dated + undated]


def expected(model: list[ModelTask], params: dict[str, str]) -> list[int]:
    return ordered([task for task in model if matches(task, params)], params)


@pytest.fixture
def api(connection: Connection, issuer: TokenIssuer) -> Iterator[TestClient]:
    with client_on(connection, issuer) as client:
        client.app.dependency_overrides[current_time] = lambda: NOW  # type: ignore[attr-defined]
        yield client


def insert(connection: Connection, user: str, drawn: list[dict[str, Any]]) -> list[ModelTask]:
    model = []
    # Ids as the service numbers them, per user; each example inserts a user's tasks once.
    for task_id, task in enumerate(drawn, start=1):
        due_date, due_at = task["due"]
        row = {key: value for key, value in task.items() if key != "due"}
        values = {**row, "user_id": user, "id": task_id, "due_date": due_date, "due_at": due_at}
        connection.execute(INSERT, values)
        model.append(ModelTask(id=task_id, due_date=due_date, due_at=due_at, **row))
    return model


def listed(api: TestClient, params: dict[str, Any]) -> list[int]:
    response = api.get(f"/api/{USER}/tasks", params=params)
    assert response.status_code == 200, response.text
    return [task["id"] for task in response.json()]


def walk(api: TestClient, params: dict[str, Any]) -> list[int]:
    response = api.get(f"/api/{USER}/tasks", params=params)
    seen: list[int] = []
    while True:
        assert response.status_code == 200, response.text
        seen += [task["id"] for task in response.json()]
        link = response.headers.get("link")
        if link is None:
            return seen
        response = api.get(link[1 : link.index(">")])


PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(
    mine=st.lists(tasks, min_size=2, max_size=15),
    theirs=st.lists(tasks, max_size=3),
    params=parameters,
)
def test_the_list_equals_the_model_for_any_tasks_and_parameters(
    api: TestClient,
    connection: Connection,
    mine: list[dict[str, Any]],
    theirs: list[dict[str, Any]],
    params: dict[str, str],
) -> None:
    savepoint = connection.begin_nested()
    try:
        model = insert(connection, USER, mine)
        insert(connection, "prop-bob", theirs)
        assert listed(api, {**params, "limit": 500}) == expected(model, params)
    finally:
        savepoint.rollback()


@PROPERTY_SETTINGS
@given(mine=st.lists(tasks, min_size=1, max_size=12), params=parameters, limit=st.integers(1, 5))
def test_walking_the_pages_with_any_limit_yields_the_whole_answer_once(
    api: TestClient,
    connection: Connection,
    mine: list[dict[str, Any]],
    params: dict[str, str],
    limit: int,
) -> None:
    savepoint = connection.begin_nested()
    try:
        insert(connection, USER, mine)
        whole = listed(api, {**params, "limit": 500})
        assert walk(api, {**params, "limit": limit}) == whole
    finally:
        savepoint.rollback()

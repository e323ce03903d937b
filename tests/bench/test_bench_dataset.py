"""The benchmark's dataset and requests on a real database and a real service: new tasks continue
each user's ids, removing a workload's rows leaves exactly what the load wrote, the heavy user's
search finds exactly its matches, and every kind of request the workloads send is answered (a
handful of requests with httpx; wrk drives the same routes in the smoke run)."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bench.config import config
from bench.dataset import LoadStats, load, remove_added_rows
from bench.service import BenchAuth, change_tokens, running_service
from bench.workloads import HEAVY_MATCHES, HEAVY_USER, HEAVY_WORD, ROUTES
from db import embedded
from db.connections import sqlalchemy_url
from db.migrate import upgrade
from tests.integration.test_per_user_ids_migration import create_as_service

TASKS = 40
USERS = 6
HEAVY_TASKS = 50
ALL_TASKS = text("SELECT user_id, id FROM tasks ORDER BY user_id, id")
MATCHES = text("SELECT user_id, count(*) FROM tasks WHERE title LIKE :pattern GROUP BY user_id")


@pytest.fixture
def scratch(server_url: str) -> Iterator[tuple[str, Engine]]:
    """A migrated database of this test alone: its URL and an engine as its owner."""
    name = f"taskapi_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    embedded.ensure_app_role(server_url)
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(sqlalchemy_url(url))
    try:
        upgrade(url)
        yield url, engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def loaded(engine: Engine) -> LoadStats:
    return load(engine, config(smoke=True, tasks=TASKS, users=USERS, heavy_user_tasks=HEAVY_TASKS))


def test_a_new_task_after_the_load_continues_its_users_ids(scratch: tuple[str, Engine]) -> None:
    url, engine = scratch
    loaded(engine)

    # User 1 owns tasks 1, 7, ..., 37; user 6 owns 6, 12, ..., 36; the heavy user 41..90.
    assert create_as_service(url, "1") == 38
    assert create_as_service(url, "6") == 37
    assert create_as_service(url, HEAVY_USER) == TASKS + HEAVY_TASKS + 1


def test_removing_added_rows_leaves_the_loaded_ones_and_their_counters(
    scratch: tuple[str, Engine],
) -> None:
    url, engine = scratch
    stats = loaded(engine)
    with engine.connect() as conn:
        before = conn.execute(ALL_TASKS).all()
    for user in ("1", "2", "6", HEAVY_USER, "1"):
        create_as_service(url, user)

    remove_added_rows(engine, stats)

    with engine.connect() as conn:
        assert conn.execute(ALL_TASKS).all() == before
    assert create_as_service(url, "1") == 38  # the same id as the first run's first create


def test_the_heavy_users_word_is_in_exactly_its_matches_and_nowhere_else(
    scratch: tuple[str, Engine],
) -> None:
    _, engine = scratch
    loaded(engine)
    with engine.connect() as conn:
        rows = conn.execute(MATCHES, {"pattern": f"%{HEAVY_WORD}%"}).all()
    counts = {user: matches for user, matches in rows}
    assert counts == {HEAVY_USER: HEAVY_MATCHES}


def test_every_kind_of_request_is_answered_with_a_token_of_its_user(
    scratch: tuple[str, Engine], tmp_path: Path
) -> None:
    url, engine = scratch
    loaded(engine)
    auth = BenchAuth()
    app_url = embedded.as_role(url, embedded.APP_ROLE)
    with (
        running_service(
            app_url=app_url,
            owner_url=url,
            auth=auth,
            workers=1,
            log_path=tmp_path / "server.log",
        ) as service,
        httpx.Client(base_url=service.url, timeout=10) as client,
    ):
        bodies = {}
        sinces = change_tokens(service.url, {"1": auth.token("1")})
        for kind, route in ROUTES.items():
            user = route.user or "1"
            path = route.template.replace("{user}", user).replace("{task}", "7")
            path = path.replace("{since}", sinces["1"])
            headers = {"Authorization": f"Bearer {auth.token(user)}"}
            body = route.body.encode() if route.body else None
            if body:
                headers["Content-Type"] = "application/json"
            response = client.request(route.method, path, headers=headers, content=body)
            assert response.is_success, (kind, response.status_code, response.text)
            bodies[kind] = response.json()
        other = client.get("/api/2/tasks", headers={"Authorization": f"Bearer {auth.token('1')}"})
    titles = [task["title"] for task in bodies["heavy_search"]]
    assert len(titles) == HEAVY_MATCHES
    assert all(HEAVY_WORD in title for title in titles)
    assert other.status_code in (401, 403, 404)  # a token names one user only
    assert bodies["changes"]["changes"] == []  # a poll with a current token: nothing new

"""The fast read path (api/fast_reads.py) answers exactly as the FastAPI routes it stands in for.

Every request is sent twice, to the app as it runs and to the same app without the fast path,
on the same connection and data; status, headers (but the request id) and body must agree,
whichever of the two ends up answering.
"""

from collections.abc import Iterator
from typing import Any

import fastapi.routing
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection

from api.fast_reads import FastReads
from tests.auth_support import TokenIssuer
from tests.conftest import client_on
from tests.integration.test_tasks_api import create

Pair = tuple[TestClient, TestClient]


def without_fast_reads(client: TestClient) -> TestClient:
    app: Any = client.app
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastReads]
    return client


@pytest.fixture
def pair(connection: Connection, issuer: TokenIssuer) -> Iterator[Pair]:
    with (
        client_on(connection, issuer) as fast,
        without_fast_reads(client_on(connection, issuer)) as routed,
    ):
        for n in range(7):
            create(fast, title=f"task {n}", priority=("low", "high")[n % 2], tags=[f"t{n % 3}"])
        create(fast, user="bob", title="bob's")
        yield fast, routed


@pytest.fixture
def tokenless_pair(connection: Connection, issuer: TokenIssuer) -> Iterator[Pair]:
    with (
        client_on(connection, issuer, auto_token=False) as fast,
        without_fast_reads(client_on(connection, issuer, auto_token=False)) as routed,
    ):
        yield fast, routed


def answer(
    client: TestClient, url: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], Any]:
    response = client.get(url, headers=headers)
    kept = {k: v for k, v in response.headers.items() if k not in ("x-request-id", "date")}
    body = response.json() if response.content else None
    if isinstance(body, dict):
        body.pop("request_id", None)
    return response.status_code, kept, body


def assert_same(pair: Pair, url: str, headers: dict[str, str] | None = None) -> int:
    fast, routed = pair
    expected = answer(routed, url, headers or {})
    assert answer(fast, url, headers or {}) == expected
    return expected[0]


NAMES = ["status", "limit", "priority", "tag", "tag_mode", "q", "sort", "order", "cursor",
         "overdue", "has_due", "due_before", "tz", "unknown", "STATUS"]  # fmt: skip
VALUES = ["", "pending", "completed", "all", "2", "0", "501", "high", "low", "urgent", "t1",
          "t1,t2", "any", "task", "   ", "title", "asc", "desc", "true", "false", "2026-01-01",
          "Europe/Paris", "Nowhere/City", "abc", "%00", "é", "1e3", "+3", "03"]  # fmt: skip
query_strings = st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=4)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=query_strings)
def test_any_list_query_is_answered_as_the_route_answers_it(
    pair: Pair, query: list[tuple[str, str]]
) -> None:
    assert_same(pair, "/api/alice/tasks?" + "&".join(f"{n}={v}" for n, v in query))


@pytest.mark.parametrize(
    "url",
    [
        "/api/alice/tasks",
        "/api/alice/tasks/",
        "/api/alice/tasks?status=pending&limit=2",
        "/api/alice/tasks?priority=high&priority=low&tag=t1",
        "/api/alice/tasks?limit=2&limit=3",
        "/api/alice/tasks/1",
        "/api/alice/tasks/0",
        "/api/alice/tasks/007",
        "/api/alice/tasks/99",
        "/api/alice/tasks/9223372036854775808",
        "/api/alice/tasks/1?extra=ignored",
        "/api/bob/tasks/1",
        "/api/al%20ice/tasks",
        "/api/alice/tasks/stats",
    ],
)
def test_each_read_is_answered_as_the_route_answers_it(pair: Pair, url: str) -> None:
    assert_same(pair, url)


def test_following_the_link_pages_alike(pair: Pair) -> None:
    fast, routed = pair
    link = fast.get("/api/alice/tasks?limit=3").headers["link"]
    url = link.removeprefix("<").split(">")[0]
    assert assert_same(pair, url) == 200
    assert routed.get("/api/alice/tasks?limit=3").headers["link"] == link


@pytest.mark.parametrize("if_none_match", ['"1"', '"2"', 'W/"1"', "*", "1", '"1", "x"', ""])
def test_conditional_reads_are_answered_as_the_route_answers_them(
    pair: Pair, if_none_match: str
) -> None:
    assert_same(pair, "/api/alice/tasks/1", {"If-None-Match": if_none_match})


@pytest.mark.parametrize(
    "authorization", [None, "Bearer", "Basic abc", "Bearer not.a.token", "bob"]
)
def test_callers_without_alices_token_are_answered_as_the_route_answers_them(
    tokenless_pair: Pair, issuer: TokenIssuer, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    if authorization == "bob":
        headers = {"Authorization": "Bearer " + issuer.token("bob")}
    for url in ("/api/alice/tasks", "/api/alice/tasks/1"):
        assert assert_same(tokenless_pair, url, headers) in (401, 403)


def test_a_plain_list_and_read_skip_fastapi_and_anything_else_reaches_it(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, _ = pair
    solved: list[object] = []
    solve = getattr(fastapi.routing, "solve_dependencies")  # noqa: B009 (not re-exported)

    async def counting(*args: Any, **kwargs: Any) -> Any:
        solved.append(kwargs.get("dependant"))
        return await solve(*args, **kwargs)

    monkeypatch.setattr("fastapi.routing.solve_dependencies", counting)
    assert fast.get("/api/alice/tasks?status=pending&limit=2").status_code == 200
    assert fast.get("/api/alice/tasks/1").status_code == 200
    assert solved == []
    assert fast.get("/api/alice/tasks?unknown=1").status_code == 422
    assert len(solved) == 1

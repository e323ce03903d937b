"""The fast path (api/fast_path.py) answers exactly as the FastAPI routes it stands in for.

Every request is sent twice, to the app as it runs and to the same app without the fast path,
on the same connection and data (writes each from the same savepoint); status, headers (but the
request id) and body must agree, whichever of the two ends up answering.
"""

import json
from collections.abc import Iterator
from typing import Any

import fastapi.routing
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection

from api.fast_path import FastPath
from tests.auth_support import TokenIssuer
from tests.conftest import client_on
from tests.integration.test_tasks_api import create

Pair = tuple[TestClient, TestClient]


def without_fast_path(client: TestClient) -> TestClient:
    app: Any = client.app
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastPath]
    return client


@pytest.fixture
def pair(connection: Connection, issuer: TokenIssuer) -> Iterator[Pair]:
    with (
        client_on(connection, issuer) as fast,
        without_fast_path(client_on(connection, issuer)) as routed,
    ):
        for n in range(7):
            create(fast, title=f"task {n}", priority=("low", "high")[n % 2], tags=[f"t{n % 3}"])
        create(fast, user="bob", title="bob's")
        yield fast, routed


@pytest.fixture
def tokenless_pair(connection: Connection, issuer: TokenIssuer) -> Iterator[Pair]:
    with (
        client_on(connection, issuer, auto_token=False) as fast,
        without_fast_path(client_on(connection, issuer, auto_token=False)) as routed,
    ):
        yield fast, routed


Answer = tuple[int, dict[str, str], Any]


def kept(response: Any) -> Answer:
    """Status, headers and body, but the request id (and a consistency token's value: the WAL
    moves on between the two runs of a write)."""
    headers = {k: v for k, v in response.headers.items() if k not in ("x-request-id", "date")}
    if "x-consistency-token" in headers:
        headers["x-consistency-token"] = "(a token)"
    body = response.json() if response.content else None
    if isinstance(body, dict):
        body.pop("request_id", None)
    return response.status_code, headers, body


def answer(client: TestClient, url: str, headers: dict[str, str]) -> Answer:
    return kept(client.get(url, headers=headers))


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


def test_the_common_requests_skip_fastapi_and_anything_else_reaches_it(
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
    assert fast.post("/api/alice/tasks", json={"title": "t"}).status_code == 201
    assert fast.patch("/api/alice/tasks/1/complete").status_code == 200
    assert fast.patch("/api/alice/tasks/1/complete", json={"completed": False}).status_code == 200
    assert fast.get("/api/alice/changes").status_code == 200
    assert solved == []
    assert fast.get("/api/alice/tasks?unknown=1").status_code == 422
    assert len(solved) == 1


def write_answers(
    pair: Pair, connection: Connection, requests: list[tuple[str, str, dict[str, Any]]]
) -> list[list[Answer]]:
    """Each client's answers to the same writes, each client from the same state."""
    answers = []
    for client in pair:
        savepoint = connection.begin_nested()
        try:
            answers.append([kept(client.request(m, url, **kw)) for m, url, kw in requests])
        finally:
            savepoint.rollback()
    return answers


def assert_same_writes(
    pair: Pair, connection: Connection, *requests: tuple[str, str, dict[str, Any]]
) -> list[Answer]:
    fast, routed = write_answers(pair, connection, list(requests))
    assert fast == routed
    return fast


def post(body: bytes | str, **headers: str) -> tuple[str, str, dict[str, Any]]:
    headers.setdefault("Content-Type", "application/json")
    return "POST", "/api/alice/tasks", {"content": body, "headers": headers}


def complete(task: str, body: bytes | str = b"", **headers: str) -> tuple[str, str, dict[str, Any]]:
    if body:
        headers.setdefault("Content-Type", "application/json")
    return "PATCH", f"/api/alice/tasks/{task}/complete", {"content": body, "headers": headers}


@pytest.mark.parametrize(
    "body",
    [
        '{"title": "Buy milk"}',
        '{"title": "Pay", "description": "rent", "priority": "high", "tags": ["b", "a", "a"],'
        ' "due_date": "2026-12-24"}',
        '{"title": "At noon", "due_at": "2026-12-24T12:00:00+01:00"}',
        '{"title": "  "}',
        '{"title": "x", "id": 5}',
        '{"title": "x", "due_date": "2026-12-24", "due_at": "2026-12-24T12:00:00Z"}',
        '{"title": 5}',
        '{"title": "x", "priority": "urgent"}',
        '["title"]',
        '{"title": "x"',
        "",
        "\xff",
    ],
)
def test_each_create_is_answered_as_the_route_answers_it(
    pair: Pair, connection: Connection, body: str
) -> None:
    assert_same_writes(pair, connection, post(body.encode("latin-1")))


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "application/merge-patch+json", "text/plain"],
)
def test_creates_with_other_content_types_are_answered_as_the_route_answers_them(
    pair: Pair, connection: Connection, content_type: str
) -> None:
    assert_same_writes(pair, connection, post('{"title": "x"}', **{"Content-Type": content_type}))


@pytest.mark.parametrize("key", ["k-1", "", "has space", "k" * 256, "tab\tkey"])
def test_keyed_creates_and_their_replays_are_answered_as_the_route_answers_them(
    pair: Pair, connection: Connection, key: str
) -> None:
    first = post('{"title": "x"}', **{"Idempotency-Key": key})
    other = post('{"title": "y"}', **{"Idempotency-Key": key})
    assert_same_writes(pair, connection, first, first, other)


@pytest.mark.parametrize(
    ("task", "body", "headers"),
    [
        ("1", "", {}),
        ("1", '{"completed": true}', {}),
        ("1", '{"completed": "yes"}', {}),
        ("1", "{", {}),
        ("1", "", {"If-Match": '"1"'}),
        ("1", "", {"If-Match": '"7"'}),
        ("1", "", {"If-Match": "1"}),
        ("1", '{"completed": false}', {"Idempotency-Key": "c-1"}),
        ("99", "", {}),
        ("0", "", {}),
        ("9223372036854775808", "", {}),
    ],
)
def test_each_completion_is_answered_as_the_route_answers_it(
    pair: Pair, connection: Connection, task: str, body: str, headers: dict[str, str]
) -> None:
    request = complete(task, body, **headers)
    assert_same_writes(pair, connection, request, request)


def test_bobs_token_changes_nothing_of_alices_either_way(
    tokenless_pair: Pair, connection: Connection, issuer: TokenIssuer
) -> None:
    bob = {"Authorization": "Bearer " + issuer.token("bob")}
    answers = assert_same_writes(
        tokenless_pair, connection, post('{"title": "x"}', **bob), complete("1", **bob)
    )
    assert [status for status, _, _ in answers] == [403, 403]


bodies = st.fixed_dictionaries(
    {"title": st.sampled_from(["t", " padded ", "x" * 201, ""])},
    optional={
        "description": st.none() | st.sampled_from(["d", "y" * 1001]),
        "priority": st.sampled_from(["low", "high", "HIGH", None]),
        "tags": st.lists(st.sampled_from(["a", "B", "", "x" * 65, "é"]), max_size=3),
        "due_date": st.sampled_from(["2026-01-01", "2026-02-30", "tomorrow", None]),
        "completed": st.booleans(),
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
def test_any_create_body_is_answered_as_the_route_answers_it(
    pair: Pair, connection: Connection, body: dict[str, Any]
) -> None:
    assert_same_writes(pair, connection, post(json.dumps(body)))


@pytest.mark.parametrize("token", ["1A2B3C", "0", "zz", "", " 1A ", "1" * 17])
def test_reads_after_a_consistency_token_are_answered_as_the_route_answers_them(
    pair: Pair, token: str
) -> None:
    for url in ("/api/alice/tasks?limit=2", "/api/alice/tasks/1"):
        assert_same(pair, url, {"X-Consistency-Token": token})


@pytest.mark.parametrize(
    "query",
    ["", "limit=2", "limit=0", "limit=1001", "since=", "since=forged", "x=1", "limit=1&limit=2"],
)
def test_each_feed_poll_is_answered_as_the_route_answers_it(pair: Pair, query: str) -> None:
    assert_same(pair, "/api/alice/changes?" + query)


def test_a_poll_with_a_current_token_is_answered_as_the_route_answers_it(pair: Pair) -> None:
    fast, _ = pair
    current = fast.get("/api/alice/changes").json()["next"]
    assert assert_same(pair, f"/api/alice/changes?since={current}") == 200

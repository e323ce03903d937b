"""Keyset pages: a JSON array per page, a Link to the next, and cursors that cannot be forged."""

import base64
import json
import re

import pytest
from fastapi.testclient import TestClient

from api.cursors import CursorCodec
from tests.integration.test_tasks_api import assert_problem, create, invalid_fields

NEXT = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


def next_url(response_headers: dict[str, str] | object) -> str | None:
    link = getattr(response_headers, "get", lambda _: None)("link")
    if link is None:
        return None
    match = NEXT.match(link)
    assert match, link
    return match["url"]


def walk(client: TestClient, url: str) -> list[list[int]]:
    """Every page's ids, following Link headers from `url` to the end."""
    pages: list[list[int]] = []
    following: str | None = url
    while following is not None:
        response = client.get(following)
        assert response.status_code == 200, response.text
        assert isinstance(response.json(), list)
        pages.append([task["id"] for task in response.json()])
        following = next_url(response.headers)
    return pages


def cursor_of(client: TestClient, url: str) -> str:
    following = next_url(client.get(url).headers)
    assert following is not None
    return following.split("cursor=")[1]


def test_limit_defaults_to_100_and_a_short_list_has_no_link(client: TestClient) -> None:
    for n in range(3):
        create(client, title=f"t{n}")

    response = client.get("/api/alice/tasks")

    assert len(response.json()) == 3
    assert "link" not in response.headers


def test_pages_follow_the_link_until_every_task_was_seen_once(client: TestClient) -> None:
    created = [create(client, title=f"t{n}")["id"] for n in range(7)]

    pages = walk(client, "/api/alice/tasks?limit=3")

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [task_id for page in pages for task_id in page] == list(reversed(created))


@pytest.mark.parametrize(
    "query",
    [
        "sort=title",
        "sort=title&order=desc",
        "sort=due_date",
        "sort=due_date&order=desc",
        "sort=priority",
        "sort=priority&order=asc",
        "sort=updated&order=asc",
        "sort=created&order=asc&status=pending",
    ],
)
def test_paging_with_ties_and_undated_tasks_matches_the_unpaged_list(
    client: TestClient, query: str
) -> None:
    for n in range(9):
        due = {"due_date": "2026-05-0" + str(n % 3 + 1)} if n % 4 else {}
        create(client, title=["same", "Same", "other"][n % 3], priority="low", **due)

    whole = [task["id"] for task in client.get(f"/api/alice/tasks?{query}").json()]
    pages = walk(client, f"/api/alice/tasks?{query}&limit=2")

    assert [task_id for page in pages for task_id in page] == whole
    assert len(whole) == 9


def test_tasks_created_while_paging_do_not_duplicate_or_hide_older_ones(
    client: TestClient,
) -> None:
    older = [create(client, title=f"old {n}")["id"] for n in range(5)]
    first = client.get("/api/alice/tasks?limit=2")
    create(client, title="new while paging")  # newest first: it sorts before the cursor

    following = next_url(first.headers)
    assert following is not None
    seen = [task["id"] for task in first.json()]
    seen += [task_id for page in walk(client, following) for task_id in page]

    assert sorted(seen) == sorted(older)
    assert len(seen) == len(set(seen))


def test_the_link_keeps_the_other_parameters(client: TestClient) -> None:
    for n in range(3):
        create(client, title=f"t{n}", tags=["work"])

    following = next_url(client.get("/api/alice/tasks?tag=work&limit=1&sort=title").headers)

    assert following is not None
    assert following.startswith("/api/alice/tasks?")
    assert "tag=work" in following
    assert "sort=title" in following
    assert "limit=1" in following


def test_a_cursor_may_be_reused_with_another_limit(client: TestClient) -> None:
    ids = [create(client, title=f"t{n}")["id"] for n in range(5)]
    cursor = cursor_of(client, "/api/alice/tasks?limit=1")

    rest = client.get(f"/api/alice/tasks?limit=10&cursor={cursor}").json()

    assert [task["id"] for task in rest] == list(reversed(ids))[1:]


@pytest.mark.parametrize(
    "changed", ["sort=title", "status=pending", "order=asc", "q=task", "tz=Europe/Paris"]
)
def test_a_cursor_used_with_other_parameters_is_422(client: TestClient, changed: str) -> None:
    for n in range(3):
        create(client, title=f"task {n}")
    cursor = cursor_of(client, "/api/alice/tasks?limit=1")

    response = client.get(f"/api/alice/tasks?limit=1&{changed}&cursor={cursor}")

    assert "cursor" in invalid_fields(response)
    assert "different list parameters" in response.json()["errors"][0]["message"]


def test_another_users_cursor_is_422(client: TestClient) -> None:
    for user in ("alice", "bob"):
        for n in range(2):
            create(client, user, title=f"t{n}")
    cursor = cursor_of(client, "/api/alice/tasks?limit=1")

    assert "cursor" in invalid_fields(client.get(f"/api/bob/tasks?limit=1&cursor={cursor}"))


def test_an_altered_cursor_is_422(client: TestClient) -> None:
    for n in range(3):
        create(client, title=f"t{n}")
    cursor = cursor_of(client, "/api/alice/tasks?limit=1")
    payload, signature = cursor.split(".")
    version, bound, key, task_id = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged = json.dumps([version, bound, key, task_id + 1]).encode()
    forged_payload = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()

    for tampered in (forged_payload + "." + signature, cursor[:-2] + "AA", cursor + "x"):
        response = client.get(f"/api/alice/tasks?limit=1&cursor={tampered}")
        assert "cursor" in invalid_fields(response), tampered


def test_a_cursor_signed_with_another_secret_is_422(client: TestClient) -> None:
    create(client)
    create(client)
    cursor = cursor_of(client, "/api/alice/tasks?limit=1")
    client.app.state.cursors = CursorCodec(b"another key")  # type: ignore[attr-defined]

    problem = assert_problem(client.get(f"/api/alice/tasks?limit=1&cursor={cursor}"), 422)
    assert problem["errors"][0]["field"] == "cursor"


def test_limit_500_is_accepted(client: TestClient) -> None:
    assert client.get("/api/alice/tasks?limit=500").status_code == 200

"""Concurrent clients against a real server process: no lost update, no doubled write."""

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.integration.test_cli import call, serving

Reply = tuple[int, dict[str, str], bytes]


def request(
    base: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> Reply:
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def server(database_url: str, app_database_url: str) -> Iterator[str]:
    env = {
        **os.environ,
        "DATABASE_URL": app_database_url,
        "MIGRATION_DATABASE_URL": database_url,
        "AUTH_MODE": "none",
    }
    with serving(env, "--workers", "2") as base:
        yield base


@pytest.fixture
def user() -> str:
    """A user of this test alone: the server commits, so tests keep to their own rows."""
    return f"rel-{uuid.uuid4().hex[:12]}"


def all_at_once(count: int, action: Callable[[int], Reply]) -> list[Reply]:
    """Run `action(i)` in `count` threads released together."""
    barrier = threading.Barrier(count, timeout=30)

    def start(i: int) -> Reply:
        barrier.wait()
        return action(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(start, range(count)))


def test_eight_writers_with_one_etag_exactly_one_wins(server: str, user: str) -> None:
    task = call(server, "POST", f"/api/{user}/tasks", {"title": "contested"})
    path = f"/api/{user}/tasks/{task['id']}"

    replies = all_at_once(
        8,
        lambda i: request(server, "PUT", path, {"title": f"writer {i}"}, {"If-Match": '"1"'}),
    )

    statuses = sorted(status for status, _, _ in replies)
    assert statuses == [200] + [412] * 7
    final = call(server, "GET", path)
    assert final["version"] == 2
    winner = next(json.loads(body) for status, _, body in replies if status == 200)
    assert final == winner


def test_read_modify_write_with_retries_on_412_loses_no_update(server: str, user: str) -> None:
    task = call(server, "POST", f"/api/{user}/tasks", {"title": "shared", "description": ""})
    path = f"/api/{user}/tasks/{task['id']}"

    def append_marker(i: int) -> Reply:
        for _ in range(50):  # bounded: each retry follows another writer's success
            _, headers, body = request(server, "GET", path)
            current = json.loads(body)
            description = (current["description"] or "") + f"[{i}]"
            reply = request(
                server, "PUT", path, {"description": description}, {"If-Match": headers["etag"]}
            )
            if reply[0] != 412:
                return reply
        raise AssertionError(f"writer {i} never won in 50 attempts")

    replies = all_at_once(6, append_marker)

    assert [status for status, _, _ in replies] == [200] * 6
    final = call(server, "GET", path)
    assert sorted(final["description"].replace("][", "]|[").split("|")) == sorted(
        f"[{i}]" for i in range(6)
    )
    assert final["version"] == 1 + 6


def test_ten_concurrent_posts_with_one_key_create_one_task(server: str, user: str) -> None:
    headers = {"Idempotency-Key": f"k-{uuid.uuid4()}"}

    replies = all_at_once(
        10,
        lambda _: request(server, "POST", f"/api/{user}/tasks", {"title": "once"}, headers),
    )

    assert {(status, body) for status, _, body in replies} == {(201, replies[0][2])}
    assert len(call(server, "GET", f"/api/{user}/tasks")) == 1


def test_concurrent_toggles_each_take_effect(server: str, user: str) -> None:
    task = call(server, "POST", f"/api/{user}/tasks", {"title": "flip"})
    path = f"/api/{user}/tasks/{task['id']}/complete"

    replies = all_at_once(9, lambda _: request(server, "PATCH", path))

    assert [status for status, _, _ in replies] == [200] * 9
    final = call(server, "GET", f"/api/{user}/tasks/{task['id']}")
    assert final["completed"] is True  # nine toggles from pending
    assert final["version"] == 10

"""Versions and ETags, conditional writes, merge patches, explicit completion, idempotency keys,
body limits and health checks, through the HTTP API on real PostgreSQL."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from tests.integration.test_tasks_api import assert_problem, create, invalid_fields


def url(task: dict[str, Any], suffix: str = "") -> str:
    return f"/api/{task['user_id']}/tasks/{task['id']}{suffix}"


# --- versions and ETags -------------------------------------------------------------------------


def test_a_new_task_is_version_1_with_a_strong_etag(client: TestClient) -> None:
    response = client.post("/api/alice/tasks", json={"title": "t"})
    assert response.json()["version"] == 1
    assert response.headers["etag"] == '"1"'
    assert client.get(url(response.json())).headers["etag"] == '"1"'


def test_every_change_increments_the_version(client: TestClient) -> None:
    task = create(client)
    assert client.put(url(task), json={"title": "a"}).json()["version"] == 2
    assert client.patch(url(task), json={"description": "b"}).json()["version"] == 3
    toggled = client.patch(url(task, "/complete"))
    assert toggled.json()["version"] == 4
    assert toggled.headers["etag"] == '"4"'


def test_an_update_that_changes_nothing_keeps_the_version(client: TestClient) -> None:
    task = create(client, title="same", description="same")
    again = client.put(url(task), json={"title": "same", "description": "same"}).json()
    empty = client.put(url(task), json={}).json()
    assert again == task
    assert empty == task


def test_if_match_with_the_current_etag_applies_the_write(client: TestClient) -> None:
    task = create(client)
    response = client.put(url(task), json={"title": "new"}, headers={"If-Match": '"1"'})
    assert response.status_code == 200
    assert response.json()["version"] == 2


@pytest.mark.parametrize("tag", ['"7"', '"2", "3"', '"2147483647"'])
def test_if_match_with_a_stale_etag_is_412_with_the_current_task(
    client: TestClient, tag: str
) -> None:
    task = create(client)

    response = client.put(url(task), json={"title": "lost"}, headers={"If-Match": tag})

    problem = assert_problem(response, 412)
    assert problem["current"] == task
    assert response.headers["etag"] == '"1"'
    assert client.get(url(task)).json() == task


@pytest.mark.parametrize(
    ("header", "tag"),
    [
        ("If-Match", "1"),  # the version without quotes: the most common mistake
        ("If-Match", 'W/"1"'),
        ("If-Match", ""),
        ("If-Match", " "),
        ("If-Match", '"1x"'),
        ("If-Match", '"²"'),
        ("If-Match", '"' + "9" * 5000 + '"'),
        ("If-Match", '"99999999999"'),
        ("If-Match", ", ".join(f'"{n}"' for n in range(1, 20))),
        ("If-Match", '"1",'),
        ("If-None-Match", "1"),
        ("If-None-Match", ""),
        ("If-None-Match", '"²"'),
    ],
)
def test_a_malformed_conditional_header_is_422_naming_it_never_412(
    client: TestClient, header: str, tag: str
) -> None:
    task = create(client)
    method = "GET" if header == "If-None-Match" else "PUT"
    body = None if method == "GET" else {"title": "lost"}

    # As bytes: a client may send any octets (here UTF-8), which the server reads as Latin-1.
    response = client.request(method, url(task), json=body, headers={header.encode(): tag.encode()})

    problem = assert_problem(response, 422)
    assert problem["type"] == "/problems/validation"
    assert [(e["location"], e["field"]) for e in problem["errors"]] == [("header", header)]
    assert '"3"' in problem["errors"][0]["message"]
    assert client.get(url(task)).json() == task


def test_if_none_match_takes_a_weak_tag_of_the_current_version(client: TestClient) -> None:
    task = create(client)
    response = client.get(url(task), headers={"If-None-Match": 'W/"1"'})
    assert response.status_code == 304


def test_if_match_star_means_any_version(client: TestClient) -> None:
    task = create(client)
    assert client.put(url(task), json={"title": "x"}, headers={"If-Match": "*"}).status_code == 200


def test_if_match_also_guards_delete_and_completion(client: TestClient) -> None:
    task = create(client)
    stale = {"If-Match": '"9"'}

    assert_problem(client.delete(url(task), headers=stale), 412)
    assert_problem(client.patch(url(task, "/complete"), headers=stale), 412)
    assert_problem(client.patch(url(task), json={"title": "x"}, headers=stale), 412)
    assert client.get(url(task)).json() == task
    assert client.delete(url(task), headers={"If-Match": '"1"'}).status_code == 204


def test_if_match_on_another_users_task_is_still_404(client: TestClient) -> None:
    task = create(client, "bob")
    response = client.put(f"/api/alice/tasks/{task['id']}", json={}, headers={"If-Match": '"1"'})
    assert_problem(response, 404)


def test_if_none_match_with_the_current_etag_is_304(client: TestClient) -> None:
    task = create(client)

    cached = client.get(url(task), headers={"If-None-Match": '"1"'})
    changed = client.get(url(task), headers={"If-None-Match": '"0"'})

    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == '"1"'
    assert changed.status_code == 200
    assert changed.json() == task


# --- merge patch and explicit completion --------------------------------------------------------


def test_merge_patch_changes_only_what_it_names_and_null_clears(client: TestClient) -> None:
    task = create(client, title="keep", description="drop me", due_date="2026-03-01")

    response = client.patch(
        url(task),
        content=b'{"description": null}',
        headers={"content-type": "application/merge-patch+json"},
    )

    assert response.status_code == 200
    patched = response.json()
    assert (patched["title"], patched["description"], patched["due_date"]) == (
        "keep",
        None,
        "2026-03-01",
    )


def test_merge_patch_cannot_clear_the_title(client: TestClient) -> None:
    task = create(client)
    assert "title" in invalid_fields(client.patch(url(task), json={"title": None}))
    assert client.get(url(task)).json() == task


def test_completion_with_a_body_sets_the_state_and_is_safe_to_repeat(client: TestClient) -> None:
    task = create(client)

    first = client.patch(url(task, "/complete"), json={"completed": True}).json()
    second = client.patch(url(task, "/complete"), json={"completed": True}).json()

    assert first["completed"] is True
    assert second == first
    reopened = client.patch(url(task, "/complete"), json={"completed": False}).json()
    assert reopened["completed"] is False
    assert reopened["completed_at"] is None


@pytest.mark.parametrize(
    "body", [{"completed": "yes"}, {"completed": 1}, {"completed": None}, {"done": True}, {}]
)
def test_completion_body_must_be_a_boolean_completed(
    client: TestClient, body: dict[str, Any]
) -> None:
    task = create(client)
    assert_problem(client.patch(url(task, "/complete"), json=body), 422)
    assert client.get(url(task)).json() == task


# --- idempotency keys ---------------------------------------------------------------------------


def test_a_retried_create_with_the_same_key_is_replayed_not_repeated(client: TestClient) -> None:
    headers = {"Idempotency-Key": "create-1"}

    first = client.post("/api/alice/tasks", json={"title": "once"}, headers=headers)
    retry = client.post("/api/alice/tasks", json={"title": "once"}, headers=headers)

    assert first.status_code == retry.status_code == 201
    assert retry.content == first.content
    assert retry.headers["location"] == first.headers["location"]
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(client.get("/api/alice/tasks").json()) == 1


def test_the_same_key_with_a_different_body_is_422(client: TestClient) -> None:
    headers = {"Idempotency-Key": "create-2"}
    client.post("/api/alice/tasks", json={"title": "one"}, headers=headers)

    response = client.post("/api/alice/tasks", json={"title": "two"}, headers=headers)

    assert "Idempotency-Key" in invalid_fields(response)
    assert [t["title"] for t in client.get("/api/alice/tasks").json()] == ["one"]


def test_idempotency_keys_are_scoped_per_user(client: TestClient) -> None:
    headers = {"Idempotency-Key": "shared"}
    alice = client.post("/api/alice/tasks", json={"title": "t"}, headers=headers)
    bob = client.post("/api/bob/tasks", json={"title": "t"}, headers=headers)
    assert "idempotent-replayed" not in bob.headers
    assert bob.json()["user_id"] == "bob"
    assert alice.json()["user_id"] == "alice"


def test_a_retried_toggle_with_the_same_key_toggles_once(client: TestClient) -> None:
    task = create(client)
    headers = {"Idempotency-Key": "toggle-1"}

    first = client.patch(url(task, "/complete"), headers=headers)
    retry = client.patch(url(task, "/complete"), headers=headers)

    assert retry.content == first.content
    assert client.get(url(task)).json()["completed"] is True


def test_an_expired_key_runs_the_request_again(client: TestClient, connection: Connection) -> None:
    headers = {"Idempotency-Key": "old"}
    client.post("/api/alice/tasks", json={"title": "t"}, headers=headers)
    connection.execute(text("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"))

    again = client.post("/api/alice/tasks", json={"title": "t"}, headers=headers)

    assert "idempotent-replayed" not in again.headers
    assert len(client.get("/api/alice/tasks").json()) == 2
    remaining = "SELECT count(*) FROM idempotency_keys WHERE user_id = 'alice'"
    assert connection.execute(text(remaining)).scalar_one() == 1


def test_a_failed_request_does_not_use_up_its_key(client: TestClient) -> None:
    headers = {"Idempotency-Key": "after-404"}
    assert_problem(client.patch("/api/alice/tasks/999999/complete", headers=headers), 404)
    task = create(client)
    toggled = client.patch(url(task, "/complete"), headers=headers)
    assert toggled.json()["completed"] is True


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\tkey"])
def test_a_malformed_idempotency_key_is_422(client: TestClient, key: str) -> None:
    response = client.post(
        "/api/alice/tasks", json={"title": "t"}, headers={"Idempotency-Key": key}
    )
    assert_problem(response, 422)


# --- limits and health --------------------------------------------------------------------------


def test_a_body_over_64_kib_is_413(client: TestClient) -> None:
    body = b'{"title": "t", "description": "' + b"x" * 70_000 + b'"}'
    response = client.post(
        "/api/alice/tasks", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)


def test_a_streamed_body_over_64_kib_is_413(client: TestClient) -> None:
    def chunks() -> Any:
        yield b'{"title": "t", "description": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'"}'

    response = client.post(
        "/api/alice/tasks", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]
)
def test_a_body_that_is_not_declared_json_is_415(
    client: TestClient, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = client.post("/api/alice/tasks", content=b'{"title": "t"}', headers=headers)
    assert_problem(response, 415)
    assert client.get("/api/alice/tasks").json() == []


def test_health_and_readiness_answer(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}

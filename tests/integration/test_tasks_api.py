"""The HTTP contract of the six task endpoints, on real PostgreSQL."""

from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

PROBLEM_KEYS = {"type", "title", "status", "detail", "request_id"}


def create(client: TestClient, user: str = "alice", **body: Any) -> dict[str, Any]:
    body.setdefault("title", "Write the report")
    response = client.post(f"/api/{user}/tasks", json=body)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem.keys() >= PROBLEM_KEYS
    assert problem["status"] == status
    assert problem["type"].startswith("/problems/")
    assert problem["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return problem


def invalid_fields(response: Response) -> set[str]:
    problem = assert_problem(response, 422)
    return {error["field"] for error in problem["errors"]}


def is_rfc3339_with_offset(value: str) -> bool:
    parsed = datetime.fromisoformat(value)
    return parsed.tzinfo is not None and ("+" in value[10:] or value.endswith("Z"))


# --- create -------------------------------------------------------------------------------------


def test_creating_a_task_returns_it_with_its_location(client: TestClient) -> None:
    response = client.post("/api/alice/tasks", json={"title": "Buy milk"})

    assert response.status_code == 201
    task = response.json()
    assert response.headers["location"] == f"/api/alice/tasks/{task['id']}"
    assert task["user_id"] == "alice"
    assert task["title"] == "Buy milk"
    assert task["description"] is None
    assert task["completed"] is False
    assert task["completed_at"] is None
    assert task["due_date"] is None
    assert is_rfc3339_with_offset(task["created_at"])
    assert task["updated_at"] == task["created_at"]


def test_created_task_can_be_read_back(client: TestClient) -> None:
    task = create(client, title="Plan trip", description="Book trains", due_date="2026-12-24")

    response = client.get(f"/api/alice/tasks/{task['id']}")

    assert response.status_code == 200
    assert response.json() == task
    assert task["description"] == "Book trains"
    assert task["due_date"] == "2026-12-24"


def test_title_is_trimmed(client: TestClient) -> None:
    assert create(client, title="  padded \t")["title"] == "padded"


@pytest.mark.parametrize("length", [1, 200])
def test_title_of_boundary_length_is_accepted(client: TestClient, length: int) -> None:
    assert create(client, title="é" * length)["title"] == "é" * length


def test_description_of_1000_characters_is_accepted(client: TestClient) -> None:
    assert len(create(client, description="x" * 1000)["description"]) == 1000


def test_description_keeps_line_breaks(client: TestClient) -> None:
    assert create(client, description="a\nb\tc")["description"] == "a\nb\tc"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "a\u0000b"}, "title"),
        ({"title": "line\nbreak"}, "title"),
        ({"title": 12345}, "title"),
        ({"title": None}, "title"),
        ({"title": ["list"]}, "title"),
        ({"title": "ok", "description": "x" * 1001}, "description"),
        ({"title": "ok", "description": "nul\u0000"}, "description"),
        ({"title": "ok", "description": 7}, "description"),
        ({"title": "ok", "due_date": "2026-13-01"}, "due_date"),
        ({"title": "ok", "due_date": "2026-02-30"}, "due_date"),
        ({"title": "ok", "due_date": "2026/01/01"}, "due_date"),
        ({"title": "ok", "due_date": "20260101"}, "due_date"),
        ({"title": "ok", "due_date": 20260101}, "due_date"),
        ({"title": "ok", "due_date": "2026-01-01T10:00:00Z"}, "due_date"),
        ({"title": "ok", "priority": "urgent"}, "priority"),
        ({"title": "ok", "priority": 3}, "priority"),
        ({"title": "ok", "tags": "work"}, "tags"),
        ({"title": "ok", "tags": [""]}, "tags.0"),
        ({"title": "ok", "tags": ["a,b"]}, "tags.0"),
        ({"title": "ok", "tags": ["x" * 51]}, "tags.0"),
        ({"title": "ok", "tags": [f"t{n}" for n in range(21)]}, "tags"),
        ({"title": "ok", "due_at": "2026-01-01T10:00:00"}, "due_at"),
        ({"title": "ok", "due_at": "2026-01-01"}, "due_at"),
        ({"title": "ok", "due_at": 1767261600}, "due_at"),
        ({"title": "ok", "due_date": "2026-01-01", "due_at": "2026-01-01T10:00:00Z"}, "due_at"),
        ({"title": "ok", "id": 5}, "id"),
        ({"title": "ok", "user_id": "bob"}, "user_id"),
        ({"title": "ok", "completed": True}, "completed"),
        ({"title": "ok", "created_at": "2026-01-01T00:00:00Z"}, "created_at"),
    ],
)
def test_invalid_create_body_is_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/alice/tasks", json=body)

    assert field in invalid_fields(response)
    assert client.get("/api/alice/tasks").json() == []


def test_lone_surrogate_in_title_is_422(client: TestClient) -> None:
    response = client.post(
        "/api/alice/tasks",
        content=b'{"title": "bad \\ud800 char"}',
        headers={"content-type": "application/json"},
    )
    assert "title" in invalid_fields(response)


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"title"', b""])
def test_body_that_is_not_a_json_object_is_422(client: TestClient, content: bytes) -> None:
    response = client.post(
        "/api/alice/tasks", content=content, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)


# --- list ---------------------------------------------------------------------------------------


def test_a_new_user_has_an_empty_list(client: TestClient) -> None:
    response = client.get("/api/nobody/tasks")
    assert response.status_code == 200
    assert response.json() == []


def test_list_is_newest_first(client: TestClient) -> None:
    ids = [create(client, title=f"task {n}")["id"] for n in range(3)]

    listed = [task["id"] for task in client.get("/api/alice/tasks").json()]

    assert listed == list(reversed(ids))


def test_list_is_scoped_to_the_caller(client: TestClient) -> None:
    mine = create(client, "alice", title="mine")
    create(client, "bob", title="theirs")

    assert client.get("/api/alice/tasks").json() == [mine]


def test_list_filters_by_status(client: TestClient) -> None:
    done = create(client, title="done")
    open_ = create(client, title="open")
    client.patch(f"/api/alice/tasks/{done['id']}/complete")

    def ids(status: str) -> list[int]:
        return [t["id"] for t in client.get(f"/api/alice/tasks?status={status}").json()]

    assert ids("pending") == [open_["id"]]
    assert ids("completed") == [done["id"]]
    assert ids("all") == [open_["id"], done["id"]]


def test_list_sorts_by_title_case_insensitively_then_id(client: TestClient) -> None:
    b = create(client, title="banana")
    a_upper = create(client, title="Apple")
    a_lower = create(client, title="apple")
    c = create(client, title="Cherry")

    titles = [t["id"] for t in client.get("/api/alice/tasks?sort=title").json()]

    assert titles == [a_upper["id"], a_lower["id"], b["id"], c["id"]]


def test_list_sorts_by_due_date_with_undated_last(client: TestClient) -> None:
    undated = create(client, title="someday")
    late = create(client, title="late", due_date="2027-01-01")
    early = create(client, title="early", due_date="2026-01-01")
    tie = create(client, title="early too", due_date="2026-01-01")

    order = [t["id"] for t in client.get("/api/alice/tasks?sort=due_date").json()]

    assert order == [early["id"], tie["id"], late["id"], undated["id"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("status=", "status"),
        ("sort=importance", "sort"),
        ("sort=CREATED", "sort"),
        ("colour=red", "colour"),
    ],
)
def test_bad_list_parameter_is_422_naming_it(client: TestClient, query: str, field: str) -> None:
    assert field in invalid_fields(client.get(f"/api/alice/tasks?{query}"))


# --- read ---------------------------------------------------------------------------------------


def test_reading_an_absent_task_is_404(client: TestClient) -> None:
    problem = assert_problem(client.get("/api/alice/tasks/999999"), 404)
    assert "999999" in problem["detail"]


def test_another_users_task_is_indistinguishable_from_an_absent_one(client: TestClient) -> None:
    task = create(client, "bob")

    theirs = client.get(f"/api/alice/tasks/{task['id']}")
    absent = client.get("/api/alice/tasks/999999")

    assert_problem(theirs, 404)
    assert theirs.json()["detail"].replace(str(task["id"]), "N") == absent.json()["detail"].replace(
        "999999", "N"
    )


@pytest.mark.parametrize("task_id", ["abc", "1.5", "0", "-1", "9223372036854775808"])
def test_a_task_id_that_is_not_a_valid_id_is_422(client: TestClient, task_id: str) -> None:
    assert "task_id" in invalid_fields(client.get(f"/api/alice/tasks/{task_id}"))


# --- update -------------------------------------------------------------------------------------


def test_update_changes_only_the_fields_sent(client: TestClient) -> None:
    task = create(client, title="old", description="keep me", due_date="2026-05-01")

    response = client.put(f"/api/alice/tasks/{task['id']}", json={"title": "new"})

    assert response.status_code == 200
    updated = response.json()
    assert updated["title"] == "new"
    assert updated["description"] == "keep me"
    assert updated["due_date"] == "2026-05-01"
    assert client.get(f"/api/alice/tasks/{task['id']}").json() == updated


def test_update_with_null_clears_optional_fields(client: TestClient) -> None:
    task = create(client, description="something", due_date="2026-05-01")

    updated = client.put(
        f"/api/alice/tasks/{task['id']}", json={"description": None, "due_date": None}
    ).json()

    assert updated["description"] is None
    assert updated["due_date"] is None
    assert updated["title"] == task["title"]


def test_update_moves_updated_at_forward(client: TestClient) -> None:
    task = create(client)
    updated = client.put(f"/api/alice/tasks/{task['id']}", json={"title": "changed"}).json()
    assert datetime.fromisoformat(updated["updated_at"]) >= datetime.fromisoformat(
        task["updated_at"]
    )
    assert updated["created_at"] == task["created_at"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": None}, "title"),
        ({"title": ""}, "title"),
        ({"title": 5}, "title"),
        ({"description": "x" * 1001}, "description"),
        ({"due_date": "tomorrow"}, "due_date"),
        ({"completed": True}, "completed"),
        ({"id": 1}, "id"),
    ],
)
def test_invalid_update_is_422_and_leaves_the_task_unchanged(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    task = create(client, description="original")

    assert field in invalid_fields(client.put(f"/api/alice/tasks/{task['id']}", json=body))
    assert client.get(f"/api/alice/tasks/{task['id']}").json() == task


def test_updating_another_users_task_is_404_and_changes_nothing(client: TestClient) -> None:
    task = create(client, "bob", title="bob's")

    assert_problem(client.put(f"/api/alice/tasks/{task['id']}", json={"title": "mine"}), 404)
    assert client.get(f"/api/bob/tasks/{task['id']}").json() == task


def test_updating_an_absent_task_is_404(client: TestClient) -> None:
    assert_problem(client.put("/api/alice/tasks/999999", json={"title": "x"}), 404)


# --- delete -------------------------------------------------------------------------------------


def test_deleting_a_task_is_204_with_no_body_and_it_is_gone(client: TestClient) -> None:
    task = create(client)

    response = client.delete(f"/api/alice/tasks/{task['id']}")

    assert response.status_code == 204
    assert response.content == b""
    assert_problem(client.get(f"/api/alice/tasks/{task['id']}"), 404)
    assert_problem(client.delete(f"/api/alice/tasks/{task['id']}"), 404)


def test_deleting_another_users_task_is_404_and_keeps_it(client: TestClient) -> None:
    task = create(client, "bob")

    assert_problem(client.delete(f"/api/alice/tasks/{task['id']}"), 404)
    assert client.get(f"/api/bob/tasks/{task['id']}").json() == task


# --- toggle -------------------------------------------------------------------------------------


def test_completing_a_task_sets_completed_at(client: TestClient) -> None:
    task = create(client)

    done = client.patch(f"/api/alice/tasks/{task['id']}/complete")

    assert done.status_code == 200
    assert done.json()["completed"] is True
    assert is_rfc3339_with_offset(done.json()["completed_at"])


def test_completing_a_task_twice_reopens_it(client: TestClient) -> None:
    task = create(client)
    client.patch(f"/api/alice/tasks/{task['id']}/complete")

    reopened = client.patch(f"/api/alice/tasks/{task['id']}/complete").json()

    assert reopened["completed"] is False
    assert reopened["completed_at"] is None


def test_toggling_another_users_task_is_404_and_changes_nothing(client: TestClient) -> None:
    task = create(client, "bob")

    assert_problem(client.patch(f"/api/alice/tasks/{task['id']}/complete"), 404)
    assert client.get(f"/api/bob/tasks/{task['id']}").json()["completed"] is False


# --- user ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "user_id", ["a", "user_1.name-x@example.com", "auth0:abc", "x" * 128, "0123"]
)
def test_user_ids_of_the_documented_pattern_are_accepted(client: TestClient, user_id: str) -> None:
    task = create(client, user_id)
    assert task["user_id"] == user_id
    assert client.get(f"/api/{user_id}/tasks").json() == [task]


@pytest.mark.parametrize("user_id", ["x" * 129, "a b", "bob$", "%C3%A9", "a;b"])
def test_user_ids_outside_the_pattern_are_422(client: TestClient, user_id: str) -> None:
    assert "user_id" in invalid_fields(client.get(f"/api/{user_id}/tasks"))
    assert "user_id" in invalid_fields(client.post(f"/api/{user_id}/tasks", json={"title": "t"}))


# --- errors -------------------------------------------------------------------------------------


def test_unknown_route_is_a_problem_404(client: TestClient) -> None:
    assert_problem(client.get("/nowhere"), 404)
    assert_problem(client.get("/api/alice/tasks/1/nothing"), 404)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/api/alice/tasks", "GET, HEAD, POST"),
        ("POST", "/api/alice/tasks/1", "DELETE, GET, HEAD, PATCH, PUT"),
        ("GET", "/api/alice/tasks/1/complete", "PATCH"),
    ],
)
def test_wrong_method_is_405_with_allow(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path)
    assert_problem(response, 405)
    assert response.headers["allow"] == allow


def test_validation_problem_lists_each_field_and_why(client: TestClient) -> None:
    problem = assert_problem(
        client.post("/api/alice/tasks", json={"title": "", "due_date": "nope"}), 422
    )
    errors = {error["field"]: error for error in problem["errors"]}
    assert errors.keys() == {"title", "due_date"}
    assert all(error["location"] == "body" and error["message"] for error in errors.values())


def test_openapi_document_and_docs_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/{user_id}/tasks/{task_id}/complete" in spec["paths"]
    assert client.get("/docs").status_code == 200

"""Every successful write answers with a consistency token: the primary's WAL position at or
past its commit (docs/adr/0016). Reads that send it back are tested on a real replica in
tests/cluster."""

from fastapi.testclient import TestClient
from httpx2 import Response

from api.consistency import position_of
from api.cors import ALLOWED_HEADERS, EXPOSED_HEADERS

TOKEN = "X-Consistency-Token"


def position(answer: Response) -> int:
    return int(position_of(answer.headers[TOKEN]))


def test_every_kind_of_write_answers_with_a_token(client: TestClient) -> None:
    created = client.post("/api/alice/tasks", json={"title": "t"})
    task = f"/api/alice/tasks/{created.json()['id']}"
    answers = [
        created,
        client.put(task, json={"title": "u"}),
        client.patch(task, json={"title": "v"}),
        client.patch(f"{task}/complete"),
        client.delete(task),
    ]
    assert [answer.status_code for answer in answers] == [201, 200, 200, 200, 204]
    assert all(position(answer) > 0 for answer in answers)


def test_a_later_write_has_a_later_or_equal_token(client: TestClient) -> None:
    first = client.post("/api/alice/tasks", json={"title": "first"})
    second = client.post("/api/alice/tasks", json={"title": "second"})
    assert position(second) >= position(first)


def test_refusals_and_reads_carry_no_token(client: TestClient) -> None:
    created = client.post("/api/alice/tasks", json={"title": "t"})
    refused = client.put(f"/api/alice/tasks/{created.json()['id']}", json={"title": ""})
    read = client.get("/api/alice/tasks")
    assert refused.status_code == 422
    assert TOKEN not in refused.headers
    assert TOKEN not in read.headers


def test_a_browser_page_may_read_and_send_the_token() -> None:
    assert TOKEN in EXPOSED_HEADERS
    assert TOKEN in ALLOWED_HEADERS


def test_the_openapi_document_declares_the_token_on_writes_and_reads(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    tasks, task = "/api/{user_id}/tasks", "/api/{user_id}/tasks/{task_id}"
    writes = [
        (tasks, "post", "201"),
        (task, "put", "200"),
        (task, "patch", "200"),
        (task, "delete", "204"),
        (task + "/complete", "patch", "200"),
    ]
    for path, method, status in writes:
        assert TOKEN in paths[path][method]["responses"][status]["headers"], (path, method)
    for path in (tasks, task, tasks + "/stats", "/api/{user_id}/tags"):
        sent = {p["name"] for p in paths[path]["get"]["parameters"] if p["in"] == "header"}
        assert TOKEN.lower() in {name.lower() for name in sent}, path

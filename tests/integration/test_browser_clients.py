"""What a browser app on another origin and its generated client meet: CORS, request ids, HEAD,
trailing slashes, the service's index and problem types, offline docs, and errors a program can
act on. (A real headless browser and real generated clients: tests/frontend/.)"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from api.app import create_app
from api.problems import KINDS
from api.settings import ServiceMisconfigured, Settings
from tests.auth_support import TokenIssuer
from tests.conftest import client_on
from tests.integration.test_tasks_api import assert_problem, create, invalid_fields

APP_ORIGIN = "http://localhost:3000"
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def cors_client(connection: Connection, issuer: TokenIssuer) -> Iterator[TestClient]:
    with client_on(connection, issuer, cors_origins=f"{APP_ORIGIN}, https://app.example.com") as c:
        yield c


def preflight(client: TestClient, path: str, method: str, origin: str = APP_ORIGIN) -> Any:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, if-match",
        },
    )


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/alice/tasks", "POST"),
        ("/api/alice/tasks/7", "PUT"),
        ("/api/alice/tasks/7", "DELETE"),
        ("/api/alice/tasks/7/complete", "PATCH"),
        ("/api/alice/nothing-here", "GET"),  # would be 404: the browser still sees our answer
        ("/api/alice/tasks", "DELETE"),  # would be 405
    ],
)
def test_a_preflight_from_an_allowed_origin_is_answered_for_every_path(
    cors_client: TestClient, path: str, method: str
) -> None:
    response = preflight(cors_client, path, method)

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert method in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "if-match", "idempotency-key", "x-request-id"):
        assert header in allowed
    assert int(response.headers["access-control-max-age"]) > 0
    assert "access-control-allow-credentials" not in response.headers


def test_a_preflight_from_another_origin_is_refused_without_cors_headers(
    cors_client: TestClient,
) -> None:
    response = preflight(cors_client, "/api/alice/tasks", "POST", origin="https://evil.example")

    problem = assert_problem(response, 400)
    assert problem["type"] == "/problems/origin-not-allowed"
    assert "access-control-allow-origin" not in response.headers


def test_responses_to_an_allowed_origin_expose_the_headers_a_client_reads(
    cors_client: TestClient,
) -> None:
    response = cors_client.post(
        "/api/alice/tasks", json={"title": "From the browser"}, headers={"Origin": APP_ORIGIN}
    )

    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert exposed >= {"etag", "link", "location", "idempotent-replayed", "retry-after"}
    assert "x-consistency-token" in exposed
    assert "x-request-id" in exposed


def test_without_cors_origins_no_cors_header_is_sent(client: TestClient) -> None:
    response = preflight(client, "/api/alice/tasks", "POST")
    assert "access-control-allow-origin" not in response.headers
    answer = client.get("/api/alice/tasks", headers={"Origin": APP_ORIGIN})
    assert "access-control-allow-origin" not in answer.headers


def test_any_origin_is_refused_when_authentication_is_on(issuer: TokenIssuer) -> None:
    settings = Settings(database_url="postgresql://unused/x", cors_origins="*", **issuer.settings())
    with pytest.raises(ServiceMisconfigured, match="CORS_ORIGINS"):
        create_app(settings)


@pytest.mark.parametrize("origin", ["http://localhost:3000/", "localhost:3000", "https://a.b/c"])
def test_an_origin_with_a_path_or_without_a_scheme_is_refused(origin: str) -> None:
    with pytest.raises(ServiceMisconfigured, match="origin is scheme://host"):
        create_app(
            Settings(database_url="postgresql://unused/x", cors_origins=origin, auth_mode="none")
        )


def test_every_response_carries_a_request_id(client: TestClient) -> None:
    created = client.post("/api/alice/tasks", json={"title": "x"})
    missing = client.get("/api/alice/tasks/999")

    assert len(created.headers["x-request-id"]) >= 16
    assert created.headers["x-request-id"] != missing.headers["x-request-id"]
    assert assert_problem(missing, 404)["request_id"] == missing.headers["x-request-id"]


def test_a_sane_client_request_id_is_kept_and_an_insane_one_replaced(client: TestClient) -> None:
    kept = client.get("/api/alice/tasks", headers={"X-Request-ID": "web-42.abc"})
    replaced = client.get("/api/alice/tasks", headers={"X-Request-ID": "x" * 500})
    spaced = client.get("/api/alice/tasks", headers={"X-Request-ID": "a b"})

    assert kept.headers["x-request-id"] == "web-42.abc"
    assert replaced.headers["x-request-id"] != "x" * 500
    assert spaced.headers["x-request-id"] != "a b"


def test_a_failed_request_is_logged_with_its_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="taskapi.requests"):
        client.get("/api/alice/tasks/999", headers={"X-Request-ID": "trace-me-1"})
    assert any("trace-me-1" in record.getMessage() for record in caplog.records)


def test_head_answers_like_get_without_a_body(client: TestClient) -> None:
    task = create(client)
    path = f"/api/alice/tasks/{task['id']}"

    head = client.head(path)
    get = client.get(path)

    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == get.headers["etag"]
    assert head.headers["content-length"] == get.headers["content-length"]
    assert client.head("/api/alice/tasks").status_code == 200
    assert client.head("/healthz").status_code == 200


def test_a_trailing_slash_gets_the_same_answer_not_a_redirect(client: TestClient) -> None:
    create(client, title="Slash")

    response = client.get("/api/alice/tasks/", follow_redirects=False)

    assert response.status_code == 200
    assert [task["title"] for task in response.json()] == ["Slash"]


def test_the_root_points_to_the_docs(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.json()["docs"] == "/docs"
    assert response.json()["openapi"] == "/openapi.json"


def test_the_docs_page_loads_its_assets_from_the_service_not_a_cdn(client: TestClient) -> None:
    page = client.get("/docs")

    assert page.status_code == 200
    assert "cdn." not in page.text
    scripts = [part.split('"')[1] for part in page.text.split("src=")[1:]]
    assert scripts
    for script in scripts:
        assert script.startswith("/"), script
        asset = client.get(script)
        assert asset.status_code == 200
        assert len(asset.content) > 100_000


def test_every_problem_type_is_served_and_documented() -> None:
    page = (DOCS / "problems.md").read_text()
    with TestClient(
        create_app(Settings(database_url="postgresql://unused/x", auth_mode="none"))
    ) as c:
        listed = c.get("/problems").json()
        assert [entry["type"] for entry in listed] == [kind.type for kind in KINDS]
        for kind in KINDS:
            assert c.get(kind.type).json()["status"] == kind.status
            assert f"`{kind.type}`" in page, f"{kind.type} is missing from docs/problems.md"
        assert_problem(c.get("/problems/no-such-kind"), 404)


# Errors a program can act on.


def test_bad_json_names_the_body_and_says_where(client: TestClient) -> None:
    response = client.post(
        "/api/alice/tasks",
        content=b'{"title": "x",,}',
        headers={"content-type": "application/json"},
    )

    problem = assert_problem(response, 422)
    assert [(e["location"], e["field"]) for e in problem["errors"]] == [("body", "body")]
    assert "character 14" in problem["errors"][0]["message"]


def test_a_bad_list_item_is_named_by_its_value(client: TestClient) -> None:
    response = client.get("/api/alice/tasks?priority=high,urgent")

    problem = assert_problem(response, 422)
    assert problem["errors"] == [
        {
            "location": "query",
            "field": "priority",
            "message": '"urgent" is not a priority: low, medium, high',
        }
    ]


@pytest.mark.parametrize(
    ("path", "headers", "field"),
    [
        ("/api/al ice/tasks", {}, "user_id"),
        ("/api/alice/tasks", {"Idempotency-Key": "has space"}, "Idempotency-Key"),
    ],
)
def test_a_pattern_error_is_one_error_in_words(
    client: TestClient, path: str, headers: dict[str, str], field: str
) -> None:
    response = client.post(path, json={"title": "x"}, headers=headers)

    problem = assert_problem(response, 422)
    assert len(problem["errors"]) == 1
    assert problem["errors"][0]["field"] == field
    assert "^" not in problem["errors"][0]["message"]
    assert "pattern" not in problem["errors"][0]["message"]


def test_idempotency_key_reuse_has_its_own_type(client: TestClient) -> None:
    headers = {"Idempotency-Key": "k-1"}
    client.post("/api/alice/tasks", json={"title": "one"}, headers=headers)

    response = client.post("/api/alice/tasks", json={"title": "two"}, headers=headers)

    assert assert_problem(response, 422)["type"] == "/problems/idempotency-key-reused"


def test_a_flood_of_commas_is_one_small_error(client: TestClient) -> None:
    response = client.get("/api/alice/tasks?tag=" + "," * 65_000)

    problem = assert_problem(response, 422)
    assert len(response.content) < 4096
    assert [e["field"] for e in problem["errors"]] == ["tag"]
    assert "at most 20" in problem["errors"][0]["message"]


def test_a_422_lists_at_most_20_errors_and_says_how_many_more(client: TestClient) -> None:
    query = "&".join(f"unknown{n}=1" for n in range(50))

    response = client.get(f"/api/alice/tasks?{query}")

    problem = assert_problem(response, 422)
    assert len(problem["errors"]) == 20
    assert "30 more" in problem["detail"]
    assert len(response.content) < 4096


@pytest.mark.parametrize(
    "query",
    [
        "due_before=9999-12-31T23:59:59Z&tz=Pacific/Kiritimati",
        "due_after=0001-01-01T00:00:00Z&tz=America/New_York",
        "updated_after=9999-12-31T23:59:59Z&tz=Asia/Tokyo",
    ],
)
def test_bounds_at_the_ends_of_the_calendar_are_422_not_500(client: TestClient, query: str) -> None:
    response = client.get(f"/api/alice/tasks?{query}")
    field = query.split("=", 1)[0]
    assert field in invalid_fields(response)


@pytest.mark.parametrize("zone", ["localtime", "Factory", "Mars/Olympus", ""])
def test_a_time_zone_must_be_an_iana_name(client: TestClient, zone: str) -> None:
    assert invalid_fields(client.get(f"/api/alice/tasks?tz={zone}")) == {"tz"}
    assert invalid_fields(client.get(f"/api/alice/tasks/stats?tz={zone}")) == {"tz"}


def test_list_filters_take_repeated_parameters_as_generated_clients_send_them(
    client: TestClient,
) -> None:
    create(client, title="high", priority="high", tags=["home"])
    create(client, title="low", priority="low", tags=["work"])
    create(client, title="medium", priority="medium")

    by_priority = client.get("/api/alice/tasks?priority=high&priority=low&sort=title")
    by_tag = client.get("/api/alice/tasks?tag=home&tag=work&sort=title")
    flags = client.get("/api/alice/tasks?overdue=false&has_due=false&sort=title")

    assert [t["title"] for t in by_priority.json()] == ["high", "low"]
    assert [t["title"] for t in by_tag.json()] == ["high", "low"]
    assert [t["title"] for t in flags.json()] == ["high", "low", "medium"]


# The OpenAPI document, as client generators read it.


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    app = create_app(Settings(database_url="postgresql://unused/x", auth_mode="none"))
    document: dict[str, Any] = app.openapi()
    return document


def parameter(spec: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    operation = spec["paths"][path]["get"]
    found: dict[str, Any] = next(p for p in operation["parameters"] if p["name"] == name)
    return found


def test_a_development_server_documents_the_same_bearer_scheme_as_production(
    spec: dict[str, Any],
) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= next(iter(schemes.values())).items()
    assert "AUTH_MODE=none" in next(iter(schemes.values()))["description"]
    assert spec["paths"]["/api/{user_id}/tasks"]["get"]["security"] == [{n: []} for n in schemes]


def test_query_parameters_have_the_types_a_generated_client_passes(spec: dict[str, Any]) -> None:
    tasks = "/api/{user_id}/tasks"
    for path in (tasks, tasks + "/stats"):
        zone = parameter(spec, path, "tz")["schema"]
        assert zone["type"] == "string"
        assert "enum" not in zone
    for flag in ("overdue", "has_due"):
        schema = parameter(spec, tasks, flag)["schema"]
        assert {"type": "boolean"} in schema.get("anyOf", [schema])
    for name in ("priority", "tag"):
        schema = parameter(spec, tasks, name)["schema"]
        assert any(option.get("type") == "array" for option in schema.get("anyOf", [schema]))


def test_timestamps_are_date_times(spec: dict[str, Any]) -> None:
    task = spec["components"]["schemas"]["TaskOut"]["properties"]
    assert task["created_at"] == {"type": "string", "format": "date-time", "title": "Created At"}
    assert {"type": "string", "format": "date-time"} in task["completed_at"]["anyOf"]


def test_request_fields_with_server_defaults_carry_no_default(spec: dict[str, Any]) -> None:
    for name in ("TaskCreate", "TaskUpdate"):
        schema = spec["components"]["schemas"][name]
        assert not [field for field, prop in schema["properties"].items() if "default" in prop]
    create_schema = spec["components"]["schemas"]["TaskCreate"]
    assert create_schema["required"] == ["title"]
    assert "Default: `medium`" in create_schema["properties"]["priority"]["description"]


def test_every_header_the_service_sends_is_declared(spec: dict[str, Any]) -> None:
    tasks = "/api/{user_id}/tasks"

    def headers(path: str, method: str, status: str) -> set[str]:
        return set(spec["paths"][path][method]["responses"][status].get("headers", {}))

    assert headers(tasks, "get", "200") >= {"Link", "X-Request-ID"}
    assert headers(tasks, "post", "201") >= {"ETag", "Location", "Idempotent-Replayed"}
    assert headers(tasks + "/{task_id}", "get", "200") >= {"ETag"}
    assert headers(tasks + "/{task_id}", "put", "200") >= {"ETag"}
    assert headers(tasks + "/{task_id}", "put", "412") >= {"ETag"}
    assert headers(tasks + "/{task_id}/complete", "patch", "200") >= {"ETag", "Idempotent-Replayed"}
    assert headers(tasks, "post", "409") >= {"Retry-After"}
    assert headers(tasks, "get", "503") >= {"Retry-After"}
    for operations in spec["paths"].values():
        for operation in operations.values():
            for response in operation["responses"].values():
                assert "X-Request-ID" in response["headers"]


def test_every_operation_has_a_named_operation_id(spec: dict[str, Any]) -> None:
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert "checkLiveness" in ids
    assert "checkReadiness" in ids
    assert all("_" not in operation_id for operation_id in ids)


def test_an_optional_body_is_declared_optional_not_nullable(spec: dict[str, Any]) -> None:
    complete = spec["paths"]["/api/{user_id}/tasks/{task_id}/complete"]["patch"]
    body = complete["requestBody"]
    assert not body.get("required", False)
    schema = body["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/CompletionBody"}

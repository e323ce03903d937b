"""Extreme values in every parameter and header never get a 500: each request is answered 2xx,
3xx or a 4xx problem document of a few KiB at most.

Dates at the ends of the calendar with every kind of zone, huge and negative numbers, Unicode
digits, empty values, floods of commas, long strings: what an attacker or a broken client sends.
"""

import string
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.test_tasks_api import PROBLEM_KEYS, create

MAX_ERROR_BYTES = 4096
ZONES = (
    "UTC",
    "Pacific/Kiritimati",  # UTC+14
    "Pacific/Pago_Pago",  # UTC-11
    "America/New_York",
    "Asia/Kathmandu",  # +05:45
    "Europe/Dublin",  # negative DST
    "localtime",
    "",
)
EDGE_INSTANTS = (
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00-23:59",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999-23:59",
    "9999-12-31T23:59:59+14:00",
    "2026-02-29T00:00:00Z",
    "2026-03-29T01:30:00+01:00",
)
EDGE_DATES = (
    "0001-01-01",
    "9999-12-31",
    "0000-01-01",
    "2026-13-01",
    "2024-02-29",
    "\uff11\uff12\uff13\uff14-01-01",  # fullwidth digits,
)
NUMBERS = (
    "0",
    "-1",
    "1",
    "500",
    "501",
    "9" * 30,
    "-" + "9" * 30,
    "\uff11",
    "\u0663",
    "1e3",
    "0x10",
    "",
)
TEXTS = st.text(
    alphabet=st.sampled_from(string.printable + "²١٣\u00a0\u2028é日,\"'%"), max_size=300
)

values = st.one_of(
    st.sampled_from(EDGE_INSTANTS),
    st.sampled_from(EDGE_DATES),
    st.sampled_from(NUMBERS),
    st.sampled_from(ZONES),
    # Over the 20-item limit; the 64 KB flood is in test_browser_clients.
    st.sampled_from(("true", "false", "True", "1", "", ",", "," * 50)),
    TEXTS,
)
edges = st.sampled_from(EDGE_INSTANTS + EDGE_DATES)
bounds = st.one_of(edges, edges, values)
# Each parameter gets the values that stress it, and sometimes anything at all.
LIST_PARAMETERS = {
    "status": values,
    "priority": values,
    "tag": values,
    "tag_mode": values,
    "q": values,
    "due_before": bounds,
    "due_after": bounds,
    "overdue": values,
    "has_due": values,
    "updated_after": bounds,
    "tz": st.one_of(st.sampled_from(ZONES), st.sampled_from(ZONES), values),
    "sort": values,
    "order": values,
    "limit": st.one_of(st.sampled_from(NUMBERS), values),
    "cursor": values,
}
list_queries = st.fixed_dictionaries(
    {}, optional={name: strategy for name, strategy in LIST_PARAMETERS.items()}
).filter(bool)
HEADERS = ("If-Match", "If-None-Match", "Idempotency-Key", "X-Request-ID")
header_values = st.one_of(
    st.sampled_from(('"1"', "1", 'W/"1"', "", "*", '"' + "9" * 5000 + '"', '"²"', ", " * 50)),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=300),
)

slow = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def assert_no_server_error(response: Any) -> None:
    assert response.status_code < 500, response.text[:2000]
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json().keys() >= PROBLEM_KEYS
        assert len(response.content) <= MAX_ERROR_BYTES, len(response.content)


@pytest.fixture
def task_path(client: TestClient) -> str:
    task = create(client, title="Target", tags=["home"], due_date="2026-12-01")
    return f"/api/alice/tasks/{task['id']}"


@slow
@given(list_queries)
def test_any_list_or_stats_query_is_answered_without_a_server_error(
    client: TestClient, query: dict[str, str]
) -> None:
    encoded = "&".join(f"{name}={quote(value)}" for name, value in query.items())
    assert_no_server_error(client.get(f"/api/alice/tasks?{encoded}"))
    zone = query.get("tz", "UTC")
    assert_no_server_error(client.get(f"/api/alice/tasks/stats?tz={quote(zone)}"))


@pytest.mark.parametrize("bound", ["due_before", "due_after", "updated_after"])
def test_every_calendar_edge_in_every_zone_is_answered_without_a_server_error(
    client: TestClient, bound: str
) -> None:
    for edge in EDGE_INSTANTS + EDGE_DATES:
        for zone in ZONES:
            query = f"{bound}={quote(edge)}&tz={quote(zone)}"
            assert_no_server_error(client.get(f"/api/alice/tasks?{query}&overdue=true"))


@slow
@given(
    st.sampled_from(("GET", "PUT", "PATCH", "DELETE", "POST")),
    st.dictionaries(st.sampled_from(HEADERS), header_values, min_size=1, max_size=3),
)
def test_any_conditional_or_idempotency_header_is_answered_without_a_server_error(
    client: TestClient, task_path: str, method: str, headers: dict[str, str]
) -> None:
    path = f"{task_path}/complete" if method == "POST" else task_path
    method = "PATCH" if method == "POST" else method
    body = {"title": "Changed"} if method in ("PUT", "PATCH") and "complete" not in path else None
    raw = {name.encode(): value.encode("latin-1") for name, value in headers.items()}
    assert_no_server_error(client.request(method, path, json=body, headers=raw))


@slow
@given(st.sampled_from((*NUMBERS, "9223372036854775807", "9223372036854775808")), TEXTS)
def test_any_task_id_or_user_id_is_answered_without_a_server_error(
    client: TestClient, task_id: str, user_id: str
) -> None:
    assert_no_server_error(client.get(f"/api/alice/tasks/{quote(task_id, safe='')}"))
    assert_no_server_error(client.get(f"/api/{quote(user_id, safe='') or 'x'}/tasks"))


@slow
@given(
    st.dictionaries(
        st.sampled_from(("title", "description", "due_date", "due_at", "priority", "tags")),
        st.one_of(
            values,
            st.integers(min_value=-(2**70), max_value=2**70),
            st.none(),
            st.lists(TEXTS, max_size=25),
            st.floats(allow_nan=False, allow_infinity=False),  # JSON has neither
        ),
        max_size=6,
    )
)
def test_any_task_body_is_answered_without_a_server_error(
    client: TestClient, task_path: str, body: dict[str, Any]
) -> None:
    assert_no_server_error(client.post("/api/alice/tasks", json=body))
    assert_no_server_error(client.patch(task_path, json=body))

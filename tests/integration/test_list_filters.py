"""Priorities, tags and due instants on tasks; the list's filters, sorts and time zones; stats
and tags. On real PostgreSQL, through the API."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from api.clock import current_time
from tests.integration.test_tasks_api import assert_problem, create, invalid_fields

Clock = Callable[[datetime], None]


@pytest.fixture
def clock(client: TestClient) -> Clock:
    """Stand the API's clock at a given instant."""

    def stand_at(moment: datetime) -> None:
        client.app.dependency_overrides[current_time] = lambda: moment  # type: ignore[attr-defined]

    return stand_at


def ids(client: TestClient, query: str = "", user: str = "alice") -> list[int]:
    response = client.get(f"/api/{user}/tasks?{query}")
    assert response.status_code == 200, response.text
    return [task["id"] for task in response.json()]


# --- the new fields -----------------------------------------------------------------------------


def test_old_clients_get_the_defaults_for_the_new_fields(client: TestClient) -> None:
    task = create(client, title="plain", description="only the old fields")

    assert (task["priority"], task["tags"], task["due_at"]) == ("medium", [], None)


def test_tags_are_trimmed_lower_cased_deduplicated_and_sorted(client: TestClient) -> None:
    task = create(client, tags=["Work", " home ", "work", "Errands"])

    assert task["tags"] == ["errands", "home", "work"]
    assert client.get(f"/api/alice/tasks/{task['id']}").json()["tags"] == task["tags"]


def test_due_at_is_returned_in_utc(client: TestClient) -> None:
    task = create(client, due_at="2026-03-10T09:30:00+01:00")

    assert task["due_at"] == "2026-03-10T08:30:00+00:00"
    assert task["due_date"] is None


def test_setting_due_at_clears_due_date_and_the_other_way_round(client: TestClient) -> None:
    task = create(client, due_date="2026-03-10")

    timed = client.patch(f"/api/alice/tasks/{task['id']}", json={"due_at": "2026-03-10T12:00:00Z"})
    dated = client.put(f"/api/alice/tasks/{task['id']}", json={"due_date": "2026-04-01"})

    assert (timed.json()["due_date"], timed.json()["due_at"]) == (None, "2026-03-10T12:00:00+00:00")
    assert (dated.json()["due_date"], dated.json()["due_at"]) == ("2026-04-01", None)


def test_changing_priority_or_tags_bumps_the_version_and_a_no_op_keeps_it(
    client: TestClient,
) -> None:
    task = create(client, priority="low", tags=["a"])
    path = f"/api/alice/tasks/{task['id']}"

    changed = client.patch(path, json={"priority": "high", "tags": ["B", "a"]}).json()
    same = client.put(path, json={"priority": "high", "tags": ["a", "b"]})

    assert (changed["priority"], changed["tags"], changed["version"]) == ("high", ["a", "b"], 2)
    assert same.json()["version"] == 2
    assert same.headers["etag"] == '"2"'
    assert same.json()["updated_at"] == changed["updated_at"]


def test_null_tags_in_an_update_remove_every_tag(client: TestClient) -> None:
    task = create(client, tags=["x", "y"])
    assert client.patch(f"/api/alice/tasks/{task['id']}", json={"tags": None}).json()["tags"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"priority": None}, "priority"),
        ({"priority": "HIGH"}, "priority"),
        ({"tags": ["ok", 5]}, "tags.1"),
        ({"due_at": "soon"}, "due_at"),
        ({"due_date": "2026-01-01", "due_at": "2026-01-01T00:00:00Z"}, "due_at"),
    ],
)
def test_invalid_new_fields_in_an_update_are_422_and_change_nothing(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    task = create(client, tags=["keep"])

    assert field in invalid_fields(client.patch(f"/api/alice/tasks/{task['id']}", json=body))
    assert client.get(f"/api/alice/tasks/{task['id']}").json() == task


# --- filters ------------------------------------------------------------------------------------


def test_priority_filter_takes_a_comma_list(client: TestClient) -> None:
    low = create(client, priority="low")["id"]
    create(client, priority="medium")
    high = create(client, priority="high")["id"]

    assert ids(client, "priority=high,low") == [high, low]
    assert ids(client, "priority=low&priority=high") == [high, low]


def test_tag_filter_matches_any_or_all_and_ignores_case(client: TestClient) -> None:
    both = create(client, tags=["home", "urgent"])["id"]
    home = create(client, tags=["home"])["id"]
    create(client, tags=[])

    assert ids(client, "tag=HOME,urgent") == [home, both]
    assert ids(client, "tag=home,urgent&tag_mode=all") == [both]
    assert ids(client, "tag=nothing") == []


def test_search_matches_word_prefixes_and_substrings_in_title_or_description(
    client: TestClient,
) -> None:
    milk = create(client, title="Buy Milk", description="semi-skimmed")["id"]
    report = create(client, title="Quarterly report", description="for the board")["id"]

    assert ids(client, "q=mil") == [milk]
    assert ids(client, "q=SKIM") == [milk]
    assert ids(client, "q=arterl") == [report]
    assert ids(client, "q=board report") == [report]
    assert ids(client, "q=board milk") == []


def test_search_treats_like_wildcards_literally(client: TestClient) -> None:
    percent = create(client, title="100% done")["id"]
    create(client, title="1000 done")

    assert ids(client, "q=100%25") == [percent]
    assert ids(client, "q=_") == []


def test_has_due_and_updated_after(client: TestClient) -> None:
    dated = create(client, due_date="2026-01-01")["id"]
    timed = create(client, due_at="2026-01-01T10:00:00Z")["id"]
    undated = create(client)["id"]

    assert ids(client, "has_due=true") == [timed, dated]
    assert ids(client, "has_due=false") == [undated]
    assert ids(client, "updated_after=2000-01-01") == [undated, timed, dated]
    assert ids(client, "updated_after=2999-01-01T00:00:00Z") == []


def test_filters_combine_with_and(client: TestClient) -> None:
    match = create(client, title="pay rent", priority="high", tags=["home"])["id"]
    create(client, title="pay rent", priority="low", tags=["home"])
    create(client, title="pay rent", priority="high", tags=["work"])
    create(client, title="clean", priority="high", tags=["home"])

    assert ids(client, "q=rent&priority=high&tag=home&status=pending") == [match]


def test_due_bounds_are_half_open_and_compare_dates_and_instants(client: TestClient) -> None:
    day_before = create(client, due_date="2026-03-09")["id"]
    on_the_day = create(client, due_date="2026-03-10")["id"]
    timed = create(client, due_at="2026-03-10T15:00:00Z")["id"]
    create(client, due_date="2026-03-11")
    create(client)

    assert ids(client, "due_after=2026-03-10&due_before=2026-03-11") == [timed, on_the_day]
    assert ids(client, "due_before=2026-03-10") == [day_before]
    # An all-day task counts as due at the start of its day.
    assert ids(client, "due_after=2026-03-10T12:00:00Z&due_before=2026-03-11") == [timed]
    assert ids(client, "due_before=2026-03-10T00:00:01Z") == [on_the_day, day_before]


def test_due_bounds_follow_the_time_zone_across_a_dst_change(client: TestClient) -> None:
    # New York moves to daylight time on 2026-03-08: 2026-03-09 starts at 04:00 UTC, not 05:00.
    late_on_the_8th = create(client, due_at="2026-03-09T03:59:00Z")["id"]
    first_minute_of_the_9th = create(client, due_at="2026-03-09T04:00:00Z")["id"]

    new_york = "tz=America/New_York"
    assert ids(client, f"due_before=2026-03-09&{new_york}") == [late_on_the_8th]
    assert ids(client, f"due_after=2026-03-09&{new_york}") == [first_minute_of_the_9th]


# --- overdue and time zones ---------------------------------------------------------------------


def test_an_all_day_task_due_today_in_honolulu_is_not_overdue_there(
    client: TestClient, clock: Clock
) -> None:
    # 05:00 UTC on the 11th is 19:00 on the 10th in Honolulu (UTC-10).
    clock(datetime(2026, 3, 11, 5, 0, tzinfo=UTC))
    task = create(client, due_date="2026-03-10")["id"]

    assert ids(client, "overdue=true&tz=Pacific/Honolulu") == []
    assert ids(client, "overdue=false&tz=Pacific/Honolulu") == [task]
    assert ids(client, "overdue=true") == [task]


def test_a_task_due_today_in_utc_is_overdue_in_kiritimati_once_its_date_moved_on(
    client: TestClient, clock: Clock
) -> None:
    # 12:00 UTC on the 10th is 02:00 on the 11th in Kiritimati (UTC+14).
    clock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    task = create(client, due_date="2026-03-10")["id"]

    assert ids(client, "overdue=true&tz=Pacific/Kiritimati") == [task]
    assert ids(client, "overdue=true") == []


def test_a_timed_task_is_overdue_once_its_instant_has_passed_and_completed_never_is(
    client: TestClient, clock: Clock
) -> None:
    clock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    passed = create(client, due_at="2026-03-10T11:59:59Z")["id"]
    create(client, due_at="2026-03-10T12:00:01Z")
    done = create(client, due_date="2026-01-01")["id"]
    client.patch(f"/api/alice/tasks/{done}/complete")

    assert ids(client, "overdue=true") == [passed]


# --- sorting ------------------------------------------------------------------------------------


def test_due_sort_puts_undated_tasks_last_in_both_directions(client: TestClient) -> None:
    undated = create(client)["id"]
    early = create(client, due_date="2026-01-01")["id"]
    timed = create(client, due_at="2026-01-01T08:00:00Z")["id"]
    late = create(client, due_date="2026-02-01")["id"]

    assert ids(client, "sort=due_date") == [early, timed, late, undated]
    assert ids(client, "sort=due_date&order=desc") == [late, timed, early, undated]


def test_priority_sort_is_high_first_by_default_with_id_breaking_ties(client: TestClient) -> None:
    low = create(client, priority="low")["id"]
    high_1 = create(client, priority="high")["id"]
    high_2 = create(client, priority="high")["id"]

    assert ids(client, "sort=priority") == [high_2, high_1, low]
    assert ids(client, "sort=priority&order=asc") == [low, high_1, high_2]


def test_updated_sort_follows_the_last_change(client: TestClient, connection: Connection) -> None:
    # One test is one transaction, whose now() never moves: set the times it cannot produce.
    first = create(client)["id"]
    second = create(client)["id"]
    connection.execute(
        text("UPDATE tasks SET updated_at = updated_at + interval '1 hour' WHERE id = :id"),
        {"id": first},
    )

    assert ids(client, "sort=updated") == [first, second]
    assert ids(client, "sort=updated&order=asc") == [second, first]


def test_title_sort_descending_reverses_ascending(client: TestClient) -> None:
    for title in ("b", "A", "c", "a"):
        create(client, title=title)

    ascending = ids(client, "sort=title")
    assert ids(client, "sort=title&order=desc") == list(reversed(ascending))


# --- bad parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("priority=urgent", "priority"),
        ("priority=", "priority"),
        ("priority=low,", "priority"),
        ("tag=", "tag.0"),
        ("tag=" + "x" * 51, "tag.0"),
        ("tag=" + ",".join(f"t{n}" for n in range(21)), "tag"),
        ("tag_mode=some", "tag_mode"),
        ("q=", "q"),
        ("q=%20%20", "q"),
        ("q=" + "x" * 201, "q"),
        ("q=a b c d e f g h i", "q"),
        ("due_before=tomorrow", "due_before"),
        ("due_before=2026-02-30", "due_before"),
        ("due_after=2026-03-10T10:00:00", "due_after"),
        ("due_after=2026-03-10T10:00:00 01:00", "due_after"),
        ("updated_after=1700000000", "updated_after"),
        ("overdue=yes", "overdue"),
        ("overdue=1", "overdue"),
        ("has_due=", "has_due"),
        ("tz=Mars/Olympus", "tz"),
        ("tz=", "tz"),
        ("tz=../../etc/passwd", "tz"),
        ("sort=random", "sort"),
        ("order=up", "order"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("limit=1.5", "limit"),
        ("cursor=", "cursor"),
        ("cursor=abc", "cursor"),
    ],
)
def test_every_bad_list_parameter_is_422_naming_it(
    client: TestClient, query: str, field: str
) -> None:
    task = create(client)

    response = client.get(f"/api/alice/tasks?{query}")

    assert field in invalid_fields(response), response.json()
    assert all(error["message"] for error in response.json()["errors"])
    assert client.get(f"/api/alice/tasks/{task['id']}").json() == task


def test_a_bad_instant_explains_how_to_send_an_offset(client: TestClient) -> None:
    problem = assert_problem(
        client.get("/api/alice/tasks?due_after=2026-03-10T10:00:00 01:00"), 422
    )
    assert "%2B" in problem["errors"][0]["message"]


# --- stats and tags -----------------------------------------------------------------------------


def test_stats_count_by_state_priority_and_due_in_the_callers_time_zone(
    client: TestClient, clock: Clock
) -> None:
    clock(datetime(2026, 3, 11, 5, 0, tzinfo=UTC))  # 19:00 on the 10th in Honolulu
    create(client, due_date="2026-03-10", priority="high")
    create(client, due_at="2026-03-11T01:00:00Z")  # 15:00 on the 10th in Honolulu: passed
    create(client, due_date="2026-03-11", priority="low")
    done = create(client, due_date="2026-01-01")["id"]
    client.patch(f"/api/alice/tasks/{done}/complete")
    create(client, "bob", due_date="2026-01-01")

    utc = client.get("/api/alice/tasks/stats").json()
    honolulu = client.get("/api/alice/tasks/stats?tz=Pacific/Honolulu").json()

    assert utc == {
        "total": 4,
        "pending": 3,
        "completed": 1,
        "overdue": 2,
        "due_today": 2,
        "by_priority": {"low": 1, "medium": 2, "high": 1},
    }
    assert (honolulu["overdue"], honolulu["due_today"]) == (1, 2)


def test_stats_refuse_unknown_parameters_and_zones(client: TestClient) -> None:
    assert "tz" in invalid_fields(client.get("/api/alice/tasks/stats?tz=Nowhere"))
    assert "status" in invalid_fields(client.get("/api/alice/tasks/stats?status=all"))


def test_tags_list_each_tag_with_its_task_counts(client: TestClient) -> None:
    create(client, tags=["home", "work"])
    done = create(client, tags=["Home"])["id"]
    client.patch(f"/api/alice/tasks/{done}/complete")
    create(client, "bob", tags=["secret"])

    assert client.get("/api/alice/tags").json() == [
        {"tag": "home", "tasks": 2, "pending": 1},
        {"tag": "work", "tasks": 1, "pending": 1},
    ]
    assert client.get("/api/carol/tags").json() == []


def test_an_offset_beyond_postgresqls_range_is_still_an_instant(client: TestClient) -> None:
    # RFC 3339 allows offsets up to 23:59; PostgreSQL only 15:59. Found by the contract test.
    task = create(client, due_at="2026-03-10T23:31:00+23:31")

    assert task["due_at"] == "2026-03-10T00:00:00+00:00"
    assert (
        client.get("/api/alice/tasks?updated_after=1952-02-28T16:37:51%2B23:31").status_code == 200
    )


def test_stats_only_answer_get(client: TestClient) -> None:
    response = client.put("/api/alice/tasks/stats")

    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, HEAD"

"""The change feed over HTTP: first sync, deltas with deletions, paging, tokens, 410 and purging."""

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

import queries.changes
from commands.changes import PurgeTombstones, purge_tombstones
from commands.dispatch import unit_of_work
from tests.conftest import WritesOnConnection
from tests.integration.test_tasks_api import assert_problem, create, invalid_fields
from tests.readers import ConnectionReader, as_app_role


def feed(client: TestClient, user: str = "alice", **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/{user}/changes", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def upserted(body: dict[str, Any]) -> list[int]:
    return [change["task"]["id"] for change in body["changes"] if change["op"] == "upsert"]


def deleted(body: dict[str, Any]) -> list[int]:
    return [change["id"] for change in body["changes"] if change["op"] == "delete"]


def test_a_first_sync_lists_every_current_task_and_no_deletions(client: TestClient) -> None:
    kept = [create(client, title=f"t{n}")["id"] for n in range(3)]
    gone = create(client, title="gone")["id"]
    assert client.delete(f"/api/alice/tasks/{gone}").status_code == 204

    body = feed(client)

    assert upserted(body) == kept
    assert deleted(body) == []
    assert body["has_more"] is False
    assert body["changes"][0]["task"] == client.get(f"/api/alice/tasks/{kept[0]}").json()


def test_changes_since_a_token_are_each_task_once_in_its_latest_state_in_commit_order(
    client: TestClient,
) -> None:
    first, second, third = (create(client, title=f"t{n}")["id"] for n in range(3))
    token = feed(client)["next"]
    client.patch(f"/api/alice/tasks/{second}", json={"title": "renamed"})
    client.delete(f"/api/alice/tasks/{third}")
    client.patch(f"/api/alice/tasks/{first}/complete")
    client.patch(f"/api/alice/tasks/{second}", json={"title": "renamed again"})
    fourth = create(client, title="new")["id"]

    body = feed(client, since=token)

    ops = [(c["op"], c["task"]["id"] if c["op"] == "upsert" else c["id"]) for c in body["changes"]]
    assert ops == [("delete", third), ("upsert", first), ("upsert", second), ("upsert", fourth)]
    assert body["changes"][2]["task"]["title"] == "renamed again"
    assert body["changes"][1]["task"]["completed"] is True
    assert datetime.fromisoformat(body["changes"][0]["deleted_at"]).tzinfo is not None


def test_a_poll_with_nothing_new_returns_no_changes_and_a_token_that_still_works(
    client: TestClient,
) -> None:
    create(client)
    token = feed(client)["next"]

    again = feed(client, since=token)
    assert again["changes"] == []
    assert again["has_more"] is False

    task = create(client, title="later")
    assert upserted(feed(client, since=again["next"])) == [task["id"]]


def test_an_update_that_changes_nothing_is_not_a_change(client: TestClient) -> None:
    task = create(client, title="same")
    token = feed(client)["next"]

    client.patch(f"/api/alice/tasks/{task['id']}", json={"title": "same"})

    assert feed(client, since=token)["changes"] == []


def test_pages_of_limit_follow_next_while_has_more(client: TestClient) -> None:
    created = [create(client, title=f"t{n}")["id"] for n in range(7)]
    token = feed(client, limit=1)["next"]  # after the first task
    seen: list[int] = []
    pages = 0
    while True:
        body = feed(client, since=token, limit=3)
        seen += upserted(body)
        token = body["next"]
        pages += 1
        if not body["has_more"]:
            break
        assert pages < 10

    assert seen == created[1:]
    assert pages == 2


def test_a_first_sync_in_pages_then_deltas_ends_with_the_current_tasks(client: TestClient) -> None:
    ids = [create(client, title=f"t{n}")["id"] for n in range(5)]
    page = feed(client, limit=2)
    mine = set(upserted(page))
    client.delete(f"/api/alice/tasks/{ids[0]}")  # already seen: must come as a deletion
    client.delete(f"/api/alice/tasks/{ids[4]}")  # not seen yet: must not come at all
    while page["has_more"]:
        page = feed(client, since=page["next"], limit=2)
        mine |= set(upserted(page))
        mine -= set(deleted(page))

    assert mine == set(ids[1:4])


def test_the_feed_shows_only_the_callers_changes(client: TestClient) -> None:
    mine = create(client, "alice", title="mine")
    theirs = create(client, "bob", title="theirs")
    client.delete(f"/api/bob/tasks/{theirs['id']}")

    assert upserted(feed(client, "alice")) == [mine["id"]]
    assert feed(client, "bob")["changes"] == []


def test_the_feed_query_without_its_user_filter_still_returns_only_the_callers_changes(
    client: TestClient, connection: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    create(client, "alice", title="mine")
    theirs = create(client, "bob", title="theirs")
    client.delete(f"/api/bob/tasks/{theirs['id']}")
    leaky = text(
        queries.changes.CHANGES_SINCE_SQL.text.replace(
            "WHERE user_id = :user_id AND change_seq", "WHERE change_seq"
        )
    )
    assert leaky.text != queries.changes.CHANGES_SINCE_SQL.text
    monkeypatch.setattr(queries.changes, "CHANGES_SINCE_SQL", leaky)

    reader = ConnectionReader(connection, "alice")
    page = asyncio.run(queries.changes.read_changes(reader, user_id="alice", since=0))

    assert [change.task.title for change in page.changes if change.task] == ["mine"]
    assert [change.op for change in page.changes] == ["upsert"]


# --- tokens ---------------------------------------------------------------------------------


def test_another_users_token_is_refused_with_422(client: TestClient) -> None:
    create(client, "bob")
    bobs = feed(client, "bob")["next"]

    response = client.get("/api/alice/changes", params={"since": bobs})

    assert invalid_fields(response) == {"since"}
    assert "another user" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: base64.urlsafe_b64encode(b'["changes",1,"x",999]').decode() + "." + "A" * 22,
        lambda _: "not-a-token",
        lambda _: "a.b.c",
    ],
)
def test_an_altered_or_made_up_token_is_refused_with_422(client: TestClient, tamper: Any) -> None:
    create(client)
    token = feed(client)["next"]

    response = client.get("/api/alice/changes", params={"since": tamper(token)})

    assert invalid_fields(response) == {"since"}


def test_a_list_cursor_is_not_a_change_token(client: TestClient) -> None:
    for n in range(3):
        create(client, title=f"t{n}")
    link = client.get("/api/alice/tasks?limit=1").headers["link"]
    cursor = link.split("cursor=")[1].split(">")[0]

    assert invalid_fields(client.get("/api/alice/changes", params={"since": cursor})) == {"since"}


@pytest.mark.parametrize("limit", ["0", "1001", "x"])
def test_a_limit_outside_1_to_1000_is_refused(client: TestClient, limit: str) -> None:
    assert invalid_fields(client.get("/api/alice/changes", params={"limit": limit})) == {"limit"}


def test_an_unknown_query_parameter_is_refused(client: TestClient) -> None:
    assert invalid_fields(client.get("/api/alice/changes?updated_after=x")) == {"updated_after"}


# --- retention ------------------------------------------------------------------------------

AGE_TOMBSTONES = text(
    "UPDATE task_tombstones SET deleted_at = deleted_at - make_interval(days => :days)"
    " WHERE user_id = :user_id"
)
TOMBSTONES = text("SELECT id FROM task_tombstones WHERE user_id = :user_id ORDER BY id")


def purge(connection: Connection, user_id: str, batch: int = 500, days: float = 30) -> int:
    cmd = PurgeTombstones(
        user_id=user_id, before=datetime.now(UTC) - timedelta(days=days), batch=batch
    )
    with WritesOnConnection(connection).as_user(user_id) as session, unit_of_work(session):
        return purge_tombstones(cmd, session)


def age(connection: Connection, user_id: str, days: int) -> None:
    connection.execute(AGE_TOMBSTONES, {"user_id": user_id, "days": days})


def test_a_token_from_before_a_purged_deletion_is_410_gone(
    client: TestClient, connection: Connection
) -> None:
    task = create(client)
    old = feed(client)["next"]
    client.delete(f"/api/alice/tasks/{task['id']}")
    age(connection, "alice", 31)

    assert purge(connection, "alice") == 1
    response = client.get("/api/alice/changes", params={"since": old})

    problem = assert_problem(response, 410)
    assert problem["type"] == "/problems/changes-gone"
    assert "without `since`" in problem["detail"]
    # The way out the problem names works: a fresh sync, then deltas again.
    fresh = feed(client)
    assert fresh["changes"] == []
    assert feed(client, since=fresh["next"])["changes"] == []


def test_a_token_from_after_the_purged_deletions_still_works(
    client: TestClient, connection: Connection
) -> None:
    task = create(client)
    client.delete(f"/api/alice/tasks/{task['id']}")
    token = feed(client)["next"]
    age(connection, "alice", 31)
    purge(connection, "alice")

    assert feed(client, since=token)["changes"] == []


def test_tombstones_younger_than_the_retention_are_kept(
    client: TestClient, connection: Connection
) -> None:
    task = create(client)
    old = feed(client)["next"]
    client.delete(f"/api/alice/tasks/{task['id']}")
    age(connection, "alice", 29)

    assert purge(connection, "alice") == 0
    assert deleted(feed(client, since=old)) == [task["id"]]


def test_the_purge_goes_in_bounded_batches_and_only_for_its_user(
    client: TestClient, connection: Connection
) -> None:
    for user in ("alice", "bob"):
        for _ in range(5):
            client.delete(f"/api/{user}/tasks/{create(client, user)['id']}")
        age(connection, user, 31)

    assert [purge(connection, "alice", batch=2) for _ in range(4)] == [2, 2, 1, 0]
    assert connection.execute(TOMBSTONES, {"user_id": "alice"}).all() == []
    assert len(connection.execute(TOMBSTONES, {"user_id": "bob"}).all()) == 5


def test_the_service_role_cannot_read_or_purge_another_users_tombstones(
    client: TestClient, connection: Connection
) -> None:
    client.delete(f"/api/bob/tasks/{create(client, 'bob')['id']}")
    age(connection, "bob", 31)
    leaky = text("DELETE FROM task_tombstones RETURNING id")

    with as_app_role(connection):
        connection.execute(text("SELECT set_config('app.user_id', 'alice', true)"))
        assert connection.execute(leaky).all() == []
        assert connection.execute(text("SELECT * FROM task_tombstones")).all() == []
    assert len(connection.execute(TOMBSTONES, {"user_id": "bob"}).all()) == 1


def test_reading_the_feed_purges_the_users_expired_tombstones(engine: Any, issuer: Any) -> None:
    """The service's own purge, end to end, on committed rows (it runs in its own transaction)."""
    from tests.conftest import client_on

    user = f"purge-{datetime.now(UTC).timestamp():.0f}"
    with engine.connect() as conn:
        with conn.begin():
            conn.execute(
                text(
                    "INSERT INTO task_tombstones (user_id, id, change_seq, deleted_at)"
                    " SELECT :user_id, n, n, now() - interval '40 days'"
                    " FROM generate_series(1, 3) AS n"
                ),
                {"user_id": user},
            )
            conn.execute(
                text(
                    "INSERT INTO task_tombstones (user_id, id, change_seq) VALUES (:user_id, 4, 4)"
                ),
                {"user_id": user},
            )
        with conn.begin():
            with client_on(conn, issuer) as client:
                assert client.get(f"/api/{user}/changes").status_code == 200
            remaining = conn.execute(TOMBSTONES, {"user_id": user}).scalars().all()
        with conn.begin():
            conn.execute(text("DELETE FROM task_tombstones WHERE user_id = :u"), {"u": user})

    assert remaining == [4]


def test_the_openapi_document_describes_the_feed_and_the_stream(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    feed_operation = paths["/api/{user_id}/changes"]["get"]
    stream_operation = paths["/api/{user_id}/changes/stream"]["get"]

    assert feed_operation["operationId"] == "listChanges"
    assert feed_operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChangeFeed"
    }
    assert "410" in feed_operation["responses"]
    assert stream_operation["operationId"] == "streamChanges"
    assert list(stream_operation["responses"]["200"]["content"]) == ["text/event-stream"]
    assert "Retry-After" in stream_operation["responses"]["429"]["headers"]
    headers = [p["name"] for p in stream_operation["parameters"] if p["in"] == "header"]
    assert headers == ["Last-Event-ID"]


def test_head_on_the_stream_answers_its_headers_and_ends(client: TestClient) -> None:
    response = client.head("/api/alice/changes/stream")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content == b""


def test_a_token_ahead_of_the_database_is_gone_as_after_restoring_an_older_backup(
    client: TestClient, connection: Connection
) -> None:
    create(client)
    token = feed(client)["next"]
    create(client, title="lost with the restore")
    ahead = feed(client, since=token)["next"]
    # As if restored from a backup taken before the second task: its number is given again.
    connection.execute(
        text("UPDATE task_counters SET last_change = last_change - 1 WHERE user_id = 'alice'")
    )

    problem = assert_problem(client.get("/api/alice/changes", params={"since": ahead}), 410)
    assert problem["type"] == "/problems/changes-gone"


def test_an_id_given_again_after_a_counter_reset_is_reported_once_in_its_latest_state(
    client: TestClient, connection: Connection
) -> None:
    task = create(client, title="first life")
    token = feed(client)["next"]
    client.delete(f"/api/alice/tasks/{task['id']}")
    # What a hand-made reset does (the benchmark's): the id is given out again.
    connection.execute(text("UPDATE task_counters SET last_id = 0 WHERE user_id = 'alice'"))
    again = create(client, title="second life")
    assert again["id"] == task["id"]

    assert [c["op"] for c in feed(client, since=token)["changes"]] == ["upsert"]
    client.delete(f"/api/alice/tasks/{again['id']}")
    assert deleted(feed(client, since=token)) == [task["id"]]

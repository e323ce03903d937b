"""Ordinary Python against the client that openapi-python-client generates, with its default
settings, from /openapi.json: it must pass `mypy --strict` as written, then run the whole flow
against a live server (see test_generated_clients.py, which type-checks and runs it).

Usage: python client_flow.py BASE_URL USER_ID TOKEN, with the generated `tasks_api_client`
importable. Exit code 0 means every check passed; the last line printed is a JSON summary.
"""

import json
import sys
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from tasks_api_client import AuthenticatedClient
from tasks_api_client.api.tasks import (
    complete_task,
    create_task,
    delete_task,
    list_tasks,
    read_task,
    update_task,
)
from tasks_api_client.models import CompletionBody, Problem, TaskCreate, TaskOut, TaskUpdate


def next_cursor(link: str | None) -> str | None:
    """The cursor of the Link header's rel="next" URL, if there is one."""
    if link is None or 'rel="next"' not in link:
        return None
    url = link.split(">", 1)[0].lstrip("<")
    return parse_qs(urlsplit(url).query)["cursor"][0]


def main(base_url: str, user_id: str, token: str) -> dict[str, object]:
    client = AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)
    # A time zone as a program holds one: a plain string from a user's profile or settings.
    time_zone: str = "Europe/Paris"

    created = create_task.sync_detailed(user_id, client=client, body=TaskCreate(title="x"))
    assert created.status_code == HTTPStatus.CREATED, created.content
    task = created.parsed
    assert isinstance(task, TaskOut)
    assert (task.title, task.completed) == ("x", False)
    etag = created.headers["ETag"]
    assert etag == f'"{task.version}"'
    assert created.headers["Location"] == f"/api/{user_id}/tasks/{task.id}"
    assert created.headers.get("X-Request-ID")
    # Timestamps arrive as datetimes (format: date-time), ready for arithmetic.
    age = datetime.now(UTC) - task.created_at
    assert abs(age) < timedelta(minutes=10), task.created_at

    ids = [task.id]
    for title in ("two", "three", "four"):
        more = create_task.sync_detailed(user_id, client=client, body=TaskCreate(title=title))
        assert isinstance(more.parsed, TaskOut), more.content
        ids.append(more.parsed.id)

    listed: list[int] = []
    links: list[str | None] = []
    cursor: str | None = None
    while len(links) < 5:  # four tasks in pages of two are two pages; more is a failure
        page = list_tasks.sync_detailed(
            user_id, client=client, overdue=False, tz=time_zone, limit=2, cursor=cursor
        )
        assert page.status_code == HTTPStatus.OK, page.content
        assert isinstance(page.parsed, list)
        listed += [row.id for row in page.parsed]
        links.append(page.headers.get("Link"))
        cursor = next_cursor(page.headers.get("Link"))
        if cursor is None:
            break
    assert len(links) == 2, links
    assert sorted(listed) == sorted(ids)

    tagged = create_task.sync_detailed(
        user_id, client=client, body=TaskCreate(title="tagged", tags=["work"])
    )
    assert isinstance(tagged.parsed, TaskOut), tagged.content
    # List filters are lists in the generated client, sent as a repeated query parameter.
    filtered = list_tasks.sync_detailed(user_id, client=client, tag=["work", "home"])
    assert isinstance(filtered.parsed, list), filtered.content
    assert [row.id for row in filtered.parsed] == [tagged.parsed.id]

    updated = update_task.sync_detailed(
        user_id, task.id, client=client, body=TaskUpdate(title="y"), if_match=etag
    )
    assert isinstance(updated.parsed, TaskOut), updated.content
    assert updated.parsed.title == "y"

    stale = update_task.sync_detailed(
        user_id, task.id, client=client, body=TaskUpdate(title="lost"), if_match=etag
    )
    assert stale.status_code == HTTPStatus.PRECONDITION_FAILED, stale.content
    assert stale.headers["Content-Type"] == "application/problem+json"
    assert isinstance(stale.parsed, Problem), stale.content
    assert stale.parsed.type_ == "/problems/version-conflict", stale.content
    assert stale.parsed.request_id == stale.headers["X-Request-ID"]

    toggled = complete_task.sync_detailed(user_id, task.id, client=client)
    assert isinstance(toggled.parsed, TaskOut), toggled.content
    assert toggled.parsed.completed is True

    reopened = complete_task.sync_detailed(
        user_id, task.id, client=client, body=CompletionBody(completed=False)
    )
    assert isinstance(reopened.parsed, TaskOut), reopened.content
    assert reopened.parsed.completed is False

    deleted = delete_task.sync_detailed(
        user_id, task.id, client=client, if_match=reopened.headers["ETag"]
    )
    assert deleted.status_code == HTTPStatus.NO_CONTENT, deleted.content
    gone = read_task.sync_detailed(user_id, task.id, client=client)
    assert gone.status_code == HTTPStatus.NOT_FOUND, gone.content
    return {"created": task.id, "listed": listed, "links": links, "deleted": True}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))

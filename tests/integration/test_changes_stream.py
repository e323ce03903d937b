"""The live change stream on real servers: two workers (separate processes, each with its own
LISTEN connection), browser-style clients reading Server-Sent Events with httpx, resuming with
Last-Event-ID, the limits, the heartbeat, and a clean end when the server stops.

Every server is started by this module and stopped by process id.
"""

import base64
import contextlib
import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest

from tests.auth_support import claims_for
from tests.integration.test_cli import (
    SECRET,
    authenticated,
    call,
    free_port,
    wait_until_serving,
)

DELIVERY_SECONDS = 1.0
WAIT_SECONDS = 10.0
STOP_SECONDS = 30


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]


@dataclass
class Event:
    id: str | None
    data: dict[str, Any] | None
    comment: str | None = None
    at: float = field(default_factory=time.monotonic)


def start_server(database_url: str, app_database_url: str, **settings: str) -> Server:
    env = authenticated(
        DATABASE_URL=app_database_url, MIGRATION_DATABASE_URL=database_url, **settings
    )
    port = free_port()
    command = [sys.executable, "-m", "api.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return Server(base, process)


def stop_server(server: Server) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        raise


@pytest.fixture(scope="module")
def two_workers(database_url: str, app_database_url: str) -> Iterator[tuple[Server, Server]]:
    servers: list[Server] = []
    try:
        servers.append(start_server(database_url, app_database_url))
        servers.append(start_server(database_url, app_database_url))
        yield servers[0], servers[1]
    finally:
        for server in servers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                stop_server(server)


def token_for(user: str) -> str:
    return jwt.encode(claims_for(user), SECRET, algorithm="HS256")


class StreamClient:
    """A browser-style stream reader: fetch with the bearer header, parse events in a thread."""

    def __init__(self, base: str, user: str, last_event_id: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token_for(user)}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.events: queue.Queue[Event | BaseException | None] = queue.Queue()
        self.status: int | None = None
        self.ended_cleanly = False
        self._client = httpx.Client(timeout=httpx.Timeout(5.0, read=60.0))
        self._request = self._client.build_request(
            "GET", f"{base}/api/{user}/changes/stream", headers=headers
        )
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._response: httpx.Response | None = None
        self._thread.start()
        assert self._opened.wait(WAIT_SECONDS), "the stream did not open"

    def _read(self) -> None:
        try:
            self._response = self._client.send(self._request, stream=True)
            if self._response.status_code != 200:
                self._response.read()
            self.status = self._response.status_code
            self._opened.set()
            if self.status != 200:
                return
            current: dict[str, str] = {}
            for line in self._response.iter_lines():
                if line == "":
                    if current:  # a block of fields: an event, or only `retry:`
                        data = json.loads(current["data"]) if "data" in current else None
                        self.events.put(Event(current.get("id"), data))
                    current = {}
                elif line.startswith(":"):
                    self.events.put(Event(None, None, comment=line[1:].strip()))
                else:
                    name, _, value = line.partition(":")
                    current[name] = value.removeprefix(" ")
            self.ended_cleanly = True
            self.events.put(None)
        except BaseException as exc:  # handed to the test thread
            self._opened.set()
            self.events.put(exc)

    def next_event(self, timeout: float = WAIT_SECONDS) -> Event | None:
        """The next event or comment; None when the stream ended."""
        item = self.events.get(timeout=timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    def changes_until(self, done: Callable[[list[Event]], bool]) -> list[Event]:
        """Change events (no comments) until `done` says enough."""
        got: list[Event] = []
        deadline = time.monotonic() + WAIT_SECONDS
        while not done(got):
            item = self.next_event(max(0.01, deadline - time.monotonic()))
            assert item is not None, "the stream ended"
            if item.data is not None:
                got.append(item)
        return got

    def body(self) -> Any:
        assert self._response is not None
        return self._response.json()

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
        self._client.close()
        self._thread.join(WAIT_SECONDS)


@contextlib.contextmanager
def streaming(base: str, user: str, last_event_id: str | None = None) -> Iterator[StreamClient]:
    client = StreamClient(base, user, last_event_id)
    try:
        yield client
    finally:
        client.close()


def task_id_of(event: Event) -> int:
    assert event.data is not None
    return int(event.data["task"]["id"] if event.data["op"] == "upsert" else event.data["id"])


def test_a_write_through_one_worker_reaches_streams_on_both_within_a_second(
    two_workers: tuple[Server, Server],
) -> None:
    first, second = two_workers
    user = f"sse-{uuid.uuid4().hex[:8]}"
    token = token_for(user)
    with streaming(first.base, user) as on_first, streaming(second.base, user) as on_second:
        for stream in (on_first, on_second):
            assert stream.status == 200
            retry = stream.next_event()
            assert retry is not None  # the `retry:` line came first
            assert retry.data is None

        for via, title in ((first, "via first"), (second, "via second")):
            written = time.monotonic()
            task = call(via.base, "POST", f"/api/{user}/tasks", {"title": title}, token)
            for stream in (on_first, on_second):
                (got,) = stream.changes_until(lambda events: len(events) >= 1)
                assert got.data == {"op": "upsert", "task": task}
                assert got.at - written < DELIVERY_SECONDS

        call(first.base, "DELETE", f"/api/{user}/tasks/{task['id']}", token=token)
        for stream in (on_first, on_second):
            (got,) = stream.changes_until(lambda events: len(events) >= 1)
            assert got.data is not None
            assert got.data["op"] == "delete"
            assert got.data["id"] == task["id"]


def test_last_event_id_after_a_dropped_connection_replays_nothing_twice_and_misses_nothing(
    two_workers: tuple[Server, Server],
) -> None:
    first, second = two_workers
    user = f"sse-{uuid.uuid4().hex[:8]}"
    token = token_for(user)

    def write(base: str, n: int) -> None:
        task = call(base, "POST", f"/api/{user}/tasks", {"title": f"t{n}"}, token)
        if n % 3 == 0:
            call(base, "PATCH", f"/api/{user}/tasks/{task['id']}/complete", token=token)
        if n % 4 == 0:
            call(base, "DELETE", f"/api/{user}/tasks/{task['id']}", token=token)

    received: list[Event] = []
    for n in range(10):
        write(first.base, n)
    with streaming(first.base, user) as stream:
        received += stream.changes_until(lambda events: len(events) >= 4)
    # Dropped mid-way: the rest of the backlog, and what is written meanwhile, was never read.
    for n in range(10, 20):
        write(second.base, n)
    with streaming(second.base, user, last_event_id=received[-1].id) as resumed:
        current = call(second.base, "GET", f"/api/{user}/tasks?limit=100", token=token)
        expected = {task["id"]: task for task in current}
        model: dict[int, dict[str, Any]] = {}

        def apply(events: list[Event]) -> None:
            for event in events:
                assert event.data is not None
                if event.data["op"] == "upsert":
                    model[event.data["task"]["id"]] = event.data["task"]
                else:
                    model.pop(event.data["id"], None)

        apply(received)
        after_resume: list[Event] = []

        def caught_up(events: list[Event]) -> bool:
            apply(events[len(after_resume) :])
            after_resume[:] = events
            return model == expected

        resumed.changes_until(caught_up)
        received += after_resume

    ids = [event.id for event in received]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    # Ids are tokens after each change, in the order of the changes: a resumed stream goes on
    # from the last one and never goes back.
    seqs = [json.loads(_payload(event_id))[3] for event_id in ids if event_id]
    assert seqs == sorted(seqs)
    assert model == expected


def _payload(token: str) -> str:
    encoded = token.split(".")[0]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()


def test_a_stream_without_a_token_starts_with_every_current_task(
    two_workers: tuple[Server, Server],
) -> None:
    first, _ = two_workers
    user = f"sse-{uuid.uuid4().hex[:8]}"
    token = token_for(user)
    tasks = [
        call(first.base, "POST", f"/api/{user}/tasks", {"title": f"t{n}"}, token) for n in range(3)
    ]
    with streaming(first.base, user) as stream:
        events = stream.changes_until(lambda events: len(events) >= 3)
    assert [event.data for event in events] == [{"op": "upsert", "task": t} for t in tasks]


def test_a_stream_refuses_a_foreign_token_before_it_starts(
    two_workers: tuple[Server, Server],
) -> None:
    first, _ = two_workers
    theirs = call(first.base, "GET", "/api/sse-other/changes", token=token_for("sse-other"))
    user = f"sse-{uuid.uuid4().hex[:8]}"
    with streaming(first.base, user, last_event_id=theirs["next"]) as stream:
        assert stream.status == 422
        problem = stream.body()
    assert problem["errors"][0]["field"] == "Last-Event-Id"


@pytest.fixture
def limited(database_url: str, app_database_url: str) -> Iterator[Server]:
    server = start_server(
        database_url,
        app_database_url,
        CHANGES_STREAMS_PER_USER="1",
        CHANGES_HEARTBEAT_SECONDS="0.5",
    )
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            stop_server(server)


def test_a_user_beyond_the_stream_limit_gets_429_and_an_idle_stream_gets_heartbeats(
    limited: Server,
) -> None:
    user = f"sse-{uuid.uuid4().hex[:8]}"
    with streaming(limited.base, user) as stream:
        with streaming(limited.base, user) as refused:
            assert refused.status == 429
            assert refused.body()["type"] == "/problems/too-many-streams"
        with streaming(limited.base, "someone-else") as other:
            assert other.status == 200
        comments = [stream.next_event() for _ in range(3)]
        assert [c.comment for c in comments if c is not None][-2:] == ["heartbeat", "heartbeat"]
    # Closed streams no longer count.
    with streaming(limited.base, user) as again:
        assert again.status == 200


def test_open_streams_end_cleanly_when_the_server_stops(limited: Server) -> None:
    with streaming(limited.base, "sse-stopping") as stream:
        assert stream.status == 200
        assert stream.next_event() is not None  # the stream is up
        stopped_at = time.monotonic()
        limited.process.send_signal(signal.SIGTERM)
        while (item := stream.next_event()) is not None:
            assert item.data is None  # heartbeats only: nothing was written
        assert stream.ended_cleanly  # the response's last chunk arrived: no broken body
    assert stop_server(limited) == 0
    assert time.monotonic() - stopped_at < 5

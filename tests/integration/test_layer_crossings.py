"""A request goes one way: api -> commands (or queries) -> db and back, at most four crossings.

A profiler watches one request at a time and records every direct call from one of the
project's layers into another (a call made by our code, or by a `with` block of our code; not a
hook that a library invokes on its own). Each such call site is two crossings: there and back.
"""

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from tests.auth_support import TokenIssuer
from tests.conftest import client_on

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("api", "commands", "queries", "db")
WITH_BLOCKS = "contextlib.py"


def layer(frame: FrameType) -> str | None:
    """The frame's layer; "" for the tests' own code; None for libraries."""
    path = Path(frame.f_code.co_filename)
    top = path.relative_to(ROOT).parts[0] if path.is_relative_to(ROOT) else None
    if top == "tests":
        return ""
    return top if top in LAYERS else None


def caller_in_project(frame: FrameType) -> FrameType | None:
    """The project frame that called `frame` directly (through a `with`, at most)."""
    caller = frame.f_back
    if caller is not None and caller.f_code.co_filename.endswith(WITH_BLOCKS):
        caller = caller.f_back
    while caller is not None and layer(caller) == "":  # test helpers stand in for their callers
        caller = caller.f_back
    return caller if caller is not None and layer(caller) else None


class Crossings:
    def __init__(self) -> None:
        self.sites: set[tuple[str, str]] = set()
        self.watching = False

    def __call__(self, frame: FrameType, event: str, _arg: Any) -> None:
        if event != "call" or not self.watching or not layer(frame):
            return
        caller = caller_in_project(frame)
        if caller is not None and layer(caller) != layer(frame):
            self.sites.add(
                (
                    f"{layer(caller)}.{caller.f_code.co_name}",
                    f"{layer(frame)}.{frame.f_code.co_name}",
                )
            )

    def count(self, request: Callable[[], Any]) -> tuple[int, set[tuple[str, str]]]:
        self.sites.clear()
        self.watching = True
        try:
            response = request()
        finally:
            self.watching = False
        assert response.status_code < 300, response.text
        return 2 * len(self.sites), set(self.sites)


@contextmanager
def watched(connection: Connection, issuer: TokenIssuer) -> Iterator[tuple[TestClient, Crossings]]:
    crossings = Crossings()
    # Installed before the client starts its threads, so that they inherit it.
    threading.setprofile(crossings)
    sys.setprofile(crossings)
    try:
        with client_on(connection, issuer) as client:
            client.post("/api/alice/tasks", json={"title": "warm up"})
            yield client, crossings
    finally:
        sys.setprofile(None)
        threading.setprofile(None)


REQUESTS: dict[str, Callable[[TestClient], Any]] = {
    "create": lambda client: client.post("/api/alice/tasks", json={"title": "x"}),
    "update": lambda client: client.put(
        "/api/alice/tasks/1", json={"title": "y", "priority": "high"}
    ),
    "filtered list": lambda client: client.get(
        "/api/alice/tasks?status=pending&q=warm&priority=high&limit=5"
    ),
}


@pytest.mark.parametrize("name", REQUESTS)
def test_a_request_crosses_layers_at_most_four_times(
    connection: Connection, issuer: TokenIssuer, name: str
) -> None:
    with watched(connection, issuer) as (client, crossings):
        count, sites = crossings.count(lambda: REQUESTS[name](client))
    assert count <= 4, sites


def test_the_watch_sees_a_crossing_when_there_is_one(
    connection: Connection, issuer: TokenIssuer
) -> None:
    with watched(connection, issuer) as (client, crossings):
        _, sites = crossings.count(lambda: client.post("/api/alice/tasks", json={"title": "x"}))
    assert ("api.run", "commands.dispatch") in sites

"""A real browser on another origin, as a frontend is: headless Chromium runs page/flow.js,
which calls a live server with fetch and a bearer token, and reports what it could see.

The page is served from one origin that CORS_ORIGINS allows and from one that it does not; the
API is on a third (each a port of 127.0.0.1). Chromium is Debian's `chromium`, installed here
when missing.
"""

import json
import queue
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.frontend import chromium
from tests.frontend.conftest import token_for
from tests.integration.test_cli import serving

PAGE = Path(__file__).with_name("page")
REPORT_SECONDS = 90
TASK_FIELDS = {"id", "user_id", "title", "completed", "version", "created_at", "updated_at"}


class PageServer:
    """Serves page/ on its own loopback port, with `/config.json` (what the test hands the page)
    and `POST /report` (what the page hands back, one JSON object per run)."""

    def __init__(self) -> None:
        self.config: dict[str, str] = {}
        self.reports: queue.Queue[dict[str, Any]] = queue.Queue()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/config.json":
                    super().do_GET()
                    return
                self.answer(200, json.dumps(server.config).encode(), "application/json")

            def do_POST(self) -> None:
                if self.path != "/report":
                    self.send_error(404)
                    return
                length = int(self.headers.get("content-length", "0"))
                server.reports.put(json.loads(self.rfile.read(length)))
                self.answer(204, b"", None)

            def answer(self, status: int, body: bytes, content_type: str | None) -> None:
                self.send_response(status)
                if content_type is not None:
                    self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.send_header("cache-control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(PAGE)))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def origin(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


@pytest.fixture(scope="module")
def browser() -> str:
    path, why = chromium.find_or_install()
    if path is None:
        pytest.skip(f"no headless browser: {why}")
    return path


@pytest.fixture(scope="module")
def allowed_page() -> Iterator[PageServer]:
    page = PageServer()
    yield page
    page.stop()


@pytest.fixture(scope="module")
def other_page() -> Iterator[PageServer]:
    page = PageServer()
    yield page
    page.stop()


@pytest.fixture(scope="module")
def api(api_env: dict[str, str], allowed_page: PageServer) -> Iterator[str]:
    with serving(api_env | {"CORS_ORIGINS": allowed_page.origin}) as base:
        yield base


def run_page(browser: str, page: PageServer, api: str, user: str, profile: Path) -> dict[str, Any]:
    """Open the page in Chromium as `user` and return its report (or fail on a deadline)."""
    page.config = {"api": api, "user": user, "token": token_for(user)}
    with chromium.browsing(browser, f"{page.origin}/index.html", profile) as process:
        deadline = time.monotonic() + REPORT_SECONDS
        while time.monotonic() < deadline:
            try:
                return page.reports.get(timeout=1)
            except queue.Empty:
                if process.poll() is not None:
                    break
    log = profile.parent / f"{profile.name}.log"
    raise AssertionError(f"the page reported nothing; chromium said:\n{log.read_text()[-3000:]}")


def tasks_of(api: str, user: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"{api}/api/{user}/tasks?limit=100")
    request.add_header("authorization", f"Bearer {token_for(user)}")
    with urllib.request.urlopen(request, timeout=10) as response:
        tasks: list[dict[str, Any]] = json.loads(response.read())
        return tasks


@pytest.fixture(scope="module")
def user() -> str:
    return f"browser-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def steps(
    browser: str,
    allowed_page: PageServer,
    api: str,
    user: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """One run of the page on the allowed origin; the tests below each check part of its report."""
    steps = run_page(
        browser, allowed_page, api, user, tmp_path_factory.mktemp("chromium") / "profile"
    )
    assert "error" not in steps, steps
    return steps


@pytest.mark.slow
def test_a_task_created_from_another_origin_shows_its_etag_and_location(
    steps: dict[str, Any], user: str
) -> None:
    create = steps["create"]
    assert create["status"] == 201
    assert create["body"]["title"] == "written in a browser"
    assert create["body"].keys() >= TASK_FIELDS
    assert create["location"] == f"/api/{user}/tasks/{create['body']['id']}"
    assert create["etag"] == f'"{create["body"]["version"]}"'
    assert (steps["read"]["status"], steps["read"]["body"]) == (200, create["body"])
    assert steps["read"]["etag"] == create["etag"]


@pytest.mark.slow
def test_conditional_requests_from_another_origin_update_and_answer_304(
    steps: dict[str, Any],
) -> None:
    assert steps["not_modified"]["status"] == 304
    update = steps["update"]
    assert update["status"] == 200
    assert update["body"]["title"] == "renamed in a browser"
    assert update["etag"] not in (None, steps["create"]["etag"])


@pytest.mark.slow
def test_a_stale_if_match_gives_the_page_a_readable_problem(steps: dict[str, Any]) -> None:
    stale = steps["stale_update"]
    assert stale["status"] == 412
    assert stale["contentType"] == "application/problem+json"
    assert stale["body"]["type"] == "/problems/version-conflict"
    assert stale["body"]["request_id"] == stale["requestId"]
    assert stale["body"]["current"] == steps["update"]["body"]
    described = steps["problem_type"]
    assert (described["status"], described["body"]["status"]) == (200, 412)


@pytest.mark.slow
def test_every_response_shows_the_page_its_request_id(steps: dict[str, Any]) -> None:
    seen = {name: steps[name]["requestId"] for name in ("create", "read", "update", "delete")}
    assert all(seen.values()), seen


@pytest.mark.slow
def test_completion_toggles_without_a_body_and_replays_with_an_idempotency_key(
    steps: dict[str, Any],
) -> None:
    assert (steps["toggle"]["status"], steps["toggle"]["body"]["completed"]) == (200, True)
    reopen, again = steps["reopen"], steps["reopen_again"]
    assert (reopen["status"], reopen["body"]["completed"]) == (200, False)
    assert (again["status"], again["body"], again["replayed"]) == (200, reopen["body"], "true")


@pytest.mark.slow
def test_the_page_walks_every_page_of_two_through_link_headers(steps: dict[str, Any]) -> None:
    pages = steps["pages"]
    assert [page["status"] for page in pages] == [200, 200, 200]
    assert [len(page["ids"]) for page in pages] == [2, 2, 1]
    assert [page["link"] is not None for page in pages] == [True, True, False]
    listed = [task_id for page in pages for task_id in page["ids"]]
    assert len(set(listed)) == 5
    assert steps["create"]["body"]["id"] in listed


@pytest.mark.slow
def test_a_task_deleted_from_another_origin_is_gone(
    steps: dict[str, Any], api: str, user: str
) -> None:
    assert steps["delete"]["status"] == 204
    assert steps["create"]["body"]["id"] not in [task["id"] for task in tasks_of(api, user)]


@pytest.mark.slow
def test_a_page_on_an_origin_that_is_not_allowed_cannot_call_the_api(
    browser: str, other_page: PageServer, api: str, tmp_path: Path
) -> None:
    user = f"elsewhere-{uuid.uuid4().hex[:10]}"
    steps = run_page(browser, other_page, api, user, tmp_path / "profile")

    # The browser refuses the preflight's answer: fetch rejects with a TypeError, nothing is sent.
    assert steps == {"error": {"step": "create", "name": "TypeError", "message": "Failed to fetch"}}
    assert tasks_of(api, user) == []

"""The HTTP server's limits (api/http_server.py), against a real `taskapi serve` on loopback.

Limits are set low through the environment so each test takes seconds. Every loop is bounded in
rounds and time, and every socket is closed by the `with` that opened it.
"""

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from tests.integration.test_cli import authenticated, serving

pytestmark = pytest.mark.slow

REQUEST_TIMEOUT = 1.5
KEEP_ALIVE = 1.0
MAX_HEAD_BYTES = 4096
MAX_HEADERS = 20
SLACK = 1.5  # scheduling on a shared two-core machine
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def problem(self) -> dict[str, object]:
        assert self.headers["content-type"] == "application/problem+json"
        problem: dict[str, object] = json.loads(self.body)
        assert problem["status"] == self.status
        return problem


def server_environment(database_url: str, app_database_url: str, **limits: str) -> dict[str, str]:
    return authenticated(
        DATABASE_URL=app_database_url,
        MIGRATION_DATABASE_URL=database_url,
        HTTP_REQUEST_TIMEOUT_SECONDS=str(REQUEST_TIMEOUT),
        HTTP_KEEP_ALIVE_SECONDS=str(KEEP_ALIVE),
        HTTP_MAX_HEAD_BYTES=str(MAX_HEAD_BYTES),
        HTTP_MAX_HEADERS=str(MAX_HEADERS),
        **limits,
    )


@pytest.fixture(scope="module")
def address(database_url: str, app_database_url: str) -> Iterator[tuple[str, int]]:
    with serving(server_environment(database_url, app_database_url)) as base:
        host, port = base.removeprefix("http://").split(":")
        yield host, int(port)


def connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=REQUEST_TIMEOUT + KEEP_ALIVE + 2 * SLACK)


def read_answer(sock: socket.socket) -> Answer:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return Answer(response.status, response.headers, response.read())


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed (or reset) the connection, reading what is left of it."""
    try:
        for _ in range(1000):
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def send_ignoring_errors(sock: socket.socket, data: bytes) -> bool:
    """False once the server has closed: it may do so before reading all a test sends."""
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def test_a_normal_request_is_answered_and_the_connection_kept(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        for _ in range(2):
            sock.sendall(HEALTH)
            answer = read_answer(sock)
            assert answer.status == 200


def test_a_head_over_the_size_limit_gets_431_quickly_and_the_connection_is_closed(
    address: tuple[str, int],
) -> None:
    # 8 MiB in one field: the server must refuse it without reading, joining or parsing it all.
    head = b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * (8 << 20) + b"\r\n\r\n"
    with connect(address) as sock:
        started = time.monotonic()
        sender = threading.Thread(target=send_ignoring_errors, args=(sock, head))
        sender.start()
        answer = read_answer(sock)
        elapsed = time.monotonic() - started
        sender.join(timeout=10)
        assert answer.status == 431
        assert str(MAX_HEAD_BYTES) in str(answer.problem()["detail"])
        assert answer.headers["connection"] == "close"
        assert closed_by_server(sock)
    assert elapsed < SLACK


def test_a_long_request_target_counts_towards_the_head_limit(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        sock.sendall(b"GET /healthz?q=" + b"a" * MAX_HEAD_BYTES + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_answer(sock).status == 431
        assert closed_by_server(sock)


def test_a_head_just_under_the_size_limit_is_served(address: tuple[str, int]) -> None:
    filler = b"X-Fill: " + b"a" * (MAX_HEAD_BYTES - 200) + b"\r\n"
    with connect(address) as sock:
        sock.sendall(HEALTH.removesuffix(b"\r\n") + filler + b"\r\n")
        assert read_answer(sock).status == 200


def test_a_small_head_read_together_with_a_large_body_is_served(address: tuple[str, int]) -> None:
    body = b"a" * (8 * MAX_HEAD_BYTES)
    head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body)
    with connect(address) as sock:
        sock.sendall(head + body)
        assert read_answer(sock).status == 200


def test_more_header_fields_than_the_limit_get_431(address: tuple[str, int]) -> None:
    fields = b"".join(b"X-F%d: 1\r\n" % index for index in range(MAX_HEADERS + 1))
    with connect(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n" + fields + b"\r\n")
        answer = read_answer(sock)
        assert answer.status == 431
        assert str(MAX_HEADERS) in str(answer.problem()["detail"])
        assert closed_by_server(sock)


def test_a_malformed_request_gets_a_400_problem(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n")
        answer = read_answer(sock)
        assert answer.status == 400
        answer.problem()


def test_clients_trickling_their_heads_are_dropped_while_others_are_served(
    address: tuple[str, int],
) -> None:
    with ExitStack() as stack:
        slow = [stack.enter_context(connect(address)) for _ in range(30)]
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        for round_ in range(100):
            if time.monotonic() - started > REQUEST_TIMEOUT + 0.3:
                break
            for sock in slow:
                send_ignoring_errors(sock, b"X-Drip-%d: 1\r\n" % round_)
            if round_ == 1:
                with connect(address) as fresh:
                    asked = time.monotonic()
                    fresh.sendall(HEALTH)
                    assert read_answer(fresh).status == 200
                    assert time.monotonic() - asked < SLACK
            time.sleep(0.2)
        for sock in slow:
            answer = read_answer(sock)
            assert answer.status == 408
            assert answer.problem()["type"] == "/problems/request-timeout"
            assert closed_by_server(sock)


def test_a_body_that_does_not_arrive_in_time_gets_408(address: tuple[str, int]) -> None:
    head = (
        b"POST /api/alice/tasks HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    with connect(address) as sock:
        sock.sendall(head + b'{"title": ')
        started = time.monotonic()
        answer = read_answer(sock)
        assert answer.status == 408
        answer.problem()
        assert closed_by_server(sock)
    assert REQUEST_TIMEOUT - 0.2 < time.monotonic() - started < REQUEST_TIMEOUT + SLACK


def test_an_idle_kept_alive_connection_is_closed(address: tuple[str, int]) -> None:
    with connect(address) as sock:
        sock.sendall(HEALTH)
        assert read_answer(sock).status == 200
        started = time.monotonic()
        assert closed_by_server(sock)
    assert time.monotonic() - started < KEEP_ALIVE + SLACK


def test_a_connection_that_never_sends_anything_is_closed_without_an_answer(
    address: tuple[str, int],
) -> None:
    with connect(address) as sock:
        started = time.monotonic()
        assert sock.recv(65536) == b""
    assert time.monotonic() - started < KEEP_ALIVE + SLACK


def test_a_connection_sending_only_blank_lines_is_closed_when_idle(
    address: tuple[str, int],
) -> None:
    with connect(address) as sock:
        sock.sendall(HEALTH)
        assert read_answer(sock).status == 200
        started = time.monotonic()
        for _ in range(round((KEEP_ALIVE + SLACK) / 0.2) + 5):
            if not send_ignoring_errors(sock, b"\r\n"):
                break
            time.sleep(0.2)
        assert closed_by_server(sock)
    assert time.monotonic() - started < KEEP_ALIVE + SLACK + 1


MAX_CONNECTIONS = 8


def test_connections_over_the_cap_get_a_503_problem_with_retry_after(
    database_url: str, app_database_url: str
) -> None:
    env = server_environment(
        database_url, app_database_url, HTTP_MAX_CONNECTIONS=str(MAX_CONNECTIONS)
    )
    # A longer idle timeout: the held connections must outlive the test's own steps.
    env["HTTP_KEEP_ALIVE_SECONDS"] = "10"
    with serving(env) as base, ExitStack() as stack:
        host, port = base.removeprefix("http://").split(":")
        address = (host, int(port))
        held = [stack.enter_context(connect(address)) for _ in range(MAX_CONNECTIONS)]
        held[0].sendall(HEALTH)
        assert read_answer(held[0]).status == 200  # all accepted before the next one
        with connect(address) as extra:
            extra.sendall(HEALTH)
            answer = read_answer(extra)
            assert answer.status == 503
            assert answer.headers["retry-after"] == "1"
            assert str(MAX_CONNECTIONS) in str(answer.problem()["detail"])
            assert answer.problem()["type"] == "/problems/server-busy"
            assert closed_by_server(extra)
        with connect(address) as silent:
            # Answered on arrival, not after the idle deadline: a flood beyond the cap must not
            # hold descriptors that long.
            started = time.monotonic()
            assert read_answer(silent).status == 503
            assert closed_by_server(silent)
            assert time.monotonic() - started < SLACK
        for sock in held[1:]:
            sock.sendall(HEALTH)
            assert read_answer(sock).status == 200

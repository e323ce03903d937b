"""The fallback load generator, for machines without wrk: asyncio keep-alive connections.

It reports the same figures as the wrk script (requests, non-2xx, socket errors, p50/p99/p99.9),
but Python spends far more CPU per request than wrk, on the same two cores the server uses, so
its request rates understate the service. The report names the generator that produced a row.
"""

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from bench.results import LoadResult, latency_from_ns
from bench.server import HOST
from bench.workloads import RequestPlan, Route

NAME = "python-asyncio"
REQUEST_TIMEOUT_SECONDS = 10.0
RECONNECT_PAUSE_SECONDS = 0.05


@dataclass
class _Tally:
    max_requests: int
    deadline: float
    latencies_ns: list[int] = field(default_factory=list)
    non_2xx: int = 0
    socket_errors: int = 0

    def done(self) -> bool:
        return len(self.latencies_ns) >= self.max_requests or time.monotonic() >= self.deadline


def run(
    plan: RequestPlan, *, port: int, connections: int, seconds: float, max_requests: int
) -> LoadResult:
    """Keep `connections` connections busy for `seconds` (or `max_requests` responses)."""
    return asyncio.run(_run(plan, port, connections, seconds, max_requests))


def run_together(
    loads: list[tuple[RequestPlan, int]], *, port: int, seconds: float, max_requests: int
) -> list[LoadResult]:
    """Several plans at once, each on its own connections, in one event loop; one result each."""

    async def together() -> list[LoadResult]:
        runs = (_run(plan, port, connections, seconds, max_requests) for plan, connections in loads)
        return list(await asyncio.gather(*runs))

    return asyncio.run(together())


async def _run(
    plan: RequestPlan, port: int, connections: int, seconds: float, max_requests: int
) -> LoadResult:
    started = time.monotonic()
    tally = _Tally(max_requests=max_requests, deadline=started + seconds)
    await asyncio.gather(*(_client(plan, port, tally, seed) for seed in range(connections)))
    return LoadResult(
        generator=NAME,
        requests=len(tally.latencies_ns),
        seconds=time.monotonic() - started,
        non_2xx=tally.non_2xx,
        socket_errors=tally.socket_errors,
        latency=latency_from_ns(tally.latencies_ns),
    )


async def _client(plan: RequestPlan, port: int, tally: _Tally, seed: int) -> None:
    chooser = plan.chooser(seed)
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while not tally.done():
        if streams is None:
            streams = await _connect(port, tally)
            continue
        route, path, token = chooser.next()
        request = _request_bytes(route, path, token, port)
        started = time.perf_counter_ns()
        try:
            status = await asyncio.wait_for(_exchange(*streams, request), REQUEST_TIMEOUT_SECONDS)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            tally.socket_errors += 1
            _close(streams[1])
            streams = None
            continue
        tally.latencies_ns.append(time.perf_counter_ns() - started)
        tally.non_2xx += not 200 <= status < 300
    if streams is not None:
        _close(streams[1])


async def _connect(
    port: int, tally: _Tally
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    try:
        return await asyncio.open_connection(HOST, port)
    except OSError:
        tally.socket_errors += 1
        await asyncio.sleep(RECONNECT_PAUSE_SECONDS)
        return None


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        writer.close()


def _request_bytes(route: Route, path: str, token: str | None, port: int) -> bytes:
    body = route.body or b""
    head = f"{route.method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    if route.body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """Send one request and read its whole response; return the status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    headers = _headers(head)
    if headers.get("transfer-encoding") == "chunked":
        await _skip_chunks(reader)
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return status


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    pairs = (line.split(":", 1) for line in lines if ":" in line)
    return {name.strip().lower(): value.strip().lower() for name, value in pairs}


async def _skip_chunks(reader: asyncio.StreamReader) -> None:
    while size := int((await reader.readline()).split(b";")[0], 16):
        await reader.readexactly(size + 2)
    await reader.readuntil(b"\r\n")

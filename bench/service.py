"""The service under test, started as production starts it: `taskapi serve --workers N`, as the
service's own role, with bearer tokens (HS256, a secret made for the run) on every request."""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx
import jwt
import psutil

from bench import processes
from bench.workloads import CREATE_BODY
from db.settings import PROJECT_ROOT

HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 15.0
ISSUER = "taskapi-bench"
AUDIENCE = "taskapi"
TOKEN_LIFETIME_SECONDS = 2 * 60 * 60


@dataclass(frozen=True)
class BenchAuth:
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    def token(self, user_id: str) -> str:
        now = int(time.time())
        claims = {"sub": user_id, "iss": ISSUER, "aud": AUDIENCE, "iat": now}
        claims["exp"] = now + TOKEN_LIFETIME_SECONDS
        return jwt.encode(claims, self.secret, algorithm="HS256")


@dataclass(frozen=True)
class Service:
    pid: int
    url: str
    workers: list[int]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_service(
    *,
    app_url: str,
    owner_url: str,
    auth: BenchAuth,
    workers: int,
    log_path: Path,
    read_url: str | None = None,  # None: the primary, as DATABASE_URL
    inline_reads: str = "auto",
) -> Iterator[Service]:
    """Start the service on a free loopback port; stop it by pid however the block ends."""
    port = free_port()
    serve = ["serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]
    # Every URL set explicitly, so a developer's .env cannot point a side elsewhere.
    env = os.environ | {"AUTH_MODE": "secret", "AUTH_ISSUER": ISSUER, "AUTH_AUDIENCE": AUDIENCE}
    env |= {"AUTH_JWT_SECRET": auth.secret}
    env |= {"DATABASE_URL": app_url, "READ_DATABASE_URL": read_url or app_url}
    env |= {"MIGRATION_DATABASE_URL": owner_url, "INLINE_READS": inline_reads}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log_file:  # its access log, one file per workload
        # A session of its own: the bench, not a terminal's Ctrl-C, decides how it stops.
        proc = subprocess.Popen(  # noqa: S603 -- our own interpreter and arguments
            [sys.executable, "-m", "api.cli", *serve],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://{HOST}:{port}"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited with {proc.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the service was not ready in time; see {log_path}")
            time.sleep(0.2)
        # The master's children, less multiprocessing's resource tracker. One worker: the master.
        children = psutil.Process(proc.pid).children()
        pids = [p.pid for p in children if "resource_tracker" not in " ".join(p.cmdline())]
        yield Service(proc.pid, url, pids or [proc.pid])
    finally:  # SIGTERM the master (it stops its workers), then SIGKILL whatever is left, by pid
        family: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            family = psutil.Process(proc.pid).children(recursive=True)
        processes.stop(proc, signal.SIGTERM, STOP_TIMEOUT_SECONDS)
        for process in family:
            # psutil refuses to signal a pid the kernel has since given to another process.
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def _call(client: httpx.Client, url: str, bearer: str, body: object = None) -> httpx.Response:
    """One request to the service as `bearer`'s user (POST when there is a body)."""
    headers = {"Authorization": "Bearer " + bearer}
    method = "GET" if body is None else "POST"
    return client.request(method, url, headers=headers, json=body).raise_for_status()


def change_tokens(url: str, bearers: dict[str, str]) -> dict[str, str]:
    """Each user's current change-feed token (`next` of a first download of their feed)."""
    feed = url + "/api/{}/changes?limit=1000"
    with httpx.Client(timeout=10) as client:  # one for all: each new client costs ~50 ms
        return {u: _call(client, feed.format(u), b).json()["next"] for u, b in bearers.items()}


def consistency_token(url: str, user: str, bearer: str) -> str | None:
    """The X-Consistency-Token of a task created now (None: the service reads no replica)."""
    with httpx.Client(timeout=10) as client:
        answer = _call(client, f"{url}/api/{user}/tasks", bearer, CREATE_BODY)
    return answer.headers.get("X-Consistency-Token")

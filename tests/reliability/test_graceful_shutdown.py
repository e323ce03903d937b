"""SIGTERM lets requests in flight finish: an accepted write is answered and kept."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from sqlalchemy import Engine, text

from tests.integration.test_cli import free_port, wait_until_serving
from tests.reliability.test_concurrent_writes import Reply, request


@pytest.mark.slow
def test_a_write_in_flight_at_sigterm_completes_and_is_kept(
    database_url: str, app_database_url: str, engine: Engine
) -> None:
    user = f"term-{uuid.uuid4().hex[:10]}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": app_database_url,
        "MIGRATION_DATABASE_URL": database_url,
        "AUTH_MODE": "none",
    }
    command = [sys.executable, "-m", "api.cli", "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env)
    try:
        wait_until_serving(base, server)
        task = json.loads(request(base, "POST", f"/api/{user}/tasks", {"title": "old"})[2])
        replies: list[Reply] = []

        with engine.connect() as blocker, blocker.begin():
            # Hold the task's row lock so the PUT below is still running when SIGTERM arrives.
            blocker.execute(text("SELECT set_config('app.user_id', :u, true)"), {"u": user})
            blocker.execute(
                text("SELECT 1 FROM tasks WHERE user_id = :u AND id = :id FOR UPDATE"),
                {"u": user, "id": task["id"]},
            )
            writer = threading.Thread(
                target=lambda: replies.append(
                    request(base, "PUT", f"/api/{user}/tasks/{task['id']}", {"title": "new"})
                )
            )
            writer.start()
            time.sleep(0.5)
            server.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert writer.is_alive(), "the write should still be waiting for the row lock"
        writer.join(timeout=30)

        assert server.wait(timeout=30) == 0
        status, _, body = replies[0]
        assert status == 200, body
        assert json.loads(body)["title"] == "new"
        with engine.connect() as conn, conn.begin():
            conn.execute(text("SELECT set_config('app.user_id', :u, true)"), {"u": user})
            title = conn.execute(
                text("SELECT title FROM tasks WHERE user_id = :u AND id = :id"),
                {"u": user, "id": task["id"]},
            ).scalar_one()
        assert title == "new"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

"""The FastAPI application factory. Engines are built when the app starts, never at import."""

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from api.auth.config import build_authenticator
from api.change_stream import ChangeStreams
from api.change_tokens import ChangeTokens
from api.cors import Cors, origins_problem
from api.cursors import CursorCodec, configured_secret
from api.errors import install_error_handlers
from api.fast_path import FastPath
from api.http_server import ON_SERVER_STOPPING
from api.limits import RequestLimits
from api.openapi import describe_service
from api.request_context import RequestContext
from api.routers import changes, health, service, stats, tags, tasks
from api.settings import ServiceMisconfigured, Settings
from api.tombstones import TombstonePurger
from db.cursor_secret import stored_cursor_secret
from db.engine import make_write_engine
from db.notifications import ChangeListener
from db.reads import Readers, ReadPool
from db.scope import Timeouts, WriteSessions

DESCRIPTION = """
A multi-user task service. Every task belongs to the user in the path; another user's task is
indistinguishable from one that does not exist. Every error is `application/problem+json`.
"""


def create_app(
    settings: Settings | None = None,
    *,
    readers: Readers | None = None,
    writes: WriteSessions | None = None,
) -> FastAPI:
    """The service. Tests may hand it the read and write sides to use instead of its own."""
    settings = settings or Settings()
    cursor_secret = configured_secret(settings)  # a short CURSOR_SECRET refuses to start

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        write_engine = make_write_engine(settings)
        app.state.cursors = CursorCodec(
            cursor_secret or functools.partial(stored_cursor_secret, write_engine)
        )
        app.state.change_tokens = ChangeTokens(app.state.cursors)
        read_pool = ReadPool(settings)
        await read_pool.open()
        app.state.read_pool = read_pool
        app.state.readers = readers or read_pool
        # A write's position is worth its round trip only when reads may lag behind it.
        positions = bool(settings.replica_urls())
        app.state.writes = writes or WriteSessions(
            write_engine, Timeouts.from_settings(settings), positions=positions
        )
        app.state.tombstone_purger = TombstonePurger(
            app.state.writes, retention_days=settings.tombstone_retention_days
        )
        # One LISTEN connection per worker, for every change stream (docs/adr/0014).
        listener = ChangeListener(
            settings.write_url(), connect_timeout=settings.connect_timeout_seconds
        )
        listener.start()
        streams = app.state.change_streams = ChangeStreams(
            listener,
            per_user=settings.changes_streams_per_user,
            per_worker=settings.changes_streams_per_worker,
            heartbeat_seconds=settings.changes_heartbeat_seconds,
        )
        # The HTTP server calls this when it starts to stop, before it waits for open responses.
        yield {ON_SERVER_STOPPING: streams.stop}
        streams.stop()
        await listener.stop()
        write_engine.dispose()
        await read_pool.close()

    # The docs' scripts and styles come from the fastapi-offline package: /docs works offline.
    app = FastAPIOffline(
        title="Tasks API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,  # RequestContext serves `/tasks/` as `/tasks`
        favicon_url="data:,",
    )
    # Built before serving: a server without authentication configured refuses to start.
    app.state.authenticator = build_authenticator(settings)
    install_error_handlers(app)
    describe_service(app)
    app.add_middleware(FastPath)  # innermost: CORS, limits and the request id apply to it
    app.add_middleware(RequestLimits)
    origins = settings.allowed_origins()
    problem = origins_problem(origins, authenticated=app.state.authenticator.enabled)
    if problem is not None:
        raise ServiceMisconfigured(problem)
    if origins:
        app.add_middleware(Cors, origins=origins)
    app.add_middleware(RequestContext)  # outermost: every answer, CORS's too, has an id
    app.include_router(stats.router)  # before tasks: /tasks/stats is not a task id
    app.include_router(tasks.router)
    app.include_router(tags.router)
    app.include_router(changes.router)
    app.include_router(health.router)
    app.include_router(service.router)
    return app

"""The FastAPI application factory. Engines are built when the app starts, never at import."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from api.auth.config import build_authenticator
from api.errors import install_error_handlers
from api.limits import RequestLimits
from api.routers import health, tasks
from db.engine import make_read_engine, make_write_engine
from db.settings import Settings

DESCRIPTION = """
A multi-user task service. Every task belongs to the user in the path; another user's task is
indistinguishable from one that does not exist. Every error is `application/problem+json`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        write_engine = make_write_engine(settings)
        read_engine = make_read_engine(settings)
        app.state.session_factory = sessionmaker(
            write_engine, class_=Session, expire_on_commit=False
        )
        app.state.read_engine = read_engine
        yield
        write_engine.dispose()
        read_engine.dispose()

    app = FastAPI(
        title="Tasks API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    # Built before serving: a server without authentication configured refuses to start.
    app.state.authenticator = build_authenticator(settings)
    install_error_handlers(app)
    app.add_middleware(RequestLimits)
    app.include_router(tasks.router)
    app.include_router(health.router)
    return app

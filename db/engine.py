"""Engines for the two sides: commands write through sessions, queries read through connections."""

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from db.settings import Settings


def sqlalchemy_url(url: str) -> str:
    """Accept the `postgres://` and `postgresql://` forms and pin the psycopg2 driver."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def make_write_engine(settings: Settings) -> Engine:
    return create_engine(
        sqlalchemy_url(settings.write_url()),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_pre_ping=True,
    )


def make_read_engine(settings: Settings) -> Engine:
    # Reads are single statements: autocommit spares each one a BEGIN/ROLLBACK round trip.
    return create_engine(
        sqlalchemy_url(settings.read_url()),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_pre_ping=True,
        isolation_level="AUTOCOMMIT",
    )

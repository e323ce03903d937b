"""The database's configuration, read from the environment (and a `.env` file).

The rest of the service's settings (authentication, HTTP, cursors) are api/settings.py's; its
`Settings` combines them with these."""

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


FROM_ENVIRONMENT = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)


class DatabaseSettings(BaseSettings):
    model_config = FROM_ENVIRONMENT

    # Unset means: start the embedded PostgreSQL kept under `data_dir`.
    database_url: str | None = None
    """The service's own connection: a role that owns nothing and cannot bypass row security."""
    # The query side's replicas, comma-separated; unset: reads go to `database_url` (see the
    # read replicas block below and docs/adr/0016).
    read_database_url: str | None = None
    migration_database_url: str | None = None
    """The schema owner's connection, used only to migrate; defaults to `database_url`."""
    data_dir: Path = PROJECT_ROOT / ".data"
    pool_size: int = 10
    max_overflow: int = 10
    statement_timeout_ms: int = Field(default=5000, ge=1)
    """Longest any one statement of the service may run (set per transaction, not per session)."""
    lock_timeout_ms: int = Field(default=2000, ge=1)
    """Longest a statement waits for a row lock before the request fails with 503."""
    pool_pre_ping: bool = True
    """Ping each pooled connection at checkout (one round trip). Off: a zero-cost socket check
    that catches connections the server closed, but not one killed microseconds earlier."""
    pool_recycle_seconds: int = 240
    """Replace pooled connections older than this: under Neon's 5-minute idle suspend."""
    connect_timeout_seconds: int = Field(default=10, ge=1)
    pool_timeout_seconds: float = Field(default=5.0, gt=0)
    """Longest a read waits for a pooled connection before the request fails with 503."""
    inline_reads: Literal["auto", "on", "off"] = "auto"
    """Run reads an index bounds (a task by id, the pages of the default lists, change-feed
    polls) on the event loop itself, on one psycopg2 connection per worker (ADR 0018): 1.2-1.6x
    the rate of `list` and `get` here, but a worker waits for each. `auto`: on when the primary
    is on this machine (loopback or a Unix socket), off across a network (Neon)."""
    prepared_statements: bool = True
    """Prepare the query side's statements on each connection (plan once, send only values).
    Turn off behind a pooler without protocol-level prepared statements (PgBouncer < 1.21)."""

    def write_url(self) -> str:
        if self.database_url is None:
            raise RuntimeError("database_url is not set and no embedded server was started")
        return self.database_url

    def migration_url(self) -> str:
        return self.migration_database_url or self.write_url()

    # --- Read replicas and read-your-writes (issue 15, docs/adr/0016) ---
    replica_wait_ms: int = Field(default=50, ge=0)
    """Longest a read that sent a consistency token waits for a replica to replay that far;
    then it reads from the primary."""
    replica_max_lag_ms: int = Field(default=5000, ge=0)
    """A replica further behind the primary than this is taken out of rotation until it catches
    up (reads without a token may be this stale, plus one check interval)."""
    replica_check_ms: int = Field(default=1000, ge=10)
    """How often each worker checks each replica: up or down, replaying or promoted, how far
    behind."""

    def replica_urls(self) -> list[str]:
        """READ_DATABASE_URL's servers, in order; the primary's own URL is not a replica."""
        urls = [url.strip() for url in (self.read_database_url or "").split(",") if url.strip()]
        return [url for url in urls if url != self.database_url]

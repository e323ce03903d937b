"""The database's configuration, read from the environment (and a `.env` file).

The rest of the service's settings (authentication, HTTP, cursors) are api/settings.py's; its
`Settings` combines them with these."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


FROM_ENVIRONMENT = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)


class DatabaseSettings(BaseSettings):
    model_config = FROM_ENVIRONMENT

    # Unset means: start the embedded PostgreSQL kept under `data_dir`.
    database_url: str | None = None
    """The service's own connection: a role that owns nothing and cannot bypass row security."""
    # The query side's server; defaults to `database_url` (set it to a replica to split reads).
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
    prepared_statements: bool = True
    """Prepare the query side's statements on each connection (plan once, send only values).
    Turn off behind a pooler without protocol-level prepared statements (PgBouncer < 1.21)."""

    def write_url(self) -> str:
        if self.database_url is None:
            raise RuntimeError("database_url is not set and no embedded server was started")
        return self.database_url

    def read_url(self) -> str:
        return self.read_database_url or self.write_url()

    def migration_url(self) -> str:
        return self.migration_database_url or self.write_url()

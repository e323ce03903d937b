"""The service's configuration, read from the environment (and a `.env` file) once."""

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Unset means: start the embedded PostgreSQL kept under `data_dir`.
    database_url: str | None = None
    # The query side's server; defaults to `database_url` (set it to a replica to split reads).
    read_database_url: str | None = None
    data_dir: Path = PROJECT_ROOT / ".data"
    pool_size: int = 10
    max_overflow: int = 10

    def write_url(self) -> str:
        if self.database_url is None:
            raise RuntimeError("database_url is not set and no embedded server was started")
        return self.database_url

    def read_url(self) -> str:
        return self.read_database_url or self.write_url()

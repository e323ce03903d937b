"""The service's clock, as a dependency: tests override it to stand at any moment."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends


def current_time() -> datetime:
    return datetime.now(UTC)


Now = Annotated[datetime, Depends(current_time)]

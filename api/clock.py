"""The service's clock, as a dependency: tests override it to stand at any moment."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends


async def current_time() -> datetime:  # async: no thread hop for a clock read
    return datetime.now(UTC)


Now = Annotated[datetime, Depends(current_time)]

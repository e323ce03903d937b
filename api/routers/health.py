"""Liveness and readiness for orchestrators and load balancers."""

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.errors import Problem

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


@router.get(
    "/healthz",
    operation_id="checkLiveness",
    summary="The process is up (never touches the database)",
)
def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    operation_id="checkReadiness",
    summary="The database answers",
    responses={503: {"model": Problem, "description": "The database is unreachable"}},
)
async def readyz(request: Request) -> Health:
    await request.app.state.read_pool.ping()
    return Health()

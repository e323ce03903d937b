"""The service's own pages: where to start (`/`) and what each problem `type` means."""

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from api.problems import BY_SLUG, KINDS, ProblemKind

router = APIRouter(include_in_schema=False)


class ServiceIndex(BaseModel):
    name: str = "Tasks API"
    docs: str = "/docs"
    openapi: str = "/openapi.json"
    problems: str = "/problems"


class ProblemType(BaseModel):
    type: str
    status: int
    title: str
    advice: str

    @classmethod
    def of(cls, kind: ProblemKind) -> "ProblemType":
        return cls(type=kind.type, status=kind.status, title=kind.title, advice=kind.advice)


@router.get("/")
async def index() -> ServiceIndex:
    return ServiceIndex()


@router.get("/problems")
async def problem_types() -> list[ProblemType]:
    return [ProblemType.of(kind) for kind in KINDS]


@router.get("/problems/{slug}")
async def problem_type(slug: str) -> ProblemType:
    if slug not in BY_SLUG:
        raise HTTPException(404, "This service has no problem type of that name; see /problems.")
    return ProblemType.of(BY_SLUG[slug])

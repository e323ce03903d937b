"""HTTP route for a user's tags."""

from fastapi import APIRouter

from api.deps import CurrentUser, ReaderDep
from api.responses import READ_PROBLEMS
from api.schemas import TagOut
from queries import tags as queries

router = APIRouter(
    prefix="/api/{user_id}/tags",
    tags=["tags"],
    responses=READ_PROBLEMS,
)


@router.get("", operation_id="listTags", summary="List the user's tags with task counts")
async def list_tags(user_id: CurrentUser, reader: ReaderDep) -> list[TagOut]:
    rows = await queries.list_tags(reader, user_id=user_id)
    return [TagOut.model_validate(row) for row in rows]

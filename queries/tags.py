"""Read side for a user's tags: each tag in use, with how many tasks carry it."""

from dataclasses import dataclass

from sqlalchemy import text

from db.reads import Reader

LIST_TAGS_SQL = text(
    """
    SELECT tag, count(*) AS tasks, count(*) FILTER (WHERE NOT completed) AS pending
    FROM task_list_v CROSS JOIN LATERAL unnest(tags) AS tag
    WHERE user_id = :user_id
    GROUP BY tag
    ORDER BY tag
    """
)


@dataclass(frozen=True, slots=True)
class TagRow:
    tag: str
    tasks: int
    pending: int


async def list_tags(reader: Reader, *, user_id: str) -> list[TagRow]:
    return [TagRow(*row) for row in await reader.fetch(LIST_TAGS_SQL, {"user_id": user_id})]

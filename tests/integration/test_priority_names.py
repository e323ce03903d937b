"""Priority's name <-> rank mapping has one home, `db.models.PRIORITY_RANK`; the SQL that must
spell it out (the view's CASE in migration 0004, the stats' counts) is held to it here."""

import re

from sqlalchemy import Connection, text

from db.models import PRIORITY_RANK
from queries.stats import TASK_STATS_SQL

INSERT = text("INSERT INTO tasks (user_id, id, title, priority) VALUES ('prio', :rank, 't', :rank)")
NAMES = text("SELECT priority_rank, priority FROM task_list_v WHERE user_id = 'prio'")


def test_the_view_names_each_rank_as_the_models_do(connection: Connection) -> None:
    for rank in PRIORITY_RANK.values():
        connection.execute(INSERT, {"rank": rank})

    named: dict[int, str] = {row.priority_rank: row.priority for row in connection.execute(NAMES)}

    assert named == {rank: name for name, rank in PRIORITY_RANK.items()}


def test_the_stats_count_each_rank_under_the_models_name() -> None:
    counted = re.findall(r"priority_rank = (\d+)\) AS (\w+)", TASK_STATS_SQL.text)
    assert {name: int(rank) for rank, name in counted} == PRIORITY_RANK

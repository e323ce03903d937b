"""The read routes' JSON (api/task_json.py) is exactly TaskOut's, for any row the view can give."""

from datetime import UTC, datetime, timedelta, timezone

import orjson
from hypothesis import given
from hypothesis import strategies as st

from api.schemas import TaskOut
from api.task_json import task_json, tasks_json
from db.models import PRIORITIES
from queries.tasks import TaskRow

offsets = st.integers(min_value=-15 * 60, max_value=15 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# Inside the years both datetime and the UTC conversion can hold (PostgreSQL's range is wider,
# but the driver cannot load a value outside datetime's anyway).
# Named zones too: psycopg 3 gives the server's TimeZone as a ZoneInfo (Etc/UTC, or any other).
instants = st.datetimes(
    min_value=datetime(2, 1, 1),
    max_value=datetime(9998, 12, 31),
    timezones=st.just(UTC) | offsets | st.timezones(),
)
texts = st.text(max_size=40)

rows = st.builds(
    TaskRow,
    id=st.integers(min_value=1, max_value=2**63 - 1),
    user_id=st.from_regex(r"[A-Za-z0-9_.@:-]{1,20}", fullmatch=True),
    title=texts,
    description=st.none() | texts,
    completed=st.booleans(),
    completed_at=st.none() | instants,
    due_date=st.none() | st.dates(),
    created_at=instants,
    updated_at=instants,
    version=st.integers(min_value=1, max_value=2**31 - 1),
    priority=st.sampled_from(PRIORITIES),
    tags=st.lists(texts, max_size=4),
    due_at=st.none() | instants,
    sort_key=st.none() | texts,
)


@given(rows)
def test_a_task_is_serialised_byte_for_byte_as_task_out(row: TaskRow) -> None:
    assert task_json(row) == TaskOut.model_validate(row).model_dump_json().encode()


@given(st.lists(rows, max_size=3))
def test_a_list_is_the_json_array_of_its_tasks(page: list[TaskRow]) -> None:
    documents = [orjson.loads(TaskOut.model_validate(row).model_dump_json()) for row in page]
    assert orjson.loads(tasks_json(page)) == documents

"""The list's Link header names the same next page that Starlette's URL would (api/routers/tasks.py
builds it from the scope directly, without splitting the whole URL twice)."""

import string
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import URL

from api.routers.tasks import next_link

names = st.sampled_from(["status", "sort", "order", "limit", "q", "tag", "cursor", "x y", "é"])
values = st.text(max_size=12)
user_ids = st.from_regex(r"[A-Za-z0-9_.@:-]{1,20}", fullmatch=True)


# Values a query string carries as they are (the link then keeps the query as it was sent).
plain_values = st.text(alphabet=string.ascii_letters + string.digits + "_.~-", max_size=12)


@given(
    user_ids,
    st.lists(st.tuples(names, values | plain_values), max_size=6),
    st.text(min_size=1, max_size=40),
)
def test_the_next_link_is_the_request_with_its_cursor_replaced_at_the_end(
    user_id: str, pairs: list[tuple[str, str]], cursor: str
) -> None:
    path = f"/api/{user_id}/tasks"
    query = urlencode(pairs).encode()
    scope = {"type": "http", "path": path, "query_string": query, "headers": [], "scheme": "http"}
    following = URL(scope=scope).include_query_params(cursor=cursor)

    assert next_link(scope, cursor) == f'<{following.path}?{following.query}>; rel="next"'

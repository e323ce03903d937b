"""A cursor's binding is the digest it always was (`json.dumps` of the user and the parameters,
keys sorted, compact), though orjson now writes it: cursors issued before a deploy stay valid."""

import hashlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from api.cursors import binding

# What `ListParams.bound_parameters` holds: JSON values from `model_dump(mode="json")`.
ascii = "".join(map(chr, range(128)))
texts = st.text(max_size=12) | st.text(alphabet=ascii, max_size=12)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | texts
values = scalars | st.lists(scalars, max_size=4)


def digest_as_before(user_id: str, parameters: dict[str, Any]) -> str:
    canonical = json.dumps([user_id, parameters], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


@given(texts, st.dictionaries(texts, values, max_size=8))
def test_the_binding_is_the_digest_of_the_sorted_compact_json(
    user_id: str, parameters: dict[str, Any]
) -> None:
    assert binding(user_id, parameters) == digest_as_before(user_id, parameters)


def test_non_ascii_parameters_are_bound_as_json_escapes_them() -> None:
    parameters = {"q": "café ☕", "status": "pending"}
    assert binding("alice", parameters) == digest_as_before("alice", parameters)
    assert binding("alice", parameters) != binding("alice", {**parameters, "q": "cafe ☕"})


def test_a_delete_character_is_bound_as_json_escapes_it() -> None:
    parameters = {"q": "a\x7fb"}
    assert binding("alice", parameters) == digest_as_before("alice", parameters)

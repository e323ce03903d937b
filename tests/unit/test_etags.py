"""If-Match and If-None-Match: what OpenAPI documents is exactly a subset of what is accepted."""

import re

import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import given
from hypothesis import strategies as st

from api.etags import IF_MATCH_PATTERN, IF_NONE_MATCH_PATTERN, if_match_versions, none_match


@given(st.from_regex(IF_MATCH_PATTERN, fullmatch=True))
def test_every_documented_if_match_is_accepted(header: str) -> None:
    versions = if_match_versions(header)
    assert versions is None or all(0 <= v < 2**31 for v in versions)


@given(st.from_regex(IF_NONE_MATCH_PATTERN, fullmatch=True))
def test_every_documented_if_none_match_is_accepted(header: str) -> None:
    none_match(header, 1)


@given(st.text(max_size=40))
def test_an_undocumented_if_match_is_refused_as_invalid_input_or_accepted(header: str) -> None:
    if re.fullmatch(IF_MATCH_PATTERN, header):
        return  # covered above
    refusal = None
    try:
        if_match_versions(header)
    except RequestValidationError as exc:
        refusal = exc
    assert refusal is None or refusal.errors()[0]["loc"] == ("header", "If-Match")


@pytest.mark.parametrize("header", ['"3"', ' "3" ', '"1", "3"', '"3","9"'])
def test_a_strong_tag_list_names_its_versions(header: str) -> None:
    versions = if_match_versions(header)
    assert versions is not None
    assert 3 in versions

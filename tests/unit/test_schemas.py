"""Request validation rules, without a database."""

import re
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from api.schemas import DESCRIPTION_SCHEMA, TITLE_SCHEMA, TaskCreate, TaskUpdate
from db.connections import sqlalchemy_url


def test_title_is_trimmed_before_its_length_is_checked() -> None:
    assert TaskCreate.model_validate({"title": "  " + "x" * 200 + "  "}).title == "x" * 200


@pytest.mark.parametrize("title", ["", " \t ", "x" * 201, "tab\tinside", "nul\x00", "\x7f"])
def test_titles_that_are_blank_too_long_or_hold_control_characters_are_refused(
    title: str,
) -> None:
    with pytest.raises(ValidationError):
        TaskCreate.model_validate({"title": title})


def test_numbers_are_not_coerced_to_titles() -> None:
    with pytest.raises(ValidationError):
        TaskCreate.model_validate({"title": 12345})


@pytest.mark.parametrize("value", ["2026-1-01", "2026-01-01T00:00", "01/02/2026", 0, 1.5, True])
def test_due_date_must_be_an_iso_calendar_date_string(value: object) -> None:
    with pytest.raises(ValidationError):
        TaskCreate.model_validate({"title": "t", "due_date": value})


def test_due_date_parses_to_a_date() -> None:
    assert TaskCreate.model_validate({"title": "t", "due_date": "2028-02-29"}).due_date == date(
        2028, 2, 29
    )


def test_update_remembers_which_fields_were_sent() -> None:
    update = TaskUpdate.model_validate({"description": None})
    assert update.model_fields_set == {"description"}


def test_update_cannot_clear_the_title() -> None:
    with pytest.raises(ValidationError):
        TaskUpdate.model_validate({"title": None})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg2://u:p@h:5432/d"),
        ("postgresql://u@h/d?sslmode=require", "postgresql+psycopg2://u@h/d?sslmode=require"),
        ("postgresql+psycopg2://u@h/d", "postgresql+psycopg2://u@h/d"),
    ],
)
def test_database_urls_in_the_usual_forms_are_accepted(given: str, expected: str) -> None:
    assert sqlalchemy_url(given) == expected


def _accepted(**fields: object) -> bool:
    try:
        TaskCreate.model_validate(fields)
    except ValidationError:
        return False
    return True


@settings(max_examples=500)
@given(st.text(max_size=210) | st.text(alphabet=" \t\nab\x85\x1f\u3000\ufeff\x00", max_size=205))
def test_the_openapi_patterns_state_exactly_the_validation_rules(text: str) -> None:
    title_pattern = re.compile(str(TITLE_SCHEMA["pattern"]))
    description_pattern = re.compile(str(DESCRIPTION_SCHEMA["pattern"]))

    assert bool(title_pattern.search(text)) == _accepted(title=text)
    assert (bool(description_pattern.search(text)) and len(text) <= 1000) == _accepted(
        title="t", description=text
    )

"""What jsonb can hold, decided before a value reaches the database."""

from __future__ import annotations

import json
from typing import Any

import pytest

from workerfleet.worker.json_values import jsonb_text
from workerfleet.worker.models import InvalidJobError


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, "x", None, True]},
        "plain",
        "\\u0000",  # a backslash and "u0000": text, not a NUL
        {"\\u0000": ["\\u0000"]},
        "é\u2028",
        0,
    ],
)
def test_storable_values_are_their_json(value: Any) -> None:
    text = jsonb_text(value, "payload")
    assert text is not None
    assert json.loads(text) == value


def test_none_stays_null() -> None:
    assert jsonb_text(None, "result") is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("a\x00b", "NUL character"),
        ({"k\x00": 1}, "NUL character"),  # in a key
        ([["deep", {"x": ("\x00",)}]], "NUL character"),
        ("\\u0000 and \x00", "NUL character"),  # both: the escape does not hide the NUL
        (float("nan"), "not storable as JSON"),
        ({"x": [float("-inf")]}, "not storable as JSON"),
        ({1, 2}, "not storable as JSON"),
        (b"bytes", "not storable as JSON"),
    ],
)
def test_values_jsonb_refuses_name_the_field(value: Any, reason: str) -> None:
    with pytest.raises(InvalidJobError) as error:
        jsonb_text(value, "result")
    assert error.value.field == "result"
    assert reason in str(error.value)

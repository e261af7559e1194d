"""Values as JSON text that PostgreSQL's jsonb accepts, or an error naming the value.

``json.dumps`` accepts two things jsonb refuses: NaN and the infinities (not
JSON at all), and the NUL character in a string (jsonb cannot store U+0000).
Left to the database, a payload fails the enqueue with a driver error, and a
job's result fails the write of its completion after the handler ran: that
write is retried as if the database were down, and a batch of completions
fails with it. Refused here, the caller is told which value and why.
"""

from __future__ import annotations

import json
from typing import Any

from workerfleet.worker.models import InvalidJobError

_ESCAPED_NUL = "\\u0000"


def jsonb_text(value: Any, field: str) -> str | None:
    """``value`` as JSON text for a jsonb column (None stays NULL).

    Raises InvalidJobError naming ``field`` when jsonb cannot hold ``value``.
    """
    if value is None:
        return None
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidJobError(field, f"is not storable as JSON: {error}") from None
    # The escape also appears when a string holds a backslash followed by
    # "u0000"; only then is the value itself searched (rare, so the cost is too).
    if _ESCAPED_NUL in text and _holds_nul(value):
        raise InvalidJobError(
            field,
            "holds a NUL character (\\u0000) in a string, which PostgreSQL's jsonb "
            "cannot store; encode the bytes (base64) or strip the character",
        )
    return text


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(item) for item in value)
    return False

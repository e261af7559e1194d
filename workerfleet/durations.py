"""Durations as people write them in specs and environment variables.

``"90s"``, ``"5m"``, ``"1h30m"``, ``"250ms"`` or a bare number of seconds
(``"2.5"``). The same grammar is enforced by the CRD schema (``DURATION_PATTERN``)
and parsed here, so the API server and the worker agree on what is valid.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# One or more <number><unit> groups, or a bare non-negative number of seconds.
DURATION_PATTERN = r"^(([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+|[0-9]+(\.[0-9]+)?)$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(DURATION_PATTERN)


class DurationError(ValueError):
    """A duration string that does not follow the grammar."""


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text``; raises DurationError naming the bad value."""
    if isinstance(text, int | float):
        if text < 0:
            raise DurationError(f"duration must not be negative, got {text}")
        return float(text)
    value = text.strip()
    if not _WHOLE.match(value):
        raise DurationError(
            f"invalid duration {text!r}: use a number with a unit (ms, s, m, h, d) "
            "such as '30s', '5m' or '1h30m', or a bare number of seconds"
        )
    if not value[-1].isalpha():
        return float(value)
    return sum(float(number) * UNIT_SECONDS[unit] for number, unit in _PART.findall(value))


def format_duration(seconds: float) -> str:
    """The shortest canonical spelling, e.g. 90 -> '1m30s', 0.25 -> '250ms'."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    remaining = round(seconds)
    parts = []
    for unit, size in (("h", 3600), ("m", 60)):
        if remaining >= size:
            parts.append(f"{remaining // size}{unit}")
            remaining %= size
    if remaining or not parts:
        parts.append(f"{remaining}s")
    return "".join(parts)


def _seconds_from_text(value: Any) -> Any:
    """Pydantic hook: a duration string becomes seconds; numbers pass through."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except DurationError as error:
            raise ValueError(str(error)) from None
    return value


# A settings field holding seconds that also accepts "30s", "5m", "1h30m".
Seconds = Annotated[float, BeforeValidator(_seconds_from_text)]

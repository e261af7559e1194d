"""Cron expressions and IANA time zones of schedules: parsed, validated and iterated.

The expression language is classic five-field cron (minute, hour, day of
month, month, day of week) plus the ``@hourly``-style macros. The parsing and
the calendar arithmetic are cronsim's, a small, typed, dependency-free library
that follows Debian cron where cron is subtle: a day-of-month and day-of-week
both restricted match either one; a time that a daylight-saving jump skips
runs once, at the first minute after the jump, and a time that it repeats
runs once. Only the shape checks and the macro table are ours: cronsim also
accepts a six-field form with seconds, which a schedule may not use.

Every error names what is wrong and how to fix it; the callers add the field.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

import cronsim

# What `@macro` means, as cron(8) defines it.
MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
CRON_MAX_LENGTH = 100
TIME_ZONE_MAX_LENGTH = 64
DEFAULT_TIME_ZONE = "UTC"
# The shape the API server checks with CEL (RE2, no backslashes: they would need
# escaping twice): a macro, or five fields of cron characters separated by spaces.
_FIELD = "[0-9A-Za-z*/,#-]+"
_MACRO_NAMES = "|".join(name.removeprefix("@") for name in MACROS)
CRON_SHAPE_PATTERN = f"^(@({_MACRO_NAMES})|{_FIELD}( +{_FIELD}){{4}})$"
# IANA names: Area/Location[/Sublocation], also UTC, EST5EDT, Etc/GMT+5.
TIME_ZONE_PATTERN = "^[A-Za-z][-A-Za-z0-9_+]*(/[-A-Za-z0-9_+]+)*$"
# A gap longer than this many runs is counted as this many: a minutely schedule
# stopped for a week would otherwise take 10k steps to count.
COUNT_LIMIT = 10_000
FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")


class CronError(ValueError):
    """An expression or time zone that cannot work; the message says why and how to fix it."""


def expand(expression: str) -> str:
    """The five fields an expression of the right shape stands for (a macro expanded)."""
    return MACROS.get(expression, " ".join(expression.split()))


def check_shape(expression: str) -> None:
    """What the API server checks too: a known macro, or five fields of cron characters."""
    if len(expression) > CRON_MAX_LENGTH:
        raise CronError(f"longer than {CRON_MAX_LENGTH} characters")
    if re.fullmatch(CRON_SHAPE_PATTERN, expression):
        return
    if expression.startswith("@"):
        raise CronError(f"unknown macro {expression!r}: use one of {', '.join(MACROS)}")
    fields = expression.split()
    if len(fields) != len(FIELD_NAMES):
        raise CronError(
            f"{expression!r} has {len(fields)} fields: use five (minute hour day-of-month month "
            "day-of-week, such as '*/5 * * * *') or a macro such as @hourly"
        )
    raise CronError(
        f"{expression!r}: use digits, names (JAN, MON), '*', ',', '-', '/', '#' and L, "
        "fields separated by spaces, without spaces around the expression"
    )


def time_zone(name: str) -> tzinfo:
    """The IANA time zone ``name`` (such as Europe/Riga); CronError when unknown."""
    if not re.fullmatch(TIME_ZONE_PATTERN, name) or len(name) > TIME_ZONE_MAX_LENGTH:
        raise CronError(f"{name!r} is not an IANA time zone name (such as UTC or Europe/Riga)")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CronError(
            f"unknown time zone {name!r}: use an IANA name such as UTC, Europe/Riga or "
            "America/New_York"
        ) from None


@dataclass(frozen=True)
class Cron:
    """A validated expression in its time zone; every instant it yields is timezone-aware."""

    expression: str
    fields: str
    zone: tzinfo

    def _iterate(self, start: datetime, reverse: bool) -> Iterator[datetime]:
        local = start.astimezone(self.zone)
        return iter(cronsim.CronSim(self.fields, local, reverse=reverse))

    def next_after(self, moment: datetime) -> datetime:
        """The first run strictly after ``moment``."""
        return next(self._iterate(moment, reverse=False)).astimezone(UTC)

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The last run at or before ``moment`` (None if there is none, which cron never has)."""
        # cronsim's reverse iteration is strictly before its start: start one second later.
        for found in self._iterate(moment + timedelta(seconds=1), reverse=True):
            return found.astimezone(UTC)
        return None

    def count_between(self, after: datetime, until: datetime) -> int:
        """How many runs fall in (after, until], up to COUNT_LIMIT."""
        count = 0
        for found in self._iterate(after, reverse=False):
            if found > until or count >= COUNT_LIMIT:
                break
            count += 1
        return count


def parse(expression: str, zone_name: str = DEFAULT_TIME_ZONE) -> Cron:
    """``expression`` in ``zone_name``, validated; CronError says what is wrong."""
    check_shape(expression)
    zone = time_zone(zone_name)
    try:
        cron = Cron(expression, expand(expression), zone)
        cron.next_after(datetime(2000, 1, 1, tzinfo=UTC))
    except cronsim.CronSimError as error:
        raise CronError(f"{expression!r}: {_explain(error)}") from None
    return cron


def _explain(error: cronsim.CronSimError) -> str:
    """cronsim says "Bad day-of-month"; say which values that field takes."""
    ranges = {
        "minute": "0-59",
        "hour": "0-23",
        "day-of-month": "1-31, and a day that exists in the months named",
        "month": "1-12 or JAN-DEC",
        "day-of-week": "0-7 or SUN-SAT (0 and 7 are Sunday)",
    }
    text = str(error)
    for name, values in ranges.items():
        if text == f"Bad {name}":
            return f"the {name.replace('-', ' ')} field is not valid (it takes {values})"
    return text

"""Durations, daily send windows, instants, time zones and cron expressions as rules write them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import zoneinfo

# The same expressions go into the JSON Schemas (as ECMA-compatible patterns),
# so editors flag what `outreach validate` flags. They end in `(?!\n)$` because
# Python's `$` also matches before a final newline ("3 days\n"); JavaScript's does not.
DURATION_PATTERN = (
    r"^(?:0|immediately|[0-9]{1,6} ?(?:s|m|h|d|w|seconds?|minutes?|hours?|days?|weeks?|business days?))(?!\n)$"
)
WINDOW_PATTERN = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]-(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)(?!\n)$"
DATETIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})(?!\n)$"

# The parser's own expression: the schema pattern's grammar, with groups. fullmatch, because
# `$` in Python also matches before a final newline ("3 days\n").
_DURATION_RE = re.compile(r"([0-9]{1,6}) ?(s|m|h|d|w|seconds?|minutes?|hours?|days?|weeks?|business days?)")
_UNIT_SECONDS = {
    "s": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}


@dataclasses.dataclass(frozen=True, order=True)
class Duration:
    """A wait: either plain seconds or whole business days (never both)."""

    seconds: int = 0
    business_days: int = 0

    @property
    def is_business(self) -> bool:
        return self.business_days > 0

    def as_timedelta(self) -> dt.timedelta:
        """The plain length; business durations have none without a calendar."""
        if self.is_business:
            raise ValueError("a business-day duration needs a calendar")
        return dt.timedelta(seconds=self.seconds)

    def __str__(self) -> str:
        if self.business_days:
            return f"{self.business_days} business day{'s' if self.business_days != 1 else ''}"
        if self.seconds == 0:
            return "immediately"
        for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
            if self.seconds % size == 0:
                n = self.seconds // size
                return f"{n} {unit}{'s' if n != 1 else ''}"
        return f"{self.seconds} second{'s' if self.seconds != 1 else ''}"


def parse_duration(value: object) -> Duration:
    """`immediately`, `0`, `45s`, `30m`, `4h`, `3 days`, `1 week`, `2 business days`.

    Raises ValueError with a message a rule author can act on.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"a duration is text such as `3 days` or `2 business days`, not {type(value).__name__}")
    if isinstance(value, int):
        if value == 0:
            return Duration()
        raise ValueError(
            f"the duration {value} has no unit: write `{value} days`, `{value}h` or `{value} business days`"
        )
    if value in ("0", "immediately"):
        return Duration()
    match = _DURATION_RE.fullmatch(value)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        if unit.startswith("business"):
            return Duration(business_days=amount)
        return Duration(seconds=amount * _UNIT_SECONDS[unit])
    raise ValueError(
        f"{value!r} is not a duration: use `immediately`, `45s`, `30m`, `4h`, `3 days`, `1 week` or `2 business days`"
    )


@dataclasses.dataclass(frozen=True)
class Window:
    """A daily time window such as 08:00-18:00 (end exclusive; 24:00 means midnight)."""

    start: dt.time
    end_minutes: int  # minutes after midnight, up to 1440

    def __str__(self) -> str:
        h, m = divmod(self.end_minutes, 60)
        return f"{self.start:%H:%M}-{h:02d}:{m:02d}"


def parse_window(value: object) -> Window:
    if not isinstance(value, str) or not re.fullmatch(WINDOW_PATTERN, value):
        raise ValueError(f"{value!r} is not a time window: write it as `HH:MM-HH:MM`, e.g. `08:00-18:00`")
    start_s, end_s = value.split("-")
    start = dt.time.fromisoformat(start_s)
    eh, em = (int(x) for x in end_s.split(":"))
    end_minutes = eh * 60 + em
    if end_minutes <= start.hour * 60 + start.minute:
        raise ValueError(f"the window {value!r} ends before it starts; windows cannot cross midnight")
    return Window(start, end_minutes)


def parse_instant(value: object) -> dt.datetime:
    """An RFC 3339 date and time with a UTC offset (`2027-03-02T10:00:00-08:00`, `...Z`)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("the date and time needs a UTC offset such as Z or +01:00")
        return value
    if not isinstance(value, str) or not re.fullmatch(DATETIME_PATTERN, value):
        raise ValueError(
            f"{value!r} is not a date and time with an offset: write e.g. `2027-03-02T10:00:00+01:00` or `...Z`"
        )
    try:
        return dt.datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid date and time: {exc}") from None


@functools.cache
def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone; raises ValueError for an unknown name."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or America/New_York"
        ) from None


def check_cron(expr: str) -> None:
    """A five-field cron expression (minute hour day month weekday); raises ValueError."""
    import croniter  # imported here: only processes with reminders pay for it

    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"{expr!r} is not a five-field cron expression (minute hour day-of-month month day-of-week)")
    if not croniter.croniter.is_valid(expr):
        raise ValueError(f"{expr!r} is not a valid cron expression")

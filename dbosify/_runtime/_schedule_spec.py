"""When a schedule acts: Temporal's ``ScheduleSpec`` compiled and evaluated (pure, no I/O).

A spec is the union of its calendars (structured ranges, cron strings, string calendars) and its
intervals, minus its ``skip`` calendars, clipped to ``[start_time, end_time]``, evaluated in its
time zone. The rules follow Temporal's server:

- cron strings have 5 fields (minute hour day-of-month month day-of-week), 6 (plus year) or 7
  (second first, year last), may start with ``CRON_TZ=Zone`` / ``TZ=Zone``, may end with
  ``# comment``, and may be ``@yearly``/``@annually``/``@monthly``/``@weekly``/``@daily``/
  ``@midnight``/``@hourly`` or ``@every <duration>[/<offset>]`` (an interval);
- a field is ``*``, or a comma list of ``N``, ``N-M``, ``N/S`` (N up to the maximum, step S),
  ``N-M/S`` and ``*/S``; months and week days also take names (``jan``, ``monday``); day of week
  0 and 7 are both Sunday; day of month and day of week must both match;
- intervals are ``epoch + n * every + offset`` in absolute time (no time zone);
- jitter delays each action by a pseudo-random amount below the jitter and below the gap to the
  next action; it is derived from the schedule id and the time, so every process agrees on it.

Times are epoch milliseconds. Example::

    >>> spec = compile_spec(normalize_spec(ScheduleSpec(cron_string=["30 9 * * MON-FRI"])))
    >>> next_time(spec, 0)  # the first weekday 09:30 UTC after the epoch: Thu 1 Jan 1970
    34200000
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from temporalio.api.schedule.v1 import (
    CalendarSpec,
    IntervalSpec,
    Range,
    ScheduleSpec,
    StructuredCalendarSpec,
)

__all__ = [
    "CompiledSpec",
    "ScheduleSpecError",
    "compile_spec",
    "jitter_offset_ms",
    "matching_times",
    "next_cron_time",
    "next_time",
    "normalize_spec",
    "parse_cron",
]


class ScheduleSpecError(ValueError):
    """A schedule spec Temporal would refuse; the message names the part and the fix."""


# Field bounds, as Temporal validates them.
_BOUNDS = {
    "second": (0, 59), "minute": (0, 59), "hour": (0, 23), "day_of_month": (1, 31),
    "month": (1, 12), "year": (1970, 2999), "day_of_week": (0, 7),
}
# A string calendar's defaults (Temporal's CalendarSpec): midnight, every day.
_STRING_DEFAULTS = {"second": "0", "minute": "0", "hour": "0", "day_of_month": "*",
                    "month": "*", "year": "*", "day_of_week": "*"}
_FIELDS = ("second", "minute", "hour", "day_of_month", "month", "year", "day_of_week")
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_MONTHS_FULL = ["january", "february", "march", "april", "may", "june", "july", "august",
                "september", "october", "november", "december"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_DAYS_FULL = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
_PREDEFINED = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_UNIT_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0,
            "h": 3_600_000.0, "d": 86_400_000.0}
# Searching further ahead than this finds nothing a schedule could use (and bounds the work of
# a calendar that can never match, such as 31 February).
_HORIZON_YEARS = 100


# Parsing -----------------------------------------------------------------------------------------

def _value(text: str, field: str) -> int:
    word = text.strip().lower()
    if field == "month":
        for names in (_MONTHS, _MONTHS_FULL):
            if word in names:
                return names.index(word) + 1
    if field == "day_of_week":
        for names in (_DAYS, _DAYS_FULL):
            if word in names:
                return names.index(word)
    if not word.isdigit():
        raise ScheduleSpecError(f"{field.replace('_', ' ')}: {text!r} is not a number"
                                + (" or a month name" if field == "month" else "")
                                + (" or a day name" if field == "day_of_week" else ""))
    return int(word)


def _parse_field(text: str, field: str) -> list[Range]:
    """One string calendar field as structured ranges (``*`` of year: every year, no range)."""
    low, high = _BOUNDS[field]
    ranges: list[Range] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ScheduleSpecError(f"{field.replace('_', ' ')}: empty item in {text!r}")
        span, _, step_text = part.partition("/")
        step = 0
        if step_text:
            if not step_text.strip().isdigit() or int(step_text) == 0:
                raise ScheduleSpecError(
                    f"{field.replace('_', ' ')}: step in {part!r} must be a positive number")
            step = int(step_text)
        if span == "*":
            if field == "year" and not step:
                return []
            start, end = (low, high) if field != "day_of_week" else (0, 6)
        elif "-" in span:
            first, _, last = span.partition("-")
            start, end = _value(first, field), _value(last, field)
        else:
            start = _value(span, field)
            end = (high if field != "day_of_week" else 6) if step else start
        ranges.append(Range(start=start, end=end, step=step))
    return ranges


def _parse_duration_ms(text: str, what: str) -> int:
    text = text.strip()
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ScheduleSpecError(
                f"{what}: {text!r} is not a duration (write it like '90s', '5m', '1h30m', '2d')")
        total += float(match.group(1)) * _UNIT_MS[match.group(2)]
        pos = match.end()
    if not text:
        raise ScheduleSpecError(f"{what}: missing duration (write it like '5m')")
    return round(total)


def parse_cron(cron: str) -> tuple[StructuredCalendarSpec | None, IntervalSpec | None, str]:
    """One cron string as Temporal compiles it: a calendar or an interval, and its time zone
    (``""`` when the string names none). Raises :class:`ScheduleSpecError`.

    >>> cal, interval, zone = parse_cron("CRON_TZ=Europe/Paris 0 12 * * MON")
    >>> zone, [(r.start, r.end) for r in cal.hour]
    ('Europe/Paris', [(12, 12)])
    """
    text = cron.strip()
    zone = ""
    if text.startswith(("TZ=", "CRON_TZ=")):
        head, sep, rest = text.partition(" ")
        if not sep:
            raise ScheduleSpecError(f"cron string {cron!r} names a time zone but has no fields")
        zone, text = head.partition("=")[2], rest.strip()
    text, _, comment = text.partition("#")
    text, comment = text.strip(), comment.strip()
    if text.startswith("@every"):
        body = text[len("@every"):].strip()
        every_text, _, phase_text = body.partition("/")
        every = _parse_duration_ms(every_text, f"cron string {cron!r}")
        phase = _parse_duration_ms(phase_text, f"cron string {cron!r}") if phase_text else 0
        if every <= 0:
            raise ScheduleSpecError(f"cron string {cron!r}: the interval must be positive")
        interval = IntervalSpec()
        interval.interval.FromMilliseconds(every)
        if phase:
            interval.phase.FromMilliseconds(phase)
        return None, interval, zone
    if text.startswith("@"):
        if text.lower() not in _PREDEFINED:
            raise ScheduleSpecError(
                f"cron string {cron!r}: unknown {text!r}; use @yearly, @annually, @monthly, "
                "@weekly, @daily, @midnight, @hourly or @every <duration>")
        text = _PREDEFINED[text.lower()]
    fields = text.split()
    values = dict(_STRING_DEFAULTS)
    if len(fields) == 5:
        names: tuple[str, ...] = ("minute", "hour", "day_of_month", "month", "day_of_week")
    elif len(fields) == 6:
        names = ("minute", "hour", "day_of_month", "month", "day_of_week", "year")
    elif len(fields) == 7:
        names = ("second", "minute", "hour", "day_of_month", "month", "day_of_week", "year")
    else:
        raise ScheduleSpecError(
            f"invalid cron string {cron!r}: it has {len(fields)} fields; a cron string has 5 "
            "(minute hour day-of-month month day-of-week), 6 (plus year) or 7 (second first, "
            "year last), or is @daily, @hourly, @every 10m ...")
    values.update(zip(names, fields, strict=True))
    try:
        calendar = _structured(CalendarSpec(comment=comment, **values))
    except ScheduleSpecError as err:
        raise ScheduleSpecError(f"invalid cron string {cron!r}: {err}") from None
    return calendar, None, zone


def _structured(calendar: CalendarSpec) -> StructuredCalendarSpec:
    out = StructuredCalendarSpec(comment=calendar.comment)
    for field in _FIELDS:
        text = getattr(calendar, field) or _STRING_DEFAULTS[field]
        getattr(out, field).extend(_parse_field(text, field))
    _check_ranges(out)
    return out


def _check_ranges(calendar: StructuredCalendarSpec) -> None:
    for field in _FIELDS:
        low, high = _BOUNDS[field]
        for r in getattr(calendar, field):
            end = r.end if r.end >= r.start else r.start
            if not (low <= r.start <= high and low <= end <= high) or r.step < 0:
                raise ScheduleSpecError(
                    f"{field.replace('_', ' ')} range {r.start}-{end} is outside {low}-{high}")


def _zone(name: str, data: bytes = b"") -> tzinfo:
    if data:
        try:
            return ZoneInfo.from_file(io.BytesIO(data), key=name or None)
        except (ValueError, OSError) as err:
            raise ScheduleSpecError(f"time zone data of {name!r} is not valid: {err}") from None
    if not name or name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleSpecError(
            f"unknown time zone {name!r}: use an IANA name such as 'America/New_York', "
            "'Europe/Paris' or 'UTC'") from None


def normalize_spec(spec: ScheduleSpec) -> ScheduleSpec:
    """The spec as Temporal's server keeps it: cron strings and string calendars compiled into
    structured calendars (``@every`` into intervals), the time zone checked. Raises
    :class:`ScheduleSpecError` on anything Temporal would refuse."""
    out = ScheduleSpec()
    out.CopyFrom(spec)
    del out.cron_string[:]
    del out.calendar[:]
    del out.exclude_calendar[:]
    for cron in spec.cron_string:
        calendar, interval, zone = parse_cron(cron)
        if zone:
            if out.timezone_name and out.timezone_name != zone:
                raise ScheduleSpecError(
                    f"cron string {cron!r} names time zone {zone!r} but the spec's time zone is "
                    f"{out.timezone_name!r}; use one time zone")
            out.timezone_name = zone
        if calendar is not None:
            out.structured_calendar.append(calendar)
        if interval is not None:
            out.interval.append(interval)
    for calendar_text in spec.calendar:
        out.structured_calendar.append(_structured(calendar_text))
    for calendar_text in spec.exclude_calendar:
        out.exclude_structured_calendar.append(_structured(calendar_text))
    for calendar in (*out.structured_calendar, *out.exclude_structured_calendar):
        _check_ranges(calendar)
    for interval in out.interval:
        if interval.interval.ToMilliseconds() <= 0:
            raise ScheduleSpecError("an interval's 'every' must be positive")
        if interval.phase.ToMilliseconds() < 0:
            raise ScheduleSpecError("an interval's offset must not be negative")
    if spec.HasField("jitter") and spec.jitter.ToMilliseconds() < 0:
        raise ScheduleSpecError("jitter must not be negative")
    _zone(out.timezone_name, out.timezone_data)
    return out


# Evaluation --------------------------------------------------------------------------------------

def _values(ranges: Sequence[Range], field: str) -> frozenset[int]:
    low, high = _BOUNDS[field]
    found: set[int] = set()
    for r in ranges:
        end = r.end if r.end >= r.start else r.start
        found.update(range(max(r.start, low), min(end, high) + 1, r.step or 1))
    if field == "day_of_week" and 7 in found:
        found.discard(7)
        found.add(0)
    return frozenset(found)


@dataclass(frozen=True)
class _Calendar:
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: tuple[int, ...]
    weekdays: frozenset[int]
    years: tuple[tuple[int, int, int], ...] | None
    """(start, end, step) ranges; None matches every year."""

    @staticmethod
    def of(spec: StructuredCalendarSpec) -> _Calendar:
        years = None
        if len(spec.year):
            years = tuple((r.start, r.end if r.end >= r.start else r.start, r.step or 1)
                          for r in spec.year)
        return _Calendar(
            seconds=tuple(sorted(_values(spec.second, "second"))),
            minutes=tuple(sorted(_values(spec.minute, "minute"))),
            hours=tuple(sorted(_values(spec.hour, "hour"))),
            days=_values(spec.day_of_month, "day_of_month"),
            months=tuple(sorted(_values(spec.month, "month"))),
            weekdays=_values(spec.day_of_week, "day_of_week"),
            years=years)

    def empty(self) -> bool:
        return not (self.seconds and self.minutes and self.hours and self.days and self.months
                    and self.weekdays)

    def year_ok(self, year: int) -> bool:
        return self.years is None or any(s <= year <= e and (year - s) % st == 0
                                         for s, e, st in self.years)

    def next_year(self, year: int) -> int | None:
        """The first matching year after ``year``."""
        if self.years is None:
            return year + 1
        best: int | None = None
        for start, end, step in self.years:
            if year < start:
                cand = start
            else:
                cand = start + ((year - start) // step + 1) * step
            if cand <= end and (best is None or cand < best):
                best = cand
        return best

    def matches(self, t: datetime) -> bool:
        return (self.year_ok(t.year) and t.month in self.months and t.day in self.days
                and _weekday(t) in self.weekdays and t.hour in self.hours
                and t.minute in self.minutes and t.second in self.seconds)

    def first_at_or_after(self, t: datetime, last_year: int) -> datetime | None:
        """The first matching wall-clock second at or after ``t`` (naive, whole seconds)."""
        if self.empty():
            return None
        while t.year <= last_year:
            if not self.year_ok(t.year):
                year = self.next_year(t.year)
                if year is None or year > last_year:
                    return None
                t = datetime(year, 1, 1)
                continue
            if t.month not in self.months:
                month = _after(self.months, t.month)
                t = datetime(t.year, month, 1) if month else datetime(t.year + 1, 1, 1)
                continue
            if t.day not in self.days or _weekday(t) not in self.weekdays:
                t = datetime(t.year, t.month, t.day) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                hour = _after(self.hours, t.hour)
                t = t.replace(hour=hour, minute=0, second=0) if hour is not None else \
                    datetime(t.year, t.month, t.day) + timedelta(days=1)
                continue
            if t.minute not in self.minutes:
                minute = _after(self.minutes, t.minute)
                t = t.replace(minute=minute, second=0) if minute is not None else \
                    t.replace(minute=0, second=0) + timedelta(hours=1)
                continue
            if t.second not in self.seconds:
                second = _after(self.seconds, t.second)
                t = t.replace(second=second) if second is not None else \
                    t.replace(second=0) + timedelta(minutes=1)
                continue
            return t
        return None


def _after(values: tuple[int, ...], current: int) -> int | None:
    return next((v for v in values if v > current), None)


def _weekday(t: datetime) -> int:
    return (t.weekday() + 1) % 7  # Temporal counts from Sunday = 0.


@dataclass(frozen=True)
class CompiledSpec:
    """A normalized spec, ready to evaluate."""

    calendars: tuple[_Calendar, ...]
    intervals: tuple[tuple[int, int], ...]
    """(every, offset) in milliseconds."""
    skip: tuple[_Calendar, ...]
    start_ms: int | None
    end_ms: int | None
    jitter_ms: int
    zone: tzinfo


def compile_spec(spec: ScheduleSpec) -> CompiledSpec:
    """Compile a spec (run :func:`normalize_spec` first for cron strings and string calendars)."""
    if len(spec.cron_string) or len(spec.calendar) or len(spec.exclude_calendar):
        spec = normalize_spec(spec)
    return CompiledSpec(
        calendars=tuple(_Calendar.of(c) for c in spec.structured_calendar),
        intervals=tuple((i.interval.ToMilliseconds(), i.phase.ToMilliseconds())
                        for i in spec.interval if i.interval.ToMilliseconds() > 0),
        skip=tuple(_Calendar.of(c) for c in spec.exclude_structured_calendar),
        start_ms=spec.start_time.ToMilliseconds() if spec.HasField("start_time") else None,
        end_ms=spec.end_time.ToMilliseconds() if spec.HasField("end_time") else None,
        jitter_ms=spec.jitter.ToMilliseconds() if spec.HasField("jitter") else 0,
        zone=_zone(spec.timezone_name, spec.timezone_data))


def _local(ms: int, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, zone)


def _next_calendar(calendar: _Calendar, zone: tzinfo, after_ms: int) -> int | None:
    after = _local(after_ms, zone)
    wall = after.replace(tzinfo=None, microsecond=0) + timedelta(seconds=1)
    last_year = after.year + _HORIZON_YEARS
    while True:
        found = calendar.first_at_or_after(wall, last_year)
        if found is None:
            return None
        # fold=0: an ambiguous wall time (clocks going back) acts once, at its first instant;
        # a wall time clocks skip over acts at the same offset past the change.
        ms = int(found.replace(tzinfo=zone).timestamp()) * 1000
        if ms > after_ms:
            return ms
        wall = found + timedelta(seconds=1)


def _next_interval(every: int, offset: int, after_ms: int) -> int:
    return ((after_ms - offset) // every + 1) * every + offset


def next_time(spec: CompiledSpec, after_ms: int) -> int | None:
    """The first time strictly after ``after_ms`` at which the spec acts (before jitter), or
    None if it never acts again."""
    t = after_ms
    if spec.start_ms is not None and t < spec.start_ms - 1:
        t = spec.start_ms - 1
    # Each round moves past one skipped time; a skip that swallows everything ends the search.
    for _ in range(100_000):
        candidates = [c for c in (_next_calendar(cal, spec.zone, t) for cal in spec.calendars)
                      if c is not None]
        candidates.extend(_next_interval(every, offset, t) for every, offset in spec.intervals)
        if not candidates:
            return None
        found = min(candidates)
        if spec.end_ms is not None and found > spec.end_ms:
            return None
        if spec.skip:
            wall = _local(found, spec.zone).replace(tzinfo=None, microsecond=0)
            if any(s.matches(wall) for s in spec.skip):
                t = found
                continue
        return found
    return None


def matching_times(spec: CompiledSpec, start_ms: int, end_ms: int,
                   limit: int = 10_000) -> list[int]:
    """The times in ``[start_ms, end_ms]`` at which the spec acts (at most ``limit``)."""
    times: list[int] = []
    t = next_time(spec, start_ms - 1)
    while t is not None and t <= end_ms and len(times) < limit:
        times.append(t)
        t = next_time(spec, t)
    return times


def jitter_offset_ms(spec: CompiledSpec, schedule_id: str, nominal_ms: int,
                     following_ms: int | None) -> int:
    """How long after ``nominal_ms`` the action happens: below the jitter and below the gap to
    the following time, the same in every process (derived from the schedule id and time)."""
    limit = spec.jitter_ms
    if following_ms is not None:
        limit = min(limit, following_ms - nominal_ms)
    if limit <= 0:
        return 0
    digest = hashlib.sha256(f"{schedule_id}\0{nominal_ms}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % limit


def next_cron_time(cron: str, after_ms: int) -> int:
    """The next time after ``after_ms`` of a workflow's ``cron_schedule`` (Temporal's older
    cron: UTC unless the string starts with ``CRON_TZ=``). Raises :class:`ScheduleSpecError`
    for a string Temporal would refuse, or one that never matches again.

    >>> next_cron_time("@every 10s", 12_345)
    20000
    """
    spec = compile_spec(normalize_spec(ScheduleSpec(cron_string=[cron])))
    found = next_time(spec, after_ms)
    if found is None:
        raise ScheduleSpecError(f"cron string {cron!r} never matches after "
                                f"{datetime.fromtimestamp(after_ms / 1000, timezone.utc)}")
    return found

"""The schedule spec math: cron parsing, calendar matching, intervals, skip, bounds, jitter."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from temporalio.api.schedule.v1 import (
    CalendarSpec,
    IntervalSpec,
    Range,
    ScheduleSpec,
    StructuredCalendarSpec,
)

from dbosify._runtime._schedule_spec import (
    ScheduleSpecError,
    compile_spec,
    jitter_offset_ms,
    matching_times,
    next_time,
    normalize_spec,
    parse_cron,
)

UTC = timezone.utc


def ms(*args: int, tz: timezone | ZoneInfo = UTC) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)  # type: ignore[misc]


def at(value: int | None, tz: timezone | ZoneInfo = UTC) -> datetime:
    assert value is not None
    return datetime.fromtimestamp(value / 1000, tz)


def cron(*strings: str, zone: str = "") -> ScheduleSpec:
    return normalize_spec(ScheduleSpec(cron_string=list(strings), timezone_name=zone))


def upcoming(spec: ScheduleSpec, start: int, n: int) -> list[datetime]:
    compiled = compile_spec(spec)
    out, t = [], start
    for _ in range(n):
        nxt = next_time(compiled, t)
        assert nxt is not None
        out.append(at(nxt))
        t = nxt
    return out


def ranges(rs: object) -> list[tuple[int, int, int]]:
    return [(r.start, r.end, r.step) for r in rs]  # type: ignore[attr-defined]


# Parsing ----------------------------------------------------------------------------------------

def test_five_six_and_seven_fields() -> None:
    cal, interval, zone = parse_cron("15 10 * * 1-5")
    assert interval is None and zone == "" and cal is not None
    assert ranges(cal.second) == [(0, 0, 0)] and ranges(cal.minute) == [(15, 15, 0)]
    assert ranges(cal.day_of_week) == [(1, 5, 0)] and ranges(cal.day_of_month) == [(1, 31, 0)]
    assert len(cal.year) == 0
    cal, _, _ = parse_cron("0 0 1 1 * 2030")
    assert cal is not None and ranges(cal.year) == [(2030, 2030, 0)]
    cal, _, _ = parse_cron("*/10 0 12 * * * 2030-2035")
    assert cal is not None
    assert ranges(cal.second) == [(0, 59, 10)] and ranges(cal.year) == [(2030, 2035, 0)]


def test_names_lists_steps_and_comments() -> None:
    cal, _, _ = parse_cron("0 9 * JAN,jul MON-fri # office hours")
    assert cal is not None and cal.comment == "office hours"
    assert ranges(cal.month) == [(1, 1, 0), (7, 7, 0)]
    assert ranges(cal.day_of_week) == [(1, 5, 0)]
    cal, _, _ = parse_cron("5/15 * * * sunday")
    assert cal is not None and ranges(cal.minute) == [(5, 59, 15)]
    assert ranges(cal.day_of_week) == [(0, 0, 0)]


def test_predefined_and_every() -> None:
    for name, expected in (("@daily", "0 0 * * *"), ("@hourly", "0 * * * *"),
                           ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"),
                           ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"),
                           ("@midnight", "0 0 * * *")):
        assert parse_cron(name)[0] == parse_cron(expected)[0], name
    _, interval, _ = parse_cron("@every 1h30m/10m")
    assert interval is not None
    assert interval.interval.ToSeconds() == 5400 and interval.phase.ToSeconds() == 600
    _, interval, _ = parse_cron("@every 2d")
    assert interval is not None and interval.interval.ToSeconds() == 2 * 86400


def test_time_zone_prefix() -> None:
    assert parse_cron("CRON_TZ=Asia/Tokyo 0 9 * * *")[2] == "Asia/Tokyo"
    assert parse_cron("TZ=UTC 0 9 * * *")[2] == "UTC"
    assert cron("CRON_TZ=Asia/Tokyo 0 9 * * *").timezone_name == "Asia/Tokyo"
    with pytest.raises(ScheduleSpecError, match="names time zone 'Asia/Tokyo'"):
        cron("CRON_TZ=Asia/Tokyo 0 9 * * *", zone="Europe/Paris")


@pytest.mark.parametrize(("text", "problem"), [
    ("* * * *", "it has 4 fields"),
    ("60 * * * *", "minute range 60-60 is outside 0-59"),
    ("* 24 * * *", "hour range 24-24 is outside 0-23"),
    ("* * 0 * *", "day of month range 0-0 is outside 1-31"),
    ("* * * 13 *", "month range 13-13 is outside 1-12"),
    ("* * * * 8", "day of week range 8-8 is outside 0-7"),
    ("* * * foo *", "'foo' is not a number or a month name"),
    ("*/0 * * * *", "step in '*/0' must be a positive number"),
    ("1,,2 * * * *", "empty item"),
    ("@fortnightly", "unknown '@fortnightly'"),
    ("@every soon", "'soon' is not a duration"),
    ("CRON_TZ=UTC", "names a time zone but has no fields"),
])
def test_bad_cron_strings(text: str, problem: str) -> None:
    with pytest.raises(ScheduleSpecError) as err:
        cron(text)
    assert problem in str(err.value)
    assert "cron string" in str(err.value)


def test_unknown_time_zone() -> None:
    with pytest.raises(ScheduleSpecError, match="unknown time zone 'Nowhere/Land'"):
        normalize_spec(ScheduleSpec(cron_string=["@daily"], timezone_name="Nowhere/Land"))


def test_string_calendars_compile_with_their_defaults() -> None:
    spec = normalize_spec(ScheduleSpec(calendar=[CalendarSpec(hour="8,20")],
                                       exclude_calendar=[CalendarSpec(
                                           second="*", minute="*", hour="*",
                                           day_of_week="sat,sun")]))
    assert len(spec.calendar) == 0 and len(spec.exclude_calendar) == 0
    [cal] = spec.structured_calendar
    assert ranges(cal.hour) == [(8, 8, 0), (20, 20, 0)] and ranges(cal.minute) == [(0, 0, 0)]
    times = upcoming(spec, ms(2024, 6, 7), 4)  # Friday 7 June 2024; the weekend is skipped.
    assert [(t.day, t.hour) for t in times] == [(7, 8), (7, 20), (10, 8), (10, 20)]
    # A string calendar's unset second/minute/hour mean 0: this skip drops only midnights.
    midnight = normalize_spec(ScheduleSpec(cron_string=["0 * * * *"],
                                           exclude_calendar=[CalendarSpec(day_of_week="sat")]))
    times = upcoming(midnight, ms(2024, 6, 7, 23, 30), 2)  # Friday 23:30.
    assert [(t.day, t.hour) for t in times] == [(8, 1), (8, 2)]


# Evaluation -------------------------------------------------------------------------------------

def test_every_five_minutes_and_weekdays() -> None:
    assert upcoming(cron("*/5 * * * *"), ms(2024, 1, 1, 10, 2, 30), 3) == [
        datetime(2024, 1, 1, 10, 5, tzinfo=UTC), datetime(2024, 1, 1, 10, 10, tzinfo=UTC),
        datetime(2024, 1, 1, 10, 15, tzinfo=UTC)]
    # Strictly after: a time exactly on a match moves to the next one.
    assert upcoming(cron("*/5 * * * *"), ms(2024, 1, 1, 10, 5), 1) == [
        datetime(2024, 1, 1, 10, 10, tzinfo=UTC)]
    weekdays = upcoming(cron("30 9 * * MON-FRI"), ms(2024, 3, 8, 12), 3)  # A Friday noon.
    assert [t.strftime("%a %d %H:%M") for t in weekdays] == \
        ["Mon 11 09:30", "Tue 12 09:30", "Wed 13 09:30"]


def test_day_of_month_and_week_must_both_match() -> None:
    # Friday the 13th, as Temporal's calendars (unlike classic cron) AND the two fields.
    times = upcoming(cron("0 0 13 * FRI"), ms(2024, 1, 1), 3)
    assert [t.date().isoformat() for t in times] == ["2024-09-13", "2024-12-13", "2025-06-13"]


def test_month_ends_leap_days_and_years() -> None:
    times = upcoming(cron("0 0 31 * *"), ms(2024, 1, 31, 1), 3)
    assert [t.date().isoformat() for t in times] == ["2024-03-31", "2024-05-31", "2024-07-31"]
    times = upcoming(cron("0 0 29 2 *"), ms(2024, 3, 1), 2)
    assert [t.year for t in times] == [2028, 2032]
    assert next_time(compile_spec(cron("0 0 30 2 *")), ms(2024, 1, 1)) is None
    times = upcoming(cron("0 0 1 1 * 2030-2040/5"), ms(2024, 1, 1), 3)
    assert [t.year for t in times] == [2030, 2035, 2040]
    assert next_time(compile_spec(cron("0 0 1 1 * 2030")), ms(2030, 1, 2)) is None


def test_structured_ranges_with_steps() -> None:
    spec = ScheduleSpec(structured_calendar=[StructuredCalendarSpec(
        second=[Range(start=0)], minute=[Range(start=0)], hour=[Range(start=9, end=17, step=4)],
        day_of_month=[Range(start=1, end=31)], month=[Range(start=1, end=12)],
        day_of_week=[Range(start=0, end=6)])])
    times = upcoming(spec, ms(2024, 1, 1), 4)
    assert [(t.day, t.hour) for t in times] == [(1, 9), (1, 13), (1, 17), (2, 9)]
    # Day of week 7 is Sunday, like 0.
    sunday = ScheduleSpec(structured_calendar=[StructuredCalendarSpec(
        second=[Range(start=0)], minute=[Range(start=0)], hour=[Range(start=0)],
        day_of_month=[Range(start=1, end=31)], month=[Range(start=1, end=12)],
        day_of_week=[Range(start=7)])])
    assert upcoming(sunday, ms(2024, 1, 1), 1)[0].date().isoformat() == "2024-01-07"


def test_intervals_with_offsets_are_absolute() -> None:
    spec = ScheduleSpec(interval=[IntervalSpec()])
    spec.interval[0].interval.FromSeconds(3600)
    spec.interval[0].phase.FromSeconds(900)
    assert upcoming(spec, ms(2024, 1, 1, 10, 15), 2) == [
        datetime(2024, 1, 1, 11, 15, tzinfo=UTC), datetime(2024, 1, 1, 12, 15, tzinfo=UTC)]
    # A time zone does not move an interval.
    spec.timezone_name = "Asia/Kolkata"
    assert upcoming(spec, ms(2024, 1, 1, 10, 15), 1) == [datetime(2024, 1, 1, 11, 15, tzinfo=UTC)]


def test_union_skip_and_bounds() -> None:
    spec = cron("0 12 * * *", "0 18 * * *")
    spec.exclude_structured_calendar.append(parse_cron("* * * * SAT,SUN")[0])  # type: ignore[arg-type]
    spec.exclude_structured_calendar[0].second.add(start=0, end=59)
    spec.exclude_structured_calendar[0].minute.add(start=0, end=59)
    spec.exclude_structured_calendar[0].hour.add(start=0, end=23)
    spec.start_time.FromMilliseconds(ms(2024, 3, 8, 18))  # Friday 18:00 is included.
    spec.end_time.FromMilliseconds(ms(2024, 3, 12, 12))
    compiled = compile_spec(spec)
    times = [at(t) for t in matching_times(compiled, ms(2024, 1, 1), ms(2025, 1, 1))]
    assert [t.strftime("%a %H") for t in times] == ["Fri 18", "Mon 12", "Mon 18", "Tue 12"]


def test_time_zones_and_daylight_saving() -> None:
    ny = ZoneInfo("America/New_York")
    daily = cron("30 2 * * *", zone="America/New_York")
    # 10 March 2024: clocks jump from 02:00 to 03:00; 02:30 does not exist and acts at 03:30.
    times = upcoming(daily, ms(2024, 3, 9, 12), 3)
    assert [t.astimezone(ny).strftime("%d %H:%M") for t in times] == \
        ["10 03:30", "11 02:30", "12 02:30"]
    # 3 November 2024: 01:30 happens twice; it acts once.
    half_past_one = cron("30 1 * * *", zone="America/New_York")
    times = upcoming(half_past_one, ms(2024, 11, 2, 12), 2)
    assert times[1] - times[0] == timedelta(hours=25)
    paris = upcoming(cron("0 9 * * *", zone="Europe/Paris"), ms(2024, 7, 1), 1)[0]
    assert paris == datetime(2024, 7, 1, 7, tzinfo=UTC)


def test_jitter_is_bounded_and_the_same_everywhere() -> None:
    spec = cron("* * * * *")
    spec.jitter.FromSeconds(30)
    compiled = compile_spec(spec)
    offsets = {jitter_offset_ms(compiled, "s", ms(2024, 1, 1, 0, m), ms(2024, 1, 1, 0, m + 1))
               for m in range(50)}
    assert all(0 <= o < 30_000 for o in offsets) and len(offsets) > 40
    assert jitter_offset_ms(compiled, "s", 60_000, 120_000) == \
        jitter_offset_ms(compiled, "s", 60_000, 120_000)
    # Never past the next action.
    assert jitter_offset_ms(compiled, "s", 60_000, 61_000) < 1_000
    assert jitter_offset_ms(compile_spec(cron("* * * * *")), "s", 60_000, 120_000) == 0


def test_backfill_range_is_inclusive() -> None:
    compiled = compile_spec(cron("* * * * *"))
    times = matching_times(compiled, ms(2024, 1, 1, 0, 0), ms(2024, 1, 1, 0, 2))
    assert [at(t).minute for t in times] == [0, 1, 2]

"""Table tests for backburner.cron: DST gaps and overlaps, syntax, errors, zones, describe()."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from backburner.cron import (
    WINDOWS_TIME_ZONES,
    CronSchedule,
    InvalidCronExpression,
    InvalidTimeZone,
)


def utc(text: str) -> datetime:
    """Parse "YYYY-MM-DD HH:MM[:SS]" as a UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str, zone: str, fold: int = 0) -> datetime:
    """Parse "YYYY-MM-DD HH:MM[:SS]" as a wall-clock time in `zone`."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone), fold=fold)


def next_utc(expression: str, zone: str, after: datetime, count: int) -> list[datetime]:
    schedule = CronSchedule(expression, zone)
    return [found.astimezone(UTC) for found in schedule.occurrences(after, count)]


# -- DST: skipped and repeated wall-clock times ------------------------------------------

# (zone, expression, start, expected UTC instants). Transitions in 2026:
#   America/New_York   gap 03-08 02:00-03:00 EST->EDT, repeat 11-01 01:00-02:00 EDT->EST
#   Europe/Berlin      gap 03-29 02:00-03:00, repeat 10-25 02:00-03:00
#   Europe/London      gap 03-29 01:00-02:00, repeat 10-25 01:00-02:00
#   Australia/Lord_Howe repeat 04-05 01:30-02:00 (+11 -> +10:30), gap 10-04 02:00-02:30
#   Pacific/Chatham    repeat 04-05 02:45-03:45 (+13:45 -> +12:45), gap 09-27 02:45-03:45
DST_CASES = [
    # New York, spring forward: 02:00-02:59 does not exist.
    ("America/New_York", "30 2 * * *", local("2026-03-07 12:00", "America/New_York"),
     ["2026-03-08 07:00", "2026-03-09 06:30"]),
    ("America/New_York", "0 * * * *", local("2026-03-08 00:30", "America/New_York"),
     ["2026-03-08 06:00", "2026-03-08 07:00", "2026-03-08 08:00"]),
    ("America/New_York", "*/30 * * * *", local("2026-03-08 01:15", "America/New_York"),
     ["2026-03-08 06:30", "2026-03-08 07:00", "2026-03-08 07:30"]),
    ("America/New_York", "0 9 * * MON-FRI", local("2026-03-05 12:00", "America/New_York"),
     ["2026-03-06 14:00", "2026-03-09 13:00"]),
    # New York, fall back: 01:00-01:59 happens twice.
    ("America/New_York", "30 1 * * *", local("2026-10-31 12:00", "America/New_York"),
     ["2026-11-01 05:30", "2026-11-02 06:30"]),
    ("America/New_York", "30 1 * * *", local("2026-11-01 01:10", "America/New_York", fold=1),
     ["2026-11-02 06:30"]),
    ("America/New_York", "0,30 1 * * *", local("2026-11-01 00:45", "America/New_York"),
     ["2026-11-01 05:00", "2026-11-01 05:30", "2026-11-02 06:00"]),
    ("America/New_York", "0 * * * *", local("2026-11-01 00:30", "America/New_York"),
     ["2026-11-01 05:00", "2026-11-01 06:00", "2026-11-01 07:00"]),
    ("America/New_York", "*/30 * * * *", local("2026-11-01 00:45", "America/New_York"),
     ["2026-11-01 05:00", "2026-11-01 05:30", "2026-11-01 06:00", "2026-11-01 06:30",
      "2026-11-01 07:00"]),
    ("America/New_York", "*/20 1 * * *", local("2026-11-01 00:45", "America/New_York"),
     ["2026-11-01 05:00", "2026-11-01 05:20", "2026-11-01 05:40", "2026-11-01 06:00",
      "2026-11-01 06:20", "2026-11-01 06:40", "2026-11-02 06:00"]),
    ("America/New_York", "0 9 * * MON-FRI", local("2026-10-30 12:00", "America/New_York"),
     ["2026-11-02 14:00"]),
    # Berlin, spring forward and fall back.
    ("Europe/Berlin", "30 2 * * *", local("2026-03-28 12:00", "Europe/Berlin"),
     ["2026-03-29 01:00", "2026-03-30 00:30"]),
    ("Europe/Berlin", "0 * * * *", local("2026-03-29 01:30", "Europe/Berlin"),
     ["2026-03-29 01:00", "2026-03-29 02:00"]),
    ("Europe/Berlin", "*/30 * * * *", local("2026-03-29 01:45", "Europe/Berlin"),
     ["2026-03-29 01:00", "2026-03-29 01:30"]),
    ("Europe/Berlin", "30 2 * * *", local("2026-10-24 12:00", "Europe/Berlin"),
     ["2026-10-25 00:30", "2026-10-26 01:30"]),
    ("Europe/Berlin", "0 * * * *", local("2026-10-25 01:30", "Europe/Berlin"),
     ["2026-10-25 00:00", "2026-10-25 01:00", "2026-10-25 02:00"]),
    ("Europe/Berlin", "*/30 * * * *", local("2026-10-25 01:50", "Europe/Berlin"),
     ["2026-10-25 00:00", "2026-10-25 00:30", "2026-10-25 01:00", "2026-10-25 01:30",
      "2026-10-25 02:00"]),
    ("Europe/Berlin", "0 9 * * MON-FRI", local("2026-10-23 12:00", "Europe/Berlin"),
     ["2026-10-26 08:00"]),
    # London: the shift happens at 01:00 local.
    ("Europe/London", "30 1 * * *", local("2026-03-28 12:00", "Europe/London"),
     ["2026-03-29 01:00", "2026-03-30 00:30"]),
    ("Europe/London", "0 * * * *", local("2026-03-29 00:30", "Europe/London"),
     ["2026-03-29 01:00", "2026-03-29 02:00"]),
    ("Europe/London", "30 1 * * *", local("2026-10-24 12:00", "Europe/London"),
     ["2026-10-25 00:30", "2026-10-26 01:30"]),
    ("Europe/London", "*/30 * * * *", local("2026-10-25 00:50", "Europe/London"),
     ["2026-10-25 00:00", "2026-10-25 00:30", "2026-10-25 01:00", "2026-10-25 01:30",
      "2026-10-25 02:00"]),
    # Lord Howe: 30-minute shifts.
    ("Australia/Lord_Howe", "0 2 * * *", local("2026-10-03 12:00", "Australia/Lord_Howe"),
     ["2026-10-03 15:30", "2026-10-04 15:00"]),
    ("Australia/Lord_Howe", "15 2 * * *", local("2026-10-03 12:00", "Australia/Lord_Howe"),
     ["2026-10-03 15:30", "2026-10-04 15:15"]),
    ("Australia/Lord_Howe", "30 2 * * *", local("2026-10-03 12:00", "Australia/Lord_Howe"),
     ["2026-10-03 15:30", "2026-10-04 15:30"]),
    ("Australia/Lord_Howe", "*/30 * * * *", local("2026-10-04 01:20", "Australia/Lord_Howe"),
     ["2026-10-03 15:00", "2026-10-03 15:30", "2026-10-03 16:00"]),
    ("Australia/Lord_Howe", "45 1 * * *", local("2026-04-04 12:00", "Australia/Lord_Howe"),
     ["2026-04-04 14:45", "2026-04-05 15:15"]),
    ("Australia/Lord_Howe", "*/15 * * * *", local("2026-04-05 01:20", "Australia/Lord_Howe"),
     ["2026-04-04 14:30", "2026-04-04 14:45", "2026-04-04 15:00", "2026-04-04 15:15",
      "2026-04-04 15:30"]),
    ("Australia/Lord_Howe", "0 * * * *", local("2026-04-05 00:30", "Australia/Lord_Howe"),
     ["2026-04-04 14:00", "2026-04-04 15:30"]),
    # Chatham: +12:45 / +13:45, shifting at 02:45 local.
    ("Pacific/Chatham", "0 3 * * *", local("2026-09-26 12:00", "Pacific/Chatham"),
     ["2026-09-26 14:00", "2026-09-27 13:15"]),
    ("Pacific/Chatham", "*/30 * * * *", local("2026-09-27 02:20", "Pacific/Chatham"),
     ["2026-09-26 13:45", "2026-09-26 14:00", "2026-09-26 14:15"]),
    ("Pacific/Chatham", "0 3 * * *", local("2026-04-04 12:00", "Pacific/Chatham"),
     ["2026-04-04 13:15", "2026-04-05 14:15"]),
    ("Pacific/Chatham", "0 * * * *", local("2026-04-05 02:50", "Pacific/Chatham"),
     ["2026-04-04 13:15", "2026-04-04 14:15", "2026-04-04 15:15"]),
]  # fmt: skip


@pytest.mark.parametrize(("zone", "expression", "start", "expected"), DST_CASES)
def test_dst_transition_table(
    zone: str, expression: str, start: datetime, expected: list[str]
) -> None:
    found = next_utc(expression, zone, start, len(expected))
    assert found == [utc(text) for text in expected]


def test_gap_fires_at_gap_end_local() -> None:
    schedule = CronSchedule("30 2 * * *", "America/New_York")
    found = schedule.next_after(local("2026-03-08 00:00", "America/New_York"))
    assert found is not None
    assert (found.hour, found.minute) == (3, 0)
    assert found.utcoffset() == timedelta(hours=-4)


def test_repeated_hour_results_carry_fold() -> None:
    schedule = CronSchedule("0 * * * *", "America/New_York")
    first, second = schedule.occurrences(local("2026-11-01 00:30", "America/New_York"), 2)
    assert (first.hour, first.fold, first.utcoffset()) == (1, 0, timedelta(hours=-4))
    assert (second.hour, second.fold, second.utcoffset()) == (1, 1, timedelta(hours=-5))


def test_every_second_through_repeated_hour() -> None:
    schedule = CronSchedule("* * * * * *", "Europe/Berlin")
    start = local("2026-10-25 02:59:50", "Europe/Berlin")
    found = [value.astimezone(UTC) for value in schedule.occurrences(start, 20)]
    assert found[0] == utc("2026-10-25 00:59:51")
    assert found[-1] == utc("2026-10-25 01:00:10")
    assert all(later - earlier == timedelta(seconds=1) for earlier, later in pairwise(found))


def test_half_hourly_year_strictly_increasing() -> None:
    schedule = CronSchedule("*/30 * * * *", "America/New_York")
    found = [
        value.astimezone(UTC) for value in schedule.occurrences(utc("2026-01-01 00:00"), 17520)
    ]
    assert all(later - earlier == timedelta(minutes=30) for earlier, later in pairwise(found))
    assert found[-1] == utc("2027-01-01 00:00")


def test_result_is_in_schedule_zone() -> None:
    schedule = CronSchedule("0 9 * * *", "Asia/Tokyo")
    found = schedule.next_after(utc("2026-06-01 12:00"))
    assert found == datetime(2026, 6, 2, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert found is not None
    assert found.tzinfo == ZoneInfo("Asia/Tokyo")


def test_instant_in_other_zone_is_accepted() -> None:
    schedule = CronSchedule("0 9 * * *", "Europe/Berlin")
    start = local("2026-06-01 23:30", "America/Los_Angeles")
    found = schedule.next_after(start)
    assert found is not None
    assert found.astimezone(UTC) == utc("2026-06-02 07:00")


def test_strictly_after_with_microseconds() -> None:
    schedule = CronSchedule("0 9 * * *")
    assert schedule.next_after(utc("2026-06-01 09:00")) == utc("2026-06-02 09:00")
    assert schedule.next_after(utc("2026-06-01 08:59:59.999999")) == utc("2026-06-01 09:00")
    assert schedule.next_after(utc("2026-06-01 09:00:00.000001")) == utc("2026-06-02 09:00")


def test_naive_instant_rejected() -> None:
    schedule = CronSchedule("0 9 * * *")
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(datetime(2026, 1, 1))


def test_occurrences_count_checks() -> None:
    schedule = CronSchedule("0 9 * * *")
    assert schedule.occurrences(utc("2026-01-01 00:00"), 0) == []
    with pytest.raises(ValueError, match="count"):
        schedule.occurrences(utc("2026-01-01 00:00"), -1)


# -- syntax --------------------------------------------------------------------------------

START = utc("2026-01-01 00:00")  # a Thursday

# (expression, expected UTC instants after START)
SYNTAX_CASES = [
    ("*/5 * * * *", ["2026-01-01 00:05", "2026-01-01 00:10", "2026-01-01 00:15"]),
    ("10-40/10 * * * *",
     ["2026-01-01 00:10", "2026-01-01 00:20", "2026-01-01 00:30", "2026-01-01 00:40",
      "2026-01-01 01:10"]),
    ("5/15 * * * *",
     ["2026-01-01 00:05", "2026-01-01 00:20", "2026-01-01 00:35", "2026-01-01 00:50",
      "2026-01-01 01:05"]),
    ("0 8,12,18 * * *", ["2026-01-01 08:00", "2026-01-01 12:00", "2026-01-01 18:00"]),
    ("0 0 1 JAN,jul *", ["2026-07-01 00:00", "2027-01-01 00:00"]),
    ("0 0 1 2-3 *", ["2026-02-01 00:00", "2026-03-01 00:00", "2027-02-01 00:00"]),
    ("0 0 * * SAT,sun", ["2026-01-03 00:00", "2026-01-04 00:00", "2026-01-10 00:00"]),
    ("0 0 * * 7", ["2026-01-04 00:00", "2026-01-11 00:00"]),
    ("0 0 * * 0", ["2026-01-04 00:00", "2026-01-11 00:00"]),
    ("0 0 * * 5-7", ["2026-01-02 00:00", "2026-01-03 00:00", "2026-01-04 00:00",
                     "2026-01-09 00:00"]),
    ("0 0 * * MON-FRI", ["2026-01-02 00:00", "2026-01-05 00:00", "2026-01-06 00:00"]),
    ("0 0 L * *", ["2026-01-31 00:00", "2026-02-28 00:00", "2026-03-31 00:00",
                   "2026-04-30 00:00"]),
    ("0 0 L 2 *", ["2026-02-28 00:00", "2027-02-28 00:00", "2028-02-29 00:00"]),
    ("0 0 L-3 * *", ["2026-01-28 00:00", "2026-02-25 00:00", "2026-03-28 00:00",
                     "2026-04-27 00:00"]),
    ("0 0 1,L * *", ["2026-01-31 00:00", "2026-02-01 00:00", "2026-02-28 00:00"]),
    ("0 0 * * 5L", ["2026-01-30 00:00", "2026-02-27 00:00", "2026-03-27 00:00"]),
    ("0 0 * * FRIL", ["2026-01-30 00:00", "2026-02-27 00:00"]),
    ("0 0 15W * *", ["2026-01-15 00:00", "2026-02-16 00:00", "2026-03-16 00:00"]),
    ("0 0 15W 8 *", ["2026-08-14 00:00"]),
    ("0 0 1W 2,8 *", ["2026-02-02 00:00", "2026-08-03 00:00"]),
    ("0 0 31W 5 *", ["2026-05-29 00:00"]),
    ("0 0 LW * *", ["2026-01-30 00:00", "2026-02-27 00:00", "2026-03-31 00:00",
                    "2026-04-30 00:00", "2026-05-29 00:00"]),
    ("0 0 * * MON#2", ["2026-01-12 00:00", "2026-02-09 00:00", "2026-03-09 00:00"]),
    ("0 0 * * 5#5", ["2026-01-30 00:00", "2026-05-29 00:00"]),
    ("0 0 ? * MON", ["2026-01-05 00:00", "2026-01-12 00:00"]),
    ("0 0 1 * ?", ["2026-02-01 00:00", "2026-03-01 00:00"]),
    # Both day fields restricted: a day matches when either field matches.
    ("0 0 13 * FRI", ["2026-01-02 00:00", "2026-01-09 00:00", "2026-01-13 00:00",
                      "2026-01-16 00:00"]),
    ("0 0 */10 * MON", ["2026-01-05 00:00", "2026-01-11 00:00", "2026-01-12 00:00",
                        "2026-01-19 00:00", "2026-01-21 00:00"]),
    # One day field unrestricted: the other one alone decides.
    ("0 0 13 * *", ["2026-01-13 00:00", "2026-02-13 00:00"]),
    ("0 0 * 2 MON#5", ["2044-02-29 00:00"]),
    ("0 0 29 2 *", ["2028-02-29 00:00", "2032-02-29 00:00"]),
    # Six fields: leading seconds.
    ("*/15 * * * * *", ["2026-01-01 00:00:15", "2026-01-01 00:00:30", "2026-01-01 00:00:45",
                        "2026-01-01 00:01:00"]),
    ("30 0 9 * * *", ["2026-01-01 09:00:30", "2026-01-02 09:00:30"]),
    # Macros.
    ("@yearly", ["2027-01-01 00:00"]),
    ("@annually", ["2027-01-01 00:00"]),
    ("@monthly", ["2026-02-01 00:00"]),
    ("@weekly", ["2026-01-04 00:00"]),
    ("@daily", ["2026-01-02 00:00"]),
    ("@DAILY", ["2026-01-02 00:00"]),
    ("@midnight", ["2026-01-02 00:00"]),
    ("@hourly", ["2026-01-01 01:00"]),
    ("@every_minute", ["2026-01-01 00:01", "2026-01-01 00:02"]),
    ("@every_second", ["2026-01-01 00:00:01", "2026-01-01 00:00:02"]),
]  # fmt: skip


@pytest.mark.parametrize(("expression", "expected"), SYNTAX_CASES)
def test_syntax_table(expression: str, expected: list[str]) -> None:
    found = next_utc(expression, "UTC", START, len(expected))
    assert found == [utc(text) for text in expected]


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 L-30 2 *"])
def test_impossible_date_returns_none(expression: str) -> None:
    schedule = CronSchedule(expression)
    assert schedule.next_after(START) is None
    assert schedule.occurrences(START, 3) == []


def test_search_near_max_year_returns_none() -> None:
    schedule = CronSchedule("0 0 1 1 *")
    assert schedule.next_after(utc("9999-06-01 00:00")) is None


@pytest.mark.parametrize(
    ("expression", "has_seconds", "is_interval"),
    [
        ("30 2 * * *", False, False),
        ("0,30 1 * * *", False, False),
        ("0 9 * * MON-FRI", False, False),
        ("0 0 1-5 * *", False, False),
        ("@daily", False, False),
        ("0 * * * *", False, True),
        ("*/30 * * * *", False, True),
        ("0 1-3 * * *", False, True),
        ("5/15 2 * * *", False, True),
        ("@hourly", False, True),
        ("0 30 2 * * *", True, False),
        ("*/10 30 2 * * *", True, True),
        ("@every_second", True, True),
    ],
)
def test_schedule_flags(expression: str, has_seconds: bool, is_interval: bool) -> None:
    schedule = CronSchedule(expression)
    assert schedule.has_seconds is has_seconds
    assert schedule.is_interval is is_interval


def test_expression_and_tz_kept() -> None:
    schedule = CronSchedule("0 9 * * mon-fri", "Europe/Berlin")
    assert schedule.expression == "0 9 * * mon-fri"
    assert schedule.tz == "Europe/Berlin"


# -- errors --------------------------------------------------------------------------------

ERROR_CASES = [
    ("61 * * * *", "invalid cron expression '61 * * * *': minute field '61' is out of range 0-59"),
    ("1,61 * * * *", "minute field '1,61': '61' is out of range 0-59"),
    ("0 24 * * *", "hour field '24' is out of range 0-23"),
    ("0 0 0 * *", "day-of-month field '0' is out of range 1-31"),
    ("0 0 32 * *", "day-of-month field '32' is out of range 1-31"),
    ("0 0 * 13 *", "month field '13' is out of range 1-12"),
    ("0 0 * * 8", "day-of-week field '8' is out of range 0-7"),
    ("60 * * * * *", "second field '60' is out of range 0-59"),
    ("0 0 * JANU *", "month field 'JANU' is not a number or name"),
    ("0 0 * * MON-XYZ", "day-of-week field 'MON-XYZ': 'XYZ' is not a number or name"),
    ("a * * * *", "minute field 'a' is not a number"),
    ("*/0 * * * *", "minute field '*/0' has an invalid step"),
    ("*/x * * * *", "minute field '*/x' has an invalid step"),
    ("40-10 * * * *", "minute field '40-10' has its start after its end"),
    ("1- * * * *", "minute field '1-' is missing a value"),
    ("1,,2 * * * *", "minute field '1,,2' contains an empty list item"),
    ("? * * * *", "minute field '?' is only allowed alone"),
    ("0 0 ?,1 * *", "day-of-month field '?,1': '?' is only allowed alone"),
    ("0 0 L-31 * *", "day-of-month field 'L-31' needs a day count of 0-30"),
    ("0 0 32W * *", "day-of-month field '32W': '32' is out of range 1-31"),
    ("0 0 W * *", "day-of-month field 'W' is missing a value"),
    ("0 0 * * L", "day-of-week field 'L' needs a weekday"),
    ("0 0 * * MON#6", "day-of-week field 'MON#6' needs a week number of 1-5"),
    ("0 0 * * 9L", "day-of-week field '9L': '9' is out of range 0-7"),
    ("* * * *", "expected 5 fields"),
    ("* * * * * * *", "got 7"),
    ("", "got 0"),
    ("@often", "unknown macro"),
]


@pytest.mark.parametrize(("expression", "message"), ERROR_CASES)
def test_invalid_expression_message(expression: str, message: str) -> None:
    with pytest.raises(InvalidCronExpression) as raised:
        CronSchedule(expression)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_non_string_expression_rejected() -> None:
    with pytest.raises(TypeError, match="str"):
        CronSchedule(5)  # type: ignore[arg-type]


# -- time zones ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "iana"),
    [
        ("Eastern Standard Time", "America/New_York"),
        ("W. Europe Standard Time", "Europe/Berlin"),
        ("Pacific Standard Time", "America/Los_Angeles"),
        ("GMT Standard Time", "Europe/London"),
        ("AUS Eastern Standard Time", "Australia/Sydney"),
        ("Tokyo Standard Time", "Asia/Tokyo"),
        ("India Standard Time", "Asia/Kolkata"),
        ("Lord Howe Standard Time", "Australia/Lord_Howe"),
        ("Chatham Islands Standard Time", "Pacific/Chatham"),
        ("eastern standard time", "America/New_York"),
        ("Europe/Berlin", "Europe/Berlin"),
        ("UTC", "UTC"),
    ],
)
def test_time_zone_names(name: str, iana: str) -> None:
    assert CronSchedule("0 0 * * *", name).tz == iana


def test_windows_zone_schedules_in_mapped_zone() -> None:
    schedule = CronSchedule("0 9 * * *", "W. Europe Standard Time")
    assert schedule.next_after(utc("2026-07-01 00:00")) == utc("2026-07-01 07:00")


def test_windows_table_entries_all_load() -> None:
    assert len(WINDOWS_TIME_ZONES) >= 40
    for windows_id, iana in WINDOWS_TIME_ZONES.items():
        # "UTC" is also an IANA name, and IANA names are used as given.
        expected = "UTC" if windows_id == "UTC" else iana
        assert CronSchedule("0 0 * * *", windows_id).tz == expected


@pytest.mark.parametrize(
    "name", ["Mars/Olympus_Mons", "Eastern Time", "", "../etc/passwd", "America"]
)
def test_unknown_time_zone_rejected(name: str) -> None:
    with pytest.raises(InvalidTimeZone) as raised:
        CronSchedule("0 0 * * *", name)
    assert repr(name) in str(raised.value)
    assert "Europe/Berlin" in str(raised.value)
    assert isinstance(raised.value, ValueError)


# -- describe ------------------------------------------------------------------------------

DESCRIBE_CASES = [
    ("0 9 * * MON-FRI", "At 09:00, Monday through Friday"),
    ("30 2 * * *", "At 02:30 every day"),
    ("30 2 ? * *", "At 02:30 every day"),
    ("0,30 9,17 * * *", "At 09:00, 09:30, 17:00 and 17:30 every day"),
    ("*/15 * * * *", "Every 15 minutes"),
    ("* * * * *", "Every minute"),
    ("@every_second", "Every second"),
    ("*/10 * * * * *", "Every 10 seconds"),
    ("30 * * * * *", "At second 30 of every minute"),
    ("0 0 * * * *", "At minute 0, second 0 of every hour"),
    ("30 0 9 * * *", "At 09:00:30 every day"),
    ("0 * * * *", "At minute 0 of every hour"),
    ("0 */2 * * *", "At minute 0 of every 2 hours"),
    ("5/15 10-12 * * *", "Every 15 minutes starting at minute 5, every hour from 10 through 12"),
    ("0 0 L * *", "At 00:00, on the last day of the month"),
    ("0 0 L-3 * *", "At 00:00, on the 3rd day before the last day of the month"),
    ("0 0 15W,LW * *", "At 00:00, on the weekday nearest day 15 and the last weekday of the month"),
    ("0 0 * * 5L", "At 00:00, on the last Friday of the month"),
    ("0 0 ? * MON#2", "At 00:00, on the second Monday of the month"),
    ("0 0 13 * FRI", "At 00:00, on day 13 of the month or on Friday"),
    ("0 0 1 1 *", "At 00:00, on day 1 of the month, in January"),
    ("0 12 * */3 *", "At 12:00, in January, April, July and October"),
    ("0 0 */2 * *", "At 00:00, on every 2nd day of the month"),
    ("@weekly", "At 00:00, on Sunday"),
    (
        "0 9-17 * * 1,3,5",
        "At minute 0 of every hour from 9 through 17, on Monday, Wednesday and Friday",
    ),
]


@pytest.mark.parametrize(("expression", "description"), DESCRIBE_CASES)
def test_describe(expression: str, description: str) -> None:
    assert CronSchedule(expression).describe() == description


def test_step_of_one_reads_naturally() -> None:
    assert "1 minutes" not in CronSchedule("*/1 * * * *").describe()
    assert "1 hours" not in CronSchedule("0 */1 * * *").describe()
    assert "every minute" in CronSchedule("*/1 * * * *").describe().lower()


def test_exported_from_package() -> None:
    import backburner

    assert backburner.CronSchedule is CronSchedule

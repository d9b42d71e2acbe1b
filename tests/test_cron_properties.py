"""Property tests: CronSchedule.next_after against brute-force references.

The DST reference walks UTC minute by minute (second by second for six-field
expressions), converts each instant to local time, and applies the firing
rules directly:

* an instant fires when its wall time matches, unless it is the second pass of
  a repeated wall time and the schedule is fixed-time;
* the first instant after a skipped span of wall time also fires when any
  skipped wall time matches.

Which wall times match comes from cronsim, a separate cron implementation, run
on naive datetimes so that none of its own DST handling applies.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import pairwise
from zoneinfo import ZoneInfo

import cronsim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backburner.cron import CronSchedule, InvalidCronExpression

# Zones with offset changes in 2026-2030 (checked against tzdata 2025b and 2026f).
DST_ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Africa/Casablanca",
    "America/Santiago",
    "America/St_Johns",
    "America/Havana",
    "Africa/Cairo",
    "Asia/Beirut",
    "Europe/Dublin",
    "Pacific/Auckland",
    "Antarctica/Troll",
]
# Zones without daylight saving time, some with unusual offsets.
STEADY_ZONES = ["Asia/Kolkata", "America/Sao_Paulo", "Asia/Tehran", "Asia/Kathmandu"]

FIRST_YEAR, LAST_YEAR = 2026, 2030

# Schedules whose matching wall times cronsim computes the same way as
# backburner.cron. Day-of-month and day-of-week are never both restricted
# here, because cronsim treats a restricted field starting with "*" as
# unrestricted.
MINUTE_FIELDS = ["0", "30", "45", "59", "*", "*/15", "*/30", "*/7", "5-20/5", "0,45", "10-12"]
HOUR_FIELDS = ["*", "0", "1", "2", "3", "23", "1-3", "*/2", "0,2", "2/3"]
DAY_FIELDS = [("*", "*"), ("*", "MON-FRI"), ("*", "SUN"), ("*", "6,0"), ("L", "*"), ("1-7", "*")]
SECOND_FIELDS = ["0", "30", "*", "*/20", "15-45/15"]


def is_interval_reference(expression: str) -> bool:
    """Return True for interval schedules: ``*``, a range or a step in a time field."""
    fields = expression.split()
    time_fields = fields[:3] if len(fields) == 6 else fields[:2]
    return any(mark in field for field in time_fields for mark in "*-/")


def matching_walls(expression: str, first: datetime, last: datetime) -> set[datetime]:
    """Return every naive wall time in [first, last] that matches, according to cronsim."""
    found: set[datetime] = set()
    for wall in cronsim.CronSim(expression, first - timedelta(seconds=1)):
        if wall > last:
            break
        found.add(wall)
    return found


def reference_occurrences(
    expression: str, zone_name: str, start: datetime, end: datetime
) -> list[datetime]:
    """Walk UTC from `start` (exclusive) to `end` (inclusive) and return every firing instant."""
    zone = ZoneInfo(zone_name)
    step = timedelta(seconds=1) if len(expression.split()) == 6 else timedelta(minutes=1)
    interval = is_interval_reference(expression)

    step_seconds = step.total_seconds()
    instant = datetime.fromtimestamp(start.timestamp() // step_seconds * step_seconds, UTC)
    instants = []
    while instant <= end:
        instant += step
        instants.append(instant)

    def wall_of(moment: datetime) -> datetime:
        return moment.astimezone(zone).replace(tzinfo=None, fold=0)

    walls = [wall_of(moment) for moment in [instants[0] - step, *instants]]
    matches = matching_walls(expression, min(walls), max(walls))

    fired = []
    for index, moment in enumerate(instants):
        previous_wall, wall = walls[index], walls[index + 1]
        in_second_pass = moment.astimezone(zone).fold == 1
        fires = wall in matches and (interval or not in_second_pass)

        skipped = previous_wall + step
        while skipped < wall and not fires:
            fires = skipped in matches
            skipped += step

        if fires and start < moment <= end:
            fired.append(moment)
    return fired


def implementation_occurrences(
    expression: str, zone_name: str, start: datetime, end: datetime
) -> list[datetime]:
    schedule = CronSchedule(expression, zone_name)
    found: list[datetime] = []
    cursor = start
    while True:
        following = schedule.next_after(cursor)
        if following is None or following > end:
            return found
        found.append(following.astimezone(UTC))
        cursor = following


@cache
def transitions(zone_name: str) -> list[datetime]:
    """Return each UTC instant in FIRST_YEAR..LAST_YEAR at which the zone's offset changes."""
    zone = ZoneInfo(zone_name)

    def offset(moment: datetime) -> timedelta | None:
        return moment.astimezone(zone).utcoffset()

    found = []
    day = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)
    while day.year <= LAST_YEAR:
        following = day + timedelta(days=1)
        if offset(day) != offset(following):
            low, high = day, following
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                low, high = (low, middle) if offset(middle) == offset(following) else (middle, high)
            found.append(high.replace(microsecond=0))
        day = following
    return found


def all_transitions() -> Iterator[tuple[str, datetime]]:
    for zone_name in DST_ZONES:
        for transition in transitions(zone_name):
            yield zone_name, transition


def test_transitions_found_per_zone() -> None:
    for zone_name in DST_ZONES:
        # None means the zone dropped DST in this tzdata: move it to STEADY_ZONES.
        assert transitions(zone_name), zone_name
    assert len(list(all_transitions())) >= 100


@st.composite
def five_field_expressions(draw: st.DrawFn) -> str:
    day_of_month, day_of_week = draw(st.sampled_from(DAY_FIELDS))
    minute = draw(st.sampled_from(MINUTE_FIELDS))
    hour = draw(st.sampled_from(HOUR_FIELDS))
    return f"{minute} {hour} {day_of_month} * {day_of_week}"


@st.composite
def six_field_expressions(draw: st.DrawFn) -> str:
    second = draw(st.sampled_from(SECOND_FIELDS))
    minute = draw(st.sampled_from(["0", "*", "*/30", "15", "59"]))
    hour = draw(st.sampled_from(["*", "1", "2", "3", "1-3"]))
    return f"{second} {minute} {hour} * * *"


@st.composite
def windows_near_transitions(draw: st.DrawFn, span: timedelta) -> tuple[str, datetime]:
    """Draw a zone and a window start within a few hours of one of its transitions."""
    zone_name = draw(st.sampled_from(DST_ZONES + STEADY_ZONES))
    if not transitions(zone_name):
        seconds = draw(st.integers(0, 5 * 365 * 86400))
        return zone_name, datetime(FIRST_YEAR, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    transition = draw(st.sampled_from(transitions(zone_name)))
    if span > timedelta(hours=1):
        offset = draw(st.integers(-3 * 3600, 2 * 3600))
    else:
        # Short windows land near the start of a gap or either end of a repeated span.
        anchor = draw(st.sampled_from([-2, -1, 0, 1]))
        offset = anchor * 3600 + draw(st.integers(-600, 60))
    return zone_name, transition + timedelta(seconds=offset)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression=five_field_expressions(), window=windows_near_transitions(timedelta(hours=5)))
def test_five_field_near_transitions(expression: str, window: tuple[str, datetime]) -> None:
    zone_name, start = window
    end = start + timedelta(hours=5)
    expected = reference_occurrences(expression, zone_name, start, end)
    assert implementation_occurrences(expression, zone_name, start, end) == expected


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression=six_field_expressions(), window=windows_near_transitions(timedelta(minutes=15)))
def test_six_field_near_transitions(expression: str, window: tuple[str, datetime]) -> None:
    zone_name, start = window
    end = start + timedelta(minutes=15)
    expected = reference_occurrences(expression, zone_name, start, end)
    assert implementation_occurrences(expression, zone_name, start, end) == expected


def test_each_transition_matches_reference() -> None:
    """Check each transition with a fixed schedule aimed inside the gap or repeat, and intervals."""
    checked = 0
    for zone_name, transition in all_transitions():
        zone = ZoneInfo(zone_name)
        # The wall clock jumps from `last_before` + 1 minute to `first_after`:
        # forward over a skipped span, or back to the start of a repeated one.
        last_before = (transition - timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None)
        first_after = transition.astimezone(zone).replace(tzinfo=None)
        span_start = min(last_before + timedelta(minutes=1), first_after)
        span_end = max(last_before + timedelta(minutes=1), first_after)
        middle = span_start + (span_end - span_start) / 2
        expressions = [
            f"{middle.minute} {middle.hour} * * *",
            f"*/15 {middle.hour} * * *",
            "*/30 * * * *",
            "0 * * * *",
        ]
        start, end = transition - timedelta(hours=3), transition + timedelta(hours=3)
        for expression in expressions:
            expected = reference_occurrences(expression, zone_name, start, end)
            found = implementation_occurrences(expression, zone_name, start, end)
            assert found == expected, (zone_name, transition, expression)
            checked += 1
    assert checked >= 4 * 100  # so the loop cannot pass by checking nothing


# -- plain matching, without DST ---------------------------------------------------------


@st.composite
def cronsim_compatible_expressions(draw: st.DrawFn) -> str:
    """Draw expressions, including L, LW, nL and #, that cronsim and backburner read alike."""
    numbers = st.sampled_from(["0", "5", "*", "*/10", "10-40/15", "7/20", "1,31", "20-25"])
    hours = st.sampled_from(["0", "9", "*", "*/6", "9-17", "22/1", "0,12"])
    months = st.sampled_from(["*", "2", "JAN,JUL", "3-5", "*/4", "FEB-APR"])
    day_pairs = st.sampled_from([
        ("*", "*"), ("1", "*"), ("15", "*"), ("L", "*"), ("LW", "*"), ("1,L", "*"),
        ("29", "*"), ("31", "*"), ("10-20", "*"), ("*/7", "*"),
        ("*", "MON-FRI"), ("*", "5L"), ("*", "1#1"), ("*", "FRI#5"), ("*", "0,6"),
        ("*", "*/2"), ("13", "FRI"), ("1", "MON"), ("L", "5#2"), ("20-25", "SUN"),
    ])  # fmt: skip
    day_of_month, day_of_week = draw(day_pairs)
    fields = [draw(numbers), draw(hours), day_of_month, draw(months), day_of_week]
    if draw(st.booleans()):
        fields.insert(0, draw(numbers))
    return " ".join(fields)


@settings(max_examples=800, deadline=None)
@given(
    expression=cronsim_compatible_expressions(),
    start=st.datetimes(datetime(1990, 1, 1), datetime(2090, 12, 31)),
)
def test_matching_agrees_with_cronsim(expression: str, start: datetime) -> None:
    try:
        iterator = cronsim.CronSim(expression, start)
    except cronsim.CronSimError:
        # cronsim rejects day-of-month values that no listed month has.
        assert CronSchedule(expression).next_after(start.replace(tzinfo=UTC)) is None
        return
    expected = []
    for found in iterator:
        expected.append(found.replace(tzinfo=UTC))
        if len(expected) == 8:
            break
    assert CronSchedule(expression).occurrences(start.replace(tzinfo=UTC), 8) == expected


def days_matched(expression: str, year: int, month: int) -> list[int]:
    """Return the days of `month` on which a once-a-month-at-most schedule fires."""
    start = datetime(year, month, 1, tzinfo=UTC) - timedelta(seconds=1)
    found = CronSchedule(expression).next_after(start)
    if found is None or (found.year, found.month) != (year, month):
        return []
    return [found.day]


def nearest_weekday_reference(year: int, month: int, target: int) -> list[int]:
    """Return the Monday-Friday day in the month closest to `target`, as a 0- or 1-item list."""
    last = calendar.monthrange(year, month)[1]
    if target > last:
        return []
    weekdays = [day for day in range(1, last + 1) if date(year, month, day).weekday() < 5]
    return [min(weekdays, key=lambda day: abs(day - target))]


@settings(max_examples=200, deadline=None)
@given(
    year=st.integers(1990, 2090),
    month=st.integers(1, 12),
    target=st.integers(1, 31),
)
def test_nearest_weekday_matches_reference(year: int, month: int, target: int) -> None:
    expression = f"0 0 {target}W {month} *"
    assert days_matched(expression, year, month) == nearest_weekday_reference(year, month, target)


@settings(max_examples=200, deadline=None)
@given(year=st.integers(1990, 2090), month=st.integers(1, 12), before=st.integers(0, 30))
def test_days_before_last_match_reference(year: int, month: int, before: int) -> None:
    last = calendar.monthrange(year, month)[1]
    expected = [last - before] if last - before >= 1 else []
    assert days_matched(f"0 0 L-{before} {month} *", year, month) == expected


@settings(max_examples=100, deadline=None)
@given(
    weekday=st.sampled_from(["MON", "1", "5L", "FRI#3", "SUN,SAT", "*/3"]),
    start=st.datetimes(datetime(2000, 1, 1), datetime(2080, 1, 1)),
)
def test_question_mark_equals_star(weekday: str, start: datetime) -> None:
    aware = start.replace(tzinfo=UTC)
    with_star = CronSchedule(f"0 12 * * {weekday}").occurrences(aware, 6)
    with_question_mark = CronSchedule(f"0 12 ? * {weekday}").occurrences(aware, 6)
    assert with_question_mark == with_star


# -- general invariants ------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    expression=st.one_of(five_field_expressions(), six_field_expressions()),
    zone_name=st.sampled_from(DST_ZONES + STEADY_ZONES),
    start=st.datetimes(datetime(2026, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC)),
)
def test_results_strictly_increase(expression: str, zone_name: str, start: datetime) -> None:
    results = CronSchedule(expression, zone_name).occurrences(start, 40)
    instants = [result.astimezone(UTC) for result in results]
    assert len(instants) == 40
    assert instants[0] > start
    assert all(earlier < later for earlier, later in pairwise(instants))
    assert all(result.tzinfo == ZoneInfo(zone_name) for result in results)


@settings(max_examples=1000, deadline=None)
@given(
    fields=st.lists(
        st.text(alphabet="0123456789*/-,?LW#MONFRIJANSUNlw", min_size=1, max_size=8),
        min_size=4,
        max_size=7,
    )
)
def test_arbitrary_fields_parse_or_raise(fields: list[str]) -> None:
    """Check that any text either parses, with describe() and next_after() working, or raises."""
    try:
        schedule = CronSchedule(" ".join(fields))
    except InvalidCronExpression as error:
        assert "invalid cron expression" in str(error)
        return
    assert schedule.describe()
    found = schedule.next_after(datetime(2026, 1, 1, tzinfo=UTC))
    assert found is None or found > datetime(2026, 1, 1, tzinfo=UTC)

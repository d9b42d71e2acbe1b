"""Cron schedules evaluated on the local wall clock of a time zone.

Syntax: five fields (minute hour day-of-month month day-of-week), or six with
a leading seconds field. Each field takes lists (``1,5``), ranges (``1-5``)
and steps (``*/5``, ``10-40/10``, ``5/15``). Months accept JAN-DEC and
weekdays SUN-SAT, where 0 and 7 are both Sunday. The day fields also accept
``?`` (same as ``*``), and these Quartz-style terms:

* day-of-month: ``L`` (last day), ``L-3`` (3 days before the last day),
  ``15W`` (weekday nearest the 15th, within the month), ``LW`` (last weekday).
* day-of-week: ``5L`` (last Friday of the month), ``MON#2`` (second Monday).

Macros: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly,
@every_minute and @every_second.

Day-of-month and day-of-week combine as in Vixie cron: when both fields are
restricted, a day matches if EITHER field matches, so ``0 0 13 * FRI`` fires
on every 13th and on every Friday. A field counts as unrestricted only when it
is exactly ``*`` or ``?``. Debian's Vixie cron also treats any field starting
with ``*``, such as ``*/2``, as unrestricted, but this module does not.

Daylight saving time and other offset changes:

* Skipped wall-clock times (spring forward) fire at the first instant after
  the gap, so ``30 2 * * *`` in America/New_York fires at 03:00 on that day.
  Several skipped occurrences collapse into that one firing.
* Repeated wall-clock times (fall back) fire once, in the first pass, for
  fixed-time schedules. Interval schedules, which have ``*``, a range or a
  step in the second, minute or hour field, fire in both passes.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "WINDOWS_TIME_ZONES",
    "CronSchedule",
    "InvalidCronExpression",
    "InvalidTimeZone",
]


class InvalidCronExpression(ValueError):
    """A cron expression that cannot be parsed."""


class InvalidTimeZone(ValueError):
    """A time zone name that is neither an IANA name nor a known Windows id."""


# Primary IANA zone (CLDR windowsZones.xml, territory "001") for each Windows
# time zone id. Where CLDR still lists an old IANA alias, the current
# canonical name is used instead (Asia/Kolkata, not Asia/Calcutta).
WINDOWS_TIME_ZONES: Mapping[str, str] = {
    "Dateline Standard Time": "Etc/GMT+12",
    "UTC-11": "Etc/GMT+11",
    "Aleutian Standard Time": "America/Adak",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Marquesas Standard Time": "Pacific/Marquesas",
    "Alaskan Standard Time": "America/Anchorage",
    "UTC-09": "Etc/GMT+9",
    "Pacific Standard Time (Mexico)": "America/Tijuana",
    "UTC-08": "Etc/GMT+8",
    "Pacific Standard Time": "America/Los_Angeles",
    "US Mountain Standard Time": "America/Phoenix",
    "Mountain Standard Time (Mexico)": "America/Mazatlan",
    "Mountain Standard Time": "America/Denver",
    "Yukon Standard Time": "America/Whitehorse",
    "Central America Standard Time": "America/Guatemala",
    "Central Standard Time": "America/Chicago",
    "Easter Island Standard Time": "Pacific/Easter",
    "Central Standard Time (Mexico)": "America/Mexico_City",
    "Canada Central Standard Time": "America/Regina",
    "SA Pacific Standard Time": "America/Bogota",
    "Eastern Standard Time (Mexico)": "America/Cancun",
    "Eastern Standard Time": "America/New_York",
    "Haiti Standard Time": "America/Port-au-Prince",
    "Cuba Standard Time": "America/Havana",
    "US Eastern Standard Time": "America/Indiana/Indianapolis",
    "Turks And Caicos Standard Time": "America/Grand_Turk",
    "Paraguay Standard Time": "America/Asuncion",
    "Atlantic Standard Time": "America/Halifax",
    "Venezuela Standard Time": "America/Caracas",
    "Central Brazilian Standard Time": "America/Cuiaba",
    "SA Western Standard Time": "America/La_Paz",
    "Pacific SA Standard Time": "America/Santiago",
    "Newfoundland Standard Time": "America/St_Johns",
    "Tocantins Standard Time": "America/Araguaina",
    "E. South America Standard Time": "America/Sao_Paulo",
    "SA Eastern Standard Time": "America/Cayenne",
    "Argentina Standard Time": "America/Argentina/Buenos_Aires",
    "Greenland Standard Time": "America/Nuuk",
    "Montevideo Standard Time": "America/Montevideo",
    "Magallanes Standard Time": "America/Punta_Arenas",
    "Saint Pierre Standard Time": "America/Miquelon",
    "Bahia Standard Time": "America/Bahia",
    "UTC-02": "Etc/GMT+2",
    "Azores Standard Time": "Atlantic/Azores",
    "Cape Verde Standard Time": "Atlantic/Cape_Verde",
    "UTC": "Etc/UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "Sao Tome Standard Time": "Africa/Sao_Tome",
    "Morocco Standard Time": "Africa/Casablanca",
    "W. Europe Standard Time": "Europe/Berlin",
    "Central Europe Standard Time": "Europe/Budapest",
    "Romance Standard Time": "Europe/Paris",
    "Central European Standard Time": "Europe/Warsaw",
    "W. Central Africa Standard Time": "Africa/Lagos",
    "Jordan Standard Time": "Asia/Amman",
    "GTB Standard Time": "Europe/Bucharest",
    "Middle East Standard Time": "Asia/Beirut",
    "Egypt Standard Time": "Africa/Cairo",
    "E. Europe Standard Time": "Europe/Chisinau",
    "Syria Standard Time": "Asia/Damascus",
    "West Bank Standard Time": "Asia/Hebron",
    "South Africa Standard Time": "Africa/Johannesburg",
    "FLE Standard Time": "Europe/Kyiv",
    "Israel Standard Time": "Asia/Jerusalem",
    "South Sudan Standard Time": "Africa/Juba",
    "Kaliningrad Standard Time": "Europe/Kaliningrad",
    "Sudan Standard Time": "Africa/Khartoum",
    "Libya Standard Time": "Africa/Tripoli",
    "Namibia Standard Time": "Africa/Windhoek",
    "Arabic Standard Time": "Asia/Baghdad",
    "Turkey Standard Time": "Europe/Istanbul",
    "Arab Standard Time": "Asia/Riyadh",
    "Belarus Standard Time": "Europe/Minsk",
    "Russian Standard Time": "Europe/Moscow",
    "E. Africa Standard Time": "Africa/Nairobi",
    "Iran Standard Time": "Asia/Tehran",
    "Arabian Standard Time": "Asia/Dubai",
    "Astrakhan Standard Time": "Europe/Astrakhan",
    "Azerbaijan Standard Time": "Asia/Baku",
    "Russia Time Zone 3": "Europe/Samara",
    "Mauritius Standard Time": "Indian/Mauritius",
    "Saratov Standard Time": "Europe/Saratov",
    "Georgian Standard Time": "Asia/Tbilisi",
    "Volgograd Standard Time": "Europe/Volgograd",
    "Caucasus Standard Time": "Asia/Yerevan",
    "Afghanistan Standard Time": "Asia/Kabul",
    "West Asia Standard Time": "Asia/Tashkent",
    "Ekaterinburg Standard Time": "Asia/Yekaterinburg",
    "Pakistan Standard Time": "Asia/Karachi",
    "Qyzylorda Standard Time": "Asia/Qyzylorda",
    "India Standard Time": "Asia/Kolkata",
    "Sri Lanka Standard Time": "Asia/Colombo",
    "Nepal Standard Time": "Asia/Kathmandu",
    "Central Asia Standard Time": "Asia/Bishkek",
    "Bangladesh Standard Time": "Asia/Dhaka",
    "Omsk Standard Time": "Asia/Omsk",
    "Myanmar Standard Time": "Asia/Yangon",
    "SE Asia Standard Time": "Asia/Bangkok",
    "Altai Standard Time": "Asia/Barnaul",
    "W. Mongolia Standard Time": "Asia/Hovd",
    "North Asia Standard Time": "Asia/Krasnoyarsk",
    "N. Central Asia Standard Time": "Asia/Novosibirsk",
    "Tomsk Standard Time": "Asia/Tomsk",
    "China Standard Time": "Asia/Shanghai",
    "North Asia East Standard Time": "Asia/Irkutsk",
    "Singapore Standard Time": "Asia/Singapore",
    "W. Australia Standard Time": "Australia/Perth",
    "Taipei Standard Time": "Asia/Taipei",
    "Ulaanbaatar Standard Time": "Asia/Ulaanbaatar",
    "Aus Central W. Standard Time": "Australia/Eucla",
    "Transbaikal Standard Time": "Asia/Chita",
    "Tokyo Standard Time": "Asia/Tokyo",
    "North Korea Standard Time": "Asia/Pyongyang",
    "Korea Standard Time": "Asia/Seoul",
    "Yakutsk Standard Time": "Asia/Yakutsk",
    "Cen. Australia Standard Time": "Australia/Adelaide",
    "AUS Central Standard Time": "Australia/Darwin",
    "E. Australia Standard Time": "Australia/Brisbane",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "West Pacific Standard Time": "Pacific/Port_Moresby",
    "Tasmania Standard Time": "Australia/Hobart",
    "Vladivostok Standard Time": "Asia/Vladivostok",
    "Lord Howe Standard Time": "Australia/Lord_Howe",
    "Bougainville Standard Time": "Pacific/Bougainville",
    "Russia Time Zone 10": "Asia/Srednekolymsk",
    "Magadan Standard Time": "Asia/Magadan",
    "Norfolk Standard Time": "Pacific/Norfolk",
    "Sakhalin Standard Time": "Asia/Sakhalin",
    "Central Pacific Standard Time": "Pacific/Guadalcanal",
    "Russia Time Zone 11": "Asia/Kamchatka",
    "New Zealand Standard Time": "Pacific/Auckland",
    "UTC+12": "Etc/GMT-12",
    "Fiji Standard Time": "Pacific/Fiji",
    "Chatham Islands Standard Time": "Pacific/Chatham",
    "UTC+13": "Etc/GMT-13",
    "Tonga Standard Time": "Pacific/Tongatapu",
    "Samoa Standard Time": "Pacific/Apia",
    "Line Islands Standard Time": "Pacific/Kiritimati",
}

_WINDOWS_IDS_BY_LOWER = {key.lower(): value for key, value in WINDOWS_TIME_ZONES.items()}

MACROS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
    "@every_minute": "* * * * *",
    "@every_second": "* * * * * *",
}

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_WEEKDAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
# Spelled out because calendar.month_name and day_name follow the process locale.
_MONTH_NAMES = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
_WEEKDAY_NAMES = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_ORDINALS = ["first", "second", "third", "fourth", "fifth"]

# The Gregorian calendar repeats every 400 years (146,097 days, a whole number
# of weeks), so a search of that length without a match proves there is none.
_SEARCH_DAYS = 146_097 + 1
# Searches stop here so that converting a match to UTC cannot overflow.
_LAST_SEARCH_DAY = date(9999, 11, 30)


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    value_of_first_name: int = 0


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DAY_OF_MONTH = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, tuple(_MONTHS), 1)
_DAY_OF_WEEK = _Field("day-of-week", 0, 7, tuple(_WEEKDAYS), 0)

_Parsed = TypeVar("_Parsed")


class _TermError(Exception):
    """A problem with one term of a field, before the field name is known."""

    def __init__(self, term: str, problem: str) -> None:
        super().__init__(problem)
        self.term = term
        self.problem = problem


def _parse_value(text: str, field: _Field) -> int:
    if text == "":
        raise _TermError(text, "is missing a value")
    if text in field.names:
        return field.names.index(text) + field.value_of_first_name
    if not text.isascii() or not text.isdigit():
        kind = "a number or name" if field.names else "a number"
        raise _TermError(text, f"is not {kind}")
    value = int(text)
    if not field.low <= value <= field.high:
        raise _TermError(text, f"is out of range {field.low}-{field.high}")
    return value


def _parse_numeric_term(term: str, field: _Field) -> set[int]:
    """Expand ``*``, ``a``, ``a-b``, each with an optional ``/step``."""
    body, slash, step_text = term.partition("/")
    step = 1
    if slash:
        if not step_text.isascii() or not step_text.isdigit() or int(step_text) == 0:
            raise _TermError(term, "has an invalid step, which must be a whole number of 1 or more")
        step = int(step_text)

    if body == "*":
        start, end = field.low, field.high
    elif "-" in body:
        start_text, _, end_text = body.partition("-")
        start, end = _parse_value(start_text, field), _parse_value(end_text, field)
        if start > end:
            raise _TermError(term, "has its start after its end")
    else:
        start = _parse_value(body, field)
        end = field.high if slash else start
    return set(range(start, end + 1, step))


def _split_terms(text: str) -> list[str]:
    terms = text.split(",")
    if "" in terms:
        raise _TermError(text, "contains an empty list item")
    if "?" in terms:
        raise _TermError("?", "is only allowed alone in the day-of-month or day-of-week field")
    return terms


def _parse_field(text: str, field: _Field) -> tuple[int, ...]:
    values: set[int] = set()
    for term in _split_terms(text):
        values |= _parse_numeric_term(term, field)
    return tuple(sorted(values))


@dataclass(frozen=True)
class _DayOfMonthRule:
    days: frozenset[int]
    before_last: frozenset[int]  # n for "L-n", where plain "L" is 0
    nearest_weekday: frozenset[int]  # n for "nW"
    last_weekday: bool  # "LW"

    def matches(self, day: date) -> bool:
        if day.day in self.days:
            return True
        last = calendar.monthrange(day.year, day.month)[1]
        if last - day.day in self.before_last:
            return True
        if self.last_weekday and day.day == _nearest_weekday(day.year, day.month, last):
            return True
        return any(
            _nearest_weekday(day.year, day.month, n) == day.day for n in self.nearest_weekday
        )


@dataclass(frozen=True)
class _DayOfWeekRule:
    weekdays: frozenset[int]  # 0 is Sunday
    last_in_month: frozenset[int]  # weekday for "nL"
    nth_in_month: frozenset[tuple[int, int]]  # (weekday, n) for "weekday#n"

    def matches(self, day: date) -> bool:
        weekday = (day.weekday() + 1) % 7
        if weekday in self.weekdays:
            return True
        last = calendar.monthrange(day.year, day.month)[1]
        if weekday in self.last_in_month and day.day + 7 > last:
            return True
        return (weekday, (day.day - 1) // 7 + 1) in self.nth_in_month


def _nearest_weekday(year: int, month: int, target: int) -> int | None:
    """Return the Monday-Friday day of the month nearest `target`, staying in the month."""
    last = calendar.monthrange(year, month)[1]
    if target > last:
        return None
    weekday = date(year, month, target).weekday()
    if weekday == 5:
        return target - 1 if target > 1 else target + 2
    if weekday == 6:
        return target + 1 if target < last else target - 2
    return target


def _parse_day_of_month(text: str, field: _Field) -> _DayOfMonthRule:
    if text in ("*", "?"):
        return _DayOfMonthRule(frozenset(range(1, 32)), frozenset(), frozenset(), False)

    days: set[int] = set()
    before_last: set[int] = set()
    nearest: set[int] = set()
    last_weekday = False
    for term in _split_terms(text):
        if term == "L":
            before_last.add(0)
        elif term == "LW":
            last_weekday = True
        elif term.startswith("L-"):
            offset = term[2:]
            if not offset.isascii() or not offset.isdigit() or int(offset) > 30:
                raise _TermError(term, "needs a day count of 0-30 after 'L-'")
            before_last.add(int(offset))
        elif term.endswith("W"):
            nearest.add(_parse_value(term[:-1], field))
        else:
            days |= _parse_numeric_term(term, field)
    return _DayOfMonthRule(
        frozenset(days), frozenset(before_last), frozenset(nearest), last_weekday
    )


def _parse_day_of_week(text: str, field: _Field) -> _DayOfWeekRule:
    if text in ("*", "?"):
        return _DayOfWeekRule(frozenset(range(7)), frozenset(), frozenset())

    weekdays: set[int] = set()
    last_in_month: set[int] = set()
    nth_in_month: set[tuple[int, int]] = set()
    for term in _split_terms(text):
        if term == "L":
            raise _TermError(term, "needs a weekday, such as '5L' for the last Friday")
        if term.endswith("L"):
            last_in_month.add(_parse_value(term[:-1], field) % 7)
        elif "#" in term:
            weekday_text, _, nth_text = term.partition("#")
            if nth_text not in ("1", "2", "3", "4", "5"):
                raise _TermError(term, "needs a week number of 1-5 after '#'")
            nth_in_month.add((_parse_value(weekday_text, field) % 7, int(nth_text)))
        else:
            weekdays |= {value % 7 for value in _parse_numeric_term(term, field)}
    return _DayOfWeekRule(frozenset(weekdays), frozenset(last_in_month), frozenset(nth_in_month))


def _resolve_time_zone(name: str) -> tuple[str, ZoneInfo]:
    """Return the IANA name and zone for an IANA name or a Windows time zone id."""
    if isinstance(name, str):
        candidates = [name, _WINDOWS_IDS_BY_LOWER.get(name.strip().lower())]
        for candidate in candidates:
            if not candidate:
                continue
            try:
                return candidate, ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                continue
    raise InvalidTimeZone(
        f"time zone {name!r} not found: use an IANA name like 'Europe/Berlin' "
        "or a Windows time zone id like 'W. Europe Standard Time'"
    )


class CronSchedule:
    """A cron expression bound to a time zone; see the module docstring for syntax and DST rules."""

    def __init__(self, expression: str, tz: str = "UTC") -> None:
        if not isinstance(expression, str):
            raise TypeError(f"cron expression must be a str, got {type(expression).__name__}")
        self.expression = expression
        self.tz, self._zone = _resolve_time_zone(tz)

        raw_fields = self._split_fields(expression)
        self.has_seconds = len(raw_fields) == 6
        if not self.has_seconds:
            raw_fields = ["0", *raw_fields]
        self._raw_fields = raw_fields
        self._fields = fields = [text.upper() for text in raw_fields]

        self._seconds = self._parse(0, _SECOND, _parse_field)
        self._minutes = self._parse(1, _MINUTE, _parse_field)
        self._hours = self._parse(2, _HOUR, _parse_field)
        self._day_of_month = self._parse(3, _DAY_OF_MONTH, _parse_day_of_month)
        self._months = frozenset(self._parse(4, _MONTH, _parse_field))
        self._day_of_week = self._parse(5, _DAY_OF_WEEK, _parse_day_of_week)
        self._either_day_field = fields[3] not in ("*", "?") and fields[5] not in ("*", "?")

    def _split_fields(self, expression: str) -> list[str]:
        text = expression.strip()
        if text.startswith("@"):
            if text.lower() not in MACROS:
                raise InvalidCronExpression(
                    f"invalid cron expression {expression!r}: unknown macro, use one of "
                    f"{', '.join(MACROS)}"
                )
            text = MACROS[text.lower()]
        fields = text.split()
        if len(fields) not in (5, 6):
            raise InvalidCronExpression(
                f"invalid cron expression {expression!r}: expected 5 fields "
                "(minute hour day-of-month month day-of-week) or 6 with a leading "
                f"seconds field, got {len(fields)}"
            )
        return fields

    def _parse(
        self, index: int, field: _Field, parser: Callable[[str, _Field], _Parsed]
    ) -> _Parsed:
        text = self._fields[index]
        try:
            return parser(text, field)
        except _TermError as error:
            # Quote the user's spelling, not the upper-cased text that was parsed.
            raw = self._raw_fields[index]
            start = text.find(error.term)
            term = raw[start : start + len(error.term)] if len(raw) == len(text) else error.term
            where = f"{field.name} field {raw!r}"
            if term and term != raw:
                where += f": {term!r}"
            raise InvalidCronExpression(
                f"invalid cron expression {self.expression!r}: {where} {error.problem}"
            ) from None

    @property
    def is_interval(self) -> bool:
        """True when the second, minute or hour field has ``*``, a range or a step.

        Interval schedules fire in both passes of a repeated (fall-back) hour.
        """
        return any(char in text for text in self._fields[:3] for char in "*-/")

    def next_after(self, instant: datetime) -> datetime | None:
        """Return the first occurrence strictly after `instant`, or None if there is none.

        The result is timezone-aware, in this schedule's zone. `instant` must be
        timezone-aware, in any zone. Compare results in UTC: Python compares two
        datetimes that share a tzinfo by wall time, ignoring fold, so both passes
        of a repeated hour compare equal.
        """
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError(
                f"next_after() needs a timezone-aware datetime, got the naive {instant!r}. "
                "Set tzinfo, for example instant.replace(tzinfo=ZoneInfo('UTC'))"
            )
        after = instant.astimezone(UTC)
        if not self._matches_any_day or after.date() >= _LAST_SEARCH_DAY:
            return None
        local = after.astimezone(self._zone)
        wall = local.replace(tzinfo=None, fold=0, microsecond=0)
        repeated = self._repeated_span(wall)

        # First-pass instants grow with the wall time, so the search starts at
        # `wall`, or after the repeated span when `after` is in its second pass.
        in_second_pass = repeated is not None and local.fold == 1
        first_pass_start = repeated[1] if repeated and in_second_pass else wall
        best = self._next_first_pass(first_pass_start, after)

        # The only second-pass instants that can come before `best` are those
        # of the repeated span that `after` is in.
        if repeated is not None and self.is_interval:
            second_pass_start = wall if in_second_pass else repeated[0]
            second = self._next_second_pass(second_pass_start, repeated[1], after)
            if second is not None and (best is None or second < best):
                best = second
        return None if best is None else best.astimezone(self._zone)

    def occurrences(self, after: datetime, count: int) -> list[datetime]:
        """Return up to `count` consecutive occurrences strictly after `after`."""
        if count < 0:
            raise ValueError(f"count must be 0 or more, got {count}")
        results: list[datetime] = []
        cursor = after
        while len(results) < count:
            found = self.next_after(cursor)
            if found is None:
                break
            results.append(found)
            cursor = found
        return results

    @cached_property
    def _matches_any_day(self) -> bool:
        """True unless no day ever matches, as in "0 0 30 2 *".

        Cached, so such a schedule costs one 400-year scan, not one per call.
        """
        return self._next_wall_match(datetime(2000, 1, 1)) is not None

    def _next_first_pass(self, start: datetime, after: datetime) -> datetime | None:
        wall = self._next_wall_match(start)
        while wall is not None:
            instant = self._first_instant(wall)
            if instant > after:
                return instant
            wall = self._next_wall_match(wall + timedelta(seconds=1))
        return None

    def _next_second_pass(self, start: datetime, end: datetime, after: datetime) -> datetime | None:
        wall = self._next_wall_match(start, until=end.date())
        while wall is not None and wall < end:
            instant = wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
            if instant > after:
                return instant
            wall = self._next_wall_match(wall + timedelta(seconds=1), until=end.date())
        return None

    def _first_instant(self, wall: datetime) -> datetime:
        """Return the UTC instant of the first pass of `wall`, moved to the gap's end if skipped."""
        first = wall.replace(tzinfo=self._zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
        if first <= second:
            return first

        # A skipped wall time: fold=0 applies the offset from before the gap,
        # which lands after the gap, and fold=1 lands before it.
        return self._transition_between(second, first)

    def _repeated_span(self, wall: datetime) -> tuple[datetime, datetime] | None:
        """Return the start and end (exclusive) of the repeated wall-clock span containing `wall`."""
        first = wall.replace(tzinfo=self._zone, fold=0)
        second = wall.replace(tzinfo=self._zone, fold=1)
        first_offset, second_offset = first.utcoffset(), second.utcoffset()
        assert first_offset is not None and second_offset is not None
        repeat = first_offset - second_offset
        if repeat <= timedelta(0):
            return None

        first_utc = first.astimezone(UTC)
        transition = self._transition_between(first_utc, first_utc + repeat)
        start = transition.astimezone(self._zone).replace(tzinfo=None, fold=0)
        return start, start + repeat

    def _transition_between(self, before: datetime, after: datetime) -> datetime:
        """Binary-search the first second in (before, after] that has the UTC offset of `after`."""
        target = after.astimezone(self._zone).utcoffset()
        low, high = int(before.timestamp()), int(after.timestamp())
        while high - low > 1:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle, self._zone).utcoffset() == target:
                high = middle
            else:
                low = middle
        return datetime.fromtimestamp(high, UTC)

    def _next_wall_match(self, start: datetime, until: date | None = None) -> datetime | None:
        """Return the first matching wall-clock time at or after the naive `start`.

        The search ends after 400 years, at `until`, or at _LAST_SEARCH_DAY,
        whichever comes first.
        """
        day = start.date()
        floor = start.time()
        end = date.fromordinal(min(day.toordinal() + _SEARCH_DAYS, _LAST_SEARCH_DAY.toordinal()))
        if until is not None:
            end = min(end, until)
        while day <= end:
            if day.month not in self._months:
                day = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
                floor = time()
                continue
            if self._day_matches(day):
                found = self._first_time_at_or_after(floor)
                if found is not None:
                    return datetime.combine(day, found)
            day += timedelta(days=1)
            floor = time()
        return None

    def _day_matches(self, day: date) -> bool:
        by_month_day = self._day_of_month.matches(day)
        by_weekday = self._day_of_week.matches(day)
        if self._either_day_field:
            return by_month_day or by_weekday
        return by_month_day and by_weekday

    def _first_time_at_or_after(self, floor: time) -> time | None:
        for hour in self._hours[bisect_left(self._hours, floor.hour) :]:
            if hour > floor.hour:
                return time(hour, self._minutes[0], self._seconds[0])
            for minute in self._minutes[bisect_left(self._minutes, floor.minute) :]:
                if minute > floor.minute:
                    return time(hour, minute, self._seconds[0])
                index = bisect_left(self._seconds, floor.second)
                if index < len(self._seconds):
                    return time(hour, minute, self._seconds[index])
        return None

    def describe(self) -> str:
        """Describe the expression in plain English, such as "At 09:00, Monday through Friday"."""
        parts = [self._describe_time()]
        month_day, weekday = self._fields[3], self._fields[5]
        if month_day not in ("*", "?") and weekday not in ("*", "?"):
            parts.append(f"{_describe_month_days(month_day)} or {_describe_weekdays(weekday)}")
        elif month_day not in ("*", "?"):
            parts.append(_describe_month_days(month_day))
        elif weekday not in ("*", "?"):
            parts.append(_describe_weekdays(weekday))
        if self._fields[4] != "*":
            parts.append("in " + _join(_describe_named_values(self._fields[4], _MONTH)))
        text = ", ".join(parts)
        return text[0].upper() + text[1:]

    def _describe_time(self) -> str:
        seconds, minutes, hours = self._fields[:3]
        time_format = "{:02d}:{:02d}:{:02d}" if self.has_seconds else "{:02d}:{:02d}"
        if all(_is_number_list(text) for text in (seconds, minutes, hours)):
            times = [
                time_format.format(hour, minute, second)
                for hour in self._hours
                for minute in self._minutes
                for second in self._seconds
            ]
            if len(times) <= 6:
                month_day, month, weekday = self._fields[3:]
                every_day = month_day in ("*", "?") and month == "*" and weekday in ("*", "?")
                return "at " + _join(times) + (" every day" if every_day else "")

        pieces: list[tuple[str, bool]] = []
        units = [("second", seconds), ("minute", minutes), ("hour", hours)]
        if not self.has_seconds:
            units = units[1:]
        for unit, text in units:
            repeating = not _is_number_list(text)
            if text == "*" and pieces and pieces[-1][1]:
                continue  # "every 15 minutes" already implies every hour
            if not repeating and pieces and not pieces[-1][1]:
                smaller, _ = pieces.pop()  # "at minute 5, second 30"
                merged = f"{_describe_unit(unit, text)}, {smaller.removeprefix('at ')}"
                pieces.append((merged, False))
                continue
            pieces.append((_describe_unit(unit, text), repeating))

        text = pieces[0][0]
        for (piece, _), (previous, previous_repeating) in zip(pieces[1:], pieces):
            text += (", " if previous_repeating else " of ") + piece
        return text


def _is_number_list(text: str) -> bool:
    return all(term.isascii() and term.isdigit() for term in text.split(","))


def _join(items: Iterable[str]) -> str:
    words = list(items)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _describe_unit(unit: str, text: str) -> str:
    """Describe a second, minute or hour field, such as "every 15 minutes from 5"."""
    if _is_number_list(text):
        values = [str(int(term)) for term in text.split(",")]
        return f"at {unit}{'s' if len(values) > 1 else ''} {_join(values)}"

    phrases = []
    for term in text.split(","):
        body, _, step = term.partition("/")
        every = f"every {int(step)} {unit}s" if step and int(step) != 1 else f"every {unit}"
        if body == "*":
            phrases.append(every)
        elif "-" in body:
            start, _, end = body.partition("-")
            phrases.append(f"{every} from {int(start)} through {int(end)}")
        elif step:
            phrases.append(f"{every} starting at {unit} {int(body)}")
        else:
            phrases.append(f"{unit} {int(body)}")
    return _join(phrases)


def _value_name(value: int, field: _Field) -> str:
    if field is _MONTH:
        return _MONTH_NAMES[value - 1]
    return _WEEKDAY_NAMES[value % 7]


def _describe_named_values(text: str, field: _Field) -> list[str]:
    """Describe month or weekday terms by name, such as "Monday through Friday"."""
    phrases = []
    for term in text.split(","):
        body, _, step = term.partition("/")
        if "-" in body and not step:
            start, _, end = body.partition("-")
            first = _value_name(_parse_value(start, field), field)
            last = _value_name(_parse_value(end, field), field)
            phrases.append(f"{first} through {last}")
        else:
            values = _parse_numeric_term(term, field)
            if field is _DAY_OF_WEEK:
                values = {value % 7 for value in values}
            phrases.extend(_value_name(value, field) for value in sorted(values))
    return phrases


def _describe_weekdays(text: str) -> str:
    phrases = []
    for term in text.split(","):
        if term.endswith("L"):
            name = _value_name(_parse_value(term[:-1], _DAY_OF_WEEK), _DAY_OF_WEEK)
            phrases.append(f"the last {name} of the month")
        elif "#" in term:
            weekday_text, _, nth = term.partition("#")
            name = _value_name(_parse_value(weekday_text, _DAY_OF_WEEK), _DAY_OF_WEEK)
            phrases.append(f"the {_ORDINALS[int(nth) - 1]} {name} of the month")
        else:
            phrases.extend(_describe_named_values(term, _DAY_OF_WEEK))
    if "," not in text and "-" in text and "/" not in text:
        return phrases[0]  # a single range reads best bare: "Monday through Friday"
    return "on " + _join(phrases)


def _describe_month_days(text: str) -> str:
    phrases = []
    for term in text.split(","):
        body, _, step = term.partition("/")
        start, _, end = body.partition("-")
        if term == "L":
            phrases.append("the last day")
        elif term == "LW":
            phrases.append("the last weekday")
        elif term.startswith("L-"):
            phrases.append(f"the {_ordinal_number(int(term[2:]))} day before the last day")
        elif term.endswith("W"):
            phrases.append(f"the weekday nearest day {int(term[:-1])}")
        elif step and body == "*":
            phrases.append(f"every {_ordinal_number(int(step))} day")
        elif step:
            until = f" through {int(end)}" if end else ""
            phrases.append(f"every {_ordinal_number(int(step))} day from day {int(start)}{until}")
        elif end:
            phrases.append(f"days {int(start)} through {int(end)}")
        else:
            phrases.append(f"day {int(body)}")
    return f"on {_join(phrases)} of the month"


def _ordinal_number(value: int) -> str:
    suffix = "th"
    if value % 100 not in (11, 12, 13):
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(value % 10, "th")
    return f"{value}{suffix}"

"""The dates a query speaks of: "yesterday", "last week", "in May", "on 3 June, 2023",
"the week before August 3" → inclusive date ranges, read against the day the query is asked.

Pure: text and `today` in, ranges out. Search uses them to lift entries written in those days
(a daily log's date, a note's frontmatter date); a query without a date expression gets no
range and is ranked as before.

What the words mean is what a person asking on `today` means: "last week" is the calendar week
before this one (Monday to Sunday), "in May" the latest May that has begun, "on Friday" the
latest Friday before today. A month name alone counts only after a
preposition ("in May", "since June"), so the verb "may" is never a date. Words that name no
day ("when", "how long ago", "later", "recently": whose frame is the speaker's, not the
query's) give nothing.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
MONTHS["sept"] = 9
WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
           "seven": 7, "eight": 8, "nine": 9, "ten": 10, "a couple of": 2, "a few": 3}
SEASONS = {"spring": (3, 5), "summer": (6, 8), "autumn": (9, 11), "fall": (9, 11),
           "winter": (12, 2)}

_MONTH = r"(?P<month>" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>(?:19|20)\d\d)"
_NUM = r"(?P<num>\d+|" + "|".join(sorted(NUMBERS, key=len, reverse=True)) + ")"
_UNIT = r"(?P<unit>day|week|weekend|month|year)s?"
_PREP = r"(?:in|during|since|until|till|by|before|after|of|from|through|last|this|early|late|mid)"

# Each pattern names its parts; `_ranges` reads them. Order matters: a span matched once is
# not matched again by a later (shorter) pattern.
_PATTERNS = [
    ("iso", re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})\b")),
    ("mdy", re.compile(rf"\b{_MONTH}\s+{_DAY}(?:\s*,\s*|\s+){_YEAR}\b", re.I)),
    ("dmy", re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}(?:\s*,\s*|\s+){_YEAR}\b", re.I)),
    ("md", re.compile(rf"\b{_MONTH}\s+{_DAY}\b(?!\s*(?:,\s*)?\d)", re.I)),
    ("dm", re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}\b(?!\s*,?\s*\d)", re.I)),
    ("my", re.compile(rf"\b{_MONTH}\s*,?\s+{_YEAR}\b", re.I)),
    ("m", re.compile(rf"\b{_PREP}\s+(?:the\s+)?(?:(?:early|late|mid)-?\s*)?{_MONTH}\b", re.I)),
    ("y", re.compile(rf"\b(?:in|during|since|of|from|until|by|before|after)\s+{_YEAR}\b", re.I)),
    ("ago", re.compile(rf"\b{_NUM}\s+{_UNIT}\s+ago\b", re.I)),
    ("rel", re.compile(r"\b(?P<which>last|this|past|previous)\s+(?P<what>week|weekend|month|"
                       r"year|spring|summer|autumn|fall|winter|" + "|".join(WEEKDAYS) + r")\b",
                       re.I)),
    ("season", re.compile(r"\b(?:in|during|over)\s+the\s+(?P<season>spring|summer|autumn|fall|"
                          r"winter)\b", re.I)),
    ("day", re.compile(r"\b(?P<word>today|tonight|yesterday)\b", re.I)),
    ("weekday", re.compile(r"\b(?:on|last)\s+(?P<weekday>" + "|".join(WEEKDAYS) + r")\b",
                           re.I)),
]
# Every pattern above needs a digit or one of these words: most queries name no date, and one
# search of this rules out all the patterns at once.
_ANY = re.compile(r"\d|\b(?:" + "|".join(sorted(
    [*MONTHS, *WEEKDAYS, *SEASONS, "today", "tonight", "yesterday", "last", "this", "past",
     "previous", "ago"], key=len, reverse=True)) + r")\b", re.I)
# "the week before X", "two weeks before X", "the weekend of X": a window beside an anchor
_AROUND = re.compile(rf"(?:\bthe\s+|\b{_NUM}\s+)?{_UNIT}\s+(?P<side>before|after|of)\s*$", re.I)


@dataclass(frozen=True)
class DateRange:
    """Days from `start` to `end`, both included; `text`: the words that named them."""

    start: dt.date
    end: dt.date
    text: str

    def __contains__(self, day: object) -> bool:
        return isinstance(day, dt.date) and self.start <= day <= self.end


def query_dates(query: str, today: dt.date) -> list[DateRange]:
    """The date ranges `query` names, in the order written; [] when it names none."""
    if not _ANY.search(query):
        return []
    taken: list[tuple[int, int]] = []
    found: list[tuple[int, DateRange]] = []
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(query):
            if any(m.start() < b and a < m.end() for a, b in taken):
                continue
            days = _ranges(kind, m, today)
            if days is None:
                continue
            start, end = days
            start_at = m.start()
            around = _AROUND.search(query[:m.start()].rstrip(" ,"))
            if around and kind in ("iso", "mdy", "dmy", "md", "dm", "weekday"):
                start, end = _beside(around, start)
                start_at = around.start()
            taken.append((start_at, m.end()))
            found.append((start_at, DateRange(start, end, query[start_at:m.end()].strip())))
    return [r for _, r in sorted(found, key=lambda f: f[0])]


def _ranges(kind: str, m: re.Match[str], today: dt.date) -> tuple[dt.date, dt.date] | None:
    g = m.groupdict()
    try:
        if kind == "iso":
            day = dt.date(int(g["y"]), int(g["m"]), int(g["d"]))
            return day, day
        if kind in ("mdy", "dmy"):
            day = dt.date(int(g["year"]), MONTHS[g["month"].lower()], int(g["day"]))
            return day, day
        if kind in ("md", "dm"):
            return _latest_day(MONTHS[g["month"].lower()], int(g["day"]), today)
    except ValueError:  # "February 30": names no day
        return None
    if kind == "my":
        return _month(int(g["year"]), MONTHS[g["month"].lower()])
    if kind == "m":
        month = MONTHS[g["month"].lower()]
        return _month(today.year if month <= today.month else today.year - 1, month)
    if kind == "y":
        year = int(g["year"])
        return dt.date(year, 1, 1), dt.date(year, 12, 31)
    if kind == "ago":
        return _ago(_number(g["num"]), g["unit"].lower(), today)
    if kind == "rel":
        return _relative(g["which"].lower(), g["what"].lower(), today)
    if kind == "season":
        return _season(g["season"].lower(), today, back=0)
    if kind == "day":
        word = g["word"].lower()
        if word in ("today", "tonight"):
            return today, today
        return today - dt.timedelta(days=1), today - dt.timedelta(days=1)
    if kind == "weekday":
        day = _latest_weekday(WEEKDAYS[g["weekday"].lower()], today)
        return day, day
    return None


def _number(text: str) -> int:
    text = " ".join(text.lower().split())
    return int(text) if text.isdigit() else NUMBERS.get(text, 1)


def _month(year: int, month: int) -> tuple[dt.date, dt.date]:
    return dt.date(year, month, 1), dt.date(year, month, calendar.monthrange(year, month)[1])


def _latest_day(month: int, day: int, today: dt.date) -> tuple[dt.date, dt.date]:
    """The latest `month` `day` on or before today (a day without a year means the past)."""
    year = today.year
    try:
        candidate = dt.date(year, month, day)
    except ValueError:  # February 29 in a common year
        candidate = dt.date(year, month, 28)
    if candidate > today:
        candidate = dt.date(year - 1, month, min(day, calendar.monthrange(year - 1, month)[1]))
    return candidate, candidate


def _latest_weekday(weekday: int, today: dt.date) -> dt.date:
    back = (today.weekday() - weekday) % 7 or 7
    return today - dt.timedelta(days=back)


def _monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def _ago(n: int, unit: str, today: dt.date) -> tuple[dt.date, dt.date]:
    """About `n` units before today: a window as wide as the unit, since "three weeks ago"
    is not a day."""
    if unit == "day":
        day = today - dt.timedelta(days=n)
        return day, day
    if unit in ("week", "weekend"):
        centre = today - dt.timedelta(weeks=n)
        return centre - dt.timedelta(days=3), centre + dt.timedelta(days=3)
    if unit == "month":
        year, month = divmod(today.year * 12 + today.month - 1 - n, 12)
        return _month(year, month + 1)
    return dt.date(today.year - n, 1, 1), dt.date(today.year - n, 12, 31)


def _relative(which: str, what: str, today: dt.date) -> tuple[dt.date, dt.date]:
    back = 0 if which == "this" else 1
    if what in ("week", "weekend"):
        if which == "past" and what == "week":
            return today - dt.timedelta(days=7), today
        monday = _monday(today) - dt.timedelta(weeks=back)
        if what == "weekend":
            saturday = monday + dt.timedelta(days=5)
            if back and saturday + dt.timedelta(days=1) >= today:  # no full weekend yet
                saturday -= dt.timedelta(weeks=1)
            return saturday, saturday + dt.timedelta(days=1)
        return monday, monday + dt.timedelta(days=6)
    if what == "month":
        if which == "past":
            return today - dt.timedelta(days=30), today
        year, month = divmod(today.year * 12 + today.month - 1 - back, 12)
        return _month(year, month + 1)
    if what == "year":
        if which == "past":
            return today - dt.timedelta(days=365), today
        return dt.date(today.year - back, 1, 1), dt.date(today.year - back, 12, 31)
    if what in SEASONS:
        if which == "this":
            return _season(what, today, back=0)
        start, end = _season(what, today, back=0)  # "last summer": the latest one over
        return (start, end) if end < today else _season(what, today, back=1)
    day = _latest_weekday(WEEKDAYS[what], today)
    if which == "last" and day > today - dt.timedelta(days=today.weekday() + 1):
        day -= dt.timedelta(weeks=1)  # "last Friday" said on a Saturday is not yesterday
    return day, day


def _season(name: str, today: dt.date, back: int) -> tuple[dt.date, dt.date]:
    """The latest such season that has begun (`back` = 1: the one before it); northern
    hemisphere months."""
    first, last = SEASONS[name]
    year = today.year if today.month >= first else today.year - 1
    year -= back
    end_year = year + 1 if last < first else year
    return dt.date(year, first, 1), dt.date(end_year, last, calendar.monthrange(end_year, last)[1])


def _beside(around: re.Match[str], anchor: dt.date) -> tuple[dt.date, dt.date]:
    """The window "the week before <anchor>", "two weeks before", "the weekend of" names."""
    g = around.groupdict()
    n = _number(g["num"]) if g.get("num") else 1
    unit = g["unit"].lower()
    span = {"day": 1, "week": 7, "weekend": 7, "month": 31, "year": 366}[unit] * n
    if g["side"].lower() == "before":
        return anchor - dt.timedelta(days=span), anchor - dt.timedelta(days=1)
    if g["side"].lower() == "after":
        return anchor + dt.timedelta(days=1), anchor + dt.timedelta(days=span)
    return anchor - dt.timedelta(days=span // 2), anchor + dt.timedelta(days=span // 2)

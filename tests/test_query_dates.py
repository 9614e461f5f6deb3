"""Dates in a query: what the words mean on the day the query is asked (pure, no fixture)."""

from __future__ import annotations

import datetime as dt

import pytest

from vaultd.query_dates import query_dates

MONDAY = dt.date(2023, 10, 23)  # the day these queries are asked on


def days(query: str, today: dt.date = MONDAY) -> list[tuple[str, str]]:
    return [(r.start.isoformat(), r.end.isoformat()) for r in query_dates(query, today)]


@pytest.mark.parametrize(("query", "expected"), [
    ("meeting notes from 2023-05-08", [("2023-05-08", "2023-05-08")]),
    ("what did Gina find on 1 February, 2023?", [("2023-02-01", "2023-02-01")]),
    ("what happened on May 23, 2023", [("2023-05-23", "2023-05-23")]),
    ("the 3rd of June 2023 standup", [("2023-06-03", "2023-06-03")]),
    ("what did we paint in July 2023", [("2023-07-01", "2023-07-31")]),
    ("the setback in October, 2023", [("2023-10-01", "2023-10-31")]),
    ("how many beach trips in 2022", [("2022-01-01", "2022-12-31")]),
    ("what happened yesterday", [("2023-10-22", "2023-10-22")]),
    ("notes from today", [("2023-10-23", "2023-10-23")]),
])
def test_absolute_and_named_days(query: str, expected: list[tuple[str, str]]) -> None:
    assert days(query) == expected


def test_a_month_without_a_year_is_the_latest_one_begun() -> None:
    assert days("when did Melanie go camping in June?") == [("2023-06-01", "2023-06-30")]
    assert days("what did we ship in October") == [("2023-10-01", "2023-10-31")]
    # asked in October, "in December" is last December, not a December still to come
    assert days("the party in December") == [("2022-12-01", "2022-12-31")]


def test_a_day_without_a_year_is_the_latest_one_on_or_before_today() -> None:
    assert days("what did I write on June 3") == [("2023-06-03", "2023-06-03")]
    assert days("the review on November 2") == [("2022-11-02", "2022-11-02")]


def test_last_week_is_the_calendar_week_before_this_one() -> None:
    assert days("what did I do last week") == [("2023-10-16", "2023-10-22")]
    assert days("what did I do this week") == [("2023-10-23", "2023-10-29")]
    assert days("anything in the past week") == [("2023-10-16", "2023-10-23")]


def test_last_month_year_and_weekend() -> None:
    assert days("what broke last month") == [("2023-09-01", "2023-09-30")]
    assert days("the trip last year") == [("2022-01-01", "2022-12-31")]
    assert days("what did we do last weekend") == [("2023-10-21", "2023-10-22")]
    saturday = dt.date(2023, 10, 21)  # on a Saturday, the weekend before this one
    assert days("what did we do last weekend", saturday) == [("2023-10-14", "2023-10-15")]


def test_weekdays_are_the_latest_before_today() -> None:
    assert days("the call on Friday") == [("2023-10-20", "2023-10-20")]
    assert days("what did we decide last friday") == [("2023-10-20", "2023-10-20")]
    assert days("on Monday") == [("2023-10-16", "2023-10-16")]  # today is Monday: a week ago


def test_seasons_are_the_latest_one_begun_or_over() -> None:
    assert days("a pride parade during the summer") == [("2023-06-01", "2023-08-31")]
    assert days("what did we do last summer") == [("2023-06-01", "2023-08-31")]
    july = dt.date(2023, 7, 10)  # in the middle of summer, "last summer" is the one before
    assert days("what did we do last summer", july) == [("2022-06-01", "2022-08-31")]
    assert days("skiing last winter") == [("2022-12-01", "2023-02-28")]


def test_ago_is_a_window_as_wide_as_its_unit() -> None:
    assert days("three days ago") == [("2023-10-20", "2023-10-20")]
    assert days("two weeks ago") == [("2023-10-06", "2023-10-12")]
    assert days("a month ago") == [("2023-09-01", "2023-09-30")]


def test_a_window_beside_a_date() -> None:
    assert days("what did John do the week before August 3, 2023") == [
        ("2023-07-27", "2023-08-02")]
    assert days("the puppy she got two weeks before August 11, 2023") == [
        ("2023-07-28", "2023-08-10")]
    assert days("the weekend of 2023-07-15") == [("2023-07-12", "2023-07-18")]


def test_several_dates_in_the_order_written() -> None:
    assert days("between 1 May 2023 and 3 June 2023") == [
        ("2023-05-01", "2023-05-01"), ("2023-06-03", "2023-06-03")]


@pytest.mark.parametrize("query", [
    "when did Caroline go to the LGBTQ support group?",  # asks for a date, names none
    "what may I do about the cache",  # the verb, not the month
    "how long ago was her 18th birthday",
    "what did Melanie paint recently",  # "recently" is the speaker's frame, not a day
    "set the timeout to 2023 ms",  # a number, not a year
    "march the migration forward",
    "error on February 30, 2023",  # no such day
    "",
])
def test_no_date_no_range(query: str) -> None:
    assert days(query) == []


def test_the_matched_words_are_kept() -> None:
    (found,) = query_dates("what did we ship in July 2023?", MONDAY)
    assert found.text == "July 2023"
    assert dt.date(2023, 7, 9) in found and dt.date(2023, 8, 1) not in found

"""Periods in time: earlier periods, deadlines (schemas/periods.yaml, --deadline) and lateness."""

import datetime as dt

import pandas as pd
import pytest

from pipeline.definition import DefinitionError
from pipeline.periods import (
    Deadlines,
    earlier_period,
    earlier_periods,
    lateness,
    load_deadlines,
    local_times,
    parse_deadline,
    period_end,
)

EARLIER = [
    ("2020-H1", "previous", "2019-H2"),
    ("2020-H1", "same_last_year", "2019-H1"),
    ("2020-H2", "previous", "2020-H1"),
    ("2020-H2", "same_last_year", "2019-H2"),
    ("2020", "previous", "2019"),
    ("2020", "same_last_year", "2019"),
]


@pytest.mark.parametrize(("period", "kind", "expected"), EARLIER)
def test_earlier_period(period, kind, expected):
    assert earlier_period(period, kind) == expected


def test_a_year_is_compared_with_last_year_once():
    assert earlier_periods("2020") == [("previous", "2019")]
    assert earlier_periods("2020-H1") == [("previous", "2019-H2"), ("same_last_year", "2019-H1")]
    assert earlier_periods("2020-H1", ("same_last_year",)) == [("same_last_year", "2019-H1")]


DEADLINES = [
    (Deadlines(), "2020-H1", dt.date(2020, 6, 20)),
    (Deadlines(), "2020-H2", dt.date(2020, 12, 20)),
    (Deadlines(), "2020", dt.date(2020, 12, 20)),
    (Deadlines(day=10, months_after_end=1), "2020-H1", dt.date(2020, 7, 10)),
    (Deadlines(day=15, months_after_end=1), "2020-H2", dt.date(2021, 1, 15)),
    (Deadlines(day=31, months_after_end=2), "2020-H1", dt.date(2020, 8, 31)),
    (Deadlines(day=31, months_after_end=0), "2020-H1", dt.date(2020, 6, 30)),  # June has 30 days
    (Deadlines(dates={"2020-H1": dt.date(2020, 6, 25)}), "2020-H1", dt.date(2020, 6, 25)),
    (Deadlines(dates={"2020-H1": dt.date(2020, 6, 25)}), "2020-H2", dt.date(2020, 12, 20)),
]


@pytest.mark.parametrize(("rule", "period", "expected"), DEADLINES)
def test_deadline_of_a_period(rule, period, expected):
    assert rule.for_period(period) == expected


def test_the_shipped_periods_file_follows_the_domain_rule():
    assert load_deadlines().for_period("2020-H1") == dt.date(2020, 6, 20)
    assert period_end("2020-H1") == dt.date(2020, 6, 30)


def test_a_periods_file_sets_a_date(tmp_path):
    path = tmp_path / "periods.yaml"
    path.write_text(
        "default: {day: 25, months_after_end: 0}\ndeadlines:\n  2020-H1: 2020-07-05\n", encoding="utf-8"
    )
    rule = load_deadlines(path)
    assert (rule.for_period("2020-H1"), rule.for_period("2020-H2")) == (
        dt.date(2020, 7, 5),
        dt.date(2020, 12, 25),
    )
    assert load_deadlines(tmp_path / "none.yaml") == Deadlines()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default: {day: 40}\n", "'day' phải từ 1 đến 31"),
        ("deadlines: {2020-H3: 2020-06-01}\n", "kỳ báo cáo không hợp lệ"),
        ("deadlines: {2020-H1: 31/06/2020}\n", "ngày không hợp lệ"),
        ("- a\n- b\n", "bảng khóa-giá trị"),
        ("default: [\n", "không đọc được"),
    ],
)
def test_a_bad_periods_file_names_the_entry(tmp_path, text, message):
    path = tmp_path / "periods.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DefinitionError, match=message):
        load_deadlines(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-06-25", dt.date(2020, 6, 25)),
        ("25/06/2020", dt.date(2020, 6, 25)),
        ("5/7/2020", dt.date(2020, 7, 5)),
        (" 25.06.2020 ", dt.date(2020, 6, 25)),
    ],
)
def test_parse_deadline(text, expected):
    assert parse_deadline(text) == expected


@pytest.mark.parametrize("text", ["30/02/2020", "ngày mai", "2020-13-01", ""])
def test_a_bad_deadline_is_refused_in_vietnamese(text):
    with pytest.raises(DefinitionError, match="hạn nộp không hợp lệ"):
        parse_deadline(text)


# received (local time; None = nothing received) → (days late, words), deadline 20/06/2020, today 30/06/2020
LATENESS = [
    ("2020-06-19 23:59:00", 0, "Đúng hạn"),
    ("2020-06-20 23:59:00", 0, "Đúng hạn"),  # on the deadline day
    ("2020-06-21 00:01:00", 1, "Muộn 1 ngày"),
    ("2020-06-23 09:00:00", 3, "Muộn 3 ngày"),
    (None, 10, "Quá hạn 10 ngày"),
]


@pytest.mark.parametrize(("received", "days", "words"), LATENESS)
def test_lateness(received, days, words):
    got_days, got_words = lateness(
        pd.Series(pd.to_datetime([received])), dt.date(2020, 6, 20), dt.date(2020, 6, 30)
    )
    assert (int(got_days[0]), got_words[0]) == (days, words)


def test_lateness_without_deadline_or_before_it():
    times = pd.Series(pd.to_datetime(["2020-06-10 08:00:00", None]))
    days, words = lateness(times, None, dt.date(2020, 6, 30))
    assert days.isna().all() and words.tolist() == ["", ""]
    days, words = lateness(times, dt.date(2020, 6, 20), dt.date(2020, 6, 15))  # not yet due
    assert words.tolist() == ["Đúng hạn", ""] and pd.isna(days[1])


def test_local_times_follow_this_computer_and_skip_bad_text():
    got = local_times(pd.Series(["2020-06-23T18:00:00+07:00", "", None, "hôm qua"]))
    want = dt.datetime.fromisoformat("2020-06-23T18:00:00+07:00").astimezone().replace(tzinfo=None)
    assert got[0] == pd.Timestamp(want) and got[1:].isna().all()

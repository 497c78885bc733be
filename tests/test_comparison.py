"""Comparison with earlier periods (definition limits, warnings, district figures) and what changed
between two versions of a report, as pure functions of frames."""

import math

import pandas as pd
import pytest

from pipeline.definition import DefinitionError, build_definition, load_definition, parse_history
from pipeline.findings import make_findings
from pipeline.history.changes import diff_versions, summarise_changes
from pipeline.history.comparison import change_text, compare_districts, flag_changes

DEF = load_definition()


@pytest.mark.parametrize(
    ("pct", "text"),
    [
        (114.7912, "tăng 114,79 %"),
        (250.0, "tăng 250 %"),
        (-20.0, "giảm 20 %"),
        (0.001, "không đổi"),
        (-0.5, "giảm 0,5 %"),
        (1234.5, "tăng 1.234,5 %"),
        (math.nan, ""),
    ],
)
def test_change_text_as_reports_write_it(pct, text):
    assert change_text(pct) == text


# (field, now, previous period 2019-H2, same period last year 2019-H1) → flagged? (limits from the YAML:
# participants rise 200 / fall 75 / min_previous 50; households rise 15 / fall 15 / min_previous 100)
FLAGS = [
    ("health.participants", 1225.0, 350.0, None, "tăng 250 %"),  # beyond +200 %
    ("health.participants", 1000.0, 350.0, None, None),  # +185.7 %: within
    ("health.participants", 80.0, 350.0, None, "giảm 77,14 %"),  # beyond -75 %
    ("health.participants", 400.0, 40.0, None, None),  # earlier figure under min_previous 50: not compared
    ("health.participants", 1225.0, 350.0, 1200.0, None),  # seasonal: like the same period last year
    ("health.participants", 1225.0, None, 300.0, "tăng 308,33 %"),  # only last year known
    ("health.participants", 1225.0, 0.0, None, None),  # from 0: no percentage
    ("households", 2379.0, 2000.0, None, "tăng 18,95 %"),
    ("households", 2379.0, 2200.0, None, None),
    ("population", 8000.0, 20000.0, 19000.0, "giảm 60 %"),  # beyond against both: names the previous one
    ("unit_name", 1.0, 5.0, None, None),  # no limits for this field
]


@pytest.mark.parametrize(("field", "now", "previous", "last_year", "change"), FLAGS)
def test_flag_changes(field, now, previous, last_year, change):
    current = pd.DataFrame(
        {"submission": [7], "unit_code": ["07093"], "field": [field], "value": [now], "cell": ["D9"]}
    )
    earlier = pd.DataFrame(
        [("07093", field, v, p) for v, p in ((previous, "2019-H2"), (last_year, "2019-H1")) if v is not None],
        columns=["unit_code", "field", "value", "period"],
    )
    got = flag_changes(current, earlier, DEF, "2020-H1")
    if change is None:
        assert got.empty
        return
    assert got[["submission", "field", "cell", "rule", "change"]].values.tolist() == [
        [7, field, "D9", "change-vs-previous", change]
    ]
    first = previous if previous not in (None, 0.0) else last_year
    assert got["previous"][0] == first
    assert got["previous_period"][0] == (
        "kỳ trước, 6 tháng cuối năm 2019" if first == previous else "cùng kỳ năm trước, 6 tháng đầu năm 2019"
    )


def test_flag_changes_is_one_pass_over_every_unit_and_the_message_reads_well():
    current = pd.DataFrame(
        {
            "submission": [1, 2, 3],
            "unit_code": ["a", "b", "c"],
            "field": ["health.participants"] * 3,
            "value": [1225.0, 400.0, 90.0],
            "cell": ["D9"] * 3,
        }
    )
    earlier = pd.DataFrame(
        {
            "unit_code": ["a", "b", "c", "c"],
            "field": ["health.participants"] * 4,
            "value": [350.0, 350.0, 500.0, 480.0],
            "period": ["2019-H2", "2019-H2", "2019-H2", "2019-H1"],
        }
    )
    got = flag_changes(current, earlier, DEF, "2020-H1")
    assert got["submission"].tolist() == [1, 3]
    f = make_findings(
        got.assign(sheet="Kết quả hoạt động", label="Chuyên đề Giáo dục sức khỏe – Tổng số"), DEF.rules
    )
    assert f["severity"].tolist() == ["warning", "warning"]
    assert (
        "ghi 1.225, tăng 250 % so với kỳ trước, 6 tháng cuối năm 2019 (350). Đề nghị kiểm tra lại"
        in f["message"][0]
    )


def test_compare_districts_takes_the_first_earlier_period_the_store_has():
    district = pd.DataFrame(
        {
            "district_code": ["205", "205", "206"],
            "field": ["total.participants", "households", "households"],
            "value": [1778.0, 1100.0, 50.0],
            "units": [18, 18, 2],
        }
    )
    earlier = pd.DataFrame(
        {
            "district_code": ["205", "205", "206"],
            "field": ["total.participants"] * 2 + ["households"],
            "value": [828.0, 900.0, 40.0],
            "period": ["2019-H2", "2019-H1", "2019-H1"],
        }
    )
    got = compare_districts(district, earlier, DEF, "2020-H1")
    assert got["change"].tolist() == ["tăng 114,73 %", "", "tăng 25 %"]
    assert got["previous_period"].tolist() == ["2019-H2", "2019-H2", "2019-H1"]
    assert got["previous_label"][2] == "cùng kỳ năm trước, 6 tháng đầu năm 2019"
    assert math.isnan(got["previous"][1])
    empty = compare_districts(district, pd.DataFrame(), DEF, "2020-H1")
    assert empty["previous"].isna().all() and (empty["change"] == "").all()


def _raw():
    import yaml

    return yaml.safe_load(DEF.path.read_text(encoding="utf-8"))


def test_the_history_section_is_read_from_the_definition():
    h = DEF.history
    assert h.compare_with == ("previous", "same_last_year")
    assert h.frame.loc["total.participants"].tolist() == [200.0, 75.0, 50.0]
    assert "health.participants" in h.frame.index and "unit_name" not in h.frame.index
    raw = _raw()
    del raw["history"]
    assert build_definition(raw, DEF.path).history.limits == ()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ([], "bảng khóa-giá trị"),
        ({"compare": []}, "khóa không biết"),
        ({"compare_with": ["last_month"]}, "previous và/hoặc same_last_year"),
        ({"changes": [{"fields": ["households"]}]}, "cần 'rise' hoặc 'fall'"),
        ({"changes": [{"fields": ["households"], "rise": -1}]}, "'rise' phải là số không âm"),
        ({"changes": [{"fields": ["households"], "fall": 100}]}, "'fall' phải nhỏ hơn 100"),
        ({"changes": [{"fields": ["nowhere"], "rise": 10}]}, "'nowhere' không có trong định nghĩa"),
        ({"changes": [{"fields": ["unit_name"], "rise": 10}]}, "không phải trường số"),
        ({"changes": [{"fields": "households", "rise": 10}]}, "danh sách trường"),
        ({"changes": [{"fields": ["households"], "rise": 10, "max": 3}]}, "khóa không biết"),
    ],
)
def test_a_bad_history_section_names_the_entry(section, message):
    with pytest.raises(DefinitionError, match=message) as exc:
        parse_history(section, DEF.fields, ["health"], "x.yaml")
    assert "x.yaml: history" in str(exc.value)


def _values(rows):
    return pd.DataFrame(rows, columns=["submission", "field", "cell", "value", "text", "raw"])


# (old value, new value) of one field → the change shown, or None when the same
DIFFS = [
    (
        ("households", 2379.0, None, "2.379"),
        ("households", 2379.0, None, 2379),
        None,
    ),  # same figure, typed apart
    (("households", 2379.0, None, "2.379"), ("households", 2400.0, None, 2400), ("2.379", "2.400")),
    (
        ("health.participants", 350.0, None, 350),
        ("health.participants", math.nan, None, None),
        ("350", "(trống)"),
    ),
    (("female", math.nan, None, None), ("female", math.nan, None, ""), None),  # blank both times
    (
        ("mobilization_unions", math.nan, "Tốt", "Tốt"),
        ("mobilization_unions", math.nan, "Khá", "Khá"),
        ("Tốt", "Khá"),
    ),
    (
        ("report_date", math.nan, "2020-06-05", "5/6/2020"),
        ("report_date", math.nan, "2020-06-28", 43999.0),
        ("05/06/2020", "28/06/2020"),
    ),
    (("reporter", math.nan, " Lan ", " Lan "), ("reporter", math.nan, "Lan", "Lan"), None),
]


@pytest.mark.parametrize(("old", "new", "shown"), DIFFS)
def test_diff_versions(old, new, shown):
    f = old[0] if old[0] in DEF.fields else "households"
    a = _values([(0, f, "B9", *old[1:])])
    b = _values([(1, f, "B10", *new[1:])])
    got = diff_versions(a, b, pd.DataFrame({"old": [0], "new": [1]}), DEF)
    if shown is None:
        assert got.empty
    else:
        assert got[["new", "old", "field", "cell", "before", "after"]].values.tolist() == [
            [1, 0, f, "B10", *shown]
        ]


def test_diff_versions_pairs_many_submissions_at_once_in_report_order():
    values = _values(
        [
            (0, "health.participants", "D9", 350.0, None, 350),
            (0, "households", "B9", 2379.0, None, 2379),
            (1, "health.participants", "D9", 400.0, None, 400),
            (1, "households", "B9", 2380.0, None, 2380),
            (2, "households", "B9", 10.0, None, 10),
            (3, "households", "B9", 10.0, None, 10),
            (3, "quarters", "B11", 6.0, None, 6),
        ]
    )
    got = diff_versions(values, values, pd.DataFrame({"old": [0, 2], "new": [1, 3]}), DEF)
    assert got[["new", "field", "before", "after"]].values.tolist() == [
        [1, "households", "2.379", "2.380"],
        [1, "health.participants", "350", "400"],
        [3, "quarters", "(trống)", "6"],
    ]
    assert got["sheet"].tolist() == ["Thông tin chung", "Kết quả hoạt động", "Thông tin chung"]
    text = summarise_changes(got, limit=1)
    assert text[1] == "Thông tin chung!B9: 2.379 → 2.380; và 1 ô khác"
    assert text[3] == "Thông tin chung!B11: (trống) → 6"

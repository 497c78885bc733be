"""Plausibility within one unit: each ratio, the magnitude diagnosis and the report date, firing on a slip and
silent on a near miss; the YAML section checked; a second report's rules from its own YAML."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import yaml

from pipeline.checks.plausibility import bounds_text, plausibility_findings, ratio_checks, round_figure
from pipeline.checks.validate import CELL_COLUMNS, validate
from pipeline.definition import DEFAULT_DEFINITION, DefinitionError, build_definition, load_definition
from pipeline.findings import make_findings

DEF = load_definition()
# Phường Đức Chính's seed report with its slips corrected, the "Nữ" column and a few poor households filled.
CLEAN = {
    "unit_code": "07093",
    "unit_name": "Phường Đức Chính",
    "period": "2020-H1",
    "area_ha": 628,
    "households": 2379,
    "population": 8000,
    "quarters": 6,
    "production_value_bn": 785.87,
    "income_per_capita_mn": 94.34,
    "board_directors": 1,
    "board_deputies": 2,
    "board_total": 3,
    "culture_houses": 6,
    "law_bookcases": 6,
    "conferences": 20,
    "conference_attendees": 2215,
    "reporter": "Nguyễn Thị Hoa",
    "report_date": "15/6/2020",
    "literacy.classes": 0,
    "vocational.classes": 0,
    "law.classes": 0,
    "health.classes": 2,
    "health.participants": 350,
    "health.female": 200,
    "economy.classes": 3,
    "economy.participants": 150,
    "economy.female": 90,
    "other.classes": 2,
    "other.participants": 142,
    "other.female": 70,
    "arts_sports.classes": 10,
    "arts_sports.participants": 186,
    "arts_sports.female": 100,
    "literacy_rate": 100,
    "learners": 828,
    "poor_households": 20,
    "near_poor_households": 31,
    "waste_collection_rate": 92,
    "cultural_family_rate": 96.5,
    "cultural_quarter_rate": 100,
    "mobilization_unions": "Tốt",
    "mobilization_business": "Khá",
    "mobilization_donors": "Khá",
    "target_participation_rate": 70,
}
NEW_RULES = {
    "ratio-implausible",
    "population-per-household",
    "magnitude-thousand",
    "magnitude-million",
    "report-date-outside-period",
}


def cells(*subs: dict, definition=DEF) -> pd.DataFrame:
    rows = [
        (i, f.id, sub.get(f.id), f.cell, False, "")
        for i, sub in enumerate(subs)
        for f in definition.fields.values()
    ]
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def findings(*subs: dict, definition=DEF) -> pd.DataFrame:
    _, f = validate(definition, cells(*subs, definition=definition))
    return f


def plausible(change: dict) -> set[tuple[str, str]]:
    """(field, rule) of the plausibility findings of CLEAN with `change`."""
    f = findings({**CLEAN, **change})
    return {(r.field, r.rule) for r in f.itertuples() if r.rule in NEW_RULES}


def test_the_clean_report_has_no_finding():
    assert findings(CLEAN).empty


# change -> (cell marked, rule), then a near miss of the same ratio that must stay silent
RATIOS = [
    (
        "persons_per_household",
        {"population": 80000},
        ("population", "population-per-household"),
        {"population": 18000},
    ),
    (
        "persons_per_household",
        {"households": 900},
        ("population", "population-per-household"),
        {"households": 1100},
    ),
    ("people_per_quarter", {"quarters": 300}, ("quarters", "ratio-implausible"), {"quarters": 250}),
    ("people_per_hectare", {"area_ha": 628000}, ("area_ha", "ratio-implausible"), {"area_ha": 200000}),
    ("people_per_hectare", {"area_ha": 3.5}, ("area_ha", "ratio-implausible"), {"area_ha": 4.5}),
    (
        "income_per_capita",
        {"income_per_capita_mn": 4.2},
        ("income_per_capita_mn", "ratio-implausible"),
        {"income_per_capita_mn": 5.5},
    ),
    (
        "income_to_production_per_person",
        {"production_value_bn": 78587},
        ("production_value_bn", "ratio-implausible"),
        {"production_value_bn": 70000},
    ),
    (
        "participants_per_class",
        {"health.classes": 400},
        ("health.classes", "ratio-implausible"),
        {"health.classes": 150},
    ),
    # 1,100 a class: the women (half of 3,300) agree with the participants, so the classes are marked
    (
        "participants_per_class",
        {"economy.participants": 3300, "economy.female": 1700},
        ("economy.classes", "ratio-implausible"),
        {"economy.participants": 2900, "economy.female": 1500},
    ),
    (
        "female_share",
        {"health.participants": 35000},
        ("health.participants", "ratio-implausible"),
        {"health.female": 10},
    ),
    (
        "participants_per_person",
        {"arts_sports.classes": 100, "arts_sports.participants": 90000, "arts_sports.female": 40000},
        ("arts_sports.participants", "ratio-implausible"),
        {"arts_sports.classes": 100, "arts_sports.participants": 70000, "arts_sports.female": 30000},
    ),
    (
        "classes_per_thousand",
        {"arts_sports.classes": 900, "arts_sports.participants": 18000, "arts_sports.female": 9000},
        ("arts_sports.classes", "ratio-implausible"),
        {"arts_sports.classes": 700, "arts_sports.participants": 14000, "arts_sports.female": 7000},
    ),
    (
        "attendees_per_conference",
        {"conference_attendees": 70000},
        ("conference_attendees", "ratio-implausible"),
        {"conference_attendees": 38000},
    ),
    (
        "attendees_per_conference",
        {"conferences": 1000},
        ("conferences", "ratio-implausible"),
        {"conferences": 700},
    ),
    (
        "attendees_per_person",
        {"conference_attendees": 45000},
        ("conference_attendees", "ratio-implausible"),
        {"conference_attendees": 38000},
    ),
    (
        "conferences_per_thousand",
        {"conferences": 900, "conference_attendees": 9000},
        ("conferences", "ratio-implausible"),
        {"conferences": 780, "conference_attendees": 9000},
    ),
    (
        "culture_houses_per_quarter",
        {"culture_houses": 250},
        ("culture_houses", "ratio-implausible"),
        {"culture_houses": 18},
    ),
    (
        "bookcases_per_quarter",
        {"law_bookcases": 19},
        ("law_bookcases", "ratio-implausible"),
        {"law_bookcases": 18},
    ),
    (
        "poor_to_near_poor",
        {"poor_households": 1240},
        ("poor_households", "ratio-implausible"),
        {"poor_households": 900},
    ),
    (
        "poor_to_near_poor",
        {"near_poor_households": 1200},
        ("near_poor_households", "ratio-implausible"),
        {"near_poor_households": 550},
    ),
]


@pytest.mark.parametrize(("ratio", "change", "want", "near_miss"), RATIOS, ids=[r[0] for r in RATIOS])
def test_each_ratio_fires_on_a_slip_and_not_on_a_near_miss(ratio, change, want, near_miss):
    assert ratio in {r.id for r in DEF.plausibility.ratios}
    assert want in plausible(change)
    assert plausible(near_miss) == set()


def test_every_ratio_of_the_definition_has_a_case_above():
    assert {r.id for r in DEF.plausibility.ratios} == {r[0] for r in RATIOS}


@pytest.mark.parametrize(
    ("change", "field", "rule", "suggestion"),
    [
        ({"income_per_capita_mn": 94340}, "income_per_capita_mn", "magnitude-thousand", 94.34),  # nghìn đồng
        ({"income_per_capita_mn": 94_340_000}, "income_per_capita_mn", "magnitude-million", 94.34),  # đồng
        ({"conference_attendees": 2_215_000}, "conference_attendees", "magnitude-thousand", 2215),
        ({"population": 8_000_000}, "population", "magnitude-thousand", 8000),
        ({"households": 2_379_000}, "households", "magnitude-thousand", 2379),  # the denominator typed wrong
        ({"health.participants": 350_000}, "health.participants", "magnitude-thousand", 350),  # a table row
    ],
)
def test_a_figure_a_thousand_or_a_million_times_too_large_gets_a_suggestion(change, field, rule, suggestion):
    f = findings({**CLEAN, **change})
    mine = f[f["rule"].isin(NEW_RULES)]
    assert mine[["field", "rule"]].values.tolist() == [[field, rule]]
    assert mine["suggestion"].iloc[0] == pytest.approx(suggestion)
    assert pd.isna(mine["expected"].iloc[0])  # a guess, never an expected value


@pytest.mark.parametrize(
    "change",
    [
        {"population": 800_000},
        {"income_per_capita_mn": 9434},
        {"health.participants": 35_000},
        {"culture_houses": 600},
    ],
)
def test_a_hundredfold_slip_is_flagged_without_a_thousandfold_suggestion(change):
    f = findings({**CLEAN, **change})
    mine = f[f["rule"].isin(NEW_RULES)]
    assert list(mine["field"]) == list(change)
    assert not mine["rule"].str.startswith("magnitude").any() and mine["suggestion"].isna().all()


def test_magnitude_message_says_why_and_suggests_the_divided_figure():
    f = findings({**CLEAN, "income_per_capita_mn": 94340})
    f = f.assign(label=f["field"].map(DEF.frame["label"]), sheet=f["field"].map(DEF.frame["sheet"]))
    msg = make_findings(f, DEF.rules)["message"].iloc[0]
    assert msg == (
        "Ô B13 (Thu nhập bình quân, trang «Thông tin chung») ghi 94.340, có lẽ lớn gấp khoảng một nghìn "
        "lần số thật: với số này, thu nhập bình quân (triệu đồng/người/năm) là 94.340, ngoài khoảng hợp lý "
        "(từ 5 đến 500). Có thể số này thừa ba chữ số 0, hoặc bị ghi nhầm đơn vị tính? Nếu vậy, số đúng "
        "là 94,34."
    )


def test_ratio_message_names_the_ratio_and_its_range():
    f = findings({**CLEAN, "culture_houses": 250})
    f = f.assign(label=f["field"].map(DEF.frame["label"]), sheet=f["field"].map(DEF.frame["sheet"]))
    assert make_findings(f, DEF.rules)["message"].iloc[0] == (
        "Ô B17 (Số nhà văn hóa, trang «Thông tin chung») ghi 250, nên số nhà văn hóa bình quân một khu phố, "
        "thôn "
        "là 41,7, ngoài khoảng hợp lý (không quá 3). Đề nghị kiểm tra lại số liệu này."
    )


@pytest.mark.parametrize(
    ("period", "date", "fires"),
    [
        ("2020-H1", "15/6/2021", True),  # a year after the period
        ("2020-H1", "15/6/2019", True),  # last period's date left in
        ("2020-H1", "31/3/2020", True),
        ("2020-H1", "1/4/2020", False),  # 90 days before the period's end: the window's first day
        ("2020-H1", "31/12/2020", False),  # 184 days after: the last
        ("2020-H1", "1/1/2021", True),
        ("2020-H2", "20/12/2020", False),
        ("2020-H2", "20/6/2020", True),
        ("2020", "15/1/2021", False),
        ("2020", "15/6/2020", True),
        ("", "15/6/2021", False),  # no period written: nothing to compare with
    ],
)
def test_report_date_against_the_period(period, date, fires):
    f = findings({**CLEAN, "period": period, "report_date": date})
    assert ("report-date-outside-period" in set(f["rule"])) == fires


def test_report_date_message():
    f = findings({**CLEAN, "report_date": "15/6/2021"})
    f = f.assign(label=f["field"].map(DEF.frame["label"]), sheet=f["field"].map(DEF.frame["sheet"]))
    assert make_findings(f, DEF.rules)["message"].iloc[0] == (
        "Ô B23 (Ngày báo cáo, trang «Thông tin chung») ghi ngày 15/06/2021, trong khi báo cáo thuộc kỳ "
        "6 tháng đầu năm 2020; ngày báo cáo của kỳ này thường trong khoảng từ 01/04/2020 đến 31/12/2020. "
        "Đề nghị kiểm tra lại ngày, tháng, năm báo cáo."
    )


@pytest.mark.parametrize(
    ("change", "rule", "cell_of"),
    [
        ({"law.classes": 2}, "classes-without-participants", "law.participants"),
        (
            {"environment.participants": 40, "environment.female": 20, "learners": 868},
            "participants-without-classes",
            "environment.classes",
        ),
        (
            {"health.participants": 0, "health.female": 0, "learners": 478},
            "classes-without-participants",
            "health.participants",
        ),
    ],
)
def test_a_zero_or_blank_side_is_the_checks_finding_not_a_ratio(change, rule, cell_of):
    f = findings({**CLEAN, **change})
    assert [(r.field, r.rule) for r in f.itertuples()] == [(cell_of, rule)]


def test_an_unreadable_figure_is_not_judged_again():
    from pipeline.findings import make_findings

    f = make_findings(findings({**CLEAN, "population": "tám nghìn"}), DEF.rules)  # as the run renders them
    assert set(f["rule"]) == {"number-invalid"}


def test_many_submissions_at_once_each_gets_its_own():
    subs = [CLEAN] * 40 + [{**CLEAN, "income_per_capita_mn": 94340}, {**CLEAN, "culture_houses": 250}]
    f = findings(*subs)
    assert sorted(zip(f["submission"], f["rule"], strict=True)) == [
        (40, "magnitude-thousand"),
        (41, "ratio-implausible"),
    ]


def test_works_on_an_empty_or_partial_frame():
    wide = pd.DataFrame({"population": [8000.0]}, index=[0])
    assert ratio_checks(DEF, wide).empty
    assert plausibility_findings(DEF, wide.iloc[0:0], None, cells(CLEAN).iloc[0:0].assign(text=None)).empty


def test_numbers_in_messages():
    assert [bounds_text(1.5, 8), bounds_text(None, 3), bounds_text(0.02, None)] == [
        "từ 1,5 đến 8",
        "không quá 3",
        "từ 0,02 trở lên",
    ]
    assert [round_figure(x) for x in (94340.4, 0.000533333, 21.0168, 3380.5)] == [94340, 0.000533, 21, 3380]


# --- the YAML section ------------------------------------------------------------------------------------


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(DEFAULT_DEFINITION.read_text(encoding="utf-8"))


def _ratio(raw: dict, rid: str) -> dict:
    return next(r for r in raw["plausibility"]["ratios"] if r["id"] == rid)


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda p: p.update(extra=1), "khóa không biết"),
        (lambda p: _ratio({"plausibility": p}, "income_per_capita").pop("why"), "why"),
        (lambda p: _ratio({"plausibility": p}, "income_per_capita").update(min=600), "min < max"),
        (lambda p: _ratio({"plausibility": p}, "income_per_capita").update(numerator="thu_nhap"), "thu_nhap"),
        (
            lambda p: _ratio({"plausibility": p}, "income_per_capita").update(numerator="reporter"),
            "không phải trường số",
        ),
        (
            lambda p: _ratio({"plausibility": p}, "income_per_capita").update(rule="no-such-rule"),
            "no-such-rule",
        ),
        (lambda p: _ratio({"plausibility": p}, "culture_houses_per_quarter").pop("typical"), "typical"),
        (lambda p: _ratio({"plausibility": p}, "participants_per_class").update(numerator="*.nope"), "nope"),
        (lambda p: p["report_date"].update(field="population"), "trường ngày"),
        (lambda p: p["report_date"].update(days_after_end=-1), "số ngày"),
        (lambda p: p["peers"].update(min_peers=1), "min_peers"),
        (lambda p: p["peers"]["fields"][0].update(per="nope"), "nope"),
        (lambda p: p["peers"].update(min_decades=2, max_decades=1), "min_decades"),
        (
            lambda p: p["rules"].update({"total-mismatch": {"severity": "warning", "message": "Trùng."}}),
            "trùng",
        ),
    ],
)
def test_a_malformed_section_is_named(raw, edit, says):
    edit(raw["plausibility"])
    with pytest.raises(DefinitionError, match=says):
        build_definition(raw, DEFAULT_DEFINITION)


def test_no_section_no_plausibility_findings(raw):
    raw = copy.deepcopy(raw)
    del raw["plausibility"]
    raw["rules"]["population-per-household"] = {"severity": "warning", "message": "Ô {cell} lạ."}
    plain = build_definition(raw, DEFAULT_DEFINITION)
    assert not plain.plausibility.ratios and plain.plausibility.report_date is None
    f = findings({**CLEAN, "income_per_capita_mn": 94340, "report_date": "15/6/2021"}, definition=plain)
    assert f.empty


def test_a_second_report_brings_its_own_rules_from_its_yaml(raw):
    """Another report type: its own ratio, bounds, rule and date window, no code change (its date field
    is named differently: nothing in the code knows a field's id)."""
    raw = copy.deepcopy(raw)
    raw["id"] = "thu-vien-nam"
    date = next(f for f in raw["sheets"][0]["fields"] if f["id"] == "report_date")
    date["id"] = "ngay_lap"
    raw["plausibility"] = {
        "rules": {
            "books-per-reader": {
                "severity": "warning",
                "message": "Ô {cell} ghi {value}: {measure} là {ratio}, ngoài khoảng {detail}.",
            }
        },
        "report_date": {"field": "ngay_lap", "days_before_end": 10, "days_after_end": 10},
        "ratios": [
            {
                "id": "books_per_reader",
                "rule": "books-per-reader",
                "measure": "số sách một bạn đọc",
                "numerator": "law_bookcases",
                "denominator": "population",
                "scale": 1000,
                "max": 0.5,
                "typical": 0.1,
                "why": "A made-up report for the test.",
            }
        ],
    }
    other = build_definition(raw, DEFAULT_DEFINITION)
    # 6 bookcases for 8,000 people: 0.75 per 1,000; 15/6 is 15 days before the period's end
    f = findings(CLEAN | {"ngay_lap": CLEAN["report_date"]}, definition=other)
    assert sorted(zip(f["rule"], f["field"], strict=True)) == [
        ("books-per-reader", "law_bookcases"),
        ("report-date-outside-period", "ngay_lap"),
    ]
    row = f[f["rule"] == "books-per-reader"].iloc[0]
    assert (row["field"], row["ratio"], row["detail"]) == ("law_bookcases", 0.75, "không quá 0,5")


def test_tonghop_check_on_a_single_workbook_explains_the_slip(tmp_path):
    """The rules run in `check` on one file: the message, from the registry, reaches the officer."""
    from pipeline.intake.reading import ReadOptions
    from pipeline.units import load_units
    from pipeline.wiring import check_files
    from pipeline.writers.template import render_workbook

    units = load_units()
    unit = units.set_index("unit_code").loc["07093"].to_dict() | {"unit_code": "07093"}
    path = tmp_path / "07093-duc-chinh.xlsx"
    figures = {k: v for k, v in CLEAN.items() if k not in ("unit_code", "unit_name", "period")}
    render_workbook(DEF, path, period="2020-H1", unit=unit, values=figures | {"income_per_capita_mn": 94340})
    f = check_files([path], DEF, units, period="2020-H1", options=ReadOptions(isolate=False)).findings
    row = f[f["rule"] == "magnitude-thousand"].iloc[0]
    assert (row["file"], row["cell"], row["severity"]) == (str(path), "B13", "warning")
    assert row["message"].endswith("Nếu vậy, số đúng là 94,34.")
    assert set(f["rule"]) == {"magnitude-thousand"}

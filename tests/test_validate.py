"""Validation rules at the frame level: each rule firing and not firing, vectorised over submissions."""

import copy

import pandas as pd
import pytest
from sample_inbox import DUC_CHINH

from pipeline.checks.validate import CELL_COLUMNS, validate
from pipeline.definition import build_definition, load_definition

DEF = load_definition()
CLEAN = {
    **DUC_CHINH,
    "total.participants": 828,
    "population": 8000,
    "conferences": 20,
    "health.female": 200,
    "economy.female": 90,
    "other.female": 70,
    "arts_sports.female": 100,
}


def cells(*subs: dict, definition=DEF, formulas: dict | None = None) -> pd.DataFrame:
    """The cells frame of submissions given as field → raw value; `formulas` (field → formula text) says
    which cells hold a formula (every submission alike)."""
    rows = [
        (i, f.id, sub.get(f.id, ""), f.cell, False, (formulas or {}).get(f.id, ""))
        for i, sub in enumerate(subs)
        for f in definition.fields.values()
    ]
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def found(*subs: dict, definition=DEF) -> set[tuple[int, str, str]]:
    _, f = validate(definition, cells(*subs, definition=definition))
    return set(zip(f["submission"], f["cell"], f["rule"], strict=True))


def test_clean_report_has_no_findings():
    assert found(CLEAN) == set()


def test_duc_chinh_as_typed():
    values, f = validate(DEF, cells(DUC_CHINH))
    got = set(zip(f["cell"], f["rule"], strict=True))
    total = DEF.fields["total.participants"]
    row = f[f["rule"] == "total-mismatch"].iloc[0]
    assert (row["cell"], row["value"], row["expected"]) == (total.cell, "8.28", 828)
    assert (DEF.fields["total.classes"].cell, "total-mismatch") not in got
    female_warnings = {c for c, r in got if r == "female-blank"}
    assert female_warnings == {
        DEF.fields[f"{r}.female"].cell for r in ("health", "economy", "other", "arts_sports")
    }
    assert not any(r == "learners-mismatch" for _, r in got)
    v = values.set_index("field")["value"]
    assert v["households"] == 2379 and v["total.participants"] == 828 and v["conference_attendees"] == 2215


@pytest.mark.parametrize(
    ("change", "cell_of", "rule"),
    [
        ({"board_total": 4}, "board_total", "total-mismatch"),
        ({"total.classes": 18}, "total.classes", "total-mismatch"),
        ({"health.female": 400}, "health.female", "female-exceeds-participants"),
        ({"health.female": ""}, "health.female", "female-blank"),
        ({"law.participants": 30, "law.female": 10}, "law.classes", "participants-without-classes"),
        ({"environment.classes": 2}, "environment.participants", "classes-without-participants"),
        ({"learners": 900}, "learners", "learners-mismatch"),
        ({"near_poor_households": 2500}, "poor_households", "poor-exceeds-households"),
        ({"health.participants": "", "health.female": 5}, "health.female", "female-exceeds-participants"),
        ({"population": 50000}, "population", "population-per-household"),
        ({"population": 2000}, "population", "population-per-household"),
        ({"literacy_rate": 120}, "literacy_rate", "value-out-of-range"),
        ({"quarters": -1}, "quarters", "value-negative"),
        ({"board_directors": 2, "board_total": 4}, "board_directors", "value-out-of-range"),
        ({"households": ""}, "households", "required-missing"),
        ({"households": "abc"}, "households", "number-invalid"),
        ({"households": "2.37"}, "households", "number-malformed-group"),
        ({"conference_attendees": 2.215}, "conference_attendees", "count-three-decimals"),
        ({"conference_attendees": 22.5}, "conference_attendees", "count-not-whole"),
        ({"conferences": "trên 20"}, "conferences", "number-hedged"),
        ({"waste_collection_rate": 0.92}, "waste_collection_rate", "percent-fraction"),
        ({"mobilization_unions": "Rất tốt"}, "mobilization_unions", "choice-invalid"),
        ({"report_date": "31/2/2020"}, "report_date", "date-invalid"),
        ({"reporter": ""}, "reporter", "required-missing"),
    ],
)
def test_rule_fires_only_where_expected(change, cell_of, rule):
    assert found(CLEAN) == set()
    got = found(CLEAN, {**CLEAN, **change})
    assert (1, DEF.fields[cell_of].cell, rule) in got
    assert all(sub == 1 for sub, _, _ in got)


def test_choices_match_case_and_accents():
    values, f = validate(DEF, cells({**CLEAN, "mobilization_unions": "  tot ", "mobilization_donors": "TỐT"}))
    assert f.empty
    text = values.set_index("field")["text"]
    assert text["mobilization_unions"] == "Tốt" and text["mobilization_donors"] == "Tốt"


def test_blank_declared_total_is_not_an_error():
    values, f = validate(DEF, cells({**CLEAN, "total.participants": "", "total.classes": ""}))
    assert f.empty
    assert values.set_index("field").loc["total.participants", "value"] == 828


def test_part_with_parse_error_suppresses_total_mismatch():
    got = found({**CLEAN, "health.participants": "3.5o"})
    assert {r for _, _, r in got} == {"number-invalid"}


def test_validation_follows_the_definition():
    raw = copy.deepcopy(__import__("yaml").safe_load(DEF.path.read_text(encoding="utf-8")))
    raw["sheets"][0]["fields"][6]["max"] = 5  # quarters ≤ 5
    changed = build_definition(raw, DEF.path)
    assert (0, changed.fields["quarters"].cell, "value-out-of-range") in found(CLEAN, definition=changed)
    assert found(CLEAN) == set()


def test_many_submissions_are_validated_together():
    subs = [CLEAN] * 50 + [{**CLEAN, "total.participants": 9}]
    got = found(*subs)
    assert got == {(50, DEF.fields["total.participants"].cell, "total-mismatch")}


def test_a_cross_check_marks_every_cell_it_involves_and_names_them():
    """Poor + near-poor > households: the finding is at the first cell and marks all three."""
    _, f = validate(DEF, cells({**CLEAN, "poor_households": 2300, "near_poor_households": 100}))
    (row,) = f.to_dict("records")
    poor, near, hh = (DEF.fields[x].cell for x in ("poor_households", "near_poor_households", "households"))
    assert (row["rule"], row["cell"]) == ("poor-exceeds-households", poor)
    assert set(row["also"].split()) == {"near_poor_households", "households"}
    assert (row["left_cells"], row["right_cells"]) == (f"{poor} và {near}", hh)


@pytest.mark.parametrize(
    ("change", "field", "rule", "expected", "suggestion"),
    [
        ({"total.participants": "8.28"}, "total.participants", "total-mismatch", 828, None),
        ({"board_total": 4}, "board_total", "total-mismatch", 3, None),
        ({"households": "2.37"}, "households", "number-malformed-group", None, 237),
        ({"conference_attendees": 2.215}, "conference_attendees", "count-three-decimals", None, 2215),
        ({"population": "gần 8.000"}, "population", "number-hedged", None, 8000),
        ({"waste_collection_rate": 0.92}, "waste_collection_rate", "percent-fraction", None, 92),
        ({"health.female": ""}, "health.female", "female-blank", None, None),
        ({"health.female": 400}, "health.female", "female-exceeds-participants", None, None),
        ({"learners": 900}, "learners", "learners-mismatch", None, None),
        ({"households": ""}, "households", "required-missing", None, None),
    ],
)
def test_only_a_recomputed_total_is_known_a_likely_reading_is_a_suggestion(change, field, rule, expected,
                                                                             suggestion):
    _, f = validate(DEF, cells({**CLEAN, **change}))
    row = f[(f["rule"] == rule) & (f["field"] == field)].iloc[0]

    def got(v):
        return None if v is None or v != v else v

    assert (got(row["expected"]), got(row["suggestion"])) == (expected, suggestion)


def _as_numbers(sub: dict) -> dict:
    """`sub` with every figure typed as a number (as a ward typing in Excel would store it)."""
    values, _ = validate(DEF, cells(sub))
    num = values[values["type"].isin(["integer", "decimal", "percent"]) & values["value"].notna()]
    return sub | dict(zip(num["field"], num["value"], strict=True))


NUMBERS = _as_numbers(CLEAN)
TOTAL_FORMULAS = {"total.classes": "SUM(C6:C15)", "total.participants": "SUM(D6:D15)",
                  "total.female": "SUM(E6:E15)", "board_total": "B14+B15"}


@pytest.mark.parametrize(
    ("change", "formulas", "rules"),
    [
        # figures typed as text under the template's formulas, which then cached 0: no total error
        ({"health.participants": "350", "total.participants": 0}, TOTAL_FORMULAS,
         {("D9", "numbers-as-text")}),
        # the same cached 0 typed over the formula by the ward: a declared total, and wrong
        ({"health.participants": "350", "total.participants": 0}, {}, {("D16", "total-mismatch")}),
        # all numbers, formula cached right: nothing to say
        ({}, TOTAL_FORMULAS, set()),
        # a formula of the ward's own (a row left out) whose result is wrong: compared like a typed total
        ({"total.participants": 500}, {"total.participants": "SUM(D6:D14)"}, {("D16", "total-mismatch")}),
        # the template's formula moved with the rows (a row inserted above): still the template's
        ({"total.participants": 0, "health.participants": "350"},
         {"total.participants": "of:=SUM([.D6:.D15])"}, {("D9", "numbers-as-text")}),
        # no cached value (written by a program): a SUM over text shows a wrong total, "+" converts the text
        ({"total.participants": "", "health.participants": "350"}, TOTAL_FORMULAS,
         {("D9", "numbers-as-text")}),
        ({"board_total": "", "board_directors": "1"}, TOTAL_FORMULAS, set()),
    ],
)
def test_a_total_formula_is_not_a_declared_total(change, formulas, rules):
    sub = {**NUMBERS, **change}
    _, f = validate(DEF, cells(sub, formulas=formulas))
    assert set(zip(f["cell"], f["rule"], strict=True)) == rules


def test_numbers_as_text_is_one_warning_naming_the_cells_sheet_by_sheet():
    sub = {**NUMBERS, "health.classes": "2", "economy.classes": "3", "total.classes": 0}
    _, f = validate(DEF, cells(sub, formulas=TOTAL_FORMULAS))
    (row,) = f.to_dict("records")
    assert row["rule"] == "numbers-as-text" and row["cell"] == "C9"
    assert row["detail"] == "C9 và C12 (trang «Kết quả hoạt động»)"


@pytest.mark.parametrize(("raw", "rules"), [
    ("abc", {"number-invalid"}),  # not also "required-missing": the cell is not empty, it is unreadable
    ("2.37", {"number-malformed-group"}),
    ("", {"required-missing"}),
    (-5, {"value-negative"}),
])
def test_a_finding_that_repeats_another_on_its_cell_is_dropped(raw, rules):
    """rules.yaml's `suppressed_by`: one finding a cell, the one that says what is wrong."""
    from pipeline.findings import make_findings

    _, f = validate(DEF, cells({**CLEAN, "households": raw}))
    rendered = make_findings(f, DEF.rules)
    assert set(rendered.loc[rendered["field"] == "households", "rule"]) == rules


def test_a_submission_without_some_cells_is_validated_without_a_pandas_warning():
    """A submission lacking cells of some figures (a sheet not sent) makes the unreadable-figure frame
    hold gaps: they read as "readable", as before, and pandas (2.2: downcasting in fillna) stays quiet."""
    import warnings

    full = cells({**CLEAN, "households": "abc"})
    missing = [f for f in DEF.fields.values() if f.numeric and f.sheet == DEF.fields["households"].sheet]
    part = cells(CLEAN).assign(submission=1)
    part = part[~part["field"].isin([f.id for f in missing])]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        _, f = validate(DEF, pd.concat([full, part], ignore_index=True))
    got = set(zip(f["submission"], f["field"], f["rule"], strict=True))
    assert (0, "households", "number-invalid") in got
    assert not any(s == 1 and r == "number-invalid" for s, _, r in got)

"""Validation rules at the frame level: each rule firing and not firing, vectorised over submissions."""

import copy

import pandas as pd
import pytest

from pipeline.definition import build_definition, load_definition
from pipeline.samples import DUC_CHINH
from pipeline.validate import CELL_COLUMNS, validate

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


def cells(*subs: dict, definition=DEF) -> pd.DataFrame:
    rows = [
        (i, f.id, sub.get(f.id, ""), f.cell, False)
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
        ({"near_poor_households": 2500}, "near_poor_households", "poor-exceeds-households"),
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

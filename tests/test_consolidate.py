"""The counting rule: no district figure is built from a faulty value; every one obeys the report's rules."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sample_inbox import plausible

from pipeline.checks.validate import CELL_COLUMNS, validate
from pipeline.consolidate import choose_submissions, consolidate, self_test
from pipeline.definition import load_definition
from pipeline.findings import make_findings, records_frame
from pipeline.units import load_units

DEF = load_definition()
UNITS = load_units()
CODES = UNITS["unit_code"].tolist()


def _run(subs: dict[str, dict], *, strict: bool = False):
    """Consolidate one submission per unit (code → field → raw value), as the job does after reading."""
    rows = [(i, f.id, values.get(f.id, ""), f.cell, False, "")
            for i, values in enumerate(subs.values()) for f in DEF.fields.values()]
    values, found = validate(DEF, pd.DataFrame(rows, columns=CELL_COLUMNS))
    by_code = UNITS.set_index("unit_code")
    s = pd.DataFrame({"submission": range(len(subs)), "unit_code": list(subs),
                      "file": [f"{c}.xlsx" for c in subs],
                      "sha256": [f"h{c}" for c in subs], "report_date": "", "received": "", "in_period": True,
                      "period": "2020-H1", "sample": False}).set_index("submission")
    s["unit_name"] = [by_code.at[c, "full_name"] for c in subs]
    s, _ = choose_submissions(s)
    found = found.join(s[["file", "unit_code", "unit_name"]], on="submission")
    findings = make_findings(found, DEF.rules)
    return consolidate(DEF, UNITS, s, values, findings, strict=strict), findings


def _figure(cons, field: str) -> dict:
    return cons.district.set_index("field").loc[field].to_dict()


def test_a_rate_with_an_error_is_left_out_with_its_weight():
    """901 % is flagged and must not be averaged in: the district rate is the other unit's, exactly."""
    good, bad = plausible("07093"), plausible("07096") | {"literacy_rate": 901}
    cons, _ = _run({"07093": good, "07096": bad})
    rate = _figure(cons, "literacy_rate")
    assert rate["value"] == pytest.approx(good["literacy_rate"])
    assert (rate["units"], rate["expected"]) == (1, 21)
    assert "Phường Tràng An (số liệu có lỗi" in rate["left_out"]
    assert self_test(DEF, cons) == []


def test_an_unreadable_participants_figure_takes_its_rows_female_figure_with_it():
    """The district never shows more women than participants: the female figure of the row (and, since the
    total no longer adds up, the unit's whole participants column and learners) go with it."""
    base = plausible("07096")
    row = next(r for r in ("health", "economy", "other", "law") if base.get(f"{r}.participants"))
    bad = base | {f"{row}.participants": "3.5o"}
    cons, _ = _run({"07093": plausible("07093"), "07096": bad})
    left = cons.left_out.loc["07096"]
    assert left[f"{row}.participants"] and left[f"{row}.female"] and left["learners"]
    women, people = _figure(cons, "total.female")["value"], _figure(cons, "total.participants")["value"]
    assert women <= people
    assert people == plausible("07093")["total.participants"]
    assert self_test(DEF, cons) == []


def test_a_row_with_more_women_than_participants_is_not_summed():
    good = plausible("07093")
    row = next(r for r in ("health", "economy", "other", "law", "culture") if good.get(f"{r}.participants"))
    bad = plausible("07093") | {f"{row}.female": good[f"{row}.participants"] + 500}
    cons, findings = _run({"07093": bad, "07096": plausible("07096")})
    assert "female-exceeds-participants" in set(findings["rule"])
    assert cons.left_out.loc["07093", f"{row}.female"] and cons.left_out.loc["07093", f"{row}.participants"]
    women, people = (np.nan_to_num(_figure(cons, f"{row}.{c}")["value"]) for c in ("female", "participants"))
    assert women <= people
    assert self_test(DEF, cons) == []


def test_a_choice_outside_the_list_is_not_counted():
    bad = plausible("07096") | {"mobilization_unions": '=HYPERLINK("http://evil")'}
    cons, _ = _run({"07093": plausible("07093") | {"mobilization_unions": "Tốt"}, "07096": bad})
    counts = cons.choices[cons.choices["field"] == "mobilization_unions"]
    assert counts[["choice", "count"]].values.tolist() == [["Tốt", 1]]


def test_values_with_warnings_count_and_a_wrong_declared_total_does_not_matter():
    """"gần 8.000" is counted as 8.000 (a warning); "8.28" typed over the total is an error of the file,
    but the total is recomputed from the parts, so the unit's figures all count."""
    duc = plausible("07093") | {"population": "gần 8.000", "total.participants": "8.28"}
    cons, findings = _run({"07093": duc})
    assert {"number-hedged", "total-mismatch"} <= set(findings["rule"])
    assert _figure(cons, "population")["value"] == 8000
    assert _figure(cons, "total.participants")["value"] == plausible("07093")["total.participants"]
    assert not cons.left_out.loc["07093"].any()
    assert _figure(cons, "population")["warned"] == "Phường Đức Chính"


def test_strict_leaves_out_every_figure_of_a_unit_with_errors():
    bad = plausible("07096") | {"literacy_rate": 901}
    cons, _ = _run({"07093": plausible("07093"), "07096": bad}, strict=True)
    assert cons.left_out.loc["07096"].all()
    assert _figure(cons, "households")["value"] == plausible("07093")["households"]


def test_the_self_test_catches_a_district_figure_that_breaks_a_rule():
    cons, _ = _run({"07093": plausible("07093"), "07096": plausible("07096")})
    assert self_test(DEF, cons) == []
    broken = cons.district.copy()
    broken.loc[broken["field"] == "health.female", "value"] = 1e6
    broken.loc[broken["field"] == "literacy_rate", "value"] = 128.8
    cons.district = broken
    failed = self_test(DEF, cons)
    assert {(f.field, f.rule) for f in failed} >= {("literacy_rate", "district-check-failed"),
                                                         ("total.female", "district-check-failed")}
    rendered = make_findings(records_frame(failed).assign(unit_name="Thị xã Đông Triều"), DEF.rules)
    assert rendered["message"].str.contains("không qua được bước tự kiểm tra").all()


# --- the property: random inboxes, random slips ---------------------------------------------------

_SLIPS = {
    "text": lambda v, rng: f"{v:,}".replace(",", ".") if isinstance(v, int) else v,
    "unreadable": lambda v, rng: "3.5o",
    "ten_times": lambda v, rng: v * 10 if isinstance(v, (int, float)) else v,
    "negative": lambda v, rng: -abs(v) - 1 if isinstance(v, (int, float)) else v,
    "blank": lambda v, rng: "",
    "malformed": lambda v, rng: "8.28",
    "huge": lambda v, rng: v + 5000 if isinstance(v, (int, float)) else v,
}
_NUMERIC = [f.id for f in DEF.fields.values() if f.numeric]
_CHOICE = [f.id for f in DEF.fields.values() if f.type == "choice"]


@st.composite
def inboxes(draw):
    codes = draw(st.lists(st.sampled_from(CODES), min_size=1, max_size=10, unique=True))
    subs = {}
    for code in codes:
        values = dict(plausible(code))
        for _ in range(draw(st.integers(0, 4))):
            field = draw(st.sampled_from(_NUMERIC + _CHOICE))
            if field in _CHOICE:
                values[field] = draw(st.sampled_from(["Tốt", "Rất tốt", "=1+1", ""]))
                continue
            slip = draw(st.sampled_from(sorted(_SLIPS)))
            values[field] = _SLIPS[slip](values.get(field, 0) or 0, None)
        subs[code] = values
    return subs, draw(st.booleans())


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(inboxes())
def test_every_district_figure_obeys_the_definition_whatever_the_slips(case):
    """With any mix of slips in any units, the district figures pass the self-test (totals add up, bounds,
    error-level cross-checks, choices), and no figure includes a value that has an error finding."""
    subs, strict = case
    cons, findings = _run(subs, strict=strict)
    assert self_test(DEF, cons) == []
    errors = findings[(findings["severity"] == "error") & (findings["rule"] != "total-mismatch")]
    sub_code = dict(enumerate(subs))
    for sub, field in zip(errors["submission"], errors["field"], strict=True):
        if field in cons.left_out.columns and not (isinstance(sub, float) and math.isnan(sub)):
            assert cons.left_out.at[sub_code[int(sub)], field], (sub_code[int(sub)], field)
    fig = cons.district.set_index("field")["value"]
    for f in DEF.fields.values():
        if f.id in fig and f.min is not None and not np.isnan(fig[f.id]):
            assert fig[f.id] >= f.min - 1e-9, f.id

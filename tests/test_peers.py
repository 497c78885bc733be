"""Plausibility among peers: a unit's figure against the median of the units like it, robustly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.checks.peers import add_peer_findings, peer_findings, unit_groups
from pipeline.definition import load_definition
from pipeline.findings import make_findings

DEF = load_definition()
NEW = {"peer-high", "peer-low", "peer-magnitude-thousand", "peer-magnitude-million"}


def unit_figures(i: int) -> dict[str, float]:
    """Plausible, slightly different figures for unit i (a few per cent apart, as neighbours are)."""
    pop = 5000.0 + 400 * i
    wobble = 1 + 0.04 * ((i * 7) % 5 - 2)
    return {
        "population": pop,
        "households": round(pop / 3.6),
        "area_ha": round(pop / 5 * wobble, 1),
        "quarters": round(pop / 700 * wobble),
        "production_value_bn": round(pop * 0.09 * wobble, 2),
        "income_per_capita_mn": round(45 * wobble, 2),
        "culture_houses": round(pop / 800 * wobble),
        "law_bookcases": round(pop / 1200 * wobble),
        "conferences": round(pop / 600 * wobble),
        "conference_attendees": round(pop / 9 * wobble),
        "total.classes": round(pop / 400 * wobble),
        "total.participants": round(pop / 9 * wobble),
        "poor_households": round(pop / 3.6 * 0.03 * wobble),
        "near_poor_households": round(pop / 3.6 * 0.035 * wobble),
    }


def units_list(sizes: dict[tuple[str, str], int], kind: str = "xã") -> pd.DataFrame:
    """A units list: `sizes` maps (province, district) to how many units."""
    rows, n = [], 0
    for (province, district), size in sizes.items():
        for _ in range(size):
            n += 1
            rows.append(
                {
                    "unit_code": f"{n:05d}",
                    "unit_name": f"Đơn vị {n}",
                    "unit_type": kind,
                    "district_code": district,
                    "district_name": f"Huyện {district}",
                    "province_code": province,
                    "province_name": f"Tỉnh {province}",
                }
            )
    return pd.DataFrame(rows)


def judge(units: pd.DataFrame, changes: dict[int, dict], skip: pd.DataFrame | None = None) -> pd.DataFrame:
    figures = pd.DataFrame(
        [unit_figures(i) | changes.get(i, {}) for i in range(len(units))], index=units["unit_code"].to_numpy()
    )
    return peer_findings(DEF, figures, unit_groups(units), skip)


TWELVE = units_list({("P1", "D1"): 12})


@pytest.mark.parametrize(
    ("change", "rule", "suggestion"),
    [
        ({"culture_houses": 300}, "peer-high", None),  # 300 culture houses for 6,200 people: about 40 times
        ({"conference_attendees": 689_000}, "peer-magnitude-thousand", 689),
        ({"income_per_capita_mn": 45_000_000}, "peer-magnitude-million", 45),
        ({"area_ha": 12.4}, "peer-low", None),  # km2 typed for ha: area may be flagged far below too
        ({"poor_households": 1300}, "peer-high", None),
    ],
)
def test_a_figure_far_from_its_peers_is_flagged(change, rule, suggestion):
    field = next(iter(change))
    got = judge(TWELVE, {3: change})
    assert got[["unit", "field", "rule"]].values.tolist() == [["00004", field, rule]]
    if suggestion is None:
        assert np.isnan(got["suggestion"].iloc[0])
    else:
        assert got["suggestion"].iloc[0] == pytest.approx(suggestion)
    assert got["peers"].iloc[0] == 12 and got["group"].iloc[0] == "xã thuộc Huyện D1"


@pytest.mark.parametrize(
    "change",
    [
        {"culture_houses": 40},  # five times the usual: unusual, not a slip
        {"conference_attendees": 5000},
        {"income_per_capita_mn": 300},
        {"culture_houses": 1},  # far below, but a small count below its peers is no evidence of a slip
        {"poor_households": 0},  # zero: nothing to compare on a log scale
    ],
)
def test_a_near_miss_is_not(change):
    assert judge(TWELVE, {3: change}).empty


def test_the_message_names_the_median_and_the_ratio_to_it():
    got = judge(TWELVE, {3: {"culture_houses": 300}})
    got = got.assign(cell="B17", label="Số nhà văn hóa", sheet="Thông tin chung", unit_code=got["unit"])
    msg = make_findings(got, DEF.rules)["message"].iloc[0]
    assert msg == (
        "Ô B17 (Số nhà văn hóa, trang «Thông tin chung») ghi 300: số nhà văn hóa trên 1.000 dân của "
        "đơn vị là 48,4, cao gấp khoảng 38 lần mức trung vị của 12 xã thuộc Huyện D1 (1,28). Đề nghị "
        "kiểm tra lại số liệu này."
    )


def test_one_outlier_does_not_move_the_median():
    """Median and MAD: three wild units do not hide a fourth nor flag the others (mean and sigma would)."""
    got = judge(
        TWELVE,
        {
            1: {"culture_houses": 900},
            5: {"culture_houses": 2000},
            8: {"culture_houses": 700},
            3: {"culture_houses": 300},
        },
    )
    assert sorted(got["unit"]) == ["00002", "00004", "00006", "00009"]


def test_a_small_district_falls_back_to_the_province_then_to_nothing():
    units = units_list({("P1", "D1"): 5, ("P1", "D2"): 7})
    got = judge(units, {2: {"culture_houses": 300}})
    assert got["group"].tolist() == ["xã thuộc Tỉnh P1"] and got["peers"].tolist() == [12]
    alone = units_list({("P1", "D1"): 4, ("P2", "D2"): 3})
    assert judge(alone, {2: {"conference_attendees": 689_000}}).empty  # left to the ratios' bounds


def test_units_of_another_type_are_not_peers():
    wards = units_list({("P1", "D1"): 9}, kind="phường")
    communes = units_list({("P1", "D1"): 9}, kind="xã")
    communes["unit_code"] = [f"{i:05d}" for i in range(100, 109)]
    units = pd.concat([wards, communes], ignore_index=True)
    figures = pd.DataFrame([unit_figures(i % 9) for i in range(18)], index=units["unit_code"].to_numpy())
    figures.loc[communes["unit_code"], "area_ha"] *= 30  # communes are much larger than city wards
    assert peer_findings(DEF, figures, unit_groups(units)).empty
    figures.loc["00003", "area_ha"] *= 30  # ... but a ward as large as a commune is odd among wards
    got = peer_findings(DEF, figures, unit_groups(units))
    assert got[["unit", "field", "group"]].values.tolist() == [["00003", "area_ha", "phường thuộc Huyện D1"]]


def test_skipped_figures_and_those_normalised_by_them_are_not_judged():
    change = {3: {"culture_houses": 300, "population": 62}}  # population typed in hundreds
    assert {"culture_houses"} <= set(judge(TWELVE, change)["field"])
    skip = pd.DataFrame({"unit": ["00004"], "field": ["population"]})  # flagged within the unit already
    assert judge(TWELVE, change, skip).empty
    skip = pd.DataFrame({"unit": ["00004"], "field": ["conference_attendees"]})
    assert judge(TWELVE, {3: {"conference_attendees": 689_000}}, skip).empty


def test_a_soft_finding_is_judged_for_a_magnitude_only():
    skip = pd.DataFrame({"unit": ["00004"], "field": ["conference_attendees"], "soft": [True]})
    got = judge(TWELVE, {3: {"conference_attendees": 689_000}}, skip)
    assert got["rule"].tolist() == ["peer-magnitude-thousand"]
    assert judge(TWELVE, {3: {"conference_attendees": 30_000}}, skip).empty  # peer-high: already said


def test_add_peer_findings_in_the_job():
    """From the job's frames: chosen submissions of the run, their cells, the findings so far."""
    units = TWELVE.assign(full_name=lambda u: "Xã " + u["unit_name"])
    subs = pd.DataFrame(
        {
            "file": [f"{c}.xlsx" for c in units["unit_code"]],
            "unit_code": units["unit_code"],
            "unit_name": units["full_name"],
            "chosen": True,
        },
        index=pd.RangeIndex(12, name="submission"),
    )
    subs.loc[11, "chosen"] = False  # a superseded file is not a peer
    rows = []
    for sub in range(12):
        figs = unit_figures(sub) | ({"conference_attendees": 689_000} if sub in (3, 11) else {})
        figs |= {"culture_houses": 300} if sub == 5 else {}
        rows += [
            {"submission": sub, "field": f, "value": v, "raw": v, "cell": DEF.fields[f].cell}
            for f, v in figs.items()
        ]
    values = pd.DataFrame(rows)
    before = make_findings(
        [
            {
                "submission": 5,
                "unit_code": "00006",
                "field": "culture_houses",
                "rule": "ratio-implausible",
                "cell": "B17",
            }
        ],
        DEF.rules,
    )
    after = add_peer_findings(DEF, subs, values, before, units)
    new = after.iloc[len(before) :] if len(after) > len(before) else after.iloc[0:0]
    assert new[["file", "unit_code", "cell", "rule"]].values.tolist() == [
        ["00004.xlsx", "00004", "B20", "peer-magnitude-thousand"]
    ]
    assert "gấp khoảng một nghìn lần" in new["message"].iloc[0] and "2.215" not in new["message"].iloc[0]
    assert after.iloc[0]["rule"] == "ratio-implausible"  # the soft finding stays: peers said nothing more

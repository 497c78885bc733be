"""The province-level workbook: districts side by side, the far ones coloured with a comment naming why."""

from __future__ import annotations

import openpyxl
import pandas as pd
import pytest

from pipeline.consolidate import STATUS_MISSING, STATUS_OK
from pipeline.definition import load_definition
from pipeline.writers.province import district_findings, shown_fields, write_provinces

DEF = load_definition()
PERIOD = "2020-H1"


def district_figures(i: int) -> dict[str, float]:
    """A district of about 14 communes: sums a few per cent apart from its neighbours."""
    pop = 100_000.0 + 7_000 * i
    w = 1 + 0.04 * ((i * 7) % 5 - 2)
    return {
        "population": pop,
        "households": round(pop / 3.6),
        "area_ha": round(pop / 5 * w),
        "quarters": round(pop / 700 * w),
        "production_value_bn": round(pop * 0.09 * w),
        "income_per_capita_mn": round(45 * w, 2),
        "culture_houses": round(pop / 800 * w),
        "law_bookcases": round(pop / 1200 * w),
        "conferences": round(pop / 600 * w),
        "conference_attendees": round(pop / 9 * w),
        "total.classes": round(pop / 400 * w),
        "total.participants": round(pop / 9 * w),
        "total.female": round(pop / 17 * w),
        "poor_households": round(pop / 3.6 * 0.03 * w),
        "near_poor_households": round(pop / 3.6 * 0.035 * w),
        "literacy_rate": 98.5,
    }


def consolidated(n: dict[str, int], names: dict[str, str], changes: dict[str, dict]):
    """(units status table, district values) for provinces of n[province] districts."""
    units, values, d = [], [], 0
    for province, count in n.items():
        for _ in range(count):
            d += 1
            code = f"{d:03d}"
            name = names.get(code, f"Huyện {code}")
            for u in range(3):
                units.append(
                    {
                        "unit_code": f"{d:03d}{u:02d}",
                        "district_code": code,
                        "district_name": name,
                        "province_code": province,
                        "province_name": f"Tỉnh {province}",
                        "status": STATUS_MISSING if u == 2 else STATUS_OK,
                    }
                )
            figs = district_figures(d) | changes.get(code, {})
            values += [{"district_code": code, "field": f, "value": v, "units": 2} for f, v in figs.items()]
    return pd.DataFrame(units), pd.DataFrame(values)


def test_districts_side_by_side_and_the_far_ones_marked(tmp_path):
    units, values = consolidated(
        {"22": 10, "25": 1},
        {"004": '=HYPERLINK("http://x","bấm")'},
        {
            "003": {"conference_attendees": 560_000},  # 40 times its neighbours: a commune typed thousands
            "005": {"conference_attendees": 45_000},  # three times: unusual, not marked
            "006": {"population": 900_000},
        },  # 20 persons a household
    )
    paths = write_provinces(DEF, tmp_path, PERIOD, units, values)
    assert [p.name for p in paths] == ["tinh-22.xlsx"]  # "Tỉnh 22"; province 25 has a single district
    wb = openpyxl.load_workbook(paths[0])
    assert wb.sheetnames == ["Theo đơn vị cấp huyện", "Cảnh báo"]
    ws = wb["Theo đơn vị cấp huyện"]
    head = [c.value for c in ws[5]]
    assert head[:3] == ["Mã", "Đơn vị cấp huyện", "Số đơn vị đã nộp"]
    col = {fid: 4 + i for i, fid in enumerate(shown_fields(DEF))}
    row = {ws.cell(r, 1).value: r for r in range(6, 16)}
    assert ws.cell(row["001"], 3).value == "2/3"
    assert (
        ws.cell(row["004"], 2).value == '=HYPERLINK("http://x","bấm")'
        and ws.cell(row["004"], 2).data_type == "s"
    )
    marked = {
        (ws.cell(r, 1).value, DEF.frame.index[DEF.frame["label"] == ws.cell(5, c).value.split(" (")[0]][0])
        for r in range(6, 16)
        for c in range(4, ws.max_column + 1)
        if ws.cell(r, c).comment
    }
    assert marked == {("003", "conference_attendees"), ("006", "population")}
    comment = ws.cell(row["003"], col["conference_attendees"]).comment.text
    assert comment.startswith(
        "Số liệu tổng hợp của Huyện 003: Số lượt người dự hội nghị, tập huấn là 560.000"
    )
    # 9 peers: district 006's figures per inhabitant are left out, its population being out of bounds
    assert "cao gấp khoảng" in comment and "mức trung vị của 9 đơn vị cấp huyện thuộc Tỉnh 22" in comment
    assert ws.cell(row["003"], col["conference_attendees"]).fill.fgColor.rgb.endswith("FFD8A8")
    assert ws.cell(row["005"], col["conference_attendees"]).comment is None
    assert "số người bình quân một hộ" in ws.cell(row["006"], col["population"]).comment.text
    warnings = [[c.value for c in r] for r in wb["Cảnh báo"].iter_rows(min_row=2)]
    assert [(w[0], w[2]) for w in warnings] == [
        ("003", "Số lượt người dự hội nghị, tập huấn"),
        ("006", "Số dân"),
    ]


def test_print_setup_and_font(tmp_path):
    units, values = consolidated({"22": 3}, {}, {})
    (path,) = write_provinces(DEF, tmp_path, PERIOD, units, values)
    ws = openpyxl.load_workbook(path)["Theo đơn vị cấp huyện"]
    assert ws.page_setup.orientation == "landscape" and str(ws.page_setup.paperSize) == "9"
    assert ws.sheet_properties.pageSetUpPr.fitToPage and ws.page_setup.fitToWidth in (None, 1)  # 1: default
    assert ws.page_setup.fitToHeight == 0
    assert ws["A1"].font.name == "Times New Roman" and ws["D6"].font.name == "Times New Roman"
    assert ws.print_title_rows == "$5:$5"


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"conference_attendees": 560_000}, "district-peer-high"),
        ({"area_ha": 200}, "district-peer-low"),  # hectares of a few communes typed as km2
        ({"households": 35}, "district-ratio-implausible"),  # 35.556 read as a decimal, rounded
    ],
)
def test_district_rules(change, rule):
    figures = pd.DataFrame(
        [district_figures(i) | (change if i == 4 else {}) for i in range(10)],
        index=[f"{i:03d}" for i in range(10)],
    )
    districts = pd.DataFrame(
        {
            "district_name": [f"Huyện {i}" for i in range(10)],
            "province_code": "22",
            "province_name": "Tỉnh Quảng Ninh",
        },
        index=figures.index,
    )
    found = district_findings(DEF, figures, districts)
    assert found[["unit_code", "rule"]].values.tolist() == [["004", rule]]
    assert found["message"].iloc[0].startswith("Số liệu tổng hợp của Huyện 4: ")


def test_few_districts_are_judged_by_the_bounds_only():
    slip = {"conference_attendees": 356_700}  # within the ratios' bounds, 30 times the other districts
    figures = pd.DataFrame(
        [district_figures(i) | (slip if i == 1 else {}) for i in range(5)],
        index=[f"{i:03d}" for i in range(5)],
    )
    districts = pd.DataFrame(
        {"district_name": "Huyện", "province_code": "22", "province_name": "Tỉnh X"}, index=figures.index
    )
    assert district_findings(DEF, figures, districts).empty  # 5 < 8 peers


@pytest.mark.parametrize(
    ("name", "file"), [("Tỉnh Quảng Ninh", "tinh-quang-ninh.xlsx"), ("Thành phố Hà Nội", "tinh-ha-noi.xlsx")]
)
def test_file_name(tmp_path, name, file):
    units, values = consolidated({"22": 2}, {}, {})
    units["province_name"] = name
    assert [p.name for p in write_provinces(DEF, tmp_path, PERIOD, units, values)] == [file]


def test_one_district_no_province_workbook(tmp_path):
    units, values = consolidated({"22": 1}, {}, {})
    assert write_provinces(DEF, tmp_path, PERIOD, units, values) == []
    assert not list(tmp_path.iterdir())

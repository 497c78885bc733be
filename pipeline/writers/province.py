"""The province-level workbook: each district's consolidated figures side by side, far ones marked.

When the units list holds several districts of a province, `write_provinces` writes one workbook per such
province beside the district workbooks (`tinh-<slug>.xlsx`): a row per district with its consolidated
figures, and the figures far from the other districts of the province (pipeline.checks.peers, on the
districts' figures, grouped by province) or outside the definition's ratio bounds
(pipeline.checks.plausibility) coloured, with a comment naming the comparison; a second sheet lists
those warnings. xlsxwriter, text always written as text, Times New Roman, A4 landscape fit to the page
width.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xlsxwriter

from pipeline.atomic import atomic_path
from pipeline.checks.peers import peer_findings
from pipeline.checks.plausibility import ratio_checks
from pipeline.consolidate import STATUS_MISSING
from pipeline.definition import DISTRICT_RULES, Definition
from pipeline.findings import make_findings, show
from pipeline.intake.guard import OUTPUT_PROPERTY
from pipeline.text import slug
from pipeline.writers.worksheet import Worksheet
from pipeline.writers.xlsx import FONT, WORKBOOK_OPTIONS, page_setup

PROVINCE_LEVEL = (("g_p", "g_p_name"),)
_BASE = {"font_name": "Times New Roman", "font_size": 11, "valign": "vcenter"}
_FLAG = "#FFD8A8"  # the amber of warnings in the district workbooks
_PREFIXES = ("Tỉnh ", "Thành phố ")


def shown_fields(definition: Definition) -> list[str]:
    """The figures a district row shows: consolidated numeric fields that no total includes (a table's
    total row stands for its rows, the board's total for its members)."""
    parts = {p for f in definition.fields.values() for p in f.total_of}
    return [
        f.id
        for f in definition.fields.values()
        if f.numeric and f.method in ("sum", "weighted_mean") and f.id not in parts
    ]


def district_findings(definition: Definition, figures: pd.DataFrame, districts: pd.DataFrame) -> pd.DataFrame:
    """Warnings on districts' figures. `figures`: a row per district (index district_code), a column per
    field; `districts`: indexed by district_code with district_name, province_code, province_name.
    Returns rendered findings (ALL_COLUMNS; `unit_code`/`unit_name` hold the district's code and name)."""
    if figures.empty:
        return make_findings([], definition.rules)
    groups = pd.DataFrame(
        {
            "g_p": districts["province_code"],
            "g_p_name": "đơn vị cấp huyện thuộc " + districts["province_name"],
        }
    )
    ratios = ratio_checks(definition, figures).rename(columns={"row": "unit"})
    ratios = ratios.assign(rule=DISTRICT_RULES["ratio"], suggestion=np.nan).drop(
        columns=["ratio_id", "power"]
    )
    ratios["value"] = figures.to_numpy(dtype=float)[
        figures.index.get_indexer(ratios["unit"]), figures.columns.get_indexer(ratios["field"])
    ]
    # a figure out of its bounds is not judged among peers again, nor those normalised by it
    rules = {"high": DISTRICT_RULES["high"], "low": DISTRICT_RULES["low"]}
    peers = peer_findings(definition, figures, groups, ratios[["unit", "field"]], PROVINCE_LEVEL, rules)
    found = (
        pd.concat([p for p in (ratios, peers) if not p.empty], ignore_index=True)
        if not (ratios.empty and peers.empty)
        else pd.DataFrame(columns=["unit", "field", "rule"])
    )
    found = found.drop_duplicates(["unit", "field"])
    meta = definition.frame
    found = found.assign(
        unit_code=found["unit"],
        unit_name=districts["district_name"].reindex(found["unit"]).to_numpy(),
        label=found["field"].map(meta["label"]).to_numpy(),
        sheet="",
    ).drop(columns="unit")
    return make_findings(found, definition.rules)


def _file_names(provinces: pd.DataFrame) -> dict[str, str]:
    """province_code -> tinh-<slug>.xlsx (the code added where two provinces share a name)."""
    names = {}
    for code, name in zip(provinces["province_code"], provinces["province_name"], strict=True):
        bare = next((name[len(p) :] for p in _PREFIXES if name.startswith(p)), name)
        names[code] = f"tinh-{slug(bare)}"
    taken = pd.Series(names).duplicated(keep=False)
    return {c: (f"{n}-{c}" if taken.get(c, False) else n) + ".xlsx" for c, n in names.items()}


def write_provinces(
    definition: Definition, out_dir: Path, period: str, units: pd.DataFrame, district_values: pd.DataFrame
) -> list[Path]:
    """One workbook per province of `units` (the status table of consolidation: unit_code, district and
    province codes and names, status) with two or more districts; `district_values` is the consolidation's
    long frame (district_code, field, value). Returns the paths written."""
    districts = (
        units.drop_duplicates("district_code")
        .set_index("district_code")[["district_name", "province_code", "province_name"]]
        .sort_index()
    )
    several = districts.groupby("province_code").size()
    several = several[several >= 2].index
    if not len(several):
        return []
    fields = shown_fields(definition)
    dv = district_values[district_values["field"].isin(fields)]
    figures = dv.pivot_table(index="district_code", columns="field", values="value", aggfunc="first")
    figures = figures.reindex(index=districts.index, columns=fields)
    found = district_findings(definition, figures.dropna(how="all"), districts)
    received = (
        units.assign(got=units["status"] != STATUS_MISSING)
        .groupby("district_code")["got"]
        .agg(["sum", "size"])
    )
    names = _file_names(districts.drop_duplicates("province_code").reset_index())
    paths = []
    for code in sorted(several):
        mine = districts[districts["province_code"] == code]
        path = out_dir / names[code]
        _write_workbook(
            path,
            definition,
            period,
            mine,
            figures.reindex(mine.index),
            received,
            found[found["unit_code"].isin(mine.index)],
            fields,
        )
        paths.append(path)
    return paths


_FORMATS = {
    "title": {"bold": True, "font_size": 14},
    "note": {"italic": True},
    "head": {"bold": True, "border": 1, "text_wrap": True, "align": "center", "bg_color": "#DDEBF7"},
    "text": {"border": 1, "text_wrap": True},
    "num": {"border": 1, "num_format": "#,##0.##"},
    "flag": {"border": 1, "num_format": "#,##0.##", "bg_color": _FLAG},
}


def _write_workbook(
    path: Path,
    definition: Definition,
    period: str,
    districts: pd.DataFrame,
    figures: pd.DataFrame,
    received: pd.DataFrame,
    found: pd.DataFrame,
    fields: list[str],
) -> None:
    """Write one province's workbook to `path` (atomically): the districts sheet and the warnings."""
    with atomic_path(path) as tmp:
        wb = xlsxwriter.Workbook(str(tmp), WORKBOOK_OPTIONS)
        wb.set_custom_property(OUTPUT_PROPERTY, "province")  # never read back as a submission
        fmt = {k: wb.add_format(_BASE | v) for k, v in _FORMATS.items()}
        _districts_sheet(wb, fmt, definition, period, districts, figures, received, found, fields)
        _warnings_sheet(wb, fmt, districts, found)
        wb.close()


def _districts_sheet(wb, fmt: dict, definition: Definition, period: str, districts: pd.DataFrame,
                     figures: pd.DataFrame, received: pd.DataFrame, found: pd.DataFrame,
                     fields: list[str]) -> None:
    """Sheet "Theo đơn vị cấp huyện": a row per district with how many units sent and its figures,
    those in `found` coloured with the warning as a comment."""
    province = districts["province_name"].iloc[0]
    flags = {(u, f): m for u, f, m in zip(found["unit_code"], found["field"], found["message"], strict=True)}
    ws = wb.add_worksheet("Theo đơn vị cấp huyện", worksheet_class=Worksheet)
    last = 2 + len(fields)
    ws.write_string(0, 0, f"TỔNG HỢP THEO ĐƠN VỊ CẤP HUYỆN – {province.upper()}", fmt["title"])
    ws.write_string(1, 0, f"{definition.title} – {definition.period_label(period)}", fmt["note"])
    ws.write_string(
        2,
        0,
        "Ô tô màu cam: số liệu chênh lệch nhiều so với các đơn vị cấp huyện khác trong tỉnh "
        "hoặc ngoài khoảng hợp lý; xem ghi chú trong ô và trang «Cảnh báo».",
        fmt["note"],
    )
    heads = ["Mã", "Đơn vị cấp huyện", "Số đơn vị đã nộp"] + [_header(definition, f) for f in fields]
    for c, h in enumerate(heads):
        ws.write_string(4, c, h, fmt["head"])
    ws.set_row(4, 60)
    got = received.reindex(districts.index)
    counts = [f"{int(s)}/{int(n)}" if n == n else "" for s, n in zip(got["sum"], got["size"], strict=True)]
    rows = zip(districts.index, districts["district_name"], counts, figures.to_numpy(dtype=float).tolist(),
               strict=True)
    for r, (code, name, count, numbers) in enumerate(rows, start=5):
        ws.write_string(r, 0, str(code), fmt["text"])
        ws.write_string(r, 1, str(name), fmt["text"])
        ws.write_string(r, 2, count, fmt["text"])
        for c, (f, v) in enumerate(zip(fields, numbers, strict=True), start=3):
            message = flags.get((code, f))
            if v != v:  # NaN: the district has no such figure
                ws.write_blank(r, c, None, fmt["text"])
            else:
                ws.write_number(r, c, v, fmt["flag"] if message else fmt["num"])
            if message:
                ws.write_comment(r, c, message, {"x_scale": 3, "y_scale": 2.5, "font_name": FONT})
    ws.set_column(0, 0, 8)
    ws.set_column(1, 1, 26)
    ws.set_column(2, 2, 10)
    ws.set_column(3, last, 14)
    ws.freeze_panes(5, 2)
    ws.repeat_rows(4)
    _page(ws, last_row=4 + len(districts), last_col=last)


def _header(definition: Definition, fid: str) -> str:
    f = definition.fields[fid]
    return f"{f.label} ({f.unit})" if f.unit and f.unit not in f.label.lower() else f.label


def _warnings_sheet(wb, fmt: dict, districts: pd.DataFrame, found: pd.DataFrame) -> None:
    ws = wb.add_worksheet("Cảnh báo", worksheet_class=Worksheet)
    heads = ["Mã", "Đơn vị cấp huyện", "Mục", "Giá trị", "Nội dung cảnh báo"]
    for c, h in enumerate(heads):
        ws.write_string(0, c, h, fmt["head"])
    if found.empty:
        ws.write_string(1, 0, "Không có cảnh báo nào.", fmt["note"])
    order = {code: i for i, code in enumerate(districts.index)}
    found = found.assign(_o=found["unit_code"].map(order)).sort_values(["_o"], kind="stable")
    for r, row in enumerate(found.itertuples(index=False), start=1):
        ws.write_string(r, 0, str(row.unit_code), fmt["text"])
        ws.write_string(r, 1, str(row.unit_name), fmt["text"])
        ws.write_string(r, 2, str(row.label), fmt["text"])
        ws.write_string(r, 3, show(row.value), fmt["text"])
        ws.write_string(r, 4, str(row.message), fmt["text"])
    for c, w in enumerate((8, 24, 36, 14, 90)):
        ws.set_column(c, c, w)
    ws.freeze_panes(1, 0)
    ws.repeat_rows(0)
    _page(ws, last_row=max(1, len(found)), last_col=len(heads) - 1)


def _page(ws, last_row: int, last_col: int) -> None:
    """A4 landscape, fit to the page width."""
    page_setup(ws, landscape=True, print_area=(last_row, last_col))

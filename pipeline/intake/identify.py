"""Who sent a submission, for which period, on which template: identity checks.

`identify(definition, units, raws, values, period)` returns the submissions frame (one row per readable
workbook: submission, unit_code, unit_name, district..., period, in_period) and identity findings.

A file belongs to the period written in it (the typed period cell, else the hidden metadata), not to
the day it arrives: `in_period` is True only where that is the run's period (always, without one).
"""

from __future__ import annotations

import pandas as pd

from pipeline.definition import Definition
from pipeline.findings import Finding
from pipeline.text import nfc, unit_key

SUBMISSION_UNIT_COLUMNS = [
    "unit_code",
    "unit_name",
    "full_name",
    "district_code",
    "district_name",
    "province_code",
    "province_name",
    "slug",
]


def _clean(v: object) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return nfc(str(v))


def identify(
    definition: Definition,
    units: pd.DataFrame,
    metas: dict[int, dict],
    values: pd.DataFrame,
    period: str | None,
) -> tuple[pd.DataFrame, list[Finding]]:
    """Match each submission to a unit of the list and check template version and period.

    `metas`: submission → hidden-sheet metadata; `values`: the parsed long frame. Returns
    (frame indexed by submission with SUBMISSION_UNIT_COLUMNS + period + report_date, findings).
    """
    f_code, f_name, f_period = (definition.role(r) for r in ("unit_code", "unit_name", "period"))
    roles = values[values["field"].isin([f_code.id, f_name.id, f_period.id])]
    found = {
        (s, f): (_clean(r), c)
        for s, f, r, c in zip(roles["submission"], roles["field"], roles["raw"], roles["cell"], strict=True)
    }
    by_code = {r["unit_code"]: r for r in units.to_dict("records")}  # plain dicts: no .loc per submission
    by_key = {r["key"]: r for r in units.drop_duplicates("key").to_dict("records")}
    rows: list[dict] = []
    findings: list[Finding] = []

    def cell(sub: int, fid: str) -> tuple[str, str]:
        return found.get((sub, fid)) or ("", definition.fields[fid].cell)

    for sub, meta in metas.items():
        code, code_cell = cell(sub, f_code.id)
        name, name_cell = cell(sub, f_name.id)
        code = code or _clean(meta.get("unit_code"))
        version = _clean(meta.get("template_version"))
        if version and version != str(definition.version):
            findings.append(Finding("template-version", sub, field="", cell="",
                                    value=f"{definition.id} v{version}", expected=definition.template_key))
        unit = None
        if code and code.zfill(5) in by_code:
            unit = by_code[code.zfill(5)]
            code = code.zfill(5)
        else:
            if code:  # a code that is not in the list is wrong even when the name tells the unit
                findings.append(Finding("unit-unknown", sub, field=f_code.id, cell=code_cell, value=code))
            if name and unit_key(name) in by_key:
                unit = by_key[unit_key(name)]
                code = unit["unit_code"]
            elif name and not code:
                findings.append(Finding("unit-unknown", sub, field=f_name.id, cell=name_cell, value=name))
        if unit is None and not code and not name:
            findings.append(Finding("unit-missing", sub, field=f_name.id, cell=name_cell))
        got_period, period_cell = cell(sub, f_period.id)
        got_period = got_period or _clean(meta.get("period"))
        if period and got_period != period:
            rule = "period-mismatch" if got_period else "period-missing"
            findings.append(Finding(rule, sub, field=f_period.id, cell=period_cell, value=got_period,
                                    detail=period))
        row = {"submission": sub, "period": got_period, "in_period": not period or got_period == period}
        if unit is not None:
            u = unit | {"unit_code": code}
            row |= {c: u.get(c, "") for c in SUBMISSION_UNIT_COLUMNS}
            row["unit_name"] = u.get("full_name") or u.get("unit_name", "")
        else:
            row |= {c: "" for c in SUBMISSION_UNIT_COLUMNS}
            row["unit_name"] = name or code
        rows.append(row)
    columns = ["submission", "period", "in_period", *SUBMISSION_UNIT_COLUMNS]
    frame = pd.DataFrame(rows, columns=columns)
    frame = frame.set_index("submission")
    return frame, findings

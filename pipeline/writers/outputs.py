"""Plain outputs: values.csv, findings.csv, bang-so-lieu.csv (the wide table), findings.json, manifest.json.

The CSV files are for people: they open right in a Vietnamese-locale Excel or LibreOffice (fields
separated by ";", decimal comma, UTF-8 with BOM so accents show, Vietnamese headers, a unit code kept
as text with its leading zero, severities in words). A string a spreadsheet would run as a formula gets
a leading quote (OWASP). findings.json and manifest.json are for programs (`tonghop send`, scripts).
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.atomic import atomic_path, write_text
from pipeline.consolidate import RECEIVED
from pipeline.findings import SEVERITY_VN, public
from pipeline.text import per_distinct

# values.csv and the "Dữ liệu" sheet: column id → header
VALUES_HEADERS = {
    "period": "Kỳ báo cáo", "district": "Huyện", "unit_code": "Mã đơn vị", "unit_name": "Tên đơn vị",
    "sheet": "Trang", "field": "Mã mục", "label": "Mục", "unit": "Đơn vị tính", "value": "Giá trị",
    "raw": "Giá trị gốc", "counted": "Được tổng hợp", "reason": "Lý do không tổng hợp", "file": "Tệp",
    "cell": "Ô",
}
VALUES_COLUMNS = list(VALUES_HEADERS)
FINDINGS_HEADERS = {
    "severity": "Mức độ", "unit_code": "Mã đơn vị", "unit_name": "Tên đơn vị", "file": "Tệp",
    "sheet": "Trang", "cell": "Ô", "field": "Mã mục", "label": "Mục", "value": "Giá trị đã ghi",
    "message": "Nội dung", "expected": "Giá trị đúng", "suggestion": "Có thể là", "rule": "Mã quy tắc",
}
CODE_COLUMNS = ("unit_code", "Mã đơn vị")  # digits kept as text (="07069"): Excel drops a leading zero
SEPARATOR = ";"  # the list separator of Vietnamese Windows: Excel opens the file in columns
_BLOCK = 100_000  # lines joined before one write
_RISKY = ("=", "+", "-", "@", "\t", "\r", "\n")  # first characters that make a spreadsheet run a formula


def number_text(v: float) -> str:
    """A number as a Vietnamese-locale spreadsheet reads it from a CSV field: 828, 785,87, -0,5."""
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v)).replace(".", ",")


def _csv_fields(column: pd.Series, code: bool = False) -> list[str]:
    """Each cell of a column as a field of a csv line (the csv module's quoting), once per distinct value:
    missing cells and non-finite numbers empty, numbers with a decimal comma, risky strings with a
    leading quote, in a code column a code of digits as the formula ="07069"."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=SEPARATOR, lineterminator="\r\n")

    def field(v: object) -> str:
        if v.__class__ is str:
            if code and v.isdigit() and v.isascii():
                return f'="{v}"'
            if v.startswith(_RISKY):
                v = "'" + v
        elif isinstance(v, numbers.Real) and not isinstance(v, bool):
            return number_text(float(v)) if math.isfinite(v) else ""
        if v == "" or v is None:  # alone on a line the csv module quotes an empty field; in a row it is empty
            return ""
        buf.seek(0)
        buf.truncate()
        writer.writerow([v])
        return buf.getvalue()[:-2]

    return per_distinct(column, field)


def write_csv(df: pd.DataFrame, target: Path, headers: dict[str, str] | None = None) -> None:
    """Write `df` atomically as a Vietnamese-locale CSV (see the module's docstring), headed by
    `headers[column]` (default: the column names). Each distinct value of a column is quoted once and the
    lines are joined in blocks: the columns of values.csv hold a few thousand distinct values in 650,000
    cells (1.9 against 4.7 s for `writerows` at 636,000 rows)."""
    columns = [_csv_fields(df[c], code=c in CODE_COLUMNS) for c in df.columns]
    if len(columns) == 1:  # a line of one empty field is written "" (an empty line would be no row)
        columns = [[f or '""' for f in columns[0]]]
    head = io.StringIO()
    csv.writer(head, delimiter=SEPARATOR, lineterminator="\r\n").writerow(
        [(headers or {}).get(c, str(c)) for c in df.columns])
    # the BOM by hand: the utf-8-sig codec encodes in Python, a call per write
    with atomic_path(target) as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
        fh.write("\ufeff" + head.getvalue())
        for start in range(0, len(df), _BLOCK):
            block = zip(*(c[start:start + _BLOCK] for c in columns), strict=True)
            fh.write("\r\n".join(map(SEPARATOR.join, block)) + "\r\n")


def unit_of_measure(field) -> str:
    """A field's unit of measure as headers show it: "hộ", "%" for a rate, "" for text."""
    return field.unit or ("%" if field.type == "percent" else "")


def values_table(values: pd.DataFrame, submissions: pd.DataFrame, definition) -> pd.DataFrame:
    """The tidy values in VALUES_COLUMNS: `period` the period written in the value's file, `value` the
    figure used (recomputed for totals), `raw` the text the ward typed, `counted`/`reason` whether the
    value counts in the district figures and why not."""
    meta = definition.frame
    cols = ["unit_code", "unit_name", "district_name", "file", "period"]
    v = values.drop(columns=[*cols, "district_code"], errors="ignore")
    v = v.join(submissions[cols], on="submission")
    raw = per_distinct(v["raw"], show_plain)
    value = v["value"].astype(object).where(v["value"].notna(), v["text"])
    units = {f.id: unit_of_measure(f) for f in definition.fields.values()}
    out = pd.DataFrame(
        {
            "period": v["period"].fillna(""),
            "district": v["district_name"],
            "unit_code": v["unit_code"],
            "unit_name": v["unit_name"],
            "sheet": v["field"].map(meta["sheet"]),
            "field": v["field"],
            "label": v["field"].map(meta["label"]),
            "unit": v["field"].map(units),
            "value": value,
            "raw": raw,
            "counted": v.get("counted", ""),
            "reason": v.get("reason", ""),
            "file": v["file"],
            "cell": v["cell"],
        }
    )
    order = v["field"].map(meta["order"])
    return out.assign(_o=order).sort_values(["unit_code", "file", "_o"], kind="stable").drop(columns="_o")


def show_plain(v: object) -> str:
    """A value as values.csv writes its raw text (828.0 → "828")."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def findings_table(findings: pd.DataFrame) -> pd.DataFrame:
    """The findings with the columns of findings.csv (FINDINGS_HEADERS), severities in words."""
    out = findings.reindex(columns=list(FINDINGS_HEADERS)).copy()
    out["severity"] = findings["severity"].map(SEVERITY_VN).fillna(findings["severity"])
    return out


def wide_table(definition, units: pd.DataFrame, figures: pd.DataFrame, left_out: pd.DataFrame,
               texts: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """The pivot table: a row per unit of the list, a column per consolidated field holding the figure
    counted in the district figures (blank where left out or not sent), choices as text. Returns
    (frame, column id → Vietnamese header with the unit of measure)."""
    fields = [f for f in definition.fields.values()
              if (f.numeric and (f.method != "none" or f.total_of)) or f.method == "count"]
    fig = figures.where(~left_out.reindex_like(figures).fillna(False).astype(bool))
    fig = fig.reindex(units["unit_code"].tolist())
    head = {"unit_code": "Mã đơn vị", "unit_name": "Tên đơn vị", "district_name": "Huyện",
            "province_name": "Tỉnh", "status": "Trạng thái"}
    names = units["full_name"] if "full_name" in units else units["unit_name"]
    out = pd.DataFrame({"unit_code": units["unit_code"].to_numpy(), "unit_name": names.to_numpy(),
                        "district_name": units["district_name"].to_numpy(),
                        "province_name": units["province_name"].to_numpy(),
                        "status": units["status"].to_numpy()})
    for f in fields:
        if f.numeric:
            col = fig[f.id].to_numpy(dtype=float) if f.id in fig else np.full(len(out), np.nan)
        else:
            col = (texts[f.id].reindex(units["unit_code"]).to_numpy(dtype=object)
                   if texts is not None and f.id in texts else np.full(len(out), None, dtype=object))
        out[f.id] = col
        unit = unit_of_measure(f)
        head[f.id] = f"{f.label} ({unit})" if unit else f.label
    return out, head


def read_csv(path: Path, headers: dict[str, str] | None = None) -> pd.DataFrame:
    """Read back a CSV written by `write_csv`: columns renamed from `headers` to their ids, every cell
    text, a code written ="07069" as 07069, missing cells ''. (`csv_number` reads a figure.)"""
    df = pd.read_csv(path, sep=SEPARATOR, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    df = df.rename(columns={v: k for k, v in (headers or {}).items()})
    for c in df.columns:
        if c in CODE_COLUMNS:
            df[c] = df[c].str.replace(r'^="(\d*)"$', r"\1", regex=True)
    return df


def csv_number(text: str) -> float:
    """A figure as `write_csv` writes it ("785,87", "828") as a float; NaN when blank or not a number."""
    try:
        return float(str(text).replace(",", ".")) if str(text).strip() else math.nan
    except ValueError:
        return math.nan


def write_findings_json(findings: pd.DataFrame, target: Path) -> None:
    """The findings as a JSON list of objects with the keys of `tonghop check --json` (for programs)."""
    write_text(target, json.dumps(public(findings), ensure_ascii=False, indent=1, default=str) + "\n")


def write_manifest(target: Path, manifest: dict) -> None:
    write_text(target, json.dumps(manifest, ensure_ascii=False, indent=2, default=str) + "\n")


def _plain(v: object) -> object:
    """A JSON-ready scalar: NaN/NA → None, numpy numbers → Python numbers."""
    if v is None or (pd.api.types.is_scalar(v) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def manifest_units(table: pd.DataFrame, links: dict[str, str]) -> list[dict]:
    """manifest.json's `units`: one object per unit of the list (the status sheet's rows) with
    unit_code, unit_name (full name), status, file, errors, warnings, feedback (path relative to the
    output folder, or None). `tonghop send` writes its letters from these."""
    out = []
    for r in table.to_dict("records"):
        received = r.get("status") in RECEIVED
        out.append({
            "unit_code": r["unit_code"],
            "unit_name": r.get("full_name") or r["unit_name"],
            "status": r.get("status"),
            "file": _plain(r.get("file")),
            "errors": int(_plain(r.get("errors")) or 0) if received else None,
            "warnings": int(_plain(r.get("warnings")) or 0) if received else None,
            "feedback": links.get(r["unit_code"]),
        })
    return out


def choice_texts(definition, cons) -> pd.DataFrame:
    """The counted choices of each chosen unit: index unit_code, a column per choice field."""
    fields = [f.id for f in definition.fields.values() if f.method == "count"]
    v = cons.values
    v = v[v["field"].isin(fields) & (v["counted"] == "Có")]
    code = v["submission"].map(cons.units.dropna(subset=["submission"]).set_index("submission")["unit_code"])
    return v.assign(unit_code=code).dropna(subset=["unit_code"]).pivot_table(
        index="unit_code", columns="field", values="text", aggfunc="first")


def manifest_inputs(subs: pd.DataFrame, resub: list, shas: pd.Series, names: list[str]) -> list[dict]:
    """manifest.json's `inputs`: every workbook-like file with its SHA-256, unit, period and what became of
    it: chosen (its figures are this run's), superseded or duplicate (another file of the unit was
    chosen), other-period, unknown-unit, or unreadable (no values read: a finding says why)."""
    fate = {r.submission: "duplicate" if r.rule == "file-duplicate" else "superseded" for r in resub}
    read = {}
    for sub, file, chosen, in_period, code, period in zip(  # (columns, not iterrows: 90 ms at 1,000 files)
            subs.index, subs["file"], subs["chosen"], subs["in_period"], subs["unit_code"], subs["period"],
            strict=True):
        status = "chosen" if chosen else "other-period" if not in_period else fate.get(sub, "unknown-unit")
        read[file] = {"unit_code": code or None, "period": period or None, "status": status}
    out = []
    for sha, name in zip(shas, names, strict=True):
        item = {"file": name, "sha256": sha if isinstance(sha, str) else None}
        out.append(item | read.get(name, {"unit_code": None, "period": None, "status": "unreadable"}))
    return out

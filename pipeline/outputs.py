"""Plain outputs: values.csv, findings.csv (UTF-8 with BOM, formula-safe) and manifest.json."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd

from pipeline.atomic import atomic_path, write_text
from pipeline.findings import FINDING_COLUMNS
from pipeline.text import per_distinct

VALUES_COLUMNS = [
    "period",
    "district",
    "unit_code",
    "unit_name",
    "sheet",
    "field",
    "value",
    "raw",
    "file",
    "cell",
]
_BLOCK = 100_000  # lines joined before one write
_RISKY = ("=", "+", "-", "@", "\t", "\r", "\n")  # first characters that make a spreadsheet run a formula


def _csv_fields(column: pd.Series) -> list[str]:
    """Each cell of a column as a field of a csv line: written by the csv module (its quoting, repr of
    floats), once per distinct value; missing cells empty; risky strings with a leading quote first."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")

    def field(v: object) -> str:
        if v.__class__ is str and v.startswith(_RISKY):
            v = "'" + v
        if v == "" or v is None:  # alone on a line the csv module quotes an empty field; in a row it is empty
            return ""
        buf.seek(0)
        buf.truncate()
        writer.writerow([v])
        return buf.getvalue()[:-2]

    return per_distinct(column, field)


def write_csv(df: pd.DataFrame, target: Path) -> None:
    """Write `df` atomically as UTF-8 with BOM (Excel opens it with accents right). A string that a
    spreadsheet would run as a formula (leading =, +, -, @, tab, CR, LF) gets a leading quote (OWASP).

    The bytes are those of `csv.writer` (its quoting, CRLF), but each distinct value of a column is
    quoted once and the lines are joined in blocks: the columns of values.csv hold a few thousand
    distinct values in 650,000 cells, and this takes 40 % of the time of `writerows` on the cells
    (1.9 against 4.7 s at 636,000 rows)."""
    columns = [_csv_fields(df[c]) for c in df.columns]
    if len(columns) == 1:  # a line of one empty field is written "" (an empty line would be no row)
        columns = [[f or '""' for f in columns[0]]]
    head = io.StringIO()
    csv.writer(head, lineterminator="\r\n").writerow([str(c) for c in df.columns])
    # the BOM by hand: the utf-8-sig codec encodes in Python, a call per write
    with atomic_path(target) as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
        fh.write("\ufeff" + head.getvalue())
        for start in range(0, len(df), _BLOCK):
            block = zip(*(c[start:start + _BLOCK] for c in columns), strict=True)
            fh.write("\r\n".join(map(",".join, block)) + "\r\n")


def values_table(values: pd.DataFrame, submissions: pd.DataFrame, definition, period: str) -> pd.DataFrame:
    """The tidy values in VALUES_COLUMNS: `value` is the figure used (recomputed for totals), `raw` the
    text the ward typed."""
    meta = definition.frame
    cols = ["unit_code", "unit_name", "district_name", "file"]
    v = values.drop(columns=[*cols, "district_code"], errors="ignore")
    v = v.join(submissions[cols], on="submission")
    raw = per_distinct(v["raw"], show_plain)
    value = v["value"].astype(object).where(v["value"].notna(), v["text"])
    out = pd.DataFrame(
        {
            "period": period,
            "district": v["district_name"],
            "unit_code": v["unit_code"],
            "unit_name": v["unit_name"],
            "sheet": v["field"].map(meta["sheet"]),
            "field": v["field"],
            "value": value,
            "raw": raw,
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
    return findings[FINDING_COLUMNS]


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
        received = r.get("status") != "Chưa nộp"
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


def write_findings_json(findings: pd.DataFrame, target: Path) -> None:
    """findings.json: the findings as `tonghop check --json` prints them (FINDING_COLUMNS), plus
    `suggestion` where one is given."""
    rows = []
    extra = "suggestion" in findings.columns
    for record in findings.to_dict("records"):
        row = {k: _plain(record.get(k)) for k in FINDING_COLUMNS}
        if extra and _plain(record.get("suggestion")) not in (None, ""):
            row["suggestion"] = _plain(record["suggestion"])
        rows.append(row)
    write_text(target, json.dumps(rows, ensure_ascii=False, indent=1, default=str) + "\n")

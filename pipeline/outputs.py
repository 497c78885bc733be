"""Plain outputs: values.csv, findings.csv (UTF-8 with BOM, formula-safe) and manifest.json."""

from __future__ import annotations

import csv
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
_RISKY = ("=", "+", "-", "@", "\t", "\r", "\n")  # first characters that make a spreadsheet run a formula


def _csv_column(column: pd.Series) -> list:
    """A column as the csv module should write it: missing values blank, risky strings quoted."""
    return per_distinct(column, lambda v: "'" + v if v.__class__ is str and v.startswith(_RISKY) else v)


def write_csv(df: pd.DataFrame, target: Path) -> None:
    """Write `df` atomically as UTF-8 with BOM (Excel opens it with accents right). A string that a
    spreadsheet would run as a formula (leading =, +, -, @, tab, CR, LF) gets a leading quote (OWASP).
    Written by the csv module from plain lists: a third faster than DataFrame.to_csv at 650,000 rows."""
    columns = [_csv_column(df[c]) for c in df.columns]
    # the BOM by hand: the utf-8-sig codec encodes in Python, a call per row (1.5 s at 650,000 rows)
    with atomic_path(target) as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
        fh.write("\ufeff")
        out = csv.writer(fh, lineterminator="\r\n")
        out.writerow([str(c) for c in df.columns])
        out.writerows(zip(*columns, strict=True))


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

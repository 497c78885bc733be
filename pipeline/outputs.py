"""Plain outputs: values.csv, findings.csv (UTF-8 with BOM, formula-safe) and manifest.json."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipeline.atomic import atomic_path, write_text
from pipeline.findings import FINDING_COLUMNS

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
def write_csv(df: pd.DataFrame, target: Path) -> None:
    """Write `df` atomically as UTF-8 with BOM (Excel opens it with accents right). A string that a
    spreadsheet would run as a formula (leading =, +, -, @, tab, CR, LF) gets a leading quote (OWASP)."""
    safe = df.copy()
    for col in safe.columns:
        if safe[col].dtype == object or pd.api.types.is_string_dtype(safe[col]):
            column = safe[col]
            is_str = column.map(type, na_action="ignore").eq(str)
            risky = is_str.copy()
            risky[is_str] = column[is_str].astype(str).str.match(r"[=+\-@\t\r\n]")
            if risky.any():
                safe[col] = column.astype(object).where(~risky, "'" + column[risky].astype(str))
    with atomic_path(target) as tmp:
        safe.to_csv(tmp, index=False, encoding="utf-8-sig", lineterminator="\r\n")


def values_table(values: pd.DataFrame, submissions: pd.DataFrame, definition, period: str) -> pd.DataFrame:
    """The tidy values in VALUES_COLUMNS: `value` is the figure used (recomputed for totals), `raw` the
    text the ward typed."""
    meta = definition.frame
    cols = ["unit_code", "unit_name", "district_name", "file"]
    v = values.drop(columns=[*cols, "district_code"], errors="ignore")
    v = v.join(submissions[cols], on="submission")
    raw = v["raw"].map(
        lambda x: "" if x is None else (str(int(x)) if isinstance(x, float) and x.is_integer() else str(x))
    )
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


def findings_table(findings: pd.DataFrame) -> pd.DataFrame:
    return findings[FINDING_COLUMNS]


def write_manifest(target: Path, manifest: dict) -> None:
    write_text(target, json.dumps(manifest, ensure_ascii=False, indent=2, default=str) + "\n")

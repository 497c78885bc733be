"""pandera schemas derived from the report definition, one per sheet, and their failures as findings.

Form sheets are validated as one wide frame (a row per submission, a column per field); the table
sheet as one frame with a row per (submission, table row) and a column per table column. Each check
is element-wise, so every failure maps back by index and column to exactly one cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa

from pipeline.definition import IDENTITY_ROLES, NUMERIC, Definition, Field
from pipeline.wording import range_text


@dataclass(frozen=True)
class SheetSchema:
    sheet: str  # sheet id
    kind: str  # form | table
    schema: pa.DataFrameSchema
    rules: dict[tuple[str, int], str]  # (column, check number) → rule id
    details: dict[tuple[str, int], str]  # (column, check number) → {detail} text


def _column(f: Field, rules: dict, details: dict, name: str) -> pa.Column:
    checks: list[pa.Check] = []

    def add(check: pa.Check, rule: str, detail: str = "") -> None:
        rules[(name, len(checks))] = rule
        details[(name, len(checks))] = detail
        checks.append(check)

    if f.type in NUMERIC:
        if f.min is not None:
            rule = "value-negative" if f.min == 0 else "value-out-of-range"
            add(pa.Check.ge(f.min), rule, range_text(f.min, f.max))
        if f.max is not None:
            add(pa.Check.le(f.max), "value-out-of-range", range_text(f.min, f.max))
        return pa.Column(float, checks, nullable=not f.required, required=False, coerce=True)
    if f.type == "choice":
        add(pa.Check.isin(list(f.choices)), "choice-invalid", ", ".join(f.choices))
    return pa.Column(None, checks, nullable=not f.required, required=False)


def build_schemas(definition: Definition) -> dict[str, SheetSchema]:
    """One pandera schema per sheet of the definition (totals and identity fields excluded:
    totals are recomputed and checked against their parts, identity is checked on its own)."""
    out = {}
    for sheet in definition.sheets:
        rules: dict = {}
        details: dict = {}
        fields = [definition.fields[f] for f in sheet.fields]
        if sheet.kind == "form":
            cols = {f.id: _column(f, rules, details, f.id) for f in fields
                    if not f.total_of and f.role not in IDENTITY_ROLES}
        else:
            first = {f.table_col: f for f in fields if not f.total_of}
            cols = {c: _column(f, rules, details, c) for c, f in first.items()}
        schema = pa.DataFrameSchema(cols, name=sheet.name, strict=False)
        out[sheet.id] = SheetSchema(sheet.id, sheet.kind, schema, rules, details)
    return out


def run_schema(ss: SheetSchema, frame: pd.DataFrame) -> pd.DataFrame:
    """Validate `frame` lazily; return failures as (index, column, rule, detail, failure_case) rows.

    Missing values of required fields come back with rule "required-missing".
    """
    try:
        ss.schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        fc = exc.failure_cases
    else:
        return pd.DataFrame(columns=["index", "column", "rule", "detail", "failure_case"])
    fc = fc[fc["index"].notna()].copy()
    nullable = fc["check"].eq("not_nullable")
    num = fc["check_number"].fillna(-1).astype(int)
    fc["rule"] = [
        ("required-missing" if n else ss.rules.get((c, k), "value-out-of-range"))
        for c, k, n in zip(fc["column"], num, nullable, strict=True)
    ]
    fc["detail"] = [ss.details.get((c, k), "") for c, k in zip(fc["column"], num, strict=True)]
    return fc[["index", "column", "rule", "detail", "failure_case"]].reset_index(drop=True)

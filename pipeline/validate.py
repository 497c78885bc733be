"""Validate every submission at once: parse raw cells, recompute totals, run schemas and cross-checks.

`validate(definition, cells)` takes the long frame of raw cells of all submissions (columns
submission, field, raw, cell, pct) and returns `(values, findings)`: the same long frame with parsed
`value` (numbers; totals replaced by their recomputed figure) and `text` (text, choices, dates), and
the findings records (submission, field, cell, value, rule, expected, detail, suggestions).
"""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np
import pandas as pd

from pipeline.checks import run_checks
from pipeline.definition import NUMERIC, Definition
from pipeline.numbers import parse_date, parse_numbers
from pipeline.plausibility import plausibility_findings
from pipeline.schema import build_schemas, run_schema
from pipeline.text import fold, nfc, per_distinct

CELL_COLUMNS = ["submission", "field", "raw", "cell", "pct"]
FINDING_KEYS = ["submission", "field", "cell", "value", "rule", "expected", "detail", "suggestions"]


def _is_blank(raw: pd.Series) -> pd.Series:
    """True where a cell holds nothing: None/NaN or only spaces."""
    return pd.Series([v is None or (v.__class__ is str and not v.strip()) for v in raw.tolist()],
                     index=raw.index) | raw.isna()


def _text(raw: object) -> object:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    if isinstance(raw, (dt.date, dt.time, dt.timedelta)):
        return raw.isoformat()
    return nfc(str(raw))


def parse_cells(definition: Definition, cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse every raw cell by its field's type. Returns (cells with value/text/type, parse findings)."""
    meta = definition.frame
    df = cells.join(meta[["type", "is_total", "sheet_id"]], on="field")
    df["blank"] = _is_blank(df["raw"])
    df["value"] = np.nan
    df["text"] = None
    found = []
    num = df["type"].isin(NUMERIC)
    if num.any():
        parsed = parse_numbers(df.loc[num, "raw"], df.loc[num, "type"], df.loc[num, "pct"])
        # a figure beyond any real count (1e15) is a typing accident; it must not overflow a sum
        huge = parsed["value"].abs() >= 1e15
        parsed.loc[huge, ["value", "rule", "expected"]] = [np.nan, "number-invalid", np.nan]
        df.loc[num, "value"] = parsed["value"].to_numpy()
        bad = parsed[parsed["rule"].notna() & ~df.loc[num, "is_total"].to_numpy()]
        if not bad.empty:
            found.append(
                pd.DataFrame(
                    {
                        "submission": df.loc[bad.index, "submission"],
                        "field": df.loc[bad.index, "field"],
                        "cell": df.loc[bad.index, "cell"],
                        "value": df.loc[bad.index, "raw"],
                        "rule": bad["rule"],
                        "expected": bad["expected"],
                        "detail": "",
                        "suggestions": bad["suggestions"],
                    }
                )
            )
        df.loc[num, "parse_rule"] = parsed["rule"].to_numpy()
    # Excel cuts a cell at 32,767 characters: say so where a ward's text will be cut in the outputs
    long = pd.Series([v.__class__ is str and len(v) > 32_767 for v in df["raw"].tolist()], index=df.index)
    if long.any():
        found.append(pd.DataFrame({"submission": df.loc[long, "submission"], "field": df.loc[long, "field"],
                                   "cell": df.loc[long, "cell"], "value": df.loc[long, "raw"].str[:200] + "…",
                                   "rule": "text-too-long"}))
    other = ~num & ~df["blank"]
    df.loc[other, "text"] = pd.Series(per_distinct(df.loc[other, "raw"], _text, missing=None),
                                      index=df.index[other], dtype=object)
    choices = df["type"].eq("choice") & other
    if choices.any():
        canon = {}
        for f in definition.fields.values():
            for c in f.choices:
                canon[(f.id, fold(c))] = c
        fold_cached = functools.lru_cache(maxsize=4096)(fold)  # the same few words in every file
        df.loc[choices, "text"] = [
            canon.get((f, fold_cached(t)), t)
            for f, t in zip(df.loc[choices, "field"], df.loc[choices, "text"], strict=True)
        ]
    dates = df["type"].eq("date") & other
    if dates.any():
        at = df.index[dates]
        parsed = [parse_date(r) for r in df.loc[at, "raw"]]
        df.loc[at, "text"] = [d.isoformat() if d else None for d, _ in parsed]
        rules = pd.Series([rule for _, rule in parsed], index=at)
        bad = rules.index[rules.notna()]
        if len(bad):
            found.append(pd.DataFrame({"submission": df.loc[bad, "submission"], "field": df.loc[bad, "field"],
                                       "cell": df.loc[bad, "cell"], "value": df.loc[bad, "raw"],
                                       "rule": rules[bad]}))
    findings = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=FINDING_KEYS)
    return df, findings


def recompute_totals(definition: Definition, wide: pd.DataFrame) -> pd.DataFrame:
    """Replace every total column of the wide numeric frame by the sum of its parts (blank parts = 0)."""
    wide = wide.copy()
    for f in definition.fields.values():
        if f.total_of:
            parts = [p for p in f.total_of if p in wide.columns]
            wide[f.id] = wide[parts].sum(axis=1, min_count=0) if parts else np.nan
    return wide


def _lookup(wide: pd.DataFrame, subs: pd.Series, fields: pd.Series) -> np.ndarray:
    """wide.at[sub, field] for many pairs at once."""
    rows = wide.index.get_indexer(subs)
    cols = wide.columns.get_indexer(fields)
    return wide.to_numpy()[rows, cols]


def _total_findings(df: pd.DataFrame, wide: pd.DataFrame, unknown: pd.DataFrame) -> pd.DataFrame:
    """A declared total that is not blank and differs from the recomputed one (all parts readable)."""
    totals = df[df["is_total"] & ~df["blank"]]
    if totals.empty:
        return pd.DataFrame(columns=FINDING_KEYS)
    expected = _lookup(wide, totals["submission"], totals["field"])
    parts_unknown = _lookup(unknown, totals["submission"], totals["field"]).astype(bool)
    declared = totals["value"].to_numpy(dtype=float)
    bad = (np.isnan(declared) | (np.abs(declared - expected) > 1e-6)) & ~parts_unknown
    hit = totals[bad]
    return pd.DataFrame({"submission": hit["submission"].to_numpy(), "field": hit["field"].to_numpy(),
                         "cell": hit["cell"].to_numpy(), "value": hit["raw"].to_numpy(),
                         "rule": "total-mismatch", "expected": expected[bad]})


def _unknown(definition: Definition, numeric: pd.DataFrame, wide: pd.DataFrame) -> pd.DataFrame:
    """Boolean frame like `wide`: True where a typed figure could not be read (a total: any part)."""
    bad = (numeric["value"].isna() & ~numeric["blank"]).rename("bad")
    out = numeric.assign(bad=bad).pivot(index="submission", columns="field", values="bad")
    out = out.reindex(index=wide.index, columns=wide.columns).fillna(False).astype(bool)
    for f in definition.fields.values():
        if f.total_of:
            out[f.id] = out[list(f.total_of)].any(axis=1)
    return out


def _schema_findings(definition: Definition, df: pd.DataFrame) -> list[pd.DataFrame]:
    out = []
    schemas = build_schemas(definition)
    for sheet in definition.sheets:
        ss = schemas[sheet.id]
        part = df[df["sheet_id"] == sheet.id]
        if part.empty:
            continue
        col = np.where(part["type"].isin(NUMERIC), part["value"], part["text"])
        part = part.assign(v=col)
        if sheet.kind == "form":
            wide = part.pivot(index="submission", columns="field", values="v")
            fails = run_schema(ss, wide)
            if fails.empty:
                continue
            fails["submission"] = fails["index"]
            fails["field"] = fails["column"]
        else:
            fields = definition.fields
            part = part[~part["is_total"]]
            part = part.assign(
                row=part["field"].map({f: x.table_row for f, x in fields.items()}),
                col=part["field"].map({f: x.table_col for f, x in fields.items()}),
            )
            wide = part.pivot(index=["submission", "row"], columns="col", values="v")
            keys = wide.index  # validate on plain positions: failure indexes then map back exactly
            fails = run_schema(ss, wide.reset_index(drop=True))
            if fails.empty:
                continue
            pos = fails["index"].astype(int).to_numpy()
            fails["submission"] = keys.get_level_values(0)[pos]
            fails["field"] = [f"{r}.{c}" for r, c in zip(keys.get_level_values(1)[pos], fails["column"],
                                                        strict=True)]
        out.append(fails[["submission", "field", "rule", "detail"]])
    return out


def validate(definition: Definition, cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse, recompute totals, validate with pandera and cross-check every submission at once.

    `cells` has CELL_COLUMNS. Returns (values, findings): values adds `value`, `text`, `type`,
    `blank`, `declared` (the parsed declared figure of totals); findings has FINDING_KEYS.
    """
    df, parse_found = parse_cells(definition, cells)
    if "parse_rule" not in df:
        df["parse_rule"] = None
    numeric = df[df["type"].isin(NUMERIC)]
    wide = numeric.pivot(index="submission", columns="field", values="value")
    wide = wide.reindex(columns=[f for f, x in definition.fields.items() if x.numeric])
    wide = recompute_totals(definition, wide)
    unknown = _unknown(definition, numeric, wide)
    total_found = _total_findings(df, wide, unknown)
    df["declared"] = df["value"].where(df["is_total"])
    tot = df["is_total"]
    df.loc[tot, "value"] = _lookup(wide, df.loc[tot, "submission"], df.loc[tot, "field"])
    schema_found = _schema_findings(definition, df)
    cross = run_checks(definition, wide, unknown)
    plausible = plausibility_findings(definition, wide, unknown, df)
    parts = [parse_found, total_found, *schema_found, cross, plausible]
    findings = (
        pd.concat([p for p in parts if not p.empty], ignore_index=True)
        if any(not p.empty for p in parts)
        else pd.DataFrame(columns=FINDING_KEYS)
    )
    findings = _attach_cells(findings, df)
    return df, findings


def _attach_cells(findings: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Give every finding its cell and, where missing, the raw value found there.

    A cell with a parse error gets no second finding from the schema (required-missing on a cell that
    holds unreadable text would only repeat it).
    """
    for col in FINDING_KEYS:
        if col not in findings:
            findings[col] = None
    if findings.empty:
        return findings[FINDING_KEYS]
    where = df.set_index(["submission", "field"])[["cell", "raw", "parse_rule"]]
    key = pd.MultiIndex.from_arrays([findings["submission"], findings["field"]])
    found = where.reindex(key)
    findings["cell"] = findings["cell"].where(findings["cell"].notna(), found["cell"].to_numpy())
    has_value = findings["value"].notna()
    findings["value"] = findings["value"].where(has_value, found["raw"].to_numpy())
    repeated = findings["rule"].isin(
        ["required-missing", "value-negative", "value-out-of-range"]
    ) & pd.Series(found["parse_rule"].notna().to_numpy(), index=findings.index)
    extra = [c for c in findings.columns if c not in FINDING_KEYS]  # a rule's placeholders, for its message
    return findings.loc[~repeated, FINDING_KEYS + extra].reset_index(drop=True)

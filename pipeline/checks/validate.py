"""Validate every submission at once: parse raw cells, recompute totals, run schemas and cross-checks.

`validate(definition, cells)` takes the long frame of raw cells of all submissions (CELL_COLUMNS) and
returns `(values, findings)`: the same long frame with parsed `value` (numbers; totals replaced by
their recomputed figure) and `text` (text, choices, dates), and the findings records
(pipeline.findings.SUBMISSION_RECORD_COLUMNS).

Totals: a total cell that holds a formula summing its parts (the template's, as the ward left it) is
not a figure the ward declared: spreadsheets cache 0 there when the parts were typed as text. Only a
value typed over the formula (or a formula of the ward's own) is compared with the recomputed total.
Where parts typed as text made such a formula show a wrong total, the unit gets one warning
(`numbers-as-text`) saying so and how to fix it.
"""

from __future__ import annotations

import datetime as dt
import functools
import re

import numpy as np
import pandas as pd

from pipeline.checks.cross import run_checks
from pipeline.checks.plausibility import plausibility_findings
from pipeline.checks.schema import build_schemas, run_schema
from pipeline.definition import NUMERIC, Definition
from pipeline.findings import SUBMISSION_RECORD_COLUMNS
from pipeline.intake.reader import CELL_COLUMNS, FORMULA_UNREAD  # noqa: F401 (CELL_COLUMNS: the frame validate takes)
from pipeline.numbers import parse_date, parse_numbers
from pipeline.text import fold, nfc, per_distinct
from pipeline.wording import cells as cells_text


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
        parsed.loc[huge, ["value", "rule", "suggestion"]] = [np.nan, "number-invalid", np.nan]
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
                        "suggestion": bad["suggestion"],
                        "detail": "",
                        "suggestions": bad["suggestions"],
                    }
                )
            )
        df.loc[num, "parse_rule"] = parsed["rule"].to_numpy()
        df.loc[num, "suggestion"] = parsed["suggestion"].to_numpy()
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
    if not found:
        return df, pd.DataFrame(columns=SUBMISSION_RECORD_COLUMNS)
    findings = pd.concat(found, ignore_index=True)
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


_REF = re.compile(r"\$?([A-Z]{1,3})\$?(\d+)(?::\.?\$?([A-Z]{1,3})\$?(\d+))?")
_SHEET_PREFIX = re.compile(r"(?:'(?:[^']|'')*'|[^\s'!()+,;:=\[\]]+)?!|\[|\]|\.(?=\$?[A-Z])")
_SUM_SHAPE = re.compile(r"^(?:SUM\(|[()+,;\s]|REF)*$", re.IGNORECASE)


def _cols(a: str, b: str) -> range:
    from openpyxl.utils import column_index_from_string as ci

    return range(ci(a), ci(b) + 1)


def formula_cells(formula: str) -> set[str] | None:
    """The cells a formula adds up ("SUM(D6:D15)", "B14+B15", "of:=SUM([.D6:.D15])" from an .ods), or None
    when it does anything else than add cells."""
    text = formula.strip().upper()
    text = _SHEET_PREFIX.sub("", (text[3:] if text.startswith("OF:") else text).lstrip("="))
    cells: set[str] = set()
    for m in _REF.finditer(text):
        a, r1, b, r2 = m.groups()
        if b is None:
            cells.add(f"{a}{r1}")
            continue
        rows, cols = range(min(int(r1), int(r2)), max(int(r1), int(r2)) + 1), _cols(min(a, b), max(a, b))
        if len(rows) * len(cols) > 10_000:
            return None
        from openpyxl.utils import get_column_letter

        cells |= {f"{get_column_letter(c)}{r}" for r in rows for c in cols}
    return cells if _SUM_SHAPE.match(_REF.sub("REF", text)) and cells else None


def _template_formula(totals: pd.DataFrame, df: pd.DataFrame, definition: Definition) -> np.ndarray:
    """For each total row of `df` (`totals`), True when its cell holds a formula adding exactly its parts
    as the ward's file has them (rows moved or not) — the template's formula — or a formula whose text
    is not read (FORMULA_UNREAD)."""
    has = totals["formula"].fillna("").astype(str)
    out = np.zeros(len(totals), dtype=bool)
    todo = np.flatnonzero(has.ne("").to_numpy())
    if not len(todo):
        return out
    where = df.set_index(["submission", "field"])["cell"]
    for i in todo.tolist():
        formula, sub, fid = has.iat[i], totals["submission"].iat[i], totals["field"].iat[i]
        if formula == FORMULA_UNREAD:
            out[i] = True
            continue
        parts = {where.get((sub, p)) for p in definition.fields[fid].total_of}
        out[i] = formula_cells(formula) == {str(c).upper() for c in parts if isinstance(c, str)}
    return out


def _total_findings(definition: Definition, df: pd.DataFrame, wide: pd.DataFrame,
                    unknown: pd.DataFrame) -> pd.DataFrame:
    """A declared total (typed, not blank) that differs from the recomputed one (all parts readable)."""
    totals = df[df["declared_typed"]]
    if totals.empty:
        return pd.DataFrame(columns=SUBMISSION_RECORD_COLUMNS)
    expected = _lookup(wide, totals["submission"], totals["field"])
    parts_unknown = _lookup(unknown, totals["submission"], totals["field"]).astype(bool)
    declared = totals["value"].to_numpy(dtype=float)
    bad = (np.isnan(declared) | (np.abs(declared - expected) > 1e-6)) & ~parts_unknown
    hit = totals[bad]
    return pd.DataFrame({"submission": hit["submission"].to_numpy(), "field": hit["field"].to_numpy(),
                         "cell": hit["cell"].to_numpy(), "value": hit["raw"].to_numpy(),
                         "rule": "total-mismatch", "expected": expected[bad],
                         "detail": [definition.total_formula(f) for f in hit["field"]]})


def _text_findings(definition: Definition, df: pd.DataFrame, wide: pd.DataFrame) -> pd.DataFrame:
    """One `numbers-as-text` warning per submission whose parts typed as text made a total formula show a
    wrong figure, at the first such part, naming them (up to eight) sheet by sheet.

    The figure shown is the formula's cached result where the file has one (Excel and LibreOffice save
    it). Without one (a file written by a program), a SUM is known to leave text out in both; a sum
    written with "+" converts the texts in Excel, so it is not counted as wrong."""
    formula_totals = df[df["is_total"] & df["formula"].ne("") & ~df["declared_typed"]]
    if formula_totals.empty:
        return pd.DataFrame(columns=SUBMISSION_RECORD_COLUMNS)
    shown = formula_totals["value"].to_numpy(dtype=float)  # the cached result the ward saw
    right = _lookup(wide, formula_totals["submission"], formula_totals["field"])
    uncached = np.isnan(shown) & formula_totals["formula"].str.upper().str.contains("SUM").to_numpy()
    differs = ~np.isnan(shown) & ~(np.abs(shown - right) <= 1e-6)
    wrong = formula_totals[differs | (uncached & (right != 0))]
    if wrong.empty:
        return pd.DataFrame(columns=SUBMISSION_RECORD_COLUMNS)
    part_of = {p: t for t, f in definition.fields.items() for p in f.total_of}
    pairs = set(zip(wrong["submission"], wrong["field"], strict=True))
    text = df[df["value"].notna() & ~df["is_total"]]  # then the few typed as text (a test per value left)
    text = text[[v.__class__ is str for v in text["raw"].tolist()]]
    keys = zip(text["submission"], text["field"].map(part_of), strict=True)
    text = text[[k in pairs for k in keys]]
    if text.empty:
        return pd.DataFrame(columns=SUBMISSION_RECORD_COLUMNS)
    meta = definition.frame
    text = text.assign(_o=text["field"].map(meta["order"]), _s=text["field"].map(meta["sheet"]))
    text = text.sort_values(["submission", "_o"], kind="stable")
    rows = []
    for sub, group in text.groupby("submission", sort=False):
        shown_cells = group.head(8)
        by_sheet = [f"{cells_text(g['cell'].tolist())} (trang «{sheet}»)"
                    for sheet, g in shown_cells.groupby("_s", sort=False)]
        more = f" và {len(group) - 8} ô khác" if len(group) > 8 else ""
        rows.append({"submission": sub, "field": group["field"].iat[0], "cell": group["cell"].iat[0],
                     "value": group["raw"].iat[0], "rule": "numbers-as-text",
                     "detail": "; ".join(by_sheet) + more})
    return pd.DataFrame(rows)


def _unknown(definition: Definition, numeric: pd.DataFrame, wide: pd.DataFrame) -> pd.DataFrame:
    """Boolean frame like `wide`: True where a typed figure could not be read (a total: any part)."""
    bad = (numeric["value"].isna() & ~numeric["blank"]).rename("bad")
    out = numeric.assign(bad=bad).pivot(index="submission", columns="field", values="bad")
    # .eq(True), not .fillna(False): the pivot is object (True/False/NaN) where a submission lacks a
    # field, and pandas 2.2 warns that fillna's downcast of such a frame is deprecated
    out = out.reindex(index=wide.index, columns=wide.columns).eq(True)
    for f in definition.fields.values():
        if f.total_of:
            out[f.id] = out[list(f.total_of)].any(axis=1)
    return out


def _required_blank(definition: Definition, wide: pd.DataFrame) -> pd.DataFrame:
    """Boolean frame like `wide`: True where a required figure is blank (already a finding of its own)."""
    req = [f for f in wide.columns if definition.fields[f].required]
    out = pd.DataFrame(False, index=wide.index, columns=wide.columns)
    if req:
        out[req] = wide[req].isna()
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

    `cells` has CELL_COLUMNS (`formula` may be absent: no formulas). Returns (values, findings): values
    adds `value`, `text`, `type`, `blank`, `declared` (the figure a total cell showed), `declared_typed`
    (True where that figure was typed over the template's formula, or the cell had no formula) and
    `suggestion`; findings has SUBMISSION_RECORD_COLUMNS.
    """
    if "formula" not in cells:
        cells = cells.assign(formula="")
    df, parse_found = parse_cells(definition, cells)
    for col in ("parse_rule", "suggestion"):
        if col not in df:
            df[col] = None if col == "parse_rule" else np.nan
    df["formula"] = df["formula"].fillna("").astype(str)
    numeric = df[df["type"].isin(NUMERIC)]
    wide = numeric.pivot(index="submission", columns="field", values="value")
    wide = wide.reindex(columns=[f for f, x in definition.fields.items() if x.numeric])
    wide = recompute_totals(definition, wide)
    unknown = _unknown(definition, numeric, wide)
    tot = df["is_total"].to_numpy(dtype=bool)
    typed = np.zeros(len(df), dtype=bool)
    if tot.any():
        totals = df[tot]
        typed[tot] = ~totals["blank"].to_numpy(dtype=bool) & ~_template_formula(totals, df, definition)
    df["declared_typed"] = typed
    total_found = _total_findings(definition, df, wide, unknown)
    text_found = _text_findings(definition, df, wide)
    df["declared"] = df["value"].where(df["is_total"])
    df.loc[tot, "value"] = _lookup(wide, df.loc[tot, "submission"], df.loc[tot, "field"])
    schema_found = _schema_findings(definition, df)
    cross = run_checks(definition, wide, unknown | _required_blank(definition, wide))
    plausible = plausibility_findings(definition, wide, unknown, df)
    parts = [parse_found, total_found, text_found, *schema_found, cross, plausible]
    findings = (
        pd.concat([p for p in parts if not p.empty], ignore_index=True)
        if any(not p.empty for p in parts)
        else pd.DataFrame(columns=SUBMISSION_RECORD_COLUMNS)
    )
    findings = _attach_cells(findings, df)
    return df, findings


def _attach_cells(findings: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Give every finding its cell and, where missing, the raw value found there; name the cells of each
    side of a cross-check (`left_cells`, `right_cells`)."""
    for col in SUBMISSION_RECORD_COLUMNS:
        if col not in findings:
            findings[col] = None
    if findings.empty:
        return findings[SUBMISSION_RECORD_COLUMNS]
    where = df.set_index(["submission", "field"])[["cell", "raw", "parse_rule"]]
    key = pd.MultiIndex.from_arrays([findings["submission"], findings["field"]])
    found = where.reindex(key)
    findings["cell"] = findings["cell"].where(findings["cell"].notna(), found["cell"].to_numpy())
    has_value = findings["value"].notna()
    findings["value"] = findings["value"].where(has_value, found["raw"].to_numpy())
    sides = findings["left"].notna() | findings["right"].notna() if "left" in findings else None
    if sides is not None and sides.any():
        subs = findings.loc[sides, "submission"]
        wanted = [(sub, f) for side in ("left", "right")
                  for sub, ids in zip(subs, findings.loc[sides, side], strict=True)
                  for f in str(ids or "").split()]
        cells = where["cell"].reindex(pd.MultiIndex.from_tuples(wanted)).fillna("").tolist() if wanted else []
        cell_of = dict(zip(wanted, cells, strict=True))  # only the few cells the cross-checks name
        for side in ("left", "right"):
            findings.loc[sides, f"{side}_cells"] = [
                cells_text([cell_of.get((sub, f), "") for f in str(ids or "").split()])
                for sub, ids in zip(findings.loc[sides, "submission"], findings.loc[sides, side], strict=True)
            ]
    # a rule's own placeholders, for its message
    extra = [c for c in findings.columns if c not in SUBMISSION_RECORD_COLUMNS]
    return findings[SUBMISSION_RECORD_COLUMNS + extra].reset_index(drop=True)

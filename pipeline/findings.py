"""One record type for every problem found: a row of the findings frame.

Columns are those of `tonghop check --json` (FINDING_COLUMNS) plus the internal ones the pipeline uses
(INTERNAL_COLUMNS). Severities and messages come from the rules registry of the definition only.
`expected` is a figure known to be right (derived from the ward's own numbers: a recomputed total);
`suggestion` is a likely reading the ward must confirm ("8.28" → 828?).
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

FINDING_COLUMNS = [
    "file",
    "unit_code",
    "unit_name",
    "sheet",
    "cell",
    "field",
    "value",
    "rule",
    "severity",
    "message",
    "expected",
    "suggestion",
]
# submission: the workbook's index in the run; label: the field's label; detail, suggestions, other: what
# a message template says besides the value ({detail}: a range or a file name; {suggestions}: readings
# "828 hoặc 8,28"; {other}: the figure a cross-check compared with); also: the other fields a cross-check
# involves (space-separated ids), marked in the feedback workbook beside the finding's own cell.
INTERNAL_COLUMNS = ["submission", "label", "detail", "suggestions", "other", "also"]
ALL_COLUMNS = FINDING_COLUMNS + INTERNAL_COLUMNS
SEVERITY_ORDER = {"error": 0, "warning": 1}
SEVERITY_VN = {"error": "Lỗi", "warning": "Cảnh báo"}


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem, as a stage records it: the rule, where it is, what was found. Severity and message
    are never stated here: `make_findings` takes them from the rules registry. Stages that find problems
    one at a time (the guard's and the reader's verdicts, identification, mail) make Findings; stages
    that work over all wards at once (validation, cross-checks, plausibility) make frames whose columns
    are RECORD_COLUMNS; `make_findings` takes either."""

    rule: str
    submission: int | None = None  # the workbook's index in the run; None: the file as a whole, a mail
    file: str | None = None  # the file's name as people see it (set by the wiring for a submission's)
    sheet: str | None = None
    cell: str | None = None
    field: str | None = None
    value: object = None  # what the cell (or the file, the mail) held
    expected: object = None  # a figure known to be right (a recomputed total), else None
    suggestion: object = None  # a likely reading the ward must confirm, else None
    detail: object = None  # what the message says besides ({detail}: a range, a file name, a limit)
    unit_code: str | None = None
    unit_name: str | None = None
    params: Mapping[str, object] = dataclasses.field(default_factory=dict)  # the rule's other placeholders

    def record(self) -> dict[str, object]:
        """The finding as one record: the columns of RECORD_COLUMNS it sets, and its rule's placeholders."""
        out = {name: v for name in RECORD_COLUMNS if (v := getattr(self, name)) is not None}
        out.update(self.params)
        return out


# The columns of a stage's records (a Finding's fields); make_findings adds severity, message and label.
RECORD_COLUMNS = [f.name for f in dataclasses.fields(Finding) if f.name != "params"]


# What a rule's message may say besides a record's own columns, as columns of the frames the vectorised stages
# make: the readings suggested, the figure compared with, the other fields involved, the fields and the
# cells on each side of a cross-check.
PLACEHOLDER_COLUMNS = ["suggestions", "other", "also", "left", "right", "left_cells", "right_cells"]
# The columns of the findings frame of validation and the cross-checks, made over every ward at once: a
# record about a submission's cells, before the wiring names its file and unit (from the submission).
SUBMISSION_RECORD_COLUMNS = [c for c in RECORD_COLUMNS if c not in ("file", "unit_code", "unit_name")] + \
    PLACEHOLDER_COLUMNS


def records_frame(records: Iterable[Finding | Mapping[str, object]]) -> pd.DataFrame:
    """A frame of stage records from Findings or mappings: a column for each key any of them sets."""
    return pd.DataFrame([r.record() if isinstance(r, Finding) else dict(r) for r in records])


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


_FORMATTER = string.Formatter()


def show(value: object) -> str:
    """A value as a ward officer would write it: 828, 2.379, 785,87; text as is; blank as ''."""
    from pipeline.numbers import format_vn

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return format_vn(float(value))
    return str(value)


def render_message(template: str, fields: Mapping[str, object]) -> str:
    """Fill a rule's message template; missing placeholders become '', a blank {value} "(để trống)"."""
    values = _Blank({k: show(v) for k, v in fields.items()})
    if not values.get("value"):
        values["value"] = "(để trống)"
    return _FORMATTER.vformat(template, (), values)


def _suppressed(df: pd.DataFrame, rules: Mapping) -> pd.Series:
    """True for a finding that only repeats another on the same cell (its rule's `suppressed_by`)."""
    by = {rid: set(r.suppressed_by) for rid, r in rules.items() if getattr(r, "suppressed_by", ())}
    out = pd.Series(False, index=df.index)
    maybe = df["rule"].isin(list(by)) & df["field"].notna() & (df["field"] != "")
    if not maybe.any():
        return out
    here = set(zip(df["submission"], df["field"], df["rule"], strict=True))
    for i, sub, field, rule in zip(df.index[maybe], df.loc[maybe, "submission"], df.loc[maybe, "field"],
                                   df.loc[maybe, "rule"], strict=True):
        out[i] = any((sub, field, other) in here for other in by[rule])
    return out


def make_findings(records: Iterable[Finding | Mapping[str, object]] | pd.DataFrame, rules: Mapping
                  ) -> pd.DataFrame:
    """Build the findings frame from Findings, records or a frame of records holding at least `rule`;
    fill severity and message from the registry.

    `rules` maps rule id → Rule (severity, message). Returns a frame with ALL_COLUMNS; `value` and
    `expected` are kept as given (numbers stay numbers) and shown Vietnamese-style in the message.
    """
    df = records.copy() if isinstance(records, pd.DataFrame) else records_frame(records)
    for col in ALL_COLUMNS:
        if col not in df.columns:
            df[col] = None
    if df.empty:
        return df[ALL_COLUMNS].astype(object)
    df = df[~_suppressed(df, rules)]
    if df.empty:
        return df[ALL_COLUMNS].astype(object)
    df["severity"] = [rules[r].severity for r in df["rule"]]
    df["message"] = [
        render_message(rules[r].message, row)
        for r, row in zip(df["rule"], df.to_dict("records"), strict=True)
    ]
    return df[ALL_COLUMNS].astype(object).reset_index(drop=True)


def sort_findings(df: pd.DataFrame, order: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Errors first, then by unit and file; within a file the file's own problems first, then the
    fields in the order of the report (`order`: field id → position, e.g. Definition.frame["order"])."""
    if df.empty:
        return df
    key = df["severity"].map(SEVERITY_ORDER).fillna(9)
    pos = df["field"].map(order).fillna(-1) if order is not None else df["cell"]
    return (
        df.assign(_k=key, _p=pos)
        .sort_values(["_k", "unit_code", "file", "_p", "rule"], kind="stable", na_position="first")
        .drop(columns=["_k", "_p"])
        .reset_index(drop=True)
    )


def public(df: pd.DataFrame) -> list[dict]:
    """The findings as JSON-ready dicts with exactly FINDING_COLUMNS (NaN → None)."""
    out = []
    for row in df[FINDING_COLUMNS].to_dict("records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    return out

"""Cross-checks of the definition, run vectorised over all submissions at once.

Input: a wide frame of numbers (a row per submission, a column per numeric field id, totals already
recomputed). Output: findings records, one per failed check instance, at the check's first cell
(`field`), naming the fields on each side (`left`, `right`: space-separated ids, for the message) and
the other cells to mark with it (`also`: every cell of a comparison or ratio; a `required_if` check
marks only the cell to fill, its condition is not wrong), with the figures compared (`value`, `other`).
The work is plain numpy on one matrix, so the cost hardly depends on how many checks the definition has.

How blanks count: in a comparison (`compare`) a blank cell next to a filled one counts as 0 (in a
report of counts, nothing written means none: 5 women among blank participants is wrong), and the
check is skipped when both sides are blank. A check touching a cell whose figure could not be read, or
a required cell left blank, is skipped: that cell already has its own finding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.definition import Check, Definition
from pipeline.findings import SUBMISSION_RECORD_COLUMNS
from pipeline.wording import range_text


def side_sum(m: np.ndarray, cols: list[int]) -> np.ndarray:
    """Row-wise sum of the columns; NaN where all of them are blank."""
    part = m[:, cols]
    total = np.nansum(part, axis=1)
    total[np.isnan(part).all(axis=1)] = np.nan
    return total


def violations(check: Check, m: np.ndarray, col: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(violations mask, value shown, figure compared with) for one check over every row of `m`."""
    left, right = side_sum(m, [col[c] for c in check.left]), side_sum(m, [col[c] for c in check.right])
    with np.errstate(invalid="ignore", divide="ignore"):
        if check.kind == "compare":
            both_blank = np.isnan(left) & np.isnan(right)
            a, b = np.nan_to_num(left), np.nan_to_num(right)
            bad = {"le": a > b + 1e-9, "ge": a < b - 1e-9, "eq": np.abs(a - b) > 1e-9}[check.op]
            return bad & ~both_blank, left, right
        if check.kind == "required_if":
            field = m[:, col[check.left[0]]] if len(check.left) == 1 else left
            missing = np.isnan(field) if check.blank_only else (np.isnan(field) | (field <= 0))
            return (right > 0) & missing, field, right
        if check.kind == "ratio_between":
            ratio = np.round(np.where(right > 0, left / right, np.nan), 2)
            bad = ((ratio < check.min) | (ratio > check.max)) & ~np.isnan(ratio)
            return bad, ratio, right
    raise ValueError(f"unknown check kind {check.kind}")


def run_checks(
    definition: Definition, wide: pd.DataFrame, unknown: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every cross-check of the definition over the wide frame; one frame with SUBMISSION_RECORD_COLUMNS.

    `unknown` (same shape as `wide`, boolean) marks cells whose figure could not be read or that are
    required and blank: a check touching one of them is skipped for that submission.
    """
    m = wide.to_numpy(dtype=float)
    u = unknown.to_numpy(dtype=bool) if unknown is not None else np.zeros(m.shape, dtype=bool)
    col = {c: i for i, c in enumerate(wide.columns)}
    subs = wide.index.to_numpy()
    frames = []
    for check in definition.checks:
        bad, value, other = violations(check, m, col)
        bad &= ~u[:, [col[c] for c in {*check.left, *check.right}]].any(axis=1)
        if not bad.any():
            continue
        detail = (
            range_text(check.min, check.max) if check.kind == "ratio_between" else ""
        )
        involved = [] if check.kind == "required_if" else [*check.left, *check.right]
        frames.append(
            pd.DataFrame(
                {
                    "submission": subs[bad],
                    "field": check.at,
                    "also": " ".join(dict.fromkeys(c for c in involved if c != check.at)),
                    "left": " ".join(check.left),
                    "right": " ".join(check.right),
                    "value": value[bad],
                    "other": other[bad],
                    "rule": check.rule,
                    "detail": detail,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=SUBMISSION_RECORD_COLUMNS)
    return pd.concat(frames, ignore_index=True)

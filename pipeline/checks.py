"""Cross-checks of the definition, run vectorised over all submissions at once.

Input: a wide frame of numbers (a row per submission, a column per numeric field id, totals already
recomputed). Output: findings records (submission, field, value, expected, rule, detail), each at the
check's `at` cell. The work is plain numpy on one matrix, so the cost hardly depends on how many
checks the definition has.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.definition import Check, Definition

FINDING_KEYS = ["submission", "field", "value", "expected", "rule", "detail"]


def _sum(m: np.ndarray, cols: list[int]) -> np.ndarray:
    """Row-wise sum of the columns; NaN where all of them are blank."""
    part = m[:, cols]
    total = np.nansum(part, axis=1)
    total[np.isnan(part).all(axis=1)] = np.nan
    return total


def _evaluate(check: Check, m: np.ndarray, col: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(violations mask, value shown, expected) for one check over every row of matrix `m`."""
    left, right = _sum(m, [col[c] for c in check.left]), _sum(m, [col[c] for c in check.right])
    with np.errstate(invalid="ignore", divide="ignore"):
        if check.kind == "compare":
            bad = {"le": left > right + 1e-9, "ge": left < right - 1e-9, "eq": np.abs(left - right) > 1e-9}[
                check.op
            ]
            return bad & ~np.isnan(left) & ~np.isnan(right), left, right
        if check.kind == "required_if":
            field = m[:, col[check.left[0]]] if len(check.left) == 1 else left
            missing = np.isnan(field) if check.blank_only else (np.isnan(field) | (field <= 0))
            return (right > 0) & missing, field, right
        if check.kind == "ratio_between":
            ratio = np.round(np.where(right > 0, left / right, np.nan), 2)
            bad = ((ratio < check.min) | (ratio > check.max)) & ~np.isnan(ratio)
            return bad, ratio, np.full(len(ratio), np.nan)
    raise ValueError(f"unknown check kind {check.kind}")


def run_checks(
    definition: Definition, wide: pd.DataFrame, unknown: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every cross-check of the definition over the wide frame; one findings frame.

    `unknown` (same shape as `wide`, boolean) marks cells whose figure could not be read: a check
    touching one of them is skipped for that submission, as its reading is already a finding.
    """
    from pipeline.numbers import format_vn

    m = wide.to_numpy(dtype=float)
    u = unknown.to_numpy(dtype=bool) if unknown is not None else np.zeros(m.shape, dtype=bool)
    col = {c: i for i, c in enumerate(wide.columns)}
    subs = wide.index.to_numpy()
    frames = []
    for check in definition.checks:
        bad, value, expected = _evaluate(check, m, col)
        bad &= ~u[:, [col[c] for c in {*check.left, *check.right}]].any(axis=1)
        if not bad.any():
            continue
        detail = (
            f"từ {format_vn(check.min)} đến {format_vn(check.max)}" if check.kind == "ratio_between" else ""
        )
        frames.append(
            pd.DataFrame(
                {
                    "submission": subs[bad],
                    "field": check.at,
                    "value": value[bad],
                    "expected": expected[bad],
                    "rule": check.rule,
                    "detail": detail,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=FINDING_KEYS)
    return pd.concat(frames, ignore_index=True)

"""Comparison with earlier periods: each unit's figures, and each district's, against the history store's.

`flag_changes(current, earlier, definition, period)` compares every unit's figure with the same unit's
figure in the earlier periods the definition names (`history.compare_with`) and returns findings records
(rule change-vs-previous) where the change is beyond the definition's limits against every earlier figure
the store has, all units and fields at once. `compare_districts` gives each district figure its earlier
figure and the change in %, as reports write it ("tăng 114,79 %"). Pure functions of frames.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.definition import Definition
from pipeline.numbers import format_vn
from pipeline.periods import earlier_periods

RULE = "change-vs-previous"
KIND_WORDS = {"previous": "kỳ trước", "same_last_year": "cùng kỳ năm trước"}
EARLIER_COLUMNS = ["unit_code", "field", "value", "period"]


def change_text(pct: float) -> str:
    """A change in % as a report writes it: "tăng 114,79 %", "giảm 20 %", "không đổi"."""
    if pct != pct:
        return ""
    x = round(float(pct), 2)
    if x == 0:
        return "không đổi"
    return f"{'tăng' if x > 0 else 'giảm'} {format_vn(abs(x))} %"


def earlier_label(definition: Definition, kind: str, period: str) -> str:
    """ "kỳ trước, 6 tháng cuối năm 2019" / "cùng kỳ năm trước, 6 tháng đầu năm 2019"."""
    return f"{KIND_WORDS[kind]}, {definition.period_label(period)}"


def _percent(now: pd.Series, before: pd.Series) -> pd.Series:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (now - before) / before * 100


def flag_changes(
    current: pd.DataFrame, earlier: pd.DataFrame, definition: Definition, period: str
) -> pd.DataFrame:
    """Findings records for figures that changed implausibly against earlier periods.

    `current`: submission, unit_code, field, value, cell (the figures of the units' chosen submissions);
    `earlier`: unit_code, field, value, period (the store's figures of the earlier periods). A figure is
    compared with each earlier period of `definition.history.compare_with` whose figure is at least the
    field's `min_previous` (and above 0); it is flagged when its change is beyond `rise`/`fall` against
    every one of them, and the record names the first. Returns submission, field, cell, value, rule,
    change, previous, previous_period (empty when nothing is flagged)."""
    cols = ["submission", "field", "cell", "value", "rule", "change", "previous", "previous_period"]
    limits = definition.history.frame
    if current.empty or earlier.empty or limits.empty:
        return pd.DataFrame(columns=cols)
    now = current[current["field"].isin(limits.index) & current["value"].notna()]
    now = now.join(limits, on="field")
    kinds = earlier_periods(period, definition.history.compare_with)
    verdicts = []  # per kind: comparable, beyond, pct, previous
    for kind, p in kinds:
        e = earlier[(earlier["period"] == p) & earlier["value"].notna()]
        e = e.drop_duplicates(["unit_code", "field"], keep="last").set_index(["unit_code", "field"])["value"]
        prev = pd.Series(
            e.reindex(pd.MultiIndex.from_arrays([now["unit_code"], now["field"]])).to_numpy(),
            index=now.index,
            dtype=float,
        )
        comparable = prev.notna() & (prev > 0) & (prev >= now["min_previous"])
        pct = _percent(now["value"].astype(float), prev)
        beyond = comparable & ((pct > now["rise"].fillna(np.inf)) | (-pct > now["fall"].fillna(np.inf)))
        verdicts.append((kind, p, comparable, beyond, pct, prev))
    any_comparable = np.logical_or.reduce([c for _, _, c, _, _, _ in verdicts])
    all_beyond = np.logical_and.reduce([b | ~c for _, _, c, b, _, _ in verdicts])
    flagged = now[any_comparable & all_beyond]
    if flagged.empty:
        return pd.DataFrame(columns=cols)
    # the first comparable earlier period names the change
    first = pd.Series("", index=flagged.index, dtype=object)
    change = pd.Series(np.nan, index=flagged.index)
    previous = pd.Series(np.nan, index=flagged.index)
    for kind, p, comparable, _, pct, prev in reversed(verdicts):
        take = comparable[flagged.index]
        first = first.where(~take, earlier_label(definition, kind, p))
        change = change.where(~take, pct[flagged.index])
        previous = previous.where(~take, prev[flagged.index])
    return pd.DataFrame(
        {
            "submission": flagged["submission"],
            "field": flagged["field"],
            "cell": flagged["cell"],
            "value": flagged["value"],
            "rule": RULE,
            "change": [change_text(x) for x in change],
            "previous": previous,
            "previous_period": first,
        }
    )[cols].reset_index(drop=True)


def compare_districts(
    district: pd.DataFrame, earlier: pd.DataFrame, definition: Definition, period: str
) -> pd.DataFrame:
    """`district` (district_code, field, value, units) with the earlier figure beside each: columns
    previous, previous_period (the period id), previous_label ("kỳ trước, 6 tháng cuối năm 2019") and
    change ("tăng 114,79 %"). Per district the first period of `compare_with` for which the store has
    any of its figures is used, so one workbook compares with one period. `earlier`: district_code,
    field, value, period."""
    out = district.assign(previous=np.nan, previous_period="", previous_label="", change="")
    if district.empty or earlier.empty:
        return out
    kinds = earlier_periods(period, definition.history.compare_with)
    rank = {p: i for i, (_, p) in enumerate(kinds)}
    e = earlier[earlier["period"].isin(rank)].assign(_r=lambda x: x["period"].map(rank))
    if e.empty:
        return out
    best = e.groupby("district_code")["_r"].min()
    e = e[e["_r"] == e["district_code"].map(best)]
    e = e.drop_duplicates(["district_code", "field"], keep="last").set_index(["district_code", "field"])
    key = pd.MultiIndex.from_arrays([district["district_code"], district["field"]])
    prev = pd.Series(e["value"].reindex(key).to_numpy(dtype=float), index=district.index)
    chosen = district["district_code"].map(best)
    labels = {i: (p, earlier_label(definition, k, p)) for i, (k, p) in enumerate(kinds)}
    out["previous"] = prev
    out["previous_period"] = [labels[int(r)][0] if r == r else "" for r in chosen]
    out["previous_label"] = [labels[int(r)][1] if r == r else "" for r in chosen]
    pct = _percent(district["value"].astype(float), prev)
    out["change"] = [change_text(x) if b == b and b != 0 else "" for x, b in zip(pct, prev, strict=True)]
    return out

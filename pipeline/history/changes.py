"""What changed between two versions of a ward's report: the cells whose values differ, old → new.

`diff_versions(old, new, pairs, definition)` compares, for every (old, new) pair of submissions at once,
the tidy values of the two (a figure by its number, anything else by its text) and returns one row per
changed cell; `summarise_changes` turns them into a short Vietnamese line per new submission, for the
status sheet. Used when a resubmission supersedes a file, and by `tonghop diff A B`.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from pipeline.definition import Definition
from pipeline.findings import show

CHANGE_COLUMNS = ["new", "old", "field", "sheet", "cell", "label", "before", "after"]
BLANK = "(trống)"
_LONG = 60  # characters of a long text shown in a list of changes
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _keyed(values: pd.DataFrame) -> pd.DataFrame:
    """submission, field, cell and what the value is: the figure when there is one, else the text as
    read (stripped), blank as ''."""
    figure = values["value"]
    text = values["text"] if "text" in values else pd.Series(None, index=values.index, dtype=object)
    raw = values["raw"] if "raw" in values else pd.Series(None, index=values.index, dtype=object)
    words = text.where(text.notna(), raw)
    words = words.where(words.notna(), "").astype(str).str.strip()
    key = figure.astype(object).where(figure.notna(), words)
    return pd.DataFrame(
        {
            "submission": values["submission"].to_numpy(),
            "field": values["field"].to_numpy(),
            "cell": values["cell"].to_numpy(),
            "key": key.to_numpy(),
        }
    )


def _shown(v: object) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v == "":
        return BLANK
    text = show(v)
    if _ISO_DAY.fullmatch(text):  # a date as read ("2020-06-28") written as people write it
        text = f"{text[8:10]}/{text[5:7]}/{text[:4]}"
    return text if len(text) <= _LONG else text[: _LONG - 1] + "…"


def diff_versions(
    old: pd.DataFrame, new: pd.DataFrame, pairs: pd.DataFrame, definition: Definition
) -> pd.DataFrame:
    """The cells that differ between each pair's old and new submission.

    `old` and `new` are tidy value frames (submission, field, cell, value, text, raw; they may be the
    same frame); `pairs` has columns old, new (submission ids). Returns CHANGE_COLUMNS, a row per
    changed field in the order of the report: the cell is the new file's (the old one's where the new
    file lacks the field), before/after as a person reads them ("2.379", "(trống)")."""
    if pairs.empty:
        return pd.DataFrame(columns=CHANGE_COLUMNS)
    a = _keyed(old[old["submission"].isin(pairs["old"])])
    b = _keyed(new[new["submission"].isin(pairs["new"])])
    a = pairs[["old", "new"]].merge(a.rename(columns={"submission": "old"}), on="old")
    b = pairs[["old", "new"]].merge(b.rename(columns={"submission": "new"}), on="new")
    both = a.merge(b, on=["old", "new", "field"], how="outer", suffixes=("_a", "_b"))
    ka, kb = both["key_a"], both["key_b"]
    blank_a = ka.isna() | (ka == "")
    blank_b = kb.isna() | (kb == "")
    same = (blank_a & blank_b) | (ka == kb)
    changed = both[~same]
    meta = definition.frame
    out = pd.DataFrame(
        {
            "new": changed["new"],
            "old": changed["old"],
            "field": changed["field"],
            "sheet": changed["field"].map(meta["sheet"]).fillna(""),
            "cell": changed["cell_b"].where(changed["cell_b"].notna(), changed["cell_a"]).fillna(""),
            "label": changed["field"].map(meta["label"]).fillna(changed["field"]),
            "before": [_shown(v) for v in changed["key_a"]],
            "after": [_shown(v) for v in changed["key_b"]],
        }
    )
    order = out["field"].map(meta["order"]).fillna(len(meta))
    return (
        out.assign(_o=order)
        .sort_values(["new", "_o"], kind="stable")
        .drop(columns="_o")
        .reset_index(drop=True)[CHANGE_COLUMNS]
    )


def summarise_changes(changes: pd.DataFrame, limit: int = 8) -> pd.Series:
    """new submission → "Kết quả hoạt động!D9: 350 → 400; ..." (at most `limit` cells, then "và n ô khác")."""
    out = {}
    for new, group in changes.groupby("new", sort=False):
        items = [
            f"{s}!{c}: {b} → {a}"
            for s, c, b, a in zip(group["sheet"], group["cell"], group["before"], group["after"], strict=True)
        ]
        more = len(items) - limit
        out[new] = "; ".join(items[:limit]) + (f"; và {more} ô khác" if more > 0 else "")
    return pd.Series(out, dtype=object)

"""Consolidation: choose each unit's submission, then sum or average the figures per district.

Pure functions of frames. `choose_submissions` resolves duplicates and resubmissions;
`consolidate` returns the per-unit status table and the district figures, as the definition says
each field consolidates (sum, population-weighted mean, count of choices).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.definition import Definition

STATUS_OK, STATUS_ERRORS, STATUS_MISSING, STATUS_UNREADABLE = "Đạt", "Có lỗi", "Chưa nộp", "Không đọc được"


@dataclass
class Consolidation:
    units: pd.DataFrame  # one row per unit of the list: status, file, counts, key figures
    district: pd.DataFrame  # district_code, field, value, units (how many units contributed)
    choices: pd.DataFrame  # district_code, field, choice, count
    used: pd.DataFrame  # the tidy values consolidated (chosen submissions only)
    figures: pd.DataFrame  # the counted units' numbers: index unit_code, a column per field id


def choose_submissions(submissions: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Pick one submission per unit: identical files (same sha256) count once; of different files the
    newest wins (report date in the workbook, then file time, then name). Returns (submissions with
    a `chosen` column and `superseded` file names, findings for duplicates and superseded files).

    `submissions` needs file, unit_code, sha256, report_date, mtime.
    """
    s = submissions.copy()
    s["chosen"] = False
    s["superseded"] = ""
    findings = []
    # identical files: the first by name is the original, whatever the file times say
    by_name = s[s["unit_code"].astype(bool)].sort_values(["unit_code", "file"], kind="stable")
    dup = by_name.duplicated(["unit_code", "sha256"])
    original = by_name[~dup].set_index(["unit_code", "sha256"])["file"]
    dups = by_name[dup]
    findings = [
        {"submission": sub, "rule": "file-duplicate", "detail": original[(code, sha)]}
        for sub, code, sha in zip(dups.index, dups["unit_code"], dups["sha256"], strict=True)
    ]
    # of the distinct files of a unit, the newest wins
    order = by_name[~dup].assign(_d=s["report_date"].fillna(""), _m=s["mtime"].fillna(0.0))
    order = order.sort_values(
        ["unit_code", "_d", "_m", "file"], ascending=[True, False, False, True], kind="stable"
    )
    winners = order[~order.duplicated("unit_code")]
    s.loc[winners.index, "chosen"] = True
    winner_file = winners.set_index("unit_code")["file"]
    losers = order[order.duplicated("unit_code")]
    findings += [
        {"submission": sub, "rule": "file-superseded", "detail": winner_file[code]}
        for sub, code in zip(losers.index, losers["unit_code"], strict=True)
    ]
    others = (
        by_name[~by_name.index.isin(winners.index)]
        .groupby("unit_code")["file"]
        .agg(lambda files: "; ".join(sorted(files)))
    )
    s.loc[winners.index, "superseded"] = others.reindex(winners["unit_code"]).fillna("").to_numpy()
    return s, findings


def _weighted(num: pd.DataFrame, field: str, weight: str) -> pd.Series:
    v, w = num.get(field), num.get(weight)
    if v is None or w is None:
        return pd.Series(dtype=float)
    ok = v.notna() & w.notna() & (w > 0)
    return (v[ok] * w[ok]).groupby(level=0).sum() / w[ok].groupby(level=0).sum()


def consolidate(
    definition: Definition,
    units: pd.DataFrame,
    submissions: pd.DataFrame,
    values: pd.DataFrame,
    findings: pd.DataFrame,
    *,
    strict: bool = False,
) -> Consolidation:
    """Consolidate the chosen submissions per district of `units`.

    `submissions` (from choose_submissions) is indexed by submission with unit_code, file, chosen;
    `values` is the validated long frame; `findings` the rendered findings frame. With `strict`,
    units whose submission has errors are left out of the figures.
    """
    chosen = submissions[submissions["chosen"]]
    errs = findings[findings["severity"] == "error"].groupby("submission").size()
    warns = findings[findings["severity"] == "warning"].groupby("submission").size()
    chosen = chosen.assign(
        errors=errs.reindex(chosen.index).fillna(0).astype(int),
        warnings=warns.reindex(chosen.index).fillna(0).astype(int),
    )
    counted = chosen[chosen["errors"] == 0] if strict else chosen
    used = values[values["submission"].isin(counted.index)].copy()
    used = used.join(counted[["unit_code"]], on="submission")
    used = used.join(units.set_index("unit_code")[["district_code"]], on="unit_code")

    num = used[used["value"].notna()].pivot_table(
        index=["district_code", "unit_code"], columns="field", values="value", aggfunc="first"
    )
    by_district = num.droplevel("unit_code") if not num.empty else num
    parts = []
    for f in definition.fields.values():
        if f.method == "sum" and f.id in num.columns:
            col = by_district[f.id]
            val, n = col.groupby(level=0).sum(min_count=1), col.groupby(level=0).count()
        elif f.method == "weighted_mean" and f.id in num.columns:
            val = _weighted(by_district, f.id, f.weight)
            n = by_district[f.id].groupby(level=0).count()
        else:
            continue
        parts.append(pd.DataFrame({"district_code": n.index.to_numpy(), "field": f.id,
                                   "value": val.reindex(n.index).to_numpy(dtype=float),
                                   "units": n.to_numpy(dtype=int)}))
    district = (pd.concat(parts, ignore_index=True) if parts
                else pd.DataFrame(columns=["district_code", "field", "value", "units"]))

    ch = used[
        used["field"].isin([f.id for f in definition.fields.values() if f.method == "count"])
        & used["text"].notna()
    ]
    choices = (
        ch.groupby(["district_code", "field", "text"])
        .size()
        .rename("count")
        .reset_index()
        .rename(columns={"text": "choice"})
    )

    table = units.copy()
    by_unit = chosen.reset_index().set_index("unit_code")
    table["submission"] = by_unit["submission"].reindex(table["unit_code"]).to_numpy()
    for col in ("file", "errors", "warnings", "superseded", "received"):
        table[col] = by_unit[col].reindex(table["unit_code"]).to_numpy() if col in by_unit else None
    # a unit whose only file could not be read did send something: it has errors, not "missing"
    unread = findings[
        findings["submission"].isna() & findings["unit_code"].notna() & (findings["severity"] == "error")
    ]
    unread = unread[~unread["unit_code"].isin(chosen["unit_code"])].drop_duplicates("unit_code")
    unread = unread.set_index("unit_code")
    late = table["unit_code"].isin(unread.index) & table["submission"].isna()
    table.loc[late, "file"] = unread["file"].reindex(table.loc[late, "unit_code"]).to_numpy()
    table.loc[late, "errors"] = 1
    table.loc[late, "warnings"] = 0
    received = table["submission"].notna() | late
    table["status"] = np.where(
        ~received, STATUS_MISSING, np.where(table["errors"].fillna(0) > 0, STATUS_ERRORS, STATUS_OK)
    )
    table["counted"] = table["unit_code"].isin(counted["unit_code"])
    no_figures = pd.DataFrame(index=pd.Index([], name="unit_code", dtype=object))
    figures = num.droplevel("district_code") if not num.empty else no_figures
    return Consolidation(table, district, choices, used, figures)

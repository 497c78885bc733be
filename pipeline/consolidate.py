"""Consolidation: choose each unit's submission, decide which values count, sum or average them per district.

Pure functions of frames. `choose_submissions` resolves duplicates and resubmissions among the files of
the run's period; `consolidate` applies the counting rule and returns the per-unit status table, the
district figures (each with how many units it is built from, which it leaves out and why, which
values with warnings it includes) and the values with whether each was counted; `self_test` re-checks
the district figures against the definition.

The counting rule (README, "Which figures count"): a value with an error finding is left out of the
district figures, together with the values an error-level cross-check ties it to in the same unit (a
comparison cannot vouch for a figure whose partner is left out), and a total whose part is left out
counts as left out for such ties (then all its parts go: the district total stays the sum of the
district parts). A weighted mean leaves out the unit's weight with its value, and a value whose weight
is left out. Values with warnings are counted. A declared total is never used: totals are recomputed,
so a wrong declared total is an error of the file, not of the figures. So every district figure obeys
the definition's error-level checks, ranges and totals, which `self_test` verifies after the fact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.checks.cross import violations
from pipeline.definition import IDENTITY_ROLES, Definition
from pipeline.findings import Finding

STATUS_OK, STATUS_ERRORS, STATUS_MISSING = "Đạt", "Có lỗi", "Chưa nộp"
STATUS_WRONG_PERIOD = "Sai kỳ báo cáo"
RECEIVED = (STATUS_OK, STATUS_ERRORS)  # statuses of units whose figures can count
# Errors that say nothing against the figures counted: the declared total is never used (recomputed).
_NOT_AGAINST_FIGURES = frozenset({"total-mismatch"})


@dataclass
class Consolidation:
    units: pd.DataFrame  # one row per unit of the list: status, file, counts, files of other periods
    district: pd.DataFrame  # district_code, field, value, units, expected, left_out, warned
    choices: pd.DataFrame  # district_code, field, choice, count
    values: pd.DataFrame  # the tidy values of the chosen (and wrong-period) files, with counted/reason
    figures: pd.DataFrame  # chosen units' numbers: index unit_code, a column per numeric field id
    left_out: pd.DataFrame  # like `figures`, True where the unit's figure is left out of the district's
    checks: list[Finding]  # findings of the self-test on the district figures (normally none)


def choose_submissions(submissions: pd.DataFrame) -> tuple[pd.DataFrame, list[Finding]]:
    """Pick one submission per unit among the files of the run's period (`in_period`): identical files
    (same sha256) count once; of different files the newest wins (the definition's report date, then
    the time the file was received, then name). Files of other periods are never chosen, nor compared
    with the run's. Returns (submissions with `chosen` and `superseded` file names, findings for
    duplicates and superseded files).

    `submissions` needs file, unit_code, sha256, report_date, received, in_period.
    """
    s = submissions.copy()
    s["chosen"] = False
    s["superseded"] = ""
    in_period = s["in_period"]
    # identical files: the first by name is the original, whatever the file times say
    by_name = s[s["unit_code"].astype(bool) & in_period.astype(bool)].sort_values(["unit_code", "file"],
                                                                                  kind="stable")
    dup = by_name.duplicated(["unit_code", "sha256"])
    original = by_name[~dup].set_index(["unit_code", "sha256"])["file"]
    dups = by_name[dup]
    findings = [
        Finding("file-duplicate", sub, detail=original[(code, sha)])
        for sub, code, sha in zip(dups.index, dups["unit_code"], dups["sha256"], strict=True)
    ]
    # of the distinct files of a unit, the newest wins
    distinct = by_name[~dup]
    # by position: assigning a Series to an empty frame would give it the Series' rows
    order = distinct.assign(_d=s["report_date"].reindex(distinct.index).fillna("").to_numpy(),
                            _m=s["received"].reindex(distinct.index).fillna("").to_numpy())
    order = order.sort_values(
        ["unit_code", "_d", "_m", "file"], ascending=[True, False, False, True], kind="stable"
    )
    winners = order[~order.duplicated("unit_code")]
    s.loc[winners.index, "chosen"] = True
    winner_file = winners.set_index("unit_code")["file"]
    losers = order[order.duplicated("unit_code")]
    findings += [
        Finding("file-superseded", sub, detail=winner_file[code])
        for sub, code in zip(losers.index, losers["unit_code"], strict=True)
    ]
    others = (
        by_name[~by_name.index.isin(winners.index)]
        .groupby("unit_code")["file"]
        .agg(lambda files: "; ".join(sorted(files)))
    )
    s.loc[winners.index, "superseded"] = others.reindex(winners["unit_code"]).fillna("").to_numpy()
    return s, findings


# --- the counting rule ----------------------------------------------------------------------------

def _ties(definition: Definition) -> list[tuple[list[str], list[str]]]:
    """(fields, totals among them) of every error-level comparison or ratio of the definition."""
    out = []
    for c in definition.checks:
        if c.kind == "required_if" or definition.rules[c.rule].severity != "error":
            continue
        fields = list(dict.fromkeys([*c.left, *c.right]))
        out.append((fields, [f for f in fields if definition.fields[f].total_of]))
    return out


def left_out_mask(definition: Definition, wide: pd.DataFrame, errors: pd.DataFrame) -> pd.DataFrame:
    """Which figures of each submission are left out of the district figures (the counting rule).

    `wide`: a row per counted submission, a column per numeric or choice field (values or NaN);
    `errors`: (submission, field) pairs with an error finding against the figure. Returns a boolean
    frame like `wide`."""
    cols = {c: i for i, c in enumerate(wide.columns)}
    x = np.zeros(wide.shape, dtype=bool)
    rows = wide.index.get_indexer(errors["submission"])
    where = np.array([cols.get(f, -1) for f in errors["field"]], dtype=int)
    ok = (rows >= 0) & (where >= 0)
    x[rows[ok], where[ok]] = True
    parts = {f.id: [cols[p] for p in f.total_of if p in cols] for f in definition.fields.values()
             if f.total_of and f.id in cols}
    ties = [([cols[f] for f in fields if f in cols], [t for t in totals if t in parts])
            for fields, totals in _ties(definition)]
    weights = [(cols[f.id], cols[f.weight]) for f in definition.fields.values()
               if f.method == "weighted_mean" and f.id in cols and f.weight in cols]
    while True:
        before = x.sum()
        for total, idx in parts.items():  # a total is left out where any part is (for the ties below)
            if idx:
                x[:, cols[total]] |= x[:, idx].any(axis=1)
        for idx, totals in ties:
            hit = x[:, idx].any(axis=1)
            if hit.any():
                x[np.ix_(hit, idx)] = True
                for t in totals:
                    x[np.ix_(hit, parts[t])] = True
        for value, weight in weights:
            x[:, value] |= x[:, weight]
        if x.sum() == before:
            break
    return pd.DataFrame(x, index=wide.index, columns=wide.columns)


def _wide(values: pd.DataFrame, fields: list[str], column: str) -> pd.DataFrame:
    part = values[values["field"].isin(fields)]
    wide = part.pivot(index="submission", columns="field", values=column)
    return wide.reindex(columns=fields)


def _names(units: pd.DataFrame) -> pd.Series:
    return (units["full_name"] if "full_name" in units else units["unit_name"]).fillna(units["unit_code"])


def consolidate(
    definition: Definition,
    units: pd.DataFrame,
    submissions: pd.DataFrame,
    values: pd.DataFrame,
    findings: pd.DataFrame,
    *,
    strict: bool = False,
) -> Consolidation:
    """Consolidate the chosen submissions per district of `units` by the counting rule.

    `submissions` (from choose_submissions) is indexed by submission with unit_code, file, chosen,
    in_period, period; `values` is the validated long frame; `findings` the rendered findings frame.
    With `strict`, units whose submission has errors are left out of the figures altogether.
    """
    chosen = submissions[submissions["chosen"]]
    errs = findings[findings["severity"] == "error"].groupby("submission").size()
    warns = findings[findings["severity"] == "warning"].groupby("submission").size()
    chosen = chosen.assign(
        errors=errs.reindex(chosen.index).fillna(0).astype(int),
        warnings=warns.reindex(chosen.index).fillna(0).astype(int),
    )
    fields = definition.fields
    numeric = [f for f, x in fields.items() if x.numeric]
    counted_fields = [f for f, x in fields.items() if x.numeric or x.method == "count"]
    mine = values[values["submission"].isin(chosen.index)]
    wide = _wide(mine, counted_fields, "value").reindex(chosen.index)
    choice = [f for f in counted_fields if not fields[f].numeric]
    if choice:
        texts = _wide(mine, choice, "text").reindex(chosen.index)
        wide[choice] = texts.notna().astype(float).where(texts.notna())  # a shape only, no figure
    against = findings[(findings["severity"] == "error") & ~findings["rule"].isin(_NOT_AGAINST_FIGURES)
                       & findings["submission"].notna()]
    pairs = _finding_fields(against)
    excluded = left_out_mask(definition, wide, pairs)
    if strict:
        excluded.loc[chosen.index[chosen["errors"] > 0]] = True
    code_of = chosen["unit_code"]
    figures = wide[numeric].set_axis(code_of.to_numpy(), axis=0).rename_axis("unit_code")
    left_out = excluded[numeric].set_axis(code_of.to_numpy(), axis=0).rename_axis("unit_code")

    table = _unit_table(units, submissions, chosen, findings, strict)
    district = _district_figures(definition, table, wide, excluded, code_of, findings, units)
    choices = _choice_counts(definition, table, mine, excluded, code_of)
    tidy = _counted_values(definition, values, submissions, chosen, excluded, pairs, strict)
    cons = Consolidation(table, district, choices, tidy, figures, left_out, [])
    cons.checks = self_test(definition, cons)
    return cons


def _finding_fields(findings: pd.DataFrame) -> pd.DataFrame:
    """(submission, field) of every cell a finding names: its own and the others a cross-check marks."""
    subs = findings["submission"].astype(int).tolist()
    own = list(zip(subs, findings["field"].fillna("").astype(str), strict=True))
    also = findings["also"].fillna("").astype(str) if "also" in findings else [""] * len(subs)
    more = [(s, f) for s, extra in zip(subs, also, strict=True) for f in extra.split()]
    pairs = pd.DataFrame(own + more, columns=["submission", "field"])
    return pairs[pairs["field"] != ""].drop_duplicates()


def _unit_table(units: pd.DataFrame, submissions: pd.DataFrame, chosen: pd.DataFrame,
                findings: pd.DataFrame, strict: bool) -> pd.DataFrame:
    """One row per unit of the list: its chosen file and status; files of other periods it sent."""
    table = units.copy()
    by_unit = chosen.reset_index().set_index("unit_code")
    table["submission"] = by_unit["submission"].reindex(table["unit_code"]).to_numpy()
    for col in ("file", "errors", "warnings", "superseded", "received", "report_date"):
        got = by_unit[col].reindex(table["unit_code"]).to_numpy() if col in by_unit else None
        # text columns stay object even when no unit sent anything (an all-missing column reads as float)
        table[col] = got if col in ("errors", "warnings") else pd.Series(got, index=table.index, dtype=object)
    out = submissions[~submissions["in_period"].astype(bool) & submissions["unit_code"].astype(bool)]
    other = out.groupby("unit_code").agg(
        other_files=("file", lambda f: "; ".join(sorted(f))),
        other_periods=("period", lambda p: ", ".join(sorted({x or "không ghi kỳ" for x in p}))))
    for col in ("other_files", "other_periods"):
        table[col] = other[col].astype(object).reindex(table["unit_code"]).fillna("").to_numpy()
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
    has = table["submission"].notna()
    wrong = ~has & ~late & (table["other_files"] != "")
    table["status"] = np.where(has | late, np.where(table["errors"].fillna(0) > 0, STATUS_ERRORS, STATUS_OK),
                               np.where(wrong, STATUS_WRONG_PERIOD, STATUS_MISSING))
    table.loc[wrong, "file"] = table.loc[wrong, "other_files"]
    counted = has & ~(strict & (table["errors"].fillna(0) > 0))
    table["counted"] = counted.to_numpy()
    return table


def _why_missing(status: str, other_periods: str) -> str:
    if status == STATUS_WRONG_PERIOD:
        return f"gửi báo cáo kỳ {other_periods}"
    return "chưa nộp báo cáo" if status == STATUS_MISSING else "tệp không đọc được"


def _district_figures(definition: Definition, table: pd.DataFrame, wide: pd.DataFrame, excluded: pd.DataFrame,
                      code_of: pd.Series, findings: pd.DataFrame, units: pd.DataFrame) -> pd.DataFrame:
    """A row per (district, consolidated field): value, units (n: the units whose figure it includes),
    expected (N: the units of the list), left_out ("name (why); ..." for every unit not included) and
    warned (names of units whose included figure has a warning). All fields at once: a matrix a unit by
    field, summed per district with numpy."""
    fields = [f for f in definition.fields.values()
              if f.id in wide.columns and f.numeric and f.method in ("sum", "weighted_mean")]
    columns = ["district_code", "field", "value", "units", "expected", "left_out", "warned"]
    if not fields:
        return pd.DataFrame(columns=columns)
    expected = units.groupby("district_code").size()
    districts = expected.index
    # plain dicts: looked up once per unit left out and per (district, field), a Series lookup costs 10 µs
    name_of = dict(zip(units["unit_code"], _names(units), strict=True))  # (codes are unique: pipeline.units)
    cols = {c: i for i, c in enumerate(wide.columns)}
    x, v = excluded.to_numpy(dtype=bool), wide.to_numpy(dtype=float)
    n_subs, n_fields = len(wide), len(fields)
    per = np.full((n_subs, n_fields), np.nan)
    drop = np.zeros((n_subs, n_fields), dtype=bool)
    for j, f in enumerate(fields):  # a total is the sum of its counted parts; a figure is left out whole
        idx = [cols[p] for p in f.total_of if p in cols] or [cols[f.id]]
        drop[:, j] = x[:, idx].any(axis=1)
        val = np.where(x[:, idx], np.nan, v[:, idx])
        per[:, j] = np.where(np.isnan(val).all(axis=1), np.nan, np.nansum(val, axis=1))
    weighted = [j for j, f in enumerate(fields) if f.method == "weighted_mean"]
    w = np.full((n_subs, n_fields), 1.0)
    for j in weighted:
        w[:, j] = v[:, cols[fields[j].weight]]
    ok = ~np.isnan(per) & ~np.isnan(w) & (w > 0)
    keep = ~drop
    keep[:, weighted] = ok[:, weighted]
    d = districts.get_indexer(code_of.map(units.set_index("unit_code")["district_code"]))
    sums, weights, present, counted = (np.zeros((len(districts), n_fields)) for _ in range(4))
    np.add.at(sums, d, np.where(ok, per * np.where(np.isnan(w), 0, w), 0.0))
    np.add.at(weights, d, np.where(ok, w, 0.0))
    np.add.at(present, d, ~np.isnan(per))
    np.add.at(counted, d, keep)
    value = np.where(present > 0, sums, np.nan)
    value[:, weighted] = np.where(weights[:, weighted] > 0, sums[:, weighted] / np.where(
        weights[:, weighted] > 0, weights[:, weighted], 1), np.nan)
    # left out: units that sent nothing usable, then figures dropped by the counting rule
    missing = table[~table["counted"]]
    listed: dict[tuple[int, int], list[str]] = {}
    base = {}
    for c, st, o, dc in zip(missing["unit_code"], missing["status"], missing["other_periods"],
                            missing["district_code"], strict=True):
        why = _why_missing(st, o) if st not in RECEIVED else "có lỗi, --strict"
        base.setdefault(districts.get_loc(dc), []).append(f"{name_of[c]} ({why})")
    cell = definition.frame["cell"].to_dict()
    codes = code_of.to_numpy()
    for i, j in zip(*np.nonzero(~keep), strict=True):
        f = fields[j]
        if drop[i, j]:
            ids = [p for p in (f.total_of or (f.id,)) if p in cols and x[i, cols[p]]]
            cells = ", ".join(str(cell[p]) for p in ids[:4]) + ("…" if len(ids) > 4 else "")
            why = f"số liệu có lỗi hoặc liên quan đến ô có lỗi: {cells}"
        elif np.isnan(per[i, j]):
            why = "không ghi số liệu"
        else:
            why = f"thiếu {definition.fields[f.weight].label.lower()} để tính bình quân"
        listed.setdefault((d[i], j), []).append(f"{name_of[codes[i]]} ({why})")
    warned = findings[(findings["severity"] == "warning") & findings["submission"].notna()]
    warn_names: dict[tuple[int, int], set[str]] = {}
    if len(warned):
        row_of = {s: i for i, s in enumerate(wide.index)}
        field_j = {}
        for j, f in enumerate(fields):
            for p in (f.id, *f.total_of):
                field_j.setdefault(p, []).append(j)
        for sub, fid in _finding_fields(warned).itertuples(index=False):
            i = row_of.get(sub)
            for j in field_j.get(fid, ()) if i is not None else ():
                if keep[i, j]:
                    warn_names.setdefault((d[i], j), set()).add(name_of[codes[i]])
    rows = []
    expected_of = expected.to_dict()
    for k, dc in enumerate(districts):
        for j, f in enumerate(fields):
            rows.append((dc, f.id, value[k, j], int(counted[k, j]), int(expected_of[dc]),
                         "; ".join(base.get(k, []) + listed.get((k, j), [])),
                         "; ".join(sorted(warn_names.get((k, j), ())))))
    return pd.DataFrame(rows, columns=columns)


def _choice_counts(definition: Definition, table: pd.DataFrame, mine: pd.DataFrame, excluded: pd.DataFrame,
                   code_of: pd.Series) -> pd.DataFrame:
    """How many counted units chose each listed choice, per district and field."""
    fields = [f.id for f in definition.fields.values() if f.method == "count"]
    ch = mine[mine["field"].isin(fields) & mine["text"].notna()]
    if ch.empty:
        return pd.DataFrame(columns=["district_code", "field", "choice", "count"])
    left = excluded.stack()
    left = left[left]
    drop = pd.MultiIndex.from_tuples(list(left.index), names=["submission", "field"]) if len(left) else None
    key = pd.MultiIndex.from_arrays([ch["submission"], ch["field"]])
    ch = ch[~key.isin(drop)] if drop is not None else ch
    ch = ch.assign(district_code=ch["submission"].map(code_of).map(
        table.set_index("unit_code")["district_code"]))
    return (ch.groupby(["district_code", "field", "text"]).size().rename("count").reset_index()
            .rename(columns={"text": "choice"}))


def _counted_values(definition: Definition, values: pd.DataFrame, submissions: pd.DataFrame,
                    chosen: pd.DataFrame, excluded: pd.DataFrame, errors: pd.DataFrame,
                    strict: bool) -> pd.DataFrame:
    """The values of the chosen files and of the files of other periods, with `counted` ("Có", "Không",
    or "" for fields that are not consolidated) and `reason` (why not)."""
    wrong = submissions.index[~submissions["in_period"].astype(bool)]
    v = values[values["submission"].isin(chosen.index) | values["submission"].isin(wrong)].copy()
    consolidated = v["field"].map({f.id: f.method != "none" or bool(f.total_of)
                                   for f in definition.fields.values()}).fillna(False).to_numpy(dtype=bool)
    rows = excluded.index.get_indexer(v["submission"])
    cols = excluded.columns.get_indexer(v["field"])
    inside = (rows >= 0) & (cols >= 0)
    left = np.zeros(len(v), dtype=bool)
    left[inside] = excluded.to_numpy(dtype=bool)[rows[inside], cols[inside]]
    own = pd.MultiIndex.from_arrays([v["submission"], v["field"]]).isin(
        pd.MultiIndex.from_arrays([errors["submission"], errors["field"]]))
    strict_subs = v["submission"].isin(chosen.index[chosen["errors"] > 0]).to_numpy() & strict
    in_wrong = v["submission"].isin(wrong).to_numpy()
    # the period's sentence only for the values of files of other periods (a few), not for every value
    wrong_text = np.full(len(v), "", dtype=object)
    if in_wrong.any():
        period = v.loc[in_wrong, "submission"].map(submissions["period"]).fillna("")
        period = period.replace("", "không ghi kỳ")
        wrong_text[in_wrong] = ("tệp là báo cáo kỳ " + period.astype(str)).to_numpy(dtype=object)
    v["counted"] = np.select([in_wrong, ~consolidated, left], ["Không", "", "Không"], "Có")
    v["reason"] = np.select(
        [in_wrong, ~consolidated | ~left, strict_subs, own],
        [wrong_text, "", "đơn vị có lỗi (--strict)", "ô này có lỗi"],
        "liên quan đến ô có lỗi")
    return v


# --- the self-test --------------------------------------------------------------------------------

def self_test(definition: Definition, cons: Consolidation) -> list[dict]:
    """Re-check every district figure against the definition: totals equal the sum of their parts,
    figures within the fields' bounds (sums: the lower bound; means: both), error-level cross-checks,
    choices from their lists. Returns one Finding per failure (rule `district-check-failed`; the
    district's code in its params)."""
    fields = definition.fields
    out = []
    if cons.district.empty:
        return out
    wide = cons.district.pivot(index="district_code", columns="field", values="value")
    cols = [f for f in fields if f in wide.columns]
    wide = wide.reindex(columns=cols)
    m = wide.to_numpy(dtype=float)
    col = {c: i for i, c in enumerate(cols)}

    def fail(d: str, fid: str, what: str) -> None:
        out.append(Finding("district-check-failed", field=fid, detail=what, params={"district_code": d}))

    for f in fields.values():
        if f.id not in col:
            continue
        x = m[:, col[f.id]]
        if f.total_of:
            parts = [col[p] for p in f.total_of if p in col]
            s = np.where(np.isnan(m[:, parts]).all(axis=1), np.nan, np.nansum(m[:, parts], axis=1))
            bad = ~(np.isnan(x) & np.isnan(s)) & ~(np.abs(np.nan_to_num(x) - np.nan_to_num(s)) <= 1e-6)
            for d in wide.index[bad]:
                fail(d, f.id, "tổng số khác tổng các thành phần")
        lo = f.min
        hi = f.max if f.method == "weighted_mean" else None
        with np.errstate(invalid="ignore"):
            bad = ((lo is not None) & (x < (lo if lo is not None else 0) - 1e-9)) | \
                  ((hi is not None) & (x > (hi if hi is not None else 0) + 1e-9))
        for d in wide.index[bad]:
            fail(d, f.id, "ngoài khoảng cho phép")
        if f.type == "integer" and f.method == "sum":
            for d in wide.index[~np.isnan(x) & (np.abs(x - np.round(x)) > 1e-6)]:
                fail(d, f.id, "không phải số nguyên")
    for c in definition.checks:
        if c.kind == "required_if" or definition.rules[c.rule].severity != "error":
            continue
        if not all(f in col for f in (*c.left, *c.right)):
            continue
        bad, _, _ = violations(c, m, col)
        for d in wide.index[bad]:
            fail(d, c.at, f"không thỏa kiểm tra «{c.rule}»")
    for r in cons.choices.itertuples(index=False):
        if str(r.choice) not in fields[r.field].choices:
            fail(r.district_code, r.field, f"lựa chọn ngoài danh sách «{r.choice}»")
    return out


def drop_out_of_period(definition: Definition, findings: pd.DataFrame, subs: pd.DataFrame) -> pd.DataFrame:
    """Findings without those about the figures of files of other periods: such a file is told which
    period it carries and which template to use; its figures are not this run's business."""
    out = subs.index[~subs["in_period"].astype(bool)]
    identity = {f.id for f in definition.fields.values() if f.role in IDENTITY_ROLES}
    about_figures = findings["submission"].isin(out) & findings["field"].fillna("").astype(str).ne("") & \
        ~findings["field"].isin(identity)
    return findings[~about_figures]

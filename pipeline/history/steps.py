"""The steps of a consolidation that use the history store, each a function of the run's frames.

In the order the job calls them: `received_times` (when each file reached the office: an email's date,
else the first run that saw it), `change_findings` (figures that changed implausibly since earlier
periods), `version_changes` (cells that changed between a superseded file and the one that replaced it,
in this inbox or since the last run of the period), `annotate_units` (deadline, received day, lateness and
changes as columns of the units table the writers receive), `compare_district_figures`, and
`record_run` (everything, in one transaction). Every function works without a store (`RunHistory` with
none): the run then has no history, and says why.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from pipeline.definition import Definition
from pipeline.history.changes import CHANGE_COLUMNS, diff_versions, summarise_changes
from pipeline.history.comparison import compare_districts, flag_changes
from pipeline.history.runs import RunHistory
from pipeline.history.store import now
from pipeline.periods import ON_TIME, earlier_periods, lateness, local_times

STATUS_RULES = {"file-duplicate": "duplicate", "file-superseded": "superseded"}


def received_times(hist: RunHistory, shas: pd.Series, seen_at: str) -> pd.Series:
    """Per file (sha256): the received time the store knows, else `seen_at` (first seen by this run).
    Never the file's modification time, which copying changes."""
    known = hist.received(sorted(set(shas.dropna())))
    got = shas.map(known).astype(object)
    return got.where(got.notna(), seen_at)


def statuses(subs: pd.DataFrame, findings: pd.DataFrame, period: str) -> pd.Series:
    """What the run made of each submission (the store's status): used, duplicate, superseded,
    unidentified, wrong-period or not-used."""
    said = findings[findings["rule"].isin(list(STATUS_RULES)) & findings["submission"].notna()]
    said = said.drop_duplicates("submission").set_index("submission")["rule"].map(STATUS_RULES)
    said.index = said.index.astype(int)
    rule = said.reindex(subs.index)
    unit = subs["unit_code"].fillna("").astype(bool)
    status = np.select(
        [
            subs["chosen"].astype(bool),
            rule.eq("duplicate"),
            rule.eq("superseded"),
            ~unit,
            subs["period"].fillna("") != period,
        ],
        ["used", "duplicate", "superseded", "unidentified", "wrong-period"],
        "not-used",
    )
    return pd.Series(status, index=subs.index)


def change_findings(
    hist: RunHistory, definition: Definition, period: str, subs: pd.DataFrame, values: pd.DataFrame
) -> pd.DataFrame:
    """Records (rule change-vs-previous) for the chosen submissions' figures that changed beyond the
    definition's limits since the earlier periods the store has; empty without them."""
    limits = definition.history.frame
    chosen = subs[subs["chosen"].astype(bool) & subs["unit_code"].fillna("").astype(bool)]
    if limits.empty or chosen.empty or hist.store is None:
        return pd.DataFrame()
    earlier = hist.earlier_unit_figures(
        [p for _, p in earlier_periods(period, definition.history.compare_with)]
    )
    if earlier.empty:
        return pd.DataFrame()
    mine = values[values["submission"].isin(chosen.index) & values["field"].isin(limits.index)]
    current = pd.DataFrame(
        {
            "submission": mine["submission"],
            "field": mine["field"],
            "value": mine["value"],
            "cell": mine["cell"],
            "unit_code": mine["submission"].map(chosen["unit_code"]),
        }
    )
    return flag_changes(current, earlier, definition, period)


def _previous_versions(subs: pd.DataFrame, status: pd.Series) -> pd.DataFrame:
    """old, new: for each chosen submission, the newest of the files it superseded in this inbox (the
    order `choose_submissions` uses: report date, then file time, then name)."""
    losers = subs[status == "superseded"]
    if losers.empty:
        return pd.DataFrame(columns=["old", "new"])
    order = losers.assign(_d=losers["report_date"].fillna(""), _m=losers["mtime"].fillna(0.0))
    order = order.sort_values(
        ["unit_code", "_d", "_m", "file"], ascending=[True, False, False, True], kind="stable"
    )
    newest = order[~order["unit_code"].duplicated()]
    winners = subs[status == "used"].reset_index().set_index("unit_code")
    winner_col = winners.columns[0]  # the submission key, whatever the index was called
    new = newest["unit_code"].map(winners[winner_col])
    pairs = pd.DataFrame({"old": newest.index, "new": new.to_numpy()}).dropna()
    return pairs.astype({"old": int, "new": int})


def version_changes(
    hist: RunHistory, definition: Definition, subs: pd.DataFrame, status: pd.Series, values: pd.DataFrame
) -> tuple[pd.DataFrame, pd.Series]:
    """The cells that changed between each used submission and the version it replaced: the newest
    superseded file of the same unit in this inbox, else the file the last run of this period used
    when that was another file. Returns (changes: CHANGE_COLUMNS with `new` the submission key,
    source: new submission key → Vietnamese name of the older version)."""
    pairs = _previous_versions(subs, status)
    parts, source = [], {}
    if not pairs.empty:
        parts.append(diff_versions(values, values, pairs, definition))
        source |= {n: f"tệp «{subs.at[o, 'file']}»" for o, n in zip(pairs["old"], pairs["new"], strict=True)}
    used = subs[(status == "used") & ~subs.index.isin(pairs["new"])]
    last = hist.last_used() if hist.store is not None and not used.empty else None
    if last is not None and not last.empty:
        here = set(subs["sha256"].dropna())
        before = used.reset_index().merge(last, on="unit_code", suffixes=("", "_old"))
        before = before[(before["sha256_old"] != before["sha256"]) & ~before["sha256_old"].isin(here)]
        if not before.empty:
            key = before.columns[0]
            stored = hist.stored_values(before["submission_id"].tolist())
            old_pairs = pd.DataFrame({"old": before["submission_id"], "new": before[key]})
            parts.append(diff_versions(stored, values, old_pairs, definition))
            source |= {
                n: f"tệp «{f}» đã tổng hợp lần trước"
                for n, f in zip(before[key], before["file_old"], strict=True)
            }
    changes = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CHANGE_COLUMNS)
    return changes, pd.Series(source, dtype=object)


def annotate_units(
    units: pd.DataFrame,
    received_by_file: pd.Series,
    deadline: dt.date | None,
    today: dt.date,
    changes: pd.DataFrame,
    sources: pd.Series,
) -> pd.DataFrame:
    """The units table with what the writers show about timing and versions: deadline (date),
    received (naive local time, from the received time of the unit's file), late_days and lateness
    ("Đúng hạn", "Muộn 3 ngày", "Quá hạn 5 ngày"), changes ("Kết quả hoạt động!D9: 350 → 400; ...")
    and changed_from (the older version compared)."""
    received = local_times(units["file"].map(received_by_file))
    days, words = lateness(received, deadline, today)
    sub = units["submission"]
    text = summarise_changes(changes) if not changes.empty else pd.Series(dtype=object)
    return units.assign(
        deadline=deadline,
        received=received.astype(object).where(received.notna(), None),
        late_days=days,
        lateness=words,
        changes=_texts(sub.map(text)),
        changed_from=_texts(sub.map(sources)),
    )


def _texts(column: pd.Series) -> pd.Series:
    """Text or "" (a unit without a submission, or without changes)."""
    column = column.astype(object)
    return column.where(column.notna(), "")


def compare_district_figures(
    hist: RunHistory, definition: Definition, period: str, district: pd.DataFrame
) -> pd.DataFrame:
    """The district figures with the earlier period's figure and the change in % beside each."""
    if hist.store is None or district.empty:
        return compare_districts(district, pd.DataFrame(), definition, period)
    periods = [p for _, p in earlier_periods(period, definition.history.compare_with)]
    return compare_districts(district, hist.earlier_district_figures(periods), definition, period)


def store_submissions(
    subs: pd.DataFrame,
    status: pd.Series,
    unread: pd.DataFrame,
    received_by_file: pd.Series,
    deadline: dt.date | None,
    today: dt.date,
) -> pd.DataFrame:
    """The submissions table of a run for `RunHistory.record`: the read submissions (keyed as in
    `subs`) and the files that could not be read (`unread`: file, path, sha256, unit_code, unit_name,
    errors, warnings; keyed after them)."""
    used = subs[status == "used"].reset_index()
    key = used.columns[0]
    winner = used.set_index("unit_code")[key]
    read = pd.DataFrame(
        {
            "file": subs["file"],
            "path": subs["path"],
            "sha256": subs["sha256"],
            "unit_code": subs["unit_code"],
            "unit_name": subs["unit_name"],
            "period": subs["period"],
            "report_date": subs["report_date"],
            "status": status,
            "errors": subs["errors"],
            "warnings": subs["warnings"],
            "superseded_by": subs["unit_code"].map(winner).where(status.isin(["superseded", "duplicate"])),
        },
        index=subs.index,
    )
    start = int(subs.index.max()) + 1 if len(subs) else 0
    other = unread.assign(status="unreadable", period=None, report_date=None, superseded_by=np.nan)
    other.index = pd.RangeIndex(start, start + len(other))
    out = pd.concat([read, other]) if len(other) else read
    received = out["file"].map(received_by_file)
    days, _ = lateness(local_times(received), deadline, today)
    return out.assign(received_at=received, late_days=days.where(out["status"] != "unreadable"))


def feedback_changes(changes: pd.DataFrame, sources: pd.Series) -> dict[int, tuple[str, list[tuple]]]:
    """submission key → (the older version's name, [(sheet, cell, label, before, after), ...]) for the
    feedback workbooks."""
    out = {}
    for new, group in changes.groupby("new", sort=False):
        rows = list(
            zip(group["sheet"], group["cell"], group["label"], group["before"], group["after"], strict=True)
        )
        out[new] = (str(sources.get(new, "")), rows)
    return out


def run_label(run_id: int | None, hist: RunHistory) -> str:
    """How the district workbook names its run: "lần tổng hợp số 7, tệp lịch sử lich-su.sqlite", or ""
    without a store."""
    if run_id is None or hist.path is None:
        return ""
    return f"lần tổng hợp số {run_id}, tệp lịch sử {hist.path.name}"


def on_time(units: pd.DataFrame) -> int | None:
    """How many units reported by the deadline (None when the run had no deadline)."""
    if "deadline" not in units or units["deadline"].isna().all():
        return None
    return int((units["lateness"] == ON_TIME).sum())


def _counts(findings: pd.DataFrame, by: str) -> tuple[pd.Series, pd.Series]:
    f = findings[findings[by].notna()]
    return (f[f["severity"] == "error"].groupby(by).size(), f[f["severity"] == "warning"].groupby(by).size())


def record_run(
    hist: RunHistory,
    run: dict,
    *,
    books: list[tuple[str, object]],
    names: list[str],
    subs: pd.DataFrame,
    status: pd.Series,
    values: pd.DataFrame,
    findings: pd.DataFrame,
    district: pd.DataFrame,
    received_by_file: pd.Series,
    run_id: int | None,
) -> int | None:
    """Record the run in the store (one transaction); returns its run_id, or None without a store.

    `books` are (sha256, or None for a file refused unread; path) of every spreadsheet file of the
    inbox and `names` their names; `subs` the submissions (with sha256, path, chosen...), `status`
    from `statuses`."""
    if hist.store is None:
        return None
    errors, warnings = _counts(findings, "submission")
    errors.index, warnings.index = errors.index.astype(int), warnings.index.astype(int)
    subs = subs.assign(
        errors=errors.reindex(subs.index).fillna(0).astype(int),
        warnings=warnings.reindex(subs.index).fillna(0).astype(int),
    )
    read = set(subs["file"])
    lost = [(n, sha, str(p)) for (sha, p), n in zip(books, names, strict=True) if n not in read]
    unread = pd.DataFrame(lost, columns=["file", "sha256", "path"])
    if len(unread):
        about = findings[findings["submission"].isna() & findings["file"].isin(unread["file"])]
        who = about.dropna(subset=["unit_code"]).drop_duplicates("file").set_index("file")
        errs, warns = _counts(about, "file")
        unread = unread.assign(
            unit_code=unread["file"].map(who["unit_code"]),
            unit_name=unread["file"].map(who["unit_name"]),
            errors=unread["file"].map(errs).fillna(0).astype(int),
            warnings=unread["file"].map(warns).fillna(0).astype(int),
        )
    table = store_submissions(
        subs,
        status,
        unread,
        received_by_file,
        run.get("deadline"),
        dt.date.fromisoformat(run["started_at"][:10]),
    )
    sizes = []
    for sha, path in books:
        if not isinstance(sha, str):  # refused by the pre-scan: never read, never hashed
            continue
        try:
            sizes.append((sha, path.stat().st_size))
        except OSError:
            sizes.append((sha, None))
    row = run | {
        "finished_at": now(),
        "deadline": None if run.get("deadline") is None else str(run["deadline"]),
    }
    return hist.record(row, sizes, table, values, findings, district, run_id=run_id)

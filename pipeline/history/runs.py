"""The history store as a consolidation run uses it: what it reads before, what it records after.

`RunHistory.open(path, definition, period)` opens (and checks) the store; before the figures are
consolidated the run asks it for the received times of its files, the earlier periods' figures of every
unit and district, and what the last run of the same period used; at the end `record(...)` writes the
run, its files, submissions, values, findings and district figures in one transaction (a run killed
before the commit leaves the store as it was). Nothing here raises for a store problem: the first one
(damaged file, read-only folder, locked) is kept in `problem` as a Vietnamese sentence, the store is
left alone from then on, and the run goes on without history.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.definition import Definition
from pipeline.history.store import Store, StoreError, note_files, open_store, received_times

log = logging.getLogger("tonghop")
STORE_NAME = "lich-su.sqlite"
_CHUNK = 500  # parameters in one IN (...)


def default_store(out: Path) -> Path:
    """Where the store lives by default: beside the period folders of the outputs."""
    return Path(out) / STORE_NAME


def _guarded(default: Callable[[], object]):
    """Run a RunHistory method only while the store is usable; a store problem ends its use."""

    def wrap(method):
        @functools.wraps(method)
        def inner(self, *args, **kwargs):
            if self.store is None:
                return default()
            try:
                return method(self, *args, **kwargs)
            except StoreError as exc:
                self.fail(str(exc), exc)
            except sqlite3.Error as exc:
                self.fail(self.store.explain(exc) if self.store else str(exc), exc)
            except Exception as exc:  # a defect here must not cost the officer the run's outputs
                log.exception("history store: %s failed", method.__name__)
                self.fail(
                    f"Không dùng được tệp lịch sử «{self.path}» (lỗi ngoài dự kiến, chi tiết trong "
                    "tonghop.log); lần tổng hợp này chưa được ghi vào lịch sử.",
                    exc,
                )
            return default()

        return inner

    return wrap


@dataclass
class RunHistory:
    """One run's use of the store; `store` is None when there is none (disabled, or a problem)."""

    path: Path | None
    definition: Definition
    period: str
    store: Store | None = None
    problem: str | None = None
    # record() leaves its transaction open for commit(): the job commits it once the outputs are in place,
    # so a run stopped between the two leaves the store as it was (and a rerun records it)
    defer_commit: bool = False
    pending: bool = False

    @classmethod
    def open(cls, path: Path | None, definition: Definition, period: str) -> RunHistory:
        """Open the store at `path` (None: no store); a problem is kept, never raised."""
        return cls(path, definition, period).connect()

    def connect(self) -> RunHistory:
        """Open (and check) the store unless it is open, failed or absent. The job connects after its
        reader processes are forked: they never inherit the connection."""
        if self.path is not None and self.store is None and self.problem is None:
            try:
                self.store = open_store(self.path, check=True)
            except StoreError as exc:
                self.fail(str(exc), exc)
        return self

    def fail(self, message: str, exc: BaseException | None = None) -> None:
        log.error("history store %s: %s (%r)", self.path, message, exc)
        self.problem = self.problem or message
        if self.store is not None:
            try:
                self.store.conn.rollback()
                self.store.close()
            except sqlite3.Error:
                pass
            self.store = None
            self.pending = False

    def close(self) -> None:
        """Close the store; a run recorded but not committed is rolled back."""
        if self.store is not None:
            if self.pending:
                with contextlib.suppress(sqlite3.Error):
                    self.store.conn.rollback()
                self.pending = False
            self.store.close()
            self.store = None

    @_guarded(lambda: None)
    def commit(self) -> None:
        """Commit the run record() left open (defer_commit); nothing when there is none."""
        if self.pending:
            self.pending = False
            self.store.conn.commit()

    # --- what a run reads ------------------------------------------------------------------------------

    @_guarded(dict)
    def received(self, shas: list[str]) -> dict[str, str]:
        """sha256 → received time (ISO 8601) of the files the store has seen before."""
        return received_times(self.store.conn, shas)

    @_guarded(lambda: None)
    def next_run(self) -> int | None:
        """The number the run will most likely get (another run recording meanwhile takes it first)."""
        return int(self.store.conn.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchone()[0])

    def _used_submissions(self, period: str, *, consolidations_only: bool = False) -> str:
        """SQL of the latest used submission of each unit in `period` (parameters: definition id, period)."""
        only = "AND r.command = 'consolidate'" if consolidations_only else ""
        return (
            "SELECT max(s.submission_id) AS sid FROM submissions s JOIN runs r ON r.run_id = s.run_id "
            f"WHERE r.definition_id = ? AND r.period = ? AND s.status = 'used' {only} GROUP BY s.unit_code"
        )

    @_guarded(lambda: pd.DataFrame(columns=["unit_code", "field", "value", "period"]))
    def earlier_unit_figures(self, periods: list[str]) -> pd.DataFrame:
        """unit_code, field, value, period: each unit's figures in each of `periods`, from the latest
        submission of it used there."""
        rows = []
        for period in periods:
            sql = (
                "SELECT s.unit_code, v.field, v.value, ? FROM submissions s "
                "JOIN cell_values v ON v.submission_id = s.submission_id "
                f"WHERE s.submission_id IN ({self._used_submissions(period)}) AND v.value IS NOT NULL"
            )
            rows += self.store.conn.execute(sql, (period, self.definition.id, period)).fetchall()
        return pd.DataFrame(rows, columns=["unit_code", "field", "value", "period"])

    @_guarded(lambda: pd.DataFrame(columns=["district_code", "field", "value", "period"]))
    def earlier_district_figures(self, periods: list[str]) -> pd.DataFrame:
        """district_code, field, value, period: each district's figures in `periods`, from the latest run
        that consolidated (or imported) that district."""
        rows = []
        for period in periods:
            sql = (
                "SELECT d.district_code, d.field, d.value, r.period FROM district_figures d "
                "JOIN runs r ON r.run_id = d.run_id WHERE r.definition_id = ? AND r.period = ? "
                "AND d.run_id = (SELECT max(d2.run_id) FROM district_figures d2 JOIN runs r2 "
                "ON r2.run_id = d2.run_id WHERE r2.definition_id = r.definition_id AND r2.period = r.period "
                "AND d2.district_code = d.district_code)"
            )
            rows += self.store.conn.execute(sql, (self.definition.id, period)).fetchall()
        return pd.DataFrame(rows, columns=["district_code", "field", "value", "period"])

    @_guarded(lambda: pd.DataFrame(columns=["unit_code", "submission_id", "sha256", "file"]))
    def last_used(self) -> pd.DataFrame:
        """unit_code, submission_id, sha256, file: what the latest consolidation of this period used
        for each unit."""
        sql = (
            "SELECT s.unit_code, s.submission_id, s.sha256, s.file FROM submissions s "
            f"WHERE s.submission_id IN ({self._used_submissions(self.period, consolidations_only=True)})"
        )
        rows = self.store.conn.execute(sql, (self.definition.id, self.period)).fetchall()
        return pd.DataFrame(rows, columns=["unit_code", "submission_id", "sha256", "file"])

    @_guarded(lambda: pd.DataFrame(columns=["submission", "field", "cell", "value", "text", "raw"]))
    def stored_values(self, submission_ids: list[int]) -> pd.DataFrame:
        """The values of stored submissions (submission = the store's submission_id)."""
        rows = []
        for start in range(0, len(submission_ids), _CHUNK):
            part = [int(i) for i in submission_ids[start : start + _CHUNK]]
            rows += self.store.conn.execute(
                "SELECT submission_id, field, cell, value, text, raw FROM cell_values "
                f"WHERE submission_id IN ({', '.join('?' * len(part))})",
                part,
            ).fetchall()
        frame = pd.DataFrame(rows, columns=["submission", "field", "cell", "value", "text", "raw"])
        return frame.astype({"value": float})

    # --- what a run records ----------------------------------------------------------------------------

    @_guarded(lambda: None)
    def record(
        self,
        run: dict,
        files: list[tuple[str, int | None]],
        submissions: pd.DataFrame,
        values: pd.DataFrame,
        findings: pd.DataFrame,
        district: pd.DataFrame,
        run_id: int | None = None,
    ) -> int:
        """Write one run in one transaction; returns its run_id (`run_id` when still free).

        `run` holds the runs columns (started_at, tool_version, period, ...); `files` (sha256, size) of
        every file seen; `submissions` is indexed by the run's own submission key and has the columns
        of the submissions table but submission_id and run_id (superseded_by holds a key of the same
        frame); `values` (submission key, field, cell, value, text, raw[, counted]) and `findings` (the
        findings frame; submission key or NaN) refer to those keys; `district` has district_code,
        field, value, units."""
        if self.defer_commit:  # BEGIN here, COMMIT in commit(); a failure rolls back (fail, close)
            self.store.conn.execute("BEGIN IMMEDIATE")
            self.pending = True
            return write_run(self.store.conn, self.definition, run, files, submissions, values, findings,
                             district, run_id)
        with self.store.transaction() as conn:
            return write_run(
                conn, self.definition, run, files, submissions, values, findings, district, run_id
            )


def _none(values) -> list:
    """A column as a list with NaN, NA and NaT as None (what sqlite3 binds as NULL)."""
    arr = values.tolist() if hasattr(values, "tolist") else list(values)
    return [
        None if (x is None or x is pd.NA or x is pd.NaT or (x.__class__ is float and x != x)) else x
        for x in arr
    ]


def _text(values) -> list:
    """A column as text or None."""
    return [None if x is None else x if x.__class__ is str else str(x) for x in _none(values)]


def _raw_kept(values: pd.DataFrame, figure: np.ndarray, text: pd.Series) -> pd.Series:
    """The raw text where it says more than the value, else None: text the ward typed where the value is
    a figure ("2.379", "8.28") or unlike the text value, a declared number the recomputation replaced."""
    raw = values["raw"] if "raw" in values else pd.Series(None, index=values.index, dtype=object)
    raw = raw.astype(object)
    is_str = raw.map(type).to_numpy() == str  # noqa: E721 (an array of classes: the fastest test here)
    number = pd.to_numeric(raw.where(~is_str), errors="coerce").to_numpy(dtype=float)
    keep_str = is_str & (raw != "").to_numpy() & (~np.isnan(figure) | (raw != text).to_numpy())
    keep_num = ~is_str & ~np.isnan(number) & (number != figure)
    out = raw.where(keep_str, None)
    out[keep_num] = [_plain(x) for x in number[keep_num]]
    return out


def _plain(x: float) -> str | None:
    return None if x != x else str(int(x)) if x.is_integer() else repr(x)


def _value_rows(values: pd.DataFrame, sid: np.ndarray) -> list[tuple[str, list[str], list]]:
    """The cell_values rows of `values` (submission ids `sid`), grouped by the columns they fill:
    [(sql, columns, rows)]. Blank cells (no figure, no text, nothing typed) are not stored. Binding a
    parameter is most of an insert's cost (about 1 µs each), so each row binds only what it has."""
    figure = values["value"].to_numpy(dtype=float)
    text = values["text"] if "text" in values else pd.Series(None, index=values.index, dtype=object)
    text = text.astype(object).where(text.notna(), None)
    raw = _raw_kept(values, figure, text)
    has_num, has_text, has_raw = ~np.isnan(figure), text.notna().to_numpy(), raw.notna().to_numpy()
    cols = {"submission_id": sid, "field": values["field"].to_numpy(dtype=object),
            "cell": values["cell"].astype(object).where(values["cell"].notna(), None).to_numpy(),
            "value": figure, "text": text.to_numpy(), "raw": raw.to_numpy()}
    if "counted" in values:  # 1, 0, or None (NULL) where not said; int64s land in an object array as ints
        counted = values["counted"]
        said = counted.notna().to_numpy()
        cols["counted"] = np.full(len(values), None, dtype=object)
        cols["counted"][said] = counted[said].astype(bool).to_numpy().astype(np.int64)
    out = []
    for kind, mask in (("value", has_num & ~has_raw), ("value raw", has_num & has_raw),
                       ("text", ~has_num & has_text & ~has_raw), ("text raw", ~has_num & has_raw)):
        if not mask.any():
            continue
        names = ["submission_id", "field", "cell", *kind.split(), *(["counted"] if "counted" in cols else [])]
        sql = f"INSERT INTO cell_values ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        out.append((sql, names, list(zip(*(cols[n][mask].tolist() for n in names), strict=True))))
    return out


def write_run(
    conn: sqlite3.Connection,
    definition: Definition,
    run: dict,
    files,
    submissions: pd.DataFrame,
    values: pd.DataFrame,
    findings: pd.DataFrame,
    district: pd.DataFrame,
    run_id: int | None = None,
) -> int:
    """The inserts of `RunHistory.record`, inside the caller's transaction. Bulk inserts over plain tuples."""
    if run_id is not None and conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
        log.warning("history store: run number %s was taken meanwhile", run_id)
        run_id = None
    cols = [
        "started_at",
        "finished_at",
        "tool_version",
        "definition_id",
        "definition_version",
        "period",
        "command",
        "inbox",
        "out_dir",
        "units_file",
        "units_sha256",
        "deadline",
        "options",
        "files",
        "units_expected",
        "units_received",
        "errors",
        "warnings",
    ]
    row = {**run, "definition_id": definition.id, "definition_version": definition.version}
    row["options"] = json.dumps(row.get("options") or {}, ensure_ascii=False, default=str)
    cur = conn.execute(
        f"INSERT INTO runs (run_id, {', '.join(cols)}) VALUES ({', '.join('?' * (len(cols) + 1))})",
        [run_id, *(row.get(c) for c in cols)],
    )
    run_id = int(cur.lastrowid)
    conn.executemany(
        "INSERT OR IGNORE INTO fields (definition_id, definition_version, field, sheet, label, unit, type) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (definition.id, definition.version, f.id, definition.sheet(f.sheet).name, f.label, f.unit, f.type)
            for f in definition.fields.values()
        ],
    )
    if files:
        note_files(
            conn,
            files,
            seen_at=run["started_at"],
            via="import" if run.get("command") == "import" else "inbox",
        )
    base = int(conn.execute("SELECT coalesce(max(submission_id), 0) + 1 FROM submissions").fetchone()[0])
    keys = pd.Index(submissions.index)
    ids = pd.Series(np.arange(base, base + len(keys)), index=keys)
    s = submissions
    sup = s["superseded_by"] if "superseded_by" in s else pd.Series(np.nan, index=s.index)
    sub_cols = [
        "file",
        "path",
        "sha256",
        "unit_code",
        "unit_name",
        "period",
        "report_date",
        "received_at",
        "late_days",
        "status",
        "errors",
        "warnings",
    ]
    listed = [ids.tolist(), [run_id] * len(s)] + [
        _text(s[c])
        if c not in ("late_days", "errors", "warnings")
        else [None if x is None else int(x) for x in _none(s[c])]
        for c in sub_cols
    ]
    listed.append([None if x is None else int(ids[x]) for x in _none(sup)])
    conn.executemany(
        f"INSERT INTO submissions (submission_id, run_id, {', '.join(sub_cols)}, superseded_by) "
        f"VALUES ({', '.join('?' * (len(sub_cols) + 3))})",
        zip(*listed, strict=True),
    )
    if len(values):
        pos = keys.get_indexer(values["submission"])
        for sql, _, rows in _value_rows(values[pos >= 0], base + pos[pos >= 0]):
            conn.executemany(sql, rows)
    if len(findings):
        f = findings
        pos = keys.get_indexer(f["submission"].where(f["submission"].notna(), -1).astype("int64"))
        sids = [int(base + p) if p >= 0 else None for p in pos]
        sugg = f["suggestion"] if "suggestion" in f else f.get("suggestions", pd.Series(None, index=f.index))
        conn.executemany(
            "INSERT INTO findings (run_id, submission_id, file, unit_code, sheet, cell, field, rule, "
            "severity, message, value, expected, suggestion) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            zip(
                [run_id] * len(f),
                sids,
                *(
                    _text(f[c])
                    for c in ("file", "unit_code", "sheet", "cell", "field", "rule", "severity", "message")
                ),
                _shown(f["value"]),
                _shown(f["expected"]),
                _text(sugg),
                strict=True,
            ),
        )
    if len(district):
        conn.executemany(
            "INSERT INTO district_figures (run_id, district_code, field, value, units) "
            "VALUES (?, ?, ?, ?, ?)",
            zip(
                [run_id] * len(district),
                _text(district["district_code"]),
                _text(district["field"]),
                _none(district["value"].to_numpy(dtype=float)),
                [None if x is None else int(x) for x in _none(district["units"])],
                strict=True,
            ),
        )
    return run_id


def _shown(values: pd.Series) -> list:
    """Finding values as text: numbers as values.csv writes them (828.0 → "828")."""
    from pipeline.writers.outputs import show_plain

    return [None if x is None else show_plain(x) for x in _none(values)]


# --- what `tonghop history` shows ----------------------------------------------------------------------


def list_runs(store: Store) -> pd.DataFrame:
    """Every run, newest first: run_id, started_at, command, period, definition, counts, deadline."""
    sql = (
        "SELECT run_id, started_at, command, period, definition_id, definition_version, files, "
        "units_expected, units_received, errors, warnings, deadline, inbox FROM runs ORDER BY run_id DESC"
    )
    cur = store.conn.execute(sql)
    return pd.DataFrame(cur.fetchall(), columns=[c[0] for c in cur.description])


def unit_history(store: Store, unit_code: str) -> pd.DataFrame:
    """Every submission of a unit across runs and periods, newest run first: run_id, command, run period,
    file, sha256, period the file carries, received_at, late_days, status, superseded_by's file, errors,
    warnings, unit_name."""
    sql = (
        "SELECT s.run_id, r.command, r.period AS run_period, r.started_at, s.file, s.sha256, s.period, "
        "s.received_at, s.late_days, s.status, o.file AS superseded_by, s.errors, s.warnings, s.unit_name "
        "FROM submissions s JOIN runs r ON r.run_id = s.run_id "
        "LEFT JOIN submissions o ON o.submission_id = s.superseded_by "
        "WHERE s.unit_code = ? ORDER BY s.run_id DESC, s.status = 'used' DESC, s.file"
    )
    cur = store.conn.execute(sql, (unit_code,))
    return pd.DataFrame(cur.fetchall(), columns=[c[0] for c in cur.description])

"""The district's job: every workbook of an inbox in, the district workbooks and feedback out.

`consolidate_inbox(...)` takes in the inbox (pipeline.inbox), runs `check_files`, resolves
resubmissions, consolidates and writes every output into the staging folder of pipeline.outbox,
which swaps it in for `<out>/<period>/` (a lock keeps two runs from writing the same folder). The
feedback and district workbooks are written by the process pool of pipeline.pool. Returns a
`Summary`; progress goes through `on_progress(stage, done, total)`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import __version__, history_steps
from pipeline.consolidate import (
    RECEIVED,
    STATUS_MISSING,
    STATUS_WRONG_PERIOD,
    choose_submissions,
    consolidate,
)
from pipeline.definition import IDENTITY_ROLES, Definition
from pipeline.feedback import shown_values
from pipeline.findings import make_findings, sort_findings
from pipeline.history import RunHistory
from pipeline.inbox import WORKBOOK_SUFFIXES, discover, take_in
from pipeline.outbox import OutputError, RunError, open_outbox
from pipeline.outputs import (
    FINDINGS_HEADERS,
    VALUES_COLUMNS,
    VALUES_HEADERS,
    findings_table,
    manifest_units,
    show_plain,
    values_table,
    wide_table,
    write_csv,
    write_findings_json,
    write_manifest,
)
from pipeline.peers import add_peer_findings
from pipeline.periods import load_deadlines
from pipeline.pool import SHARED, run_tasks
from pipeline.province import write_provinces
from pipeline.run import Options, check_files
from pipeline.store import now as store_now
from pipeline.text import per_distinct, slug

__all__ = ["WORKBOOK_SUFFIXES", "OutputError", "RunError", "Summary", "consolidate_inbox", "discover"]

log = logging.getLogger("tonghop")


@dataclass
class Summary:
    out_dir: Path
    received: int
    expected: int
    errors: int
    warnings: int
    files: int
    skipped: list[str]
    district_files: list[Path]
    feedback_files: int
    timings: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    periods: dict[str, int] = field(default_factory=dict)  # files read, by the period written in them
    wrong_period: list[str] = field(default_factory=list)  # units that sent only files of other periods
    self_test: list[str] = field(default_factory=list)  # district figures that failed the self-test
    left_out: int = 0  # values of counted files left out of the district figures (the counting rule)
    period: str = ""
    samples: list[str] = field(default_factory=list)  # files marked as made-up samples (SAMPLE_KEY)
    province_files: list[Path] = field(default_factory=list)  # tinh-*.xlsx: districts side by side
    run_id: int | None = None  # the run's number in the history store (None: not recorded)
    store_problem: str | None = None  # why the history store could not be used (Vietnamese)
    on_time: int | None = None  # units whose report came by the deadline

    @property
    def no_file_of_period(self) -> bool:
        """True when files were read but none carries the run's period (the wrong period chosen?)."""
        return bool(self.periods) and not self.periods.get(self.period, 0)

    @property
    def attention(self) -> bool:
        """True when the outputs were written but their figures need the officer's attention."""
        return bool(self.self_test) or self.no_file_of_period


def _out_of_period(definition: Definition, findings: pd.DataFrame, subs: pd.DataFrame) -> pd.DataFrame:
    """Findings without those about the figures of files of other periods: such a file is told which
    period it carries and which template to use; its figures are not this run's business."""
    out = subs.index[~subs["in_period"].astype(bool)]
    identity = {f.id for f in definition.fields.values() if f.role in IDENTITY_ROLES}
    about_figures = findings["submission"].isin(out) & findings["field"].fillna("").astype(str).ne("") & \
        ~findings["field"].isin(identity)
    return findings[~about_figures]


def _choice_texts(definition: Definition, cons) -> pd.DataFrame:
    """The counted choices of each chosen unit: index unit_code, a column per choice field."""
    fields = [f.id for f in definition.fields.values() if f.method == "count"]
    v = cons.values
    v = v[v["field"].isin(fields) & (v["counted"] == "Có")]
    code = v["submission"].map(cons.units.dropna(subset=["submission"]).set_index("submission")["unit_code"])
    return v.assign(unit_code=code).dropna(subset=["unit_code"]).pivot_table(
        index="unit_code", columns="field", values="text", aggfunc="first")


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _manifest_inputs(subs: pd.DataFrame, resub: list[dict], shas: pd.Series, names: list[str]) -> list[dict]:
    """manifest.json's `inputs`: every workbook-like file with its SHA-256, unit, period and what became of
    it: chosen (its figures are this run's), superseded or duplicate (another file of the unit was
    chosen), other-period, unknown-unit, or unreadable (no values read: a finding says why)."""
    fate = {r["submission"]: "duplicate" if r["rule"] == "file-duplicate" else "superseded" for r in resub}
    read = {}
    for sub, file, chosen, in_period, code, period in zip(  # (columns, not iterrows: 90 ms at 1,000 files)
            subs.index, subs["file"], subs["chosen"], subs["in_period"], subs["unit_code"], subs["period"],
            strict=True):
        status = "chosen" if chosen else "other-period" if not in_period else fate.get(sub, "unknown-unit")
        read[file] = {"unit_code": code or None, "period": period or None, "status": status}
    out = []
    for sha, name in zip(shas, names, strict=True):
        item = {"file": name, "sha256": sha if isinstance(sha, str) else None}
        out.append(item | read.get(name, {"unit_code": None, "period": None, "status": "unreadable"}))
    return out


def _render_feedback(task: tuple) -> None:
    from pipeline.feedback import render

    path, unit, values, findings, changes = task
    findings = SHARED["no_findings"] if findings is None else findings
    render(SHARED["definition"], path, SHARED["period"], unit, values, findings, changes=changes)


def write_feedback(
    definition: Definition,
    out_dir: Path,
    period: str,
    units: pd.DataFrame,
    chosen: pd.DataFrame,
    values: pd.DataFrame,
    findings: pd.DataFrame,
    on_progress: Callable | None = None,
    jobs: int = 1,
    changes: dict | None = None,
) -> dict[str, str]:
    """One feedback workbook per chosen submission with a known unit, rendered by `jobs` processes
    (the files are the same whatever `jobs`); `changes` (submission → (older version, changed cells),
    see history_steps.feedback_changes) lists what changed since the file it replaced. Returns
    unit_code → path relative to `out_dir`."""
    changes = changes or {}
    by_code = {r["unit_code"]: r for r in units.to_dict("records")}
    shown = shown_values(values[values["submission"].isin(chosen.index)])
    by_sub = dict(tuple(findings.groupby("submission", sort=False)))
    links, tasks = {}, []
    for sub, code in chosen.loc[chosen["unit_code"].astype(bool), "unit_code"].items():
        unit = by_code[code] | {"unit_code": code}
        rel = f"feedback/{code}-{slug(unit['unit_name'])}.xlsx"
        tasks.append((out_dir / rel, unit, shown.get(sub, {}), by_sub.get(sub), changes.get(sub)))
        links[code] = rel
    run_tasks(
        _render_feedback,
        tasks,
        jobs,
        on_done=(lambda n: on_progress("feedback", n, len(tasks))) if on_progress else None,
        shared={"definition": definition, "period": period, "no_findings": findings.iloc[0:0]},
    )
    return links


def _district_names(districts: pd.DataFrame) -> dict[str, str]:
    """district_code → file name: the district's slug, with its province's (then its code) where two
    districts share a name (Vietnam has many "Huyện Châu Thành")."""
    names = {c: slug(n) for c, n in zip(districts["district_code"], districts["district_name"], strict=True)}
    taken = pd.Series(names).duplicated(keep=False)
    for code, province in zip(districts["district_code"], districts["province_name"], strict=True):
        if taken.get(code, False):
            names[code] = f"{names[code]}-{slug(province)}"
    taken = pd.Series(names).duplicated(keep=False)
    return {c: (f"{n}-{c}" if taken.get(c, False) else n) + ".xlsx" for c, n in names.items()}


def _data_sheet_values(values: pd.DataFrame) -> pd.DataFrame:
    """What the "Dữ liệu" sheet shows: the values read, without blank cells, without the columns that
    are the same on every row of a district workbook, and the raw text only where it differs from the
    figure (the full table is values.csv)."""
    shown = values[(values["raw"] != "") | values["value"].notna()]
    plain = pd.Series(per_distinct(shown["value"], show_plain), index=shown.index, dtype=object)
    same = shown["raw"] == plain
    return shown.drop(columns=["district", "label", "unit"]).assign(raw=shown["raw"].where(~same, ""))


def _write_district(code: str) -> None:
    """Write district `code`'s workbook from the frames in `SHARED` (inherited, not pickled, by a
    forked worker: each slices out its own district, so the parent prepares no task)."""
    from pipeline.district import write_district_workbook

    sh = SHARED
    rows = sh["rows"][code]

    def part(name: str) -> pd.DataFrame:
        return sh[name].iloc[rows.get(name, slice(0, 0))]

    mine = part("findings")
    units = part("units")
    write_district_workbook(
        sh["paths"][code],
        sh["definition"],
        district={
            "district_code": code,
            "district_name": units["district_name"].iloc[0],
            "province_name": units["province_name"].iloc[0],
        },
        period=sh["period"],
        run_date=sh["run_date"],
        units=units,
        figures=part("figures"),
        left_out=part("left_out"),
        district_values=part("district_values"),
        choices=part("choices"),
        findings=pd.concat([mine, sh["orphan"]]) if not sh["orphan"].empty else mine,
        values=part("values"),
        wide=(part("wide"), sh["wide_headers"]),
        feedback_links={c: sh["links"][c] for c in units["unit_code"] if c in sh["links"]},
        sample=sh["sample"],
        run_label=sh["run_label"],
    )


def _grouped(frame: pd.DataFrame, keys: pd.Series) -> tuple[pd.DataFrame, dict]:
    """`frame` with the rows of each key together, in their order (a stable sort when they are not
    already), and key → the slice of its rows (rows without a key are in none): a worker takes its
    district's rows as a view, not a copy."""
    codes, uniques = pd.factorize(keys)  # a missing key is -1
    if not len(codes):
        return frame, {}
    if np.count_nonzero(codes[1:] != codes[:-1]) + 1 > len(np.unique(codes)):
        order = np.argsort(codes, kind="stable")
        frame, codes = frame.iloc[order], codes[order]
    starts = np.flatnonzero(np.diff(codes, prepend=-2)).tolist()  # -2: no code, so row 0 starts a run
    ends = [*starts[1:], len(codes)]
    return frame, {uniques[codes[a]]: slice(a, b) for a, b in zip(starts, ends, strict=True) if codes[a] >= 0}


def write_districts(
    definition: Definition,
    out_dir: Path,
    period: str,
    cons,
    findings: pd.DataFrame,
    values: pd.DataFrame,
    links: dict[str, str],
    jobs: int = 1,
    meanwhile: Callable[[], None] | None = None,
    wide: tuple[pd.DataFrame, dict] | None = None,
    sample: bool = False,
    run_label: str = "",
) -> list[Path]:
    """One consolidated workbook per district of the units list; findings that belong to no unit (a
    file nobody could be named for) go to every district. `meanwhile` runs while workers write them;
    `wide` is the pivot table (pipeline.outputs.wide_table); `sample` says the inputs are sample files.
    Returns the paths."""
    district_of = cons.units.set_index("unit_code")["district_code"]
    num = cons.figures
    table, headers = wide if wide is not None else (cons.units[["unit_code"]], {})
    findings = findings.assign(label=findings["field"].map(definition.frame["label"]).fillna(""))
    dist = findings["unit_code"].map(district_of)
    shown = _data_sheet_values(values)
    frames = {
        "units": (cons.units, cons.units["district_code"]),
        "figures": (num, district_of.reindex(num.index)),
        "left_out": (cons.left_out, district_of.reindex(cons.left_out.index)),
        "wide": (table, table["unit_code"].map(district_of)),
        "district_values": (cons.district, cons.district["district_code"]),
        "choices": (cons.choices, cons.choices["district_code"]),
        "findings": (findings, dist),
        "values": (shown, shown["unit_code"].map(district_of)),
    }
    shared: dict = {}
    rows: dict[str, dict[str, slice]] = {}  # district → frame name → the district's rows in that frame
    for name, (frame, keys) in frames.items():
        shared[name], spans = _grouped(frame, keys)
        for code, span in spans.items():
            rows.setdefault(code, {})[name] = span
    districts = cons.units.drop_duplicates("district_code").sort_values("district_code")
    names = _district_names(districts)
    codes = sorted(cons.units["district_code"].unique())
    paths = {code: out_dir / names[code] for code in codes}
    shared |= {
        "definition": definition,
        "period": period,
        "run_date": dt.date.today(),
        "wide_headers": headers,
        "sample": sample,
        "run_label": run_label,
        "rows": rows,
        "paths": paths,
        "links": links,
        "orphan": findings[dist.isna()],
    }
    run_tasks(_write_district, codes, jobs, meanwhile=meanwhile, shared=shared)
    return [paths[code] for code in codes]


@contextlib.contextmanager
def _fewer_collections():
    """Run the garbage collector's young collections every 200,000 allocations instead of 700 (and
    workers forked meanwhile inherit it). The job keeps millions of small objects alive (cells, rows,
    XML pieces) and makes few reference cycles: at 10,000 files the default thresholds cost about 2 s
    of the no-feedback job, mostly while the results of the reader workers come in."""
    before = gc.get_threshold()
    gc.set_threshold(200_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def consolidate_inbox(
    inbox: Path,
    out: Path,
    period: str,
    definition: Definition,
    units: pd.DataFrame,
    *,
    strict: bool = False,
    feedback: bool = True,
    options: Options | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    store: Path | None = None,
    deadline: dt.date | None = None,
) -> Summary:
    """Run the whole job into a staging folder, then swap it in for `<out>/<period>/`.

    A run killed halfway leaves the previous outputs as they were. `store` is the history store to
    read and record the run in (None: none); `deadline` the period's deadline (None: from
    schemas/periods.yaml). Raises OutputError when the output folder cannot be written or another run
    holds it, RunError on an unexpected failure; a history store problem only sets
    `Summary.store_problem`.
    """
    t = {"start": time.perf_counter(), "started_at": _now()}
    hist = None
    try:
        with open_outbox(out, period) as box:
            log.info("tonghop %s: inbox %s, period %s", __version__, inbox, period)
            options = options or Options(period=period)
            hist = RunHistory(store, definition, period)  # connected once the files are read
            run = {"started_at": store_now(), "tool_version": __version__, "period": period,
                   "command": "consolidate", "inbox": str(Path(inbox).resolve()), "out_dir": str(box.out),
                   "units_file": units.attrs.get("source"), "units_sha256": units.attrs.get("sha256"),
                   "deadline": deadline if deadline is not None else load_deadlines().for_period(period),
                   "options": {"strict": strict, "feedback": feedback, "timeout": options.timeout,
                               "jobs": options.jobs}}
            with _fewer_collections():
                summary = _run(inbox, box.staging, period, definition, units, strict, feedback, options,
                               on_progress, t, hist, run)
            log.info("done: %s", summary.timings)
            box.commit()
    finally:
        if hist is not None:
            hist.close()
    summary.out_dir = box.final
    summary.district_files = [box.final / p.name for p in summary.district_files]
    summary.province_files = [box.final / p.name for p in summary.province_files]
    return summary


def _run(inbox, out_dir, period, definition, units, strict, feedback, options, on_progress, t, hist,
         run) -> Summary:
    intake = take_in(inbox, skip=[out_dir.parent])  # (out_dir is the staging folder in the output folder)
    names, others = intake.books + list(intake.refused), intake.others
    books = [inbox / name for name in names]
    t["discover"] = time.perf_counter()
    result = check_files(
        books,
        definition,
        units,
        names=names,
        options=options,
        on_progress=(lambda d, n: on_progress("read", d, n)) if on_progress else None,
        refused=dict(enumerate(intake.refused.values(), len(intake.books))),
    )
    t["read+validate"] = time.perf_counter()
    hist.connect()

    subs = result.submissions.copy()  # with the fingerprints the pre-scan took (sha256, mtime)
    shas = result.files["sha256"]  # per file, None for those not read (refused: never hashed)
    role = definition.role("report_date")
    dates = result.values[result.values["field"] == (role.id if role else None)]
    dates = dates.set_index("submission")["text"]
    subs["report_date"] = dates.reindex(subs.index)
    # when each file reached the office: an email's date, else the first run that saw it (history store)
    received_by_file = pd.Series(history_steps.received_times(hist, shas, run["started_at"]).to_numpy(),
                                 index=names, dtype=object)
    subs["received"] = subs["file"].map(received_by_file)
    subs, resub = choose_submissions(subs)
    dropped = [r["submission"] for r in resub]
    findings = result.findings[~result.findings["submission"].isin(dropped)]
    findings = _out_of_period(definition, findings, subs)
    if resub:
        extra = pd.DataFrame(resub).join(subs[["file", "unit_code", "unit_name"]], on="submission")
        findings = pd.concat([findings, make_findings(extra, definition.rules)], ignore_index=True)
    findings = add_peer_findings(definition, subs, result.values, findings, units)
    trend = history_steps.change_findings(hist, definition, period, subs, result.values)
    if len(trend):
        trend = trend.join(subs[["file", "unit_code", "unit_name"]], on="submission")
        trend = trend.assign(sheet=trend["field"].map(definition.frame["sheet"]),
                             label=trend["field"].map(definition.frame["label"]))
        findings = pd.concat([findings, make_findings(trend, definition.rules)], ignore_index=True)
    cons = consolidate(definition, units, subs, result.values, findings, strict=strict)
    if cons.checks:
        names = units.drop_duplicates("district_code").set_index("district_code")["district_name"]
        failed = pd.DataFrame(cons.checks).assign(unit_name=lambda f: f["district_code"].map(names))
        for r in failed.itertuples(index=False):
            log.error("self-test: district %s, field %s: %s", r.district_code, r.field, r.detail)
        failed = make_findings(failed.drop(columns="district_code"), definition.rules)
        findings = pd.concat([findings, failed], ignore_index=True)
    findings = sort_findings(findings, definition.frame["order"])
    status = history_steps.statuses(subs, findings, period)
    changes, sources = history_steps.version_changes(hist, definition, subs, status, result.values)
    today = dt.date.fromisoformat(run["started_at"][:10])
    cons.units = history_steps.annotate_units(cons.units, received_by_file, run["deadline"], today, changes,
                                              sources)
    cons.district = history_steps.compare_district_figures(hist, definition, period, cons.district)
    run_id = hist.next_run()
    t["consolidate"] = time.perf_counter()

    chosen = subs[subs["chosen"]]
    links = (
        write_feedback(
            definition,
            out_dir,
            period,
            units,
            chosen,
            result.values,
            findings,
            on_progress,
            jobs=options.jobs,
            changes=history_steps.feedback_changes(changes, sources),
        )
        if feedback
        else {}
    )
    t["feedback"] = time.perf_counter()
    vt = values_table(cons.values, subs, definition)
    sample = bool(subs.loc[subs["chosen"], "sample"].astype(bool).any())
    wide = wide_table(definition, cons.units, cons.figures, cons.left_out, _choice_texts(definition, cons))

    province_files: list[Path] = []

    def write_tables() -> None:  # in this process while the workers write the district workbooks
        write_csv(vt[VALUES_COLUMNS], out_dir / "values.csv", VALUES_HEADERS)
        write_csv(findings_table(findings), out_dir / "findings.csv", FINDINGS_HEADERS)
        write_csv(wide[0], out_dir / "bang-so-lieu.csv", wide[1])
        write_findings_json(findings, out_dir / "findings.json")
        province_files.extend(write_provinces(definition, out_dir, period, cons.units, cons.district))

    district_files = write_districts(
        definition, out_dir, period, cons, findings, vt, links, options.jobs, meanwhile=write_tables,
        wide=wide, sample=sample, run_label=history_steps.run_label(run_id, hist),
    )
    t["write"] = time.perf_counter()
    stages = {
        "discover": t["discover"] - t["start"],
        **result.timings,
        "consolidate": t["consolidate"] - t["read+validate"],
        "feedback": t["feedback"] - t["consolidate"],
        "write": t["write"] - t["feedback"],
    }
    n_err = int((findings["severity"] == "error").sum())
    n_warn = int((findings["severity"] == "warning").sum())
    received = int(cons.units["status"].isin(RECEIVED).sum())
    # the store keeps whether each value counted (True, False, or None: not a consolidated field, not chosen)
    counted = cons.values.set_index(["submission", "field"])["counted"].map({"Có": True, "Không": False})
    key = pd.MultiIndex.from_arrays([result.values["submission"], result.values["field"]])
    stored = result.values.assign(counted=counted.reindex(key).to_numpy())
    run_id = history_steps.record_run(
        hist, run | {"files": len(books), "units_expected": len(cons.units), "units_received": received,
                     "errors": n_err, "warnings": n_warn},
        books=list(zip(shas, books, strict=True)), names=names, subs=subs, status=status,
        values=stored, findings=findings, district=cons.district, received_by_file=received_by_file,
        run_id=run_id)
    t["store"] = time.perf_counter()
    stages["store"] = t["store"] - t["write"]
    write_manifest(
        out_dir / "manifest.json",
        {
            "tool": "tonghop",
            "version": __version__,
            "definition": definition.template_key,
            "period": period,
            "run": {"started_at": t["started_at"], "finished_at": _now()},
            "inbox": str(Path(inbox).resolve()),
            "units_file": {"path": units.attrs.get("source"), "sha256": units.attrs.get("sha256")},
            "inputs": _manifest_inputs(subs, resub, shas, names),
            "skipped": others,
            "counts": {
                "files": len(books),
                "units_expected": len(cons.units),
                "units_received": received,
                "errors": n_err,
                "warnings": n_warn,
                "feedback_workbooks": len(links),
            },
            "outputs": [p.name for p in district_files + province_files]
            + ["values.csv", "findings.csv", "findings.json", "bang-so-lieu.csv", "tonghop.log"]
            + sorted(links.values()),
            "timings": {k: round(v, 3) for k, v in stages.items()},
            "units": manifest_units(cons.units, links),
            "history": {"store": str(hist.path) if hist.path else None, "run": run_id,
                        "problem": hist.problem},
        },
    )
    missing = cons.units.loc[cons.units["status"] == STATUS_MISSING, "full_name"].tolist()
    wrong = cons.units.loc[cons.units["status"] == STATUS_WRONG_PERIOD, "full_name"].tolist()
    summary = Summary(
        out_dir,
        received,
        len(cons.units),
        n_err,
        n_warn,
        len(books),
        others,
        district_files,
        len(links),
        stages,
        missing,
        subs["period"].fillna("").value_counts().to_dict(),
        wrong,
        [f"{r['district_code']} {r['field']}: {r['detail']}" for r in cons.checks],
        int(((cons.values["counted"] == "Không") & cons.values["submission"].isin(
            subs.index[subs["chosen"]])).sum()),
        period,
        samples=subs.loc[subs["sample"].astype(bool), "file"].tolist(),
        province_files=province_files,
        run_id=run_id,
        store_problem=hist.problem,
        on_time=history_steps.on_time(cons.units),
    )
    return summary

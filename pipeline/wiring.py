"""Wiring: the stage sequences of `tonghop check` and `tonghop consolidate`, each a short list of calls.

    check_files        file → guard → reader → numbers → validate/checks → identify → findings
    consolidate_inbox  inbox → check_files → choose → judge → consolidate → writers → store → manifest,
                       written into the outbox's staging folder, swapped in for <out>/<period>/ at the end

Each stage takes only what it needs: reading its `ReadOptions` (pipeline.intake.reading), writing its
`WriteOptions`, the counting rule `strict`. Nothing here prints; progress goes through
`on_progress(stage, done, total)`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline import __version__
from pipeline.checks.peers import add_peer_findings
from pipeline.checks.validate import validate
from pipeline.consolidate import (
    RECEIVED,
    STATUS_MISSING,
    STATUS_WRONG_PERIOD,
    choose_submissions,
    consolidate,
    drop_out_of_period,
)
from pipeline.definition import SAMPLE_KEY, Definition
from pipeline.findings import Finding, make_findings, records_frame, sort_findings
from pipeline.history import steps as history_steps
from pipeline.history.runs import RunHistory
from pipeline.history.store import now as store_now
from pipeline.intake.guard import Problem
from pipeline.intake.identify import SUBMISSION_UNIT_COLUMNS, identify
from pipeline.intake.inbox import take_in
from pipeline.intake.reader import make_spec
from pipeline.intake.reading import ReadOptions, cells_frame, read_all
from pipeline.outbox import open_outbox
from pipeline.periods import load_deadlines
from pipeline.pool import fewer_collections
from pipeline.text import fold
from pipeline.writers.district_books import write_districts
from pipeline.writers.feedback import write_feedback
from pipeline.writers.outputs import (
    FINDINGS_HEADERS,
    VALUES_COLUMNS,
    VALUES_HEADERS,
    choice_texts,
    findings_table,
    manifest_inputs,
    manifest_units,
    values_table,
    wide_table,
    write_csv,
    write_findings_json,
    write_manifest,
)
from pipeline.writers.province import write_provinces

log = logging.getLogger("tonghop")


# --- check: files in, submissions + tidy values + findings out -----------------------------------------


@dataclass
class Result:
    files: pd.DataFrame  # one row per input file: file, path, sha256 and mtime (of the bytes read, else None)
    submissions: pd.DataFrame  # indexed by submission: file, unit..., period
    values: pd.DataFrame  # tidy long frame
    findings: pd.DataFrame  # findings frame (pipeline.findings.ALL_COLUMNS)
    timings: dict[str, float] = field(default_factory=dict)


def check_files(
    paths: Sequence[Path],
    definition: Definition,
    units: pd.DataFrame,
    *,
    period: str | None = None,
    names: Sequence[str] | None = None,
    options: ReadOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    refused: Mapping[int, Problem] | None = None,
) -> Result:
    """Guard, read, validate and identify `paths` (`period`: the run's, None to take each file's own);
    `names` are the file names shown to people. `refused` (file index -> Problem) are reported and never
    opened (pipeline.intake.inbox refuses them)."""
    names = list(names) if names is not None else [str(p) for p in paths]
    t0 = time.perf_counter()
    raws, file_found, prints = read_all(paths, make_spec(definition), options or ReadOptions(), on_progress,
                                        refused or {})
    subs = _of_the_template(definition, raws, file_found)
    t_read = time.perf_counter()
    values, findings = validate(definition, cells_frame(subs))
    t_validate = time.perf_counter()
    submissions, id_found = identify(definition, units, {i: raw.meta for i, raw in subs}, values, period)
    structural = [dataclasses.replace(p, submission=i) for i, raw in subs for p in raw.problems]
    findings = pd.concat([findings, records_frame(id_found + structural)], ignore_index=True)
    files = pd.DataFrame({"file": names, "path": [str(p) for p in paths],
                          "sha256": pd.Series([sha or None for sha, _ in prints], dtype=object),
                          "mtime": [m for _, m in prints]})
    submissions = submissions.join(files, how="left")
    samples = {i for i, raw in subs if raw.meta.get(SAMPLE_KEY) == "1"}
    submissions["sample"] = submissions.index.isin(list(samples))
    findings = _locate(definition, findings, file_found, submissions, files, units)
    timings = {"read": t_read - t0, "validate": t_validate - t_read,
               "identify": time.perf_counter() - t_validate}
    return Result(files, submissions, values, findings, timings)


def _of_the_template(definition: Definition, raws: list, file_found: list[tuple[int, Finding]]) -> list:
    """The raw submissions that are the template; a workbook that is not the template at all gives one
    finding for the file (added to `file_found`) and no values."""
    subs = []
    for i, raw in raws:
        if any(p.rule == "not-template" for p in raw.problems):
            file_found.append((i, Finding("not-template", expected=definition.template_key,
                                          detail="không có các trang của mẫu báo cáo")))
        else:
            subs.append((i, raw))
    return subs


def _unit_from_name(name: str, units: pd.DataFrame) -> dict[str, str]:
    """Guess the unit of an unreadable file from its name ("07093-duc-chinh.xls", "Duc Chinh.xlsx")."""
    stem = Path(name).name
    codes = set(re.findall(r"(?<!\d)\d{5}(?!\d)", stem)) & set(units["unit_code"])
    hit = units[units["unit_code"].isin(codes)] if len(codes) == 1 else units.iloc[0:0]
    if hit.empty:
        key = f" {fold(re.sub(r'[-_.]+', ' ', Path(stem).stem))} "
        hit = units[[f" {k} " in key for k in units["key"]]]
    if len(hit) != 1:
        return {"unit_code": None, "unit_name": None}
    return {"unit_code": hit["unit_code"].iloc[0], "unit_name": hit["full_name"].iloc[0]}


def _locate(
    definition: Definition,
    findings: pd.DataFrame,
    file_found: list[tuple[int, Finding]],
    submissions: pd.DataFrame,
    files: pd.DataFrame,
    units: pd.DataFrame,
) -> pd.DataFrame:
    """Attach file, unit, sheet and label to every finding (those about whole files: `file_found`, by file
    index) and render its message."""
    meta = definition.frame
    f = findings.copy()
    if not f.empty:
        f["submission"] = f["submission"].astype(int)
        f = f.join(submissions[["file", *SUBMISSION_UNIT_COLUMNS]], on="submission")
        known = f["field"].isin(meta.index)
        f["label"] = f["field"].map(meta["label"])
        sheet_from_field = f["field"].map(meta["sheet"])
        if "sheet" not in f:
            f["sheet"] = None
        f["sheet"] = f["sheet"].where(f["sheet"].notna() & (f["sheet"] != ""), sheet_from_field)
        f.loc[~known & f["label"].isna(), "label"] = ""
    file_found = sorted(file_found, key=lambda p: p[0])
    fp = records_frame(p for _, p in file_found)
    if not fp.empty:
        fp["file"] = files["file"].reindex([i for i, _ in file_found]).to_numpy()
        fp["submission"] = None
        guessed = pd.DataFrame([_unit_from_name(f, units) for f in fp["file"]], index=fp.index)
        fp = pd.concat([fp, guessed], axis=1)
    out = (
        pd.concat([x for x in (fp, f) if not x.empty], ignore_index=True)
        if (not fp.empty or not f.empty)
        else pd.DataFrame()
    )
    located = [c for c in ("sheet", "cell", "field", "unit_code", "unit_name") if c in out]
    out[located] = out[located].astype(object).where(out[located].notna(), None)  # never "nan" in a message
    return make_findings(out, definition.rules)


# --- consolidate: an inbox in, the district's outputs out ----------------------------------------------


@dataclass
class WriteOptions:
    jobs: int = 1  # processes writing the feedback and district workbooks (the files are the same whatever)
    feedback: bool = True  # write a feedback workbook per unit


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


@dataclass
class _Job:
    """What the stages of one consolidation hand on to each other (each stage sets its own fields)."""

    inbox: Path
    out_dir: Path  # the staging folder
    period: str
    definition: Definition
    units: pd.DataFrame
    strict: bool
    read: ReadOptions
    write: WriteOptions
    hist: RunHistory
    run: dict  # the store's runs row
    on_progress: Callable[[str, int, int], None] | None
    t: dict[str, float]  # when each stage ended (time.perf_counter)
    intake: object = None  # pipeline.intake.inbox.Intake
    names: list[str] = field(default_factory=list)  # files to read, as people see them
    books: list[Path] = field(default_factory=list)
    others: list[str] = field(default_factory=list)  # files of the inbox that are not workbooks
    result: Result | None = None
    subs: pd.DataFrame | None = None  # submissions, with the resubmission choice
    shas: pd.Series | None = None  # per file, None for those not read
    received_by_file: pd.Series | None = None
    resub: list[Finding] = field(default_factory=list)  # duplicates and superseded files
    findings: pd.DataFrame | None = None
    cons: object = None  # pipeline.consolidate.Consolidated
    status: pd.Series | None = None
    changes: object = None
    sources: object = None
    run_id: int | None = None
    links: dict[str, str] = field(default_factory=dict)  # unit_code → feedback workbook
    vt: pd.DataFrame | None = None  # values.csv
    district_files: list[Path] = field(default_factory=list)
    province_files: list[Path] = field(default_factory=list)


def consolidate_inbox(
    inbox: Path,
    out: Path,
    period: str,
    definition: Definition,
    units: pd.DataFrame,
    *,
    strict: bool = False,
    read: ReadOptions | None = None,
    write: WriteOptions | None = None,
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
    t = {"start": time.perf_counter()}
    started_at = _now()
    read, write = read or ReadOptions(), write or WriteOptions()
    hist = None
    try:
        with open_outbox(out, period) as box:
            log.info("tonghop %s: inbox %s, period %s", __version__, inbox, period)
            # connected once the files are read; the run recorded is committed after the outputs' swap
            hist = RunHistory(store, definition, period, defer_commit=True)
            run = {"started_at": store_now(), "tool_version": __version__, "period": period,
                   "command": "consolidate", "inbox": str(Path(inbox).resolve()), "out_dir": str(box.out),
                   "units_file": units.attrs.get("source"), "units_sha256": units.attrs.get("sha256"),
                   "deadline": deadline if deadline is not None else load_deadlines().for_period(period),
                   "options": {"strict": strict, "feedback": write.feedback, "timeout": read.timeout,
                               "jobs": write.jobs}}
            job = _Job(Path(inbox), box.staging, period, definition, units, strict, read, write, hist, run,
                       on_progress, t)
            with fewer_collections():
                for stage in (_take_in, _read, _choose, _judge, _consolidate, _write_feedback, _write_outputs,
                              _record):
                    stage(job)
                summary = _summary(job, started_at)
            log.info("done: %s", summary.timings)
            box.commit()
        hist.commit()
        if hist.problem and not summary.store_problem:  # the commit itself failed: the run is not recorded
            summary.store_problem, summary.run_id = hist.problem, None
    finally:
        if hist is not None:
            hist.close()
    summary.out_dir = box.final
    summary.district_files = [box.final / p.name for p in summary.district_files]
    summary.province_files = [box.final / p.name for p in summary.province_files]
    return summary


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _take_in(job: _Job) -> None:
    """What the inbox holds: the files to read (those refused last), the others."""
    intake = take_in(job.inbox, skip=[job.out_dir.parent])  # (out_dir is the staging folder)
    job.intake = intake
    job.names, job.others = intake.books + list(intake.refused), intake.others
    job.books = [job.inbox / name for name in job.names]
    job.t["discover"] = time.perf_counter()


def _read(job: _Job) -> None:
    """Guard, read, validate and identify every file (pipeline.intake.reading, pipeline.checks.validate)."""
    on_progress = job.on_progress
    job.result = check_files(
        job.books, job.definition, job.units, period=job.period, names=job.names, options=job.read,
        on_progress=(lambda d, n: on_progress("read", d, n)) if on_progress else None,
        refused=dict(enumerate(job.intake.refused.values(), len(job.intake.books))),
    )
    job.t["read+validate"] = time.perf_counter()
    job.hist.connect()


def _choose(job: _Job) -> None:
    """The submission of each unit that counts: the newest report of the run's period (pipeline.consolidate),
    with when each file reached the office (an email's date, else the first run that saw it)."""
    result = job.result
    subs = result.submissions.copy()  # with the fingerprints the pre-scan took (sha256, mtime)
    job.shas = result.files["sha256"]
    role = job.definition.role("report_date")
    dates = result.values[result.values["field"] == (role.id if role else None)]
    subs["report_date"] = dates.set_index("submission")["text"].reindex(subs.index)
    received = history_steps.received_times(job.hist, job.shas, job.run["started_at"]).to_numpy()
    job.received_by_file = pd.Series(received, index=job.names, dtype=object)
    subs["received"] = subs["file"].map(job.received_by_file)
    job.subs, job.resub = choose_submissions(subs)


def _judge(job: _Job) -> None:
    """The run's findings: those of the files chosen and of other periods' identity, the resubmissions',
    each unit against its peers, and changes against earlier periods."""
    definition, subs, values = job.definition, job.subs, job.result.values
    dropped = [r.submission for r in job.resub]
    findings = job.result.findings[~job.result.findings["submission"].isin(dropped)]
    findings = drop_out_of_period(definition, findings, subs)
    if job.resub:
        extra = records_frame(job.resub).join(subs[["file", "unit_code", "unit_name"]], on="submission")
        findings = pd.concat([findings, make_findings(extra, definition.rules)], ignore_index=True)
    findings = add_peer_findings(definition, subs, values, findings, job.units)
    trend = history_steps.change_findings(job.hist, definition, job.period, subs, values)
    if len(trend):
        trend = trend.join(subs[["file", "unit_code", "unit_name"]], on="submission")
        trend = trend.assign(sheet=trend["field"].map(definition.frame["sheet"]),
                             label=trend["field"].map(definition.frame["label"]))
        findings = pd.concat([findings, make_findings(trend, definition.rules)], ignore_index=True)
    job.findings = findings


def _consolidate(job: _Job) -> None:
    """The district figures by the counting rule, their self-test, and what the history store adds:
    statuses, changes since the last version, lateness, figures against earlier periods."""
    definition, subs, values = job.definition, job.subs, job.result.values
    cons = consolidate(definition, job.units, subs, values, job.findings, strict=job.strict)
    findings = job.findings
    if cons.checks:
        names = job.units.drop_duplicates("district_code").set_index("district_code")["district_name"]
        failed = records_frame(cons.checks).assign(unit_name=lambda f: f["district_code"].map(names))
        for r in failed.itertuples(index=False):
            log.error("self-test: district %s, field %s: %s", r.district_code, r.field, r.detail)
        failed = make_findings(failed.drop(columns="district_code"), definition.rules)
        findings = pd.concat([findings, failed], ignore_index=True)
    job.findings = findings = sort_findings(findings, definition.frame["order"])
    job.status = history_steps.statuses(subs, findings, job.period)
    job.changes, job.sources = history_steps.version_changes(job.hist, definition, subs, job.status, values)
    today = dt.date.fromisoformat(job.run["started_at"][:10])
    cons.units = history_steps.annotate_units(cons.units, job.received_by_file, job.run["deadline"], today,
                                              job.changes, job.sources)
    cons.district = history_steps.compare_district_figures(job.hist, definition, job.period, cons.district)
    job.cons = cons
    job.run_id = job.hist.next_run()
    job.t["consolidate"] = time.perf_counter()


def _write_feedback(job: _Job) -> None:
    """One feedback workbook per chosen submission of a known unit (pipeline.writers.feedback)."""
    if job.write.feedback:
        job.links = write_feedback(
            job.definition, job.out_dir, job.period, job.units, job.subs[job.subs["chosen"]],
            job.result.values, job.findings, job.on_progress, jobs=job.write.jobs,
            changes=history_steps.feedback_changes(job.changes, job.sources),
        )
    job.t["feedback"] = time.perf_counter()


def _write_outputs(job: _Job) -> None:
    """The district workbooks (in worker processes) and, meanwhile in this one, the CSVs, findings.json
    and the province workbooks."""
    definition, out_dir, cons, findings = job.definition, job.out_dir, job.cons, job.findings
    job.vt = vt = values_table(cons.values, job.subs, definition)
    sample = bool(job.subs.loc[job.subs["chosen"], "sample"].astype(bool).any())
    wide = wide_table(definition, cons.units, cons.figures, cons.left_out, choice_texts(definition, cons))

    def write_tables() -> None:
        write_csv(vt[VALUES_COLUMNS], out_dir / "values.csv", VALUES_HEADERS)
        write_csv(findings_table(findings), out_dir / "findings.csv", FINDINGS_HEADERS)
        write_csv(wide[0], out_dir / "bang-so-lieu.csv", wide[1])
        write_findings_json(findings, out_dir / "findings.json")
        job.province_files = write_provinces(definition, out_dir, job.period, cons.units, cons.district)

    job.district_files = write_districts(
        definition, out_dir, job.period, cons, findings, vt, job.links, job.write.jobs,
        meanwhile=write_tables, wide=wide, sample=sample,
        run_label=history_steps.run_label(job.run_id, job.hist),
    )
    job.t["write"] = time.perf_counter()


def _record(job: _Job) -> None:
    """The run in the history store (one transaction), each value with whether it counted."""
    cons, values = job.cons, job.result.values
    n_err, n_warn = _severities(job.findings)
    # the store keeps whether each value counted (True, False, or None: not a consolidated field, not chosen)
    counted = cons.values.set_index(["submission", "field"])["counted"].map({"Có": True, "Không": False})
    key = pd.MultiIndex.from_arrays([values["submission"], values["field"]])
    stored = values.assign(counted=counted.reindex(key).to_numpy())
    job.run_id = history_steps.record_run(
        job.hist, job.run | {"files": len(job.books), "units_expected": len(cons.units),
                             "units_received": _received(cons), "errors": n_err, "warnings": n_warn},
        books=list(zip(job.shas, job.books, strict=True)), names=job.names, subs=job.subs, status=job.status,
        values=stored, findings=job.findings, district=cons.district, received_by_file=job.received_by_file,
        run_id=job.run_id)
    job.t["store"] = time.perf_counter()


def _severities(findings: pd.DataFrame) -> tuple[int, int]:
    return int((findings["severity"] == "error").sum()), int((findings["severity"] == "warning").sum())


def _received(cons) -> int:
    return int(cons.units["status"].isin(RECEIVED).sum())


def _summary(job: _Job, started_at: str) -> Summary:
    """manifest.json, then what the run tells the officer."""
    t, cons, subs, hist = job.t, job.cons, job.subs, job.hist
    stages = {"discover": t["discover"] - t["start"], **job.result.timings,
              "consolidate": t["consolidate"] - t["read+validate"],
              "feedback": t["feedback"] - t["consolidate"], "write": t["write"] - t["feedback"],
              "store": t["store"] - t["write"]}
    n_err, n_warn = _severities(job.findings)
    received = _received(cons)
    write_manifest(
        job.out_dir / "manifest.json",
        {
            "tool": "tonghop",
            "version": __version__,
            "definition": job.definition.template_key,
            "period": job.period,
            "run": {"started_at": started_at, "finished_at": _now()},
            "inbox": str(job.inbox.resolve()),
            "units_file": {"path": job.units.attrs.get("source"), "sha256": job.units.attrs.get("sha256")},
            "inputs": manifest_inputs(subs, job.resub, job.shas, job.names),
            "skipped": job.others,
            "counts": {"files": len(job.books), "units_expected": len(cons.units), "units_received": received,
                       "errors": n_err, "warnings": n_warn, "feedback_workbooks": len(job.links)},
            "outputs": [p.name for p in job.district_files + job.province_files]
            + ["values.csv", "findings.csv", "findings.json", "bang-so-lieu.csv", "tonghop.log"]
            + sorted(job.links.values()),
            "timings": {k: round(v, 3) for k, v in stages.items()},
            "units": manifest_units(cons.units, job.links),
            "history": {"store": str(hist.path) if hist.path else None, "run": job.run_id,
                        "problem": hist.problem},
        },
    )
    chosen = subs.index[subs["chosen"]]
    return Summary(
        job.out_dir, received, len(cons.units), n_err, n_warn, len(job.books), job.others, job.district_files,
        len(job.links), stages,
        missing=cons.units.loc[cons.units["status"] == STATUS_MISSING, "full_name"].tolist(),
        periods=subs["period"].fillna("").value_counts().to_dict(),
        wrong_period=cons.units.loc[cons.units["status"] == STATUS_WRONG_PERIOD, "full_name"].tolist(),
        self_test=[f"{r.params['district_code']} {r.field}: {r.detail}" for r in cons.checks],
        left_out=int(((cons.values["counted"] == "Không") & cons.values["submission"].isin(chosen)).sum()),
        period=job.period,
        samples=subs.loc[subs["sample"].astype(bool), "file"].tolist(),
        province_files=job.province_files,
        run_id=job.run_id,
        store_problem=hist.problem,
        on_time=history_steps.on_time(cons.units),
    )

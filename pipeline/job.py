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

from pipeline import __version__
from pipeline.consolidate import choose_submissions, consolidate
from pipeline.definition import Definition
from pipeline.feedback import shown_values
from pipeline.findings import make_findings, sort_findings
from pipeline.inbox import WORKBOOK_SUFFIXES, discover, take_in
from pipeline.outbox import OutputError, RunError, open_outbox
from pipeline.outputs import (
    VALUES_COLUMNS,
    findings_table,
    show_plain,
    values_table,
    write_csv,
    write_manifest,
)
from pipeline.pool import SHARED, run_tasks
from pipeline.run import Options, check_files
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


def _render_feedback(task: tuple) -> None:
    from pipeline.feedback import render

    path, unit, values, findings = task
    findings = SHARED["no_findings"] if findings is None else findings
    render(SHARED["definition"], path, SHARED["period"], unit, values, findings)


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
) -> dict[str, str]:
    """One feedback workbook per chosen submission with a known unit, rendered by `jobs` processes
    (the files are the same whatever `jobs`). Returns unit_code → path relative to `out_dir`."""
    by_code = {r["unit_code"]: r for r in units.to_dict("records")}
    shown = shown_values(values[values["submission"].isin(chosen.index)])
    by_sub = dict(tuple(findings.groupby("submission", sort=False)))
    links, tasks = {}, []
    for sub, code in chosen.loc[chosen["unit_code"].astype(bool), "unit_code"].items():
        unit = by_code[code] | {"unit_code": code}
        rel = f"feedback/{code}-{slug(unit['unit_name'])}.xlsx"
        tasks.append((out_dir / rel, unit, shown.get(sub, {}), by_sub.get(sub)))
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
    """What the "Dữ liệu" sheet shows: the values used, without blank cells, without the columns that
    are the same on every row of a district workbook, and the raw text only where it differs from the
    figure (the full table is values.csv)."""
    shown = values[(values["raw"] != "") | values["value"].notna()]
    plain = pd.Series(per_distinct(shown["value"], show_plain), index=shown.index, dtype=object)
    same = shown["raw"] == plain
    return shown.drop(columns=["period", "district"]).assign(raw=shown["raw"].where(~same, ""))


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
        district_values=part("district_values"),
        choices=part("choices"),
        findings=pd.concat([mine, sh["orphan"]]) if not sh["orphan"].empty else mine,
        values=part("values"),
        feedback_links={c: sh["links"][c] for c in units["unit_code"] if c in sh["links"]},
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
) -> list[Path]:
    """One consolidated workbook per district of the units list; findings that belong to no unit (a
    file nobody could be named for) go to every district. `meanwhile` runs while workers write them.
    Returns the paths."""
    district_of = cons.units.set_index("unit_code")["district_code"]
    num = cons.figures
    findings = findings.assign(label=findings["field"].map(definition.frame["label"]).fillna(""))
    dist = findings["unit_code"].map(district_of)
    shown = _data_sheet_values(values)
    frames = {
        "units": (cons.units, cons.units["district_code"]),
        "figures": (num, district_of.reindex(num.index)),
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
        "run_date": dt.date.today().strftime("%d/%m/%Y"),
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
) -> Summary:
    """Run the whole job into a staging folder, then swap it in for `<out>/<period>/`.

    A run killed halfway leaves the previous outputs as they were. Raises OutputError when the
    output folder cannot be written or another run holds it, RunError on an unexpected failure.
    """
    t = {"start": time.perf_counter()}
    with open_outbox(out, period) as box:
        log.info("tonghop %s: inbox %s, period %s", __version__, inbox, period)
        with _fewer_collections():
            summary = _run(
                inbox,
                box.staging,
                period,
                definition,
                units,
                strict,
                feedback,
                options or Options(period=period),
                on_progress,
                t,
            )
        log.info("done: %s", summary.timings)
        box.commit()
    summary.out_dir = box.final
    summary.district_files = [box.final / p.name for p in summary.district_files]
    return summary


def _run(inbox, out_dir, period, definition, units, strict, feedback, options, on_progress, t) -> Summary:
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

    subs = result.submissions.copy()  # with the fingerprints the pre-scan took (sha256, mtime)
    dates = result.values[result.values["field"] == "report_date"].set_index("submission")["text"]
    subs["report_date"] = dates.reindex(subs.index)
    subs["received"] = [dt.datetime.fromtimestamp(m).isoformat(timespec="seconds") for m in subs["mtime"]]
    subs, resub = choose_submissions(subs)
    dropped = [r["submission"] for r in resub]
    findings = result.findings[~result.findings["submission"].isin(dropped)]
    if resub:
        extra = pd.DataFrame(resub).join(subs[["file", "unit_code", "unit_name"]], on="submission")
        findings = pd.concat([findings, make_findings(extra, definition.rules)], ignore_index=True)
    findings = sort_findings(findings, definition.frame["order"])
    cons = consolidate(definition, units, subs, result.values, findings, strict=strict)
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
        )
        if feedback
        else {}
    )
    t["feedback"] = time.perf_counter()
    vt = values_table(cons.used, subs, definition, period)

    def write_tables() -> None:  # in this process while the workers write the district workbooks
        write_csv(vt[VALUES_COLUMNS], out_dir / "values.csv")
        write_csv(findings_table(findings), out_dir / "findings.csv")

    district_files = write_districts(
        definition, out_dir, period, cons, findings, vt, links, options.jobs, meanwhile=write_tables
    )
    t["write"] = time.perf_counter()
    stages = {
        "discover": t["discover"] - t["start"],
        **result.timings,
        "consolidate": t["consolidate"] - t["read+validate"],
        "feedback": t["feedback"] - t["consolidate"],
        "write": t["write"] - t["feedback"],
    }
    read_names = set(subs["file"])
    n_err = int((findings["severity"] == "error").sum())
    n_warn = int((findings["severity"] == "warning").sum())
    received = int((cons.units["status"] != "Chưa nộp").sum())
    write_manifest(
        out_dir / "manifest.json",
        {
            "tool": "tonghop",
            "version": __version__,
            "definition": definition.template_key,
            "period": period,
            "inputs": [{"file": n, "sha256": s} for n, s in zip(subs["file"], subs["sha256"], strict=True)]
            + [
                {"file": name, "sha256": sha if isinstance(sha, str) else None}
                for name, sha in zip(result.files["file"], result.files["sha256"], strict=True)
                if name not in read_names
            ],
            "skipped": others,
            "counts": {
                "files": len(books),
                "units_expected": len(cons.units),
                "units_received": received,
                "errors": n_err,
                "warnings": n_warn,
                "feedback_workbooks": len(links),
            },
            "outputs": [p.name for p in district_files] + ["values.csv", "findings.csv"],
            "timings": {k: round(v, 3) for k, v in stages.items()},
        },
    )
    missing = cons.units.loc[cons.units["status"] == "Chưa nộp", "full_name"].tolist()
    return Summary(
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
    )

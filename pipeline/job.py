"""The district's job: every workbook of an inbox in, the district workbooks and feedback out.

`consolidate_inbox(...)` discovers files, runs `check_files`, resolves resubmissions, consolidates
and writes every output atomically under `<out>/<period>/`, holding a lock so that two runs never
write the same folder. Returns a `Summary`; progress goes through `on_progress(stage, done, total)`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout

from pipeline import __version__
from pipeline.consolidate import choose_submissions, consolidate
from pipeline.definition import Definition
from pipeline.findings import make_findings, sort_findings
from pipeline.outputs import VALUES_COLUMNS, findings_table, values_table, write_csv, write_manifest
from pipeline.run import Options, check_files
from pipeline.text import slug

WORKBOOK_SUFFIXES = {".xlsx", ".xlsm", ".xls", ".ods", ".xlsb"}
log = logging.getLogger("tonghop")


class OutputError(Exception):
    """The output folder cannot be written (read-only, full, locked by another run)."""


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


def discover(inbox: Path) -> tuple[list[Path], list[Path]]:
    """Every file under `inbox` (subfolders too), sorted: (workbook-like files, other files)."""
    files = sorted(
        (p for p in inbox.rglob("*") if p.is_file() and not p.name.startswith((".~lock", "~$"))),
        key=lambda p: str(p.relative_to(inbox)),
    )
    books = [p for p in files if p.suffix.lower() in WORKBOOK_SUFFIXES]
    others = [p for p in files if p.suffix.lower() not in WORKBOOK_SUFFIXES]
    return books, others


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _feedback_values(values: pd.DataFrame) -> dict[int, dict[str, object]]:
    """submission → field → what to show in its feedback workbook (raw as typed; totals recomputed)."""
    shown = values["raw"].where(~values["is_total"], values["value"])
    out: dict[int, dict[str, object]] = {}
    for sub, fid, v in zip(values["submission"], values["field"], shown, strict=True):
        out.setdefault(sub, {})[fid] = v
    return out


def write_feedback(
    definition: Definition,
    out_dir: Path,
    period: str,
    units: pd.DataFrame,
    chosen: pd.DataFrame,
    values: pd.DataFrame,
    findings: pd.DataFrame,
    on_progress: Callable | None = None,
) -> dict[str, str]:
    """One feedback workbook per chosen submission with a known unit. Returns unit_code → relative path."""
    from pipeline.template import Mark, render_workbook

    by_code = units.set_index("unit_code")
    shown = _feedback_values(values[values["submission"].isin(chosen.index)])
    links = {}
    subs = chosen[chosen["unit_code"].astype(bool)]
    for n, (sub, row) in enumerate(subs.iterrows(), 1):
        unit = by_code.loc[row["unit_code"]]
        rel = f"feedback/{row['unit_code']}-{slug(unit['unit_name'])}.xlsx"
        mine = findings[findings["submission"] == sub]
        marks = {}
        for r in mine[mine["field"].notna() & (mine["field"] != "")].itertuples(index=False):
            old = marks.get(r.field)
            if old is None or (old.severity == "warning" and r.severity == "error"):
                text = r.message if old is None else f"{r.message}\n{old.comment}"
                marks[r.field] = Mark(r.severity, text)
            else:
                marks[r.field] = Mark(old.severity, f"{old.comment}\n{r.message}")
        render_workbook(
            definition,
            out_dir / rel,
            period=period,
            unit=unit.to_dict() | {"unit_code": row["unit_code"]},
            values=shown.get(sub, {}),
            marks=marks,
            findings=mine,
        )
        links[row["unit_code"]] = rel
        if on_progress:
            on_progress("feedback", n, len(subs))
    return links


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
    """Run the whole job; raises OutputError when the output folder cannot be written."""
    t = {"start": time.perf_counter()}
    out_dir = (out / period).resolve()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(out_dir / ".tonghop.lock"), timeout=0)
        lock.acquire()
    except Timeout:
        raise OutputError(
            f"Một lần chạy khác đang ghi vào thư mục {out_dir}. Đề nghị chờ lần chạy đó xong."
        ) from None
    except OSError as exc:
        raise OutputError(f"Không ghi được vào thư mục {out_dir}: {exc.strerror or exc}.") from None
    try:
        return _run(
            inbox,
            out_dir,
            period,
            definition,
            units,
            strict,
            feedback,
            options or Options(period=period),
            on_progress,
            t,
        )
    except OSError as exc:
        raise OutputError(f"Không ghi được kết quả vào thư mục {out_dir}: {exc.strerror or exc}.") from None
    finally:
        lock.release()


def _run(inbox, out_dir, period, definition, units, strict, feedback, options, on_progress, t) -> Summary:
    from pipeline.district import write_district_workbook

    books, others = discover(inbox)
    names = [str(p.relative_to(inbox)) for p in books]
    t["discover"] = time.perf_counter()
    result = check_files(
        books,
        definition,
        units,
        names=names,
        options=options,
        on_progress=(lambda d, n: on_progress("read", d, n)) if on_progress else None,
    )
    t["read+validate"] = time.perf_counter()

    subs = result.submissions.copy()
    subs["sha256"] = [_sha256(Path(p)) for p in subs["path"]]
    subs["mtime"] = [Path(p).stat().st_mtime for p in subs["path"]]
    dates = result.values[result.values["field"] == "report_date"].set_index("submission")["text"]
    subs["report_date"] = dates.reindex(subs.index)
    subs["received"] = [dt.datetime.fromtimestamp(m).isoformat(timespec="seconds") for m in subs["mtime"]]
    subs, resub = choose_submissions(subs)
    dropped = [r["submission"] for r in resub]
    findings = result.findings[~result.findings["submission"].isin(dropped)]
    if resub:
        extra = pd.DataFrame(resub).join(subs[["file", "unit_code", "unit_name"]], on="submission")
        findings = pd.concat([findings, make_findings(extra, definition.rules)], ignore_index=True)
    findings = sort_findings(findings)
    cons = consolidate(definition, units, subs, result.values, findings, strict=strict)
    t["consolidate"] = time.perf_counter()

    chosen = subs[subs["chosen"]]
    links = (
        write_feedback(definition, out_dir, period, units, chosen, result.values, findings, on_progress)
        if feedback
        else {}
    )
    t["feedback"] = time.perf_counter()
    vt = values_table(cons.used, subs, definition, period)
    write_csv(vt[VALUES_COLUMNS], out_dir / "values.csv")
    write_csv(findings_table(findings), out_dir / "findings.csv")
    run_date = dt.date.today().strftime("%d/%m/%Y")
    district_files = []
    num = cons.used[cons.used["value"].notna()].pivot_table(
        index="unit_code", columns="field", values="value", aggfunc="first"
    )
    meta = definition.frame
    for dcode, dunits in cons.units.groupby("district_code", sort=True):
        first = dunits.iloc[0]
        codes = set(dunits["unit_code"])
        dfind = findings[
            findings["unit_code"].isin(codes) | findings["unit_code"].isna() | (findings["unit_code"] == "")
        ]
        path = out_dir / f"{slug(first['district_name'])}.xlsx"
        write_district_workbook(
            path,
            definition,
            district={
                "district_code": dcode,
                "district_name": first["district_name"],
                "province_name": first["province_name"],
            },
            period=period,
            run_date=run_date,
            units=dunits,
            figures=num[num.index.isin(codes)],
            district_values=cons.district[cons.district["district_code"] == dcode],
            choices=cons.choices[cons.choices["district_code"] == dcode],
            findings=dfind.assign(label=dfind["field"].map(meta["label"]).fillna("")),
            values=vt[vt["unit_code"].isin(codes)],
            feedback_links=links,
        )
        district_files.append(path)
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
                {"file": str(p.relative_to(inbox)), "sha256": _sha256(p)}
                for p in books
                if str(p.relative_to(inbox)) not in set(subs["file"])
            ],
            "skipped": [str(p.relative_to(inbox)) for p in others],
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
        [str(p.relative_to(inbox)) for p in others],
        district_files,
        len(links),
        stages,
        missing,
    )

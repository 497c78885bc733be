"""Wiring: files in, submissions + tidy values + findings out. Shared by `check` and `consolidate`.

`check_files(paths, ...)` guards, reads (in supervised workers), identifies and validates every
file, and returns a `Result`. Progress is reported through an optional callback `on_progress(done,
total)`; nothing here prints.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.definition import SAMPLE_KEY, Definition
from pipeline.findings import Finding, make_findings, records_frame
from pipeline.guard import Limits, Problem, inspect_file
from pipeline.identify import SUBMISSION_UNIT_COLUMNS, identify
from pipeline.isolation import Failure, map_inline, map_isolated
from pipeline.reader import RawSubmission, make_spec, read_workbook
from pipeline.text import fold
from pipeline.validate import CELL_COLUMNS, validate

log = logging.getLogger("tonghop")


@dataclass
class Options:
    period: str | None = None
    isolate: bool = True
    timeout: float = 60.0
    # address space a reader worker may add to what it maps at start: reading a sheet of 980,000
    # numbers (within every limit of the pre-scan) needs less than 256 MB; 768 keeps the process tree
    # under 1 GiB with one reader, 2 GiB with two, whatever the files
    memory_mb: int = 768
    jobs: int = 1  # processes writing feedback workbooks
    readers: int = 1  # supervised reader processes
    limits: Limits = field(default_factory=Limits)


@dataclass
class Result:
    files: pd.DataFrame  # one row per input file: file, path, sha256 and mtime (of the bytes read, else None)
    submissions: pd.DataFrame  # indexed by submission: file, unit..., period
    values: pd.DataFrame  # tidy long frame
    findings: pd.DataFrame  # findings frame (pipeline.findings.ALL_COLUMNS)
    timings: dict[str, float] = field(default_factory=dict)


def _read_item(item: tuple[int, Path], spec) -> RawSubmission:
    return read_workbook(item[1], spec=spec)


def _interleave(streams: list[Iterator]) -> Iterator:
    """Everything each stream yields, taking from each in turn."""
    live = list(streams)
    while live:
        for stream in list(live):
            try:
                yield next(stream)
            except StopIteration:
                live.remove(stream)


def _file_finding(i: int, problem: Problem | Failure, **more) -> tuple[int, Finding]:
    """The guard's Problem or the supervisor's Failure about file `i` as a Finding: the one place where
    those two (they import nothing from the pipeline) become the pipeline's record."""
    return i, Finding(problem.rule, detail=problem.detail, sheet=getattr(problem, "sheet", None), **more)


def _read_all(paths: Sequence[Path], spec, options: Options, on_progress,
              refused: Mapping[int, Problem]) -> tuple[list, list[tuple[int, Finding]], list]:
    """Pre-scan then read every file but the `refused` ones. Returns ([(file index, RawSubmission)],
    [(file index, Finding)] about whole files, [(sha256, mtime) of each file, ("", None) when not read]).

    The pre-scan (pipeline.guard, bounded by its limits, never raising) runs here, lazily, while the
    reader workers read the files already passed: so its time overlaps theirs (measured at 1,000
    files: read stage 2.40 s with the scan here, 2.62 s with it in the workers); with
    `options.readers` > 1 several supervised workers share the files (each takes batches as it goes).
    """
    problems: list[tuple[int, Finding]] = []
    prints: list[tuple[str, float | None]] = [("", None)] * len(paths)
    for i, p in refused.items():
        problems.append(_file_finding(i, p))

    def guarded() -> Iterator[tuple[int, Path]]:
        for i, path in enumerate(paths):
            if i in refused:
                continue
            verdict = inspect_file(path, options.limits)
            prints[i] = (verdict.sha256, verdict.mtime)
            problems.extend(_file_finding(i, p) for p in verdict.problems)
            if verdict.readable:
                yield i, path

    reader = functools.partial(_read_item, spec=spec)
    mapper = (functools.partial(map_isolated, timeout=options.timeout, memory_mb=options.memory_mb)
              if options.isolate else map_inline)
    items = guarded()
    readers = max(1, options.readers) if options.isolate and len(paths) >= 64 else 1
    streams = [mapper(reader, items) for _ in range(readers)]
    stream = streams[0] if readers == 1 else _interleave(streams)
    raws = []
    for n, ((i, path), result) in enumerate(stream, 1):
        if isinstance(result, Failure):
            log.warning("reading %s failed: %s %s (%s)", path, result.rule, result.detail, result.cause)
            problems.append(_file_finding(i, result, params={"limit": f"{options.timeout:g}"}))
        else:
            raws.append((i, result))
        if on_progress:
            on_progress(min(n, len(paths)), len(paths))
    if on_progress:
        on_progress(len(paths), len(paths))
    raws.sort(key=lambda r: r[0])
    problems.sort(key=lambda p: p[0])
    return raws, problems, prints


def _cells_frame(raws: list[tuple[int, RawSubmission]]) -> pd.DataFrame:
    rows = [(sub, *cell) for sub, raw in raws for cell in raw.cells]
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def check_files(
    paths: Sequence[Path],
    definition: Definition,
    units: pd.DataFrame,
    *,
    names: Sequence[str] | None = None,
    options: Options | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    refused: Mapping[int, Problem] | None = None,
) -> Result:
    """Guard, read, identify and validate `paths`; `names` are the file names shown to people.
    `refused` (file index -> Problem) are reported and never opened (pipeline.inbox refuses them)."""
    options = options or Options()
    names = list(names) if names is not None else [str(p) for p in paths]
    t0 = time.perf_counter()
    spec = make_spec(definition)
    raws, file_problems, prints = _read_all(paths, spec, options, on_progress, refused or {})
    t_read = time.perf_counter()
    # a workbook that is not the template at all gives one finding for the file and no values
    subs = []
    for i, raw in raws:
        for problem in raw.problems:
            if problem.rule == "not-template":
                file_problems.append((i, Finding(problem.rule, expected=definition.template_key,
                                                 detail="không có các trang của mẫu báo cáo")))
                break
        else:
            subs.append((i, raw))
    cells = _cells_frame(subs)
    values, findings = validate(definition, cells)
    t_validate = time.perf_counter()
    metas = {i: raw.meta for i, raw in subs}
    submissions, id_found = identify(definition, units, metas, values, options.period)
    structural = [dataclasses.replace(p, submission=i) for i, raw in subs for p in raw.problems]
    findings = pd.concat([findings, records_frame(id_found + structural)], ignore_index=True)
    file_df = pd.DataFrame({"file": names, "path": [str(p) for p in paths],
                            "sha256": pd.Series([sha or None for sha, _ in prints], dtype=object),
                            "mtime": [m for _, m in prints]})
    submissions = submissions.join(file_df, how="left")
    samples = {i for i, raw in subs if raw.meta.get(SAMPLE_KEY) == "1"}
    submissions["sample"] = submissions.index.isin(list(samples))
    result = Result(
        file_df,
        submissions,
        values,
        _finish(definition, findings, file_problems, submissions, file_df, units),
        {},
    )
    result.timings = {
        "read": t_read - t0,
        "validate": t_validate - t_read,
        "identify": time.perf_counter() - t_validate,
    }
    return result


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


def _finish(
    definition: Definition,
    findings: pd.DataFrame,
    file_problems: list[tuple[int, Finding]],
    submissions: pd.DataFrame,
    files: pd.DataFrame,
    units: pd.DataFrame,
) -> pd.DataFrame:
    """Attach file, unit, sheet and label to every finding and render its message."""
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
    fp = records_frame(p for _, p in file_problems)
    if not fp.empty:
        fp["file"] = files["file"].reindex([i for i, _ in file_problems]).to_numpy()
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

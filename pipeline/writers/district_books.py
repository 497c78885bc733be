"""The district workbooks of a run, one per district of the units list, written by worker processes.

`write_districts(...)` shapes the run's frames once (each grouped by district, so a worker takes its
district's rows as a view, not a copy), names each district's file, and has pipeline.pool's workers
write them (pipeline.writers.district.write_district_workbook); findings that belong to no unit go to every
district. The frames are shared with the workers (inherited by a forked worker, not pickled).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.definition import Definition
from pipeline.pool import SHARED, run_tasks
from pipeline.text import per_distinct, slug
from pipeline.writers.cache import WriterCache
from pipeline.writers.outputs import show_plain


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
    from pipeline.writers.district import write_district_workbook

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
        cache=sh["cache"],
    )


def _without_attrs(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` (a shallow copy) without `.attrs`: pandas deep-copies them into every column taken, which
    cost the district writers some 250 µs a column of the units list (it carries its source file)."""
    if not frame.attrs:
        return frame
    frame = frame.copy(deep=False)
    frame.attrs = {}
    return frame


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
    `wide` is the pivot table (pipeline.writers.outputs.wide_table); `sample` says the inputs are sample
    files.
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
        shared[name], spans = _grouped(_without_attrs(frame), keys)
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
        "cache": WriterCache(),  # the run's: a forked worker fills its own copy
    }
    run_tasks(_write_district, codes, jobs, meanwhile=meanwhile, shared=shared)
    return [paths[code] for code in codes]

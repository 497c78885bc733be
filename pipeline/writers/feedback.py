"""A ward's feedback workbook: the template re-rendered with its own figures, cells with findings marked.

`write_feedback` writes one per chosen submission of a known unit, in the process pool (pipeline.pool);
`render` writes one.

Every feedback workbook is what `template.render_workbook` writes, with this module's "Góp ý" sheet in
front (`feedback_sheet`). Most wards have no finding, and for
them only the figures and the unit's name differ from one workbook to the next, so the same workbook is
made faster: the template is rendered once per process and period with placeholders (a number from
`xlsx_patch.SENTINEL` in every value cell, marker texts for the unit's code and name), and each ward's
copy is that prototype with its values put in (2.4 ms against 36 ms for a whole render). Wards with
findings (coloured cells, comments, a list on "Góp ý") and any value the placeholders cannot stand for
are rendered whole. A test checks that both ways give the same cells, formats and formulas.
"""

from __future__ import annotations

import datetime as dt
import io
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from openpyxl.utils.datetime import to_excel

from pipeline.definition import NUMERIC, Definition, Field
from pipeline.findings import FINDING_COLUMNS, SEVERITY_VN, show
from pipeline.pool import SHARED, run_tasks
from pipeline.text import slug
from pipeline.writers import xlsx_patch
from pipeline.writers.cache import WriterCache
from pipeline.writers.template import (
    FEEDBACK_SHEET,
    HEADER_FILL,
    LOCKED_FILL,
    MARK_FILL,
    Mark,
    Renderer,
    TypedOver,
    is_input,
    merge_cells,
    page_sheet,
    render_workbook,
)
from pipeline.writers.xlsx import is_blank, is_number, quote_sheet, records

CODE_MARK, NAME_MARK = "\ue000unit_code\ue001", "\ue000unit_name\ue001"


def shown_values(values: pd.DataFrame) -> dict[int, dict[str, object]]:
    """submission → field → what to show in its feedback workbook: figures that read cleanly as numbers
    (so "02" becomes 2 and the sheet's own formulas add it up), totals recomputed (their formula back),
    but a wrong total the ward typed over the formula as typed (`TypedOver`), anything else as typed."""
    clean = values["type"].isin(NUMERIC) & values["parse_rule"].isna() & values["value"].notna()
    shown = values["raw"].where(~(clean | values["is_total"]), values["value"])
    if "declared_typed" in values:
        declared = values["declared"].to_numpy(dtype=float)
        recomputed = values["value"].to_numpy(dtype=float)
        wrong = values["declared_typed"].to_numpy(dtype=bool) & ~(np.abs(declared - recomputed) <= 1e-6)
        if wrong.any():
            shown = shown.copy()
            shown[wrong] = [TypedOver(r) for r in values["raw"][wrong]]
    out: dict[int, dict[str, object]] = {}
    for sub, fid, v in zip(values["submission"], values["field"], shown, strict=True):
        out.setdefault(sub, {})[fid] = v
    return out


def marks(mine: pd.DataFrame) -> dict[str, Mark]:
    """field → Mark for one submission's findings: the worst severity, every message in the comment. A
    cross-check marks every cell it involves (its own and those in `also`)."""
    out: dict[str, Mark] = {}
    also = mine["also"].fillna("").astype(str) if "also" in mine else [""] * len(mine)
    rows = zip(mine["field"], mine["severity"], mine["message"], also, strict=True)
    cells = [(fid, sev, msg) for own, sev, msg, more in rows for fid in [own, *more.split()]]
    for fid, sev, msg in cells:
        if not isinstance(fid, str) or not fid:
            continue
        old = out.get(fid)
        if old is None:
            out[fid] = Mark(sev, msg)
        elif old.severity == "warning" and sev == "error":
            out[fid] = Mark(sev, f"{msg}\n{old.comment}")
        else:
            out[fid] = Mark(old.severity, f"{old.comment}\n{msg}")
    return out


@dataclass(frozen=True)
class Prototype:
    """The feedback workbook of no unit, with placeholders. `fields[k]` is the field whose cell held
    SENTINEL + k; `sheets` maps each worksheet holding placeholders to its XML cut around them: the
    static pieces, and per gap (cell reference, style attribute, formula element or None, k)."""

    package: xlsx_patch.Package
    fields: tuple[Field, ...]
    sheets: dict[str, tuple[list[str], list[tuple[str, str, str | None, int]]]]
    strings: str  # xl/sharedStrings.xml, holding CODE_MARK and NAME_MARK


def prototype(definition: Definition, period: str, cache: WriterCache) -> Prototype:
    """The prototype for this definition and period, rendered on first use with `cache` (the run's)."""
    hit = cache.prototypes.get((id(definition), period))
    if hit is not None and hit[0] is definition:
        return hit[1]
    fields = tuple(f for f in definition.fields.values() if f.total_of or is_input(f, blank=False))
    buf = io.BytesIO()
    render_workbook(definition, buf, period=period,
                    unit={"unit_code": CODE_MARK, "unit_name": NAME_MARK, "full_name": NAME_MARK},
                    values={f.id: xlsx_patch.SENTINEL + k for k, f in enumerate(fields)},
                    front=lambda r: feedback_sheet(r, pd.DataFrame(columns=FINDING_COLUMNS)),
                    output_kind="feedback", cache=cache)
    package = xlsx_patch.Package.read(buf.getvalue())
    sheets = {}
    for info, data in package.members:
        if info.filename.startswith("xl/worksheets/sheet"):
            xml, pieces, gaps, pos = data.decode("utf-8"), [], [], 0
            for m in xlsx_patch.SENTINEL_RE.finditer(xml):
                pieces.append(xml[pos:m.start()])
                gaps.append((m.group(1), m.group(2), m.group(3), int(m.group(4))))
                pos = m.end()
            if gaps:
                sheets[info.filename] = ([*pieces, xml[pos:]], gaps)
    strings = package.text("xl/sharedStrings.xml")
    found = sorted(k for _, gaps in sheets.values() for *_, k in gaps)
    if found != list(range(len(fields))) or CODE_MARK not in strings or NAME_MARK not in strings:
        raise RuntimeError("feedback prototype: placeholders missing from the rendered template")
    proto = Prototype(package, fields, sheets, strings)
    cache.prototypes[(id(definition), period)] = (definition, proto)
    return proto


def _cell(field: Field, v: object, ref: str, style: str, formula: str | None) -> str | None:
    """The XML of `field`'s cell holding `v`, as render_workbook writes it; None when only a whole render
    can write it (a value whose format differs from the placeholder's: booleans, dates outside date
    fields, overlong text)."""
    if formula is not None:  # a total: its formula, cached with the recomputed figure when there is one
        return xlsx_patch.formula_cell(ref, style, formula, v if is_number(v) else None)
    if is_blank(v):
        return f'<c r="{ref}"{style}/>'
    if isinstance(v, (dt.datetime, dt.date, dt.time)):  # a date field's placeholder has the date format
        day = v.date() if isinstance(v, dt.datetime) else v
        if field.type != "date" or getattr(v, "tzinfo", None) is not None or (
                isinstance(day, dt.date) and not dt.date(1900, 3, 1) <= day <= dt.date(9999, 12, 31)):
            return None
        return xlsx_patch.number_cell(ref, style, float(to_excel(v)))
    if isinstance(v, bool):
        return None
    if isinstance(v, numbers.Real):
        return xlsx_patch.number_cell(ref, style, float(v))
    text = str(v)
    return None if len(text) > xlsx_patch.MAX_TEXT else xlsx_patch.string_cell(ref, style, text)


def filled(proto: Prototype, unit: Mapping, values: Mapping[str, object]) -> dict[str, str] | None:
    """The members (name → XML) that make the prototype this unit's feedback workbook, or None when a
    value or the unit's name needs a whole render."""
    code = str(unit["unit_code"])
    name = str(unit.get("full_name") or unit.get("unit_name") or "")
    if any(s != s.strip() or len(s) > 1000 for s in (code, name)):
        return None
    out = {}
    for member, (pieces, gaps) in proto.sheets.items():
        cells = []
        for ref, style, formula, k in gaps:
            f = proto.fields[k]
            if (cell := _cell(f, values.get(f.id), ref, style, formula)) is None:
                return None
            cells.append(cell)
        out[member] = pieces[0] + "".join(c + p for c, p in zip(cells, pieces[1:], strict=True))
    out["xl/sharedStrings.xml"] = proto.strings.replace(CODE_MARK, xlsx_patch.xml_text(code)).replace(
        NAME_MARK, xlsx_patch.xml_text(name))
    return out


def render(definition: Definition, path: Path, period: str, unit: Mapping, values: Mapping[str, object],
           findings: pd.DataFrame, changes: tuple[str, list[tuple]] | None = None,
           cache: WriterCache | None = None) -> None:
    """Write one unit's feedback workbook to `path` (atomically): from the prototype when it has no
    findings and every value fits a placeholder, else rendered whole. `changes` lists the cells changed
    since the file it replaced (see template.render_workbook); `cache` is the run's WriterCache (None:
    a fresh one, so the prototype is made for this workbook alone)."""
    cache = cache if cache is not None else WriterCache()
    if findings.empty and not changes:
        proto = prototype(definition, period, cache)
        if (members := filled(proto, unit, values)) is not None:
            proto.package.write(path, members)
            return
    render_whole(definition, path, period, unit, values, findings, changes, cache)


def render_whole(definition: Definition, path, period: str, unit: Mapping, values: Mapping[str, object],
                 findings: pd.DataFrame, changes: tuple[str, list[tuple]] | None = None,
                 cache: WriterCache | None = None) -> None:
    """Render one unit's feedback workbook whole to `path` (a path or a binary file object): the template
    with the unit's values, the cells with findings marked, "Góp ý" first."""
    render_workbook(definition, path, period=period, unit=unit, values=values, marks=marks(findings),
                    front=lambda r: feedback_sheet(r, findings, changes), output_kind="feedback",
                    cache=cache)


def _render_task(task: tuple) -> None:
    """Render one feedback workbook in a worker of `write_feedback` (the definition and period shared)."""
    path, unit, values, findings, changes = task
    findings = SHARED["no_findings"] if findings is None else findings
    render(SHARED["definition"], path, SHARED["period"], unit, values, findings, changes=changes,
           cache=SHARED["cache"])


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
        _render_task,
        tasks,
        jobs,
        on_done=(lambda n: on_progress("feedback", n, len(tasks))) if on_progress else None,
        shared={"definition": definition, "period": period, "no_findings": findings.iloc[0:0],
                "cache": WriterCache()},
    )
    return links


def feedback_sheet(book: Renderer, findings: pd.DataFrame,
                   changes: tuple[str, list[tuple]] | None = None) -> None:
    """The "Góp ý" sheet of a feedback workbook, written first with the workbook's Renderer: the findings
    listed (severity, sheet, cell linked, message, value, right figure, likely reading) and the cells
    changed since the older version `changes` (its name, [(sheet, cell, label, before, after)])."""
    ws = book.sheet(FEEDBACK_SHEET)
    ws.activate()
    heads = ("Mức độ", "Trang", "Ô", "Nội dung", "Giá trị đã ghi", "Giá trị đúng", "Có thể là")
    widths = (10, 18, 7, 62, 13, 12, 12)
    for c, w in enumerate(widths):
        ws.set_column(c, c, w)
    merge_cells(ws, 0, 0, 0, 6, f"GÓP Ý CỦA {book.d.office.name.upper()}",
                book.st(bold=True, font_size=13, align="center"))
    errors = int((findings["severity"] == "error").sum()) if len(findings) else 0
    who = book.unit_name or "đơn vị"
    if len(findings):
        intro = (f"{book.d.office.short} đã xem báo cáo {book.d.period_label(book.period)} của {who} "
                 f"và xin gửi {len(findings)} góp ý dưới đây ({errors} lỗi cần sửa, "
                 f"{len(findings) - errors} điểm cần kiểm tra). Bấm vào địa chỉ ở cột «Ô» để đến ô "
                 "đó; các ô này cũng được tô màu và có ghi chú. Sau khi sửa, đề nghị lưu tệp và gửi lại. "
                 "Xin cảm ơn!")
    else:
        intro = (f"{book.d.office.short} đã xem báo cáo {book.d.period_label(book.period)} của {who} "
                 "và không có góp ý nào. Xin cảm ơn!")
    merge_cells(ws, 1, 0, 1, 6, intro, book.st(text_wrap=True, valign="top"))
    ws.set_row(1, 48)
    head = book.st(bold=True, align="center", text_wrap=True, border=1, bg_color=HEADER_FILL)
    for c, text in enumerate(heads):
        ws.write_string(3, c, text, head)
    text, wrap = book.st(border=1, valign="top"), book.st(border=1, text_wrap=True, valign="top")
    link = book.st(border=1, valign="top", align="center", font_color="#0563C1", underline=1)
    sheets = {s.name for s in book.d.sheets}
    for r, rec in enumerate(records(findings), 4):
        sev = rec.get("severity")
        ws.write_string(r, 0, SEVERITY_VN.get(sev, str(sev or "")), book.st(
            border=1, valign="top", bold=True, bg_color=MARK_FILL.get(sev, LOCKED_FILL)))
        f = book.d.fields.get(rec.get("field") or "")
        # the field's address in this re-rendered workbook, which may differ from the ward's file
        sheet, cell = (book.d.sheet(f.sheet).name, f.cell) if f else (_shown(rec.get("sheet")),
                                                                       _shown(rec.get("cell")))
        ws.write_string(r, 1, sheet, wrap)
        if cell and sheet in sheets:
            ws.write_url(r, 2, f"internal:{quote_sheet(sheet)}!{cell}", link, cell, f"Đến ô {cell}")
        else:
            ws.write_string(r, 2, cell, text)
        ws.write_string(r, 3, _shown(rec.get("message")), wrap)
        ws.write_string(r, 4, _shown(rec.get("value")), wrap)
        ws.write_string(r, 5, _shown(rec.get("expected")), wrap)
        ws.write_string(r, 6, _shown(rec.get("suggestion")), wrap)
        ws.set_row(r, book.height((_shown(rec.get("message")), widths[3]), (sheet, widths[1])))
    last = max(3, 3 + len(findings))
    if changes and changes[1]:
        last = _changes(book, ws, last + 2, changes, widths)
    page_sheet(ws, last, 6, sum(widths), (3, 3))


def _changes(book: Renderer, ws, r: int, changes: tuple[str, list[tuple]], widths: tuple) -> int:
    """The cells whose values changed since the older version `changes[0]`, from row `r`: a title,
    a header and a row per cell (sheet, cell linked, label, before, after). Returns the last row."""
    source, rows = changes
    merge_cells(ws, r, 0, r, 5, f"Các ô đã thay đổi so với {source} ({len(rows)} ô)",
                book.st(bold=True, text_wrap=True))
    head = book.st(bold=True, align="center", text_wrap=True, border=1, bg_color=HEADER_FILL)
    for c, text in enumerate(("", "Trang", "Ô", "Mục", "Trước", "Nay")):
        ws.write_string(r + 1, c, text, head)
    wrap = book.st(border=1, text_wrap=True, valign="top")
    link = book.st(border=1, valign="top", align="center", font_color="#0563C1", underline=1)
    sheets = {s.name for s in book.d.sheets}
    for i, (sheet, cell, label, before, after) in enumerate(rows, r + 2):
        ws.write_blank(i, 0, None, wrap)
        ws.write_string(i, 1, str(sheet), wrap)
        if cell and sheet in sheets:
            ws.write_url(i, 2, f"internal:{quote_sheet(sheet)}!{cell}", link, cell, f"Đến ô {cell}")
        else:
            ws.write_string(i, 2, str(cell), wrap)
        for c, text in ((3, label), (4, before), (5, after)):
            ws.write_string(i, c, str(text), wrap)
        ws.set_row(i, book.height((str(label), widths[3]), (str(sheet), widths[1])))
    return r + 1 + len(rows)


def _shown(v: object) -> str:
    """A finding's value as text, numbers written the Vietnamese way (828, 2.379, 785,87)."""
    return "" if is_blank(v) else show(v)

"""Load an earlier period's results into the history store, so that comparisons work from the first run.

`read_past_values(path, definition)` reads a past district workbook (its "Dữ liệu" sheets) or a
values.csv — the current one (comma-separated, English headers) or the Vietnamese one (UTF-8 with BOM,
";"-separated, decimal comma, codes written ="07069") — recognising the columns by their headers, and
returns one canonical frame. `import_values(...)` records it as an import run: a submission per unit and
file, its values, and the district figures consolidated from them as the definition says.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline import __version__
from pipeline.consolidate import consolidate
from pipeline.definition import Definition, check_period
from pipeline.findings import make_findings
from pipeline.history.runs import write_run
from pipeline.history.store import Store, now
from pipeline.numbers import parse_number
from pipeline.text import fold
from pipeline.writers.district import DATA_SHEET, SHEETS

COLUMNS = [
    "period",
    "district",
    "unit_code",
    "unit_name",
    "sheet",
    "field",
    "label",
    "unit",
    "value",
    "raw",
    "counted",
    "reason",
    "file",
    "cell",
]
# Header (folded: lower case, no accents) → canonical column. "Mục" is the field id in values.csv and the
# district workbook of today, and its label where a "Mã mục" column holds the id.
ALIASES = {
    "period": "period",
    "ky": "period",
    "ky bao cao": "period",
    "district": "district",
    "huyen": "district",
    "don vi hanh chinh cap huyen": "district",
    "unit_code": "unit_code",
    "ma don vi": "unit_code",
    "unit_name": "unit_name",
    "ten don vi": "unit_name",
    "sheet": "sheet",
    "trang": "sheet",
    "field": "field",
    "ma muc": "field",
    "muc": "label",
    "don vi tinh": "unit",
    "unit": "unit",
    "value": "value",
    "gia tri": "value",
    "raw": "raw",
    "gia tri goc": "raw",
    "counted": "counted",
    "duoc tong hop": "counted",
    "reason": "reason",
    "ly do khong tong hop": "reason",
    "file": "file",
    "tep": "file",
    "cell": "cell",
    "o": "cell",
}
SUMMARY_SHEET = SHEETS[0]  # "Tổng hợp" of a district workbook, where its period is named
_NO = {"khong", "no", "false", "0"}


class HistoryImportError(ValueError):
    """The file cannot be imported; the message (Vietnamese) says why."""


@dataclass
class Imported:
    run_ids: list[int]
    periods: list[str]
    units: int
    values: int
    skipped_fields: list[str]
    unknown_units: list[str]


def _canonical(header: list[object]) -> dict[int, str]:
    """Column position → canonical name, for the headers this module knows; "Mục" becomes the field
    when no "Mã mục" column holds the ids."""
    names = {i: ALIASES.get(fold(str(h or "")).strip()) for i, h in enumerate(header)}
    names = {i: n for i, n in names.items() if n}
    if "field" not in names.values():
        names = {i: ("field" if n == "label" else n) for i, n in names.items()}
    return names


def _frame(rows: list[list[object]], source: str) -> pd.DataFrame:
    if not rows:
        raise HistoryImportError(f"Tệp «{source}» không có dòng nào.")
    names = _canonical(rows[0])
    missing = {"unit_code", "field", "value"} - set(names.values())
    if missing:
        raise HistoryImportError(
            f"Tệp «{source}» không có các cột cần thiết (mã đơn vị, mục, giá trị): không nhận ra "
            f"tiêu đề {[str(h) for h in rows[0]][:14]}."
        )
    body = [r for r in rows[1:] if any(c not in (None, "") for c in r)]
    data = {name: [r[i] if i < len(r) else None for r in body] for i, name in names.items()}
    frame = pd.DataFrame(data, dtype=object)
    for col in COLUMNS:
        if col not in frame:
            frame[col] = None
    return frame[COLUMNS]


def _unquote(v: object) -> object:
    """'="07069"' (how a CSV keeps Excel from dropping leading zeros) → '07069'."""
    if isinstance(v, str):
        m = re.fullmatch(r'\s*="(.*)"\s*', v)
        return (m.group(1) if m else v).strip()
    return v


def _read_csv(path: Path) -> tuple[pd.DataFrame, bool]:
    """The rows of a values.csv and whether it is the Vietnamese form (";" and decimal comma)."""
    data = path.read_bytes()
    text = None
    for encoding in ("utf-8-sig", "cp1258"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if text is None or "\x00" in text:
        raise HistoryImportError(f"Tệp «{path.name}» không phải tệp CSV dạng chữ (UTF-8).")
    first = text.split("\n", 1)[0]
    sep = ";" if first.count(";") > first.count(",") else ","
    rows = list(csv.reader(io.StringIO(text), delimiter=sep))
    return _frame(rows, path.name), sep == ";"


def _read_workbook(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """The "Dữ liệu" sheets of a district workbook as rows, and the texts of the heading of its
    "Tổng hợp" (where its period is named)."""
    import python_calamine as pc

    try:
        book = pc.CalamineWorkbook.from_path(str(path))
        names = [n for n in book.sheet_names if n == DATA_SHEET or n.startswith(f"{DATA_SHEET} (")]
        if not names:
            raise HistoryImportError(f"Tệp «{path.name}» không có trang «{DATA_SHEET}» của bảng tổng hợp.")
        rows: list[list[object]] = []
        for i, name in enumerate(names):
            part = book.get_sheet_by_name(name).to_python()
            rows += part if i == 0 else part[1:]
        said = []
        if SUMMARY_SHEET in book.sheet_names:
            top = book.get_sheet_by_name(SUMMARY_SHEET).to_python(nrows=12)
            said = [c for r in top for c in r if isinstance(c, str) and c]
    except HistoryImportError:
        raise
    except Exception as exc:  # a file that is not a workbook: calamine's own error text is not for people
        raise HistoryImportError(
            f"Không đọc được tệp «{path.name}» như một bảng tính ({type(exc).__name__})."
        ) from None
    return _frame(rows, path.name), said


def _period_from_text(texts: list[str], definition: Definition) -> str | None:
    """The period a workbook heading names ("Kỳ báo cáo: 6 tháng đầu năm 2020 – ..."): a half-year's
    label anywhere, a year's ("năm 2020", as in any date) only beside "kỳ báo cáo"."""
    found = []
    for text in texts:
        folded = fold(text)
        for year in re.findall(r"(?<!\d)(\d{4})(?!\d)", text):
            for period in (f"{year}-H1", f"{year}-H2"):
                if fold(definition.period_label(period)) in folded:
                    found.append((0, period))
            if "ky bao cao" in folded and fold(definition.period_label(year)) in folded:
                found.append((1, year))
    return min(found)[1] if found else None


def _field_ids(frame: pd.DataFrame, definition: Definition) -> pd.Series:
    """The definition's field id of each row: the id itself, else the label (with its sheet when the
    label alone is ambiguous); None when unknown."""
    meta = definition.frame.reset_index()
    by_id = set(meta["field"])
    by_label = meta.assign(k=meta["label"].map(fold)).drop_duplicates("k", keep=False).set_index("k")["field"]
    by_both = meta.assign(k=meta["sheet"].map(fold) + "|" + meta["label"].map(fold)).set_index("k")["field"]
    out = []
    for fid, label, sheet in zip(frame["field"], frame["label"], frame["sheet"], strict=True):
        fid = str(fid or "").strip()
        if fid in by_id:
            out.append(fid)
            continue
        text = fold(str(label or fid))
        out.append(by_both.get(f"{fold(str(sheet or ''))}|{text}", by_label.get(text)))
    return pd.Series(out, index=frame.index, dtype=object)


def read_past_values(path: Path, definition: Definition) -> tuple[pd.DataFrame, str | None]:
    """The canonical frame (COLUMNS, `field` resolved to the definition's ids or None, `value` a float for
    numeric fields and text otherwise) of a past district workbook or values.csv, and the period its
    workbook heading names (None for a CSV). Raises HistoryImportError (Vietnamese)."""
    path = Path(path)
    if not path.is_file():
        raise HistoryImportError(f"Không tìm thấy tệp «{path}».")
    if path.suffix.lower() in (".csv", ".txt"):
        try:
            frame, vietnamese = _read_csv(path)
        except OSError:
            raise HistoryImportError(
                f"Không đọc được tệp «{path.name}» (không có quyền đọc, hoặc tệp đang được "
                "chương trình khác mở)."
            ) from None
        said = []
    else:
        frame, said = _read_workbook(path)
        vietnamese = False
    frame = frame.map(_unquote)
    frame["field"] = _field_ids(frame, definition)
    numeric = frame["field"].map(definition.frame["type"]).isin(["integer", "decimal", "percent"])
    frame["value"] = [
        _number(v, vietnamese) if num else (None if v in (None, "") else str(v))
        for v, num in zip(frame["value"], numeric, strict=True)
    ]
    frame["counted"] = [None if c in (None, "") else fold(str(c)) not in _NO for c in frame["counted"]]
    return frame, _period_from_text(said, definition)


def _number(v: object, vietnamese: bool) -> float | None:
    if v is None or v == "":
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    text = str(v).strip()
    if not vietnamese:
        try:
            return float(text)
        except ValueError:
            pass
    parsed = parse_number(text, "decimal")
    return None if parsed.value is None else float(parsed.value)


def _codes(codes: pd.Series, known: set[str]) -> pd.Series:
    """Unit codes as the units list writes them: "7069" (Excel dropped the zero) → "07069"."""
    width = max((len(c) for c in known), default=5)

    def fix(c: object) -> str:
        c = str(c if c is not None else "").strip()
        c = c[:-2] if c.endswith(".0") and c[:-2].isdigit() else c
        return c.zfill(width) if c.isdigit() and c not in known and c.zfill(width) in known else c

    return codes.map(fix)


def import_values(
    store: Store,
    definition: Definition,
    units: pd.DataFrame,
    frame: pd.DataFrame,
    period: str | None,
    source: Path,
) -> Imported:
    """Record `frame` (from read_past_values) as one import run per period, in one transaction.
    `period` is used where the frame has none. Raises HistoryImportError when no period is known."""
    frame = frame.copy()
    frame["period"] = frame["period"].where(frame["period"].notna() & (frame["period"] != ""), period)
    if frame["period"].isna().any():
        raise HistoryImportError(
            f"Tệp «{source.name}» không ghi kỳ báo cáo. Đề nghị ghi kỳ bằng --period, ví dụ --period 2019-H2."
        )
    for p in frame["period"].unique():
        check_period(str(p))
    known = set(units["unit_code"])
    frame["unit_code"] = _codes(frame["unit_code"], known)
    skipped = sorted({str(x) for x in frame.loc[frame["field"].isna(), "label"].fillna("")} - {""})
    frame = frame[frame["field"].notna() & (frame["unit_code"] != "")]
    unknown = sorted(set(frame["unit_code"]) - known)
    frame["file"] = frame["file"].where(frame["file"].notna() & (frame["file"] != ""), source.name)
    started, run_ids = now(), []
    with store.transaction() as conn:
        for period_id, part in frame.groupby("period", sort=True):
            subs = part.drop_duplicates(["unit_code", "file"])[["unit_code", "unit_name", "file"]]
            subs = subs.reset_index(drop=True)
            key = {(c, f): i for i, (c, f) in enumerate(zip(subs["unit_code"], subs["file"], strict=True))}
            sub = [key[(c, f)] for c, f in zip(part["unit_code"], part["file"], strict=True)]
            figure = pd.to_numeric(pd.Series(part["value"].to_numpy(), dtype=object), errors="coerce")
            values = pd.DataFrame(
                {
                    "submission": sub,
                    "field": part["field"].to_numpy(),
                    "cell": part["cell"].to_numpy(),
                    "value": figure.to_numpy(dtype=float),
                    "text": [None if f == f else v for f, v in zip(figure, part["value"], strict=True)],
                    "raw": part["raw"].to_numpy(),
                    "counted": part["counted"].to_numpy(),
                }
            )
            table = subs.assign(
                path=str(source),
                sha256=None,
                period=period_id,
                report_date=None,
                received_at=None,
                late_days=None,
                status="used",
                errors=0,
                warnings=0,
            )
            district = _district_figures(definition, units, table, values)
            run = {
                "started_at": started,
                "finished_at": now(),
                "tool_version": __version__,
                "period": period_id,
                "command": "import",
                "inbox": str(Path(source).resolve()),
                "units_expected": None,
                "units_received": len(subs),
                "options": {"source": Path(source).name},
            }
            run_ids.append(
                write_run(conn, definition, run, [], table, values, make_findings([], {}), district)
            )
    return Imported(
        run_ids,
        sorted(frame["period"].unique().tolist()),
        frame["unit_code"].nunique(),
        len(frame),
        skipped,
        unknown,
    )


def _district_figures(
    definition: Definition, units: pd.DataFrame, subs: pd.DataFrame, values: pd.DataFrame
) -> pd.DataFrame:
    """The district figures of imported values, consolidated as a run would (values marked not counted
    left out)."""
    chosen = subs.assign(chosen=subs["unit_code"].isin(units["unit_code"]), superseded="", in_period=True,
                         period=subs.get("period", ""))
    chosen.index.name = "submission"
    kept = values[values["counted"].map(lambda c: c is not False)]
    cons = consolidate(definition, units, chosen, kept, make_findings([], {}))
    return cons.district

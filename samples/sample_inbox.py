"""Deterministic sample inbox: `python samples/sample_inbox.py --period 2020-H1 --out samples/2020-H1`.

Phường Đức Chính sends the seed report's own figures, typed as the seed shows them ("02", "8.28",
"2.379", "gần 8.000"); most other units send plausible figures; a few make the typical slips of
DOMAIN.md; a few send nothing. `make_samples` says what each file is meant to carry, so a test can
check that the committed samples still read as intended.

Every sample workbook says in its hidden sheet that it is one (SAMPLE_KEY = "1"), so that tonghop
warns loudly whenever made-up figures are consolidated. The files are byte-identical on every run:
document dates and zip timestamps are fixed (`_fix_dates`); LibreOffice takes no part.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import re
import shutil
import sys
import unicodedata
import zipfile
from pathlib import Path

import openpyxl

from pipeline.definition import SAMPLE_KEY, Definition, load_definition
from pipeline.units import load_units
from pipeline.writers.template import render_workbook

# The seed report of phường Đức Chính, 2020-H1, as typed (text where the seed has text).
DUC_CHINH: dict[str, object] = {
    "area_ha": 628,
    "households": "2.379",
    "population": "gần 8.000",
    "quarters": 6,
    "production_value_bn": "785,87",
    "income_per_capita_mn": "94,34",
    "board_directors": "01",
    "board_deputies": "02",
    "board_total": "03",
    "culture_houses": 6,
    "law_bookcases": 6,
    "conferences": "trên 20",
    "conference_attendees": "2.215",
    "reporter": "Nguyễn Thị Hoa",
    "phone": "0203 3870 123",
    "report_date": "15/6/2020",
    "literacy.classes": 0,
    "vocational.classes": 0,
    "law.classes": 0,
    "health.classes": "02",
    "health.participants": 350,
    "economy.classes": "03",
    "economy.participants": 150,
    "other.classes": "02",
    "other.participants": 142,
    "arts_sports.classes": 10,
    "arts_sports.participants": 186,
    "total.classes": 17,
    "total.participants": "8.28",
    "literacy_rate": 100,
    "learners": 828,
    "poor_households": 0,
    "near_poor_households": 31,
    "waste_collection_rate": "92,0",
    "cultural_family_rate": "96,5",
    "cultural_quarter_rate": 100,
    "mobilization_unions": "Tốt",
    "mobilization_business": "Chưa triển khai",
    "mobilization_donors": "Chưa triển khai",
    "mobilization_note": "Các đoàn thể phối hợp tốt; doanh nghiệp, nhà hảo tâm chưa tham gia.",
    "plan_tasks": "Tiếp tục duy trì phong trào học tập trong gia đình, dòng họ và cộng đồng.\n"
    "Phối hợp mở các hội nghị, lớp tập huấn, học nghề cho nhân dân.",
    "target_participation_rate": 70,
}


MISSING = {"07111", "07120", "07129"}  # units that send nothing
REPORTERS = [  # who signs a report (bench/figures.py draws from the same names)
    "Nguyễn Văn An",
    "Trần Thị Bình",
    "Lê Văn Cường",
    "Phạm Thị Dung",
    "Hoàng Văn Em",
    "Vũ Thị Giang",
    "Đặng Văn Hải",
    "Bùi Thị Lan",
    "Đỗ Văn Minh",
    "Ngô Thị Nga",
]
RATINGS = ["Tốt", "Khá", "Trung bình", "Chưa triển khai"]
_ROWS = [
    "literacy",
    "vocational",
    "law",
    "health",
    "environment",
    "culture",
    "economy",
    "life_skills",
    "other",
    "arts_sports",
]


def plausible(code: str) -> dict[str, object]:
    """Plausible, consistent figures for one unit, the same every time for the same code."""
    rng = random.Random(f"tonghop-{code}")
    households = rng.randrange(1200, 4500)
    quarters = rng.randrange(5, 16)
    v: dict[str, object] = {
        "area_ha": round(rng.uniform(300, 3000), 1),
        "households": households,
        "population": int(households * rng.uniform(3.2, 4.2)),
        "quarters": quarters,
        "production_value_bn": round(rng.uniform(100, 1500), 2),
        "income_per_capita_mn": round(rng.uniform(40, 100), 2),
        "board_directors": 1,
        "board_deputies": rng.randrange(1, 4),
        "culture_houses": quarters,
        "law_bookcases": quarters,
        "conferences": rng.randrange(5, 31),
        "conference_attendees": rng.randrange(300, 3000),
        "reporter": rng.choice(REPORTERS),
        "phone": f"0203 38{rng.randrange(10000, 99999)}",
        "report_date": dt.datetime(2020, 6, rng.randrange(10, 29)),
    }
    v["board_total"] = 1 + v["board_deputies"]
    totals = {"classes": 0, "participants": 0, "female": 0}
    for row in _ROWS:
        if rng.random() < 0.6:
            classes = rng.randrange(1, 11)
            people = classes * rng.randrange(20, 80)
            female = int(people * rng.uniform(0.4, 0.7))
            v |= {f"{row}.classes": classes, f"{row}.participants": people, f"{row}.female": female}
            totals = {
                "classes": totals["classes"] + classes,
                "participants": totals["participants"] + people,
                "female": totals["female"] + female,
            }
        else:
            v[f"{row}.classes"] = 0
    v |= {f"total.{k}": n for k, n in totals.items()}
    v |= {
        "literacy_rate": round(rng.uniform(97, 100), 1),
        "learners": totals["participants"],
        "poor_households": rng.randrange(0, 50),
        "near_poor_households": rng.randrange(0, 80),
        "waste_collection_rate": round(rng.uniform(70, 100), 1),
        "cultural_family_rate": round(rng.uniform(80, 99), 1),
        "cultural_quarter_rate": round(rng.uniform(60, 100), 1),
        "mobilization_unions": rng.choice(RATINGS[:2]),
        "mobilization_business": rng.choice(RATINGS),
        "mobilization_donors": rng.choice(RATINGS),
        "mobilization_note": "Các đoàn thể phối hợp tích cực.",
        "plan_tasks": "Duy trì phong trào học tập suốt đời.\nMở thêm lớp tập huấn kỹ năng sống.",
        "target_participation_rate": rng.randrange(60, 91),
    }
    return v


def _nfd(v: object) -> object:
    return unicodedata.normalize("NFD", v) if isinstance(v, str) else v


def set_cells(
    path: Path, definition: Definition, values: dict[str, object], percent: tuple[str, ...] = ()
) -> None:
    """Overwrite cells the way a ward would by hand (e.g. type over a total), with openpyxl."""
    wb = openpyxl.load_workbook(path)
    for fid, v in values.items():
        f = definition.fields[fid]
        cell = wb[definition.sheet(f.sheet).name][f.cell]
        cell.value = v
        if fid in percent:
            cell.number_format = "0%"
    wb.save(path)


def _insert_row(path: Path, definition: Definition, sheet_id: str, before: int) -> None:
    """A ward inserted an empty row in a sheet (after unprotecting it)."""
    wb = openpyxl.load_workbook(path)
    ws = wb[definition.sheet(sheet_id).name]
    ws.insert_rows(before)
    ws.cell(before, 1, "(dòng thêm của đơn vị)")
    wb.save(path)


def _nfd_sheet_names(path: Path) -> None:
    wb = openpyxl.load_workbook(path)
    for ws in wb.worksheets:
        ws.title = unicodedata.normalize("NFD", ws.title)
    wb.save(path)


def as_xls(src: Path, target: Path, definition: Definition) -> None:
    """Save a workbook's values as a legacy .xls (what old Excel offers), via xlwt."""
    import xlwt

    wb = openpyxl.load_workbook(src)
    book = xlwt.Workbook(encoding="utf-8")
    date_style = xlwt.easyxf(num_format_str="DD/MM/YYYY")
    for ws in wb.worksheets:
        out = book.add_sheet(ws.title[:31], cell_overwrite_ok=True)
        for row in ws.iter_rows():
            for c in row:
                v = c.value
                if v is None or (isinstance(v, str) and v.startswith("=")):
                    continue
                if isinstance(v, (dt.datetime, dt.date)):
                    out.write(c.row - 1, c.column - 1, v, date_style)
                else:
                    out.write(c.row - 1, c.column - 1, v)
        if ws.sheet_state != "visible":
            out.visibility = 1
    tmp = target.with_suffix(".tmp")
    book.save(str(tmp))
    tmp.replace(target)


SAMPLE_DATE = "2020-07-01T00:00:00Z"  # the documents' created/modified date: fixed, for identical bytes
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest time, as xlsxwriter writes it
_CORE_DATE = re.compile(rb"(<dcterms:(created|modified)\b[^>]*>)[^<]*(</dcterms:\2>)")


def _fix_dates(path: Path) -> None:
    """Rewrite an .xlsx so that nothing in it depends on when or where it was written: every member
    stamped _ZIP_TIME with no host attributes, the document's created and modified dates SAMPLE_DATE."""
    with zipfile.ZipFile(path) as zf:
        members = [(info.filename, zf.read(info)) for info in zf.infolist()]
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            if name == "docProps/core.xml":
                data = _CORE_DATE.sub(rb"\g<1>" + SAMPLE_DATE.encode() + rb"\g<3>", data)
            info = zipfile.ZipInfo(name, _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 0  # the default names the host system (Windows 0, Unix 3)
            info.external_attr = 0
            zf.writestr(info, data)
    tmp.replace(path)


def make_samples(out: Path, period: str = "2020-H1", definition: Definition | None = None) -> dict[str, dict]:
    """Write the sample inbox to `out`; return file name → {"unit_code", "values": intended figures}."""
    definition = definition or load_definition()
    units = load_units()
    out.mkdir(parents=True, exist_ok=True)
    intended: dict[str, dict] = {}

    def render(name: str, unit: dict | None, values: dict) -> Path:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        render_workbook(definition, path, period=period, unit=unit, values=values,
                        extra_meta={SAMPLE_KEY: "1"})
        return path

    for unit in units.to_dict("records"):
        code = unit["unit_code"]
        if code in MISSING:
            continue
        values = plausible(code)
        name = f"{unit['slug']}.xlsx"
        want = dict(values)
        if code == "07093":  # Đức Chính: the seed, typed as the seed shows it
            values = dict(DUC_CHINH)
            render(name, unit, {k: v for k, v in values.items() if k != "total.participants"})
            set_cells(out / name, definition, {"total.participants": "8.28"})
            want = {
                "households": 2379,
                "population": 8000,
                "total.participants": 828,
                "total.classes": 17,
                "conference_attendees": 2215,
                "learners": 828,
            }
        elif code == "07069":  # saved as .xls by old Excel
            tmp = render(f".{name}", unit, values)
            name = f"{unit['slug']}.xls"
            as_xls(tmp, out / name, definition)
            tmp.unlink()
        elif code == "07072":  # a row inserted above the households line, and one in the table
            render(name, unit, values)
            _insert_row(out / name, definition, "general", definition.fields["households"].row)
            _insert_row(out / name, definition, "activities", definition.fields["health.classes"].row)
        elif code == "07075":  # decomposed Unicode (NFD) text and sheet names
            render(name, unit, {k: _nfd(v) for k, v in values.items()})
            _nfd_sheet_names(out / name)
        elif code == "07078":  # sent three times: a first version, a correction, and the correction again
            first = dict(values, **{"report_date": dt.datetime(2020, 6, 5), "board_total": 9})
            render(f"{unit['slug']}-lan-1.xlsx", unit, first)
            intended[f"{unit['slug']}-lan-1.xlsx"] = {"unit_code": code, "values": {}}
            name = f"{unit['slug']}-lan-2.xlsx"
            values["report_date"] = dt.datetime(2020, 6, 28)
            render(name, unit, values)
            (out / "thu-gui-lai").mkdir(exist_ok=True)
            shutil.copyfile(out / name, out / "thu-gui-lai" / name)
            intended[f"thu-gui-lai/{name}"] = {"unit_code": code, "values": {}}
        elif code == "07081":  # en-US Excel: 2.215 typed as a decimal, 92% stored as 0.92
            render(name, unit, values)
            set_cells(
                out / name,
                definition,
                {"conference_attendees": 2.215, "waste_collection_rate": 0.92},
                percent=("waste_collection_rate",),
            )
            want |= {"conference_attendees": None, "waste_collection_rate": 92.0}
        elif code == "07084":  # hedged and inconsistent figures
            values["households"] = f"khoảng {values['households']:,}".replace(",", ".")
            row = next(r for r in _ROWS if values.get(f"{r}.participants"))
            values[f"{row}.female"] = values[f"{row}.participants"] + 15
            values["total.female"] = sum(values.get(f"{r}.female", 0) for r in _ROWS)
            render(name, unit, values)
            want = {"households": float(want["households"])}
        elif code == "07087":  # the blank template, unit typed by the ward without its code
            name = "bao-cao-tan-viet.xlsx"
            render(name, None, dict(values, unit_name="xã Tân Việt"))
        else:
            render(name, unit, values)
        intended[name] = {
            "unit_code": code,
            "values": {
                k: want[k]
                for k in (
                    "households",
                    "population",
                    "total.participants",
                    "conference_attendees",
                    "waste_collection_rate",
                )
                if k in want
            },
        }
    (out / "ghi-chu.txt").write_text(
        "Hộp thư mẫu: số liệu giả để chạy thử tonghop, không phải báo cáo thật của các đơn vị.\n"
        "Báo cáo thật lưu vào inbox/<kỳ>/, ví dụ inbox/2020-H1/.\n",
        encoding="utf-8",
        newline="\n",
    )
    for path in sorted(out.rglob("*.xlsx")):
        _fix_dates(path)
    return intended


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Tạo hộp thư mẫu (deterministic sample inbox).")
    p.add_argument("--period", default="2020-H1")
    p.add_argument("--out", type=Path, help="default: samples/<period>")
    args = p.parse_args(argv)
    args.out = args.out or Path("samples") / args.period
    intended = make_samples(args.out, args.period)
    print(f"Đã tạo {len(intended)} tệp mẫu trong {args.out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
